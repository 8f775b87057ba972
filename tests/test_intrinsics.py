"""Camera intrinsics: FOV default, file round trips, typed errors, scaling, undistortion."""
from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.intrinsics import (
    Intrinsics,
    IntrinsicsFileNotFoundError,
    IntrinsicsFormatError,
    load_intrinsics,
    resolve_intrinsics,
    save_intrinsics,
)

K_TEST = np.array([[612.0, 0.0, 318.2], [0.0, 611.0, 241.7], [0.0, 0.0, 1.0]])
DIST_TEST = np.array([-0.21, 0.05, 0.001, -0.0005, 0.01])


def test_fov_default_is_marked_assumed() -> None:
    intr = Intrinsics.from_fov(640, 480, 60.0)
    assert intr.assumed and not intr.has_distortion
    assert intr.hfov_deg == pytest.approx(60.0)
    assert intr.K[0, 0] == pytest.approx(320.0 / math.tan(math.radians(30.0)))
    assert intr.K[0, 2] == pytest.approx(319.5) and intr.K[1, 2] == pytest.approx(239.5)
    assert resolve_intrinsics(None, 320, 240).assumed


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".xml", ".json"])
def test_save_load_round_trip(tmp_path: Path, suffix: str) -> None:
    intr = Intrinsics(K=K_TEST, dist=DIST_TEST, size=(640, 480), assumed=False)
    path = save_intrinsics(intr, tmp_path / f"cam{suffix}", rms_px=0.3)
    loaded = load_intrinsics(path)
    assert not loaded.assumed
    assert loaded.size == (640, 480)
    np.testing.assert_allclose(loaded.K, K_TEST)
    np.testing.assert_allclose(loaded.dist, DIST_TEST)


def test_reads_opencv_sample_style_yaml(tmp_path: Path) -> None:
    path = tmp_path / "calib.yml"
    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_WRITE)
    fs.write("image_width", 1280)
    fs.write("image_height", 720)
    fs.write("camera_matrix", K_TEST)
    fs.write("distortion_coefficients", DIST_TEST.reshape(5, 1))
    fs.release()
    intr = load_intrinsics(path)
    assert intr.size == (1280, 720) and intr.dist.shape == (5,)


def test_missing_file_is_typed_with_advice(tmp_path: Path) -> None:
    with pytest.raises(IntrinsicsFileNotFoundError, match="calibrate"):
        load_intrinsics(tmp_path / "none.yaml")
    with pytest.raises(FileNotFoundError):
        resolve_intrinsics(tmp_path / "none.json", 640, 480)


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        json.dumps([1, 2, 3]),
        json.dumps({"dist": [0, 0, 0, 0]}),
        json.dumps({"K": [[1, 0], [0, 1]], "image_size": [10, 10]}),
        json.dumps({"K": [[-5, 0, 1], [0, 5, 1], [0, 0, 1]], "image_size": [10, 10]}),
        json.dumps({"K": K_TEST.tolist(), "dist": [0.1, 0.2, 0.3], "image_size": [10, 10]}),
        json.dumps({"K": K_TEST.tolist(), "image_size": [0, 10]}),
        json.dumps({"K": K_TEST.tolist(), "image_size": "big"}),
    ],
)
def test_bad_json_contents_are_format_errors(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(IntrinsicsFormatError):
        load_intrinsics(path)


def test_bad_yaml_and_suffix(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("%YAML:1.0\n---\nsomething: 3\n")
    with pytest.raises(IntrinsicsFormatError, match="camera_matrix"):
        load_intrinsics(path)
    garbage = tmp_path / "garbage.yaml"
    garbage.write_bytes(b"\x00\x01\x02 not yaml {{{")
    with pytest.raises(IntrinsicsFormatError):
        load_intrinsics(garbage)
    other = tmp_path / "cam.txt"
    other.write_text("1 2 3")
    with pytest.raises(IntrinsicsFormatError, match="suffix"):
        load_intrinsics(other)


def test_size_required_when_file_lacks_it(tmp_path: Path) -> None:
    path = tmp_path / "nosize.json"
    path.write_text(json.dumps({"K": K_TEST.tolist()}))
    with pytest.raises(IntrinsicsFormatError, match="image size"):
        load_intrinsics(path)
    assert load_intrinsics(path, image_size=(640, 480)).size == (640, 480)


def test_scaling_keeps_rays() -> None:
    intr = Intrinsics(K=K_TEST, dist=np.zeros(0), size=(640, 480), assumed=False)
    half = intr.scaled_to(320, 240)
    # The same ray hits pixel centre (u+0.5)/2-0.5 in the half-resolution image.
    ray = np.array([[0.05, -0.02, 1.0]])
    u_full = intr.project(ray)[0]
    u_half = half.project(ray)[0]
    np.testing.assert_allclose(u_half, (u_full + 0.5) / 2.0 - 0.5, atol=1e-4)
    assert intr.scaled_to(640, 480) is intr


def test_undistort_inverts_projection_with_distortion() -> None:
    intr = Intrinsics(K=K_TEST, dist=DIST_TEST, size=(640, 480), assumed=False)
    rng = np.random.default_rng(3)
    pts_cam = np.column_stack([rng.uniform(-0.45, 0.45, 50), rng.uniform(-0.35, 0.35, 50), np.ones(50)])
    distorted = intr.project(pts_cam)
    ideal = (pts_cam[:, :2] / pts_cam[:, 2:]) * [K_TEST[0, 0], K_TEST[1, 1]] + K_TEST[:2, 2]
    assert np.abs(distorted - ideal).max() > 2.0  # the lens model matters at the edges
    np.testing.assert_allclose(intr.undistort_points(distorted), ideal, atol=1e-2)
    plain = Intrinsics(K=K_TEST, dist=np.zeros(5), size=(640, 480), assumed=False)
    assert not plain.has_distortion
    np.testing.assert_allclose(plain.undistort_points(ideal), ideal, atol=1e-4)


def test_intrinsics_are_read_only() -> None:
    intr = Intrinsics.from_fov(64, 48)
    with pytest.raises(ValueError):
        intr.K[0, 0] = 1.0
