"""MediaPipe's world landmarks as a network input: their frame, measured, and the map into the crop's frame.

What MediaPipe HandLandmarker (0.10.21) calls *world landmarks* (``(21, 3)`` per hand) is a metric 3D
hand. We fitted its frame on 163 synthetic frames with exact ground truth (``python -m
app.mediapipe_labels frame-report``; figures in README "MediaPipe's world landmarks"):

* units: metres; the hand is scaled to a typical adult size (its wrist-to-middle-tip chain length is
  uncorrelated with the true hand size: correlation 0.03; median ratio to ours 0.91);
* origin: near the centroid of the 21 landmarks (not the wrist);
* axes: those of the camera (x right, y down, z away from the camera). The best rotation from the
  world landmarks onto the true camera-frame joints has a mean rotation vector of about
  (-1.5, -3.6, -1.2) degrees with spreads of 22, 23 and 9 degrees around x, y and z: no systematic
  rotation, only MediaPipe's own out-of-plane tilt error. Expressed in the hand's virtual (ray-aligned)
  camera the mean joint error is lower than in the raw camera frame (34.8 vs 37.8 mm wrist-relative),
  so the world landmarks are treated as seen by a camera looking straight at the hand.

Therefore the network's fused cue is ``virt_from_cam @ (world - world[wrist])``: rotated like the crop,
mirrored with it for left hands, wrist-relative, metres. Pure numpy/torch, batched ``(*, 21, 3)``.
"""
from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

Array = TypeVar("Array", np.ndarray, torch.Tensor)

WRIST: int = 0
MIDDLE_CHAIN: tuple[int, ...] = (0, 9, 10, 11, 12)
"""Wrist, middle MCP, PIP, DIP, tip: the chain whose summed bone length we call the hand length."""


def world_landmarks_to_virtual(world: Array, virt_from_cam: Array) -> Array:
    """MediaPipe world landmarks ``(*, 21, 3)`` metres (camera axes, centroid origin) -> wrist-relative
    points in the virtual camera ``(*, 21, 3)`` metres, with ``virt_from_cam (*, 3, 3)`` (rotation, times
    a mirror for left hands)."""
    rel = world - world[..., WRIST : WRIST + 1, :]
    if isinstance(rel, torch.Tensor):
        return rel @ virt_from_cam.to(rel.dtype).transpose(-1, -2)
    return rel @ np.swapaxes(np.asarray(virt_from_cam, dtype=rel.dtype), -1, -2)


def hand_length(joints: Array) -> Array:
    """Hand length ``(*,)``: summed bone lengths wrist -> middle MCP -> PIP -> DIP -> tip of ``joints
    (*, 21, 3)``, in the joints' unit. Pose-invariant; for a flat hand it is the anthropometric hand length
    (wrist crease to the middle fingertip), about 0.17-0.20 m for adults."""
    chain = joints[..., list(MIDDLE_CHAIN), :]
    bones = chain[..., 1:, :] - chain[..., :-1, :]
    if isinstance(bones, torch.Tensor):
        return (bones * bones).sum(dim=-1).clamp_min(1e-12).sqrt().sum(dim=-1)
    return np.linalg.norm(bones, axis=-1).sum(axis=-1)
