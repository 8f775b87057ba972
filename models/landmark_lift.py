"""Put MediaPipe's 3D landmarks on the camera rays of its 2D landmarks (the fused cue's ray lift).

MediaPipe returns two estimates of each hand: 2D landmarks in the image and 3D "world" landmarks
(metric, wrist-relative after ``models.mediapipe_frame``) from a separate head. On our synthetic test
frames the 2D landmarks are the sharper of the two: 8.0 px mean error in the 128 px crop against
11.1 px for the world landmarks projected with their best translation (README, "The ray lift").
The lift keeps what only the world landmarks know, each joint's depth, and takes the image-plane
position from the 2D landmarks:

1. ``t``: the translation that best projects the world landmarks onto the 2D landmarks (the DGP solve,
   ``models.dgp.solve_translation``, with uniform weights), so ``P_j = X_j + t`` is in the crop's camera;
2. ``Q_j = z(P_j) * K^-1 [u_j, v_j, 1]``: the point of joint j's 2D ray at P_j's depth;
3. the output is ``blend * Q + (1 - blend) * P``, wrist-relative again.

Plain tensor ops, so it exports to ONNX inside the network and runs the same in training.
"""
from __future__ import annotations

import torch
from torch import Tensor

from models.dgp import pixels_to_normalized, solve_translation

MIN_DEPTH_M: float = 0.02
"""Rows whose placed landmarks come nearer the camera than this (a degenerate solve) keep their input."""


def lift_landmarks_to_rays(landmarks_rel: Tensor, points_2d: Tensor, intrinsics: Tensor, blend: float,
                           mask: Tensor | None = None) -> Tensor:
    """Landmarks moved onto their 2D rays at their own depth (see module docstring).

    landmarks_rel ``(B, 21, 3)`` metres, wrist-relative, axes of the camera with ``intrinsics (B, 3, 3)``;
    points_2d ``(B, 21, 2)`` pixels of that camera; blend in [0, 1] (0 returns the input); mask ``(B,)``
    (1 = the row has landmarks; rows at 0 are returned unchanged). Returns ``(B, 21, 3)`` metres,
    wrist-relative. Rows whose solve is degenerate (non-finite, or a joint nearer than ``MIN_DEPTH_M``)
    are returned unchanged too.
    """
    if blend == 0.0:
        return landmarks_rel
    weights = torch.ones_like(landmarks_rel[..., 0])
    translation = solve_translation(landmarks_rel, points_2d, intrinsics, weights).translation
    placed = landmarks_rel + translation.unsqueeze(1)
    normalized = pixels_to_normalized(points_2d, intrinsics)
    rays = torch.cat([normalized, torch.ones_like(normalized[..., :1])], dim=-1)
    on_rays = rays * placed[..., 2:3]
    lifted = blend * on_rays + (1.0 - blend) * placed
    lifted = lifted - lifted[:, :1]
    ok = torch.isfinite(lifted).all(dim=2).all(dim=1) & (placed[..., 2] > MIN_DEPTH_M).all(dim=1)
    if mask is not None:
        ok = ok & (mask.reshape(-1) > 0.5)
    return torch.where(ok.reshape(-1, 1, 1), lifted, landmarks_rel)
