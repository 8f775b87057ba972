"""2D joints from heatmaps by soft-argmax, and bilinear feature sampling at 2D joints (M3DHMR eq. 1).

Why heatmaps + soft-argmax rather than direct regression: the encoder is a fully convolutional
hourglass whose stride-4 features are already spatially aligned with the crop; a 1x1 heatmap head keeps
that translation equivariance (a regression FC would have to re-learn it), soft-argmax gives sub-pixel,
differentiable coordinates trained with the paper's L1 2D-pose loss directly, intermediate stacks get
the same supervision, and the heatmap's spread doubles as an uncertainty cue. Cost: negligible.

Coordinates are crop pixels with pixel i's centre at i (OpenCV convention); heatmap cell j of stride s
covers crop pixels [j*s, (j+1)*s), so its centre is at ``(j + 0.5) * s - 0.5``.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


def soft_argmax_2d(logits: Tensor, stride: float) -> tuple[Tensor, Tensor]:
    """``(*, J, h, w)`` heatmap logits -> coordinates ``(*, J, 2)`` (x, y) in crop pixels and probabilities ``(*, J, h, w)``."""
    height, width = logits.shape[-2], logits.shape[-1]
    probs = torch.softmax(logits.flatten(-2), dim=-1).unflatten(-1, (height, width))
    xs = (torch.arange(width, dtype=logits.dtype, device=logits.device) + 0.5) * stride - 0.5
    ys = (torch.arange(height, dtype=logits.dtype, device=logits.device) + 0.5) * stride - 0.5
    x = (probs.sum(dim=-2) * xs).sum(dim=-1)
    y = (probs.sum(dim=-1) * ys).sum(dim=-1)
    return torch.stack([x, y], dim=-1), probs


def sample_features_at_points(features: Tensor, points_crop: Tensor, crop_size: int) -> Tensor:
    """Eq. 1: bilinear samples of ``features (B, C, h, w)`` at ``points_crop (B, N, 2)`` crop px -> ``(B, N, C)``.

    The feature map covers the whole crop (``align_corners=False``), so crop pixel p maps to the
    normalised grid coordinate ``(p + 0.5) / S * 2 - 1``. Points outside the crop use border features.
    """
    grid = (points_crop + 0.5) * (2.0 / crop_size) - 1.0
    sampled = nn.functional.grid_sample(
        features, grid.unsqueeze(2), mode="bilinear", padding_mode="border", align_corners=False
    )
    return sampled.squeeze(-1).transpose(1, 2)


class DGPWeightHead(nn.Module):
    """HandDGP weight head: joint features ``(B, J, C)`` -> one positive weight per joint ``(B, J)`` in (0, 1)."""

    def __init__(self, *, in_channels: int, hidden: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 1))

    def forward(self, joint_features: Tensor) -> Tensor:
        return torch.sigmoid(self.mlp(joint_features).squeeze(-1))
