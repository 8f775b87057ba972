"""Taubin smoothing of the fused mesh (models/surface_smoothing.py) and where the model applies it."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from models.checkpoint import load_checkpoint, read_checkpoint_metadata, save_checkpoint
from models.config import get_preset
from models.errors import CheckpointError, TopologyError
from models.hand.asset import HandAsset, load_hand_asset
from models.hand.mesh_topology import signed_volume
from models.m3dhmr import M3DHMR
from models.mediapipe_frame import hand_length
from models.mesh_surface import mean_bend_deg
from models.surface_smoothing import (
    TAUBIN_LAMBDA,
    TAUBIN_MU,
    TaubinSmoothing,
    ring_mean_matrix,
    taubin_operator,
)

# A square pyramid: apex 4 over a base 0-1-2-3 (closed, 5 vertices, 6 faces), and its one-rings.
PYRAMID_FACES = np.array([[0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4], [0, 2, 1], [0, 3, 2]], np.int64)
PYRAMID_RINGS = [[1, 2, 3, 4], [0, 2, 4], [0, 1, 3, 4], [0, 2, 4], [0, 1, 2, 3]]


def test_ring_mean_matrix_averages_each_one_ring_with_uniform_weights() -> None:
    ring_mean = ring_mean_matrix(5, PYRAMID_FACES)
    assert [sorted(int(j) for j in ring_mean[v].indices) for v in range(5)] == PYRAMID_RINGS
    for v, ring in enumerate(PYRAMID_RINGS):
        np.testing.assert_allclose(ring_mean[v].data, 1.0 / len(ring))
    np.testing.assert_allclose(np.asarray(ring_mean.sum(axis=1)).ravel(), 1.0)


@pytest.mark.parametrize("faces, count", [(np.array([[0, 1, 7]]), 5), (PYRAMID_FACES, 6), (np.zeros((0, 3)), 5)])
def test_ring_mean_matrix_rejects_bad_faces(faces: np.ndarray, count: int) -> None:
    with pytest.raises(TopologyError):
        ring_mean_matrix(count, faces)


def test_the_composed_operator_is_the_iterated_steps() -> None:
    """One matrix for all iterations equals applying each lambda and mu step to the one-ring means."""
    points = np.random.default_rng(3).normal(size=(5, 3))
    expected = points.copy()
    for _ in range(3):
        for factor in (TAUBIN_LAMBDA, TAUBIN_MU):
            ring_means = np.stack([expected[ring].mean(axis=0) for ring in PYRAMID_RINGS])
            expected = expected + factor * (ring_means - expected)
    np.testing.assert_allclose(taubin_operator(5, PYRAMID_FACES, 3) @ points, expected, atol=1e-6)
    np.testing.assert_allclose(taubin_operator(5, PYRAMID_FACES, 3).sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(taubin_operator(5, PYRAMID_FACES, 0), np.eye(5))


@pytest.fixture(scope="module")
def asset() -> HandAsset:
    return load_hand_asset()


def test_zero_iterations_change_nothing_and_negative_ones_are_refused(asset: HandAsset) -> None:
    template = torch.as_tensor(np.asarray(asset.template_vertices), dtype=torch.float32)[None]
    smooth = TaubinSmoothing(faces=asset.faces, num_vertices=template.shape[1], iterations=0)
    assert torch.equal(smooth(template), template)
    with pytest.raises(ValueError):
        TaubinSmoothing(faces=asset.faces, num_vertices=template.shape[1], iterations=-1)


def test_smoothing_removes_folds_keeps_the_hand_and_commutes_with_rigid_motion(asset: HandAsset) -> None:
    """A template with 2 mm of vertex noise bends far more than the clean one; six iterations bring the bend
    back near the clean template's, move the surface toward it, keep its volume within 5 % and commute
    with rotation and translation (a fixed linear operator whose rows sum to one)."""
    faces = np.asarray(asset.faces, np.int64)
    clean = np.asarray(asset.template_vertices, np.float64)
    noisy = clean + np.random.default_rng(0).normal(0.0, 0.002, clean.shape)
    smooth = TaubinSmoothing(faces=faces, num_vertices=len(clean), iterations=6)
    out = smooth(torch.from_numpy(noisy)[None])[0].numpy()
    bend_clean, bend_noisy, bend_out = (float(mean_bend_deg(v[None], faces)[0]) for v in (clean, noisy, out))
    assert bend_noisy > bend_clean + 10.0
    assert bend_out < bend_clean + 0.4 * (bend_noisy - bend_clean)
    assert np.linalg.norm(out - clean, axis=1).mean() < 0.7 * np.linalg.norm(noisy - clean, axis=1).mean()
    assert abs(signed_volume(out, faces) / signed_volume(clean, faces) - 1.0) < 0.05
    from scipy.spatial.transform import Rotation

    rot = Rotation.from_euler("xyz", [0.3, -1.1, 2.0]).as_matrix()
    shift = np.array([0.05, -0.02, 0.6])
    moved = smooth(torch.from_numpy(noisy @ rot.T + shift)[None])[0].numpy()
    np.testing.assert_allclose(moved, out @ rot.T + shift, atol=1e-6)  # float32 operator


def _model(smoothing: int) -> M3DHMR:
    torch.manual_seed(0)
    # without the pull, which moves the mesh after the smoothing (tests/test_landmark_pull.py)
    return M3DHMR.from_config(replace(get_preset("realtime_fused"), surface_smoothing=smoothing, landmark_pull=0.0)).eval()


def test_the_model_smooths_only_rows_with_landmarks() -> None:
    """Same weights with and without smoothing: rows without MediaPipe's landmarks (the paper's path) are
    identical; rows with them bend less and are their unsmoothed mesh smoothed."""
    plain, smoothed = _model(0), _model(6)
    smoothed.load_state_dict(plain.state_dict())
    rng = np.random.default_rng(1)
    crops = torch.as_tensor(rng.random((2, 3, 128, 128)), dtype=torch.float32)
    K = torch.tensor([[150.0, 0.0, 63.5], [0.0, 150.0, 63.5], [0.0, 0.0, 1.0]]).expand(2, 3, 3)
    joints_2d = torch.as_tensor(rng.uniform(30, 100, (2, 21, 2)), dtype=torch.float32)
    landmarks = plain.skinning.template_joints[None].expand(2, 21, 3) + torch.as_tensor(
        rng.normal(0.0, 0.004, (2, 21, 3)), dtype=torch.float32)
    mask = torch.tensor([1.0, 0.0])
    with torch.no_grad():
        a = plain(crops, K, joints_2d, landmarks_3d=landmarks, landmarks_3d_mask=mask)
        b = smoothed(crops, K, joints_2d, landmarks_3d=landmarks, landmarks_3d_mask=mask)
    assert torch.allclose(a.vertices_cam[1], b.vertices_cam[1], atol=1e-6)
    assert not torch.allclose(a.vertices_unit[0], b.vertices_unit[0], atol=1e-4)
    faces = plain.faces
    assert mean_bend_deg(b.vertices_unit[:1], faces)[0] < mean_bend_deg(a.vertices_unit[:1], faces)[0] - 1.0
    expected = smoothed.smoothing(a.vertices_unit[:1])
    expected_joints = torch.einsum("jv,bvc->bjc", smoothed.joint_regressor, expected)
    expected = expected - expected_joints[:, :1]
    expected = expected * (smoothed.template_hand_length / hand_length(expected_joints - expected_joints[:, :1]))
    assert torch.allclose(b.vertices_unit[:1], expected, atol=1e-5)


def test_smoothing_and_the_skin_chain_need_the_fused_skip() -> None:
    with pytest.raises(ValueError):
        replace(get_preset("realtime_slim"), surface_smoothing=2)
    with pytest.raises(ValueError):
        replace(get_preset("realtime_fused"), landmark_skin=False, surface_smoothing=0, landmark_pull=0.0)  # the chain needs the skip
    with pytest.raises(ValueError):
        replace(get_preset("realtime_fused"), surface_smoothing=-1)


def test_load_checkpoint_can_set_the_iterations(tmp_path: Path) -> None:
    """The layer has no weights: a checkpoint saved without smoothing loads with any iteration count, and
    a model saved with the override keeps it in its metadata."""
    path = tmp_path / "plain.safetensors"
    save_checkpoint(_model(0), path)
    assert load_checkpoint(path).smoothing is None
    model = load_checkpoint(path, surface_smoothing=3)
    assert model.smoothing is not None and model.smoothing.iterations == 3
    again = tmp_path / "smoothed.safetensors"
    save_checkpoint(model, again)
    assert read_checkpoint_metadata(again).config.surface_smoothing == 3
    with pytest.raises(CheckpointError, match="smooth"):
        load_checkpoint(path, surface_smoothing=-2)
