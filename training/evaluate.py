"""Evaluate a checkpoint: ``python -m training.evaluate --weights weights/X.safetensors [--freihand DIR]``.

Without ``--freihand`` the fixed synthetic test set (``--samples`` samples of seed ``--seed``) is used;
with it, FreiHAND's evaluation split in the official layout. Metrics are those of
:mod:`training.metrics` (FreiHAND's official definitions plus camera-space errors). Writes
``<out>/<name>.md`` (markdown table) and ``<out>/<name>.json`` and prints the table.

FreiHAND notes: crops come from ``training.freihand.FreiHANDDataset`` (its rectification of the 224x224
evaluation images, with a tight box around the ground-truth 2D joints: an oracle detection, like the
centred crops the published methods are scored on). Vertex metrics need the prediction's mesh topology to match FreiHAND's (MANO, 778
vertices); our network predicts our own hand topology, so only joint metrics are reported there and
the vertex rows read ``n/a``.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.checkpoint import load_checkpoint, read_checkpoint_metadata
from models.paths import REPO_ROOT
from training.metrics import HandMetrics
from training.train import ViewBatch, collate_samples, evaluate_views, synthetic_eval_samples

DEFAULT_TEST_SAMPLES: int = 1000


class EvaluationError(RuntimeError):
    """The evaluation data cannot be read or does not fit the model."""


def _batched(samples: Iterable[tuple[dict[str, np.ndarray], ...]], batch_size: int) -> Iterator[ViewBatch]:
    chunk: list[tuple[dict[str, np.ndarray], ...]] = []
    for s in samples:
        chunk.append(s)
        if len(chunk) == batch_size:
            yield collate_samples(chunk)[0]
            chunk = []
    if chunk:
        yield collate_samples(chunk)[0]


def synthetic_test_batches(num_samples: int, seed: int, crop_size: int, batch_size: int) -> Iterator[ViewBatch]:
    """The fixed synthetic test set, generated on demand, as batches of one view per sample."""
    return _batched(synthetic_eval_samples(num_samples, seed, crop_size), batch_size)


def freihand_eval_batches(root: Path, crop_size: int, batch_size: int, limit: int | None = None) -> Iterator[ViewBatch]:
    """FreiHAND's evaluation split (official layout) through ``training.freihand.FreiHANDDataset``."""
    from training.freihand import FreiHANDDataset

    dataset = FreiHANDDataset(root, split="evaluation", crop_size=crop_size)
    if dataset.xyz is None:
        raise EvaluationError(
            f"{root}/evaluation_xyz.json is missing: FreiHAND's evaluation labels are needed to score "
            "(download the release that includes them, or submit predictions to the official server)"
        )
    count = len(dataset) if limit is None else min(limit, len(dataset))
    return _batched((_as_views(dataset[i]) for i in range(count)), batch_size)


def _as_views(sample: Any) -> tuple[dict[str, np.ndarray], ...]:
    return sample if isinstance(sample, tuple) else (sample,)


def write_report(metrics: HandMetrics, out_dir: Path, name: str, info: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``<name>.md`` and ``<name>.json`` (metrics + ``info``) into ``out_dir``; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md_path, json_path = out_dir / f"{name}.md", out_dir / f"{name}.json"
    lines = [metrics.to_markdown(title=f"{name}"), ""]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    lines.append(
        "- definitions: FreiHAND official (Procrustes with scale per sample; F-score strict <, on aligned "
        "meshes); AUC of PCK over 0-50 mm (100 thresholds, inclusive); camera-space errors without alignment; "
        "root = wrist joint"
    )
    md_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    json_path.write_text(json.dumps({"metrics": metrics.to_dict(), "info": info}, indent=2), encoding="utf-8")
    return md_path, json_path


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--weights", required=True, type=Path, help="safetensors checkpoint (models.checkpoint format)")
    parser.add_argument("--freihand", type=Path, default=None, help="FreiHAND root folder (official layout); default: synthetic test set")
    parser.add_argument(
        "--samples", type=int, default=None, help=f"synthetic test samples (default {DEFAULT_TEST_SAMPLES}) or a FreiHAND limit (default all)"
    )
    parser.add_argument("--seed", type=int, default=None, help="synthetic test-set seed (default training.synth.testset.TEST_SEED)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "runs" / "eval", help="folder for the .md and .json reports")
    parser.add_argument("--name", default=None, help="report file stem (default: <weights stem>_<dataset>)")
    parser.add_argument("--cue", choices=("network", "external"), default="network",
                        help="2D joints for feature sampling and DGP: the network's own, or the ground truth plus "
                             "--cue-noise-px Gaussian noise (what MediaPipe's landmarks give the app)")
    parser.add_argument("--cue-noise-px", type=float, default=3.0, help="noise of the external cue, crop pixels")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> HandMetrics:
    args = _parse_args(argv)
    meta = read_checkpoint_metadata(args.weights)
    model = load_checkpoint(args.weights, device=args.device)
    crop = model.crop_size
    cue_noise = args.cue_noise_px if args.cue == "external" else None
    t0 = time.perf_counter()
    if args.freihand is None:
        from training.synth.testset import TEST_SEED

        seed = TEST_SEED if args.seed is None else args.seed
        samples = DEFAULT_TEST_SAMPLES if args.samples is None else args.samples
        dataset = f"synthetic test set (seed {seed}, {samples} samples)"
        metrics = evaluate_views(model, synthetic_test_batches(samples, seed, crop, args.batch_size), args.device,
                                 external_cue_noise_px=cue_noise)
        tag = "synthetic"
    else:
        dataset = f"FreiHAND evaluation split at {args.freihand}"
        # Vertex metrics need FreiHAND's (MANO) topology; our hand asset has another vertex count.
        metrics = evaluate_views(
            model,
            freihand_eval_batches(args.freihand, crop, args.batch_size, limit=args.samples),
            args.device,
            use_vertices=False,
            external_cue_noise_px=cue_noise,
        )
        tag = "freihand"
    info = {
        "weights": str(args.weights),
        "network": meta.config.name,
        "asset_sha256": meta.asset_sha256,
        "dataset": dataset,
        "cue": "network 2D joints" if cue_noise is None else f"ground-truth 2D joints + {cue_noise} px noise",
        "device": str(args.device),
        "torch": torch.__version__,
        "host": platform.node(),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    name = args.name or f"{args.weights.stem}_{tag}"
    md_path, json_path = write_report(metrics, args.out, name, info)
    print(md_path.read_text(encoding="utf-8"))
    print(f"wrote {md_path} and {json_path}")
    return metrics


if __name__ == "__main__":
    main()
