"""MediaPipe's world landmarks as a network input: their frame, measured, and the map into the crop's frame.

What MediaPipe HandLandmarker (0.10.21) calls *world landmarks* (``(21, 3)`` per hand) is a metric 3D
hand. We fitted its frame on synthetic frames with exact ground truth (``python -m app.mediapipe_labels
frame-report --n 200``: 133 matched hands; figures also in README "MediaPipe in the loop"):

* units: metres; the hand is scaled to a typical adult size (its wrist-to-middle-tip chain length is
  nearly uncorrelated with the true hand length: correlation 0.12; median ratio to ours 0.91);
* origin: near the centroid of the 21 landmarks (mean centroid within 6 mm of the origin), not the wrist;
* axes: those of the camera (x right, y down, z away from the camera). The best rotation from the
  world landmarks onto the true camera-frame joints has a mean rotation vector of (-3.7, -3.0, -2.2)
  degrees with spreads of 18, 25 and 11 degrees around x, y and z: no systematic rotation, only
  MediaPipe's own out-of-plane error (37.6 mm mean wrist-relative error as they are, 18.2 mm after the
  best rotation). Seen from the hand's rectified (ray-aligned) camera the error is the same 37.6 mm, so
  the world landmarks can be treated as seen by a camera looking straight at the hand.

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
    if isinstance(joints, torch.Tensor):  # integer views, not a list index: no host-to-device copy (CUDA graphs)
        chain = torch.stack([joints[..., j, :] for j in MIDDLE_CHAIN], dim=-2)
        bones = chain[..., 1:, :] - chain[..., :-1, :]
        return (bones * bones).sum(dim=-1).clamp_min(1e-12).sqrt().sum(dim=-1)
    chain = joints[..., list(MIDDLE_CHAIN), :]
    bones = chain[..., 1:, :] - chain[..., :-1, :]
    return np.linalg.norm(bones, axis=-1).sum(axis=-1)
