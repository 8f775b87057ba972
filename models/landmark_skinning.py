"""Pose the template mesh from 21 3D landmarks: a fixed, differentiable skinning layer (no parameters).

Why: with the ``fused`` cue the decoder receives MediaPipe's 3D landmarks; a geometric skip that poses
the template from them lets the mesh follow the fingers from the first training step, and the M3DHMR
decoder (lifting matrix, DSC layers, ROI layer) learns the residual: shape, surface detail and where
the landmarks are wrong. Gated per sample, so without landmarks the network is the paper's.

Method: every one of the 16 skinning bones of the hand asset (``models.hand.anatomy.BONE_JOINTS``: the
palm pivots at the wrist, each finger segment at its proximal joint) gets a global rotation that turns
its template frame into the landmarks' frame. A frame is built from the bone direction (pivot to child
joint; for the palm, wrist to middle MCP) and a reference vector orthogonalised against it (for the
palm, index MCP to little MCP; for finger bones, the template's dorsal axis carried by the parent
bone's rotation, which fixes the twist that two points cannot give). Then linear blend skinning with
the asset's weights: ``v = sum_b w_vb (R_b (T_v - T_pivot(b)) + L_pivot(b))``.

With ``chain=True`` the pivots are first re-placed along each finger (:meth:`LandmarkSkinning.chain`):
the finger's base joint stays where the landmarks put it, every further joint is the one before plus
the template's bone length along the landmarks' bone direction. MediaPipe's proximal phalanges are
0.68-0.83 times ours (its knuckle landmarks sit further out than our MCP joints), so without the chain
a bent finger's proximal segment, rigid at the template's length, overshoots the next pivot and pokes
out at the knuckle. On the cached synthetic test hands the skin alone (MediaPipe's world landmarks in,
no decoder) then bends 17.7 instead of 21.5 degrees per edge and its PA-MPVPE is 13.44 instead of 13.69 mm.
Closed form (normalisations and cross products only), so it exports to ONNX. Inputs with all landmarks
at the origin give finite (meaningless) output; ``M3DHMR`` feeds the template's own joints for samples
without landmarks, so those rows pose the template exactly.
"""
from __future__ import annotations

from itertools import pairwise

import numpy as np
import torch
from torch import Tensor, nn

BONE_JOINTS: tuple[int, ...] = (0, 1, 2, 3, 5, 6, 7, 9, 10, 11, 13, 14, 15, 17, 18, 19)
BONE_PARENTS: tuple[int, ...] = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)
PALM_AXIS: tuple[int, int] = (0, 9)
PALM_ACROSS: tuple[int, int] = (5, 17)
DORSAL: tuple[float, float, float] = (0.0, 0.0, 1.0)
_MIN_SQUARED_NORM: float = 1e-12
"""Floor of a vector's squared length before normalising. A clamp, not an added epsilon: the ONNX exporter's
optimiser drops ``x + 1e-12`` and a zero vector then gives 0/0 = NaN in onnxruntime."""


def _normalize(v: Tensor) -> Tensor:
    return v / (v * v).sum(dim=-1, keepdim=True).clamp_min(_MIN_SQUARED_NORM).sqrt()


def _frame(direction: Tensor, reference: Tensor) -> Tensor:
    """Right-handed orthonormal frame ``(*, 3, 3)`` (columns e1, e2, e3) from ``(*, 3)`` direction and reference."""
    e1 = _normalize(direction)
    e2 = _normalize(reference - (reference * e1).sum(dim=-1, keepdim=True) * e1)
    e3 = torch.cross(e1, e2, dim=-1)
    return torch.stack([e1, e2, e3], dim=-1)


FINGER_CHAINS: tuple[tuple[int, ...], ...] = ((1, 2, 3, 4), (5, 6, 7, 8), (9, 10, 11, 12), (13, 14, 15, 16),
                                              (17, 18, 19, 20))
"""Joints of each finger from its base (thumb CMC, finger MCPs) to its tip."""


class LandmarkSkinning(nn.Module):
    """``(B, 21, 3)`` landmarks (wrist-relative, any frame) -> ``(B, V, 3)`` posed template vertices.

    Args:
        template_vertices: ``(V, 3)`` rest mesh (wrist at the origin), metres.
        template_joints: ``(21, 3)`` rest joints regressed from the mesh, metres.
        skin_weights: ``(V, 16)`` linear blend skinning weights over ``BONE_JOINTS``.
        chain: re-place the pivots along each finger at the template's bone lengths first (:meth:`chain`).
    """

    def __init__(self, *, template_vertices: Tensor, template_joints: Tensor, skin_weights: Tensor,
                 chain: bool = False) -> None:
        super().__init__()
        self.use_chain = bool(chain)
        t_joints = template_joints.float()
        self.register_buffer("template_vertices", template_vertices.float().clone(), persistent=False)
        self.register_buffer("template_joints", t_joints.clone(), persistent=False)
        self.register_buffer("skin_weights", skin_weights.float().clone(), persistent=False)
        frames = []
        dorsal = torch.tensor(DORSAL)
        for b, pivot in enumerate(BONE_JOINTS):
            if BONE_PARENTS[b] < 0:
                frames.append(_frame(t_joints[PALM_AXIS[1]] - t_joints[PALM_AXIS[0]],
                                     t_joints[PALM_ACROSS[1]] - t_joints[PALM_ACROSS[0]]))
            else:
                frames.append(_frame(t_joints[pivot + 1] - t_joints[pivot], dorsal))
        self.register_buffer("template_frames", torch.stack(frames), persistent=False)
        self.register_buffer("dorsal", dorsal.float(), persistent=False)  # on the device: no host copy per call
        self.register_buffer("pivot_index", torch.tensor(BONE_JOINTS, dtype=torch.int64), persistent=False)

    @staticmethod
    def from_asset(asset: object) -> LandmarkSkinning:
        """Build from a ``HandAsset`` (template, joint regressor, skin weights)."""
        template = torch.as_tensor(np.asarray(asset.template_vertices), dtype=torch.float32)  # type: ignore[attr-defined]
        regressor = torch.as_tensor(np.asarray(asset.joint_regressor), dtype=torch.float32)  # type: ignore[attr-defined]
        weights = torch.as_tensor(np.asarray(asset.skin_weights), dtype=torch.float32)  # type: ignore[attr-defined]
        return LandmarkSkinning(template_vertices=template, template_joints=regressor @ template, skin_weights=weights)

    def bone_rotations(self, landmarks: Tensor) -> Tensor:
        """Global rotation ``(B, 16, 3, 3)`` of every bone (template frame -> landmark frame)."""
        frames0 = self.template_frames.to(landmarks.dtype)
        dorsal = self.dorsal.to(landmarks.dtype).expand(landmarks.shape[0], 3)
        rotations: list[Tensor] = []
        for b, pivot in enumerate(BONE_JOINTS):
            parent = BONE_PARENTS[b]
            if parent < 0:
                frame = _frame(landmarks[:, PALM_AXIS[1]] - landmarks[:, PALM_AXIS[0]],
                               landmarks[:, PALM_ACROSS[1]] - landmarks[:, PALM_ACROSS[0]])
            else:
                reference = (rotations[parent] @ dorsal.unsqueeze(-1)).squeeze(-1)
                frame = _frame(landmarks[:, pivot + 1] - landmarks[:, pivot], reference)
            rotations.append(frame @ frames0[b].transpose(0, 1))
        return torch.stack(rotations, dim=1)

    def chain(self, landmarks: Tensor) -> Tensor:
        """``(B, 21, 3)``: each finger's base joint as given, every further joint the one before plus the
        template's bone length along the landmarks' direction of that bone (wrist and bases unchanged)."""
        t_joints = self.template_joints.to(landmarks.dtype)
        joints = list(landmarks.unbind(dim=1))
        for chain in FINGER_CHAINS:
            for pivot, child in pairwise(chain):
                length = (t_joints[child] - t_joints[pivot]).norm()
                joints[child] = joints[pivot] + length * _normalize(landmarks[:, child] - landmarks[:, pivot])
        return torch.stack(joints, dim=1)

    def forward(self, landmarks: Tensor) -> Tensor:
        if self.use_chain:
            landmarks = self.chain(landmarks)
        rotations = self.bone_rotations(landmarks)  # (B, 16, 3, 3)
        pivots0 = self.template_joints.to(landmarks.dtype).index_select(0, self.pivot_index)  # (16, 3)
        pivots = landmarks.index_select(1, self.pivot_index)  # (B, 16, 3)
        offsets = pivots - (rotations @ pivots0.unsqueeze(-1)).squeeze(-1)  # (B, 16, 3)
        return self._blend(rotations, offsets, self.template_vertices.to(landmarks.dtype))

    def _blend(self, rotations: Tensor, offsets: Tensor, points: Tensor) -> Tensor:
        """Linear blend skinning: ``sum_b w_vb (R_b p_v + o_b)`` ``(B, V, 3)`` of ``points`` (``(V, 3)`` or
        ``(B, V, 3)``) with per-bone ``rotations (B, 16, 3, 3)`` and ``offsets (B, 16, 3)``."""
        weights = self.skin_weights.to(points.dtype)
        blended_rot = torch.einsum("vb,nbij->nvij", weights, rotations)
        blended_off = torch.einsum("vb,nbi->nvi", weights, offsets)
        return (blended_rot @ points.unsqueeze(-1)).squeeze(-1) + blended_off

    def retarget(self, vertices: Tensor, joints: Tensor, target: Tensor) -> Tensor:
        """Move a posed mesh so that its skeleton follows ``target``: ``(B, V, 3)``.

        vertices ``(B, V, 3)`` and their joints ``(B, 21, 3)`` (any frame, same units), target ``(B, 21, 3)`` in
        that frame. Every bone turns by the rotation that takes its frame in ``joints`` to its frame in
        ``target`` (:meth:`bone_rotations` of both), about its pivot, and its pivot moves to the target's;
        the vertices follow by linear blend skinning with the asset's weights:
        ``v' = sum_b w_vb (dR_b (v - J_pivot(b)) + T_pivot(b))``. The mesh's own shape (finger thickness,
        bone lengths) is kept; with ``target == joints`` it is returned unchanged (up to rounding). Unlike
        :meth:`forward`, it never poses the template, and it ignores ``chain``."""
        delta = self.bone_rotations(target) @ self.bone_rotations(joints).transpose(-1, -2)  # (B, 16, 3, 3)
        pivots_from = joints.index_select(1, self.pivot_index)
        pivots_to = target.index_select(1, self.pivot_index)
        offsets = pivots_to - (delta @ pivots_from.unsqueeze(-1)).squeeze(-1)  # (B, 16, 3)
        return self._blend(delta, offsets, vertices)
