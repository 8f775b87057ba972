"""Joint-limit prior of our hand model, measured on 3D joints (the network predicts a mesh, not angles).

For each of the four long fingers, the bend at the MCP, PIP and DIP joints is split into a signed
flexion angle (about the finger's hinge axis; positive curls towards the palm, negative is
hyperextension) and a lateral angle (sideways, out of the flexion plane). The hinge axis of a finger is
``cross(dorsal, metacarpal)``, where ``dorsal`` is the back-of-hand normal ``cross(j17 - j0, j5 - j0)``
of a right hand and ``metacarpal`` the wrist-to-MCP direction. The loss penalises angles outside the
hand model's limits (``models.hand.poses.POSE_LIMITS``; flexion MCP -25..90, PIP -5..110, DIP -10..85
degrees, lateral MCP -15..20, PIP/DIP hinges -15..15: our own meshes' joints reach that) by a hinge in radians, with a tolerance
``margin_deg`` for the joint-definition offsets between the model's rotation axes and its 3D joints.
The thumb is not constrained (its saddle joint has no axis that the joints define well).

Joints are ``(..., 21, 3)`` in MediaPipe order, any unit, in a right-hand frame (the network's crop
frame: left hands are mirrored by the rectification).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from models.hand.poses import POSE_LIMITS

LONG_FINGER_CHAINS: tuple[tuple[int, int, int, int], ...] = ((5, 6, 7, 8), (9, 10, 11, 12), (13, 14, 15, 16), (17, 18, 19, 20))
"""MCP, PIP, DIP and tip joint of the index, middle, ring and little fingers (MediaPipe order)."""

_FINGER_DOFS = POSE_LIMITS[6:10]  # mcp_flex, mcp_abd, pip_flex, dip_flex of one long finger (the same for all four)
FLEXION_LIMITS_RAD: torch.Tensor = torch.from_numpy(np.stack([_FINGER_DOFS[0], _FINGER_DOFS[2], _FINGER_DOFS[3]]).astype(np.float32))
"""(3, 2) lower/upper flexion of the MCP, PIP and DIP joints, radians."""
HINGE_LATERAL_LIMIT_RAD: float = math.radians(15.0)
"""Sideways bend tolerated at the PIP and DIP hinges (the model has none; the mesh's joints are not on
exact hinge axes)."""
_HINGE = (-HINGE_LATERAL_LIMIT_RAD, HINGE_LATERAL_LIMIT_RAD)
LATERAL_LIMITS_RAD: torch.Tensor = torch.from_numpy(np.array([_FINGER_DOFS[1], _HINGE, _HINGE], dtype=np.float32))
"""(3, 2) lower/upper lateral bend of the MCP, PIP and DIP joints, radians (positive: towards the thumb)."""


def _normalize(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True).clamp_min(1e-9)


def finger_angles(joints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Signed flexion and lateral angles of the long fingers.

    Args:
        joints: ``(..., 21, 3)`` float, right-hand frame, any unit.
    Returns:
        ``(flexion, lateral)``, each ``(..., 4, 3)`` radians: fingers index..little, joints MCP/PIP/DIP.
        Flexion > 0 curls towards the palm; lateral > 0 bends towards the thumb side.
    """
    chains = torch.tensor(LONG_FINGER_CHAINS, device=joints.device)
    wrist = joints[..., :1, :]
    dorsal = _normalize(torch.cross(joints[..., 17, :] - joints[..., 0, :], joints[..., 5, :] - joints[..., 0, :], dim=-1))
    pts = joints[..., chains, :]  # (..., 4, 4, 3)
    metacarpal = pts[..., 0, :] - wrist
    bones = torch.stack([metacarpal, pts[..., 1, :] - pts[..., 0, :], pts[..., 2, :] - pts[..., 1, :], pts[..., 3, :] - pts[..., 2, :]], dim=-2)
    hinge = _normalize(torch.cross(dorsal.unsqueeze(-2), _normalize(metacarpal), dim=-1))  # (..., 4, 3)
    # The PIP and DIP hinges turn with the finger's sideways bend at the MCP joint: the MCP hinge made
    # perpendicular to the proximal phalanx.
    proximal = _normalize(bones[..., 1, :])
    finger_hinge = _normalize(hinge - (hinge * proximal).sum(-1, keepdim=True) * proximal)
    hinges = torch.stack([hinge, finger_hinge, finger_hinge], dim=-2)  # (..., 4, 3 joints, 3)
    parent, child = bones[..., :-1, :], bones[..., 1:, :]
    # Flexion: the angle from the parent bone to the child bone, both projected onto the plane normal
    # to the joint's hinge.
    parent_flat = parent - (parent * hinges).sum(-1, keepdim=True) * hinges
    child_flat = child - (child * hinges).sum(-1, keepdim=True) * hinges
    sin = (torch.cross(parent_flat, child_flat, dim=-1) * hinges).sum(-1)
    cos = (parent_flat * child_flat).sum(-1)
    flexion = torch.atan2(sin, cos)
    # Lateral: the child's elevation out of that plane minus the parent's. The hinge axis points towards
    # the thumb for every long finger of a right hand (cross(dorsal, forward) = radial).
    def elevation(b: torch.Tensor) -> torch.Tensor:
        return torch.asin((_normalize(b) * hinges).sum(-1).clamp(-1.0, 1.0))

    lateral = elevation(child) - elevation(parent)
    return flexion, lateral


def _outside(angles: torch.Tensor, limits: torch.Tensor, margin: float) -> torch.Tensor:
    lo, hi = limits[:, 0].to(angles) - margin, limits[:, 1].to(angles) + margin
    return torch.relu(lo - angles) + torch.relu(angles - hi)


def joint_limit_violation(joints: torch.Tensor, margin_deg: float = 5.0) -> torch.Tensor:
    """``(..., 4, 3, 2)`` radians by which each long-finger joint's flexion (last index 0) and lateral
    bend (1) lie outside the limits widened by ``margin_deg``; 0 inside."""
    flexion, lateral = finger_angles(joints)
    margin = math.radians(margin_deg)
    return torch.stack([_outside(flexion, FLEXION_LIMITS_RAD, margin), _outside(lateral, LATERAL_LIMITS_RAD, margin)], dim=-1)


def joint_limit_loss(joints: torch.Tensor, margin_deg: float = 5.0) -> torch.Tensor:
    """Scalar: mean over rows of the summed out-of-limit angles (radians) of ``(B, 21, 3)`` joints."""
    return joint_limit_violation(joints, margin_deg).flatten(1).sum(-1).mean()
