"""HandDGP differentiable global positioning: camera-space translation in closed form.

With normalised image coordinates ``(x, y) = K^-1 (u, v, 1)`` and root-relative points ``(X, Y, Z)``
(metres, camera axes), every correspondence gives two rows (HandDGP):

    -tx + x*tz = X - x*Z          -ty + y*tz = Y - y*Z

each multiplied by the point's weight w. We solve the weighted least-squares problem through its 3x3
normal equations with the adjugate (no ``torch.linalg.solve``/``lstsq``: they do not export to ONNX).

Numerics (why it is float32-safe): the normal matrix of the raw system mixes O(1) entries with the small
spread of (x, y); we first change variables to the weighted centroid ``(x_bar, y_bar)``:
``tx' = tx - x_bar*tz``, ``ty' = ty - y_bar*tz``. This is exact (the solution is unchanged) and makes the
normal matrix block-diagonal ``diag(S0, S0, Q)`` up to rounding, where ``S0 = sum w^2`` and
``Q = sum w^2 ((x-x_bar)^2 + (y-y_bar)^2)``. Weights are first divided by their maximum (only ratios
matter, so the solution is exactly invariant to scaling all weights), the matrix is divided by its mean
diagonal, and a small deterministic Tikhonov term ``damping * I`` is added, so zero weights or coincident
points give a finite answer (t = 0 / bounded tz) with finite gradients, reported by ``degenerate``.

Extra correspondences (e.g. mesh vertices with known 2D positions) are added by concatenating them
along N with their own weights; nothing else changes.

Behind the camera: when the 3D points disagree with the 2D ones (for instance a hand predicted upside
down), the least-squares optimum can put the root at ``tz <= MIN_DEPTH_M``, which no real hand has. Those
rows fall back to the weak-perspective closed form (the weighted centroid sits at the depth where the
points' 3D spread projects to their 2D spread) and are flagged ``degenerate``; both branches are
``torch.where`` selections, so the solve stays exportable and differentiable.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from models.errors import InputShapeError

DEGENERATE_SPREAD: float = 1e-10  # weighted variance of normalised image coords below ~1e-5 rad: no depth
DEGENERATE_WEIGHT: float = 1e-12  # largest weight below this: no information
MIN_DEPTH_M: float = 0.01  # a root closer than 1 cm (or behind the camera) is not a hand in view
MAX_FALLBACK_DEPTH_M: float = 3.0  # the fallback never places a hand further than a webcam can resolve one


@dataclass(frozen=True)
class DGPSolution:
    """translation ``(B, 3)`` metres (the root's position in the camera); residual ``(B,)`` metres
    (weighted RMS of the rows' lateral error at the point's depth); degenerate ``(B,)`` bool."""

    translation: Tensor
    residual: Tensor
    degenerate: Tensor


def pixels_to_normalized(points_2d: Tensor, intrinsics: Tensor) -> Tensor:
    """``(B, N, 2)`` pixels, ``(B, 3, 3)`` upper-triangular K (skew allowed) -> ``(B, N, 2)`` = K^-1 (u, v, 1)."""
    fx = intrinsics[:, 0, 0].unsqueeze(-1)
    skew = intrinsics[:, 0, 1].unsqueeze(-1)
    cx = intrinsics[:, 0, 2].unsqueeze(-1)
    fy = intrinsics[:, 1, 1].unsqueeze(-1)
    cy = intrinsics[:, 1, 2].unsqueeze(-1)
    y = (points_2d[..., 1] - cy) / fy
    x = (points_2d[..., 0] - cx - skew * y) / fx
    return torch.stack([x, y], dim=-1)


def solve_3x3_adjugate(matrix: Tensor, rhs: Tensor) -> tuple[Tensor, Tensor]:
    """Solve ``matrix (B, 3, 3) @ t = rhs (B, 3)`` by the adjugate; returns ``(t, det)``. Caller keeps det away from 0."""
    a, b, c = matrix[:, 0, 0], matrix[:, 0, 1], matrix[:, 0, 2]
    d, e, f = matrix[:, 1, 0], matrix[:, 1, 1], matrix[:, 1, 2]
    g, h, i = matrix[:, 2, 0], matrix[:, 2, 1], matrix[:, 2, 2]
    co00, co01, co02 = e * i - f * h, f * g - d * i, d * h - e * g
    co10, co11, co12 = c * h - b * i, a * i - c * g, b * g - a * h
    co20, co21, co22 = b * f - c * e, c * d - a * f, a * e - b * d
    det = a * co00 + b * co01 + c * co02
    r0, r1, r2 = rhs[:, 0], rhs[:, 1], rhs[:, 2]
    # adj = cofactor^T, so (adj @ r)_i = sum_j cofactor[j, i] * r_j
    t0 = co00 * r0 + co10 * r1 + co20 * r2
    t1 = co01 * r0 + co11 * r1 + co21 * r2
    t2 = co02 * r0 + co12 * r1 + co22 * r2
    return torch.stack([t0, t1, t2], dim=-1) / det.unsqueeze(-1), det


def solve_translation(
    points_rel: Tensor,
    points_2d: Tensor,
    intrinsics: Tensor,
    weights: Tensor,
    damping: float = 1e-9,
) -> DGPSolution:
    """Weighted closed-form translation t with ``points_rel + t`` projecting to ``points_2d``.

    points_rel ``(B, N, 3)`` metres, root-relative, camera axes; points_2d ``(B, N, 2)`` pixels of the
    camera with intrinsics ``(B, 3, 3)``; weights ``(B, N)`` >= 0 (only their ratios matter).
    Works in float32 and float64 (dtype/device inherited), differentiable everywhere.
    """
    if points_rel.ndim != 3 or points_rel.shape[-1] != 3 or points_2d.shape != points_rel.shape[:-1] + (2,):
        raise InputShapeError(f"expected points_rel (B,N,3) and points_2d (B,N,2), got {tuple(points_rel.shape)}, {tuple(points_2d.shape)}")
    if weights.shape != points_rel.shape[:-1] or intrinsics.shape[-2:] != (3, 3):
        raise InputShapeError(f"expected weights (B,N) and intrinsics (B,3,3), got {tuple(weights.shape)}, {tuple(intrinsics.shape)}")
    normalized = pixels_to_normalized(points_2d, intrinsics)
    x, y = normalized[..., 0], normalized[..., 1]
    big_x, big_y, big_z = points_rel[..., 0], points_rel[..., 1], points_rel[..., 2]
    # Only weight ratios matter: normalise by the largest weight (where() keeps zero weights finite,
    # including their gradients), so afterwards s0 >= 1 for any usable input.
    max_weight = weights.abs().amax(dim=-1, keepdim=True)
    has_weight = max_weight > DEGENERATE_WEIGHT
    weights_n = weights / torch.where(has_weight, max_weight, torch.ones_like(max_weight))
    w2 = weights_n * weights_n
    s0 = w2.sum(dim=-1)
    s0_safe = s0.clamp_min(0.5)
    x_bar = (w2 * x).sum(dim=-1) / s0_safe
    y_bar = (w2 * y).sum(dim=-1) / s0_safe
    xc = x - x_bar.unsqueeze(-1)
    yc = y - y_bar.unsqueeze(-1)
    bx = big_x - x * big_z
    by = big_y - y * big_z
    # Normal equations of the centred rows  -tx' + xc*tz = bx,  -ty' + yc*tz = by.
    sxc = (w2 * xc).sum(dim=-1)
    syc = (w2 * yc).sum(dim=-1)
    q = (w2 * (xc * xc + yc * yc)).sum(dim=-1)
    zeros = torch.zeros_like(s0)
    matrix = torch.stack(
        [
            torch.stack([s0, zeros, -sxc], dim=-1),
            torch.stack([zeros, s0, -syc], dim=-1),
            torch.stack([-sxc, -syc, q], dim=-1),
        ],
        dim=-2,
    )
    rhs = torch.stack(
        [-(w2 * bx).sum(dim=-1), -(w2 * by).sum(dim=-1), (w2 * (xc * bx + yc * by)).sum(dim=-1)], dim=-1
    )
    scale = (2.0 * s0_safe + q) / 3.0
    eye = torch.eye(3, dtype=matrix.dtype, device=matrix.device)
    normalized_matrix = matrix / scale[:, None, None] + damping * eye
    t_centred, _ = solve_3x3_adjugate(normalized_matrix, rhs / scale.unsqueeze(-1))
    tz = t_centred[:, 2]
    translation = torch.stack([t_centred[:, 0] + x_bar * tz, t_centred[:, 1] + y_bar * tz, tz], dim=-1)
    row_x = -translation[:, :1] + x * translation[:, 2:] - bx
    row_y = -translation[:, 1:2] + y * translation[:, 2:] - by
    mean_square = (w2 * (row_x * row_x + row_y * row_y)).sum(dim=-1) / (2.0 * s0_safe)
    residual = torch.sqrt(mean_square + 1e-18)
    uninformative = ~has_weight.squeeze(-1) | (q / s0_safe <= DEGENERATE_SPREAD)
    behind = (translation[:, 2] <= MIN_DEPTH_M) & ~uninformative
    fallback = _weak_perspective_translation(w2, s0_safe, x_bar, y_bar, xc, yc, points_rel)
    translation = torch.where(behind.unsqueeze(-1), fallback, translation)
    degenerate = uninformative | behind
    return DGPSolution(translation=translation, residual=residual, degenerate=degenerate)


def _weak_perspective_translation(
    w2: Tensor, s0: Tensor, x_bar: Tensor, y_bar: Tensor, xc: Tensor, yc: Tensor, points_rel: Tensor
) -> Tensor:
    """Root translation ``(B, 3)`` under weak perspective: the weighted 3D centroid lies on the ray of the
    weighted 2D centroid ``(x_bar, y_bar)`` at the depth ``d = spread_3d / spread_2d`` (RMS lateral spreads
    about the centroids, normalised image units), clamped to at least ``MIN_DEPTH_M`` plus the centroid's
    own depth offset so the root stays in front of the camera, and to at most ``MAX_FALLBACK_DEPTH_M``
    (nearly coincident 2D points would otherwise send it arbitrarily far)."""
    mean_3d = (w2.unsqueeze(-1) * points_rel).sum(dim=1) / s0.unsqueeze(-1)
    centred = points_rel - mean_3d.unsqueeze(1)
    spread_3d = (w2 * (centred[..., 0] ** 2 + centred[..., 1] ** 2)).sum(dim=-1) / s0
    spread_2d = (w2 * (xc * xc + yc * yc)).sum(dim=-1) / s0
    depth = torch.sqrt((spread_3d + 1e-18) / (spread_2d + 1e-18))
    depth = torch.maximum(depth.clamp_max(MAX_FALLBACK_DEPTH_M), MIN_DEPTH_M + mean_3d[:, 2].clamp_min(0.0))
    return torch.stack([x_bar * depth, y_bar * depth, depth], dim=-1) - mean_3d
