"""Procedural hand asset: surface topology, proportions, regions, decoder hierarchy and spirals."""
from __future__ import annotations

import numpy as np
import pytest

from models.hand.anatomy import NUM_JOINTS
from models.hand.asset import HandAsset, HandAssetError, asset_from_arrays, asset_to_arrays, load_hand_asset
from models.hand.mesh_topology import (check_closed_manifold, connected_components, ordered_one_rings,
                                       signed_volume, unique_edges)


@pytest.fixture(scope="module")
def asset() -> HandAsset:
    return load_hand_asset()


def test_surface_is_closed_oriented_genus0_manifold(asset: HandAsset) -> None:
    v, f = asset.template_vertices, asset.faces
    assert 700 <= len(v) <= 1000
    report = check_closed_manifold(len(v), f)
    assert report.edges_not_shared_by_two_faces == 0
    assert report.inconsistently_oriented_edges == 0
    assert report.non_manifold_vertices == 0
    assert report.unused_vertices == 0
    assert report.components == 1
    assert report.euler_characteristic == 2
    assert signed_volume(v.astype(np.float64), f) > 0  # outward winding


def test_manifold_check_detects_defects(asset: HandAsset) -> None:
    f = asset.faces
    assert not check_closed_manifold(len(asset.template_vertices), f[1:]).ok  # a hole
    flipped = f.copy()
    flipped[0] = flipped[0, [0, 2, 1]]
    assert check_closed_manifold(len(asset.template_vertices), flipped).inconsistently_oriented_edges > 0
    v = asset.template_vertices.astype(np.float64)
    assert signed_volume(v, f[:, [0, 2, 1]]) < 0


def test_adult_proportions_in_metres(asset: HandAsset) -> None:
    v, j = asset.template_vertices, asset.rest_joints
    assert np.allclose(j[0], 0.0, atol=1e-4)  # wrist joint at the origin
    assert 0.180 <= np.linalg.norm(j[12] - j[0]) <= 0.190  # wrist to middle fingertip
    band = (v[:, 1] > 0.065) & (v[:, 1] < 0.085) & (asset.regions != 1)
    width = v[band, 0].max() - v[band, 0].min()
    assert 0.079 <= width <= 0.087  # palm breadth at the knuckles
    assert v[:, 1].min() < -0.015  # a short wrist stub below the wrist joint
    # Thumb on the radial (-x) side, little finger on the ulnar (+x) side, palm facing -z.
    assert j[4, 0] < j[8, 0] < j[12, 0] < j[16, 0] < j[20, 0]
    assert j[4, 2] < 0


def test_fingertip_joints_are_surface_tips(asset: HandAsset) -> None:
    v, j = asset.template_vertices, asset.rest_joints
    for f, tip in enumerate((4, 8, 12, 16, 20)):
        vid = asset.tip_vertex_ids[f]
        assert np.allclose(j[tip], v[vid])
        direction = j[tip] - j[tip - 1]
        direction /= np.linalg.norm(direction)
        # Nothing of that finger reaches further along its last bone than the tip vertex.
        finger = asset.regions == f + 1
        assert ((v[finger] - j[tip]) @ direction).max() <= 1.5e-3


def test_joint_regressor_rows(asset: HandAsset) -> None:
    r = asset.joint_regressor
    assert r.shape == (NUM_JOINTS, len(asset.template_vertices))
    assert np.allclose(r.sum(axis=1), 1.0, atol=1e-5)
    assert (r >= 0).all()
    assert ((r > 0).sum(axis=1) <= 60).all()  # sparse
    assert np.allclose(r @ asset.template_vertices, asset.rest_joints, atol=1e-6)


def test_regions_cover_every_vertex_once_and_are_connected(asset: HandAsset) -> None:
    regions = asset.regions
    assert regions.shape == (len(asset.template_vertices),)
    assert set(np.unique(regions)) == set(range(6))
    for r in range(6):
        ids = np.flatnonzero(regions == r)
        remap = -np.ones(len(regions), dtype=np.int64)
        remap[ids] = np.arange(len(ids))
        edges = unique_edges(asset.faces)
        inner = remap[edges[(regions[edges] == r).all(axis=1)]]
        labels = connected_components(len(ids), np.stack([inner[:, 0], inner[:, 1], inner[:, 1]], axis=1))
        assert labels.max() == 0, f"region {r} is not connected"


def test_hierarchy_levels_and_sampling_matrices(asset: HandAsset) -> None:
    n = asset.level_num_vertices
    assert len(n) == 5 and n[0] == len(asset.template_vertices)
    for level in range(4):
        assert abs(n[level + 1] - n[level] / 2) <= 1
    for level, faces in enumerate(asset.level_faces):
        assert faces.min() >= 0 and faces.max() < n[level]
        assert check_closed_manifold(n[level], faces).ok
    positions = [asset.template_vertices]
    for level in range(4):
        down, up = asset.down[level], asset.up[level]
        assert down.shape == (n[level + 1], n[level]) and up.shape == (n[level], n[level + 1])
        d, u = down.to_dense(), up.to_dense()
        assert np.allclose(d.sum(axis=1), 1.0) and np.allclose(u.sum(axis=1), 1.0, atol=1e-5)
        assert (u >= 0).all()
        coarse = d @ positions[-1]
        # Up-sampling the coarse mesh lands every fine vertex on the coarse surface, close to its place.
        err = np.linalg.norm(u @ coarse - positions[-1], axis=1)
        assert err.max() < 0.02 and err.mean() < 0.003
        assert np.allclose(d @ u, np.eye(n[level + 1]), atol=1e-6)  # kept vertices map to themselves
        positions.append(coarse)
        torch_m = down.to_torch()
        assert torch_m.is_sparse and torch_m.is_coalesced() and tuple(torch_m.shape) == down.shape


def test_spirals_every_level(asset: HandAsset) -> None:
    for level, (spiral, faces) in enumerate(zip(asset.spirals, asset.level_faces)):
        nv = asset.level_num_vertices[level]
        assert spiral.shape == (nv, 9) and spiral.dtype == np.int64
        assert spiral.min() >= 0 and spiral.max() < nv
        assert (spiral[:, 0] == np.arange(nv)).all()
        rings = ordered_one_rings(nv, faces)
        for v in range(0, nv, 7):
            ring = rings[v]
            k = min(len(ring), 8)
            assert list(spiral[v, 1:1 + k]) == ring[:k]  # first ring, counter-clockwise
        edges = {tuple(e) for e in unique_edges(faces)}
        assert all(tuple(sorted((v, int(spiral[v, 1])))) in edges for v in range(nv))


def test_roi_spirals_stay_in_their_region(asset: HandAsset) -> None:
    roi, regions = asset.roi_spirals, asset.regions
    assert roi.shape[0] == len(regions) and roi.shape[1] >= 5
    assert (roi[:, 0] == np.arange(len(regions))).all()
    assert roi.min() >= 0 and roi.max() < len(regions)
    assert (regions[roi] == regions[:, None]).all()
    # Dilated: the second entry is not a direct neighbour (it skips one element of the spiral).
    distinct = np.array([len(set(row)) for row in roi])
    assert np.mean(distinct >= 8) > 0.9


def test_asset_hash_detects_tampering(asset: HandAsset) -> None:
    arrays = asset_to_arrays(asset)
    assert str(arrays["sha256"]) == asset.sha256
    arrays["template_vertices"] = arrays["template_vertices"].copy()
    arrays["template_vertices"][0, 0] += 1e-3
    with pytest.raises(HandAssetError, match="hash"):
        asset_from_arrays(arrays)


def test_missing_asset_is_a_typed_error(tmp_path) -> None:
    with pytest.raises(HandAssetError, match="models.hand.build"):
        load_hand_asset(tmp_path / "nope.npz")
