"""The fused cue, landmark skinning, metric scale and depth guard (models/), on the real hand asset."""
from __future__ import annotations

from dataclasses import replace
from itertools import pairwise

import numpy as np
import pytest
import torch

from models.config import get_preset
from models.depth_guard import MIN_DEPTH_M, guard_translation
from models.hand import HandModel
from models.hand.asset import load_hand_asset
from models.hand.poses import sample_poses
from models.landmark_skinning import FINGER_CHAINS, LandmarkSkinning
from models.m3dhmr import M3DHMR
from models.mediapipe_frame import hand_length, world_landmarks_to_virtual
from models.mesh_surface import mean_bend_deg
from models.rectify import rectification_from_box


@pytest.fixture(scope="module")
def skinning() -> LandmarkSkinning:
    return LandmarkSkinning.from_asset(load_hand_asset())


@pytest.fixture(scope="module")
def fused_model() -> M3DHMR:
    torch.manual_seed(0)
    # Without the surface smoothing (tests/test_surface_smoothing.py) and the ray lift (tests/test_landmark_lift.py),
    # so the skinned landmarks come out exactly.
    model = M3DHMR.from_config(replace(get_preset("realtime_fused"), surface_smoothing=0, landmark_ray_lift=0.0)).eval()
    with torch.no_grad():
        model.decoder.head.weight.zero_()
        model.decoder.head.bias.zero_()
    return model


def _random_rotations(n: int, seed: int) -> torch.Tensor:
    from scipy.spatial.transform import Rotation

    return torch.as_tensor(Rotation.random(n, random_state=seed).as_matrix(), dtype=torch.float32)


def test_skinning_the_rest_joints_gives_the_template(skinning: LandmarkSkinning) -> None:
    posed = skinning(skinning.template_joints[None])
    assert torch.allclose(posed[0], skinning.template_vertices, atol=1e-6)


def test_skinning_follows_posed_and_rotated_hands(skinning: LandmarkSkinning) -> None:
    """Given the exact joints of a posed, rotated hand, the skinned mesh is within a few mm of the true mesh
    (the template alone is more than 15 mm away), and its regressed joints are the given ones."""
    model = HandModel.default()
    poses = torch.as_tensor(sample_poses(16, np.random.default_rng(3)), dtype=torch.float32)
    out = model(poses)
    rot = _random_rotations(16, 4)
    joints = (out.joints - out.joints[:, :1]) @ rot.transpose(1, 2)
    verts = (out.vertices - out.joints[:, :1]) @ rot.transpose(1, 2)
    skinned = skinning(joints)
    err = (skinned - verts).norm(dim=-1).mean(dim=1)
    template_err = (skinning.template_vertices[None] @ rot.transpose(1, 2) - verts).norm(dim=-1).mean(dim=1)
    assert float(err.mean()) < 0.005
    assert float(template_err.mean()) > 0.015
    regressor = torch.as_tensor(load_hand_asset().joint_regressor)
    assert torch.allclose(torch.einsum("jv,bvc->bjc", regressor, skinned), joints, atol=1e-4)


def test_skinning_is_finite_for_all_zero_landmarks(skinning: LandmarkSkinning) -> None:
    assert torch.isfinite(skinning(torch.zeros(2, 21, 3))).all()
    chained = LandmarkSkinning(template_vertices=skinning.template_vertices, template_joints=skinning.template_joints,
                               skin_weights=skinning.skin_weights, chain=True)
    assert torch.isfinite(chained(torch.zeros(2, 21, 3))).all()


def _short_proximal_phalanges(skinning: LandmarkSkinning) -> torch.Tensor:
    """Posed hands whose landmarks have MediaPipe-like proportions: every finger's base joint moved 30 % of
    the way towards the next joint (proximal phalanges 0.7 times the template's, the rest unchanged)."""
    model = HandModel.default()
    out = model(torch.as_tensor(sample_poses(8, np.random.default_rng(11)), dtype=torch.float32))
    joints = out.joints - out.joints[:, :1]
    for chain in FINGER_CHAINS:
        joints[:, chain[0]] = joints[:, chain[0]] + 0.3 * (joints[:, chain[1]] - joints[:, chain[0]])
    return joints


def test_chain_puts_the_template_bone_lengths_along_the_landmark_bones(skinning: LandmarkSkinning) -> None:
    landmarks = _short_proximal_phalanges(skinning)
    chained = skinning.chain(landmarks)
    template = skinning.template_joints
    assert torch.equal(chained[:, 0], landmarks[:, 0])
    for chain in FINGER_CHAINS:
        assert torch.equal(chained[:, chain[0]], landmarks[:, chain[0]])
        for pivot, child in pairwise(chain):
            bone = chained[:, child] - chained[:, pivot]
            given = landmarks[:, child] - landmarks[:, pivot]
            torch.testing.assert_close(bone.norm(dim=-1), (template[child] - template[pivot]).norm().expand(8),
                                       atol=1e-6, rtol=0)
            torch.testing.assert_close(bone / bone.norm(dim=-1, keepdim=True),
                                       given / given.norm(dim=-1, keepdim=True), atol=1e-5, rtol=0)
    torch.testing.assert_close(skinning.chain(template[None]), template[None], atol=1e-6, rtol=0)


def test_chained_skin_of_short_phalanges_has_no_knuckle_overshoot(skinning: LandmarkSkinning) -> None:
    """With proximal phalanges shorter than the template's, the plain skin's rigid proximal segments poke
    past the next pivot (a sharper, more folded surface); the chained skin's joints sit where its own
    pivots are and its surface bends less."""
    landmarks = _short_proximal_phalanges(skinning)
    chained_skin = LandmarkSkinning(template_vertices=skinning.template_vertices,
                                    template_joints=skinning.template_joints,
                                    skin_weights=skinning.skin_weights, chain=True)
    regressor = torch.as_tensor(load_hand_asset().joint_regressor)
    faces = load_hand_asset().faces
    plain, chained = skinning(landmarks), chained_skin(landmarks)
    plain_gap = (torch.einsum("jv,bvc->bjc", regressor, plain) - landmarks).norm(dim=-1).mean()
    chained_gap = (torch.einsum("jv,bvc->bjc", regressor, chained) - skinning.chain(landmarks)).norm(dim=-1).mean()
    assert float(chained_gap) < 0.5 * float(plain_gap)
    assert mean_bend_deg(chained, faces).mean() < mean_bend_deg(plain, faces).mean()


def test_world_landmarks_to_virtual_is_wrist_relative_and_mirrors_left_hands() -> None:
    world = np.random.default_rng(0).normal(0, 0.05, (21, 3))
    K = np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])
    box = np.array([300.0, 200, 380, 300])
    right = rectification_from_box(K, box, mirror=False)
    left = rectification_from_box(K, box, mirror=True)
    a = world_landmarks_to_virtual(world, np.asarray(right.virt_from_cam))
    b = world_landmarks_to_virtual(world, np.asarray(left.virt_from_cam))
    assert np.allclose(a[0], 0.0)
    assert np.allclose(a[:, 1:], b[:, 1:]) and np.allclose(a[:, 0], -b[:, 0])
    assert np.allclose(np.linalg.norm(a, axis=1), np.linalg.norm(world - world[0], axis=1))
    torch_out = world_landmarks_to_virtual(torch.as_tensor(world), torch.as_tensor(np.asarray(right.virt_from_cam)))
    assert np.allclose(torch_out.numpy(), a)


def test_hand_length_is_the_middle_finger_chain() -> None:
    joints = np.zeros((21, 3))
    joints[9:13, 1] = [0.09, 0.135, 0.163, 0.187]
    assert hand_length(joints) == pytest.approx(0.187)
    assert float(hand_length(torch.as_tensor(joints))) == pytest.approx(0.187)


def _inputs(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    crops = torch.rand(batch, 3, 128, 128, generator=torch.Generator().manual_seed(batch))
    k = torch.tensor([[320.0, 0, 63.5], [0, 320, 63.5], [0, 0, 1]]).expand(batch, 3, 3).contiguous()
    return crops, k


def test_fused_mesh_follows_the_landmarks_and_the_mask_gates_them(fused_model: M3DHMR) -> None:
    """With a zero decoder head, mask 1 gives the skinned landmarks (size-normalised, then scaled to the
    predicted length) and mask 0 gives the template; the landmark values do not matter under mask 0."""
    model = fused_model
    crops, k = _inputs(2)
    hm = HandModel.default()
    out_hand = hm(torch.as_tensor(sample_poses(2, np.random.default_rng(5)), dtype=torch.float32))
    landmarks = out_hand.joints - out_hand.joints[:, :1]
    with torch.no_grad():
        on = model(crops, k, landmarks_3d=landmarks, landmarks_3d_mask=torch.ones(2))
        off = model(crops, k, landmarks_3d=landmarks, landmarks_3d_mask=torch.zeros(2))
        off_other = model(crops, k, landmarks_3d=landmarks * 3.0 + 0.1, landmarks_3d_mask=torch.zeros(2))
    unit = landmarks * (model.template_hand_length / hand_length(landmarks)).reshape(-1, 1, 1)
    joints_unit = on.joints_rel * (model.template_hand_length / on.hand_length_used).reshape(-1, 1, 1)
    assert torch.allclose(joints_unit, unit, atol=2e-4)
    assert torch.allclose(off.vertices_rel, off_other.vertices_rel, atol=1e-6)
    assert not torch.allclose(on.vertices_rel, off.vertices_rel, atol=1e-3)


def test_given_hand_length_sets_the_mesh_size_and_scales_the_depth(fused_model: M3DHMR) -> None:
    crops, k = _inputs(3)
    uv = torch.rand(3, 21, 2, generator=torch.Generator().manual_seed(1)) * 60 + 34
    with torch.no_grad():
        small = fused_model(crops, k, joints_2d_external=uv, hand_length_given=torch.full((3,), 0.15))
        large = fused_model(crops, k, joints_2d_external=uv, hand_length_given=torch.full((3,), 0.21))
    assert torch.allclose(hand_length(small.joints_rel), torch.full((3,), 0.15), atol=1e-5)
    assert torch.allclose(small.hand_length_used, torch.full((3,), 0.15))
    # DGP's linear system scales with the mesh: 40 % larger hand, 40 % farther away
    ratio = large.translation_virt / small.translation_virt
    assert torch.allclose(ratio, torch.full_like(ratio, 0.21 / 0.15), rtol=2e-3)


def test_implausible_given_lengths_are_clamped(fused_model: M3DHMR) -> None:
    crops, k = _inputs(1)
    with torch.no_grad():
        out = fused_model(crops, k, hand_length_given=torch.tensor([5.0]))
    assert float(out.hand_length_used) <= 0.30 + 1e-6


@pytest.mark.parametrize("batch", [1, 2, 7])
def test_fused_model_batches_agree(fused_model: M3DHMR, batch: int) -> None:
    crops, k = _inputs(7)
    landmarks = skin_landmarks(7)
    with torch.no_grad():
        full = fused_model(crops, k, landmarks_3d=landmarks)
        part = fused_model(crops[:batch], k[:batch], landmarks_3d=landmarks[:batch])
    assert torch.allclose(full.vertices_cam[:batch], part.vertices_cam, atol=1e-5)


def test_rows_sharing_a_crop_equal_rows_with_their_own_copy(fused_model: M3DHMR) -> None:
    """crop_index runs the encoder once per crop; the rows match a call with the crops repeated, under
    different cue masks per row (the app's depth ensemble)."""
    from models.errors import InputShapeError

    crops, k = _inputs(2)
    index = torch.tensor([0, 1, 0, 1, 1])
    rows = len(index)
    k_rows = k[index]
    landmarks = skin_landmarks(rows)
    external = torch.rand(rows, 21, 2, generator=torch.Generator().manual_seed(3)) * 80.0 + 24.0
    masks = dict(joints_2d_external=external, external_mask=torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0]),
                 landmarks_3d=landmarks, landmarks_3d_mask=torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0]))
    with torch.no_grad():
        shared = fused_model(crops, k_rows, crop_index=index, **masks)
        repeated = fused_model(crops[index], k_rows, **masks)
    for name in ("vertices_cam", "joints_2d_pred", "translation_virt", "hand_length_used"):
        assert torch.allclose(getattr(shared, name), getattr(repeated, name), atol=1e-5), name
    with pytest.raises(InputShapeError, match="crop_index"):
        fused_model(crops, k_rows, crop_index=torch.tensor([0, 1, 2, 0, 1]))
    with pytest.raises(InputShapeError, match="K_virt"):
        fused_model(crops, k, crop_index=index)


def skin_landmarks(n: int) -> torch.Tensor:
    hm = HandModel.default()
    out = hm(torch.as_tensor(sample_poses(n, np.random.default_rng(n)), dtype=torch.float32))
    return out.joints - out.joints[:, :1]


def test_depth_guard_keeps_consistent_solutions_and_replaces_impossible_ones() -> None:
    hm = HandModel.default()
    out = hm(torch.as_tensor(sample_poses(2, np.random.default_rng(8)), dtype=torch.float64))
    rel = (out.joints - out.joints[:, :1]).numpy()
    k = np.array([[[300.0, 0, 63.5], [0, 300, 63.5], [0, 0, 1]]] * 2)
    true_t = np.array([[0.0, -0.05, 0.45], [0.01, -0.04, 0.6]])
    cam = rel + true_t[:, None]
    uv = cam[..., :2] / cam[..., 2:] * 300 + 63.5
    kept, flagged = guard_translation(true_t, rel, uv, k)
    assert not flagged.any() and np.allclose(kept, true_t)
    wrong = true_t.copy()
    wrong[0, 2] = 0.05  # closer than any hand can be
    wrong[1, 2] = 2.0  # far beyond what its size in the crop allows
    fixed, flagged = guard_translation(wrong, rel, uv, k)
    assert flagged.all()
    assert np.all(fixed[:, 2] > MIN_DEPTH_M)
    assert np.allclose(fixed[:, 2], true_t[:, 2], rtol=0.2)
