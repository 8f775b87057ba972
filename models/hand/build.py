"""Generate the procedural hand asset: ``python -m models.hand.build [--out PATH] [--check]``.

Everything is derived from code with a fixed seed (the procedure itself uses no randomness; the seed is
set for safety), so a rebuild is deterministic on one machine: building twice gives the same bytes.
Across machines it is not bit-exact: BLAS kernels and libm differ between processors in the last bits of
floating-point results. What must hold everywhere (:func:`compare_assets`) is therefore: the same arrays
(names, dtypes, shapes), every integer and string array (faces, regions, spirals, sparse indices,
parents, tip ids, version) identical, and every float array within :data:`FLOAT_ATOL`.

``--check`` regenerates the asset in memory twice (the two builds must be byte-identical) and compares it
with the file in that way instead of writing. The identity of the asset stays the *file's* content hash
(``HandAsset.sha256``, which checkpoints and ONNX exports record): a rebuild on another processor may
hash differently, and the shipped file is what weights are paired with.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

from models.hand.anatomy import BONE_PARENTS, TIP_JOINTS, rest_fingers, rest_joints_design
from models.hand.asset import (ASSET_VERSION, DEFAULT_ASSET_PATH, HandAsset, SparseCOO, asset_to_arrays,
                               load_hand_asset, save_hand_asset)
from models.hand.hierarchy import SparseTriplets
from models.hand.poses import POSE_LIMITS, dof_axes
from models.hand.rigging import build_rig
from models.hand.surface import build_rest_surface
from models.hand.topology import build_decoder_topology

NUM_VERTICES: int = 896
SEED: int = 20240603
FLOAT_ATOL: float = 1e-5
"""Largest absolute difference allowed between a float array of two builds of the asset (metres for
positions and shape directions, unitless for weights and axes, radians for limits). Builds on different
processors were seen to differ by ~1e-8; 1e-5 (10 micrometres) is far below anything that matters for the
mesh, and far above rounding noise."""


def _coo(m: SparseTriplets) -> SparseCOO:
    order = np.lexsort((m.cols, m.rows))
    return SparseCOO(np.stack([m.rows[order], m.cols[order]]).astype(np.int64),
                     m.values[order].astype(np.float32), m.shape)


def build_hand_asset() -> HandAsset:
    """Generate the asset in memory (a few seconds)."""
    np.random.seed(SEED)
    vertices, faces = build_rest_surface(NUM_VERTICES)
    # The fingertip joints are surface vertices: pin the vertex nearest to each designed apex onto it.
    design = rest_joints_design()
    for tip in TIP_JOINTS:
        vertices[int(np.argmin(np.linalg.norm(vertices - design[tip], axis=1)))] = design[tip]
    rig = build_rig(vertices, rest_fingers(), design)
    topo = build_decoder_topology(vertices, faces, rig.regions)
    provisional = HandAsset(
        version=ASSET_VERSION, sha256="",
        template_vertices=vertices.astype(np.float32), faces=faces,
        joint_regressor=rig.joint_regressor.astype(np.float32), regions=rig.regions,
        level_num_vertices=topo.level_num_vertices, level_faces=topo.level_faces, spirals=topo.spirals,
        down=tuple(_coo(m) for m in topo.down), up=tuple(_coo(m) for m in topo.up),
        roi_spirals=topo.roi_spirals, skin_weights=rig.skin_weights.astype(np.float32),
        bone_parents=np.asarray(BONE_PARENTS, dtype=np.int64), shape_dirs=rig.shape_dirs.astype(np.float32),
        rest_joints=(rig.joint_regressor.astype(np.float32) @ vertices.astype(np.float32)),
        tip_vertex_ids=rig.tip_vertex_ids, dof_axes=dof_axes(rig.rest_joints).astype(np.float32),
        pose_limits=POSE_LIMITS,
    )
    digest = str(asset_to_arrays(provisional)["sha256"])
    return dataclasses.replace(provisional, sha256=digest)


@dataclasses.dataclass(frozen=True)
class AssetComparison:
    """How a regenerated asset compares with a reference (see :func:`compare_assets`).

    Attributes:
        problems: one line per difference that breaks the contract (empty: the assets agree).
        max_float_diff: largest absolute difference over all float arrays (0.0 when bit-identical).
        identical: the content hashes are equal (every byte of every array agrees).
        atol: the tolerance the float arrays were held to.
    """

    problems: tuple[str, ...]
    max_float_diff: float
    identical: bool
    atol: float

    @property
    def ok(self) -> bool:
        """True when the topology is identical and every float array is within ``atol``."""
        return not self.problems

    def summary(self) -> str:
        """One line: OK/DIFFERENT, and how close the float arrays are."""
        if self.identical:
            return "OK (bit-identical)"
        if self.ok:
            return (f"OK (integer arrays identical, float arrays within {self.max_float_diff:.2e} "
                    f"<= {self.atol:.0e}; hashes differ only by float rounding)")
        return "DIFFERENT: " + "; ".join(self.problems)


def compare_assets(reference: HandAsset, candidate: HandAsset, *, atol: float = FLOAT_ATOL) -> AssetComparison:
    """Compare two assets array by array (the npz layout of :func:`models.hand.asset.asset_to_arrays`).

    Integer, boolean and string arrays must be identical; float arrays must have the same dtype and shape,
    the same non-finite entries, and differ by at most ``atol`` (absolute). The stored hash is not
    compared (it is derived from the arrays).

    Args:
        reference: e.g. the shipped asset.
        candidate: e.g. a fresh :func:`build_hand_asset`.
        atol: absolute tolerance for float arrays.

    Returns:
        An :class:`AssetComparison`.
    """
    ref = asset_to_arrays(reference)
    cand = asset_to_arrays(candidate)
    problems: list[str] = []
    max_diff = 0.0
    for name in sorted(set(ref) | set(cand)):
        if name == "sha256":
            continue
        if name not in cand or name not in ref:
            problems.append(f"{name}: only in the {'reference' if name in ref else 'candidate'}")
            continue
        a, b = ref[name], cand[name]
        if a.dtype != b.dtype or a.shape != b.shape:
            problems.append(f"{name}: {a.dtype}{a.shape} vs {b.dtype}{b.shape}")
            continue
        if a.dtype.kind not in "fc":
            if not np.array_equal(a, b):
                count = int(np.count_nonzero(a != b)) if a.shape else 1
                problems.append(f"{name}: {count} of {max(a.size, 1)} entries differ (must be identical)")
            continue
        finite = np.isfinite(a)
        if not np.array_equal(finite, np.isfinite(b)) or not np.array_equal(a[~finite], b[~finite], equal_nan=True):
            problems.append(f"{name}: non-finite entries differ")
            continue
        if a.size == 0:
            continue
        diff = float(np.max(np.abs(a[finite].astype(np.float64) - b[finite].astype(np.float64)), initial=0.0))
        max_diff = max(max_diff, diff)
        if not diff <= atol:
            problems.append(f"{name}: max abs difference {diff:.3e} > {atol:.0e}")
    return AssetComparison(problems=tuple(problems), max_float_diff=max_diff,
                           identical=str(ref["sha256"]) == str(cand["sha256"]), atol=float(atol))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_ASSET_PATH, help="output npz path")
    parser.add_argument("--check", action="store_true",
                        help="rebuild twice (must be byte-identical) and compare with the existing file: integer "
                             f"arrays identical, float arrays within {FLOAT_ATOL:.0e}; do not write")
    args = parser.parse_args(argv)
    asset = build_hand_asset()
    if args.check:
        existing = load_hand_asset(args.out)
        again = build_hand_asset()
        if again.sha256 != asset.sha256:
            print(f"{args.out}: the build is not deterministic: two rebuilds hash {asset.sha256} and {again.sha256}")
            return 1
        result = compare_assets(existing, asset)
        print(f"{args.out}: stored {existing.sha256}, regenerated {asset.sha256}: {result.summary()}")
        return 0 if result.ok else 1
    digest = save_hand_asset(asset, args.out)
    print(f"wrote {args.out} ({asset.level_num_vertices} vertices per level, {len(asset.faces)} faces), "
          f"sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
