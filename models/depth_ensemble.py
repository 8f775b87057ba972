"""Wrist depth averaged over the three cue runs of one network (the fused cue's depth ensemble).

DGP (Valassakis and Garcia-Hernando, HandDGP, ECCV 2024) puts the hand at the depth where its 3D joints'
spread projects onto the 2D joints' spread, so every error of the 3D shape's lateral spread and of its
size becomes a depth error. One network with a per-row cue mask gives three such solves for the same
hand: ``fused`` (MediaPipe's 2D and 3D landmarks), ``mediapipe`` (2D only) and ``network`` (image only).
Their shapes come from different inputs, and so do their depth errors: on the 358 cached synthetic test
crops the three wrist-depth errors correlate only 0.46-0.73 with each other, and on the 695 hands of the
synthetic test frames through the app's own path (``python -m app.evaluate_app synth --cue all``, shipped
weights) their mean takes the fused mesh's camera-space MPJPE from 72.2 to 67.4 mm with the hand size
unknown and from 58.1 to 50.4 mm with the true size given; the other two cues alone give 69.3-70.5
(51.4-53.1).

The fused mesh keeps its own shape; only where it sits changes:

- hand size unknown (:func:`rescale_about_camera`): the mesh and its translation are scaled about the
  camera centre until the wrist reaches the averaged depth. Projections are unchanged (the overlay stays
  exactly where it was), the hand's metric size follows the depth.
- hand size given (:func:`translation_at_depth`): the size is the user's, so the wrist is put at the
  averaged depth and only the lateral translation is solved again (weighted least squares of the DGP
  rows with the depth fixed).

Pure numpy, batched (B hands); frames are the crop's virtual camera, metres and crop pixels.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.depth_guard import MIN_DEPTH_M
from models.m3dhmr import MAX_HAND_LENGTH_M, MIN_HAND_LENGTH_M


def mean_depth(depths: np.ndarray) -> np.ndarray:
    """``(B,)`` the mean of each row's plausible member depths.

    depths ``(B, K)`` metres, column 0 the primary run (the fused cue). Members that are not finite or
    nearer than ``models.depth_guard.MIN_DEPTH_M`` (no hand in view is that near) are left out; a row
    without any plausible member keeps column 0.
    """
    d = np.asarray(depths, np.float64)
    if d.ndim != 2 or d.shape[1] < 1:
        raise ValueError(f"depths must be (B, K) with K >= 1, got {d.shape}")
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(d) & (d >= MIN_DEPTH_M)
    count = ok.sum(axis=1)
    total = np.where(ok, d, 0.0).sum(axis=1)
    return np.where(count > 0, total / np.maximum(count, 1), d[:, 0])


@dataclass(frozen=True)
class PlacedHands:
    """The primary run's hands after the ensemble: translation_virt ``(B, 3)`` wrist in the crop's camera;
    vertices_rel ``(B, V, 3)``, joints_rel ``(B, 21, 3)`` wrist-relative; hand_length ``(B,)``; all metres,
    float64; scale ``(B,)`` the factor applied about the camera centre (1 where the size was kept)."""

    translation_virt: np.ndarray
    vertices_rel: np.ndarray
    joints_rel: np.ndarray
    hand_length: np.ndarray
    scale: np.ndarray


def rescale_about_camera(translation_virt: np.ndarray, vertices_rel: np.ndarray, joints_rel: np.ndarray,
                         hand_length: np.ndarray, depth: np.ndarray) -> PlacedHands:
    """Scale each hand about the camera centre so its wrist sits at ``depth`` ``(B,)`` metres.

    The factor keeps the hand length within the network's own range (``MIN_HAND_LENGTH_M`` ..
    ``MAX_HAND_LENGTH_M``) and is 1 where the current wrist depth is not positive and finite.
    """
    t = np.asarray(translation_virt, np.float64)
    length = np.asarray(hand_length, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.asarray(depth, np.float64) / t[:, 2]
        usable = np.isfinite(scale) & (scale > 0.0) & (t[:, 2] > 0.0) & (length > 0.0)
        scale = np.where(usable, scale, 1.0)
        low, high = MIN_HAND_LENGTH_M / np.maximum(length, 1e-9), MAX_HAND_LENGTH_M / np.maximum(length, 1e-9)
    scale = np.where(usable, np.clip(scale, np.minimum(low, 1.0), np.maximum(high, 1.0)), 1.0)
    s3 = scale[:, None, None]
    return PlacedHands(
        translation_virt=t * scale[:, None],
        vertices_rel=np.asarray(vertices_rel, np.float64) * s3,
        joints_rel=np.asarray(joints_rel, np.float64) * s3,
        hand_length=length * scale,
        scale=scale,
    )


def translation_at_depth(joints_rel: np.ndarray, joints_2d: np.ndarray, K_virt: np.ndarray, weights: np.ndarray,
                         depth: np.ndarray) -> np.ndarray:
    """``(B, 3)`` wrist translation with its depth fixed to ``depth`` ``(B,)`` and the lateral part from
    DGP's rows ``X + tx = x (Z + tz)``, ``Y + ty = y (Z + tz)`` in weighted least squares.

    joints_rel ``(B, 21, 3)`` wrist-relative metres; joints_2d ``(B, 21, 2)`` crop px; K_virt ``(B, 3, 3)``;
    weights ``(B, 21)`` >= 0 (DGP's per-joint weights; a row of zeros counts every joint equally).
    """
    rel = np.asarray(joints_rel, np.float64)
    uv = np.asarray(joints_2d, np.float64)
    k = np.asarray(K_virt, np.float64)
    tz = np.asarray(depth, np.float64)
    y = (uv[..., 1] - k[:, 1, 2, None]) / k[:, 1, 1, None]
    x = (uv[..., 0] - k[:, 0, 2, None] - k[:, 0, 1, None] * y) / k[:, 0, 0, None]
    w2 = np.square(np.asarray(weights, np.float64))
    w2 = np.where(w2.sum(axis=1, keepdims=True) > 0.0, w2, 1.0)
    w2 = w2 / w2.sum(axis=1, keepdims=True)
    depth_j = rel[..., 2] + tz[:, None]
    tx = (w2 * (x * depth_j - rel[..., 0])).sum(axis=1)
    ty = (w2 * (y * depth_j - rel[..., 1])).sum(axis=1)
    return np.stack([tx, ty, tz], axis=-1)


def place_with_ensemble(translation_virt: np.ndarray, vertices_rel: np.ndarray, joints_rel: np.ndarray,
                        hand_length: np.ndarray, joints_2d: np.ndarray, K_virt: np.ndarray, weights: np.ndarray,
                        member_depths: np.ndarray, size_given: bool) -> PlacedHands:
    """The primary run's hands placed at the mean of its own wrist depth and ``member_depths`` ``(B, K)``
    (the other cue runs' wrist depths, metres): rescaled about the camera when the size is unknown, moved
    to that depth at the given size otherwise. Arguments as :func:`rescale_about_camera` and
    :func:`translation_at_depth`."""
    t = np.asarray(translation_virt, np.float64)
    depth = mean_depth(np.concatenate([t[:, 2:3], np.asarray(member_depths, np.float64).reshape(len(t), -1)], axis=1))
    if not size_given:
        return rescale_about_camera(t, vertices_rel, joints_rel, hand_length, depth)
    moved = translation_at_depth(joints_rel, joints_2d, K_virt, weights, depth)
    keep = ~np.isfinite(moved).all(axis=1)
    return PlacedHands(
        translation_virt=np.where(keep[:, None], t, moved),
        vertices_rel=np.asarray(vertices_rel, np.float64),
        joints_rel=np.asarray(joints_rel, np.float64),
        hand_length=np.asarray(hand_length, np.float64),
        scale=np.ones(len(t)),
    )
