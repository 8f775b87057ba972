"""Immutable per-hand and per-frame results handed from the pipeline to its consumers.

Frames and units used throughout:
- ``*_img``: pixels of the frame as captured (lens distortion applied when the intrinsics have it),
  x right, y down, pixel centres at integer coordinates (OpenCV). ``box_img`` is the exception: it
  bounds the crop's footprint in undistorted (pinhole ``K``) pixels.
- ``*_cam``: the real camera's frame, metres, x right, y down, z forward (OpenCV convention).
- Joint order is MediaPipe's/FreiHAND's 21 joints: 0 wrist; 1-4 thumb CMC->tip; 5-8 index MCP->tip;
  9-12 middle; 13-16 ring; 17-20 little.

All arrays are numpy, float32 unless stated, and must not be modified by consumers.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Mapping

import numpy as np

STAGES: tuple[str, ...] = ("read", "detect", "crop", "network", "dgp", "smoothing", "draw")


@dataclass(frozen=True)
class HandResult:
    """One hand in one frame.

    Attributes:
        track_id: identity kept across frames by the tracker (never reused within a run).
        handedness: ``"left"`` or ``"right"``: the person's hand, as seen by an unmirrored camera.
        detection_score: MediaPipe's handedness/presence score in [0, 1].
        confidence: per-hand confidence in [0, 1]: detection score times the mean DGP joint weight.
        box_img: ``(4,)`` x0, y0, x1, y1 of the square crop box (with margin), pixels.
        landmarks_img: ``(21, 2)`` MediaPipe's 2D landmarks, pixels.
        joints_img: ``(21, 2)`` the recovered camera-space joints projected with ``K``, pixels.
        joints_cam: ``(21, 3)`` camera-space joints, metres.
        vertices_cam: ``(V, 3)`` camera-space mesh vertices, metres (triangles: ``FrameResult.faces_for(hand)``,
            which reverses the winding for left hands, whose mesh is the mirror image of a right hand).
        translation_cam: ``(3,)`` camera-space position of the root joint (wrist), metres.
        dgp_weights: ``(21,)`` the network's per-joint DGP weights in (0, 1).
        cue: the cue the network ran with: ``"fused"``, ``"mediapipe"`` or ``"network"``.
        hand_length_m: the mesh's hand length (wrist to middle fingertip along the finger), metres: the
            user's setting when given, else the network's estimate.
        depth_source: ``"dgp"`` (the fused run's own DGP solve, or the only run of another cue),
            ``"ensemble"`` (the mean wrist depth of the three cue runs, ``PipelineOptions.depth_ensemble``),
            or ``"size"`` when the plausibility guard replaced an impossible depth by the depth the hand's
            size and its image extent imply.
    """

    track_id: int
    handedness: str
    detection_score: float
    confidence: float
    box_img: np.ndarray
    landmarks_img: np.ndarray
    joints_img: np.ndarray
    joints_cam: np.ndarray
    vertices_cam: np.ndarray
    translation_cam: np.ndarray
    dgp_weights: np.ndarray
    cue: str = "fused"
    hand_length_m: float = 0.0
    depth_source: str = "dgp"

    @property
    def depth_m(self) -> float:
        """Depth (z) of the wrist in the camera frame, metres."""
        return float(self.translation_cam[2])

    @property
    def distance_m(self) -> float:
        """Euclidean distance from the camera centre to the wrist, metres."""
        return float(np.linalg.norm(self.translation_cam))

    @property
    def box_size_px(self) -> float:
        """Side length of the (square) crop box, pixels."""
        return float(max(self.box_img[2] - self.box_img[0], self.box_img[3] - self.box_img[1]))


@dataclass(frozen=True)
class FrameResult:
    """Everything the pipeline knows about one frame.

    Attributes:
        index: the source frame's index.
        t: the source frame's time stamp, seconds.
        image_size: ``(width, height)`` of the frame, pixels.
        K: ``(3, 3)`` float64 intrinsics used for this frame (scaled to ``image_size``).
        dist: ``(n,)`` float64 distortion coefficients (OpenCV order; empty when none).
        intrinsics_assumed: True when ``K`` comes from the field-of-view default, not a calibration.
        hands: results per hand, ordered by ``track_id``.
        faces_right: ``(F, 3)`` int64 triangle indices for right-hand meshes (outward CCW winding);
            left-hand meshes are mirrored and use the reversed winding (see :meth:`faces_for`).
        timings_ms: per-stage wall time in milliseconds (keys from :data:`STAGES` that ran).
        backend: a short description of the backend and its device/provider.
        hands_dropped: hands detected in this frame whose network output was non-finite or impossible
            (dropped, not reported; see :func:`app.backends.base.implausible_hands`).
    """

    index: int
    t: float
    image_size: tuple[int, int]
    K: np.ndarray
    dist: np.ndarray
    intrinsics_assumed: bool
    hands: tuple[HandResult, ...]
    faces_right: np.ndarray
    timings_ms: Mapping[str, float] = field(default_factory=dict)
    backend: str = ""
    hands_dropped: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "timings_ms", MappingProxyType(dict(self.timings_ms)))

    def faces_for(self, hand: HandResult) -> np.ndarray:
        """``(F, 3)`` faces of ``hand``'s mesh with outward winding (reversed for left hands)."""
        return self.faces_right if hand.handedness == "right" else self.faces_right[:, ::-1]

    def with_timing(self, stage: str, milliseconds: float) -> "FrameResult":
        """A copy with one more stage time (consumers add ``read`` and ``draw``)."""
        timings = dict(self.timings_ms)
        timings[stage] = float(milliseconds)
        return replace(self, timings_ms=timings)

    @property
    def total_ms(self) -> float:
        """Sum of the recorded stage times, milliseconds."""
        return float(sum(self.timings_ms.values()))
