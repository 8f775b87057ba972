"""Skin thickness (models/skin_thickness.py): each vertex's distance to the skeleton against the template's."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from models.checkpoint import load_checkpoint, save_checkpoint
from models.config import get_preset
from models.errors import TopologyError
from models.hand.asset import HandAsset, load_hand_asset
from models.hand.model import HandModel, axis_angle_to_rotmat
from models.hand.poses import NAMED_POSES, named_pose
from models.m3dhmr import M3DHMR
from models.skin_thickness import (
    BOUNDS_PATH,
    SEGMENTS,
    SkinThickness,
    ThicknessClamp,
    candidate_segments,
    load_thickness_bounds,
    skeleton_distance,
)
from training.skin_bounds import main as skin_bounds_main


@pytest.fixture(scope="module")
def asset() -> HandAsset:
    return load_hand_asset()


@pytest.fixture(scope="module")
def thickness(asset: HandAsset) -> SkinThickness:
    return SkinThickness.from_asset(asset)


def _template(asset: HandAsset) -> torch.Tensor:
    verts = torch.as_tensor(np.asarray(asset.template_vertices), dtype=torch.float32)
    root = torch.as_tensor(np.asarray(asset.joint_regressor), dtype=torch.float32)[0] @ verts
    return (verts - root).unsqueeze(0)


def test_skeleton_distance_to_one_segment_by_hand() -> None:
    """Beside a segment: the perpendicular distance; past its end: the distance to the end point."""
    joints = torch.zeros(1, 21, 3)
    joints[0, 1] = torch.tensor([1.0, 0.0, 0.0])
    first = SEGMENTS.index((0, 1))
    candidates = torch.full((3, 5), first)
    points = torch.tensor([[[0.5, 0.2, 0.0], [1.3, 0.0, 0.4], [-0.3, 0.4, 0.0]]])
    np.testing.assert_allclose(skeleton_distance(points, joints, candidates)[0].numpy(), [0.2, 0.5, 0.5], atol=1e-6)


def test_candidates_are_the_dominant_bone_and_its_parent(asset: HandAsset) -> None:
    weights = np.asarray(asset.skin_weights)
    candidates = candidate_segments(weights)
    assert candidates.shape == (len(weights), 5) and candidates.min() >= 0 and candidates.max() < len(SEGMENTS)
    # a vertex owned by the index finger's middle phalanx (bone at joint 6) is measured against 6-7 and 5-6
    owned = int(np.flatnonzero(weights.argmax(axis=1) == 5)[0])
    assert {SEGMENTS[s] for s in candidates[owned]} == {(6, 7), (5, 6)}
    with pytest.raises(ValueError, match="skin_weights"):
        candidate_segments(weights[:, :15])


def test_template_and_rigid_motions_have_no_deviation(thickness: SkinThickness, asset: HandAsset) -> None:
    template = _template(asset)
    assert float(thickness.deviation(template).abs().max()) < 1e-6
    rotation = axis_angle_to_rotmat(torch.tensor([[0.3, -1.1, 0.7]]))[0]
    moved = template @ rotation.T
    assert float(thickness.deviation(moved).max()) < 1e-5


def test_posed_hands_keep_their_thickness_and_a_pointed_knuckle_does_not(thickness: SkinThickness,
                                                                         asset: HandAsset) -> None:
    """The hand model's own fist (linear blend skinning) stays near the template's thickness; pushing the
    index finger's dorsal PIP skin 15 mm out from the joint (the pointed-knuckle failure) shows at those
    vertices and costs the loss, which the margin then forgives when it exceeds the push."""
    fist, pointed, near_pip = _pointed_fist(asset)
    wrist = HandModel.from_asset(asset).regress_joints(fist)[:, :1]
    fist, pointed = fist - wrist, pointed - wrist
    deviation = thickness.deviation(fist)
    assert float(deviation.mean()) < 0.002 and float(torch.quantile(deviation, 0.99)) < 0.006
    assert int(near_pip.sum()) >= 3
    bumped = thickness.deviation(pointed)[0, near_pip]
    assert float(bumped.mean()) > 0.008  # vertices beside the joint move partly along the bone, so less
    assert float(thickness.loss(pointed, 0.003, 0.2)) > float(thickness.loss(fist, 0.003, 0.2))
    assert float(thickness.loss(pointed - fist + _template(asset), 0.02, 0.2)) == 0.0


def test_loss_has_gradients_towards_the_template_thickness(thickness: SkinThickness, asset: HandAsset) -> None:
    template = _template(asset)
    swollen = (template * 1.0).requires_grad_(True)
    with torch.no_grad():
        swollen[0, :, 2] *= 1.8  # thicker in the dorsal-palmar direction
    loss = thickness.loss(swollen, 0.001, 0.2)
    loss.backward()
    assert float(loss.detach()) > 0 and swollen.grad is not None
    with torch.no_grad():
        step = swollen - 0.05 * swollen.grad / swollen.grad.abs().max()
    assert float(thickness.loss(step, 0.001, 0.2)) < float(loss.detach())


# ------------------------------------------------------------------------------------------- the clamp


@pytest.fixture(scope="module")
def clamp(asset: HandAsset) -> ThicknessClamp:
    return ThicknessClamp(torch.as_tensor(np.asarray(asset.template_vertices), dtype=torch.float32),
                          torch.as_tensor(np.asarray(asset.joint_regressor), dtype=torch.float32),
                          np.asarray(asset.skin_weights), load_thickness_bounds())


def _pointed_fist(asset: HandAsset) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(fist (1, V, 3), the same with the index finger's dorsal PIP skin pushed 15 mm out, pushed mask (V,))."""
    hand = HandModel.from_asset(asset)
    fist = hand(torch.as_tensor(named_pose("fist"), dtype=torch.float32).unsqueeze(0)).vertices
    joints = hand.regress_joints(fist)[0]
    weights = torch.as_tensor(np.asarray(asset.skin_weights))
    near_pip = ((fist[0] - joints[6]).norm(dim=-1) < 0.012) & (weights.argmax(dim=1) == 5)
    pointed = fist.clone()
    pointed[0, near_pip] += 0.015 * torch.nn.functional.normalize(fist[0, near_pip] - joints[6], dim=-1)
    return fist, pointed, near_pip


def test_the_clamp_leaves_hands_our_model_can_make_alone(clamp: ThicknessClamp, asset: HandAsset) -> None:
    template = _template(asset)
    assert float((clamp(template) - template).abs().max()) < 1e-6
    hand = HandModel.from_asset(asset)
    poses = torch.as_tensor(np.stack([named_pose(n) for n in NAMED_POSES]), dtype=torch.float32)
    posed = hand(poses).vertices
    assert float((clamp(posed) - posed).norm(dim=-1).max()) < 1e-4


def test_the_clamp_pulls_a_pointed_knuckle_back_within_its_bounds(clamp: ThicknessClamp, asset: HandAsset) -> None:
    fist, pointed, pushed = _pointed_fist(asset)
    measure = SkinThickness.from_asset(asset)
    bounds = torch.as_tensor(load_thickness_bounds())
    excess_before = float((measure.deviation_any_size(pointed)[0] - bounds).max())
    assert excess_before > 0.005
    clamped = clamp(pointed)
    # one projection, not a fixed point: the joints regressed from the clamped mesh move a little too
    assert float((measure.deviation_any_size(clamped)[0] - bounds).max()) < excess_before / 3
    # the push also had a part along the bone, which the clamp leaves
    assert float((clamped - fist)[0, pushed].norm(dim=-1).mean()) < 0.8 * float((pointed - fist)[0, pushed].norm(dim=-1).mean())
    # size and place do not matter: the bounds scale with the hand's length
    moved = 1.4 * pointed + torch.tensor([0.05, -0.1, 0.6])
    torch.testing.assert_close(clamp(moved), 1.4 * clamped + torch.tensor([0.05, -0.1, 0.6]), atol=1e-5, rtol=0)


def test_bounds_file_is_checked(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match="training.skin_bounds"):
        load_thickness_bounds(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"bounds_m": [0.001, -0.002]}), encoding="utf-8")
    with pytest.raises(TopologyError, match="non-negative"):
        load_thickness_bounds(bad)
    bad.write_text(json.dumps({"bounds_m": [0.001, 0.002]}), encoding="utf-8")
    with pytest.raises(TopologyError, match="2 bounds for a mesh of 896"):
        load_thickness_bounds(bad, num_vertices=896)
    bad.write_text("{", encoding="utf-8")
    with pytest.raises(TopologyError, match="cannot read"):
        load_thickness_bounds(bad)


def test_shipped_bounds_are_what_the_builder_makes(tmp_path: Path) -> None:
    """The asset file is reproducible from its recorded settings (the generator's samplers, seed 0)."""
    shipped = json.loads(BOUNDS_PATH.read_text(encoding="utf-8"))
    out = tmp_path / "bounds.json"
    assert skin_bounds_main(["--poses", str(shipped["poses"]), "--seed", str(shipped["seed"]),
                             "--margin-mm", str(shipped["margin_mm"]), "--out", str(out)]) == 0
    rebuilt = json.loads(out.read_text(encoding="utf-8"))
    np.testing.assert_allclose(rebuilt["bounds_m"], shipped["bounds_m"], atol=1e-5)
    assert rebuilt["asset_sha256"] == shipped["asset_sha256"]
    assert skin_bounds_main(["--poses", "0", "--out", str(out)]) == 2


def test_model_and_checkpoint_switch_the_clamp(tmp_path: Path) -> None:
    config = replace(get_preset("realtime_fused"), skin_clamp=False)
    model = M3DHMR.from_config(config).eval()
    assert model.skin_clamp is None
    path = tmp_path / "plain.safetensors"
    save_checkpoint(model, path)
    clamped = load_checkpoint(path, skin_clamp=True)
    assert clamped.skin_clamp is not None and clamped.config is not None and clamped.config.skin_clamp
    # an untrained decoder outputs the template: give both the same crumpled template instead
    template = model.decoder.template
    crumpled = template + 0.006 * torch.randn(template.shape, generator=torch.Generator().manual_seed(0))
    model.decoder.template = crumpled
    clamped.decoder.template = crumpled.clone()
    crops = torch.rand(2, 3, 128, 128)
    k_virt = torch.tensor([[200.0, 0.0, 64.0], [0.0, 200.0, 64.0], [0.0, 0.0, 1.0]]).expand(2, 3, 3)
    with torch.no_grad():
        plain_out, clamped_out = model(crops, k_virt), clamped(crops, k_virt)
    measure = SkinThickness.from_asset(load_hand_asset())
    bounds = torch.as_tensor(load_thickness_bounds())
    assert bool((measure.deviation_any_size(clamped_out.vertices_rel) <= bounds + 0.002).all())
    assert float(measure.deviation_any_size(plain_out.vertices_rel).amax()) > float(bounds.amin())


def test_the_tail_term_sees_a_pointed_knuckle_that_the_mean_dilutes(asset: HandAsset) -> None:
    """The tail term (``SkinThickness.tail_loss``): zero for hands our model makes, and for a knuckle of a
    few spiking vertices about as large as their excess, where the mean term is a small fraction of it."""
    fist, pointed, pushed = _pointed_fist(asset)
    measure = SkinThickness.from_asset(asset)
    bounds = torch.as_tensor(load_thickness_bounds())
    fraction, scale = 0.02, 1.0
    assert float(measure.tail_loss(fist, bounds, fraction, scale)) == pytest.approx(0.0, abs=1e-6)
    tail = float(measure.tail_loss(pointed, bounds, fraction, scale))
    mean = float(measure.loss(pointed, 0.0, scale))
    k = int(np.ceil(fraction * fist.shape[1]))
    excess = torch.relu(measure.deviation(pointed)[0] - bounds).sort(descending=True).values
    assert tail == pytest.approx(float(excess[:k].mean()), rel=1e-5)
    assert int(pushed.sum()) < k and tail > 5 * mean > 0
    grad_input = pointed.clone().requires_grad_(True)
    measure.tail_loss(grad_input, bounds, fraction, scale).backward()
    moved = grad_input.grad[0].norm(dim=-1) > 0  # type: ignore[union-attr]
    assert bool(moved[pushed].any()) and int(moved.sum()) <= 4 * k
