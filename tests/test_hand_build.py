"""The shipped asset is what the build code generates (asset and code cannot drift), on any machine.

What holds everywhere: identical topology (every integer array: faces, regions, spirals, sparse
indices, parents, tip ids), float arrays within ``FLOAT_ATOL``, and a deterministic rebuild on one
machine (two builds, even in processes with different hash seeds, give the same bytes). A rebuild's hash
may differ from the shipped file's on another processor (BLAS/libm round differently); the shipped
file's hash stays the identity that the shipped weights record.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.hand.asset import DEFAULT_ASSET_PATH, HandAsset, load_hand_asset
from models.hand.build import FLOAT_ATOL, build_hand_asset, compare_assets
from models.hand.decimation import decimate
from models.hand.isosurface import marching_tetrahedra
from models.hand.mesh_topology import check_closed_manifold

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def rebuilt() -> HandAsset:
    """The asset regenerated in this process (a few seconds)."""
    return build_hand_asset()


@pytest.mark.slow
def test_regenerated_asset_matches_the_shipped_one(rebuilt: HandAsset) -> None:
    shipped = load_hand_asset()
    comparison = compare_assets(shipped, rebuilt)
    assert comparison.ok, (f"{comparison.summary()}: run `python -m models.hand.build` and commit the asset "
                           "(and retrain/re-export the weights, which record its hash)")
    assert FLOAT_ATOL == 1e-5 and comparison.max_float_diff <= FLOAT_ATOL
    # Topology, explicitly: every integer array is bit-identical.
    for name in ("faces", "regions", "roi_spirals", "bone_parents", "tip_vertex_ids"):
        assert np.array_equal(getattr(shipped, name), getattr(rebuilt, name)), name
    for level in range(len(shipped.level_num_vertices)):
        assert np.array_equal(shipped.spirals[level], rebuilt.spirals[level])
        assert np.array_equal(shipped.level_faces[level], rebuilt.level_faces[level])
    for a, b in zip(shipped.down + shipped.up, rebuilt.down + rebuilt.up):
        assert a.shape == b.shape and np.array_equal(a.indices, b.indices)


@pytest.mark.slow
def test_rebuild_is_deterministic_and_the_check_command_agrees(rebuilt: HandAsset) -> None:
    """``python -m models.hand.build --check`` builds twice in a fresh process (another hash seed, so
    set/dict ordering cannot leak into the asset), and must produce the bytes this process built."""
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    proc = subprocess.run([sys.executable, "-m", "models.hand.build", "--check"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK" in proc.stdout and "not deterministic" not in proc.stdout
    regenerated = re.search(r"regenerated ([0-9a-f]{64})", proc.stdout)
    assert regenerated is not None, proc.stdout
    assert regenerated.group(1) == rebuilt.sha256, "two builds on one machine gave different bytes"


def test_check_command_fails_on_a_topology_change_or_a_nondeterministic_build(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from models.hand import build
    from models.hand.asset import save_hand_asset

    shipped = load_hand_asset()
    regions = shipped.regions.copy()
    regions[10] = (regions[10] + 1) % 6
    tampered = tmp_path / "tampered.npz"
    save_hand_asset(dataclasses.replace(shipped, regions=regions), tampered)
    monkeypatch.setattr(build, "build_hand_asset", lambda: shipped)
    assert build.main(["--check", "--out", str(DEFAULT_ASSET_PATH)]) == 0
    assert "OK (bit-identical)" in capsys.readouterr().out
    assert build.main(["--check", "--out", str(tampered)]) == 1
    assert "DIFFERENT: regions: 1 of" in capsys.readouterr().out

    builds = iter([shipped, dataclasses.replace(shipped, sha256="0" * 64)])
    monkeypatch.setattr(build, "build_hand_asset", lambda: next(builds))
    assert build.main(["--check", "--out", str(DEFAULT_ASSET_PATH)]) == 1
    assert "not deterministic" in capsys.readouterr().out


def test_shipped_weights_are_tied_to_the_shipped_asset_file() -> None:
    """The asset's identity is the shipped file's content hash, whatever a local rebuild hashes to."""
    manifest = json.loads((REPO_ROOT / "weights" / "manifest.json").read_text())
    assert manifest["asset_sha256"] == load_hand_asset(DEFAULT_ASSET_PATH).sha256


def test_asset_comparison_holds_topology_exactly_and_floats_to_the_tolerance() -> None:
    shipped = load_hand_asset()
    assert compare_assets(shipped, shipped).identical and compare_assets(shipped, shipped).max_float_diff == 0.0

    nudged = shipped.template_vertices + np.float32(0.5 * FLOAT_ATOL)
    close = compare_assets(shipped, dataclasses.replace(shipped, template_vertices=nudged))
    assert close.ok and not close.identical and 0.0 < close.max_float_diff <= FLOAT_ATOL

    moved = shipped.shape_dirs.copy()
    moved[3, 1, 0] += 3 * FLOAT_ATOL
    far = compare_assets(shipped, dataclasses.replace(shipped, shape_dirs=moved))
    assert not far.ok and any(p.startswith("shape_dirs") for p in far.problems)

    faces = shipped.faces.copy()
    faces[0, [1, 2]] = faces[0, [2, 1]]  # one flipped triangle: a topology change, however small
    assert [p.split(":")[0] for p in compare_assets(shipped, dataclasses.replace(shipped, faces=faces)).problems] \
        == ["faces"]

    spirals = list(shipped.spirals)
    spirals[2] = spirals[2][:, :-1]
    assert not compare_assets(shipped, dataclasses.replace(shipped, spirals=tuple(spirals))).ok

    nan = shipped.dof_axes.copy()
    nan[0, 0] = np.nan
    assert not compare_assets(shipped, dataclasses.replace(shipped, dof_axes=nan)).ok


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
