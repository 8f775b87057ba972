"""Rectified hand crops: from MediaPipe landmarks to the batched network input of one frame.

For each hand, :func:`models.rectify.rectification_from_box` gives the rotation of a virtual camera
that looks straight at the hand, its intrinsics ``K_virt`` (the hand fills the ``S x S`` crop with a
margin) and the homography ``H = K_virt @ virt_from_cam @ K^-1`` (crop pixels from image pixels).
Left hands are mirrored (``virt_from_cam`` includes ``diag(-1, 1, 1)``), so the network only ever sees
right-looking hands. This module only warps images; the geometry lives in ``models/``.

Crops are RGB (the network's colour order), uint8, ``(B, S, S, 3)``, stacked so that all hands of a
frame go through one network call.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from app.intrinsics import Intrinsics
from models.mediapipe_frame import world_landmarks_to_virtual
from models.rectify import crop_to_image, image_to_crop, rectification_from_box

DEFAULT_MARGIN: float = 0.25
"""Fraction of the landmark box added around the hand in the crop (MediaPipe boxes are tight)."""


@dataclass(frozen=True)
class CropBatch:
    """All hands of one frame, ready for one backend call.

    Attributes:
        crops_rgb: ``(B, S, S, 3)`` uint8 RGB crops.
        K_virt: ``(B, 3, 3)`` float32 virtual-camera intrinsics, crop pixels.
        virt_to_cam: ``(B, 3, 3)`` float32, ``X_cam = virt_to_cam @ X_virt`` (det -1 for mirrored hands).
        H: ``(B, 3, 3)`` float64 crop-from-image homographies (ideal pinhole image pixels).
        mirror: ``(B,)`` bool, True for left hands.
        boxes_img: ``(B, 4)`` float32 x0, y0, x1, y1 bounding the crop's footprint in the image, pixels.
        landmarks_crop: ``(B, 21, 2)`` float32 MediaPipe landmarks mapped into the crops, crop pixels.
        landmarks_3d: ``(B, 21, 3)`` float32 MediaPipe's world landmarks in each crop's frame (rotated like
            the crop, mirrored with it, wrist-relative), metres; zeros when not given.
    """

    crops_rgb: np.ndarray
    K_virt: np.ndarray
    virt_to_cam: np.ndarray
    H: np.ndarray
    mirror: np.ndarray
    boxes_img: np.ndarray
    landmarks_crop: np.ndarray
    landmarks_3d: np.ndarray

    def __len__(self) -> int:
        return int(self.crops_rgb.shape[0])


def empty_crop_batch(crop_size: int) -> CropBatch:
    """A batch with zero hands (keeps shapes consistent for B = 0)."""
    s = int(crop_size)
    return CropBatch(
        crops_rgb=np.zeros((0, s, s, 3), np.uint8),
        K_virt=np.zeros((0, 3, 3), np.float32),
        virt_to_cam=np.zeros((0, 3, 3), np.float32),
        H=np.zeros((0, 3, 3), np.float64),
        mirror=np.zeros((0,), bool),
        boxes_img=np.zeros((0, 4), np.float32),
        landmarks_crop=np.zeros((0, 21, 2), np.float32),
        landmarks_3d=np.zeros((0, 21, 3), np.float32),
    )


def landmark_box(landmarks_img: np.ndarray) -> np.ndarray:
    """Tight ``(4,)`` float64 x0, y0, x1, y1 box of ``(21, 2)`` landmarks, at least 1 pixel wide."""
    pts = np.asarray(landmarks_img, dtype=np.float64)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    centre = 0.5 * (lo + hi)
    half = np.maximum(0.5 * (hi - lo), 0.5)
    return np.concatenate([centre - half, centre + half])


def _crop_footprint_boxes(H: np.ndarray, crop_size: int) -> np.ndarray:
    s = float(crop_size - 1)
    corners = np.array([[0.0, 0.0], [s, 0.0], [s, s], [0.0, s]])
    img = crop_to_image(np.broadcast_to(corners, (H.shape[0], 4, 2)).copy(), H)
    return np.concatenate([img.min(axis=1), img.max(axis=1)], axis=1).astype(np.float32)


def _warp_distorted(bgr: np.ndarray, H: np.ndarray, intrinsics: Intrinsics, crop_size: int) -> np.ndarray:
    """Warp through the lens model: crop pixel -> ideal image pixel (H^-1) -> distorted pixel -> sample."""
    s = int(crop_size)
    ys, xs = np.mgrid[0:s, 0:s].astype(np.float64)
    crop_pts = np.stack([xs.ravel(), ys.ravel()], axis=1)
    ideal = crop_to_image(crop_pts, H)
    K = intrinsics.K
    rays = np.stack([(ideal[:, 0] - K[0, 2]) / K[0, 0], (ideal[:, 1] - K[1, 2]) / K[1, 1], np.ones(len(ideal))], 1)
    distorted, _ = cv2.projectPoints(rays.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), K, intrinsics.dist)
    maps = distorted.reshape(s, s, 2).astype(np.float32)
    return cv2.remap(bgr, maps[..., 0], maps[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def make_crop_batch(
    bgr: np.ndarray,
    intrinsics: Intrinsics,
    landmarks_img: Sequence[np.ndarray],
    mirror: Sequence[bool],
    *,
    crop_size: int,
    margin: float = DEFAULT_MARGIN,
    world_landmarks: Sequence[np.ndarray] | None = None,
) -> CropBatch:
    """Warp every hand of one frame into its rectified crop.

    Args:
        bgr: ``(H, W, 3)`` uint8 BGR frame (as captured, i.e. with lens distortion if any).
        intrinsics: the frame's intrinsics (already scaled to the frame size).
        landmarks_img: per hand ``(21, 2)`` landmarks in ideal (undistorted) pixel coordinates.
        mirror: per hand, True to mirror the crop (left hands).
        crop_size: S, the network's crop side in pixels.
        margin: extra fraction of the landmark box kept around the hand.
        world_landmarks: per hand ``(21, 3)`` MediaPipe world landmarks (metres, camera axes), or None.
    Returns:
        the stacked :class:`CropBatch` (B = number of hands, may be 0).
    """
    n = len(landmarks_img)
    if n == 0:
        return empty_crop_batch(crop_size)
    lms = np.stack([np.asarray(lm, np.float64) for lm in landmarks_img])
    boxes = np.stack([landmark_box(lm) for lm in lms])
    K = np.broadcast_to(intrinsics.K, (n, 3, 3)).copy()
    mirror_arr = np.asarray(mirror, dtype=bool).reshape(n)
    rect = rectification_from_box(K, boxes, crop_size=crop_size, margin=margin, mirror=mirror_arr)
    H = np.asarray(rect.H, dtype=np.float64)
    landmarks_3d = np.zeros((n, 21, 3), np.float32)
    if world_landmarks is not None:
        world = np.stack([np.asarray(w, np.float64) for w in world_landmarks])
        landmarks_3d = world_landmarks_to_virtual(world, np.asarray(rect.virt_from_cam, np.float64)).astype(np.float32)
    crops = np.empty((n, crop_size, crop_size, 3), np.uint8)
    for i in range(n):
        if intrinsics.has_distortion:
            warped = _warp_distorted(bgr, H[i], intrinsics, crop_size)
        else:
            warped = cv2.warpPerspective(
                bgr, H[i], (crop_size, crop_size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
            )
        crops[i] = warped[:, :, ::-1]
    return CropBatch(
        crops_rgb=crops,
        K_virt=np.asarray(rect.K_virt, dtype=np.float32),
        virt_to_cam=np.asarray(rect.virt_to_cam, dtype=np.float32),
        H=H,
        mirror=mirror_arr,
        boxes_img=_crop_footprint_boxes(H, crop_size),
        landmarks_crop=np.asarray(image_to_crop(lms, H), dtype=np.float32),
        landmarks_3d=landmarks_3d,
    )
