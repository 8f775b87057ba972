"""Temporal smoothing (One Euro filter) and hand identity tracking across frames.

The One Euro filter (Casiez, Roussel and Vogel, CHI 2012) is a low-pass filter whose cut-off rises
with the signal's speed: ``cutoff = min_cutoff + beta * |dx/dt|``, so slow motion is smoothed hard
(no jitter) and fast motion follows with little lag. We filter a hand's camera-space translation and
its root-relative vertices with separate parameters because they move on different scales: the
translation (metres, whole-arm motion) and the shape/pose (millimetres of articulation).

Tracking gives each hand a stable ``track_id``: detections are matched to the previous frame's tracks
by handedness, box overlap (IoU) and centre distance (Hungarian assignment), so two hands never swap
filters, and a hand that is lost for longer than ``max_missed`` frames starts a fresh track.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from app.detection import box_area, box_intersection_area


@dataclass(frozen=True)
class OneEuroParams:
    """One Euro filter parameters.

    Attributes:
        min_cutoff: cut-off frequency at rest, Hz (lower = smoother, more lag when slow).
        beta: speed coefficient, (Hz per unit/s); higher = less lag in fast motion.
        d_cutoff: cut-off for the derivative estimate, Hz.
    """

    min_cutoff: float = 1.0
    beta: float = 0.0
    d_cutoff: float = 1.0


@dataclass(frozen=True)
class SmoothingParams:
    """Parameters for the hand smoother (exposed in the CLI and the UI).

    ``translation`` filters the wrist position in metres; ``shape`` filters root-relative vertices and
    joints in metres. ``enabled=False`` passes values through unchanged.
    """

    enabled: bool = True
    translation: OneEuroParams = OneEuroParams(min_cutoff=1.0, beta=2.0, d_cutoff=1.0)
    shape: OneEuroParams = OneEuroParams(min_cutoff=1.5, beta=10.0, d_cutoff=1.0)

    @classmethod
    def from_strength(cls, strength: float) -> "SmoothingParams":
        """Parameters from one slider value in [0, 1] (0: off, 1: strongest)."""
        s = float(np.clip(strength, 0.0, 1.0))
        if s == 0.0:
            return cls(enabled=False)
        scale = 10.0 ** (1.0 - 2.0 * s)  # 1 -> 0.1x cut-off, 0.5 -> 1x, ~0 -> 10x
        return cls(
            translation=OneEuroParams(min_cutoff=1.0 * scale, beta=2.0, d_cutoff=1.0),
            shape=OneEuroParams(min_cutoff=1.5 * scale, beta=10.0, d_cutoff=1.0),
        )


def _alpha(cutoff: float | np.ndarray, dt: float) -> float | np.ndarray:
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """One Euro filter over arrays of any fixed shape (element-wise, speeds per element).

    Call with the new sample and its time stamp in seconds; returns the filtered sample (float64 of
    the input's shape). Time stamps must increase; a repeated or earlier stamp is treated as 1/120 s.
    """

    def __init__(self, params: OneEuroParams = OneEuroParams()) -> None:
        if params.min_cutoff <= 0 or params.d_cutoff <= 0 or params.beta < 0:
            raise ValueError(f"One Euro parameters must be min_cutoff>0, d_cutoff>0, beta>=0; got {params}")
        self.params = params
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    def reset(self) -> None:
        self._x = self._dx = None
        self._t = None

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        value = np.asarray(x, dtype=np.float64)
        if self._x is None or self._t is None or self._x.shape != value.shape:
            self._x = value.copy()
            self._dx = np.zeros_like(value)
            self._t = float(t)
            return value.copy()
        dt = float(t) - self._t
        if dt <= 0.0:
            dt = 1.0 / 120.0
        p = self.params
        dx = (value - self._x) / dt
        a_d = _alpha(p.d_cutoff, dt)
        self._dx = a_d * dx + (1.0 - a_d) * self._dx
        cutoff = p.min_cutoff + p.beta * np.abs(self._dx)
        a = _alpha(cutoff, dt)
        self._x = a * value + (1.0 - a) * self._x
        self._t = float(t)
        return self._x.copy()


class HandSmoother:
    """Smooths one tracked hand: translation and root-relative geometry with separate filters."""

    def __init__(self, params: SmoothingParams) -> None:
        self.params = params
        self._translation = OneEuroFilter(params.translation)
        self._shape = OneEuroFilter(params.shape)

    def __call__(
        self, translation_cam: np.ndarray, relative: np.ndarray, t: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Filter one frame.

        Args:
            translation_cam: ``(3,)`` wrist position in the camera frame, metres.
            relative: ``(N, 3)`` root-relative points (vertices then joints), metres.
            t: time stamp, seconds.
        Returns:
            ``(translation, relative)`` filtered, same shapes, float32.
        """
        if not self.params.enabled:
            return np.asarray(translation_cam, np.float32), np.asarray(relative, np.float32)
        tr = self._translation(translation_cam, t)
        rel = self._shape(relative, t)
        return tr.astype(np.float32), rel.astype(np.float32)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two ``(4,)`` x0, y0, x1, y1 boxes (pixels)."""
    inter = box_intersection_area(a, b)
    union = box_area(a) + box_area(b) - inter
    return float(inter / union) if union > 0 else 0.0


@dataclass
class Track:
    """State of one tracked hand (mutable, owned by :class:`HandTracker`)."""

    track_id: int
    box: np.ndarray
    handedness_vote: float
    smoother: HandSmoother
    missed: int = 0
    age: int = 0
    last_t: float = 0.0

    @property
    def handedness(self) -> str:
        return "right" if self.handedness_vote >= 0.0 else "left"


@dataclass
class HandTracker:
    """Assigns stable identities to per-frame hand detections.

    Matching cost between a track and a detection: ``(1 - IoU) + centre distance / box diagonal``
    plus ``handedness_penalty`` when the labels differ; pairs whose boxes do not overlap and whose
    centres are farther apart than ``max_centre_distance`` box diagonals are never matched. The
    assignment is optimal (Hungarian). A track's handedness is a score-weighted running vote, so a
    single mislabelled frame does not flip it.
    """

    smoothing: SmoothingParams = field(default_factory=SmoothingParams)
    max_missed: int = 5
    max_centre_distance: float = 1.0
    handedness_penalty: float = 2.0
    vote_decay: float = 0.8
    _tracks: list[Track] = field(default_factory=list)
    _next_id: int = 0

    @property
    def tracks(self) -> tuple[Track, ...]:
        return tuple(self._tracks)

    def reset(self) -> None:
        self._tracks = []

    def set_smoothing(self, params: SmoothingParams) -> None:
        """Change smoothing parameters; the filters of existing tracks restart."""
        self.smoothing = params
        for track in self._tracks:
            track.smoother = HandSmoother(params)

    def _cost(self, track: Track, box: np.ndarray, handedness: str) -> float:
        iou = box_iou(track.box, box)
        c_t = 0.5 * (track.box[:2] + track.box[2:])
        c_d = 0.5 * (box[:2] + box[2:])
        diag = max(1e-6, 0.5 * (np.hypot(*(track.box[2:] - track.box[:2])) + np.hypot(*(box[2:] - box[:2]))))
        dist = float(np.linalg.norm(c_t - c_d)) / diag
        if iou <= 0.0 and dist > self.max_centre_distance:
            return math.inf
        penalty = self.handedness_penalty if handedness != track.handedness else 0.0
        return (1.0 - iou) + dist + penalty

    def update(self, boxes: list[np.ndarray], handedness: list[str], scores: list[float], t: float) -> list[Track]:
        """Match this frame's detections to tracks.

        Args:
            boxes: per detection ``(4,)`` x0, y0, x1, y1 pixels.
            handedness: per detection ``"left"``/``"right"``.
            scores: per detection confidence in [0, 1] (weights the handedness vote).
            t: frame time, seconds.
        Returns:
            the track of each detection, in detection order.
        """
        n_det, n_trk = len(boxes), len(self._tracks)
        assigned: list[Track | None] = [None] * n_det
        if n_det and n_trk:
            cost = np.full((n_trk, n_det), 1e6)
            for i, track in enumerate(self._tracks):
                for j in range(n_det):
                    c = self._cost(track, np.asarray(boxes[j], np.float64), handedness[j])
                    if math.isfinite(c):
                        cost[i, j] = c
            rows, cols = linear_sum_assignment(cost)
            for i, j in zip(rows, cols):
                if cost[i, j] < 1e6:
                    assigned[j] = self._tracks[i]
        matched_ids = {id(tr) for tr in assigned if tr is not None}
        for track in self._tracks:
            if id(track) not in matched_ids:
                track.missed += 1
        for j in range(n_det):
            box = np.asarray(boxes[j], np.float64)
            sign = 1.0 if handedness[j] == "right" else -1.0
            track = assigned[j]
            if track is None:
                track = Track(
                    track_id=self._next_id,
                    box=box,
                    handedness_vote=sign * max(float(scores[j]), 1e-3),
                    smoother=HandSmoother(self.smoothing),
                    last_t=t,
                )
                self._next_id += 1
                self._tracks.append(track)
                assigned[j] = track
            else:
                track.box = box
                track.handedness_vote = self.vote_decay * track.handedness_vote + sign * float(scores[j])
                track.missed = 0
                track.age += 1
                track.last_t = t
        self._tracks = [tr for tr in self._tracks if tr.missed <= self.max_missed]
        return [tr for tr in assigned if tr is not None]
