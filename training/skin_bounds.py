"""Build ``assets/skin_thickness_bounds.json``: per vertex, how far our hand model ever moves the skin's
distance to the skeleton from the rest template's (``models.skin_thickness``), plus a margin.

    python -m training.skin_bounds [--poses 20000] [--seed 0] [--margin-mm 2] [--out PATH]

Poses and shapes come from the synthetic generator's own samplers (``models.hand.poses.sample_poses``,
``sample_shapes``), posed with the hand model (linear blend skinning), so the bounds describe every hand
the training data can show. ``models.skin_thickness.ThicknessClamp`` reads them. Deterministic for a seed.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

from models.hand.asset import DEFAULT_ASSET_PATH, load_hand_asset
from models.hand.model import HandModel
from models.hand.poses import sample_poses, sample_shapes
from models.skin_thickness import BOUNDS_PATH, SkinThickness


def largest_deviation(num_poses: int, seed: int, batch: int = 2000) -> np.ndarray:
    """``(V,)`` float64 metres: per vertex, the largest |distance to the skeleton - the template's| over
    ``num_poses`` sampled poses and shapes (at the template's hand length)."""
    asset = load_hand_asset()
    hand = HandModel.from_asset(asset)
    measure = SkinThickness.from_asset(asset)
    rng = np.random.default_rng(seed)
    worst = np.zeros(len(np.asarray(asset.template_vertices)))
    done = 0
    with torch.no_grad():
        while done < num_poses:
            n = min(batch, num_poses - done)
            pose = torch.from_numpy(sample_poses(n, rng)).float()
            shape = torch.from_numpy(sample_shapes(n, rng)).float()
            deviation = measure.deviation_any_size(hand(pose, shape).vertices)
            worst = np.maximum(worst, deviation.amax(dim=0).double().numpy())
            done += n
    return worst


def build_bounds(num_poses: int = 20_000, seed: int = 0, margin_mm: float = 2.0) -> dict[str, object]:
    """The JSON document of the bounds (``bounds_m`` per vertex, metres, and how they were made)."""
    if num_poses < 1 or margin_mm < 0:
        raise ValueError("skin_bounds: --poses must be >= 1 and --margin-mm >= 0")
    worst = largest_deviation(num_poses, seed)
    asset_bytes = DEFAULT_ASSET_PATH.read_bytes()
    return {
        "bounds_m": [round(float(b), 6) for b in worst + margin_mm / 1000.0],
        "poses": num_poses, "seed": seed, "margin_mm": margin_mm,
        "asset_sha256": hashlib.sha256(asset_bytes).hexdigest(),
        "definition": "per vertex: the largest |distance to the skeleton - the rest template's| over the sampled "
                      "poses and shapes, at the template's hand length, plus the margin (models.skin_thickness)",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.skin_bounds", description=__doc__.split("\n")[0])
    parser.add_argument("--poses", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--margin-mm", type=float, default=2.0)
    parser.add_argument("--out", type=Path, default=BOUNDS_PATH)
    args = parser.parse_args(argv)
    try:
        document = build_bounds(args.poses, args.seed, args.margin_mm)
        args.out.write_text(json.dumps(document) + "\n", encoding="utf-8")
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    bounds = np.asarray(document["bounds_m"]) * 1000.0
    print(f"wrote {args.out}: {bounds.size} bounds, median {np.median(bounds):.1f} mm, max {bounds.max():.1f} mm")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
