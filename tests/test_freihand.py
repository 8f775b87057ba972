"""FreiHAND loader on a tiny fabricated folder in the official FreiHAND_pub_v2 layout."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from models.rectify import image_to_crop
from training.freihand import MANO_NUM_VERTICES, FreiHANDDataset, FreiHANDError

N_LABELS = 3
N_EVAL = 2


def _hand_joints(rng: np.random.Generator) -> np.ndarray:
    """A plausible (21, 3) right hand about 0.5 m in front of the camera, metres."""
    base = np.array([0.0, 0.05, 0.5]) + rng.normal(0, 0.01, 3)
    offsets = np.zeros((21, 3))
    for finger in range(5):
        direction = np.array([-0.04 + 0.02 * finger, -1.0, 0.0])
        direction /= np.linalg.norm(direction)
        for k in range(4):
            offsets[1 + 4 * finger + k] = direction * (0.04 + 0.025 * k)
    return base + offsets


def _write_split(root: Path, split: str, n_labels: int, n_images: int, with_labels: bool, rng: np.random.Generator) -> None:
    rgb = root / split / "rgb"
    rgb.mkdir(parents=True)
    K = [[[480.0 + i, 0.0, 112.0], [0.0, 480.0 + i, 112.0], [0.0, 0.0, 1.0]] for i in range(n_labels)]
    xyz = [_hand_joints(rng).tolist() for _ in range(n_labels)]
    verts = [(np.asarray(x)[rng.integers(0, 21, MANO_NUM_VERTICES)] + rng.normal(0, 0.003, (MANO_NUM_VERTICES, 3))).tolist() for x in xyz]
    mano = [[rng.normal(0, 0.1, 61).tolist()] for _ in range(n_labels)]
    files = {f"{split}_K.json": K, f"{split}_scale.json": [0.03 + 0.001 * i for i in range(n_labels)]}
    if with_labels:
        files.update({f"{split}_xyz.json": xyz, f"{split}_verts.json": verts, f"{split}_mano.json": mano})
    for name, content in files.items():
        (root / name).write_text(json.dumps(content), encoding="utf-8")
    for i in range(n_images):
        # Each image encodes its number in its colour so the version/index mapping can be checked.
        image = np.full((224, 224, 3), (10 * i, 100, 200 - 10 * i), np.uint8)
        cv2.imwrite(str(rgb / f"{i:08d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 100])


@pytest.fixture()
def freihand_root(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    _write_split(tmp_path, "training", N_LABELS, 4 * N_LABELS, with_labels=True, rng=rng)
    _write_split(tmp_path, "evaluation", N_EVAL, N_EVAL, with_labels=False, rng=rng)
    return tmp_path


def test_training_split_maps_versions_to_labels(freihand_root: Path) -> None:
    ds = FreiHANDDataset(freihand_root, "training", crop_size=64)
    assert len(ds) == 4 * N_LABELS
    for index in (0, 4, 11):
        assert ds.image_path(index).name == f"{index:08d}.jpg"
        raw = ds.raw(index)
        assert abs(int(raw["image_bgr"][0, 0, 0]) - 10 * index) <= 2
        np.testing.assert_allclose(raw["K"][0, 0], 480.0 + index % N_LABELS)
    subset = FreiHANDDataset(freihand_root, "training", crop_size=64, versions=(2,))
    assert len(subset) == N_LABELS and subset.image_path(1).name == f"{2 * N_LABELS + 1:08d}.jpg"


def test_training_sample_geometry(freihand_root: Path) -> None:
    ds = FreiHANDDataset(freihand_root, "training", crop_size=64, jitter_boxes=False)
    (view,) = ds[4]
    assert view["crop_rgb"].shape == (64, 64, 3) and view["crop_rgb"].dtype == np.uint8
    assert "verts_cam" not in view and int(view["has_verts"]) == 0
    joints = json.loads((freihand_root / "training_xyz.json").read_text())[4 % N_LABELS]
    np.testing.assert_allclose(view["joints_cam"], np.asarray(joints, np.float32))
    crop_pts = image_to_crop(view["joints_2d_image"].astype(np.float64), view["crop_from_image"].astype(np.float64))
    np.testing.assert_allclose(crop_pts, view["joints_2d_crop"], atol=1e-3)
    assert np.all((view["joints_2d_crop"] > 0) & (view["joints_2d_crop"] < 63))
    assert np.linalg.det(view["virt_from_cam"]) > 0 and int(view["is_right"]) == 1
    np.testing.assert_allclose(view["joints_rel_virt"][0], 0.0, atol=1e-7)


def test_mesh_supervision_needs_mano_vertices(freihand_root: Path) -> None:
    ds = FreiHANDDataset(freihand_root, "training", crop_size=64, mesh_supervision=True)
    (view,) = ds[1]
    assert view["verts_cam"].shape == (MANO_NUM_VERTICES, 3) and int(view["has_verts"]) == 1
    bad = json.loads((freihand_root / "training_verts.json").read_text())
    (freihand_root / "training_verts.json").write_text(json.dumps([v[:100] for v in bad]), encoding="utf-8")
    with pytest.raises(FreiHANDError, match="778"):
        FreiHANDDataset(freihand_root, "training", mesh_supervision=True)


def test_evaluation_split_without_labels(freihand_root: Path) -> None:
    ds = FreiHANDDataset(freihand_root, "evaluation", crop_size=32)
    assert len(ds) == N_EVAL
    (view,) = ds[1]
    assert view["crop_rgb"].shape == (32, 32, 3) and "joints_cam" not in view
    with pytest.raises(IndexError):
        ds.raw(N_EVAL)


def test_missing_files_raise_actionable_errors(tmp_path: Path) -> None:
    with pytest.raises(FreiHANDError, match="training_K.json"):
        FreiHANDDataset(tmp_path, "training")
