"""The joint-limit prior on 3D joints (training.joint_limits) against our hand model's own poses."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.hand.model import HandModel
from models.hand.poses import POSE_DOF_NAMES, named_pose, sample_poses
from training.joint_limits import finger_angles, joint_limit_loss, joint_limit_violation


@pytest.fixture(scope="module")
def hand() -> HandModel:
    return HandModel.default()


def _joints(hand: HandModel, poses: np.ndarray, orient: np.ndarray | None = None) -> torch.Tensor:
    pose = torch.as_tensor(np.asarray(poses, dtype=np.float32))
    rot = None if orient is None else torch.as_tensor(np.asarray(orient, dtype=np.float32))
    with torch.no_grad():
        return hand(pose, global_orient=rot).joints


def _with(**degrees: float) -> np.ndarray:
    pose = np.zeros((1, len(POSE_DOF_NAMES)), dtype=np.float32)
    for name, value in degrees.items():
        pose[0, POSE_DOF_NAMES.index(name)] = math.radians(value)
    return pose


def test_a_flexed_finger_reads_its_flexion_at_each_joint(hand: HandModel) -> None:
    rest = np.degrees(finger_angles(_joints(hand, _with()))[0][0].numpy())
    bent = np.degrees(finger_angles(_joints(hand, _with(middle_mcp_flex=40, middle_pip_flex=70, middle_dip_flex=30)))[0][0].numpy())
    np.testing.assert_allclose(bent[1] - rest[1], [40, 70, 30], atol=6.0)
    np.testing.assert_allclose(bent[[0, 2, 3]], rest[[0, 2, 3]], atol=1.0)


def test_sideways_spread_at_the_mcp_is_lateral_not_flexion(hand: HandModel) -> None:
    rest = finger_angles(_joints(hand, _with()))
    spread = finger_angles(_joints(hand, _with(index_mcp_abd=15, index_pip_flex=60)))
    d_lat = np.degrees((spread[1] - rest[1])[0, 0].numpy())
    d_flex = np.degrees((spread[0] - rest[0])[0, 0].numpy())
    assert 10.0 < d_lat[0] < 20.0
    assert abs(d_flex[0]) < 4.0
    assert abs(d_lat[1]) < 4.0, "the PIP hinge must turn with the finger's spread"
    assert abs(d_flex[1] - 60.0) < 6.0


def test_the_hand_models_sampled_poses_stay_within_the_limits_in_any_orientation(hand: HandModel) -> None:
    rng = np.random.default_rng(3)
    poses = np.concatenate([sample_poses(200, rng), np.stack([named_pose(n) for n in ("fist", "point", "ok", "victory")])])
    orient = rng.normal(0.0, 1.5, (len(poses), 3))
    violation = joint_limit_violation(_joints(hand, poses, orient))
    per_hand = np.degrees(violation.flatten(1).sum(-1).numpy())
    assert (per_hand > 0).mean() < 0.1
    assert per_hand.mean() < 1.0


def test_hyperextension_and_a_sideways_hinge_are_penalised(hand: HandModel) -> None:
    joints = _joints(hand, _with()).clone()
    assert float(joint_limit_loss(joints)) < 1e-4
    # Bend the index DIP 40 degrees backwards (towards the back of the hand): rotate the distal
    # phalanx about the finger's hinge through the DIP joint.
    flexion, _ = finger_angles(joints)
    dip, tip = joints[0, 7], joints[0, 8]
    dorsal = torch.linalg.cross(joints[0, 17] - joints[0, 0], joints[0, 5] - joints[0, 0])
    dorsal = dorsal / dorsal.norm()
    bone = tip - dip
    angle = math.radians(40.0)
    along = bone - (bone @ dorsal) * dorsal
    bent = joints.clone()
    bent[0, 8] = dip + along * math.cos(angle) + dorsal * bone.norm() * math.sin(angle)
    v = np.degrees(joint_limit_violation(bent)[0, 0, 2].numpy())
    assert v[0] > 15.0, v
    assert float(joint_limit_loss(bent)) > math.radians(15.0)
    sideways = joints.clone()
    hinge = torch.linalg.cross(dorsal, joints[0, 5] - joints[0, 0])
    hinge = hinge / hinge.norm()
    sideways[0, 8] = dip + bone.norm() * (math.cos(math.radians(45)) * bone / bone.norm() + math.sin(math.radians(45)) * hinge)
    assert np.degrees(joint_limit_violation(sideways)[0, 0, 2, 1].item()) > 15.0


def test_the_loss_is_differentiable_and_pushes_a_violation_back(hand: HandModel) -> None:
    joints = _joints(hand, _with(ring_pip_flex=60)).clone()
    dorsal = torch.linalg.cross(joints[0, 17] - joints[0, 0], joints[0, 5] - joints[0, 0])
    joints[0, 16] += 0.03 * dorsal / dorsal.norm()  # the ring fingertip bent far backwards
    joints.requires_grad_(True)
    before = joint_limit_loss(joints)
    assert float(before) > math.radians(20.0)
    before.backward()
    assert torch.isfinite(joints.grad).all()
    moved = (joints - 1e-3 * joints.grad / joints.grad.norm()).detach()
    assert float(joint_limit_loss(moved)) < float(before.detach())


def test_a_straight_or_degenerate_finger_gives_finite_angles() -> None:
    joints = torch.zeros(2, 21, 3)
    joints[1, :, 0] = torch.linspace(0, 0.2, 21)
    flexion, lateral = finger_angles(joints)
    assert torch.isfinite(flexion).all() and torch.isfinite(lateral).all()
    assert torch.isfinite(joint_limit_loss(joints))
