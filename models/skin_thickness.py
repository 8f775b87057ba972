"""Skin thickness: each vertex's distance to the hand's skeleton, against the rest template's.

Why: a real hand's skin keeps roughly its thickness over the bones whatever the pose (on our synthetic
training meshes a vertex's distance to its bones moves by 0.9 mm on average and 4.8 mm at the 99th
percentile), but nothing tied the network's meshes of real photos to that: on tight real fists the
decoder's residual pushed the dorsal skin over the index PIP joint 29 mm from the joint, where the
template has 11 mm, a pointed knuckle. This is the measure of that, and the training term that holds it
on rows without ground truth.

Geometry: the skeleton is the 20 bone segments between the 21 joints (wrist to each finger base, then
along each finger). A vertex is measured against the segments of its dominant skinning bone (the largest
of its ``skin_weights``; the palm bone owns the four wrist-to-finger-base segments) and of that bone's
parent, so a vertex near a joint may lie over either side of it and never counts against another finger.
Its thickness is the distance to the nearest of those segments; its deviation is the absolute difference
from the same measure on the rest template. Meshes are compared at the template's hand length
(``vertices_unit`` and the joints regressed from them), so the measure is of shape, not size.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from models.errors import TopologyError
from models.hand.anatomy import BONE_JOINTS, BONE_PARENTS
from models.hand.asset import HandAsset
from models.mediapipe_frame import hand_length
from models.paths import ASSETS_DIR

SEGMENTS: tuple[tuple[int, int], ...] = tuple(
    pair for base in (1, 5, 9, 13, 17)
    for pair in ((0, base), (base, base + 1), (base + 1, base + 2), (base + 2, base + 3)))
"""The 20 bone segments (joint, joint): wrist to each finger's base, then along the finger to its tip."""

BOUNDS_PATH: Path = ASSETS_DIR / "skin_thickness_bounds.json"
"""Per-vertex bounds of :class:`ThicknessClamp` (``python -m training.skin_bounds``)."""

_PALM_SEGMENTS: tuple[int, ...] = tuple(SEGMENTS.index((0, base)) for base in (5, 9, 13, 17))
_CANDIDATES: int = 5
"""Segments a vertex is measured against, padded by repetition (the palm bone and its child own up to five)."""


def _bone_segments(bone: int) -> list[int]:
    joint = BONE_JOINTS[bone]
    if joint == 0:
        return list(_PALM_SEGMENTS)
    return [SEGMENTS.index((joint, joint + 1))]


def candidate_segments(skin_weights: np.ndarray) -> np.ndarray:
    """``(V, 5)`` int64 indices into :data:`SEGMENTS` per vertex: its dominant bone's segments and its
    parent bone's, repeated to five. ``skin_weights``: ``(V, 16)`` over ``BONE_JOINTS``."""
    weights = np.asarray(skin_weights)
    if weights.ndim != 2 or weights.shape[1] != len(BONE_JOINTS):
        raise ValueError(f"candidate_segments: skin_weights must be (V, {len(BONE_JOINTS)}), got {weights.shape}")
    rows = []
    for bone in weights.argmax(axis=1):
        segments = _bone_segments(int(bone))
        parent = BONE_PARENTS[int(bone)]
        if parent >= 0:
            segments += [s for s in _bone_segments(parent) if s not in segments]
        rows.append([segments[i % len(segments)] for i in range(_CANDIDATES)])
    return np.asarray(rows, dtype=np.int64)


def nearest_on_skeleton(vertices: Tensor, joints: Tensor, candidates: Tensor,
                        segments: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Each vertex's nearest point on its candidate segments: ``(distance (B, V), point (B, V, 3))``, in
    the inputs' unit and frame. ``vertices (B, V, 3)``, ``joints (B, 21, 3)``; ``candidates (V, K)`` from
    :func:`candidate_segments`; ``segments (20, 2)`` int64 :data:`SEGMENTS` already on the joints' device
    (modules keep it as a buffer: building it here copies from the host, which a CUDA graph cannot
    capture). Gathers, clamps and an argmin only, so it exports to ONNX."""
    if segments is None:
        segments = torch.as_tensor(SEGMENTS, device=joints.device)
    start = joints[:, segments[:, 0]][:, candidates]
    along = joints[:, segments[:, 1]][:, candidates] - start
    offset = vertices.unsqueeze(2) - start
    t = ((offset * along).sum(-1) / (along * along).sum(-1).clamp_min(1e-12)).clamp(0.0, 1.0)
    points = start + t.unsqueeze(-1) * along
    distances = (vertices.unsqueeze(2) - points).norm(dim=-1)
    nearest = distances.argmin(dim=-1, keepdim=True)
    point = torch.gather(points, 2, nearest.unsqueeze(-1).expand(-1, -1, -1, 3)).squeeze(2)
    return torch.gather(distances, 2, nearest).squeeze(2), point


def skeleton_distance(vertices: Tensor, joints: Tensor, candidates: Tensor, segments: Tensor | None = None) -> Tensor:
    """``(B, V)`` distance of each vertex to the nearest of its candidate segments (:func:`nearest_on_skeleton`)."""
    return nearest_on_skeleton(vertices, joints, candidates, segments)[0]


class SkinThickness(nn.Module):
    """Per-vertex deviation of the skin's distance to the skeleton from the rest template's.

    Args:
        template_vertices: ``(V, 3)`` rest mesh, metres. joint_regressor: ``(21, V)``.
        skin_weights: ``(V, 16)`` (``models.hand.asset``).
    """

    def __init__(self, template_vertices: Tensor, joint_regressor: Tensor, skin_weights: np.ndarray) -> None:
        super().__init__()
        candidates = torch.from_numpy(candidate_segments(skin_weights))
        template = template_vertices.detach().float()
        regressor = joint_regressor.detach().float()
        rest = skeleton_distance(template.unsqueeze(0), (regressor @ template).unsqueeze(0), candidates)[0]
        self.register_buffer("candidates", candidates, persistent=False)
        self.register_buffer("segments", torch.as_tensor(SEGMENTS, dtype=torch.int64), persistent=False)
        self.register_buffer("joint_regressor", regressor.clone(), persistent=False)
        self.register_buffer("rest_distance", rest, persistent=False)
        self.template_length = float(hand_length((regressor @ template).unsqueeze(0))[0])
        """Hand length of the rest template, metres (``models.mediapipe_frame.hand_length``)."""

    @classmethod
    def from_asset(cls, asset: HandAsset) -> SkinThickness:
        """The measure of a hand asset's template, joint regressor and skinning weights (CPU)."""
        return cls(torch.as_tensor(np.asarray(asset.template_vertices), dtype=torch.float32),
                   torch.as_tensor(np.asarray(asset.joint_regressor), dtype=torch.float32),
                   np.asarray(asset.skin_weights))

    def deviation(self, vertices_unit: Tensor) -> Tensor:
        """``(B, V)`` |distance to the skeleton - the template's|, in the input's unit (metres for
        ``vertices_unit (B, V, 3)``, a wrist-relative mesh at the template's hand length). The joints are
        regressed from the same mesh, so the measure needs nothing but the mesh."""
        joints = self.regress_joints(vertices_unit)
        distance = skeleton_distance(vertices_unit, joints, self.candidates, self.segments)
        return (distance - self.rest_distance.to(distance.dtype)).abs()

    def regress_joints(self, vertices: Tensor) -> Tensor:
        """``(B, 21, 3)`` joints regressed from ``(B, V, 3)`` meshes, in their frame and unit."""
        return torch.einsum("jv,bvc->bjc", self.joint_regressor.to(vertices.dtype), vertices)

    def joints_and_size(self, vertices: Tensor) -> tuple[Tensor, Tensor]:
        """``(joints (B, 21, 3), size (B,))`` of ``(B, V, 3)`` meshes: the joints regressed from them and
        their hand length over the template's (``models.mediapipe_frame.hand_length``)."""
        joints = self.regress_joints(vertices)
        return joints, hand_length(joints - joints[:, :1]) / self.template_length

    def deviation_any_size(self, vertices: Tensor) -> Tensor:
        """:meth:`deviation` of ``(B, V, 3)`` meshes in any frame, position and size: each is made
        wrist-relative and scaled to the template's hand length first."""
        joints, size = self.joints_and_size(vertices)
        return self.deviation((vertices - joints[:, :1]) / size.clamp_min(1e-6 / self.template_length).reshape(-1, 1, 1))

    def loss(self, vertices_unit: Tensor, margin_m: float, scale_m: float) -> Tensor:
        """Scalar: mean over vertices and rows of ``relu(deviation - margin_m) / scale_m``. Zero when every
        vertex keeps the template's thickness to within ``margin_m``."""
        return torch.relu(self.deviation(vertices_unit) - margin_m).mean() / scale_m

    def tail_loss(self, vertices_unit: Tensor, bounds_m: Tensor, fraction: float, scale_m: float) -> Tensor:
        """Scalar: per row, the mean of the worst ``fraction`` of vertices' ``relu(deviation - bounds_m)``
        (``bounds_m (V,)`` metres, e.g. :func:`load_thickness_bounds` less an inset), averaged over rows, over
        ``scale_m``. The mean in :meth:`loss` barely notices a handful of spiking vertices (a pointed
        knuckle is 10 of 896); this term is as large as their excess."""
        excess = torch.relu(self.deviation(vertices_unit) - bounds_m.to(vertices_unit.dtype))
        k = max(1, math.ceil(fraction * excess.shape[1]))
        return excess.topk(k, dim=1).values.mean() / scale_m


def load_thickness_bounds(path: Path = BOUNDS_PATH, num_vertices: int | None = None) -> np.ndarray:
    """``(V,)`` float32 metres: per vertex, how far the skin's distance to the skeleton may move from the
    template's (at the template's hand length), from ``assets/skin_thickness_bounds.json`` (written by
    ``python -m training.skin_bounds``). Raises :class:`models.errors.TopologyError` when the file is missing,
    unreadable or does not fit ``num_vertices``."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        bounds = np.asarray(raw["bounds_m"], dtype=np.float32)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise TopologyError(f"cannot read skin thickness bounds {path}: {err}; rebuild them with "
                            "python -m training.skin_bounds") from err
    if bounds.ndim != 1 or not np.all(np.isfinite(bounds)) or np.any(bounds < 0):
        raise TopologyError(f"{path}: bounds_m must be a list of finite non-negative metres")
    if num_vertices is not None and bounds.shape[0] != num_vertices:
        raise TopologyError(f"{path}: {bounds.shape[0]} bounds for a mesh of {num_vertices} vertices; rebuild "
                            "them with python -m training.skin_bounds")
    return bounds


class ThicknessClamp(nn.Module):
    """Keeps every vertex's distance to the skeleton within per-vertex bounds of the template's.

    A fixed layer without weights. The joints are regressed from the incoming mesh; each vertex is moved
    along the line from its nearest skeleton point (:func:`nearest_on_skeleton`) so that its distance lies
    in ``[rest - bound, rest + bound]``, both scaled by the mesh's hand length over the template's (so any
    size and position works). Vertices already inside do not move. The bounds
    (:func:`load_thickness_bounds`) are the largest deviation our hand model shows over 20,000 sampled
    poses and shapes plus a margin, so only shapes our hand cannot make are changed, such as the pointed
    knuckle the decoder's residual makes on tight real fists (dorsal skin 29 mm from the PIP joint, 18 mm
    off its rest distance, where the hand model never moves it more than 4.4 mm).

    Args:
        template_vertices: ``(V, 3)`` rest mesh, metres. joint_regressor: ``(21, V)``.
        skin_weights: ``(V, 16)``. bounds: ``(V,)`` metres at the template's hand length.
    """

    def __init__(self, template_vertices: Tensor, joint_regressor: Tensor, skin_weights: np.ndarray,
                 bounds: np.ndarray) -> None:
        super().__init__()
        self.measure = SkinThickness(template_vertices, joint_regressor, skin_weights)
        rest = self.measure.rest_distance
        bounds_t = torch.as_tensor(np.asarray(bounds), dtype=torch.float32)
        if bounds_t.shape != rest.shape:
            raise ValueError(f"ThicknessClamp: bounds must be ({rest.shape[0]},), got {tuple(bounds_t.shape)}")
        self.register_buffer("low", (rest - bounds_t).clamp_min(0.0), persistent=False)
        self.register_buffer("high", rest + bounds_t, persistent=False)

    def forward(self, vertices: Tensor) -> Tensor:
        """``(B, V, 3)`` -> ``(B, V, 3)`` in the same frame and unit (metres)."""
        dtype = vertices.dtype
        joints, size = self.measure.joints_and_size(vertices)
        factor = size.reshape(-1, 1)
        distance, point = nearest_on_skeleton(vertices, joints, self.measure.candidates, self.measure.segments)
        target = torch.minimum(torch.maximum(distance, self.low.to(dtype) * factor), self.high.to(dtype) * factor)
        return point + (vertices - point) * (target / distance.clamp_min(1e-6)).unsqueeze(-1)
