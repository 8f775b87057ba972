"""The fused cue's ray lift (models/landmark_lift.py) and its place in the network."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from models.checkpoint import load_checkpoint, read_checkpoint_metadata, save_checkpoint
from models.config import M3DHMRConfig, get_preset
from models.dgp import solve_translation
from models.errors import CheckpointError
from models.hand import HandModel
from models.hand.poses import sample_poses
from models.landmark_lift import lift_landmarks_to_rays
from models.m3dhmr import M3DHMR

K = torch.tensor([[300.0, 0.0, 63.5], [0.0, 300.0, 63.5], [0.0, 0.0, 1.0]], dtype=torch.float64)


def _hands(n: int, seed: int) -> torch.Tensor:
    """``(n, 21, 3)`` float64 wrist-relative joints of posed hands, metres."""
    out = HandModel.default()(torch.as_tensor(sample_poses(n, np.random.default_rng(seed)), dtype=torch.float32))
    return (out.joints - out.joints[:, :1]).double()


def _project(points: torch.Tensor) -> torch.Tensor:
    uvw = points @ K.T
    return uvw[..., :2] / uvw[..., 2:3]


def test_landmarks_that_already_project_onto_their_2d_points_stay_put() -> None:
    hands = _hands(4, 1)
    placed = hands + torch.tensor([0.02, -0.01, 0.45], dtype=torch.float64)
    uv = _project(placed)
    k = K.expand(4, 3, 3)
    for blend in (0.3, 1.0):
        assert torch.allclose(lift_landmarks_to_rays(hands, uv, k, blend), hands, atol=1e-9)


def test_full_lift_puts_every_joint_on_its_ray_at_its_own_depth() -> None:
    hands = _hands(3, 2)
    placed = hands + torch.tensor([0.0, 0.0, 0.5], dtype=torch.float64)
    uv = _project(placed) + torch.as_tensor(np.random.default_rng(3).normal(0.0, 4.0, (3, 21, 2)))
    k = K.expand(3, 3, 3)
    lifted = lift_landmarks_to_rays(hands, uv, k, 1.0)
    assert torch.allclose(lifted[..., 2], hands[..., 2], atol=1e-12)  # each joint keeps its depth
    assert not torch.allclose(lifted, hands, atol=1e-3)
    # placed again, the lifted hand explains the 2D points exactly (the noisy input does not)
    t = solve_translation(lifted, uv, k, torch.ones(3, 21, dtype=torch.float64)).translation
    assert (_project(lifted + t[:, None]) - uv).abs().amax() < 1e-4  # px; the solve is damped (1e-9)
    t_in = solve_translation(hands, uv, k, torch.ones(3, 21, dtype=torch.float64)).translation
    assert (_project(hands + t_in[:, None]) - uv).abs().amax() > 1.0
    half = lift_landmarks_to_rays(hands, uv, k, 0.5)
    assert torch.allclose(half, 0.5 * (lifted + hands), atol=1e-12)
    assert torch.equal(lift_landmarks_to_rays(hands, uv, k, 0.0), hands)


def test_lift_moves_noisy_landmarks_towards_the_2d_evidence() -> None:
    """World landmarks with 3D noise, exact 2D points: the lift's image-plane error drops."""
    hands = _hands(16, 4)
    placed = hands + torch.tensor([0.0, 0.0, 0.5], dtype=torch.float64)
    uv = _project(placed)
    noisy = hands + torch.as_tensor(np.random.default_rng(5).normal(0.0, 0.008, hands.shape))
    noisy = noisy - noisy[:, :1]
    lifted = lift_landmarks_to_rays(noisy, uv, K.expand(16, 3, 3), 1.0)

    def plane_error(points: torch.Tensor) -> float:
        centred = points - points.mean(dim=1, keepdim=True)
        truth = hands - hands.mean(dim=1, keepdim=True)
        return float((centred[..., :2] - truth[..., :2]).norm(dim=-1).mean())

    assert plane_error(lifted) < 0.5 * plane_error(noisy)


def test_masked_and_degenerate_rows_are_returned_unchanged() -> None:
    hands = _hands(3, 6)
    uv = _project(hands + torch.tensor([0.0, 0.0, 0.5], dtype=torch.float64)) + 3.0
    zeros = torch.zeros_like(hands)
    rows = torch.stack([hands[0], hands[1], zeros[2]])
    out = lift_landmarks_to_rays(rows, uv, K.expand(3, 3, 3), 1.0, mask=torch.tensor([1.0, 0.0, 1.0]))
    assert torch.isfinite(out).all()
    assert not torch.allclose(out[0], rows[0], atol=1e-4)
    assert torch.equal(out[1], rows[1])
    assert torch.equal(out[2], rows[2])  # all landmarks on one point: no depth to keep


def test_config_refuses_a_lift_without_the_fused_cue_or_out_of_range() -> None:
    with pytest.raises(ValueError, match="landmark_ray_lift"):
        replace(get_preset("realtime_slim"), landmark_ray_lift=0.5)
    with pytest.raises(ValueError, match="landmark_ray_lift"):
        replace(get_preset("realtime_fused"), landmark_ray_lift=1.5)
    assert isinstance(get_preset("realtime_fused"), M3DHMRConfig)


def test_network_lifts_only_rows_with_landmarks() -> None:
    """The lift changes the fused rows' meshes and leaves rows without landmarks bit for bit alone."""
    torch.manual_seed(0)
    config = replace(get_preset("realtime_fused"), surface_smoothing=0)
    lifted_model = M3DHMR.from_config(config).eval()
    plain_model = M3DHMR.from_config(replace(config, landmark_ray_lift=0.0)).eval()
    plain_model.load_state_dict(lifted_model.state_dict())
    hands = _hands(2, 7).float()
    k = K.float().expand(2, 3, 3).contiguous()
    uv = (_project(hands.double() + torch.tensor([0.0, 0.0, 0.5], dtype=torch.float64)) + 4.0).float()
    crops = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    mask = torch.tensor([1.0, 0.0])
    with torch.no_grad():
        lifted = lifted_model(crops, k, joints_2d_external=uv, landmarks_3d=hands, landmarks_3d_mask=mask)
        plain = plain_model(crops, k, joints_2d_external=uv, landmarks_3d=hands, landmarks_3d_mask=mask)
    assert not torch.allclose(lifted.vertices_rel[0], plain.vertices_rel[0], atol=1e-4)
    assert torch.equal(lifted.vertices_rel[1], plain.vertices_rel[1])


def test_load_checkpoint_sets_the_lift_and_keeps_it(tmp_path: Path) -> None:
    """The lift has no weights: a checkpoint saved without it loads with it, and the override is saved."""
    path = tmp_path / "plain.safetensors"
    save_checkpoint(M3DHMR.from_config(replace(get_preset("realtime_fused"), landmark_ray_lift=0.0)), path)
    assert load_checkpoint(path).landmark_ray_lift == 0.0
    lifted = load_checkpoint(path, landmark_ray_lift=0.6)
    assert lifted.landmark_ray_lift == 0.6
    again = tmp_path / "lifted.safetensors"
    save_checkpoint(lifted, again)
    assert read_checkpoint_metadata(again).config.landmark_ray_lift == 0.6
    with pytest.raises(CheckpointError, match="lift"):
        load_checkpoint(path, landmark_ray_lift=2.0)
