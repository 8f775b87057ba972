"""Image encoders written from scratch (torchvision is not available): ResNet basic blocks and the
two-stack hourglass-style "Stack-ResNet" encoder of M3DHMR, with a width multiplier for the slim variant.

Input: ``(B, 3, S, S)`` float32 RGB in [0, 1] (see ``models.config``); the encoder normalises with
``IMAGE_MEAN_RGB`` / ``IMAGE_STD_RGB`` itself. Output per stack: a stride-4 feature map
``(B, feature_channels, S/4, S/4)``.

Each stack is an hourglass: ResNet stages down to stride 32 (ResNet18: 2-2-2-2 basic blocks, ResNet34:
3-4-6-3), then a top-down path with lateral 1x1 projections, nearest up-sampling and a 3x3 smoothing conv
back to stride 4. Stacks are chained as in stacked hourglass networks: the next stack sees the stem
features plus the previous stack's features and its heatmaps re-projected to feature space.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from models.config import IMAGE_MEAN_RGB, IMAGE_STD_RGB

BASE_WIDTHS: tuple[int, int, int, int] = (64, 128, 256, 512)


def conv_bn_relu(in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs with BN, identity (or 1x1 strided projection) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        nn.init.zeros_(self.bn2.weight)  # residual branch starts at zero: stable training of deep stacks
        self.shortcut: nn.Module
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


def make_stage(in_channels: int, out_channels: int, blocks: int, stride: int) -> nn.Sequential:
    layers = [BasicBlock(in_channels, out_channels, stride)]
    layers += [BasicBlock(out_channels, out_channels) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class HourglassStack(nn.Module):
    """One stack: ``(B, C_in, H, W) -> (B, C_out, H, W)`` through ResNet stages (strides 1,2,2,2) and back up."""

    def __init__(self, *, in_channels: int, widths: tuple[int, ...], blocks: tuple[int, ...], out_channels: int) -> None:
        super().__init__()
        self.stages = nn.ModuleList()
        previous = in_channels
        for index, (width, count) in enumerate(zip(widths, blocks)):
            self.stages.append(make_stage(previous, width, count, stride=1 if index == 0 else 2))
            previous = width
        self.laterals = nn.ModuleList([nn.Conv2d(width, out_channels, 1) for width in widths])
        self.smooth = nn.ModuleList([conv_bn_relu(out_channels, out_channels, 3) for _ in widths[:-1]])

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        for stage in self.stages:
            x = stage(x)
            skips.append(x)
        top = self.laterals[-1](skips[-1])
        for index in range(len(skips) - 2, -1, -1):
            top = nn.functional.interpolate(top, scale_factor=2.0, mode="nearest")
            top = self.smooth[index](top + self.laterals[index](skips[index]))
        return top


class StackedResNetEncoder(nn.Module):
    """Stem (7x7/2 conv + 3x3/2 max-pool) then ``num_stacks`` hourglass stacks, each ending in heatmaps.

    ``forward`` returns ``(features, heatmap_logits)``: the last stack's stride-4 features
    ``(B, feature_channels, S/4, S/4)`` and every stack's heatmap logits ``(B, num_stacks, J, S/4, S/4)``.
    """

    def __init__(
        self,
        *,
        blocks: tuple[int, int, int, int],
        width_mult: float,
        num_stacks: int,
        feature_channels: int,
        num_joints: int,
    ) -> None:
        super().__init__()
        widths = tuple(max(8, int(round(w * width_mult))) for w in BASE_WIDTHS)
        self.register_buffer("mean", torch.tensor(IMAGE_MEAN_RGB).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGE_STD_RGB).view(1, 3, 1, 1), persistent=False)
        self.stem = nn.Sequential(
            conv_bn_relu(3, widths[0], 7, stride=2), nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        )
        self.stacks = nn.ModuleList()
        self.heatmap_heads = nn.ModuleList()
        self.merge_stem = nn.ModuleList()
        self.merge_features = nn.ModuleList()
        self.merge_heatmaps = nn.ModuleList()
        for index in range(num_stacks):
            in_channels = widths[0] if index == 0 else feature_channels
            self.stacks.append(
                HourglassStack(in_channels=in_channels, widths=widths, blocks=blocks, out_channels=feature_channels)
            )
            self.heatmap_heads.append(nn.Conv2d(feature_channels, num_joints, 1))
            if index < num_stacks - 1:
                self.merge_stem.append(nn.Conv2d(widths[0], feature_channels, 1))
                self.merge_features.append(nn.Conv2d(feature_channels, feature_channels, 1))
                self.merge_heatmaps.append(nn.Conv2d(num_joints, feature_channels, 1))
        self.num_stacks = num_stacks
        self.widths = widths

    def forward(self, crops: Tensor) -> tuple[Tensor, Tensor]:
        stem = self.stem((crops - self.mean) / self.std)
        x = stem
        heatmaps = []
        features = stem
        for index, (stack, head) in enumerate(zip(self.stacks, self.heatmap_heads)):
            features = stack(x)
            logits = head(features)
            heatmaps.append(logits)
            if index < self.num_stacks - 1:
                x = self.merge_stem[index](stem) + self.merge_features[index](features) + self.merge_heatmaps[index](logits)
        return features, torch.stack(heatmaps, dim=1)
