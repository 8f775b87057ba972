"""MANO loader on a small fabricated pickle in MANO's published structure (no MANO data involved).

The fixture mimics MANO_RIGHT.pkl: a protocol-2 pickle of a dict whose ``shapedirs`` is a chumpy ``Ch``
object, ``J_regressor`` a scipy sparse matrix, a 16-joint ``kintree_table`` in MANO's joint order and a
mesh open at the wrist. Chumpy is not installed: the pickle refers to ``chumpy.ch.Ch`` through a fake
module that only exists while the fixture is written.
"""
from __future__ import annotations

import dataclasses
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse
import torch

from models.hand import HandAsset, HandModel, load_hand_asset
from models.hand.anatomy import BONE_JOINTS
from models.hand.mano import MANO_JOINT_OF_BONE, MANOLoadError, load_mano_asset, read_mano_pickle
from models.hand.mesh_topology import check_closed_manifold
from models.hand.poses import NUM_POSE_DOFS, named_pose


class _FakeCh:
    """Pickles like chumpy's Ch: class chumpy.ch.Ch with its value in state['x']."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = x
        self._dirty_vars = set()


@pytest.fixture(scope="module")
def mano_pickle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    asset = load_hand_asset()
    v = asset.template_vertices.astype(np.float64)
    f = asset.faces
    cut = int(np.argmin(v[:, 1] + 0.1 * np.abs(v[:, 0]) + 0.1 * np.abs(v[:, 2])))  # centre of the wrist cap
    keep = np.setdiff1d(np.arange(len(v)), [cut])
    remap = -np.ones(len(v), dtype=np.int64)
    remap[keep] = np.arange(len(keep))
    faces = remap[f[~(f == cut).any(axis=1)]].astype(np.uint32)
    ours_to_mano = np.argsort(MANO_JOINT_OF_BONE)  # MANO joint m <- our bone
    weights = asset.skin_weights[keep][:, ours_to_mano].astype(np.float64)
    reg16 = asset.joint_regressor[list(BONE_JOINTS)][:, keep][ours_to_mano].astype(np.float64)
    reg16 /= reg16.sum(axis=1, keepdims=True)
    rng = np.random.default_rng(0)
    kintree = np.array([[4294967295, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14], np.arange(16)], dtype=np.int64)
    data = {
        "v_template": v[keep], "f": faces, "weights": weights, "kintree_table": kintree,
        "J_regressor": scipy.sparse.csc_matrix(reg16), "J": reg16 @ v[keep],
        "shapedirs": _FakeCh(rng.normal(0, 1e-3, (len(keep), 3, 10))),
        "posedirs": rng.normal(0, 1e-3, (len(keep), 3, 135)),
        "hands_components": np.eye(45), "hands_coeffs": np.zeros((10, 45)), "hands_mean": np.zeros(45),
        "bs_style": "lbs", "bs_type": "lrotmin",
    }
    fake_pkg, fake_mod = types.ModuleType("chumpy"), types.ModuleType("chumpy.ch")
    _FakeCh.__module__, _FakeCh.__qualname__, _FakeCh.__name__ = "chumpy.ch", "Ch", "Ch"
    fake_mod.Ch = _FakeCh
    fake_pkg.ch = fake_mod
    path = tmp_path_factory.mktemp("mano") / "MANO_RIGHT.pkl"
    mp = pytest.MonkeyPatch()
    mp.setitem(sys.modules, "chumpy", fake_pkg)
    mp.setitem(sys.modules, "chumpy.ch", fake_mod)
    try:
        with path.open("wb") as fh:
            pickle.dump(data, fh, protocol=2)
    finally:
        mp.undo()
    assert b"chumpy.ch" in path.read_bytes()
    return path


def test_reads_pickle_without_chumpy(mano_pickle: Path) -> None:
    assert "chumpy" not in sys.modules
    data = read_mano_pickle(mano_pickle)
    assert data["shapedirs"].shape[1:] == (3, 10)
    assert data["J_regressor"].shape[0] == 16 and isinstance(data["J_regressor"], np.ndarray)
    assert data["bs_style"] == "lbs"


@pytest.fixture(scope="module")
def mano_asset(mano_pickle: Path) -> HandAsset:
    return load_mano_asset(mano_pickle)


def test_mano_asset_has_the_same_interface(mano_asset: HandAsset) -> None:
    asset = mano_asset
    nv = len(asset.template_vertices)
    assert check_closed_manifold(nv, asset.faces).ok  # wrist hole closed without new vertices
    assert asset.joint_regressor.shape == (21, nv) and np.allclose(asset.joint_regressor.sum(1), 1.0, atol=1e-5)
    assert set(np.unique(asset.regions)) == set(range(6))
    assert asset.level_num_vertices[0] == nv and len(asset.spirals) == 5
    assert all(s.shape == (n, 9) for s, n in zip(asset.spirals, asset.level_num_vertices))
    assert (asset.regions[asset.roi_spirals] == asset.regions[:, None]).all()
    assert asset.pose_dirs is not None and asset.pose_dirs.shape == (nv, 3, 135)
    # Our bone order: bone 1 (thumb CMC) is MANO joint 13, so its weights come from MANO's column 13.
    ours = load_hand_asset()
    assert asset.shape_dirs.shape == (nv, 3, 10)
    assert np.allclose(asset.rest_joints[:4], ours.rest_joints[:4], atol=5e-3)


def test_from_mano_model_poses(mano_pickle: Path, mano_asset: HandAsset) -> None:
    hand = HandModel.from_mano(mano_pickle)
    out = hand(torch.zeros(1, NUM_POSE_DOFS))
    assert torch.allclose(out.vertices[0], hand.template, atol=1e-6)
    pose = torch.from_numpy(named_pose("fist"))[None]
    out = hand(pose, torch.zeros(1, 10))
    assert out.vertices.shape == (1, hand.num_vertices, 3) and out.joints.shape == (1, 21, 3)
    no_pd = HandModel.from_asset(dataclasses.replace(mano_asset, pose_dirs=None))
    assert not torch.allclose(no_pd(pose).vertices, out.vertices, atol=1e-6)  # pose blend shapes act


def test_bad_files_raise_typed_errors(tmp_path: Path) -> None:
    with pytest.raises(MANOLoadError, match="not found"):
        read_mano_pickle(tmp_path / "missing.pkl")
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(pickle.dumps({"v_template": np.zeros((3, 3))}))
    with pytest.raises(MANOLoadError, match="missing"):
        read_mano_pickle(bad)
