"""Synthetic data throughput on ONE core: `python -m training.synth.benchmark [--n 100] [--crop 128]`.

Prints samples per second (wall clock and per CPU-second of this process, which is the honest figure
on a machine shared with other jobs), for one and two views per sample, and the per-stage split of
full-frame generation. Torch, OpenCV and BLAS are limited to one thread.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from training.synth.dataset import SynthHandDataset  # noqa: E402
from training.synth.scene import SceneGenerator  # noqa: E402


def _measure(fn: Callable[[int], object], n: int) -> tuple[float, float]:
    """(wall samples/s, CPU samples/s) of calling fn(i) for i in range(n)."""
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for i in range(n):
        fn(i)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return n / wall, n / max(cpu, 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="samples per measurement")
    parser.add_argument("--crop", type=int, default=128, help="crop size S")
    parser.add_argument("--json", type=str, default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)

    results: dict[str, float] = {}
    for views in (1, 2):
        dataset = SynthHandDataset(seed=123, crop_size=args.crop, two_views=views == 2)
        dataset[0]  # warm-up (grain texture, caches)
        wall, cpu = _measure(lambda i: dataset[i + 1], args.n)
        results[f"crops_{views}view_samples_per_s_wall"] = wall
        results[f"crops_{views}view_samples_per_s_cpu"] = cpu
        print(f"crops {args.crop}x{args.crop}, {views} view(s)/sample: {wall:7.1f} samples/s wall, {cpu:7.1f} samples/s per CPU-second")

    generator = SceneGenerator()
    frames = max(args.n // 5, 5)
    wall, cpu = _measure(lambda i: generator.generate(i), frames)
    results["full_frames_per_s_wall"] = wall
    results["full_frames_per_s_cpu"] = cpu
    print(f"full frames (640x480 .. 1280x720): {wall:7.1f} frames/s wall, {cpu:7.1f} frames/s per CPU-second")
    rng = np.random.default_rng(0)
    t0 = time.process_time()
    for _ in range(frames):
        generator.sample_spec(rng)
    t1 = time.process_time()
    print(f"  scene sampling (pose, FK, placement): {1e3 * (t1 - t0) / frames:6.1f} ms CPU per frame")
    results["scene_sampling_ms_cpu"] = 1e3 * (t1 - t0) / frames
    print(f"load average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores (wall figures suffer when the machine is busy)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
