"""Benchmark FK + LBS of the hand model: ``python -m models.hand.benchmark [--device cpu] [--json]``.

Prints p50/p95 wall time per forward pass (pose + shape + global rotation/translation -> vertices and
joints) for batch sizes 1 and 1024, after warm-up, under ``torch.no_grad``.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import numpy as np
import torch

from models.hand.model import HandModel
from models.hand.poses import sample_poses, sample_shapes


def time_forward(hand: HandModel, batch: int, device: torch.device, repeats: int) -> dict[str, float]:
    """Milliseconds per forward pass: p50, p95 and mean over ``repeats`` runs."""
    rng = np.random.default_rng(0)
    pose = torch.from_numpy(sample_poses(batch, rng)).to(device)
    shape = torch.from_numpy(sample_shapes(batch, rng)).to(device)
    glob = torch.zeros(batch, 3, device=device)
    transl = torch.zeros(batch, 3, device=device)
    times = []
    with torch.no_grad():
        for i in range(repeats + 5):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            hand(pose, shape, glob, transl)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= 5:
                times.append((time.perf_counter() - start) * 1000.0)
    arr = np.asarray(times)
    return {"batch": batch, "p50_ms": float(np.percentile(arr, 50)), "p95_ms": float(np.percentile(arr, 95)),
            "mean_ms": float(arr.mean()), "repeats": repeats}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    hand = HandModel.default().to(device)
    results = [time_forward(hand, b, device, args.repeats if b == 1 else max(5, args.repeats // 5))
               for b in (1, 1024)]
    header = {"torch": torch.__version__, "device": str(device), "threads": torch.get_num_threads(),
              "cpu": platform.processor() or platform.machine(), "vertices": hand.num_vertices}
    if args.json:
        print(json.dumps({"header": header, "results": results}))
        return 0
    print(" ".join(f"{k}={v}" for k, v in header.items()))
    for r in results:
        print(f"FK+LBS batch {r['batch']:5d}: p50 {r['p50_ms']:8.3f} ms  p95 {r['p95_ms']:8.3f} ms "
              f"({r['p50_ms'] / r['batch'] * 1000:.1f} us per hand)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
