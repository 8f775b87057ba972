"""The shipped asset is exactly what the build code generates (asset and code cannot drift)."""
from __future__ import annotations

import numpy as np
import pytest

from models.hand.asset import load_hand_asset
from models.hand.build import build_hand_asset
from models.hand.decimation import decimate
from models.hand.isosurface import marching_tetrahedra
from models.hand.mesh_topology import check_closed_manifold


@pytest.mark.slow
def test_regenerated_asset_matches_shipped_hash() -> None:
    shipped = load_hand_asset()
    rebuilt = build_hand_asset()
    assert rebuilt.sha256 == shipped.sha256, "run `python -m models.hand.build` and commit the asset"


def _sphere_grid(n: int = 24) -> tuple[np.ndarray, np.ndarray, float]:
    spacing = 2.4 / (n - 1)
    axis = -1.2 + spacing * np.arange(n)
    g = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1)
    return np.linalg.norm(g, axis=-1) - 1.0, np.array([-1.2, -1.2, -1.2]), spacing


def test_marching_tetrahedra_sphere_is_closed_and_accurate() -> None:
    values, origin, spacing = _sphere_grid()
    v, f = marching_tetrahedra(values, origin, spacing)
    assert check_closed_manifold(len(v), f).ok
    assert np.abs(np.linalg.norm(v, axis=1) - 1.0).max() < 0.02
    tri = v[f]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    assert (np.einsum("ij,ij->i", normals, tri.mean(1)) > 0).mean() > 0.99


def test_decimation_keeps_manifold_and_subset() -> None:
    values, origin, spacing = _sphere_grid(16)
    v, f = marching_tetrahedra(values, origin, spacing)
    dec = decimate(v, f, 60)
    assert len(dec.kept) == 60 and np.all(np.diff(dec.kept) > 0)
    assert check_closed_manifold(60, dec.faces).ok
    with pytest.raises(ValueError):
        decimate(v, f, 2)
