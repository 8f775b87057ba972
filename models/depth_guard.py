"""Plausibility guard for the DGP translation: the depth must agree with the hand's size in the image.

DGP solves the translation from 2D-3D correspondences; with an inconsistent 3D shape or a few bad 2D
points it can put the hand much too near or too far (a measured failure: hands 0.11 m from the camera
as giant meshes). Weak perspective gives an independent depth: a hand whose joints spread ``r`` metres
(RMS distance from their centroid, in the image plane of the crop's camera) and ``rho`` pixels in the
crop is at ``z = f * r / rho``. When the DGP depth leaves ``[z / MAX_RATIO, z * MAX_RATIO]`` or comes closer
than :data:`MIN_DEPTH_M`, the translation is replaced by the weak-perspective one (the centroid of the
joints on the ray through the centroid of the 2D points, at that depth). Pure numpy, batched.
"""
from __future__ import annotations

import numpy as np

MIN_DEPTH_M: float = 0.08
"""No hand is closer to a camera than this and still seen whole by a hand detector."""
MAX_RATIO: float = 1.5
"""Largest accepted ratio between the DGP depth and the size-implied depth (either way)."""


def size_implied_translation(joints_rel: np.ndarray, joints_2d: np.ndarray, K_virt: np.ndarray) -> np.ndarray:
    """Weak-perspective wrist translation ``(B, 3)`` metres in the crop's camera.

    joints_rel ``(B, 21, 3)`` wrist-relative joints (crop frame, metres); joints_2d ``(B, 21, 2)`` crop px
    the joints should project to; K_virt ``(B, 3, 3)``.
    """
    rel = np.asarray(joints_rel, np.float64)
    uv = np.asarray(joints_2d, np.float64)
    k = np.asarray(K_virt, np.float64)
    focal = 0.5 * (k[:, 0, 0] + k[:, 1, 1])
    c3 = rel.mean(axis=1)
    c2 = uv.mean(axis=1)
    spread3 = np.sqrt(((rel[..., :2] - c3[:, None, :2]) ** 2).sum(-1).mean(-1))
    spread2 = np.sqrt(((uv - c2[:, None, :]) ** 2).sum(-1).mean(-1))
    depth = focal * spread3 / np.maximum(spread2, 1e-6)
    ray_x = (c2[:, 0] - k[:, 0, 2]) / k[:, 0, 0]
    ray_y = (c2[:, 1] - k[:, 1, 2]) / k[:, 1, 1]
    centroid = np.stack([ray_x * depth, ray_y * depth, depth], axis=-1)
    return centroid - c3


def guard_translation(
    translation_virt: np.ndarray, joints_rel: np.ndarray, joints_2d: np.ndarray, K_virt: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(translation (B, 3), guarded (B,) bool)``: DGP's translation where plausible, else the size-implied one."""
    t = np.asarray(translation_virt, np.float64)
    fallback = size_implied_translation(joints_rel, joints_2d, K_virt)
    rel_z = np.asarray(joints_rel, np.float64)[..., 2].mean(axis=1)
    z_dgp = t[:, 2] + rel_z
    z_size = fallback[:, 2] + rel_z
    ratio = z_dgp / np.maximum(z_size, 1e-6)
    bad = (~np.isfinite(z_dgp)) | (t[:, 2] < MIN_DEPTH_M) | (ratio > MAX_RATIO) | (ratio < 1.0 / MAX_RATIO)
    return np.where(bad[:, None], fallback, t), bad
