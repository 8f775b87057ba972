"""Differentiable, batched parametric hand: shape blend shapes, anatomical pose, FK and linear blend skinning.

Frame: the model's rest frame (for our asset: wrist at the origin, +y to the fingers, +z dorsal, thumb
on -x; see ``models.hand.anatomy``). Units: metres and radians. Joint order: MediaPipe / FreiHAND.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.hand.anatomy import BONE_JOINTS, BONE_PARENTS, NUM_BONES, NUM_JOINTS, TIP_BONES, TIP_JOINTS
from models.hand.asset import HandAsset, load_hand_asset
from models.hand.mano import load_mano_asset
from models.hand.poses import BONE_DOFS, NUM_POSE_DOFS


class HandInputError(ValueError):
    """Bad tensor shapes handed to ``HandModel``."""


@dataclass(frozen=True)
class HandOutput:
    """vertices (B, V, 3) metres; joints (B, 21, 3) metres (skeleton, MediaPipe order);
    bone_transforms (B, 16, 4, 4) rest -> posed skinning transforms (translation included)."""

    vertices: torch.Tensor
    joints: torch.Tensor
    bone_transforms: torch.Tensor


def _skew(v: torch.Tensor) -> torch.Tensor:
    """(..., 3) -> (..., 3, 3) cross-product matrices."""
    zero = torch.zeros_like(v[..., 0])
    x, y, z = v.unbind(-1)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(*v.shape[:-1], 3, 3)


def axis_angle_to_rotmat(rotvec: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula, (..., 3) axis-angle radians -> (..., 3, 3); smooth at zero angle."""
    theta2 = (rotvec * rotvec).sum(-1, keepdim=True)[..., None]
    theta = torch.sqrt(theta2 + 1e-24)
    small = theta2 < 1e-8
    a = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24.0, (1.0 - torch.cos(theta)) / (theta2 + 1e-24))
    k = _skew(rotvec)
    eye = torch.eye(3, dtype=rotvec.dtype, device=rotvec.device).expand_as(k)
    return eye + a * k + b * (k @ k)


class HandModel(nn.Module):
    """Linear-blend-skinned hand with 16 bones and 21 joints.

    Mesh constants are non-persistent buffers (float32 on construction; use ``.to(dtype)``).
    Args (keyword only):
        template_vertices (V, 3); faces (F, 3); skin_weights (V, 16); bone_parents (16,) with -1 root;
        joint_regressor (21, V): rest joints of a shaped template (fingertips: single vertices);
        shape_dirs (V, 3, S); dof_axes (22, 3) unit axes of the anatomical pose DoFs;
        pose_limits (22, 2) radians; regions (V,) optional labels; pose_dirs (V, 3, 135) optional pose
        blend shapes driven by (R_b - I) of bones 1..15 (MANO only).
    """

    def __init__(self, *, template_vertices: np.ndarray, faces: np.ndarray, skin_weights: np.ndarray,
                 bone_parents: np.ndarray, joint_regressor: np.ndarray, shape_dirs: np.ndarray,
                 dof_axes: np.ndarray, pose_limits: np.ndarray, regions: np.ndarray | None = None,
                 pose_dirs: np.ndarray | None = None) -> None:
        super().__init__()
        num_v = len(template_vertices)
        if skin_weights.shape != (num_v, NUM_BONES) or joint_regressor.shape != (NUM_JOINTS, num_v):
            raise HandInputError(f"HandModel: skin_weights must be ({num_v}, {NUM_BONES}) and joint_regressor "
                                 f"({NUM_JOINTS}, {num_v}); got {skin_weights.shape}, {joint_regressor.shape}")
        if tuple(int(p) for p in bone_parents) != BONE_PARENTS:
            raise HandInputError("HandModel: bone_parents must follow models.hand.anatomy.BONE_PARENTS")

        def buf(name: str, value: np.ndarray, dtype: torch.dtype = torch.float32) -> None:
            self.register_buffer(name, torch.as_tensor(np.asarray(value), dtype=dtype), persistent=False)

        buf("template", template_vertices)
        buf("faces", faces, torch.int64)
        buf("skin_weights", skin_weights)
        buf("joint_regressor", joint_regressor)
        buf("shape_dirs", shape_dirs)
        buf("pose_limits", pose_limits)
        axes = torch.as_tensor(np.asarray(dof_axes), dtype=torch.float32)
        k = _skew(axes)
        # One extra all-zero generator (index 22) gives the identity for unused DoF slots.
        buf("dof_k", torch.cat([k, torch.zeros(1, 3, 3)]).numpy())
        buf("dof_k2", torch.cat([k @ k, torch.zeros(1, 3, 3)]).numpy())
        slots = np.array([[d if d >= 0 else NUM_POSE_DOFS for d in dofs] for dofs in BONE_DOFS])
        buf("bone_dof_slots", slots, torch.int64)
        buf("regions", np.zeros(num_v, dtype=np.int64) if regions is None else regions, torch.int64)
        self.has_pose_dirs = pose_dirs is not None
        if pose_dirs is not None:
            buf("pose_dirs", pose_dirs)
        self.num_vertices = num_v
        self.num_shape_params = int(shape_dirs.shape[-1])
        self._levels = (  # bones by depth in the kinematic tree; the parents of each level
            ([1, 4, 7, 10, 13], [0, 0, 0, 0, 0]),
            ([2, 5, 8, 11, 14], [1, 4, 7, 10, 13]),
            ([3, 6, 9, 12, 15], [2, 5, 8, 11, 14]),
        )

    @classmethod
    def from_asset(cls, asset: HandAsset) -> HandModel:
        """The procedural hand from a loaded asset."""
        return cls(template_vertices=asset.template_vertices, faces=asset.faces, skin_weights=asset.skin_weights,
                   bone_parents=asset.bone_parents, joint_regressor=asset.joint_regressor,
                   shape_dirs=asset.shape_dirs, dof_axes=asset.dof_axes, pose_limits=asset.pose_limits,
                   regions=asset.regions, pose_dirs=asset.pose_dirs)

    @classmethod
    def default(cls) -> HandModel:
        """The procedural hand from ``assets/hand_model_v1.npz``."""
        return cls.from_asset(load_hand_asset())

    @classmethod
    def from_mano(cls, path: Path, tip_vertex_ids: tuple[int, ...] | None = None) -> HandModel:
        """A MANO model (user-supplied MANO_RIGHT.pkl, loaded without chumpy) behind the same interface:
        anatomical pose, 10 MANO shape parameters, pose blend shapes, joints in our 21-joint order.
        The matching topology (hierarchy, spirals, regions) comes from ``models.hand.mano.load_mano_asset``."""
        return cls.from_asset(load_mano_asset(path, tip_vertex_ids))

    def clamp_pose(self, pose: torch.Tensor) -> torch.Tensor:
        """Clamp (..., 22) radians to the anatomical limits."""
        lim = self.pose_limits.to(pose)
        return torch.maximum(torch.minimum(pose, lim[:, 1]), lim[:, 0])

    def shaped_template(self, shape: torch.Tensor | None, batch: int, like: torch.Tensor) -> torch.Tensor:
        """(B, V, 3) rest vertices after the shape blend shapes."""
        template = self.template.to(like).expand(batch, -1, -1)
        if shape is None:
            return template
        if shape.shape != (batch, self.num_shape_params):
            raise HandInputError(f"HandModel: shape must be ({batch}, {self.num_shape_params}), got {tuple(shape.shape)}")
        dirs = self.shape_dirs.to(like)
        return template + (shape @ dirs.reshape(-1, dirs.shape[-1]).T).reshape(batch, -1, 3)

    def regress_joints(self, vertices: torch.Tensor) -> torch.Tensor:
        """(B, V, 3) -> (B, 21, 3) joints regressed from a mesh (FreiHAND-style evaluation)."""
        return torch.matmul(self.joint_regressor.to(vertices), vertices)

    def local_rotations(self, pose: torch.Tensor) -> torch.Tensor:
        """(B, 22) radians -> (B, 16, 3, 3) bone rotations in the rest frame (bone 0 = identity)."""
        batch = pose.shape[0]
        angles = torch.cat([pose, pose.new_zeros(batch, 1)], dim=1)[..., None, None]
        eye = torch.eye(3, dtype=pose.dtype, device=pose.device)
        rot = eye + torch.sin(angles) * self.dof_k.to(pose) + (1.0 - torch.cos(angles)) * self.dof_k2.to(pose)
        slots = rot[:, self.bone_dof_slots]  # (B, 16, 3, 3, 3)
        return slots[:, :, 0] @ slots[:, :, 1] @ slots[:, :, 2]

    def forward(self, pose: torch.Tensor, shape: torch.Tensor | None = None,
                global_orient: torch.Tensor | None = None, transl: torch.Tensor | None = None) -> HandOutput:
        """Pose the hand.

        Args:
            pose: (B, 22) anatomical angles, radians (``models.hand.poses.POSE_DOF_NAMES``); not clamped.
            shape: (B, S) shape parameters or None (mean shape).
            global_orient: (B, 3) axis-angle rotation about the wrist joint, or None.
            transl: (B, 3) metres added after the rotation, or None.
        """
        if pose.ndim != 2 or pose.shape[1] != NUM_POSE_DOFS:
            raise HandInputError(f"HandModel: pose must be (B, {NUM_POSE_DOFS}) radians, got {tuple(pose.shape)}")
        batch = pose.shape[0]
        for name, value in (("global_orient", global_orient), ("transl", transl)):
            if value is not None and value.shape != (batch, 3):
                raise HandInputError(f"HandModel: {name} must be ({batch}, 3), got {tuple(value.shape)}")
        return self.forward_rotations(self.local_rotations(pose), shape, global_orient, transl)

    def forward_rotations(self, rotations: torch.Tensor, shape: torch.Tensor | None = None,
                          global_orient: torch.Tensor | None = None,
                          transl: torch.Tensor | None = None) -> HandOutput:
        """Pose the hand from (B, 16, 3, 3) bone rotations in the rest frame (bone 0 is replaced by
        ``global_orient`` when given)."""
        batch = rotations.shape[0]
        v_shaped = self.shaped_template(shape, batch, rotations)
        rest_joints = self.regress_joints(v_shaped)  # (B, 21, 3)
        if self.has_pose_dirs:
            eye = torch.eye(3, dtype=rotations.dtype, device=rotations.device)
            feat = (rotations[:, 1:] - eye).reshape(batch, -1)
            v_shaped = v_shaped + torch.einsum("vck,bk->bvc", self.pose_dirs.to(rotations), feat)
        root = rotations[:, 0] if global_orient is None else axis_angle_to_rotmat(global_orient)
        bone_j = rest_joints[:, list(BONE_JOINTS)]  # (B, 16, 3)
        glob_rot: list[torch.Tensor | None] = [None] * NUM_BONES
        glob_pos: list[torch.Tensor | None] = [None] * NUM_BONES
        glob_rot[0] = root
        glob_pos[0] = bone_j[:, 0]
        for bones, parents in self._levels:
            parent_rot = torch.stack([glob_rot[p] for p in parents], dim=1)  # type: ignore[misc]
            parent_pos = torch.stack([glob_pos[p] for p in parents], dim=1)  # type: ignore[misc]
            offset = bone_j[:, bones] - bone_j[:, parents]
            pos = parent_pos + (parent_rot @ offset[..., None])[..., 0]
            rot = parent_rot @ rotations[:, bones]
            for i, b in enumerate(bones):
                glob_rot[b] = rot[:, i]
                glob_pos[b] = pos[:, i]
        rot_all = torch.stack(glob_rot, dim=1)  # type: ignore[arg-type]
        pos_all = torch.stack(glob_pos, dim=1)  # type: ignore[arg-type]
        trans = pos_all - (rot_all @ bone_j[..., None])[..., 0]
        if transl is not None:
            trans = trans + transl[:, None]
            pos_all = pos_all + transl[:, None]
        tip_parent = list(TIP_BONES)
        tip_offset = rest_joints[:, list(TIP_JOINTS)] - bone_j[:, tip_parent]
        tips = pos_all[:, tip_parent] + (rot_all[:, tip_parent] @ tip_offset[..., None])[..., 0]
        joints = rest_joints.new_zeros(batch, NUM_JOINTS, 3)
        joints = joints.index_copy(1, torch.as_tensor(BONE_JOINTS, device=joints.device), pos_all)
        joints = joints.index_copy(1, torch.as_tensor(TIP_JOINTS, device=joints.device), tips)
        mats = torch.cat([rot_all, trans[..., None]], dim=-1)  # (B, 16, 3, 4)
        per_vertex = torch.matmul(self.skin_weights.to(rotations), mats.reshape(batch, NUM_BONES, 12))
        per_vertex = per_vertex.reshape(batch, -1, 3, 4)
        verts = torch.einsum("nvij,nvj->nvi", per_vertex[..., :3], v_shaped) + per_vertex[..., 3]
        bottom = mats.new_zeros(batch, NUM_BONES, 1, 4)
        bottom[..., 0, 3] = 1.0
        return HandOutput(vertices=verts, joints=joints, bone_transforms=torch.cat([mats, bottom], dim=2))
