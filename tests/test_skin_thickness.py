"""Skin thickness (models/skin_thickness.py): each vertex's distance to the skeleton against the template's."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from models.hand.asset import HandAsset, load_hand_asset
from models.hand.model import HandModel, axis_angle_to_rotmat
from models.hand.poses import named_pose
from models.skin_thickness import (
    SEGMENTS,
    SkinThickness,
    candidate_segments,
    skeleton_distance,
)


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
    hand = HandModel.from_asset(asset)
    fist = hand(torch.as_tensor(named_pose("fist"), dtype=torch.float32).unsqueeze(0)).vertices
    fist = fist - hand.regress_joints(fist)[:, :1]
    deviation = thickness.deviation(fist)
    assert float(deviation.mean()) < 0.002 and float(torch.quantile(deviation, 0.99)) < 0.006
    joints = hand.regress_joints(fist)[0]
    weights = torch.as_tensor(np.asarray(asset.skin_weights))
    near_pip = ((fist[0] - joints[6]).norm(dim=-1) < 0.012) & (weights.argmax(dim=1) == 5)
    assert int(near_pip.sum()) >= 3
    pointed = fist.clone()
    outward = torch.nn.functional.normalize(fist[0, near_pip] - joints[6], dim=-1)
    pointed[0, near_pip] = fist[0, near_pip] + 0.015 * outward
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
