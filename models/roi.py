"""Region-of-Interest layer (M3DHMR): a dilated spiral convolution whose spirals stay inside one hand region.

The region-restricted, dilated spiral table ``(V, L_roi)`` comes from the topology asset (every index lies
in the same region as its row's vertex: palm, thumb, index, middle, ring, little), so the layer refines
each region with information from that region only. A residual connection keeps the decoder's features.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from models.spiral import SpiralConv


class ROILayer(nn.Module):
    """``(B, V, C) -> (B, V, C)``: ``x + ReLU(SpiralConv_roi(x))`` at the full-resolution level."""

    def __init__(self, *, roi_spirals: Tensor, channels: int) -> None:
        super().__init__()
        self.conv = SpiralConv(spirals=roi_spirals, in_channels=channels, out_channels=channels)

    def forward(self, x: Tensor) -> Tensor:
        return x + torch.relu(self.conv(x))
