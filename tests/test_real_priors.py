"""Real-photo statistics for the synthetic generator (training.synth.real_priors): hand-free background
regions and the bend-matched pose sampler, on fabricated photos, caches and priors."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from app.mediapipe_labels import SynthVariant, synth_cache_dir
from models.hand import HandModel
from models.hand.poses import sample_poses
from training.mp_data import photo_is_held_out
from training.synth.backgrounds import BackgroundSampler
from training.synth.real_priors import (
    BEND_BINS_DEG,
    FLEXION_TRIPLES,
    BendMatchedPoses,
    RealPhotoRegions,
    build_bend_prior,
    flexion_angles,
)


def _photo_cache(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """Three 200x160 grey 'room' photos, each with a white 'hand' square the cache knows about, plus one
    held-out photo that is all white (it must never be used)."""
    names = [n for n in (f"webcam_hands/p{i:04d}.jpg" for i in range(400)) if not photo_is_held_out(n)][:3]
    held = next(n for n in (f"webcam_hands/q{i:04d}.jpg" for i in range(400)) if photo_is_held_out(n))
    root, cache = tmp_path / "photos", tmp_path / "photos_cache"
    (root / "webcam_hands").mkdir(parents=True)
    cache.mkdir()
    uv = []
    for k, name in enumerate(names):
        image = np.full((160, 200, 3), 90, np.uint8)
        x0, y0 = 20 + 50 * k, 40
        image[y0:y0 + 40, x0:x0 + 40] = 255
        cv2.imwrite(str(root / name), image)
        corners = np.array([[x0, y0], [x0 + 39, y0 + 39]], np.float32)
        uv.append(np.concatenate([corners, np.repeat(corners.mean(0, keepdims=True), 19, 0)]))
    cv2.imwrite(str(root / held), np.full((160, 200, 3), 255, np.uint8))
    files = names + [held]
    (cache / "files.json").write_text(json.dumps(files))
    np.savez(cache / "chunk_00000.npz", index=np.arange(3), mp_uv_img=np.stack(uv))
    return root, cache, files


def test_real_regions_avoid_every_detected_hand_and_the_held_out_photos(tmp_path: Path) -> None:
    root, cache, files = _photo_cache(tmp_path)
    regions = RealPhotoRegions(root, cache)
    assert len(regions) == 3  # the held-out photo is not a background
    rng = np.random.default_rng(0)
    got = [regions.sample(rng, 64, 48) for _ in range(60)]
    found = [g for g in got if g is not None]
    assert len(found) > 20
    for g in found:
        assert g.shape == (48, 64, 3) and g.max() < 200  # no white 'hand' pixel (JPEG ringing stays far below)
    sampler = BackgroundSampler(real_regions=regions, real_prob=1.0)
    assert sampler.sample(rng, 64, 48).max() < 200


def test_bend_matched_poses_move_the_bends_towards_the_prior(tmp_path: Path) -> None:
    hand = HandModel.default()
    with torch.no_grad():
        base = flexion_angles(hand(torch.as_tensor(sample_poses(400, np.random.default_rng(1)))).joints.numpy())
    bins = len(BEND_BINS_DEG) - 1
    straight = np.full((len(FLEXION_TRIPLES), bins), 1e-3)
    straight[:, :3] = 1.0  # "real" hands: every finger joint bent less than 15 degrees
    prior = {"real": (straight / straight.sum(1, keepdims=True)).tolist(),
             "synthetic": np.full((len(FLEXION_TRIPLES), bins), 1.0 / bins).tolist(), "beta": 0.5}
    path = tmp_path / "prior.json"
    path.write_text(json.dumps(prior))
    sampler = BendMatchedPoses(path, hand_model=hand)
    rng = np.random.default_rng(2)
    poses = np.stack([sampler(rng) for _ in range(60)])
    assert poses.shape == (60, 22) and np.isfinite(poses).all()
    with torch.no_grad():
        matched = flexion_angles(hand(torch.as_tensor(poses)).joints.numpy())
    assert matched.mean() < 0.6 * base.mean()
    path.write_text("{}")
    with pytest.raises(ValueError, match="rebuild it"):
        BendMatchedPoses(path, hand_model=hand)


def test_build_bend_prior_picks_the_temperature_with_the_smallest_estimated_distance() -> None:
    hand = HandModel.default()
    with torch.no_grad():
        joints = hand(torch.as_tensor(sample_poses(300, np.random.default_rng(3)))).joints.numpy()
    noisy = joints + np.random.default_rng(4).normal(0, 0.002, joints.shape)
    prior = build_bend_prior(noisy[:150], joints[150:], noisy[150:], betas=(0.2, 1.0))
    distances = prior["estimated_distance_deg"]
    assert prior["beta"] in (0.2, 1.0)
    assert distances[f"beta_{prior['beta']}"] == min(distances["beta_0.2"], distances["beta_1.0"])
    assert np.asarray(prior["real"]).shape == (15, len(BEND_BINS_DEG) - 1)


def test_variant_caches_get_their_own_folder(tmp_path: Path) -> None:
    plain = synth_cache_dir(tmp_path, 5)
    both = synth_cache_dir(tmp_path, 5, SynthVariant(real_backgrounds=True, matched_poses=True))
    assert both.name == plain.name + "_realbg_matchedposes"
    with pytest.raises(Exception, match="photo"):
        SynthVariant(real_backgrounds=True).generator()


def test_the_scene_generator_draws_its_poses_from_the_given_sampler() -> None:
    from models.hand.poses import named_pose
    from training.synth.scene import SceneGenerator

    fist = named_pose("fist")
    calls = []

    def sampler(rng: np.random.Generator) -> np.ndarray:
        calls.append(1)
        return fist

    spec = SceneGenerator(pose_sampler=sampler).sample_spec(np.random.default_rng(0))
    assert calls == [1]
    bends = flexion_angles(spec.joints_cam[None])[0]
    with torch.no_grad():
        rest_fist = HandModel.default()(torch.as_tensor(fist[None])).joints.numpy()
    assert np.allclose(bends, flexion_angles(rest_fist)[0], atol=2.0)  # same pose, whatever the shape


def test_cache_arrays_skip_chunks_without_hands_and_can_leave_out_the_held_out_photos(tmp_path: Path) -> None:
    from training.synth.real_priors import cache_arrays

    _, cache, files = _photo_cache(tmp_path)
    np.savez(cache / "chunk_00001.npz", all_index=np.arange(3, 4), all_found=np.zeros(1, bool))  # no hand found
    np.savez(cache / "chunk_00002.npz", index=np.array([3]), mp_uv_img=np.zeros((1, 21, 2), np.float32))
    assert len(cache_arrays(cache, "mp_uv_img")) == 4
    assert len(cache_arrays(cache, "mp_uv_img", training_photos_only=True)) == 3  # files[3] is held out
    with pytest.raises(ValueError, match="has no"):
        cache_arrays(cache, "mp_world")
