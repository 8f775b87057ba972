"""Generate the procedural hand asset: ``python -m models.hand.build [--out PATH] [--check]``.

Everything is derived from code with a fixed seed (the procedure itself uses no randomness; the seed is
set for safety), so the content hash is reproducible: ``--check`` regenerates in memory and compares the
hash with the file instead of writing.
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_ASSET_PATH, help="output npz path")
    parser.add_argument("--check", action="store_true", help="compare with the existing file, do not write")
    args = parser.parse_args(argv)
    asset = build_hand_asset()
    if args.check:
        existing = load_hand_asset(args.out)
        same = existing.sha256 == asset.sha256
        print(f"{args.out}: stored {existing.sha256}, regenerated {asset.sha256}: {'OK' if same else 'DIFFERENT'}")
        return 0 if same else 1
    digest = save_hand_asset(asset, args.out)
    print(f"wrote {args.out} ({asset.level_num_vertices} vertices per level, {len(asset.faces)} faces), "
          f"sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
