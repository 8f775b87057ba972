"""Latency table of the network + DGP on one device: execution modes x precisions x batch sizes.

    python -m training.gpu_bench --weights weights/realtime_slim.safetensors --device cuda \\
        [--modes eager graphs compile] [--precisions fp32 bf16 fp16] [--batches 1 2 8] [--json out.json]

Modes and precisions are those of :mod:`models.inference_runners` (eager, CUDA graphs, ``torch.compile``;
fp32, bf16/fp16 autocast). Timing: for every cell, ``--warmup`` calls, then ``--runs`` calls each timed
with ``time.perf_counter`` between two ``torch.cuda.synchronize`` (so a figure is the whole call, launch
overhead included, inputs already on the device); p50/p95/mean in milliseconds, and p50 per hand. Inputs
are the first samples of the fixed synthetic test set (real crops, their ``K_virt`` and ground-truth 2D
joints as the external cue, as MediaPipe's landmarks drive the app), rotated over ``--input-sets`` copies
with different crops. Every cell also reports its output drift against fp32 eager on the same inputs
(max |joints_cam difference|, mm), so a fast precision that breaks the DGP solve shows at once.

Cells run batch size by batch size, so with a ``--time-budget-s`` the small batches of every precision
come first; cells left when the budget runs out are listed as skipped. ``--json`` is rewritten after every
cell, so a run killed part-way keeps what it measured.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.config import M3DHMRConfig, get_preset
from models.inference_runners import MODES, PRECISIONS, Runner, RunnerError, example_inputs, make_runner
from models.m3dhmr import M3DHMR


def device_header(device: torch.device) -> dict[str, Any]:
    """What ran the table: device name and capability, library versions, TF32 switches, CPU."""
    info: dict[str, Any] = {
        "device": str(device),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
        "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update({
            "gpu": props.name,
            "gpu_capability": f"{props.major}.{props.minor}",
            "gpu_memory_gib": round(props.total_memory / 2**30, 1),
            "gpu_multiprocessors": props.multi_processor_count,
            "cuda_runtime": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
        })
    else:
        info["torch_threads"] = torch.get_num_threads()
    return info


def _cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_runner(runner: Runner, input_sets: Sequence[tuple[torch.Tensor, ...]], runs: int, warmup: int) -> dict[str, float]:
    """p50/p95/mean/min milliseconds of ``runner`` over ``runs`` synchronised calls after ``warmup`` calls."""
    device = runner.device
    for i in range(warmup):
        runner(input_sets[i % len(input_sets)])
    _sync(device)
    samples = np.empty(runs, np.float64)
    for i in range(runs):
        inputs = input_sets[i % len(input_sets)]
        _sync(device)
        start = time.perf_counter()
        runner(inputs)
        _sync(device)
        samples[i] = time.perf_counter() - start
    ms = samples * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "mean_ms": float(ms.mean()), "min_ms": float(ms.min()), "runs": runs}


def testset_input_sets(config: M3DHMRConfig, batch: int, device: torch.device, sets: int,
                       ensemble: bool = False) -> list[tuple[torch.Tensor, ...]]:
    """``sets`` input tuples (``models.inference_runners.example_inputs`` layout, the app's default cue) from
    the synthetic test set: its crops, ``K_virt``, ``virt_to_cam``, its ground-truth 2D joints as the
    external cue and its wrist-relative joints in the crop's frame as the 3D landmarks."""
    from models.export_onnx import input_names_for
    from training.synth.testset import TEST_SEED, load_synth_testset
    from training.train import collate_samples

    views = load_synth_testset(num_samples=batch * sets, seed=TEST_SEED, crop_size=config.crop_size)
    names = input_names_for(config)
    reps = 3 if ensemble else 1
    out = []
    for i in range(sets):
        vb = collate_samples([(v,) for v in views[i * batch : (i + 1) * batch]])[0]
        named = dict(zip(names, example_inputs(config, batch, "cpu", seed=1000 * i, crops=vb.crops, ensemble=ensemble)))
        joints_virt = torch.einsum("bij,bkj->bki", vb.virt_from_cam, vb.joints_cam)
        named["K_virt"] = vb.k_virt.repeat(reps, 1, 1)
        named["virt_to_cam"] = vb.virt_from_cam.transpose(1, 2).repeat(reps, 1, 1)
        named["joints_2d_external"] = vb.joints_uv.repeat(reps, 1, 1)
        if "landmarks_3d" in named:
            named["landmarks_3d"] = (joints_virt - joints_virt[:, :1]).repeat(reps, 1, 1)
        out.append(tuple(named[name].to(device).contiguous() for name in names))
    return out


def random_input_sets(config: M3DHMRConfig, batch: int, device: torch.device, sets: int,
                      ensemble: bool = False) -> list[tuple[torch.Tensor, ...]]:
    return [example_inputs(config, batch, device, seed=1000 * i, ensemble=ensemble) for i in range(sets)]


def synchronising_calls(runner: Runner, inputs: tuple[torch.Tensor, ...]) -> list[str]:
    """Where one call makes the host wait for the device (``torch.cuda.set_sync_debug_mode``): the Python
    ``file:line`` of each synchronising operation. A call a CUDA graph can capture has none."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            runner(inputs)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return [f"{Path(w.filename).name}:{w.lineno}" for w in caught if "synchroniz" in str(w.message)]


def bench_table(
    model: M3DHMR,
    device: torch.device,
    *,
    modes: Sequence[str] = ("eager", "graphs", "compile"),
    precisions: Sequence[str] = ("fp32", "bf16", "fp16"),
    batches: Sequence[int] = (1, 2, 8),
    runs: int = 100,
    warmup: int = 20,
    input_sets: int = 4,
    deadline: float | None = None,
    compile_backend: str = "inductor",
    use_testset: bool = True,
    on_row: Callable[[list[dict[str, Any]]], None] | None = None,
    ensemble: bool = False,
) -> list[dict[str, Any]]:
    """Measure every (mode, precision, batch) cell; returns one row per cell (``status`` ok/skipped/failed).
    ``batch`` counts hands; ``ensemble``: three rows per hand reading its crop, as the app's default fused
    cue calls the network (``app.pipeline.infer_with_depth_ensemble``).

    ``deadline``: a ``time.perf_counter()`` value after which no new cell starts (they are listed as skipped).
    """
    model = model.to(device).eval()
    rows: list[dict[str, Any]] = []
    for batch in batches:
        make_sets = testset_input_sets if use_testset else random_input_sets
        try:
            sets = make_sets(model.config, batch, device, input_sets, ensemble)
        except (OSError, ValueError, RuntimeError) as err:  # no test set here: time on random crops
            sets = random_input_sets(model.config, batch, device, input_sets, ensemble)
            use_testset = False
            print(f"gpu_bench: test-set inputs unavailable ({err}); timing random crops")
        eager = make_runner(model, "eager", "fp32", sets[0])
        reference = eager(sets[0])["joints_cam"].clone()
        device_vs_cpu_mm = None
        if device.type != "cpu":  # the same call on the CPU: what the device (TF32, kernels) changes
            cpu_inputs = tuple(t.cpu() for t in sets[0])
            cpu_joints = make_runner(copy.deepcopy(model).cpu(), "eager", "fp32", cpu_inputs)(cpu_inputs)["joints_cam"]
            device_vs_cpu_mm = float((reference.cpu() - cpu_joints).abs().max()) * 1e3
        syncs = synchronising_calls(eager, sets[0]) if device.type == "cuda" else None
        for mode in modes:
            for precision in precisions:
                row: dict[str, Any] = {"mode": mode, "precision": precision, "batch": batch, "ensemble": ensemble,
                                       "fp32_device_vs_cpu_mm": device_vs_cpu_mm, "eager_syncs": syncs}
                if deadline is not None and time.perf_counter() >= deadline:
                    row["status"] = "skipped: time budget spent"
                    rows.append(row)
                    continue
                try:
                    runner = make_runner(model, mode, precision, sets[0], compile_backend=compile_backend)
                    joints = runner(sets[0])["joints_cam"]
                    row["drift_vs_fp32_mm"] = float((joints - reference).abs().max()) * 1e3
                    row.update(time_runner(runner, sets, runs, warmup))
                    row["per_hand_p50_ms"] = row["p50_ms"] / batch
                    row["prepare_s"] = round(runner.prepare_s, 2)
                    row["status"] = "ok"
                except RunnerError as err:
                    row["status"] = f"skipped: {err}"
                except Exception as err:  # report any failure of one cell and go on with the others
                    row["status"] = f"failed: {type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}"
                rows.append(row)
                print(format_row(row), flush=True)
                if on_row is not None:
                    on_row(rows)
    return rows


def format_row(row: dict[str, Any]) -> str:
    head = f"{row['mode']:<15}{row['precision']:<6}{'e' if row.get('ensemble') else 'b'}{row['batch']:<3}"
    if row.get("status") != "ok":
        return f"{head} {row.get('status')}"
    return (f"{head} p50 {row['p50_ms']:8.3f} ms  p95 {row['p95_ms']:8.3f} ms  ({row['per_hand_p50_ms']:.3f} ms/hand)"
            f"  drift {row['drift_vs_fp32_mm']:.2f} mm  prepare {row['prepare_s']:.1f} s")


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """Rows = mode x precision x layout (one row per hand, or the depth ensemble's three), columns = hands
    per call, cells "p50 / p95 ms" (or why there is no figure)."""
    batches = sorted({int(r["batch"]) for r in rows})
    keys: list[tuple[str, str, bool]] = []
    for r in rows:
        if (r["mode"], r["precision"], bool(r.get("ensemble"))) not in keys:
            keys.append((r["mode"], r["precision"], bool(r.get("ensemble"))))
    cells = {(r["mode"], r["precision"], bool(r.get("ensemble")), int(r["batch"])): r for r in rows}
    lines = ["| mode | precision | rows per hand | " + " | ".join(f"{b} hand{'s' if b > 1 else ''}: p50 / p95 ms (per hand)" for b in batches)
             + " | drift vs fp32 (mm) |",
             "|---|---|---|" + "---|" * len(batches) + "---|"]
    for mode, precision, ensemble in keys:
        parts, drifts = [], []
        for b in batches:
            r = cells.get((mode, precision, ensemble, b))
            if r is None:
                parts.append("")
            elif r.get("status") == "ok":
                parts.append(f"{r['p50_ms']:.2f} / {r['p95_ms']:.2f} ({r['per_hand_p50_ms']:.2f})")
                drifts.append(r["drift_vs_fp32_mm"])
            else:
                parts.append(str(r.get("status", "")).split(":")[0])
        drift = f"{max(drifts):.2f}" if drifts else ""
        lines.append(f"| {mode} | {precision} | {'3 (depth ensemble)' if ensemble else '1'} | " + " | ".join(parts) + f" | {drift} |")
    syncs = sorted({site for r in rows for site in (r.get("eager_syncs") or [])})
    if any(r.get("eager_syncs") is not None for r in rows):
        lines.append(f"\nsynchronising operations in one eager call: {', '.join(syncs) if syncs else 'none'}")
    cpu = [r["fp32_device_vs_cpu_mm"] for r in rows if r.get("fp32_device_vs_cpu_mm") is not None]
    if cpu:
        lines.append(f"\nfp32 on the device against fp32 on the CPU, same inputs: at most {max(cpu):.3f} mm (joints_cam)")
    return "\n".join(lines)


def _load_model(weights: Path | None, preset: str | None) -> M3DHMR:
    if weights is not None:
        from models.checkpoint import load_checkpoint

        return load_checkpoint(weights)
    torch.manual_seed(0)
    return M3DHMR.from_config(get_preset(preset or "realtime_slim")).eval()


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.gpu_bench", description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--weights", type=Path, default=None, help="checkpoint (models.checkpoint format)")
    source.add_argument("--preset", default=None, help="time an untrained preset instead (default realtime_slim)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--modes", nargs="+", default=["eager", "graphs", "compile"], choices=MODES)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16", "fp16"], choices=list(PRECISIONS))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 2, 8])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--input-sets", type=int, default=4, help="different inputs rotated over the timed calls")
    parser.add_argument("--random-inputs", action="store_true", help="random crops instead of the synthetic test set")
    parser.add_argument("--compile-backend", default="inductor", help="torch.compile backend (eager/aot_eager to test tracing only)")
    parser.add_argument("--time-budget-s", type=float, default=None, help="start no new cell after this many seconds")
    parser.add_argument("--json", type=Path, default=None, help="write header + rows here (rewritten after every cell)")
    parser.add_argument("--ensemble", action="store_true",
                        help="also time the app's default call: three rows per hand (the depth ensemble)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = _parse_args(argv)
    t_start = time.perf_counter()
    deadline = t_start + args.time_budget_s if args.time_budget_s is not None else None
    device = torch.device(args.device)
    model = _load_model(args.weights, args.preset)
    report: dict[str, Any] = {"header": device_header(device), "weights": str(args.weights or f"untrained {args.preset}"),
                              "network": model.config.name if model.config else None, "runs": args.runs,
                              "warmup": args.warmup, "compile_backend": args.compile_backend, "rows": []}

    def write(rows: list[dict[str, Any]]) -> None:
        report["rows"] = rows
        report["seconds"] = round(time.perf_counter() - t_start, 1)
        if args.json is not None:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            tmp = args.json.with_suffix(".tmp")
            tmp.write_text(json.dumps(report, indent=2), encoding="utf-8")
            tmp.replace(args.json)

    print("gpu_bench:", json.dumps(report["header"]), flush=True)
    rows: list[dict[str, Any]] = []
    for ensemble in (False, True) if args.ensemble else (False,):
        done = list(rows)
        rows = done + bench_table(model, device, modes=args.modes, precisions=args.precisions, batches=args.batches,
                                  runs=args.runs, warmup=args.warmup, input_sets=args.input_sets, deadline=deadline,
                                  compile_backend=args.compile_backend, use_testset=not args.random_inputs,
                                  on_row=lambda part, done=done: write(done + part), ensemble=ensemble)
    write(rows)
    print(markdown_table(rows))
    return report


if __name__ == "__main__":
    main()
