"""Hand mesh recovery metrics, defined as FreiHAND's official evaluation defines them.

All inputs are point sets in metres, shaped ``(B, N, 3)`` (``B`` samples, ``N`` joints or vertices),
as torch tensors or numpy arrays of any float dtype; every computation runs in float64 on CPU so that
results do not depend on the input precision. Reported errors are in millimetres.

Definitions (Zimmermann et al., "FreiHAND", ICCV 2019, official evaluation script, re-implemented):

* Procrustes alignment with scale ("PA"): per sample, the prediction is mapped onto the ground truth by
  the least-squares similarity transform. Both sets are centred and divided by their Frobenius norm
  (plus 1e-8), the rotation is the orthogonal Procrustes solution ``R = U V^T`` of
  ``svd(gt^T pred)`` (like the official script, a reflection is not excluded), the scale is the sum
  of the singular values, and the result is re-scaled and re-centred onto the ground truth.
* PA-MPJPE / PA-MPVPE: mean Euclidean distance between aligned prediction and ground truth over all
  joints / vertices and all samples.
* F-score at threshold ``t``: on the aligned mesh, precision = fraction of predicted vertices whose
  nearest ground-truth vertex is closer than ``t``; recall = fraction of ground-truth vertices whose
  nearest predicted vertex is closer than ``t`` (strict ``<``, as in the official code);
  ``F = 2PR / (P + R)`` (0 when both are 0); averaged over samples. Thresholds 5 mm and 15 mm.
* PCK AUC: the fraction of joints with error ``<= t`` (inclusive, as the official script), for 100
  thresholds evenly spaced over [0, 50] mm, integrated with the trapezoid rule and divided by 50 mm.
* Camera-space MPJPE / MPVPE: mean distance without any alignment (tests the global position too).
* Root error: distance between predicted and ground-truth wrist joint (index 0) in camera space.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

F_SCORE_THRESHOLDS_M: tuple[float, float] = (0.005, 0.015)
AUC_RANGE_M: tuple[float, float] = (0.0, 0.05)
AUC_STEPS: int = 100
ROOT_JOINT: int = 0
_EPS_NORM: float = 1e-8

ArrayLike = torch.Tensor | np.ndarray


class MetricInputError(ValueError):
    """Raised when prediction and ground truth do not have matching ``(B, N, 3)`` shapes."""


def _as_f64(x: ArrayLike, name: str) -> torch.Tensor:
    t = torch.as_tensor(x).detach().to(device="cpu", dtype=torch.float64)
    if t.ndim != 3 or t.shape[-1] != 3:
        raise MetricInputError(f"{name} must have shape (B, N, 3), got {tuple(t.shape)}")
    return t


def _check_pair(pred: ArrayLike, gt: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    p = _as_f64(pred, "pred")
    g = _as_f64(gt, "gt")
    if p.shape != g.shape:
        raise MetricInputError(f"pred {tuple(p.shape)} and gt {tuple(g.shape)} must have the same shape")
    return p, g


def procrustes_align_to_gt(pred: ArrayLike, gt: ArrayLike) -> torch.Tensor:
    """Align each predicted point set to its ground truth with a similarity transform (FreiHAND).

    Args:
        pred: ``(B, N, 3)`` predicted points, metres.
        gt: ``(B, N, 3)`` ground-truth points, metres, same ordering.

    Returns:
        ``(B, N, 3)`` float64 aligned prediction, metres, in the ground truth's frame.
    """
    p, g = _check_pair(pred, gt)
    scale, rotation, translation = procrustes_similarity(p, g)
    return scale * p @ rotation.transpose(1, 2) + translation


def procrustes_similarity(pred: torch.Tensor, gt: torch.Tensor,
                          allow_reflection: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The similarity that best maps each ``pred (B, N, 3)`` onto its ``gt (B, N, 3)`` (least squares;
    tensors of one float dtype, any device): ``(scale (B, 1, 1), rotation (B, 3, 3), translation (B, 1, 3))``
    with ``aligned = scale * pred @ rotation.T + translation``. ``allow_reflection`` as FreiHAND's
    evaluation (scipy's ``orthogonal_procrustes``): the "rotation" may be a mirror; without it the best
    proper rotation (Umeyama)."""
    g_mean = gt.mean(dim=1, keepdim=True)
    p_mean = pred.mean(dim=1, keepdim=True)
    g_c = gt - g_mean
    p_c = pred - p_mean
    g_scale = torch.linalg.norm(g_c, dim=(1, 2), keepdim=True) + _EPS_NORM
    p_scale = torch.linalg.norm(p_c, dim=(1, 2), keepdim=True) + _EPS_NORM
    # Orthogonal Procrustes: R minimises ||g_n R - p_n||_F, so p_n R^T best matches g_n.
    u, s, vh = torch.linalg.svd((g_c / g_scale).transpose(1, 2) @ (p_c / p_scale))
    if not allow_reflection:
        fix = torch.ones_like(s)
        fix[:, -1] = torch.sign(torch.linalg.det(u @ vh))
        u, s = u * fix.unsqueeze(1), s * fix
    rotation = u @ vh
    scale = s.sum(dim=-1)[:, None, None] * g_scale / p_scale
    return scale, rotation, g_mean - scale * p_mean @ rotation.transpose(1, 2)


def point_distances(pred: ArrayLike, gt: ArrayLike) -> torch.Tensor:
    """Per-point Euclidean distances ``(B, N)`` float64, in the input unit, without alignment."""
    p, g = _check_pair(pred, gt)
    return torch.linalg.norm(p - g, dim=-1)


def pa_point_distances(pred: ArrayLike, gt: ArrayLike) -> torch.Tensor:
    """Per-point distances ``(B, N)`` float64 after per-sample Procrustes alignment with scale."""
    _, g = _check_pair(pred, gt)
    return torch.linalg.norm(procrustes_align_to_gt(pred, gt) - g, dim=-1)


def f_score(pred_aligned: ArrayLike, gt: ArrayLike, threshold_m: float) -> torch.Tensor:
    """Per-sample F-score ``(B,)`` float64 between two point sets (FreiHAND definition).

    Args:
        pred_aligned: ``(B, Np, 3)`` predicted vertices (already Procrustes-aligned for FreiHAND), metres.
        gt: ``(B, Ng, 3)`` ground-truth vertices, metres (``Np`` may differ from ``Ng``).
        threshold_m: distance threshold in metres; a point counts when its distance is strictly below it.
    """
    p = _as_f64(pred_aligned, "pred_aligned")
    g = _as_f64(gt, "gt")
    if p.shape[0] != g.shape[0]:
        raise MetricInputError(f"batch sizes differ: pred {p.shape[0]} vs gt {g.shape[0]}")
    dist = torch.cdist(p, g)  # (B, Np, Ng)
    precision = (dist.min(dim=2).values < threshold_m).double().mean(dim=1)
    recall = (dist.min(dim=1).values < threshold_m).double().mean(dim=1)
    denom = precision + recall
    safe = torch.where(denom > 0, denom, torch.ones_like(denom))
    return torch.where(denom > 0, 2.0 * precision * recall / safe, torch.zeros_like(denom))


def pck_curve(errors_m: ArrayLike, thresholds_m: np.ndarray) -> np.ndarray:
    """Fraction of errors ``<=`` each threshold; ``errors_m`` any shape, metres. Returns ``(T,)`` float64."""
    e = torch.as_tensor(errors_m).detach().cpu().double().reshape(-1).numpy()
    if e.size == 0:
        raise MetricInputError("pck_curve needs at least one error value")
    return (e[None, :] <= np.asarray(thresholds_m, dtype=np.float64)[:, None]).mean(axis=1)


def pck_auc(
    errors_m: ArrayLike,
    range_m: tuple[float, float] = AUC_RANGE_M,
    steps: int = AUC_STEPS,
) -> float:
    """Normalised area under the PCK curve over ``range_m`` (default 0-50 mm, 100 thresholds), in [0, 1]."""
    lo, hi = range_m
    if not hi > lo:
        raise MetricInputError(f"AUC range must be increasing, got {range_m}")
    thresholds = np.linspace(lo, hi, steps)
    curve = pck_curve(errors_m, thresholds)
    area = float(np.sum((curve[1:] + curve[:-1]) * np.diff(thresholds)) / 2.0)
    return area / (hi - lo)


@dataclass(frozen=True)
class HandMetrics:
    """Aggregated metrics over a data set. Errors in millimetres; F-scores and AUCs in [0, 1]."""

    num_samples: int
    pa_mpjpe_mm: float
    pa_mpvpe_mm: float
    f_at_5mm: float
    f_at_15mm: float
    auc_pa_joints_0_50mm: float
    mpjpe_cam_mm: float
    mpvpe_cam_mm: float
    root_error_mm: float
    auc_cam_joints_0_50mm: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_markdown(self, title: str = "Metrics") -> str:
        """A two-column markdown table with units."""
        def show(value: float, fmt: str) -> str:
            return "n/a" if math.isnan(value) else format(value, fmt)

        rows = [
            ("samples", f"{self.num_samples}"),
            ("PA-MPJPE (mm)", show(self.pa_mpjpe_mm, ".2f")),
            ("PA-MPVPE (mm)", show(self.pa_mpvpe_mm, ".2f")),
            ("F@5 mm", show(self.f_at_5mm, ".3f")),
            ("F@15 mm", show(self.f_at_15mm, ".3f")),
            ("AUC PA joints, 0-50 mm", show(self.auc_pa_joints_0_50mm, ".3f")),
            ("camera-space MPJPE (mm)", show(self.mpjpe_cam_mm, ".2f")),
            ("camera-space MPVPE (mm)", show(self.mpvpe_cam_mm, ".2f")),
            ("root error (mm)", show(self.root_error_mm, ".2f")),
            ("AUC camera-space joints, 0-50 mm", show(self.auc_cam_joints_0_50mm, ".3f")),
        ]
        lines = [f"### {title}", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in rows]
        return "\n".join(lines) + "\n"


class MetricAccumulator:
    """Accumulates per-sample errors batch by batch and reduces them into :class:`HandMetrics`.

    Fields that were never fed (vertex metrics without vertices, camera-space metrics for root-relative
    inputs) are NaN. Feed every batch the same way: the means are over the batches that had the data.
    """

    def __init__(self) -> None:
        self._pa_j: list[torch.Tensor] = []
        self._pa_v: list[torch.Tensor] = []
        self._f5: list[torch.Tensor] = []
        self._f15: list[torch.Tensor] = []
        self._cam_j: list[torch.Tensor] = []
        self._cam_v: list[torch.Tensor] = []
        self._root: list[torch.Tensor] = []

    def update(
        self,
        pred_joints: ArrayLike,
        gt_joints: ArrayLike,
        pred_verts: ArrayLike | None = None,
        gt_verts: ArrayLike | None = None,
        camera_space: bool = True,
    ) -> None:
        """Add one batch.

        Args:
            pred_joints, gt_joints: ``(B, 21, 3)`` metres.
            pred_verts, gt_verts: ``(B, V, 3)`` metres, or both None when the prediction's mesh topology
                differs from the ground truth's (e.g. our hand on FreiHAND's MANO meshes): the vertex
                metrics (PA-MPVPE, F-scores, camera MPVPE) are then left out of the reduction.
            camera_space: whether the points are in metric camera space (then camera-space MPJPE,
                MPVPE and root error are accumulated too); set False for root-relative inputs.
        """
        pj, gj = _check_pair(pred_joints, gt_joints)
        if (pred_verts is None) != (gt_verts is None):
            raise MetricInputError("pass both pred_verts and gt_verts, or neither")
        self._pa_j.append(pa_point_distances(pj, gj))
        if camera_space:
            self._cam_j.append(point_distances(pj, gj))
            self._root.append(point_distances(pj[:, ROOT_JOINT : ROOT_JOINT + 1], gj[:, ROOT_JOINT : ROOT_JOINT + 1]))
        if pred_verts is None or gt_verts is None:
            return
        pv, gv = _check_pair(pred_verts, gt_verts)
        if pj.shape[0] != pv.shape[0]:
            raise MetricInputError(f"joint batch {pj.shape[0]} and vertex batch {pv.shape[0]} differ")
        aligned_v = procrustes_align_to_gt(pv, gv)
        self._pa_v.append(torch.linalg.norm(aligned_v - gv, dim=-1))
        self._f5.append(f_score(aligned_v, gv, F_SCORE_THRESHOLDS_M[0]))
        self._f15.append(f_score(aligned_v, gv, F_SCORE_THRESHOLDS_M[1]))
        if camera_space:
            self._cam_v.append(point_distances(pv, gv))

    @property
    def num_samples(self) -> int:
        return int(sum(t.shape[0] for t in self._pa_j))

    def compute(self) -> HandMetrics:
        if self.num_samples == 0:
            raise MetricInputError("MetricAccumulator.compute() called before any update()")
        pa_j = torch.cat(self._pa_j)
        nan = float("nan")

        def mean_mm(parts: list[torch.Tensor]) -> float:
            return float(torch.cat(parts).mean()) * 1000.0 if parts else nan

        cam_j = torch.cat(self._cam_j) if self._cam_j else None
        return HandMetrics(
            num_samples=self.num_samples,
            pa_mpjpe_mm=mean_mm(self._pa_j),
            pa_mpvpe_mm=mean_mm(self._pa_v),
            f_at_5mm=float(torch.cat(self._f5).mean()) if self._f5 else nan,
            f_at_15mm=float(torch.cat(self._f15).mean()) if self._f15 else nan,
            auc_pa_joints_0_50mm=pck_auc(pa_j),
            mpjpe_cam_mm=mean_mm(self._cam_j),
            mpvpe_cam_mm=mean_mm(self._cam_v),
            root_error_mm=mean_mm(self._root),
            auc_cam_joints_0_50mm=pck_auc(cam_j) if cam_j is not None else nan,
        )


def compute_metrics(
    pred_joints: ArrayLike,
    gt_joints: ArrayLike,
    pred_verts: ArrayLike | None = None,
    gt_verts: ArrayLike | None = None,
    camera_space: bool = True,
) -> HandMetrics:
    """One-shot version of :class:`MetricAccumulator` for a single batch (shapes as in ``update``)."""
    acc = MetricAccumulator()
    acc.update(pred_joints, gt_joints, pred_verts, gt_verts, camera_space=camera_space)
    return acc.compute()
