"""Checkerboard calibration on synthetic views rendered with a known camera."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from app.calibrate import (
    CalibrationError,
    calibrate_images,
    calibrate_source,
    find_corners,
    parse_pattern,
    render_checkerboard_view,
)
from app.intrinsics import load_intrinsics
from app.sources import ImageFolderSource

PATTERN = (7, 5)
SQUARE_M = 0.03


def _views(K: np.ndarray, size: tuple[int, int], dist: np.ndarray | None, n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n):
        rvec = np.array([rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5), rng.uniform(-0.3, 0.3)])
        # Board centre near the optical axis at 0.3-0.45 m; the board is 0.24 x 0.18 m.
        tvec = np.array([-0.09 + rng.uniform(-0.04, 0.04), -0.06 + rng.uniform(-0.03, 0.03), rng.uniform(0.3, 0.45)])
        images.append(render_checkerboard_view(K, dist, size, PATTERN, SQUARE_M, rvec, tvec, px_per_square=24))
    return images


def test_parse_pattern() -> None:
    assert parse_pattern("9x6") == (9, 6)
    with pytest.raises(ValueError):
        parse_pattern("9")
    with pytest.raises(ValueError):
        parse_pattern("1x6")


def test_rendered_board_is_detected_where_projected() -> None:
    K = np.array([[400.0, 0.0, 159.5], [0.0, 400.0, 119.5], [0.0, 0.0, 1.0]])
    rvec, tvec = np.array([0.2, -0.1, 0.05]), np.array([-0.09, -0.06, 0.45])
    image = render_checkerboard_view(K, None, (320, 240), PATTERN, SQUARE_M, rvec, tvec, px_per_square=24)
    corners = find_corners(image, PATTERN)
    assert corners is not None
    obj = np.mgrid[0:PATTERN[0], 0:PATTERN[1]].T.reshape(-1, 2) * SQUARE_M
    expected, _ = cv2.projectPoints(np.column_stack([obj, np.zeros(len(obj))]), rvec, tvec, K, None)
    assert np.abs(corners.reshape(-1, 2) - expected.reshape(-1, 2)).max() < 0.3


def test_calibration_recovers_known_pinhole_camera(tmp_path: Path) -> None:
    K = np.array([[420.0, 0.0, 161.0], [0.0, 418.0, 118.0], [0.0, 0.0, 1.0]])
    for i, image in enumerate(_views(K, (320, 240), None, 10, seed=1)):
        cv2.imwrite(str(tmp_path / f"view_{i:02d}.png"), image)
    out = tmp_path / "camera.yaml"
    result = calibrate_source(ImageFolderSource(tmp_path), PATTERN, SQUARE_M, out)
    assert result.views_used >= 6 and result.rms_px < 0.3
    loaded = load_intrinsics(out)
    assert loaded.size == (320, 240) and not loaded.assumed
    np.testing.assert_allclose(loaded.K[[0, 1], [0, 1]], [420.0, 418.0], rtol=0.01)
    np.testing.assert_allclose(loaded.K[:2, 2], [161.0, 118.0], atol=3.0)


def test_calibration_recovers_radial_distortion() -> None:
    K = np.array([[300.0, 0.0, 159.5], [0.0, 300.0, 119.5], [0.0, 0.0, 1.0]])
    dist = np.array([-0.3, 0.1, 0.0, 0.0, 0.0])
    result = calibrate_images(_views(K, (320, 240), dist, 8, seed=2), PATTERN, SQUARE_M)
    intr = result.intrinsics
    assert result.rms_px < 0.3
    np.testing.assert_allclose(intr.K[0, 0], 300.0, rtol=0.02)
    # Compare the lens models where they matter: undistorting the same edge pixels.
    edge = np.array([[5.0, 5.0], [315.0, 120.0], [160.0, 235.0]])
    truth = cv2.undistortPointsIter(edge.reshape(-1, 1, 2), K, dist, None, K,
                                    (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 40, 1e-8)).reshape(-1, 2)
    np.testing.assert_allclose(intr.undistort_points(edge), truth, atol=2.0)


def test_too_few_views_is_a_typed_error() -> None:
    blank = [np.full((120, 160, 3), 128, np.uint8)] * 6
    with pytest.raises(CalibrationError, match="inner corners"):
        calibrate_images(blank, PATTERN, SQUARE_M)
