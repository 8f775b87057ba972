"""Spiral mesh convolutions: the gather, SpiralConv++ and the depth-separable spiral conv (DSConv).

All layers act on vertex features ``(B, V, C)`` (any batch size B) with a fixed spiral index table
``(V, L)`` int64 whose entry 0 is the vertex itself. The table is a non-persistent buffer: it belongs to
the topology asset, not to the weights.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def spiral_gather(x: Tensor, spirals: Tensor) -> Tensor:
    """Gather spiral neighbourhoods: ``(B, V_in, C)`` features, ``(V, L)`` indices -> ``(B, V, L, C)``."""
    return x[:, spirals]


class SpiralConv(nn.Module):
    """SpiralConv++ (Gong et al. 2019): one linear map over the concatenated spiral ``(L*C_in -> C_out)``.

    ``weight`` is ``(C_out, L*C_in)`` with spiral position as the slow axis and channel as the fast one.
    """

    def __init__(self, *, spirals: Tensor, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.register_buffer("spirals", spirals.long().clone(), persistent=False)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.spiral_length = int(spirals.shape[1])
        self.linear = nn.Linear(self.spiral_length * in_channels, out_channels)
        nn.init.xavier_uniform_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, V_in, C_in)`` -> ``(B, V, C_out)`` where V = number of spiral rows."""
        return self.linear(spiral_gather(x, self.spirals).flatten(2))


class DepthSeparableSpiralConv(nn.Module):
    """DSConv (MobRecon, Chen et al. 2022): per-channel weights over the spiral, then a 1x1 channel mix.

    depthwise: ``h[v, c] = sum_l w_dw[l, c] * x[s(v, l), c] + b_dw[c]``; pointwise: ``y = W_pw h + b_pw``.
    """

    def __init__(self, *, spirals: Tensor, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.register_buffer("spirals", spirals.long().clone(), persistent=False)
        length = int(spirals.shape[1])
        self.depthwise_weight = nn.Parameter(torch.empty(length, in_channels))
        self.depthwise_bias = nn.Parameter(torch.zeros(in_channels))
        nn.init.uniform_(self.depthwise_weight, -1.0 / math.sqrt(length), 1.0 / math.sqrt(length))
        self.pointwise = nn.Linear(in_channels, out_channels)
        nn.init.xavier_uniform_(self.pointwise.weight)
        nn.init.zeros_(self.pointwise.bias)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, V_in, C_in)`` -> ``(B, V, C_out)``."""
        gathered = spiral_gather(x, self.spirals)
        depthwise = (gathered * self.depthwise_weight).sum(dim=2) + self.depthwise_bias
        return self.pointwise(depthwise)
