"""FreiHAND loader (for users who have the dataset; we do not ship it).

Official layout under `root`:

    training/rgb/%08d.jpg            4 * N images (N = 32560): 4 versions (green screen + 3 backgrounds)
    training_K.json                  N x (3, 3) intrinsics, pixels
    training_xyz.json                N x (21, 3) joints, camera frame, metres
    training_verts.json              N x (778, 3) MANO vertices, camera frame, metres
    training_mano.json               N x [[61]] MANO pose (48), shape (10), translation (3)
    training_scale.json              N floats: length of the reference bone (metres)
    evaluation/rgb/%08d.jpg          M images (M = 3960)
    evaluation_K.json, evaluation_scale.json, and when released evaluation_xyz.json / evaluation_verts.json

Image i of the training split uses the labels of i % N. FreiHAND's 21-joint order is the same as
MediaPipe's and ours (0 wrist, 1-4 thumb MCP->tip, 5-8 index, 9-12 middle, 13-16 ring, 17-20 little),
so no remapping is needed (`FREIHAND_TO_OURS` is the identity, kept explicit). All hands are right hands.

`FreiHANDDataset` returns the same view dicts as `training.synth.dataset.SynthHandDataset` (rectified
crops through `models.rectify`, MediaPipe-like box jitter when `jitter_boxes`). Vertices (`verts_cam`)
are included only when `mesh_supervision=True`, which requires a network built on the MANO topology
(778 vertices): our own hand model has a different topology, so FreiHAND's meshes cannot supervise it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from torch.utils.data import Dataset

from models.rectify import rectification_from_box
from training.synth.dataset import CROP_MARGIN, BoxJitter, View, mediapipe_like_box, tight_box
from training.synth.render import project_points

FREIHAND_NUM_VERSIONS: int = 4
MANO_NUM_VERTICES: int = 778
FREIHAND_TO_OURS: np.ndarray = np.arange(21)
"""Index map: our joint j = FreiHAND joint FREIHAND_TO_OURS[j] (identity: same order as MediaPipe)."""


class FreiHANDError(RuntimeError):
    """The FreiHAND folder is missing files or has inconsistent contents."""


def _load_json(path: Path) -> Any:
    if not path.is_file():
        raise FreiHANDError(f"FreiHAND file missing: {path} (expected the official FreiHAND_pub_v2 layout)")
    with path.open("r", encoding="utf-8") as fh:
        return json.load(fh)


class FreiHANDDataset(Dataset):
    """FreiHAND as rectified crops; index -> tuple with one view dict (keys as the synthetic dataset).

    Args:
        root: the folder holding `training/`, `evaluation/` and the json files.
        split: "training" or "evaluation".
        crop_size: S, the crop side in pixels.
        versions: training image versions to use (subset of 0..3); ignored for evaluation.
        mesh_supervision: include `verts_cam` (MANO vertices); only valid for a MANO-topology network.
        jitter_boxes: MediaPipe-like box jitter (training) instead of the tight joint box (evaluation).
        seed: seed of the box and colour jitter (sample i depends only on (seed, i)).
    """

    def __init__(
        self,
        root: Path,
        split: str = "training",
        crop_size: int = 128,
        versions: tuple[int, ...] = (0, 1, 2, 3),
        mesh_supervision: bool = False,
        jitter_boxes: bool | None = None,
        seed: int = 0,
    ) -> None:
        if split not in ("training", "evaluation"):
            raise ValueError(f"FreiHANDDataset: split must be 'training' or 'evaluation', got {split!r}")
        self.root = Path(root)
        self.split = split
        self.crop_size = int(crop_size)
        self.seed = int(seed)
        self.mesh_supervision = bool(mesh_supervision)
        self.jitter_boxes = (split == "training") if jitter_boxes is None else bool(jitter_boxes)
        self.K = np.asarray(_load_json(self.root / f"{split}_K.json"), np.float64).reshape(-1, 3, 3)
        self.num_labels = len(self.K)
        self.scale = np.asarray(_load_json(self.root / f"{split}_scale.json"), np.float64).reshape(-1)
        xyz_path = self.root / f"{split}_xyz.json"
        self.xyz = np.asarray(_load_json(xyz_path), np.float64).reshape(-1, 21, 3)[:, FREIHAND_TO_OURS] if xyz_path.is_file() else None
        verts_path = self.root / f"{split}_verts.json"
        self.verts: np.ndarray | None = None
        if self.mesh_supervision:
            self.verts = np.asarray(_load_json(verts_path), np.float64).reshape(self.num_labels, -1, 3)
            if self.verts.shape[1] != MANO_NUM_VERTICES:
                raise FreiHANDError(f"{verts_path} has {self.verts.shape[1]} vertices per hand, expected MANO's {MANO_NUM_VERTICES}")
        for name, array in (("scale", self.scale), ("xyz", self.xyz)):
            if array is not None and len(array) != self.num_labels:
                raise FreiHANDError(f"{split}_{name}.json has {len(array)} entries but {split}_K.json has {self.num_labels}")
        if split == "training":
            bad = [v for v in versions if not 0 <= v < FREIHAND_NUM_VERSIONS]
            if bad or not versions:
                raise ValueError(f"FreiHANDDataset: versions must be a non-empty subset of 0..3, got {versions}")
            self.versions = tuple(int(v) for v in versions)
        else:
            self.versions = (0,)
        self.rgb_dir = self.root / split / "rgb"
        if not self.rgb_dir.is_dir():
            raise FreiHANDError(f"FreiHAND image folder missing: {self.rgb_dir}")

    def __len__(self) -> int:
        return self.num_labels * len(self.versions)

    def image_path(self, index: int) -> Path:
        """Path of the image of dataset index `index` (version-major, as in the official numbering)."""
        version = self.versions[index // self.num_labels]
        return self.rgb_dir / f"{version * self.num_labels + index % self.num_labels:08d}.jpg"

    def raw(self, index: int) -> dict[str, np.ndarray]:
        """The uncropped sample: image_bgr (224, 224, 3) uint8, K (3, 3), and when present joints_cam
        (21, 3) / verts_cam (778, 3) metres and scale ()."""
        if not 0 <= index < len(self):
            raise IndexError(f"FreiHANDDataset: index {index} out of range 0..{len(self) - 1}")
        path = self.image_path(index)
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise FreiHANDError(f"cannot read FreiHAND image {path}")
        label = index % self.num_labels
        out: dict[str, np.ndarray] = {"image_bgr": image, "K": self.K[label], "scale": np.array(self.scale[label])}
        if self.xyz is not None:
            out["joints_cam"] = self.xyz[label]
        if self.verts is not None:
            out["verts_cam"] = self.verts[label]
        return out

    def __getitem__(self, index: int) -> tuple[View, ...]:
        raw = self.raw(index)
        image, K = raw["image_bgr"], raw["K"]
        height, width = image.shape[:2]
        rng = np.random.default_rng([self.seed, int(index)])
        joints_cam = raw.get("joints_cam")
        if joints_cam is not None:
            joints_2d = project_points(joints_cam, K)
            box = mediapipe_like_box(joints_2d, rng, BoxJitter()) if self.jitter_boxes else tight_box(joints_2d)
        else:
            box = np.array([0.1 * width, 0.1 * height, 0.9 * width, 0.9 * height])
        rect = rectification_from_box(K, box, crop_size=self.crop_size, margin=CROP_MARGIN, mirror=False)
        H = np.asarray(rect.H, np.float64)
        crop = cv2.warpPerspective(image, H, (self.crop_size, self.crop_size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        f32 = np.float32
        virt_from_cam = np.asarray(rect.virt_from_cam, np.float64)
        k_virt = np.asarray(rect.K_virt, np.float64)
        view: View = {
            "crop_rgb": np.ascontiguousarray(crop[:, :, ::-1]),
            "K_virt": k_virt.astype(f32),
            "virt_from_cam": virt_from_cam.astype(f32),
            "R": np.asarray(rect.R, f32),
            "crop_from_image": H.astype(f32),
            "K": K.astype(f32),
            "image_size": np.array([width, height], np.int64),
            "box_xyxy": box.astype(f32),
            "scale": raw["scale"].astype(f32),
            "is_right": np.array(1, np.int64),
            "index": np.array(index, np.int64),
            "has_verts": np.array(int("verts_cam" in raw), np.int64),
        }
        if joints_cam is not None:
            joints_virt = joints_cam @ virt_from_cam.T
            root = joints_virt[0]
            view.update(
                {
                    "joints_cam": joints_cam.astype(f32),
                    "joints_rel_virt": (joints_virt - root).astype(f32),
                    "translation_virt": root.astype(f32),
                    "joints_2d_crop": project_points(joints_virt, k_virt).astype(f32),
                    "joints_2d_image": project_points(joints_cam, K).astype(f32),
                }
            )
            if "verts_cam" in raw:
                verts_virt = raw["verts_cam"] @ virt_from_cam.T
                view["verts_cam"] = raw["verts_cam"].astype(f32)
                view["verts_rel_virt"] = (verts_virt - root).astype(f32)
        return (view,)
