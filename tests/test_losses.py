"""Loss terms on hand-computed cases; consistency terms vanish for exact two-view geometry; the bend
between adjacent faces (models.mesh_surface) and its loss terms."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.errors import TopologyError
from models.hand.mesh_topology import face_adjacency
from models.mesh_surface import dihedral_cosines, mean_bend_deg
from models.rectify import apply_homography
from training.metrics import procrustes_align_to_gt
from training.losses import (
    aligned_l1,
    procrustes_transform,
    HandMeshLoss,
    LossInputError,
    LossPrediction,
    LossTarget,
    LossWeights,
    ViewPair,
    consistency2d_loss,
    consistency3d_loss,
    dihedral_loss,
    edge_length_loss,
    fold_loss,
    heatmap_kl_loss,
    l1_points,
    mesh_edges,
    normal_loss,
    view_pair_from_rectifications,
)

TRIANGLE = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]], dtype=torch.float64)
ONE_FACE = torch.tensor([[0, 1, 2]])


def _rot_z(angle: float) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)


def _rot_x(angle: float) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]], dtype=torch.float64)


def test_l1_points_hand_computed() -> None:
    pred = torch.tensor([[[0.1, 0.0, -0.2]]])
    assert float(l1_points(pred, torch.zeros_like(pred), scale=0.2)) == pytest.approx(0.1 / 0.2 / 1.0)
    with pytest.raises(LossInputError):
        l1_points(pred, torch.zeros(1, 2, 3))


def test_mesh_edges_of_two_triangles() -> None:
    edges = mesh_edges(torch.tensor([[0, 1, 2], [2, 1, 3]]))
    assert edges.tolist() == [[0, 1], [0, 2], [1, 2], [1, 3], [2, 3]]


def test_normal_loss_hand_computed() -> None:
    assert float(normal_loss(TRIANGLE, TRIANGLE, ONE_FACE)) == pytest.approx(0.0)
    # Lift vertex 2 to z=1: gt normal is +z; predicted edges (1,0,0), (0,1,1)/sqrt2, (-1,1,1)/sqrt3 have
    # |cos| with z of 0, 1/sqrt2, 1/sqrt3.
    pred = TRIANGLE.clone()
    pred[0, 2, 2] = 1.0
    expected = (0.0 + 1 / math.sqrt(2) + 1 / math.sqrt(3)) / 3
    assert float(normal_loss(pred, TRIANGLE, ONE_FACE)) == pytest.approx(expected)


def test_edge_length_loss_hand_computed() -> None:
    # Doubling the triangle doubles each edge: |2L - L| averaged = mean(1, 1, sqrt2).
    edges = mesh_edges(ONE_FACE)
    expected = (1 + 1 + math.sqrt(2)) / 3
    assert float(edge_length_loss(2 * TRIANGLE, TRIANGLE, edges)) == pytest.approx(expected)
    # A rigid motion keeps every length.
    moved = TRIANGLE @ _rot_x(0.7).T + 3.0
    assert float(edge_length_loss(moved, TRIANGLE, edges)) == pytest.approx(0.0, abs=1e-12)


def _hinge(angle: float) -> torch.Tensor:
    """Two unit right triangles sharing the edge (0,0,0)-(0,1,0); the second turned by ``angle`` about it
    (0: a flat square, consistently wound)."""
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [c, 0.0, s]]], dtype=torch.float64)


HINGE_FACES = torch.tensor([[0, 1, 2], [1, 0, 3]])


def test_face_adjacency_pairs_the_faces_of_each_interior_edge() -> None:
    assert face_adjacency(HINGE_FACES).tolist() == [[0, 1]]
    tetrahedron = torch.tensor([[0, 2, 1], [0, 1, 3], [1, 2, 3], [0, 3, 2]])
    pairs = face_adjacency(tetrahedron)
    assert len(pairs) == 6 and {tuple(sorted(p)) for p in pairs.tolist()} == {(a, b) for a in range(4) for b in range(a + 1, 4)}
    with pytest.raises(TopologyError, match="more than two faces"):
        face_adjacency(torch.tensor([[0, 1, 2], [1, 0, 3], [0, 1, 4]]))
    with pytest.raises(TopologyError):
        face_adjacency(np.array([0, 1, 2]))


def test_dihedral_terms_hand_computed() -> None:
    pairs = torch.from_numpy(face_adjacency(HINGE_FACES.numpy()))
    flat, bent = _hinge(0.0), _hinge(math.pi / 2)
    assert float(dihedral_cosines(flat, HINGE_FACES, pairs)[0, 0]) == pytest.approx(1.0)
    assert float(dihedral_cosines(bent, HINGE_FACES, pairs)[0, 0]) == pytest.approx(0.0, abs=1e-12)
    # a rigid motion and a uniform scale keep every bend
    moved = 3.0 * bent @ _rot_x(0.4).T + 1.0
    assert float(dihedral_loss(moved, bent, HINGE_FACES, pairs)) == pytest.approx(0.0, abs=1e-12)
    assert float(dihedral_loss(bent, flat, HINGE_FACES, pairs)) == pytest.approx(1.0)
    assert mean_bend_deg(bent[0].numpy(), HINGE_FACES.numpy()).tolist() == pytest.approx([90.0])
    mirrored = bent * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)  # a left hand: winding flipped too
    assert mean_bend_deg(mirrored, HINGE_FACES[:, [0, 2, 1]]).tolist() == pytest.approx([90.0])
    rest = dihedral_cosines(flat, HINGE_FACES, pairs)[0]
    # bending by 90 degrees costs 1 - 0 - margin; bends within the margin are free
    assert float(fold_loss(bent, rest, HINGE_FACES, pairs, margin=0.25)) == pytest.approx(0.75)
    slight = _hinge(math.acos(0.9))
    assert float(fold_loss(slight, rest, HINGE_FACES, pairs, margin=0.25)) == 0.0


def test_dihedral_loss_sees_jitter_that_barely_moves_the_vertices() -> None:
    gen = torch.Generator().manual_seed(0)
    n = 12  # a finely tessellated flat sheet
    grid = torch.stack(torch.meshgrid(torch.arange(n + 1.0), torch.arange(n + 1.0), indexing="ij"), -1).reshape(-1, 2) / n
    sheet = torch.cat([grid, torch.zeros(len(grid), 1)], dim=1).double().unsqueeze(0)
    idx = torch.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    a, b, c, d = idx[:-1, :-1].reshape(-1), idx[1:, :-1].reshape(-1), idx[:-1, 1:].reshape(-1), idx[1:, 1:].reshape(-1)
    faces = torch.cat([torch.stack([a, b, c], 1), torch.stack([b, d, c], 1)])
    pairs = torch.from_numpy(face_adjacency(faces.numpy()))
    jittered = sheet.clone()
    jittered[..., 2] += 0.01 * torch.randn(sheet.shape[:2], generator=gen, dtype=torch.float64)
    assert float((jittered - sheet).abs().mean()) < 0.01  # close in L1 ...
    assert float(dihedral_loss(jittered, sheet, faces, pairs)) > 0.01  # ... but crumpled
    rest = dihedral_cosines(sheet, faces, pairs)[0]
    assert float(fold_loss(jittered, rest, faces, pairs, 0.0)) > 0.0 == float(fold_loss(sheet, rest, faces, pairs, 0.0))


def test_consistency3d_zero_for_exact_rotation_and_positive_otherwise() -> None:
    gen = torch.Generator().manual_seed(0)
    verts_a = torch.randn(2, 10, 3, generator=gen, dtype=torch.float64)
    rot = torch.stack([_rot_z(0.4), _rot_x(-1.1) @ torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64))])
    verts_b = verts_a @ rot.transpose(1, 2)
    assert float(consistency3d_loss(verts_a, verts_b, rot)) == pytest.approx(0.0, abs=1e-12)
    assert float(consistency3d_loss(verts_a, verts_b + 0.1, rot, scale=0.2)) == pytest.approx(0.5)


def test_homography_and_consistency2d_hand_computed() -> None:
    shift = torch.tensor([[[2.0, 0.0, 4.0], [0.0, 2.0, -6.0], [0.0, 0.0, 1.0]]])  # scale 2 then shift (4, -6)
    uv_a = torch.tensor([[[1.0, 1.0], [10.0, 20.0]]])
    uv_b = apply_homography(uv_a, shift)
    assert uv_b.tolist() == [[[6.0, -4.0], [24.0, 34.0]]]
    assert float(consistency2d_loss(uv_a, uv_b, shift, 128.0)) == pytest.approx(0.0)
    assert float(consistency2d_loss(uv_a, uv_b + 12.8, shift, 128.0)) == pytest.approx(0.1)


def _camera_views() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, ViewPair, torch.Tensor, torch.Tensor]:
    """A camera-space hand-like point set seen through two rectified views (second one mirrored)."""
    gen = torch.Generator().manual_seed(1)
    points_cam = torch.randn(1, 21, 3, generator=gen, dtype=torch.float64) * 0.04 + torch.tensor([0.1, -0.05, 0.6])
    k_img = torch.tensor([[[600.0, 0.0, 320.0], [0.0, 600.0, 240.0], [0.0, 0.0, 1.0]]], dtype=torch.float64)
    f_a = _rot_x(0.2)[None]
    f_b = (torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)) @ _rot_z(0.5) @ _rot_x(-0.1))[None]
    k_a = torch.tensor([[[300.0, 0.0, 63.5], [0.0, 300.0, 63.5], [0.0, 0.0, 1.0]]], dtype=torch.float64)
    k_b = torch.tensor([[[350.0, 0.0, 63.5], [0.0, 350.0, 63.5], [0.0, 0.0, 1.0]]], dtype=torch.float64)
    h_a = k_a @ f_a @ torch.linalg.inv(k_img)
    h_b = k_b @ f_b @ torch.linalg.inv(k_img)
    pair = view_pair_from_rectifications(f_a, h_a, f_b, h_b)

    def project(k: torch.Tensor, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        virt = points_cam @ f.transpose(1, 2)
        uvw = virt @ k.transpose(1, 2)
        return virt - virt[:, :1], uvw[..., :2] / uvw[..., 2:]

    rel_a, uv_a = project(k_a, f_a)
    rel_b, uv_b = project(k_b, f_b)
    return rel_a, uv_a, points_cam, pair, rel_b, uv_b


def test_view_pair_maps_exact_geometry_with_mirror() -> None:
    rel_a, uv_a, _, pair, rel_b, uv_b = _camera_views()
    assert float(consistency3d_loss(rel_a, rel_b, pair.rot_a_to_b)) < 1e-12
    assert float(consistency2d_loss(uv_a, uv_b, pair.hom_a_to_b, 128.0)) < 1e-9


def test_hand_mesh_loss_total_terms_and_gradients() -> None:
    rel_a, uv_a, cam, pair, rel_b, uv_b = _camera_views()
    faces = torch.tensor([[0, 1, 2], [0, 2, 3], [3, 4, 5]])
    loss = HandMeshLoss(faces=faces, weights=LossWeights())
    target_a = LossTarget(verts_rel=rel_a, joints_uv=uv_a, crop_size_px=128.0, verts_cam=cam, joints_cam=cam)
    target_b = LossTarget(verts_rel=rel_b, joints_uv=uv_b, crop_size_px=128.0, verts_cam=cam, joints_cam=cam)
    exact_a = LossPrediction(verts_rel=rel_a, joints_uv=uv_a, verts_cam=cam, joints_cam=cam)
    exact_b = LossPrediction(verts_rel=rel_b, joints_uv=uv_b, verts_cam=cam, joints_cam=cam)
    total, terms = loss(exact_a, target_a, exact_b, target_b, pair)
    assert set(terms) == {"mesh", "pose2d", "normal", "edge", "consistency3d", "consistency2d", "dgp_joints", "dgp_verts"}
    assert float(total) < 1e-8

    noisy_rel = (rel_a + 0.01).requires_grad_(True)
    noisy = LossPrediction(verts_rel=noisy_rel, joints_uv=uv_a + 1.28, verts_cam=cam + 0.002, joints_cam=cam)
    total, terms = loss(noisy, target_a)
    assert "consistency3d" not in terms  # one view: no consistency terms
    assert float(terms["mesh"]) == pytest.approx(0.01 / 0.2)
    assert float(terms["pose2d"]) == pytest.approx(0.01)
    assert float(terms["dgp_verts"]) == pytest.approx(0.002 / 0.2)
    assert float(total.detach()) == pytest.approx(0.05 + 0.01 + 0.01, abs=1e-9)  # normal/edge: translation-invariant
    total.backward()
    assert noisy_rel.grad is not None and float(noisy_rel.grad.abs().sum()) > 0


def test_zero_weights_skip_terms_and_missing_inputs_raise() -> None:
    rel_a, uv_a, _, _, _, _ = _camera_views()
    faces = torch.tensor([[0, 1, 2]])
    only_mesh = LossWeights(pose2d=0, normal=0, edge=0, consistency3d=0, consistency2d=0, dgp_joints=0, dgp_verts=0)
    pred = LossPrediction(verts_rel=rel_a, joints_uv=uv_a)
    target = LossTarget(verts_rel=rel_a, joints_uv=uv_a, crop_size_px=128.0)
    _, terms = HandMeshLoss(faces=faces, weights=only_mesh)(pred, target)
    assert list(terms) == ["mesh"]
    with pytest.raises(LossInputError, match="camera-space"):
        HandMeshLoss(faces=faces, weights=LossWeights())(pred, target)
    with pytest.raises(LossInputError):
        LossWeights(mesh=-1.0)


def test_heatmap_kl_is_zero_at_the_target_and_grows_with_offset() -> None:
    crop, w = 32, 8  # stride 4: cell j has its centre at 4j + 1.5
    joints = torch.tensor([[[9.5, 13.5]]])  # exactly the centre of cell (x=2, y=3)
    xs = (torch.arange(w) + 0.5) * 4 - 0.5
    d2 = (xs.view(1, w) - 9.5) ** 2 + (xs.view(w, 1) - 13.5) ** 2
    target = torch.softmax((-d2 / (2 * 4.0**2)).flatten(), 0).view(1, 1, 1, w, w)
    assert heatmap_kl_loss(target, joints, crop, 4.0).item() == pytest.approx(0.0, abs=1e-6)
    shifted = torch.roll(target, shifts=2, dims=-1)
    further = torch.roll(target, shifts=4, dims=-1)
    near, far = heatmap_kl_loss(shifted, joints, crop, 4.0), heatmap_kl_loss(further, joints, crop, 4.0)
    assert 0 < near.item() < far.item()
    logits = torch.zeros(1, 2, 1, w, w, requires_grad=True)
    loss = heatmap_kl_loss(torch.softmax(logits.flatten(-2), -1).view_as(logits), joints, crop, 4.0)
    loss.backward()
    # The gradient raises the logit at the ground-truth cell on both stacks.
    assert logits.grad is not None and int(logits.grad[0, 0, 0].argmin()) == 3 * w + 2
    assert torch.equal(logits.grad[0, 0], logits.grad[0, 1])


def test_procrustes_transform_undoes_a_similarity_and_matches_the_metric() -> None:
    gen = torch.Generator().manual_seed(3)
    target = torch.randn(3, 21, 3, generator=gen)
    angle = torch.tensor([0.3, 1.2, -2.5])
    c, s = torch.cos(angle), torch.sin(angle)
    rot = torch.zeros(3, 3, 3)
    rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1], rot[:, 2, 2] = c, -s, s, c, 1.0
    moved = 0.4 * target @ rot.transpose(1, 2) + torch.tensor([[[0.1, -2.0, 5.0]]])
    scale, rotation, translation = procrustes_transform(moved, target)
    assert torch.allclose(scale * moved @ rotation.transpose(1, 2) + translation, target, atol=1e-5)
    assert torch.allclose(scale.flatten(), torch.full((3,), 2.5), atol=1e-5)
    noisy = moved + 0.05 * torch.randn(moved.shape, generator=gen)
    scale, rotation, translation = procrustes_transform(noisy, target)
    ours = scale * noisy @ rotation.transpose(1, 2) + translation
    assert torch.allclose(ours.double(), procrustes_align_to_gt(noisy, target), atol=1e-5)
    assert torch.linalg.det(rotation).sub(1.0).abs().max() < 1e-5  # never a reflection


def test_aligned_l1_ignores_pose_of_the_whole_hand_but_not_its_shape() -> None:
    gen = torch.Generator().manual_seed(4)
    joints, verts = torch.randn(2, 21, 3, generator=gen), torch.randn(2, 50, 3, generator=gen)
    flip = torch.diag(torch.tensor([-1.0, -1.0, 1.0]))  # a half turn about z
    assert float(aligned_l1(0.5 * joints @ flip.T + 3.0, joints, 0.2, 0.5 * verts @ flip.T + 3.0, verts)) < 1e-5
    bent = joints.clone()
    bent[:, 4] += 0.3
    pred = bent.clone().requires_grad_(True)
    loss = aligned_l1(pred, joints, 0.2)
    assert float(loss) > 0.01
    loss.backward()
    assert pred.grad is not None and bool(torch.isfinite(pred.grad).all())
    assert float(aligned_l1(bent - 0.05 * pred.grad, joints, 0.2)) < float(loss)
    with pytest.raises(LossInputError, match="both"):
        aligned_l1(joints, joints, 0.2, verts)
    off_verts = aligned_l1(joints, joints, 0.2, verts + 0.1, verts)
    assert float(off_verts) == pytest.approx(0.1 * 50 / 71 / 0.2, rel=1e-4)
