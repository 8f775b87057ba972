"""Small label caches for the fused trainer's tests: posed hands of the shipped hand model, cut like the
app cuts them, written in the layout ``app.mediapipe_labels`` writes (``training.mp_data.load_cue_cache``
reads them), and a short training config over them."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from models.hand import HandModel
from models.hand.poses import sample_poses
from models.mediapipe_frame import world_landmarks_to_virtual
from models.rectify import image_to_crop, rectification_from_box
from training.train_fused import FusedLossWeights, FusedTrainConfig

S = 128


def cue_records(n: int, seed: int) -> dict[str, np.ndarray]:
    """n posed hands 0.4-0.6 m in front of a 640x480 camera, cut like the app cuts them."""
    rng = np.random.default_rng(seed)
    out = HandModel.default()(torch.as_tensor(sample_poses(n, rng), dtype=torch.float32))
    K = np.array([[500.0, 0, 319.5], [0, 500, 239.5], [0, 0, 1]])
    records: dict[str, list[np.ndarray]] = {}
    for i in range(n):
        t = np.array([rng.uniform(-0.05, 0.05), rng.uniform(-0.05, 0.05), rng.uniform(0.4, 0.6)])
        joints = out.joints[i].numpy().astype(np.float64) - out.joints[i, 0].numpy() + t
        verts = out.vertices[i].numpy().astype(np.float64) - out.joints[i, 0].numpy() + t
        uv = joints[:, :2] / joints[:, 2:] * 500 + np.array([319.5, 239.5])
        mp_uv = uv + rng.normal(0, 2.0, uv.shape)
        box = np.concatenate([mp_uv.min(0), mp_uv.max(0)])
        rect = rectification_from_box(K, box, crop_size=S, margin=0.25, mirror=False)
        world = joints - joints.mean(0) + rng.normal(0, 0.004, joints.shape)
        rec = {
            "index": np.array(i), "crop_rgb": rng.integers(0, 255, (S, S, 3), dtype=np.uint8),
            "K_virt": np.asarray(rect.K_virt, np.float32), "virt_from_cam": np.asarray(rect.virt_from_cam, np.float32),
            "crop_from_image": np.asarray(rect.H, np.float32), "K": K.astype(np.float32),
            "image_size": np.array([640, 480]), "mp_uv_crop": np.asarray(image_to_crop(mp_uv, np.asarray(rect.H)), np.float32),
            "mp_world_virt": world_landmarks_to_virtual(world, np.asarray(rect.virt_from_cam)).astype(np.float32),
            "mp_world": world.astype(np.float32), "mp_uv_img": mp_uv.astype(np.float32), "mp_z": np.zeros(21, np.float32),
            "mp_right": np.array(True), "mp_score": np.array(0.9, np.float32), "is_right": np.array(True),
            "joints_cam": joints.astype(np.float32), "verts_cam": verts.astype(np.float32),
        }
        for k, v in rec.items():
            records.setdefault(k, []).append(v)
    return {k: np.stack(v) for k, v in records.items()}


def write_cue_cache(folder: Path, n: int, seed: int, photos: bool) -> Path:
    folder.mkdir(parents=True)
    arrays = cue_records(n, seed)
    if photos:
        del arrays["joints_cam"], arrays["verts_cam"]
        (folder / "files.json").write_text(json.dumps([f"webcam_hands/p{i:03d}.jpg" for i in range(n)]))
    all_index = np.arange(n + 2)
    np.savez(folder / "chunk_00000.npz", all_index=all_index, all_found=all_index < n,
             all_handed_ok=all_index < n, **arrays)
    return folder


def view_config(caches: dict[str, Path], out: Path, **overrides: object) -> FusedTrainConfig:
    loss = FusedLossWeights(real_distill=1.0, real_con2d=1.0, real_con3d=0.5, real_limits=1.0, real_surface=0.5,
                            dihedral=0.5, real_fold=0.5, thickness=1.0, aligned=1.0)
    values: dict[str, object] = dict(
        synth_cache=str(caches["synth"]), photo_cache=str(caches["photos"]), test_cache=str(caches["test"]),
        out_dir=str(out), batch_size=6, real_per_batch=3, max_steps=2, time_budget_s=600, eval_every_steps=0,
        eval_samples=6, checkpoint_every_steps=0, log_every_steps=1, num_workers=0, loss=loss,
    )
    values.update(overrides)
    return FusedTrainConfig(**values)  # type: ignore[arg-type]
