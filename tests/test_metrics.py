"""Metrics on hand-computed cases, and agreement with FreiHAND's reference recipe (scipy Procrustes)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.linalg import orthogonal_procrustes

from training.metrics import (
    MetricAccumulator,
    MetricInputError,
    compute_metrics,
    f_score,
    pa_point_distances,
    pck_auc,
    procrustes_align_to_gt,
)


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    a = axis / np.linalg.norm(axis)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


def _reference_align(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """The official FreiHAND recipe, written against scipy (one sample)."""
    t1, t2 = gt.mean(0), pred.mean(0)
    g, p = gt - t1, pred - t2
    s1, s2 = np.linalg.norm(g) + 1e-8, np.linalg.norm(p) + 1e-8
    rot, scale = orthogonal_procrustes(g / s1, p / s2)
    return (p / s2) @ rot.T * scale * s1 + t1


def test_similarity_transform_is_removed_exactly() -> None:
    rng = np.random.default_rng(0)
    gt = rng.normal(scale=0.05, size=(3, 21, 3))
    pred = np.stack(
        [1.7 * gt[i] @ _rotation(rng.normal(size=3), 0.3 + i).T + rng.normal(size=3) for i in range(3)]
    )
    err = pa_point_distances(torch.from_numpy(pred).float(), torch.from_numpy(gt).float())
    assert err.shape == (3, 21)
    assert float(err.max()) < 1e-6


def test_rectangle_case_hand_computed() -> None:
    # Centred square vs a rectangle stretched 2x along y: the best similarity maps pred to 0.6 * pred,
    # giving errors 4, 4, 2, 2 mm (in units of 1 cm points) and a mean of 3 mm.
    gt = np.array([[-1, 0, 0], [1, 0, 0], [0, 1, 0], [0, -1, 0]], dtype=np.float64)[None] * 0.01
    pred = np.array([[-1, 0, 0], [1, 0, 0], [0, 2, 0], [0, -2, 0]], dtype=np.float64)[None] * 0.01
    aligned = procrustes_align_to_gt(pred, gt).numpy()
    # The official 1e-8 added to each norm biases the scale by ~1e-6 relative: sub-micrometre here.
    np.testing.assert_allclose(aligned[0], 0.6 * pred[0], atol=1e-7)
    err_mm = pa_point_distances(pred, gt).numpy()[0] * 1000
    np.testing.assert_allclose(err_mm, [4.0, 4.0, 2.0, 2.0], atol=1e-4)


def test_reflection_is_allowed_like_the_official_script() -> None:
    # scipy's orthogonal_procrustes (used by FreiHAND) does not force det(R) = +1: a mirrored
    # prediction aligns perfectly. We keep that behaviour so numbers are comparable with the paper.
    rng = np.random.default_rng(1)
    gt = rng.normal(scale=0.05, size=(1, 30, 3))
    pred = gt * np.array([-1.0, 1.0, 1.0])
    assert float(pa_point_distances(pred, gt).max()) < 1e-7


def test_alignment_matches_scipy_reference() -> None:
    rng = np.random.default_rng(2)
    gt = rng.normal(scale=0.05, size=(4, 50, 3))
    pred = gt + rng.normal(scale=0.01, size=gt.shape)
    ours = procrustes_align_to_gt(pred, gt).numpy()
    ref = np.stack([_reference_align(gt[i], pred[i]) for i in range(4)])
    np.testing.assert_allclose(ours, ref, atol=1e-10)


def test_f_score_hand_computed_asymmetric_case() -> None:
    gt = np.array([[0.0, 0, 0], [0.1, 0, 0], [0.2, 0, 0], [0.3, 0, 0]])[None]
    pred = np.array([[0.001, 0, 0], [0.101, 0, 0], [0.101, 0.001, 0], [0.5, 0, 0]])[None]
    # precision: pred points near a gt point: 3/4; recall: gt points near a pred point: 2/4.
    f = f_score(pred, gt, 0.005)
    assert f.shape == (1,)
    assert float(f[0]) == pytest.approx(2 * 0.75 * 0.5 / 1.25)


def test_f_score_threshold_is_strict() -> None:
    gt = np.zeros((1, 1, 3))
    at = np.array([[[0.5, 0.0, 0.0]]])
    inside = np.array([[[0.25, 0.0, 0.0]]])
    assert float(f_score(at, gt, 0.5)[0]) == 0.0
    assert float(f_score(inside, gt, 0.5)[0]) == 1.0


def test_pck_auc_hand_computed_and_inclusive() -> None:
    # thresholds 0, 25, 50 mm; PCK (<=) = 1/4, 2/4, 3/4; trapezoid area / 50 mm = 0.5.
    errors = np.array([0.0, 0.025, 0.04, 0.1])
    assert pck_auc(errors, (0.0, 0.05), steps=3) == pytest.approx(0.5)
    assert pck_auc(np.zeros(10)) == pytest.approx(1.0)
    assert pck_auc(np.full(10, 0.06)) == pytest.approx(0.0)


def test_camera_space_root_and_pa_on_translated_prediction() -> None:
    rng = np.random.default_rng(3)
    gt_j = rng.normal(scale=0.05, size=(2, 21, 3)) + np.array([0.0, 0.0, 0.5])
    gt_v = rng.normal(scale=0.05, size=(2, 40, 3)) + np.array([0.0, 0.0, 0.5])
    shift = np.array([0.003, 0.004, 0.0])  # 5 mm
    m = compute_metrics(gt_j + shift, gt_j, gt_v + shift, gt_v)
    assert m.num_samples == 2
    assert m.mpjpe_cam_mm == pytest.approx(5.0)
    assert m.mpvpe_cam_mm == pytest.approx(5.0)
    assert m.root_error_mm == pytest.approx(5.0)
    assert m.pa_mpjpe_mm == pytest.approx(0.0, abs=1e-4)
    assert m.pa_mpvpe_mm == pytest.approx(0.0, abs=1e-4)
    assert m.f_at_5mm == pytest.approx(1.0)
    assert m.f_at_15mm == pytest.approx(1.0)
    # Nanometre residuals miss only the 0 mm threshold: area 98.5 of 99 steps.
    assert m.auc_pa_joints_0_50mm == pytest.approx(98.5 / 99)
    # 5 mm lies between thresholds 9 and 10 (step 50/99 mm): PCK is 0 up to index 9, then 1, so the
    # trapezoid area is (0.5 + 89) steps out of 99.
    assert m.auc_cam_joints_0_50mm == pytest.approx(89.5 / 99)
    table = m.to_markdown()
    assert "PA-MPJPE (mm)" in table and "| 5.00 |" in table


def test_accumulator_over_batches_equals_one_shot() -> None:
    rng = np.random.default_rng(4)
    gt_j = rng.normal(scale=0.05, size=(5, 21, 3))
    gt_v = rng.normal(scale=0.05, size=(5, 60, 3))
    pj = gt_j + rng.normal(scale=0.004, size=gt_j.shape)
    pv = gt_v + rng.normal(scale=0.004, size=gt_v.shape)
    acc = MetricAccumulator()
    acc.update(pj[:2], gt_j[:2], pv[:2], gt_v[:2])
    acc.update(pj[2:], gt_j[2:], pv[2:], gt_v[2:])
    assert acc.compute() == compute_metrics(pj, gt_j, pv, gt_v)


def test_root_relative_inputs_leave_camera_fields_nan() -> None:
    gt = np.random.default_rng(5).normal(size=(1, 21, 3))
    m = compute_metrics(gt, gt, gt, gt, camera_space=False)
    assert math.isnan(m.mpjpe_cam_mm) and math.isnan(m.root_error_mm)


def test_bad_shapes_raise() -> None:
    with pytest.raises(MetricInputError):
        pa_point_distances(np.zeros((2, 21, 3)), np.zeros((2, 20, 3)))
    with pytest.raises(MetricInputError):
        procrustes_align_to_gt(np.zeros((21, 3)), np.zeros((21, 3)))
    with pytest.raises(MetricInputError):
        MetricAccumulator().compute()


def test_joints_only_update_leaves_vertex_metrics_nan() -> None:
    rng = np.random.default_rng(6)
    gt = rng.normal(scale=0.05, size=(3, 21, 3))
    m = compute_metrics(gt + 0.001, gt)
    assert m.pa_mpjpe_mm == pytest.approx(0.0, abs=1e-4)
    assert m.mpjpe_cam_mm == pytest.approx(math.sqrt(3.0))
    assert math.isnan(m.pa_mpvpe_mm) and math.isnan(m.f_at_5mm) and math.isnan(m.mpvpe_cam_mm)
    assert "| PA-MPVPE (mm) | n/a |" in m.to_markdown()
