"""Ablation of the real-photo terms of the fused trainer: one short fine-tune per left-out term.

    python -m training.ablate_fused --config training/configs/realtime_fused_cpu_phase3.json \
        --steps 500 --out runs/ablation_fused

Every variant starts from the config's ``warm_start_from`` checkpoint and trains ``--steps`` steps with
the config's recipe minus one term (its weight set to 0), with the same seed and data order. Each is
then measured on the synthetic test hands (fused and network cues, camera-space metrics need the cached
ground truth) and on the held-out real photos (``training.train_fused.evaluate_real_2d``: the network
cue's 2D agreement with MediaPipe, its 3D agreement with MediaPipe's world landmarks and its distance
to the fused-cue mesh). Writes ``ablation.json`` and ``ablation.md`` into ``--out``.

Short runs measure the direction of each term's effect from one starting point, not the converged
value; differences of the order of the run-to-run spread (compare ``all`` with ``start``) are noise.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from training.train_fused import (
    FusedTrainConfig,
    FusedTrainer,
    evaluate_real_2d,
    evaluate_synthetic,
    load_fused_config,
)

VARIANTS: dict[str, dict[str, Any]] = {
    "all": {},
    "- real_pose2d (+ heatmap)": {"loss": {"real_pose2d": 0.0, "real_heatmap": 0.0}},
    "- real_world3d": {"loss": {"real_world3d": 0.0}},
    "- real_reproj": {"loss": {"real_reproj": 0.0}},
    "- real_prior": {"loss": {"real_prior": 0.0}},
    "- real_limits": {"loss": {"real_limits": 0.0}},
    "- real_distill": {"loss": {"real_distill": 0.0}},
    "- real_surface": {"loss": {"real_surface": 0.0}},
    "- two-view (con2d, con3d)": {"loss": {"real_con2d": 0.0, "real_con3d": 0.0}},
    "- spectrum mixing": {"spectrum_mix_prob": 0.0},
    "- real rows": {"real_per_batch": 0},
}
"""Variant name -> changes to the config (``loss`` entries replace single weights)."""

COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("real_2d_mean", "held-out 2D error / diag", ".4f"),
    ("real_pck10", "held-out PCK@0.1", ".3f"),
    ("real_extent_ratio", "held-out extent", ".3f"),
    ("real_world3d_pa_mm", "held-out PA vs MP world (mm)", ".1f"),
    ("real_fused_gap_mm", "held-out gap to fused mesh (mm)", ".1f"),
    ("real_limits_deg", "held-out joint-limit excess (deg)", ".1f"),
    ("network_pa_mpjpe_mm", "synth network PA-MPJPE", ".1f"),
    ("fused_pa_mpjpe_mm", "synth fused PA-MPJPE", ".1f"),
    ("fused_mpjpe_cam_mm", "synth fused cam MPJPE", ".1f"),
)


def variant_config(base: FusedTrainConfig, changes: dict[str, Any], steps: int, out_dir: Path) -> FusedTrainConfig:
    """``base`` with ``changes`` applied, ``steps`` steps, no intermediate evaluation, output in ``out_dir``."""
    changes = dict(changes)
    loss = dataclasses.replace(base.loss, **changes.pop("loss", {}))
    return dataclasses.replace(base, **changes, loss=loss, max_steps=steps, time_budget_s=1e9,
                               eval_every_steps=0, checkpoint_every_steps=0, out_dir=str(out_dir))


def measure(trainer: FusedTrainer) -> dict[str, float]:
    """The columns of :data:`COLUMNS` for the trainer's current model."""
    row: dict[str, float] = {}
    if trainer.test_set is not None:
        for cue in ("fused", "network"):
            metrics = evaluate_synthetic(trainer.model, trainer.test_set, cue)
            row.update({f"{cue}_{k}": float(v) for k, v in metrics.items() if isinstance(v, (int, float))})
    if trainer.real_held_out is not None:
        row.update(evaluate_real_2d(trainer.model, trainer.real_held_out))
    return row


def run_ablation(base: FusedTrainConfig, steps: int, out: Path, variants: dict[str, dict[str, Any]] = VARIANTS,
                 device: str = "cpu") -> dict[str, Any]:
    """Train and measure every variant (plus ``start``: the warm-start checkpoint untrained); returns the report."""
    out.mkdir(parents=True, exist_ok=True)
    rows: dict[str, dict[str, float]] = {}
    start = FusedTrainer(variant_config(base, {}, 0, out / "start"), device, show_progress=False)
    rows["start"] = measure(start)
    for name, changes in variants.items():
        t0 = time.perf_counter()
        slug = "".join(c if c.isalnum() else "_" for c in name).strip("_") or "all"
        trainer = FusedTrainer(variant_config(base, changes, steps, out / slug), device, show_progress=False)
        trainer.fit()
        rows[name] = measure(trainer)
        rows[name]["seconds"] = time.perf_counter() - t0
        print(f"{name}: " + ", ".join(f"{k} {rows[name].get(k, float('nan')):{f}}" for k, _, f in COLUMNS), flush=True)
        report = {"base_config": json.loads(base.to_json()), "steps": steps, "variants": rows}
        (out / "ablation.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
        (out / "ablation.md").write_text(ablation_markdown(report), encoding="utf-8")
    return {"base_config": json.loads(base.to_json()), "steps": steps, "variants": rows}


def ablation_markdown(report: dict[str, Any]) -> str:
    """The report as a markdown table, one row per variant."""
    lines = [f"Ablation: {report['steps']} steps per variant from `{report['base_config']['warm_start_from']}`",
             "", "| variant | " + " | ".join(title for _, title, _ in COLUMNS) + " |",
             "|---|" + "---|" * len(COLUMNS)]
    for name, row in report["variants"].items():
        cells = [format(row[k], f) if k in row else "-" for k, _, f in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m training.ablate_fused", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="the full recipe (a training/configs/*.json of train_fused)")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--only", nargs="+", default=None, choices=sorted(VARIANTS), help="run only these variants")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    base = load_fused_config(args.config)
    variants = {k: v for k, v in VARIANTS.items() if args.only is None or k in args.only}
    report = run_ablation(base, args.steps, args.out, variants, args.device)
    print(ablation_markdown(report))
    return report


if __name__ == "__main__":
    main()
