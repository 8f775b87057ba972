"""The pull of the placed fused mesh towards the refiner's landmarks (``M3DHMR.pull_towards_landmarks``,
``LandmarkSkinning.retarget``)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from models.checkpoint import load_checkpoint, save_checkpoint
from models.export_onnx import PARITY_TOLERANCE_M, check_cue_parity, export_onnx
from models.hand import HandModel
from models.hand.asset import load_hand_asset
from models.hand.poses import sample_poses
from models.landmark_refiner import LandmarkRefiner, palm_frame
from models.landmark_skinning import LandmarkSkinning
from models.m3dhmr import M3DHMR
from models.mediapipe_frame import hand_length
from tests.net_fixtures import tiny_config
from training.train_refiner import RefinerTrainError, install_pull_refiner


def _posed(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    out = HandModel.default()(torch.as_tensor(sample_poses(n, np.random.default_rng(seed)), dtype=torch.float32))
    root = out.joints[:, :1]
    return out.vertices - root, out.joints - root


def test_retarget_returns_the_mesh_for_its_own_skeleton_and_follows_a_new_pose() -> None:
    skinning = LandmarkSkinning.from_asset(load_hand_asset())
    verts_a, joints_a = _posed(6, 1)
    verts_b, joints_b = _posed(6, 2)
    same = skinning.retarget(verts_a, joints_a, joints_a)
    assert float((same - verts_a).abs().max()) < 1e-5
    moved = skinning.retarget(verts_a, joints_a, joints_b)
    before = float((verts_a - verts_b).norm(dim=-1).mean())
    after = float((moved - verts_b).norm(dim=-1).mean())
    assert after < 0.25 * before, (before, after)


def _pull_model(pull: float) -> M3DHMR:
    torch.manual_seed(0)
    config = tiny_config(fused_cue=True, landmark_skin=True, landmark_refiner_hidden=16, landmark_pull=pull)
    model = M3DHMR.from_config(config, load_hand_asset()).eval()
    with torch.no_grad():
        model.refiner.out.weight.normal_(0.0, 0.05, generator=torch.Generator().manual_seed(1))
    return model


def _inputs() -> dict[str, torch.Tensor]:
    _, hands = _posed(3, 3)
    k = torch.tensor([[150.0, 0.0, 31.5], [0.0, 150.0, 31.5], [0.0, 0.0, 1.0]]).expand(3, 3, 3)
    uvw = (hands + torch.tensor([0.0, 0.0, 0.5])) @ k[0].T
    return {"crops": torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(4)), "K_virt": k,
            "joints_2d_external": uvw[..., :2] / uvw[..., 2:3], "landmarks_3d": hands,
            "landmarks_3d_mask": torch.tensor([1.0, 1.0, 0.0])}


def test_the_pull_moves_fused_rows_towards_the_refined_landmarks_and_keeps_place_and_size() -> None:
    free, pulled = _pull_model(0.0), _pull_model(1.0)
    inputs = _inputs()
    with torch.no_grad():
        a, b = free(**inputs), pulled(**inputs)
        _, _, refined = pulled.prepare_landmarks(inputs["landmarks_3d"], inputs["joints_2d_external"], inputs["K_virt"],
                                                 inputs["landmarks_3d_mask"].reshape(-1, 1, 1))
    assert not torch.allclose(a.vertices_rel[:2], b.vertices_rel[:2], atol=1e-4)
    assert torch.equal(a.translation_virt, b.translation_virt)  # DGP placed the hand before the pull
    assert torch.allclose(hand_length(b.joints_rel), hand_length(a.joints_rel), rtol=1e-5)
    assert torch.allclose(b.joints_rel[:, 0], torch.zeros(3, 3), atol=1e-7)
    assert torch.equal(a.vertices_cam[2], b.vertices_cam[2])  # no landmarks: not pulled
    assert torch.isfinite(b.vertices_cam).all()


def test_a_full_pull_takes_the_mesh_to_another_pose_at_its_own_size() -> None:
    model = _pull_model(1.0)
    verts_a, joints_a = _posed(4, 5)
    _, joints_b = _posed(4, 6)
    goal = joints_b.clone()  # our poses share the palm's orientation, so this is the pose in the mesh's palm frame
    angle = math.radians(40.0)
    turn = torch.tensor([[1.0, 0.0, 0.0], [0.0, math.cos(angle), -math.sin(angle)], [0.0, math.sin(angle), math.cos(angle)]])
    joints_b = 1.1 * joints_b @ turn.T  # the refined landmarks' size and direction are not the mesh's
    mask = torch.ones(4, 1, 1)
    verts, joints = model.pull_towards_landmarks(verts_a, joints_a, joints_b, mask)
    assert float((joints - goal).norm(dim=-1).mean()) < 0.25 * float((joints_a - goal).norm(dim=-1).mean())
    assert torch.allclose(hand_length(joints), hand_length(joints_a), rtol=1e-5)
    turned = palm_frame(joints)[0].transpose(1, 2) @ palm_frame(joints_a)[0]  # the hand still points the same way
    assert float(torch.rad2deg(torch.acos(((turned.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2).clamp(-1, 1))).max()) < 2.0
    half = _pull_model(0.5).pull_towards_landmarks(verts_a, joints_a, joints_b, mask)[1]
    assert float((half - goal).norm(dim=-1).mean()) < float((joints_a - goal).norm(dim=-1).mean())
    assert float((half - joints_a).norm(dim=-1).mean()) < float((joints - joints_a).norm(dim=-1).mean())
    kept = model.pull_towards_landmarks(verts_a, joints_a, joints_b, torch.zeros(4, 1, 1))
    assert torch.equal(kept[0], verts_a) and torch.equal(kept[1], joints_a)


def test_gradients_stay_finite_with_rows_without_landmarks() -> None:
    model = _pull_model(0.5).train()
    inputs = _inputs()
    inputs["landmarks_3d"][2] = 0.0  # as the trainer feeds rows without MediaPipe (the generator's)
    out = model(**inputs)
    (out.vertices_cam.square().sum() + out.joints_cam.square().sum()).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_the_pull_needs_the_refiner_and_the_skinning() -> None:
    with pytest.raises(ValueError, match="landmark_pull"):
        tiny_config(fused_cue=True, landmark_skin=True, landmark_pull=0.5)
    with pytest.raises(ValueError, match="landmark_pull"):
        tiny_config(fused_cue=True, landmark_skin=True, landmark_refiner_hidden=8, landmark_pull=1.5)


@pytest.mark.slow
def test_onnx_export_of_a_pulled_network_matches_torch(tmp_path: Path) -> None:
    model = _pull_model(0.7)
    path = export_onnx(model, tmp_path / "pulled.onnx")
    parity = check_cue_parity(model, path)
    assert "fused" in parity
    assert max(parity.values()) < PARITY_TOLERANCE_M
    assert all(math.isfinite(v) for v in parity.values())


def test_a_fitted_refiner_is_installed_as_the_pull_refiner(tmp_path: Path) -> None:
    asset = load_hand_asset()
    torch.manual_seed(0)
    base = M3DHMR.from_config(tiny_config(fused_cue=True, landmark_skin=True, landmark_refiner_hidden=16), asset).eval()
    base_path = tmp_path / "base.safetensors"
    save_checkpoint(base, base_path)
    source = LandmarkRefiner(24)
    with torch.no_grad():
        source.out.bias.fill_(0.01)
    installed = install_pull_refiner(load_checkpoint(base_path, asset), source, 0.5, tmp_path / "pulled.safetensors", {}, asset)
    loaded = load_checkpoint(tmp_path / "pulled.safetensors", asset)
    assert loaded.config is not None and loaded.config.landmark_pull == 0.5 and loaded.config.landmark_pull_hidden == 24
    assert loaded.pull_refiner is not None and torch.equal(loaded.pull_refiner.out.bias, source.out.bias)
    for name, tensor in base.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    assert installed.landmark_pull == 0.5
    plain = M3DHMR.from_config(tiny_config(fused_cue=True), asset)
    with pytest.raises(RefinerTrainError, match="landmark_pull"):
        install_pull_refiner(plain, source, 0.5, tmp_path / "bad.safetensors", {}, asset)

