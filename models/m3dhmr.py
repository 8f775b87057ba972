"""M3DHMR + HandDGP: the full network from an RGB crop to metric camera-space hand meshes.

crop (B,3,S,S) RGB [0,1] --StackedResNetEncoder--> stride-4 features + heatmaps --soft-argmax--> 2D joints
  -> features sampled at the 2D joints used (predicted, or external e.g. MediaPipe, eq. 1)
  -> MeshDecoder (lifting eq. 2, DSC layers eqs. 3-6, ROI layer) -> vertices, joints = J_reg @ vertices
  -> wrist-relative vertices/joints in the virtual camera (metres)
  -> DGP weight head + closed-form DGP solve with K_virt -> translation in the virtual camera
  -> camera space through ``virt_to_cam`` (rotation back and un-mirroring for left hands).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from models.config import NUM_JOINTS, M3DHMRConfig
from models.decoder import MeshDecoder
from models.dgp import solve_translation
from models.encoders import StackedResNetEncoder
from models.errors import InputShapeError
from models.joint_head import DGPWeightHead, sample_features_at_points, soft_argmax_2d
from models.topology import DecoderTopology

HEATMAP_STRIDE: int = 4


@dataclass
class M3DHMROutput:
    """Network outputs (torch tensors). B = hands, V = asset vertices, J = 21 joints. Metres unless stated.

    vertices_rel (B,V,3) / joints_rel (B,J,3): virtual-camera axes, relative to the wrist (joint 0).
    joints_2d_pred (B,J,2) crop px (last stack); joints_2d_stacks (B,S_t,J,2) every stack;
    heatmaps (B,S_t,J,h,w) softmax probabilities; joints_2d_used (B,J,2) crop px used for sampling and DGP.
    dgp_weights (B,J) in (0,1). translation_virt (B,3) wrist in the virtual camera.
    vertices_virt/joints_virt: virtual camera. vertices_cam/joints_cam/translation_cam: real camera.
    dgp_residual (B,) metres; dgp_degenerate (B,) bool.
    """

    vertices_rel: Tensor
    joints_rel: Tensor
    joints_2d_pred: Tensor
    joints_2d_stacks: Tensor
    heatmaps: Tensor
    joints_2d_used: Tensor
    dgp_weights: Tensor
    translation_virt: Tensor
    vertices_virt: Tensor
    joints_virt: Tensor
    vertices_cam: Tensor
    joints_cam: Tensor
    translation_cam: Tensor
    dgp_residual: Tensor
    dgp_degenerate: Tensor

    def as_dict(self) -> dict[str, Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class M3DHMR(nn.Module):
    """The full network. Build with :meth:`from_config`; mesh constants come from ``topology``."""

    def __init__(
        self,
        *,
        topology: DecoderTopology,
        crop_size: int,
        encoder_blocks: tuple[int, int, int, int],
        width_mult: float,
        num_stacks: int,
        feature_channels: int,
        decoder_type: str,
        decoder_channels: tuple[int, ...],
        num_kernels: int,
        use_roi: bool,
        dgp_damping: float,
        dgp_hidden: int,
    ) -> None:
        super().__init__()
        self.crop_size = crop_size
        self.dgp_damping = dgp_damping
        self.asset_sha256 = topology.sha256
        self.asset_version = topology.version
        self.faces: np.ndarray = topology.faces
        self.config: M3DHMRConfig | None = None
        self.encoder = StackedResNetEncoder(
            blocks=encoder_blocks,
            width_mult=width_mult,
            num_stacks=num_stacks,
            feature_channels=feature_channels,
            num_joints=NUM_JOINTS,
        )
        joint_feature_channels = feature_channels + 2
        self.decoder = MeshDecoder(
            topology=topology,
            in_channels=joint_feature_channels,
            channels=decoder_channels,
            decoder_type=decoder_type,
            num_kernels=num_kernels,
            use_roi=use_roi,
        )
        self.dgp_head = DGPWeightHead(in_channels=joint_feature_channels, hidden=dgp_hidden)
        self.register_buffer("joint_regressor", topology.joint_regressor.clone(), persistent=False)

    @classmethod
    def from_config(cls, config: M3DHMRConfig, asset: Any | None = None) -> M3DHMR:
        """Translate a config (and the hand asset; default ``load_hand_asset()``) into a model."""
        if asset is None:
            from models.hand.asset import load_hand_asset

            asset = load_hand_asset()
        model = cls(
            topology=DecoderTopology.from_asset(asset),
            crop_size=config.crop_size,
            encoder_blocks=tuple(config.encoder_blocks),
            width_mult=config.width_mult,
            num_stacks=config.num_stacks,
            feature_channels=config.feature_channels,
            decoder_type=config.decoder_type,
            decoder_channels=tuple(config.decoder_channels),
            num_kernels=config.num_kernels,
            use_roi=config.use_roi,
            dgp_damping=config.dgp_damping,
            dgp_hidden=config.dgp_hidden,
        )
        model.config = config
        return model

    def _check_inputs(self, crops: Tensor, k_virt: Tensor) -> None:
        size = self.crop_size
        if crops.ndim != 4 or crops.shape[1:] != (3, size, size):
            raise InputShapeError(f"crops must be (B, 3, {size}, {size}) RGB in [0,1], got {tuple(crops.shape)}")
        if k_virt.shape != (crops.shape[0], 3, 3):
            raise InputShapeError(f"K_virt must be (B, 3, 3) with B={crops.shape[0]}, got {tuple(k_virt.shape)}")

    def forward(
        self,
        crops: Tensor,
        K_virt: Tensor,
        joints_2d_external: Tensor | None = None,
        external_mask: Tensor | None = None,
        virt_to_cam: Tensor | None = None,
    ) -> M3DHMROutput:
        """crops ``(B,3,S,S)`` float RGB [0,1]; K_virt ``(B,3,3)``; optional joints_2d_external ``(B,21,2)``
        crop px with external_mask ``(B,)`` bool (default all True); optional virt_to_cam ``(B,3,3)``."""
        if not torch.jit.is_tracing() and not torch.compiler.is_compiling():
            self._check_inputs(crops, K_virt)
        features, heatmap_logits = self.encoder(crops)
        joints_2d_stacks, heatmaps = soft_argmax_2d(heatmap_logits, float(HEATMAP_STRIDE))
        joints_2d_pred = joints_2d_stacks[:, -1]
        joints_2d_used = joints_2d_pred
        if joints_2d_external is not None:
            if external_mask is None:
                joints_2d_used = joints_2d_external.to(joints_2d_pred.dtype)
            else:
                mask = external_mask.to(joints_2d_pred.dtype).reshape(-1, 1, 1)
                joints_2d_used = mask * joints_2d_external.to(joints_2d_pred.dtype) + (1.0 - mask) * joints_2d_pred
        sampled = sample_features_at_points(features, joints_2d_used, self.crop_size)
        coords = joints_2d_used * (2.0 / self.crop_size) - 1.0
        joint_features = torch.cat([sampled, coords], dim=-1)
        vertices = self.decoder(joint_features)
        joints = torch.einsum("jv,bvc->bjc", self.joint_regressor.to(vertices.dtype), vertices)
        root = joints[:, :1]
        vertices_rel = vertices - root
        joints_rel = joints - root
        dgp_weights = self.dgp_head(joint_features)
        solution = solve_translation(
            joints_rel, joints_2d_used, K_virt.to(joints_rel.dtype), dgp_weights, damping=self.dgp_damping
        )
        translation = solution.translation
        vertices_virt = vertices_rel + translation.unsqueeze(1)
        joints_virt = joints_rel + translation.unsqueeze(1)
        if virt_to_cam is None:
            vertices_cam, joints_cam, translation_cam = vertices_virt, joints_virt, translation
        else:
            rotation_t = virt_to_cam.to(vertices_virt.dtype).transpose(1, 2)
            vertices_cam = vertices_virt @ rotation_t
            joints_cam = joints_virt @ rotation_t
            translation_cam = (translation.unsqueeze(1) @ rotation_t).squeeze(1)
        return M3DHMROutput(
            vertices_rel=vertices_rel,
            joints_rel=joints_rel,
            joints_2d_pred=joints_2d_pred,
            joints_2d_stacks=joints_2d_stacks,
            heatmaps=heatmaps,
            joints_2d_used=joints_2d_used,
            dgp_weights=dgp_weights,
            translation_virt=translation,
            vertices_virt=vertices_virt,
            joints_virt=joints_virt,
            vertices_cam=vertices_cam,
            joints_cam=joints_cam,
            translation_cam=translation_cam,
            dgp_residual=solution.residual,
            dgp_degenerate=solution.degenerate,
        )
