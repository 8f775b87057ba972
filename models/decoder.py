"""Coarse-to-fine mesh decoder: joint features -> lifted coarse mesh -> (up-sample, conv)* -> ROI -> vertices.

Eq. 2 of M3DHMR: a learnable matrix ``(V_coarse, 21)`` lifts the 21 joint features to the coarsest
mesh level. Each finer level up-samples (asset's up matrices) and applies one convolution block whose
type is selected by config: ``dsc`` (paper), ``spiralconv++`` or ``dsconv`` (ablation baselines). The ROI
layer (optional, ablation) refines the full-resolution features per hand region; a per-vertex linear
head outputs offsets (metres) added to the template mesh.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from models.dsc import DynamicSpiralConv
from models.roi import ROILayer
from models.spiral import DepthSeparableSpiralConv, SpiralConv
from models.topology import DecoderTopology, apply_padded_sparse


def make_mesh_conv(*, decoder_type: str, spirals: Tensor, in_channels: int, out_channels: int, num_kernels: int) -> nn.Module:
    """Build the convolution of one decoder level by name (``dsc`` | ``spiralconv++`` | ``dsconv``)."""
    if decoder_type == "dsc":
        return DynamicSpiralConv(spirals=spirals, in_channels=in_channels, out_channels=out_channels, num_kernels=num_kernels)
    if decoder_type == "spiralconv++":
        return SpiralConv(spirals=spirals, in_channels=in_channels, out_channels=out_channels)
    if decoder_type == "dsconv":
        return DepthSeparableSpiralConv(spirals=spirals, in_channels=in_channels, out_channels=out_channels)
    raise ValueError(f"unknown decoder_type {decoder_type!r}")


class JointLifting(nn.Module):
    """Eq. 2: ``(B, 21, C) -> (B, V_coarse, C)`` through a learnable ``(V_coarse, 21)`` matrix.

    Initialised from geometry: each coarse template vertex starts as a softmax over its distances to the
    template joints (nearby joints dominate), so training starts from a sensible assignment.
    """

    def __init__(self, *, coarse_template: Tensor, template_joints: Tensor, length_scale: float = 0.02) -> None:
        super().__init__()
        distances = torch.cdist(coarse_template.float(), template_joints.float())
        self.matrix = nn.Parameter(torch.softmax(-distances / length_scale, dim=1))

    def forward(self, joint_features: Tensor) -> Tensor:
        return torch.einsum("vj,bjc->bvc", self.matrix, joint_features)


class MeshDecoder(nn.Module):
    """Joint features ``(B, 21, C_in)`` -> template-based vertices ``(B, V, 3)`` in metres (not yet root-relative)."""

    def __init__(
        self,
        *,
        topology: DecoderTopology,
        in_channels: int,
        channels: tuple[int, ...],
        decoder_type: str,
        num_kernels: int,
        use_roi: bool,
    ) -> None:
        super().__init__()
        levels = topology.num_levels
        if len(channels) != levels:
            raise ValueError(f"decoder_channels needs {levels} entries (one per mesh level), got {len(channels)}")
        template = topology.template_vertices
        template_joints = topology.joint_regressor @ template
        self.lifting = JointLifting(coarse_template=topology.coarse_template(), template_joints=template_joints)
        self.project = nn.Linear(in_channels, channels[-1])
        self.convs = nn.ModuleList()
        for level in range(levels - 2, -1, -1):
            self.convs.append(
                make_mesh_conv(
                    decoder_type=decoder_type,
                    spirals=topology.spirals[level],
                    in_channels=channels[level + 1],
                    out_channels=channels[level],
                    num_kernels=num_kernels,
                )
            )
            up = topology.up[level]
            self.register_buffer(f"up_index_{level}", up.index.clone(), persistent=False)
            self.register_buffer(f"up_weight_{level}", up.weight.clone(), persistent=False)
        self.levels = levels
        self.roi = ROILayer(roi_spirals=topology.roi_spirals, channels=channels[0]) if use_roi else None
        self.head = nn.Linear(channels[0], 3)
        nn.init.normal_(self.head.weight, std=1e-3)
        nn.init.zeros_(self.head.bias)
        self.register_buffer("template", template.clone(), persistent=False)

    def forward(self, joint_features: Tensor) -> Tensor:
        x = torch.relu(self.project(self.lifting(joint_features)))
        for step, conv in enumerate(self.convs):
            level = self.levels - 2 - step
            index = getattr(self, f"up_index_{level}")
            weight = getattr(self, f"up_weight_{level}")
            x = torch.relu(conv(apply_padded_sparse(x, index, weight)))
        if self.roi is not None:
            x = self.roi(x)
        return self.template + self.head(x)

