"""Hand model: LBS, FK, exact joint regression, shapes, pose limits, sampler, mirroring, gradients."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from models.hand import HandInputError, HandModel
from models.hand.anatomy import JOINT_PARENTS
from models.hand.mesh_topology import check_closed_manifold, signed_volume
from models.hand.mirror import mirror_faces, mirror_mesh, mirror_points
from models.hand.poses import (NAMED_POSES, NUM_POSE_DOFS, POSE_DOF_NAMES, POSE_LIMITS, named_pose,
                               sample_poses, sample_shapes)


@pytest.fixture(scope="module")
def hand() -> HandModel:
    return HandModel.default()


def test_rest_pose_returns_template_exactly(hand: HandModel) -> None:
    out = hand(torch.zeros(2, NUM_POSE_DOFS))
    assert out.vertices.shape == (2, hand.num_vertices, 3)
    assert out.joints.shape == (2, 21, 3)
    assert out.bone_transforms.shape == (2, 16, 4, 4)
    assert torch.allclose(out.vertices[0], hand.template, atol=1e-7)
    assert torch.allclose(out.joints[0], hand.regress_joints(hand.template[None])[0], atol=1e-7)


def test_regressed_joints_match_skeleton_for_random_poses_and_shapes(hand: HandModel) -> None:
    rng = np.random.default_rng(0)
    pose = torch.from_numpy(sample_poses(1000, rng))
    shape = torch.from_numpy(sample_shapes(1000, rng))
    glob = torch.from_numpy(rng.normal(0, 1.0, (1000, 3)).astype(np.float32))
    transl = torch.from_numpy(rng.normal(0, 0.3, (1000, 3)).astype(np.float32))
    with torch.no_grad():
        out = hand(pose, shape, glob, transl)
        err = (hand.regress_joints(out.vertices) - out.joints).norm(dim=-1)
    assert err.max().item() < 1e-3


def test_fk_preserves_bone_lengths(hand: HandModel) -> None:
    rng = np.random.default_rng(1)
    shape = torch.from_numpy(sample_shapes(64, rng))
    pose = torch.from_numpy(sample_poses(64, rng))
    with torch.no_grad():
        rest = hand(torch.zeros_like(pose), shape).joints
        posed = hand(pose, shape, torch.randn(64, 3)).joints
    child = [j for j in range(21) if JOINT_PARENTS[j] >= 0]
    parent = [JOINT_PARENTS[j] for j in child]
    lr = (rest[:, child] - rest[:, parent]).norm(dim=-1)
    lp = (posed[:, child] - posed[:, parent]).norm(dim=-1)
    assert torch.allclose(lr, lp, atol=1e-6)


def test_shape_parameters_change_mesh_and_skeleton_consistently(hand: HandModel) -> None:
    zeros = torch.zeros(1, NUM_POSE_DOFS)
    base = hand(zeros)
    bigger = hand(zeros, torch.tensor([[1.0, 0, 0, 0]]))
    assert torch.allclose(bigger.vertices, base.vertices * 1.1, atol=1e-6)
    assert torch.allclose(bigger.joints, base.joints * 1.1, atol=1e-6)
    wide = hand(zeros, torch.tensor([[0, 1.0, 0, 0]]))
    assert (wide.joints[0, 17, 0] - wide.joints[0, 5, 0]) > (base.joints[0, 17, 0] - base.joints[0, 5, 0]) * 1.05
    long = hand(zeros, torch.tensor([[0, 0, 1.0, 0]]))
    assert (long.joints[0, 12] - long.joints[0, 9]).norm() > 1.06 * (base.joints[0, 12] - base.joints[0, 9]).norm()
    thick = hand(zeros, torch.tensor([[0, 0, 0, 1.0]]))
    f = hand.faces.numpy()
    assert signed_volume(thick.vertices[0].double().numpy(), f) > 1.1 * signed_volume(base.vertices[0].double().numpy(), f)


def test_flexion_curls_fingers_towards_the_palm(hand: HandModel) -> None:
    fist = hand(torch.from_numpy(named_pose("fist"))[None]).joints[0]
    rest = hand(torch.zeros(1, NUM_POSE_DOFS)).joints[0]
    for tip in (8, 12, 16, 20):
        assert fist[tip, 2] < rest[tip, 2] - 0.008  # tips move to the palm side (-z)
        assert fist[tip, 1] < rest[tip, 1] - 0.06
    pinch = hand(torch.from_numpy(named_pose("pinch"))[None]).joints[0]
    assert (pinch[4] - pinch[8]).norm() < 0.015  # thumb and index tips meet


def test_named_poses_are_within_limits_and_known() -> None:
    assert len(POSE_DOF_NAMES) == NUM_POSE_DOFS and POSE_LIMITS.shape == (NUM_POSE_DOFS, 2)
    assert set(NAMED_POSES) == {"open_palm", "fist", "point", "thumbs_up", "pinch", "victory", "ok"}
    for name in NAMED_POSES:
        p = named_pose(name)
        assert p.shape == (NUM_POSE_DOFS,) and p.dtype == np.float32
        assert (p >= POSE_LIMITS[:, 0] - 1e-6).all() and (p <= POSE_LIMITS[:, 1] + 1e-6).all()
    with pytest.raises(KeyError, match="choose one of"):
        named_pose("wave")


def test_sampled_poses_respect_limits_and_correlate() -> None:
    poses = sample_poses(2000, np.random.default_rng(3))
    assert poses.shape == (2000, NUM_POSE_DOFS) and poses.dtype == np.float32
    assert (poses >= POSE_LIMITS[:, 0] - 1e-6).all() and (poses <= POSE_LIMITS[:, 1] + 1e-6).all()
    pip = poses[:, [8, 12, 16, 20]]
    dip = poses[:, [9, 13, 17, 21]]
    assert np.corrcoef(pip[:, 1], pip[:, 2])[0, 1] > 0.5  # neighbouring fingers curl together
    assert np.corrcoef(pip.ravel(), dip.ravel())[0, 1] > 0.7  # DIP follows PIP
    assert poses.std(axis=0).min() > 0.01  # every DoF is exercised
    assert np.array_equal(poses[:5], sample_poses(2000, np.random.default_rng(3))[:5])


def test_clamp_pose(hand: HandModel) -> None:
    big = torch.full((3, NUM_POSE_DOFS), 10.0)
    assert torch.allclose(hand.clamp_pose(big), torch.from_numpy(POSE_LIMITS[:, 1]).expand(3, -1))


def test_mirroring_twice_is_identity_and_keeps_orientation(hand: HandModel) -> None:
    v = hand.template.numpy().astype(np.float64)
    f = hand.faces.numpy()
    lv, lf = mirror_mesh(v, f)
    assert signed_volume(lv, lf) > 0 and check_closed_manifold(len(lv), lf).ok
    assert lv[:, 0].mean() == pytest.approx(-v[:, 0].mean())
    v2, f2 = mirror_mesh(lv, lf)
    assert np.array_equal(v2, v) and np.array_equal(f2, f)
    t = torch.randn(4, 21, 3)
    assert torch.equal(mirror_points(mirror_points(t)), t)
    assert torch.equal(mirror_faces(mirror_faces(hand.faces)), hand.faces)


def test_batch_sizes_and_float64_gradcheck(hand: HandModel) -> None:
    for b in (1, 2, 7):
        assert hand(torch.zeros(b, NUM_POSE_DOFS)).vertices.shape[0] == b
    h64 = HandModel.default().to(torch.float64)
    pose = torch.from_numpy(named_pose("ok")).double()[None].requires_grad_(True)
    shape = torch.zeros(1, 4, dtype=torch.float64, requires_grad=True)
    glob = torch.tensor([[0.1, -0.2, 0.3]], dtype=torch.float64, requires_grad=True)

    def f(p: torch.Tensor, s: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        out = h64(p, s, g)
        return out.joints.sum(-1)

    assert torch.autograd.gradcheck(f, (pose, shape, glob), eps=1e-6, atol=1e-5)


def test_global_rotation_and_translation(hand: HandModel) -> None:
    pose = torch.from_numpy(named_pose("point"))[None]
    base = hand(pose)
    rotvec = torch.tensor([[0.0, 0.0, np.pi / 2]])
    moved = hand(pose, global_orient=rotvec, transl=torch.tensor([[0.1, 0.2, 0.3]]))
    rz = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    expected = base.vertices @ rz.T + torch.tensor([0.1, 0.2, 0.3])
    assert torch.allclose(moved.vertices, expected, atol=1e-6)


def test_bad_inputs_raise_typed_errors(hand: HandModel) -> None:
    with pytest.raises(HandInputError, match="pose must be"):
        hand(torch.zeros(2, 45))
    with pytest.raises(HandInputError, match="shape must be"):
        hand(torch.zeros(2, NUM_POSE_DOFS), torch.zeros(2, 10))
    with pytest.raises(HandInputError, match="transl must be"):
        hand(torch.zeros(2, NUM_POSE_DOFS), transl=torch.zeros(3))
