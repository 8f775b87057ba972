"""Dynamic Spiral Convolution (M3DHMR, eqs. 3-6).

A DSC layer holds K kernels of identical shape for each of its two stacked weight/bias pairs:
a spatial pair ``(W1_k, b1_k)`` acting on the concatenated spiral ``(L*C_in -> C_out)`` and a channel pair
``(W2_k, b2_k)`` acting per vertex ``(C_out -> C_out)``. Per vertex v, attention weights
``pi_v = softmax(FC2(ReLU(FC1(x_v))))`` over the K kernels (FC1 halves the channels) give the vertex's own
kernels ``W~_v = sum_k pi_vk W_k`` and ``b~_v = sum_k pi_vk b_k`` for both pairs:

    y_v = W2~_v ReLU(W1~_v s_v + b1~_v) + b2~_v,      s_v = concat_l x_{spiral(v, l)}

Efficiency: a linear map is linear in its weights, so ``(sum_k pi_k W_k) s + sum_k pi_k b_k ==
sum_k pi_k (W_k s + b_k)``. We therefore run ONE dense matmul against all K kernels stacked
``(K*C_out, L*C_in)`` and mix the K outputs with pi, instead of materialising a (V, C_out, L*C_in)
kernel per vertex (``DynamicLinear.forward_mixed_weights`` is that reference path, used in tests).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from models.spiral import spiral_gather


class KernelAttention(nn.Module):
    """Per-vertex attention over K kernels: ``(B, V, C) -> (B, V, K)``, rows sum to 1 (softmax over K)."""

    def __init__(self, *, in_channels: int, num_kernels: int) -> None:
        super().__init__()
        hidden = max(in_channels // 2, 1)
        self.fc1 = nn.Linear(in_channels, hidden)
        self.fc2 = nn.Linear(hidden, num_kernels)

    def forward(self, x: Tensor) -> Tensor:
        return torch.softmax(self.fc2(torch.relu(self.fc1(x))), dim=-1)


class DynamicLinear(nn.Module):
    """K linear kernels ``W: (K, out, in)``, ``b: (K, out)`` mixed per vertex by attention ``(B, V, K)``."""

    def __init__(self, *, in_features: int, out_features: int, num_kernels: int) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.num_kernels = num_kernels
        self.weight = nn.Parameter(torch.empty(num_kernels, out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(num_kernels, out_features))
        bound = math.sqrt(6.0 / (in_features + out_features))
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, x: Tensor, attention: Tensor) -> Tensor:
        """Mix outputs: ``x (B, V, in)``, ``attention (B, V, K)`` -> ``(B, V, out)``."""
        stacked_w = self.weight.reshape(self.num_kernels * self.out_features, self.in_features)
        stacked_b = self.bias.reshape(self.num_kernels * self.out_features)
        outputs = nn.functional.linear(x, stacked_w, stacked_b).unflatten(-1, (self.num_kernels, self.out_features))
        return (outputs * attention.unsqueeze(-1)).sum(dim=-2)

    def forward_mixed_weights(self, x: Tensor, attention: Tensor) -> Tensor:
        """Reference path of eqs. 5-6: build each vertex's kernel ``sum_k pi_k W_k`` explicitly, then apply it."""
        mixed_w = torch.einsum("bvk,koi->bvoi", attention, self.weight)
        mixed_b = torch.einsum("bvk,ko->bvo", attention, self.bias)
        return torch.einsum("bvoi,bvi->bvo", mixed_w, x) + mixed_b


class DynamicSpiralConv(nn.Module):
    """One DSC layer: ``(B, V_in, C_in) -> (B, V, C_out)`` with spirals ``(V, L)`` (non-persistent buffer)."""

    def __init__(self, *, spirals: Tensor, in_channels: int, out_channels: int, num_kernels: int = 8) -> None:
        super().__init__()
        self.register_buffer("spirals", spirals.long().clone(), persistent=False)
        length = int(spirals.shape[1])
        self.num_kernels = num_kernels
        self.attention = KernelAttention(in_channels=in_channels, num_kernels=num_kernels)
        self.spatial = DynamicLinear(
            in_features=length * in_channels, out_features=out_channels, num_kernels=num_kernels
        )
        self.channel = DynamicLinear(in_features=out_channels, out_features=out_channels, num_kernels=num_kernels)

    def kernel_attention(self, x: Tensor) -> Tensor:
        """Attention ``(B, V, K)`` computed from each output vertex's own input feature (entry 0 of its spiral)."""
        return self.attention(x[:, self.spirals[:, 0]])

    def forward(self, x: Tensor) -> Tensor:
        attention = self.kernel_attention(x)
        gathered = spiral_gather(x, self.spirals).flatten(2)
        hidden = torch.relu(self.spatial(gathered, attention))
        return self.channel(hidden, attention)

    def forward_mixed_weights(self, x: Tensor) -> Tensor:
        """Same result as :meth:`forward` via explicitly mixed per-vertex kernels (slow; for tests)."""
        attention = self.kernel_attention(x)
        gathered = spiral_gather(x, self.spirals).flatten(2)
        hidden = torch.relu(self.spatial.forward_mixed_weights(gathered, attention))
        return self.channel.forward_mixed_weights(hidden, attention)
