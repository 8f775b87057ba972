"""Checkerboard camera calibration (OpenCV) writing an intrinsics file the app reads.

Show a printed checkerboard to the camera from several angles (or pass a folder/video of such
views); every ``every``-th frame in which the full inner-corner grid is found is used, up to
``max_views``. Corners are refined to sub-pixel accuracy and ``cv2.calibrateCamera`` estimates K and
five distortion coefficients (k1, k2, p1, p2, k3). The RMS reprojection error is reported (below about
0.5 px is a good calibration).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np

from app.intrinsics import Intrinsics, save_intrinsics
from app.sources import FrameSource

LOG = logging.getLogger(__name__)


class CalibrationError(RuntimeError):
    """Too few usable checkerboard views, or inconsistent image sizes."""


@dataclass(frozen=True)
class CalibrationResult:
    """Outcome of a calibration.

    Attributes:
        intrinsics: the estimated camera (``assumed=False``).
        rms_px: RMS reprojection error over all corners, pixels.
        views_used: number of images in which the board was found and used.
        views_seen: number of images examined.
    """

    intrinsics: Intrinsics
    rms_px: float
    views_used: int
    views_seen: int


def parse_pattern(text: str) -> tuple[int, int]:
    """``"9x6"`` -> (9, 6): inner corners per row and per column."""
    parts = text.lower().replace("*", "x").split("x")
    try:
        cols, rows = int(parts[0]), int(parts[1])
    except (IndexError, ValueError) as err:
        raise ValueError(f"pattern must look like 9x6 (inner corners per row x per column), got {text!r}") from err
    if len(parts) != 2 or cols < 2 or rows < 2:
        raise ValueError(f"pattern must be at least 2x2 inner corners, got {text!r}")
    return cols, rows


def board_points(pattern: tuple[int, int], square_m: float) -> np.ndarray:
    """``(cols*rows, 3)`` float32 corner positions on the board plane (z = 0), metres, row-major."""
    cols, rows = pattern
    grid = np.mgrid[0:cols, 0:rows].T.reshape(-1, 2).astype(np.float32)
    return np.concatenate([grid * float(square_m), np.zeros((len(grid), 1), np.float32)], axis=1)


def find_corners(bgr_or_gray: np.ndarray, pattern: tuple[int, int]) -> np.ndarray | None:
    """Sub-pixel inner corners ``(cols*rows, 1, 2)`` float32 in OpenCV's order, or None when not found."""
    gray = bgr_or_gray if bgr_or_gray.ndim == 2 else cv2.cvtColor(bgr_or_gray, cv2.COLOR_BGR2GRAY)
    flags = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE | cv2.CALIB_CB_FAST_CHECK
    found, corners = cv2.findChessboardCorners(gray, pattern, flags=flags)
    if not found:
        return None
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_MAX_ITER, 50, 1e-4)
    return cv2.cornerSubPix(gray, corners, (5, 5), (-1, -1), criteria)


def calibrate_images(
    images: Iterable[np.ndarray],
    pattern: tuple[int, int],
    square_m: float,
    *,
    every: int = 1,
    max_views: int = 40,
    min_views: int = 5,
) -> CalibrationResult:
    """Calibrate from BGR or grayscale images of a checkerboard.

    Args:
        images: frames showing the board (all the same size).
        pattern: inner corners (per row, per column).
        square_m: side of one square, metres (sets the scale of the board poses; K does not depend on it).
        every: use every n-th image (skip near-duplicate video frames).
        max_views: stop after this many usable views.
        min_views: fewer usable views raise :class:`CalibrationError`.
    """
    if square_m <= 0:
        raise ValueError(f"square size must be positive, got {square_m}")
    obj = board_points(pattern, square_m)
    object_points: list[np.ndarray] = []
    image_points: list[np.ndarray] = []
    size: tuple[int, int] | None = None
    seen = 0
    for i, image in enumerate(images):
        if i % max(1, every):
            continue
        seen += 1
        frame_size = (int(image.shape[1]), int(image.shape[0]))
        if size is not None and frame_size != size:
            raise CalibrationError(f"image {i} is {frame_size[0]}x{frame_size[1]}, expected {size[0]}x{size[1]}")
        size = frame_size
        corners = find_corners(image, pattern)
        if corners is None:
            continue
        object_points.append(obj)
        image_points.append(corners)
        if len(image_points) >= max_views:
            break
    if size is None or len(image_points) < min_views:
        raise CalibrationError(
            f"the {pattern[0]}x{pattern[1]} checkerboard was found in {len(image_points)} of {seen} images; "
            f"need at least {min_views}. Check --pattern (inner corners, not squares), light, focus, and show "
            "the whole board at several tilts and distances."
        )
    rms, K, dist, _, _ = cv2.calibrateCamera(object_points, image_points, size, None, None)
    intrinsics = Intrinsics(K=K, dist=np.asarray(dist).reshape(-1), size=size, assumed=False,
                            origin=f"checkerboard calibration, {len(image_points)} views")
    return CalibrationResult(intrinsics=intrinsics, rms_px=float(rms), views_used=len(image_points), views_seen=seen)


def calibrate_source(
    source: FrameSource,
    pattern: tuple[int, int],
    square_m: float,
    out_path: str | Path,
    *,
    every: int = 1,
    max_views: int = 40,
    max_frames: int = 2000,
) -> CalibrationResult:
    """Calibrate from a frame source and write the intrinsics file (YAML/XML/JSON by suffix)."""

    def frames() -> Iterable[np.ndarray]:
        for n, frame in enumerate(source):
            if n >= max_frames:
                return
            yield frame.bgr

    result = calibrate_images(frames(), pattern, square_m, every=every, max_views=max_views)
    save_intrinsics(result.intrinsics, out_path, rms_px=result.rms_px)
    LOG.info("calibrated from %d views, RMS %.3f px -> %s", result.views_used, result.rms_px, out_path)
    return result


def render_checkerboard_view(
    K: np.ndarray,
    dist: np.ndarray | None,
    size: tuple[int, int],
    pattern: tuple[int, int],
    square_m: float,
    rvec: np.ndarray,
    tvec: np.ndarray,
    *,
    px_per_square: int = 40,
) -> np.ndarray:
    """Synthetic grayscale-in-BGR image of a checkerboard seen by a camera (tests, demos).

    The board has ``pattern + 1`` squares per side with a white border of one square; it is placed by
    ``rvec``/``tvec`` (board -> camera, metres) and rendered with a homography (no distortion) or, when
    ``dist`` is given, by remapping every pixel through the lens model.
    """
    cols, rows = pattern[0] + 1, pattern[1] + 1
    tex_w, tex_h = (cols + 2) * px_per_square, (rows + 2) * px_per_square
    texture = np.full((tex_h, tex_w), 255, np.uint8)
    for r in range(rows):
        for c in range(cols):
            if (r + c) % 2 == 0:
                y0, x0 = (r + 1) * px_per_square, (c + 1) * px_per_square
                texture[y0:y0 + px_per_square, x0:x0 + px_per_square] = 0
    # Board coordinates: inner corner (0, 0) is at texture pixel (2, 2) squares; one square = square_m.
    tex_corners = np.array([[0, 0], [tex_w, 0], [tex_w, tex_h], [0, tex_h]], np.float64)
    board_xy = (tex_corners / px_per_square - 2.0) * square_m
    board_xyz = np.concatenate([board_xy, np.zeros((4, 1))], axis=1)
    width, height = size
    if dist is None or not np.any(np.asarray(dist)):
        img_corners, _ = cv2.projectPoints(board_xyz, rvec, tvec, K, None)
        H = cv2.getPerspectiveTransform(
            tex_corners.astype(np.float32) - 0.5, img_corners.reshape(4, 2).astype(np.float32)
        )
        gray = cv2.warpPerspective(texture, H, (width, height), flags=cv2.INTER_AREA, borderValue=128)
    else:
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        pix = np.stack([xs.ravel(), ys.ravel()], 1).reshape(-1, 1, 2)
        ideal = cv2.undistortPointsIter(pix, K, np.asarray(dist, np.float64), None, None,
                                        (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 30, 1e-8)).reshape(-1, 2)
        R, _ = cv2.Rodrigues(np.asarray(rvec, np.float64))
        H_plane = K @ np.column_stack([R[:, 0], R[:, 1], np.asarray(tvec, np.float64).reshape(3)])
        rays = np.column_stack([ideal, np.ones(len(ideal))]) @ K.T
        board = rays @ np.linalg.inv(H_plane).T
        board_xy_m = board[:, :2] / board[:, 2:3]
        tex = (board_xy_m / square_m + 2.0) * px_per_square - 0.5
        behind = board[:, 2] <= 0
        tex[behind] = -1e6
        gray = cv2.remap(texture, tex[:, 0].reshape(height, width).astype(np.float32),
                         tex[:, 1].reshape(height, width).astype(np.float32), cv2.INTER_LINEAR, borderValue=128)
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
