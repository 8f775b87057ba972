"""The landmark refiner (models/landmark_refiner.py), its fitting (training/train_refiner.py) and its place
in the network and its ONNX export."""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from models.checkpoint import load_checkpoint, save_checkpoint
from models.config import get_preset
from models.dgp import solve_translation
from models.export_onnx import PARITY_TOLERANCE_M, check_cue_parity, export_onnx
from models.hand import HandModel
from models.hand.poses import sample_poses
from models.landmark_refiner import LandmarkRefiner, palm_frame
from models.m3dhmr import M3DHMR
from tests.cue_cache_support import write_cue_cache
from tests.net_fixtures import make_icosphere_asset, tiny_config
from training.metrics import pa_point_distances
from training.train_refiner import (
    LandmarkSet,
    RefinerConfig,
    RefinerTrainError,
    fit_refiner,
    install,
    load_refiner_config,
    pose_diversity_mm,
    refine,
    score,
)


def _hands(n: int, seed: int) -> torch.Tensor:
    """``(n, 21, 3)`` float64 wrist-relative joints of posed hands, metres."""
    out = HandModel.default()(torch.as_tensor(sample_poses(n, np.random.default_rng(seed)), dtype=torch.float32))
    return (out.joints - out.joints[:, :1]).double()


def _random_rotations(n: int, seed: int) -> torch.Tensor:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(n, 3, 3)))
    q = q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]
    q[np.linalg.det(q) < 0, :, 0] *= -1.0
    return torch.as_tensor(q)


def _busy_refiner(seed: int = 0) -> LandmarkRefiner:
    """A refiner whose output layer is not zero, so it moves the landmarks."""
    torch.manual_seed(seed)
    refiner = LandmarkRefiner(32).double().eval()
    with torch.no_grad():
        refiner.out.weight.normal_(0.0, 0.02)
        refiner.out.bias.normal_(0.0, 0.02)
    return refiner


def test_palm_frame_is_a_rotation_with_y_along_the_palm() -> None:
    hands = _hands(6, 1)
    rotation, palm, ok = palm_frame(hands)
    assert ok.all()
    eye = torch.eye(3, dtype=torch.float64).expand(6, 3, 3)
    assert torch.allclose(rotation.transpose(1, 2) @ rotation, eye, atol=1e-9)
    assert torch.allclose(torch.linalg.det(rotation), torch.ones(6, dtype=torch.float64), atol=1e-9)
    along = (hands[:, 9] - hands[:, 0]) / (hands[:, 9] - hands[:, 0]).norm(dim=-1, keepdim=True)
    assert torch.allclose(rotation[..., 1], along, atol=1e-9)
    assert torch.allclose(palm.reshape(-1), (hands[:, 9] - hands[:, 0]).norm(dim=-1), atol=1e-12)


def test_untrained_refiner_returns_its_input_exactly() -> None:
    hands = _hands(5, 2)
    refiner = LandmarkRefiner(16).double()
    assert torch.equal(refiner(hands, hands + 0.001), hands)


def test_correction_turns_and_scales_with_the_hand() -> None:
    """The refiner reads the hand in its own palm frame: a rotated, scaled hand gets the rotated, scaled
    correction (and the same correction wherever the hand points)."""
    hands = _hands(4, 3)
    unlifted = hands + torch.as_tensor(np.random.default_rng(4).normal(0.0, 0.003, hands.shape))
    unlifted = unlifted - unlifted[:, :1]
    refiner = _busy_refiner()
    base = refiner(hands, unlifted)
    assert (base - hands).norm(dim=-1).mean() > 1e-3
    rotation = _random_rotations(4, 5)
    scale = 1.3
    moved = refiner(scale * hands @ rotation.transpose(1, 2), scale * unlifted @ rotation.transpose(1, 2))
    assert torch.allclose(moved, scale * base @ rotation.transpose(1, 2), atol=1e-9)


def test_masked_zero_and_degenerate_rows_are_returned_unchanged() -> None:
    hands = _hands(4, 6)
    hands[1] = 0.0  # a row without landmarks, as the network gets them
    hands[2] = torch.linspace(0.0, 0.1, 21, dtype=torch.float64)[:, None] * torch.tensor([1.0, 1.0, 0.0],
                                                                                         dtype=torch.float64)
    refiner = _busy_refiner(1)
    mask = torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=torch.float64)
    out = refiner(hands, hands, mask)
    assert torch.isfinite(out).all()
    for row in (1, 2, 3):
        assert torch.equal(out[row], hands[row])
    assert not torch.allclose(out[0], hands[0])


def _distorted(truth: torch.Tensor, seed: int) -> LandmarkSet:
    """Landmarks with a pose-dependent error (each fingertip pushed along the palm normal by how far it
    lies from the palm, as a 3D head that flattens curled fingers would) plus noise."""
    rotation, palm, _ = palm_frame(truth)
    local = truth @ rotation
    local[..., 2] = local[..., 2] * 0.4
    local[..., 0] = local[..., 0] + 0.25 * local[..., 1].clamp_min(0.0) ** 2 / palm.reshape(-1, 1)
    landmarks = local @ rotation.transpose(1, 2)
    landmarks = landmarks + torch.as_tensor(np.random.default_rng(seed).normal(0.0, 0.001, truth.shape))
    landmarks = landmarks - landmarks[:, :1]
    # MediaPipe's 2D points: the true joints seen 0.5 m away by a 128 px crop camera
    k_virt = torch.tensor([[300.0, 0.0, 63.5], [0.0, 300.0, 63.5], [0.0, 0.0, 1.0]], dtype=truth.dtype).expand(len(truth), 3, 3)
    uvw = (truth + torch.tensor([0.0, 0.0, 0.5], dtype=truth.dtype)) @ k_virt[0].T
    return LandmarkSet(landmarks, landmarks.clone(), truth, uvw[..., :2] / uvw[..., 2:3], k_virt, 0.6)


def _config(tmp_path: Path, **overrides: object) -> RefinerConfig:
    values: dict[str, object] = dict(train_caches=("unused",), val_cache="unused", base_checkpoint="unused",
                                     out_checkpoint=str(tmp_path / "out.safetensors"), hidden=64, dropout=0.0,
                                     steps=400, batch_size=64, lr=3e-3)
    values.update(overrides)
    return RefinerConfig(**values)  # type: ignore[arg-type]


def test_fitting_learns_a_pose_dependent_error_and_generalises(tmp_path: Path) -> None:
    train = _distorted(_hands(600, 7), 8)
    val = _distorted(_hands(150, 9), 10)
    refiner = fit_refiner(_config(tmp_path), train, log=False)
    assert refiner.dropout == 0.0 and not refiner.training
    report = score(refiner, val)
    assert report["hands"] == 150
    assert report["pa_mpjpe_refined_mm"] < 0.5 * report["pa_mpjpe_lifted_mm"]
    # back on the rays of (here exact) 2D points, the landmarks stay close to the truth
    assert report["pa_mpjpe_network_input_mm"] < 0.5 * report["pa_mpjpe_lifted_mm"]
    refined = refine(refiner, val)
    assert torch.allclose(refined[:, 0], torch.zeros_like(refined[:, 0]))  # still wrist-relative
    assert float(pa_point_distances(refined, val.truth).mean()) * 1000.0 == pytest.approx(report["pa_mpjpe_refined_mm"])


def test_fitting_needs_a_batch_of_hands(tmp_path: Path) -> None:
    with pytest.raises(RefinerTrainError, match="training hands"):
        fit_refiner(_config(tmp_path, batch_size=64), _distorted(_hands(10, 11), 12), log=False)


def test_pose_diversity_is_zero_for_one_pose_and_positive_for_many() -> None:
    one = _hands(1, 13).expand(20, 21, 3)
    assert pose_diversity_mm(one) < 1e-3  # mm: numerically zero
    assert pose_diversity_mm(_hands(20, 14)) > 5.0


def test_config_rejects_unknown_and_missing_fields(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"train_caches": ["a"], "val_cache": "b", "base_checkpoint": "c", "out_checkpoint": "d", "hiden": 3}')
    with pytest.raises(RefinerTrainError, match="unknown fields"):
        load_refiner_config(path)
    path.write_text('{"train_caches": ["a"]}')
    with pytest.raises(RefinerTrainError, match="val_cache"):
        load_refiner_config(path)
    path.write_text('{"train_caches": ["a"], "val_cache": "b", "base_checkpoint": "c", "out_checkpoint": "d"}')
    assert load_refiner_config(path).hidden == 256


def _fused_tiny(refiner_hidden: int) -> M3DHMR:
    torch.manual_seed(0)
    config = tiny_config(fused_cue=True, landmark_refiner_hidden=refiner_hidden)
    return M3DHMR.from_config(config, make_icosphere_asset()).eval()


def test_config_needs_the_fused_cue_for_a_refiner() -> None:
    with pytest.raises(ValueError, match="landmark_refiner_hidden"):
        tiny_config(landmark_refiner_hidden=8)
    assert get_preset("realtime_fused").landmark_refiner_hidden > 0


def _fused_inputs(batch: int) -> dict[str, torch.Tensor]:
    hands = _hands(batch, 15).float()
    k = torch.tensor([[150.0, 0.0, 31.5], [0.0, 150.0, 31.5], [0.0, 0.0, 1.0]]).expand(batch, 3, 3)
    placed = hands + torch.tensor([0.0, 0.0, 0.5])
    uvw = placed @ k[0].T
    return {"crops": torch.rand(batch, 3, 64, 64, generator=torch.Generator().manual_seed(16)), "K_virt": k,
            "joints_2d_external": uvw[..., :2] / uvw[..., 2:3], "landmarks_3d": hands,
            "landmarks_3d_mask": torch.tensor([1.0, 1.0, 0.0])[:batch]}


def test_network_with_an_untrained_refiner_equals_the_network_without_one() -> None:
    plain, refined = _fused_tiny(0), _fused_tiny(16)
    state = {k: v for k, v in refined.state_dict().items() if not k.startswith("refiner.")}
    plain.load_state_dict(state)
    with torch.no_grad():
        a, b = plain(**_fused_inputs(3)), refined(**_fused_inputs(3))
    assert torch.equal(a.vertices_cam, b.vertices_cam)


def test_a_trained_refiner_changes_only_the_rows_with_landmarks() -> None:
    plain, refined = _fused_tiny(0), _fused_tiny(16)
    plain.load_state_dict({k: v for k, v in refined.state_dict().items() if not k.startswith("refiner.")})
    with torch.no_grad():
        refined.refiner.out.weight.normal_(0.0, 0.05)
        a, b = plain(**_fused_inputs(3)), refined(**_fused_inputs(3))
    # the landmarks reach the decoder and the DGP weight head as input channels
    assert not torch.allclose(a.dgp_weights[:2], b.dgp_weights[:2], atol=1e-6)
    assert torch.equal(a.dgp_weights[2], b.dgp_weights[2])
    assert torch.equal(a.vertices_cam[2], b.vertices_cam[2])


def test_install_writes_a_loadable_checkpoint_with_the_refiner(tmp_path: Path) -> None:
    asset = make_icosphere_asset()
    base_path = tmp_path / "base.safetensors"
    save_checkpoint(_fused_tiny(0), base_path)
    refiner = LandmarkRefiner(24)
    with torch.no_grad():
        refiner.out.bias.fill_(0.01)
    out = tmp_path / "with_refiner.safetensors"
    install(load_checkpoint(base_path, asset), refiner, out, {"note": "test"}, asset)
    loaded = load_checkpoint(out, asset)
    assert loaded.config is not None and loaded.config.landmark_refiner_hidden == 24
    assert loaded.refiner is not None and torch.equal(loaded.refiner.out.bias, refiner.out.bias)
    base = load_checkpoint(base_path, asset)
    for name, tensor in base.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


@pytest.mark.slow
def test_onnx_export_of_a_network_with_a_trained_refiner_matches_torch(tmp_path: Path) -> None:
    model = _fused_tiny(16)
    with torch.no_grad():
        model.refiner.out.weight.normal_(0.0, 0.05)
    path = export_onnx(model, tmp_path / "refined.onnx")
    parity = check_cue_parity(model, path)
    assert "fused" in parity
    assert max(parity.values()) < PARITY_TOLERANCE_M
    assert all(math.isfinite(v) for v in parity.values())


def test_refined_landmarks_go_back_onto_the_rays_and_keep_the_size_cue() -> None:
    torch.manual_seed(0)
    config = tiny_config(fused_cue=True, landmark_refiner_hidden=16, landmark_ray_lift=1.0)
    model = M3DHMR.from_config(config, make_icosphere_asset()).eval()
    # the lift has no weights: the same network without a refiner gives the lifted landmarks
    plain = M3DHMR.from_config(tiny_config(fused_cue=True, landmark_ray_lift=1.0), make_icosphere_asset()).eval()
    inputs = _fused_inputs(2)
    # MediaPipe-like landmarks: the true hand with pose-dependent noise, so the lift moves them
    noisy = inputs["landmarks_3d"] + 0.004 * torch.randn(inputs["landmarks_3d"].shape, generator=torch.Generator().manual_seed(3))
    noisy = noisy - noisy[:, :1]
    mask = torch.ones(2, 1, 1)
    with torch.no_grad():
        model.refiner.out.weight.normal_(0.0, 0.05)
        lifted, size_plain, none = plain.prepare_landmarks(noisy, inputs["joints_2d_external"], inputs["K_virt"], mask)
        final, size_cue, before_lift = model.prepare_landmarks(noisy, inputs["joints_2d_external"], inputs["K_virt"], mask)
        refined_only = model.refiner(lifted, noisy, mask)
    assert not torch.allclose(final, lifted, atol=1e-4)  # the refiner moved them
    assert torch.equal(size_cue, size_plain)  # the scale head's cue is the lifted landmarks' size

    def ray_residual_px(points: torch.Tensor) -> float:
        t = solve_translation(points, inputs["joints_2d_external"], inputs["K_virt"], torch.ones(2, 21)).translation
        uvw = (points + t.unsqueeze(1)) @ inputs["K_virt"][0].T
        return float((uvw[..., :2] / uvw[..., 2:3] - inputs["joints_2d_external"]).norm(dim=-1).max())

    assert ray_residual_px(final) < 0.05 < ray_residual_px(refined_only)
    assert none is None and before_lift is not None and torch.equal(before_lift, refined_only)


def test_rounding_noise_in_the_constant_features_does_not_move_the_output(tmp_path: Path) -> None:
    # the wrists and the lifted middle MCP are constant in the palm frame; their fitted spread is ~0
    refiner = fit_refiner(_config(tmp_path, steps=50), _distorted(_hands(300, 7), 8), log=False)
    val = _distorted(_hands(40, 9), 10)
    noisy = LandmarkSet(val.lifted + 1e-7 * torch.randn(val.lifted.shape, generator=torch.Generator().manual_seed(0)),
                        val.unlifted, val.truth, val.uv, val.k_virt, val.ray_lift)
    assert float((refine(refiner, noisy) - refine(refiner, val)).abs().max()) < 1e-5


def test_evaluate_reports_the_refiner_inside_a_checkpoint(tmp_path: Path) -> None:
    from training.train_refiner import main

    synth = write_cue_cache(tmp_path / "synth", 12, 1, photos=False)
    checkpoint = tmp_path / "net.safetensors"
    preset = get_preset("realtime_fused")  # the shipped hand asset, which load_checkpoint expects
    save_checkpoint(M3DHMR.from_config(preset), checkpoint)
    config = tmp_path / "refiner.json"
    config.write_text(json.dumps({"train_caches": [str(synth)], "val_cache": str(synth), "base_checkpoint": "unused",
                                  "out_checkpoint": "unused"}))
    report = main(["--config", str(config), "--evaluate", str(checkpoint), "--out", str(tmp_path / "r")])
    assert report["val"]["hands"] == 12
    # an untrained refiner changes nothing
    assert report["val"]["pa_mpjpe_refined_mm"] == pytest.approx(report["val"]["pa_mpjpe_lifted_mm"])
    assert (tmp_path / "r_refiner.md").read_text().startswith("# Landmark refiner")
    save_checkpoint(M3DHMR.from_config(dataclasses.replace(preset, landmark_refiner_hidden=0, landmark_pull=0.0)),
                    tmp_path / "plain.safetensors")
    with pytest.raises(RefinerTrainError, match="no landmark refiner"):
        main(["--config", str(config), "--evaluate", str(tmp_path / "plain.safetensors")])
