"""The MediaPipe label cache builder (app/mediapipe_labels.py): crops, matching, reports, and one real run."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.mediapipe_labels import (
    MediaPipeHand,
    build_photos,
    crop_hand,
    fov_intrinsics,
    match_hand,
    offset_report,
    pose_report,
)
from models.paths import SHARED_REAL_DIR
from models.rectify import crop_to_image
from tests.pipeline_fakes import hand_landmarks
from tests.cue_cache_support import write_cue_cache
from training.synth.real_priors import flexion_angles

PHOTOS = SHARED_REAL_DIR / "photos"


def _hand(centre: tuple[float, float], right: bool = True) -> MediaPipeHand:
    uv = hand_landmarks(centre, 120.0, flip_x=not right)
    world = np.random.default_rng(0).normal(0, 0.04, (21, 3)).astype(np.float32)
    return MediaPipeHand(uv, np.zeros(21, np.float32), world, right, 0.9)


def test_crop_hand_maps_landmarks_into_the_crop_and_mirrors_left_hands() -> None:
    image = np.random.default_rng(1).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    K = fov_intrinsics(640, 480)
    for right in (True, False):
        hand = _hand((320, 260), right)
        record = crop_hand(image, K, hand, mirror=not right)
        assert record["crop_rgb"].shape == (128, 128, 3)
        back = crop_to_image(record["mp_uv_crop"].astype(np.float64), record["crop_from_image"].astype(np.float64))
        assert np.allclose(back, hand.uv_img, atol=0.05)
        assert np.all((record["mp_uv_crop"] > 0) & (record["mp_uv_crop"] < 127))
        assert np.isclose(np.linalg.det(record["virt_from_cam"]), 1.0 if right else -1.0, atol=1e-5)
        assert np.allclose(record["mp_world_virt"][0], 0.0)


def test_match_hand_picks_the_detection_on_the_true_hand() -> None:
    truth = hand_landmarks((300, 200), 100.0).astype(np.float64)
    near, far = _hand((305, 203)), _hand((100, 100))
    assert match_hand([far, near], truth) is near
    assert match_hand([far], truth) is None
    assert match_hand([], truth) is None


def test_flexion_angles_of_a_straight_and_a_bent_finger() -> None:
    joints = np.zeros((1, 21, 3))
    for finger in range(5):
        for k in range(4):
            joints[0, 1 + 4 * finger + k] = [finger * 0.02, 0.03 + 0.02 * k, 0.0]
    straight = flexion_angles(joints)[0]
    assert np.allclose(np.delete(straight, [0, 3, 6, 9, 12]), 0.0, atol=1e-6)  # PIP/DIP (IP) joints straight
    joints[0, 8] = joints[0, 7] + [0.0, 0.0, 0.02]  # index tip bent 90 degrees at the DIP joint
    assert flexion_angles(joints)[0, 5] == pytest.approx(90.0)


def test_reports_on_fabricated_caches(tmp_path: Path) -> None:
    synth = write_cue_cache(tmp_path / "synth", 10, 4, photos=False)
    photos = write_cue_cache(tmp_path / "photos", 10, 5, photos=True)
    offsets = offset_report(synth)
    assert offsets["hands"] == 10 and len(offsets["joints"]) == 21
    # the fabricated MediaPipe points are the truth plus 2 px of noise: no offset near a centimetre
    assert max(j["offset_2d_mm"] for j in offsets["joints"]) < 5.0
    poses = pose_report(synth, photos)
    assert poses["hands_real"] == 10 and len(poses["wasserstein_deg_per_joint"]) == 15
    assert poses["wasserstein_deg_mean"] >= 0


@pytest.mark.slow
@pytest.mark.skipif(not PHOTOS.is_dir(), reason="../shared/real/photos absent")
def test_real_photos_through_mediapipe(tmp_path: Path) -> None:
    """Three real photos through the app's detector (one process, resumable chunks)."""
    root = tmp_path / "photos"
    root.mkdir()
    for source in sorted((PHOTOS / "webcam_hands").glob("*.jpg"))[:3]:
        (root / source.name).write_bytes(source.read_bytes())
    folder = build_photos(tmp_path / "out", root, workers=1, chunk=2)
    chunks = sorted(folder.glob("chunk_*.npz"))
    assert len(chunks) == 2
    with np.load(chunks[0]) as data:
        assert data["all_found"].any()
        assert data["crop_rgb"].shape[1:] == (128, 128, 3)
    assert build_photos(tmp_path / "out", root, workers=1, chunk=2) == folder  # resumes: nothing to redo
