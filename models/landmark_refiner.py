"""Learned correction of MediaPipe's 3D landmarks before the fused cue reads them.

MediaPipe's world landmarks carry errors that depend on the pose: its joint definitions differ from
our hand model's in a pose-dependent way, and its 3D head has its own articulation biases. A constant
per-joint correction in the hand's own frame moved their PA-MPJPE by 0.1 mm (README, "What the decoder
adds"); a small MLP that sees all 21 landmarks at once, in the same frame, removes a third of it
(README, "The landmark refiner").

Every row is expressed in its palm frame before the MLP reads it, so the correction does not depend
on where the hand points or how large it is:

* origin at the wrist (joint 0); unit length = the palm length |x_9 - x_0| (wrist to middle MCP);
* y along wrist -> middle MCP, z = normalise((x_5 - x_17) x y) (across the knuckles, index minus little,
  crossed with y: the palm normal), x = y x z.

The inputs are the landmarks after the ray lift (``models.landmark_lift``) and before it (MediaPipe's
own depths), both wrist-relative in the crop's virtual camera, where left hands are already mirrored
into right ones (``models.mediapipe_frame.world_landmarks_to_virtual``). The MLP returns a residual
per joint in palm-frame units, which is rotated and scaled back and added to the lifted landmarks.
Rows without landmarks (mask 0) or with a degenerate palm frame are returned unchanged. Plain tensor
ops (the cross products are written out), so it exports to ONNX inside the network.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NUM_JOINTS: int = 21
INPUT_FEATURES: int = 2 * NUM_JOINTS * 3
"""Lifted and unlifted landmarks in palm-frame units, 21 x 3 each."""
MIN_PALM_M: float = 0.01
"""Rows whose palm (wrist to middle MCP) is shorter than this, or whose knuckle line is parallel to it,
have no usable frame and keep their input."""
WRIST, INDEX_MCP, MIDDLE_MCP, LITTLE_MCP = 0, 5, 9, 17
MIN_FEATURE_STD: float = 1e-3
"""Floor of the standardisation's scale, palm lengths. Nine features are constant by construction (both wrists
at the origin, the lifted middle MCP at (0, 1, 0)); dividing their rounding noise (1e-7) by a fitted scale
near zero made the output depend on float rounding (0.1-2 mm between torch and onnxruntime). The varying
features' scales are 0.03 and up."""


def _cross(a: Tensor, b: Tensor) -> Tensor:
    """Cross product of ``(..., 3)`` vectors, written out (exports to every ONNX opset)."""
    ax, ay, az = a[..., 0], a[..., 1], a[..., 2]
    bx, by, bz = b[..., 0], b[..., 1], b[..., 2]
    return torch.stack([ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx], dim=-1)


def palm_frame(points: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Palm frame of ``points (B, 21, 3)`` metres (see module docstring).

    Returns ``rotation (B, 3, 3)`` whose columns are the frame's x, y, z axes in the input's axes (so
    ``points @ rotation`` gives palm-frame coordinates), ``palm (B, 1, 1)`` metres (clamped to
    ``MIN_PALM_M``), and ``ok (B,)`` bool: False where the frame is degenerate or not finite.
    """
    y = points[:, MIDDLE_MCP] - points[:, WRIST]
    palm = (y * y).sum(dim=-1, keepdim=True).sqrt()
    y = y / palm.clamp_min(MIN_PALM_M)
    across = points[:, INDEX_MCP] - points[:, LITTLE_MCP]
    z = _cross(across, y)
    z_norm = (z * z).sum(dim=-1, keepdim=True).sqrt()
    z = z / z_norm.clamp_min(1e-6)
    x = _cross(y, z)
    rotation = torch.stack([x, y, z], dim=-1)
    ok = (palm.squeeze(-1) >= MIN_PALM_M) & (z_norm.squeeze(-1) >= 0.2 * MIN_PALM_M)
    ok = ok & torch.isfinite(rotation).all(dim=-1).all(dim=-1)
    return rotation, palm.clamp_min(MIN_PALM_M).reshape(-1, 1, 1), ok


class LandmarkRefiner(nn.Module):
    """MLP correction of the fused cue's landmarks (module docstring).

    ``hidden``: width of the two hidden layers; ``dropout``: used only while training the refiner on
    its own (``training.train_refiner``); the network builds it with 0. The buffers ``input_mean`` /
    ``input_std`` ``(126,)`` standardise the palm-frame features and are fitted with the weights.
    The output layer starts at zero, so an untrained refiner returns its input exactly.
    """

    def __init__(self, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        if hidden < 1:
            raise ValueError(f"hidden must be >= 1, got {hidden}")
        self.dropout = float(dropout)
        self.hidden1 = nn.Linear(INPUT_FEATURES, hidden)
        self.hidden2 = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, NUM_JOINTS * 3)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.register_buffer("input_mean", torch.zeros(INPUT_FEATURES))
        self.register_buffer("input_std", torch.ones(INPUT_FEATURES))

    def features(self, lifted: Tensor, unlifted: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Palm-frame features ``(B, 126)`` (not yet standardised) of ``lifted`` / ``unlifted (B, 21, 3)``
        metres, wrist-relative; plus the frame's ``rotation (B,3,3)``, ``palm (B,1,1)`` and ``ok (B,)``
        (taken from ``lifted``)."""
        rotation, palm, ok = palm_frame(lifted)
        batch = lifted.shape[0]
        local = torch.cat([(lifted - lifted[:, :1]) @ rotation, (unlifted - unlifted[:, :1]) @ rotation], dim=1) / palm
        return local.reshape(batch, INPUT_FEATURES), rotation, palm, ok

    def residual(self, features: Tensor) -> Tensor:
        """Palm-frame residual ``(B, 21, 3)`` (palm-length units) of raw ``features (B, 126)``."""
        h = (features - self.input_mean.to(features.dtype)) / self.input_std.clamp_min(MIN_FEATURE_STD).to(features.dtype)
        h = F.dropout(F.gelu(self.hidden1(h)), self.dropout, self.training)
        h = F.dropout(F.gelu(self.hidden2(h)), self.dropout, self.training)
        return self.out(h).reshape(-1, NUM_JOINTS, 3)

    def forward(self, lifted: Tensor, unlifted: Tensor, mask: Tensor | None = None) -> Tensor:
        """Refined landmarks ``(B, 21, 3)`` metres, wrist-relative, same axes as ``lifted``.

        lifted / unlifted ``(B, 21, 3)`` metres (after / before the ray lift); mask ``(B,)`` or ``(B,1,1)``
        (1 = the row has landmarks). The MLP runs in the weights' dtype; the result has the input's.
        """
        dtype = lifted.dtype
        weight_dtype = self.out.weight.dtype
        features, rotation, palm, ok = self.features(lifted, unlifted)
        local = self.residual(features.to(weight_dtype)).to(dtype)
        refined = lifted + palm * (local @ rotation.transpose(1, 2))
        refined = refined - refined[:, :1]
        ok = ok & torch.isfinite(refined).all(dim=-1).all(dim=-1)
        if mask is not None:
            ok = ok & (mask.reshape(-1) > 0.5)
        return torch.where(ok.reshape(-1, 1, 1), refined, lifted)
