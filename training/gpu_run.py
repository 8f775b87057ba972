"""One prepared command for a lent GPU: train, evaluate, export and time the network within a wall-clock budget.

    python -m training.gpu_run --out OUT [--preset realtime_slim|paper_r18] [--minutes 8]
    torchrun --nproc_per_node 8 -m training.gpu_run --out OUT          # several GPUs (DDP for the training)
    python -m training.gpu_run --smoke --out /tmp/gpu_smoke            # CPU, tiny sizes, under 2 minutes

Phases, in order (each one's status and seconds land in the report; a failing phase does not stop the
others, a phase that would overrun the budget is skipped):

``device``   what torch sees (GPU name, capability, memory, versions, a bf16 matrix-product rate);
``data``     the synthetic generator (``training.synth``) in all CPU cores through the trainer's own
             DataLoader: samples/s, against the samples/s one training step takes on the device
             (is training data-bound?); the fixed synthetic test set is generated in parallel too;
``train``    ``training.train.Trainer`` on the preset's config with GPU overrides (bf16 autocast, two
             views, all cores feeding, a time budget, a checkpoint every minute that is copied into
             OUT at once, so a run cut short still returns weights); warm start from the shipped
             weights of the same preset when they fit the network;
``eval``     ``training.evaluate`` on the synthetic test set, with the network's own 2D cue and with
             MediaPipe-like external joints; the shipped weights are evaluated the same way for comparison;
``latency``  ``training.gpu_bench``: eager and CUDA graphs, fp32/bf16/fp16, batch 1/2/8, p50/p95;
``clip``     ``app.landmark_cache replay`` (its own process: training does not import app): the live
             pipeline on the real clip with the network on the device and MediaPipe replaced by landmarks
             cached on a CPU machine, so GPU-side stages and the CPU-side detector cost are reported apart;
``export``   ONNX through ``models.export_onnx`` (its own process; skipped when onnx/onnxscript are
             absent) and an onnxruntime parity check;
``compile``  ``training.gpu_bench --modes compile`` in its own process with whatever time is left.

OUT receives at most 8 files, each under 16 MiB and 64 MiB together (what a lent machine returns):
``report.json`` (everything), ``report.md`` (the tables), ``training_curve.png``, the weights
(``<preset>.safetensors`` in float32 when it fits one file, else bfloat16 ``<preset>.partIofN.safetensors``;
``python -m training.ship --checkpoint OUT/<first file>`` joins and ships them), ``<preset>.onnx`` and
``train_log.csv`` when they fit. Everything else (run folder, logs) stays under ``--work``.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime as dt
import importlib.util
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.paths import REPO_ROOT, WEIGHTS_DIR
from training.config import TrainConfig, load_train_config
from training.weight_parts import MIB, layout_file_bytes, write_limited_weights

MAX_OUT_FILES: int = 8
MAX_OUT_FILE_BYTES: int = 16 * MIB
MAX_OUT_TOTAL_BYTES: int = 64 * MIB
WEIGHT_FILE_LIMIT: int = 16_000_000  # under 16 MiB, and under 16 MB should a limit be counted in decimal
REPORT_FILES: tuple[str, ...] = ("report.json", "report.md", "training_curve.png")
REPORT_RESERVE_BYTES: int = 2 * MIB
DEFAULT_LANDMARKS: Path = REPO_ROOT / ".gpu_carry" / "open_palm_640x360.landmarks.jsonl"
PRESET_CONFIGS: dict[str, str] = {"realtime_slim": "training/configs/realtime_cpu.json", "paper_r18": "training/configs/paper_r18.json"}
TINY_MODEL: dict[str, Any] = {"width_mult": 0.25, "feature_channels": 16, "decoder_channels": [8, 8, 8, 16, 16],
                              "num_kernels": 2, "num_stacks": 1, "crop_size": 64, "dgp_hidden": 8}
"""Smoke-mode network: the realtime preset at the smallest widths the config allows, 64 px crops."""


@dataclasses.dataclass(frozen=True)
class Plan:
    """Sizes of one run (full or smoke). Seconds are wall clock; ``reserve_s`` is kept for each later phase."""

    total_s: float
    data_bench_s: float
    probe_steps: int
    final_eval_samples: int
    eval_subset: int
    batch_size: int
    log_every_steps: int
    checkpoint_every_s: float
    min_train_s: float
    latency_modes: tuple[str, ...]
    precisions: tuple[str, ...]
    batches: tuple[int, ...]
    runs: int
    warmup: int
    compile_backend: str
    clip_frames: int | None
    clip_warmup: int
    reserve_s: dict[str, float]


FULL_PLAN = Plan(total_s=480.0, data_bench_s=8.0, probe_steps=12, final_eval_samples=1000, eval_subset=256, batch_size=32,
                 log_every_steps=25, checkpoint_every_s=60.0, min_train_s=30.0, latency_modes=("eager", "graphs"),
                 precisions=("fp32", "bf16", "fp16"), batches=(1, 2, 8), runs=100, warmup=20, compile_backend="inductor",
                 clip_frames=None, clip_warmup=10,
                 reserve_s={"eval": 25, "latency": 45, "clip": 40, "export": 50, "compile": 90, "finish": 10})
SMOKE_PLAN = Plan(total_s=150.0, data_bench_s=2.0, probe_steps=1, final_eval_samples=12, eval_subset=6, batch_size=4,
                  log_every_steps=1, checkpoint_every_s=2.0, min_train_s=3.0, latency_modes=("eager", "graphs"),
                  precisions=("fp32", "bf16"), batches=(1,), runs=3, warmup=1, compile_backend="eager",
                  clip_frames=8, clip_warmup=2,
                  reserve_s={"eval": 6, "latency": 4, "clip": 15, "export": 20, "compile": 20, "finish": 2})
PHASES: tuple[str, ...] = ("device", "data", "train", "eval", "latency", "clip", "export", "compile")


class GpuRunError(RuntimeError):
    """The run cannot start (bad arguments, a non-empty output folder, a preset whose weights cannot fit OUT)."""


# ------------------------------------------------------------------------------------------- output folder


class OutFolder:
    """The folder a lent machine returns: at most ``MAX_OUT_FILES`` files, ``MAX_OUT_FILE_BYTES`` each,
    ``MAX_OUT_TOTAL_BYTES`` together. The report files are always written; others only if they fit."""

    def __init__(self, path: Path, force: bool = False) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        present = [p for p in self.path.iterdir()]
        if present and not force:
            raise GpuRunError(f"--out {self.path} is not empty ({len(present)} entries); use an empty folder or --force")
        for p in present:
            if p.is_file():
                p.unlink()
        self.skipped: list[str] = []

    def files(self) -> list[Path]:
        return sorted(p for p in self.path.iterdir() if p.is_file() and not p.name.endswith(".tmp"))

    def room(self, sizes: list[int], replacing: list[str] = ()) -> str | None:
        """None when files of ``sizes`` bytes fit (after removing ``replacing``), else the reason they do not."""
        keep = [p for p in self.files() if p.name not in replacing]
        reserved = [n for n in REPORT_FILES if not (self.path / n).exists()]
        count = len(keep) + len(reserved) + len(sizes)
        total = sum(p.stat().st_size for p in keep) + REPORT_RESERVE_BYTES + sum(sizes)
        if any(s > MAX_OUT_FILE_BYTES for s in sizes):
            return f"a file of {max(sizes) / MIB:.1f} MiB exceeds the {MAX_OUT_FILE_BYTES / MIB:.0f} MiB per-file limit"
        if count > MAX_OUT_FILES:
            return f"{count} files would exceed the {MAX_OUT_FILES}-file limit"
        if total > MAX_OUT_TOTAL_BYTES:
            return f"{total / MIB:.1f} MiB would exceed the {MAX_OUT_TOTAL_BYTES / MIB:.0f} MiB total"
        return None

    def copy_in(self, source: Path, name: str) -> str | None:
        """Copy ``source`` as ``name`` when it fits; returns None or why it was left out."""
        reason = self.room([source.stat().st_size], replacing=[name])
        if reason is None:
            tmp = self.path / (name + ".tmp")
            shutil.copyfile(source, tmp)
            tmp.replace(self.path / name)
        else:
            self.skipped.append(f"{name}: {reason}")
        return reason

    def listing(self) -> list[dict[str, Any]]:
        return [{"name": p.name, "bytes": p.stat().st_size} for p in self.files()]


# ------------------------------------------------------------------------------------------- report


class Report:
    """``report.json`` + ``report.md`` in OUT, rewritten after every phase and every checkpoint."""

    def __init__(self, out: OutFolder, data: dict[str, Any]) -> None:
        self.out = out
        self.data = data

    def phase(self, name: str, status: str, seconds: float) -> None:
        self.data.setdefault("phases", {})[name] = {"status": status, "seconds": round(seconds, 1)}
        self.save()

    def save(self) -> None:
        self.data["files"] = self.out.listing()
        self.data["files_left_out"] = list(self.out.skipped)
        self.data["elapsed_s"] = round(time.perf_counter() - self.data["_t0"], 1)
        for name, text in (("report.json", json.dumps({k: v for k, v in self.data.items() if not k.startswith("_")},
                                                       indent=2, default=_json_default)),
                           ("report.md", render_markdown(self.data))):
            tmp = self.out.path / (name + ".tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(self.out.path / name)


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def _fmt(value: Any, spec: str = ".2f") -> str:
    return format(value, spec) if isinstance(value, (int, float)) and math.isfinite(value) else "-"


def render_markdown(d: dict[str, Any]) -> str:
    """The human-readable report: device, data rate, training, evaluation, latency, real clip, export, files."""
    lines = [f"# GPU run: {d.get('preset')} ({'smoke, CPU' if d.get('smoke') else 'full'})", "",
             f"- command: `{d.get('command')}`", f"- started {d.get('started_utc')}, elapsed {d.get('elapsed_s')} s of a {d.get('budget_s')} s budget"]
    dev = d.get("device", {})
    if dev:
        lines.append(f"- device: {dev.get('gpu', dev.get('device'))} (capability {dev.get('gpu_capability', '-')}, "
                     f"{dev.get('gpu_memory_gib', '-')} GiB), torch {dev.get('torch')}, CUDA {dev.get('cuda_runtime', '-')}, "
                     f"Python {dev.get('python')}, numpy {dev.get('numpy')}, CPU {dev.get('cpu')} x{dev.get('cpu_count')}, "
                     f"world size {dev.get('world_size', 1)}; bf16 matmul {_fmt(dev.get('bf16_matmul_tflops'), '.0f')} TFLOP/s")
    lines += ["", "## Phases", "", "| phase | status | seconds |", "|---|---|---|"]
    for name, ph in d.get("phases", {}).items():
        lines.append(f"| {name} | {ph['status']} | {ph['seconds']} |")
    data = d.get("data")
    if data:
        lines += ["", "## Data", "",
                  f"- generator, {data.get('workers')} worker processes, {'two views' if data.get('two_views') else 'one view'} per sample: "
                  f"**{_fmt(data.get('samples_per_s'), '.0f')} samples/s** ({_fmt(data.get('samples_per_s_per_worker'), '.1f')} per worker)",
                  f"- one training step on the device alone (fixed batch {data.get('batch_size')}): {_fmt(data.get('device_step_ms'), '.1f')} ms = "
                  f"{_fmt(data.get('device_samples_per_s'), '.0f')} samples/s -> training is "
                  f"{'data-bound' if data.get('data_bound') else 'device-bound'}",
                  f"- test set ({data.get('testset_samples')} samples) generated in {_fmt(data.get('testset_s'), '.1f')} s"]
    tr = d.get("train")
    if tr:
        s = tr.get("summary") or {}
        lines += ["", "## Training", "",
                  f"- config: batch {tr.get('batch_size')}, lr {tr.get('lr')}, amp {tr.get('amp_dtype')}, two views {tr.get('two_views')}, "
                  f"budget {_fmt(tr.get('time_budget_s'), '.0f')} s, warm start: {tr.get('init_from') or 'none (from scratch)'}",
                  f"- {s.get('steps_run', tr.get('step', '-'))} steps, {_fmt(s.get('samples_per_s'), '.0f')} samples/s, "
                  f"loss {_fmt(s.get('first_loss'), '.4f')} -> {_fmt(s.get('last_loss'), '.4f')}, {_fmt(s.get('elapsed_s'), '.0f')} s",
                  f"- weights in OUT: {tr.get('weights_out', {}).get('files')} ({tr.get('weights_out', {}).get('dtype')}, "
                  f"from {tr.get('weights_out', {}).get('source')})"]
    ev = d.get("eval")
    if ev:
        keys = [("pa_mpjpe_mm", "PA-MPJPE mm"), ("pa_mpvpe_mm", "PA-MPVPE mm"), ("f_at_5mm", "F@5"), ("f_at_15mm", "F@15"),
                ("mpjpe_cam_mm", "cam MPJPE mm"), ("root_error_mm", "root mm")]
        lines += ["", f"## Evaluation (synthetic test set, {ev.get('samples')} samples)", "",
                  "| weights | cue | " + " | ".join(k[1] for k in keys) + " |", "|---|---|" + "---|" * len(keys)]
        for who in ("trained", "shipped"):
            for cue in ("network", "external"):
                m = ev.get(who, {}).get(cue)
                if isinstance(m, dict):
                    lines.append(f"| {who} | {cue} | " + " | ".join(_fmt(m.get(k), ".3f" if k.startswith("f_") else ".1f") for k, _ in keys) + " |")
        if ev.get("shipped_note"):
            lines.append(f"\n{ev['shipped_note']}")
    lat = d.get("latency")
    if lat and lat.get("table_md"):
        lines += ["", "## Network + DGP latency (inputs on the device, synchronised)", "", lat["table_md"]]
    clip = d.get("clip")
    if clip and clip.get("text"):
        lines += ["", "## Real clip, live pipeline (MediaPipe replaced by cached landmarks)", "", "```", clip["text"], "```"]
    ex = d.get("export")
    if ex:
        lines += ["", "## ONNX export", "", f"- {ex.get('status')}; {_fmt((ex.get('bytes') or 0) / 1e6, '.1f')} MB; "
                  f"onnxruntime parity {_fmt(ex.get('parity_max_mm'), '.4f')} mm; in OUT: {ex.get('in_out')}"]
    lines += ["", "## Files in OUT", ""] + [f"- {f['name']} ({f['bytes'] / MIB:.2f} MiB)" for f in d.get("files", [])]
    lines += [f"- left out: {x}" for x in d.get("files_left_out", [])]
    if d.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in d["notes"]]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------- training curve


def draw_training_curve(train_log: Path, eval_log: Path, out_png: Path, title: str) -> Path | None:
    """Two panels with OpenCV (no matplotlib): training loss (log scale) and evaluated PA-MPJPE / camera
    MPJPE (mm) against the optimizer step. Returns the path, or None when there is nothing to draw."""
    import cv2

    def read(path: Path) -> list[dict[str, float]]:
        if not path.is_file():
            return []
        with path.open(newline="", encoding="utf-8") as fh:
            rows = []
            for r in csv.DictReader(fh):
                try:
                    rows.append({k: float(v) for k, v in r.items() if v not in (None, "")})
                except ValueError:
                    continue
            return rows

    train, evals = read(train_log), read(eval_log)
    if not train:
        return None
    w, h, pad = 900, 640, 70
    img = np.full((h, w, 3), 255, np.uint8)
    panels = [(40, 320, "training loss (log scale)", [("loss", (200, 80, 0), train)]),
              (360, 620, "synthetic eval subset, mm (log scale)", [("pa_mpjpe_mm", (0, 120, 0), evals), ("mpjpe_cam_mm", (0, 0, 200), evals)])]
    steps_all = [r["step"] for r in train] + [r["step"] for r in evals]
    x0, x1 = min(steps_all), max(max(steps_all), min(steps_all) + 1)
    cv2.putText(img, title, (pad, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    for top, bottom, label, series in panels:
        values = [r[k] for k, _, rows in series for r in rows if k in r and math.isfinite(r[k]) and r[k] > 0]
        cv2.rectangle(img, (pad, top), (w - 20, bottom), (0, 0, 0), 1)
        cv2.putText(img, label, (pad + 5, top + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (60, 60, 60), 1, cv2.LINE_AA)
        if not values:
            continue
        lo, hi = math.log10(min(values)), math.log10(max(values))
        hi = hi if hi > lo else lo + 1.0
        for frac in (0.0, 0.5, 1.0):
            y = int(bottom - frac * (bottom - top - 25))
            value = lo + frac * (hi - lo)
            cv2.putText(img, f"{10 ** value:.3g}", (5, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (60, 60, 60), 1, cv2.LINE_AA)
        for j, (key, colour, rows) in enumerate(series):
            pts = [(int(pad + (r["step"] - x0) / (x1 - x0) * (w - 20 - pad)),
                    int(bottom - (math.log10(r[key]) - lo) / (hi - lo) * (bottom - top - 25)))
                   for r in rows if key in r and math.isfinite(r[key]) and r[key] > 0]
            if len(pts) > 1:
                cv2.polylines(img, [np.array(pts, np.int32)], False, colour, 2, cv2.LINE_AA)
            for p in pts if len(pts) <= 40 else []:
                cv2.circle(img, p, 3, colour, -1, cv2.LINE_AA)
            cv2.putText(img, key, (w - 220, top + 18 + 18 * j), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
    cv2.putText(img, f"step {int(x0)}", (pad, h - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (60, 60, 60), 1, cv2.LINE_AA)
    cv2.putText(img, f"step {int(x1)}", (w - 120, h - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (60, 60, 60), 1, cv2.LINE_AA)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_png.with_name(out_png.name + ".tmp.png")
    cv2.imwrite(str(tmp), img)
    tmp.replace(out_png)
    return out_png


# ------------------------------------------------------------------------------------------- subprocesses


def run_module(args: list[str], timeout_s: float, log_path: Path, threads: int | None = None) -> tuple[str, str]:
    """``python -m <args>`` in the repository root, in its own process group, killed (group and all) after
    ``timeout_s``; ``threads`` sets OMP_NUM_THREADS. Returns (status, last lines of its output); the whole
    output goes to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "GROUP_RANK"):
        env.pop(key, None)  # a child of rank 0 is a single process, not a member of the torchrun job
    with log_path.open("w", encoding="utf-8") as log:
        proc = subprocess.Popen([sys.executable, "-m", *args], cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
        try:
            code = proc.wait(timeout=max(timeout_s, 1.0))
            status = "ok" if code == 0 else f"failed: exit code {code}"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            status = f"timed out after {timeout_s:.0f} s (killed)"
    tail = "\n".join(log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-15:])
    return status, tail


# ------------------------------------------------------------------------------------------- phases


class GpuRun:
    """State of one run; each ``phase_*`` method fills ``self.report.data[name]``."""

    def __init__(self, args: argparse.Namespace) -> None:
        from training.train import choose_device, setup_distributed

        self.args = args
        self.t0 = time.perf_counter()
        if args.smoke:
            # One intra-op thread: on a small shared CPU, OpenMP threads waiting on each other under load made a
            # tiny training step take seconds instead of ~0.1 s (measured on a 2-core machine at load 15).
            torch.set_num_threads(1)
        self.plan = SMOKE_PLAN if args.smoke else FULL_PLAN
        if args.minutes is not None:
            self.plan = dataclasses.replace(self.plan, total_s=60.0 * args.minutes)
        self.dist = setup_distributed()
        self.device = choose_device(self.dist, args.device or ("cpu" if args.smoke else None))
        self.preset = args.preset
        self.work = Path(args.work or REPO_ROOT / "runs" / "gpu_run" / (self.preset + ("_smoke" if args.smoke else ""))).resolve()
        self.main = self.dist.is_main
        self.out: OutFolder | None = None
        self.report: Report | None = None
        if self.main:
            marker = self.work / ".gpu_run_work"
            if self.work.exists() and any(self.work.iterdir()):
                if not marker.is_file():
                    raise GpuRunError(f"--work {self.work} is not empty and was not made by gpu_run; choose another folder")
                shutil.rmtree(self.work)  # a previous run's work folder (it carries the marker)
            self.work.mkdir(parents=True, exist_ok=True)
            marker.write_text("work folder of python -m training.gpu_run; emptied by the next run\n", encoding="utf-8")
            self.out = OutFolder(Path(args.out), force=args.force)
            self.report = Report(self.out, {
                "_t0": self.t0, "command": " ".join([Path(sys.executable).name, "-m", "training.gpu_run", *sys.argv[1:]]),
                "started_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "smoke": args.smoke,
                "preset": self.preset, "budget_s": self.plan.total_s, "work_dir": str(self.work), "notes": []})
        self.cfg = self._train_config()
        self.final_checkpoint: Path | None = Path(args.weights).resolve() if args.weights else None
        """Weights the phases after training use: the run's best (else last) checkpoint, or ``--weights``."""

    def _threads(self) -> int | None:
        """OMP_NUM_THREADS of the child processes: 1 in smoke mode (see ``__init__``), else the default."""
        return 1 if self.args.smoke else None

    # -- budget ---------------------------------------------------------------------------------
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def left(self) -> float:
        return self.plan.total_s - self.elapsed()

    def reserve_after(self, phase: str) -> float:
        later = PHASES[PHASES.index(phase) + 1:]
        return sum(self.plan.reserve_s.get(p, 0.0) for p in later if p not in self.args.skip) + self.plan.reserve_s["finish"]

    def note(self, text: str) -> None:
        print(f"gpu_run: {text}", flush=True)
        if self.report is not None:
            self.report.data["notes"].append(text)

    # -- config ---------------------------------------------------------------------------------
    def _train_config(self) -> TrainConfig:
        args, plan = self.args, self.plan
        path = args.config or PRESET_CONFIGS.get(self.preset, PRESET_CONFIGS["realtime_slim"])
        base = load_train_config(path)
        usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2)
        cores = max(1, usable // self.dist.world_size)
        workers = args.workers if args.workers is not None else (1 if args.smoke else max(1, cores - 1))
        data = dataclasses.replace(base.data, num_workers=workers, two_views=True, samples_per_epoch=10_000_000,
                                   eval_samples=plan.eval_subset, unique_samples=0)
        overrides: dict[str, Any] = dict(model_preset=self.preset, name=f"{self.preset}_gpu", data=data,
                                         batch_size=args.batch_size or plan.batch_size, amp=True, max_steps=None,
                                         log_every_steps=plan.log_every_steps, checkpoint_every_steps=0,
                                         checkpoint_every_s=plan.checkpoint_every_s, out_dir=str(self.work / "run"),
                                         init_from=None, time_budget_s=1.0)
        if args.smoke:
            overrides["model_overrides"] = TINY_MODEL
            overrides["lr_milestones_epochs"] = ()
        return dataclasses.replace(base, **overrides)

    def _init_from(self) -> str | None:
        """The shipped weights of this preset when they load into this network (same config and asset)."""
        choice = self.args.init_from
        if choice == "none" or (choice == "auto" and self.args.smoke):
            return None
        path = WEIGHTS_DIR / f"{self.preset}.safetensors" if choice == "auto" else Path(choice)
        if not path.is_file():
            if choice != "auto":
                raise GpuRunError(f"--init-from {path} does not exist")
            return None
        from models.checkpoint import read_checkpoint_metadata
        from models.errors import NetworkError

        try:
            fits = read_checkpoint_metadata(path).config == self.cfg.model_config()
        except (NetworkError, ValueError) as err:  # e.g. written by another version of the network config
            self.note(f"warm start skipped: {path} unreadable here ({err})")
            return None
        if not fits:
            self.note(f"warm start skipped: {path} was trained with another network config")
            return None
        return str(path.resolve())  # the strict load (names, shapes, asset hash) happens in the Trainer

    # -- phases ---------------------------------------------------------------------------------
    def run_phase(self, name: str, fn: Callable[[], str | None]) -> None:
        if name in self.args.skip:
            if self.report:
                self.report.phase(name, "skipped (--skip)", 0.0)
            return
        t = time.perf_counter()
        try:
            status = fn() or "ok"
        except Exception as err:  # one failing phase must not lose the others' results
            traceback.print_exc()
            status = f"failed: {type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}"
        seconds = time.perf_counter() - t
        print(f"gpu_run: phase {name}: {status} ({seconds:.1f} s, {self.elapsed():.0f} s elapsed)", flush=True)
        if self.report:
            self.report.phase(name, status, seconds)

    def phase_device(self) -> str:
        from training.gpu_bench import device_header

        info = device_header(self.device)
        info.update({"world_size": self.dist.world_size, "cuda_available": torch.cuda.is_available(),
                     "cuda_device_count": torch.cuda.device_count()})
        if self.device.type == "cuda":
            free, total = torch.cuda.mem_get_info(self.device)
            info.update({"gpu_free_gib": round(free / 2**30, 1), "bf16_supported": torch.cuda.is_bf16_supported(),
                         "amp_dtype": "bfloat16" if torch.cuda.is_bf16_supported() else "float16"})
            a = torch.randn(4096, 4096, device=self.device, dtype=torch.bfloat16)
            for _ in range(3):
                a @ a
            torch.cuda.synchronize(self.device)
            t = time.perf_counter()
            for _ in range(20):
                a @ a
            torch.cuda.synchronize(self.device)
            info["bf16_matmul_tflops"] = 20 * 2 * 4096**3 / (time.perf_counter() - t) / 1e12
            if shutil.which("nvidia-smi"):
                q = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                                    "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
                info["nvidia_smi"] = q.stdout.strip()
        else:
            info["amp_dtype"] = "none (autocast is used on CUDA only)"
        for mod in ("onnx", "onnxscript", "onnxruntime", "scipy", "cv2", "mediapipe", "tensorboard"):
            info[f"has_{mod}"] = importlib.util.find_spec(mod) is not None
        self.report.data["device"] = info  # type: ignore[union-attr]
        print("gpu_run: device " + json.dumps(info), flush=True)
        return "ok" if self.device.type == "cuda" or self.args.smoke else "ok (no CUDA: running on CPU)"

    def phase_data(self) -> str:
        from torch.utils.data import DataLoader

        from models.m3dhmr import M3DHMR
        from training.losses import HandMeshLoss
        from training.synth.testset import TEST_SEED, load_synth_testset
        from training.train import DistInfo, RunBatchSampler, build_train_dataset, collate_samples, compute_loss

        cfg, plan = self.cfg, self.plan
        crop = cfg.model_config().crop_size
        workers = cfg.data.num_workers
        dataset = build_train_dataset(cfg.data, crop)
        sampler = RunBatchSampler(start_step=10_000_000, total_steps=20_000_000, global_batch=cfg.batch_size, dist=DistInfo())
        loader = DataLoader(dataset, batch_sampler=sampler, num_workers=workers, collate_fn=collate_samples,
                            prefetch_factor=4 if workers > 0 else None)
        it = iter(loader)
        t_start = time.perf_counter()
        first_views = next(it)
        for _ in range(max(workers - 1, 0)):  # the first batch of every worker includes its start-up
            next(it)
        t = time.perf_counter()
        batches = 0
        while time.perf_counter() - t < plan.data_bench_s or batches < 2:
            next(it)
            batches += 1
        rate = batches * cfg.batch_size / (time.perf_counter() - t)
        del it, loader
        info: dict[str, Any] = {"workers": workers, "two_views": cfg.data.two_views, "batch_size": cfg.batch_size,
                                "crop_size": crop, "samples_per_s": rate, "samples_per_s_per_worker": rate / max(workers, 1),
                                "startup_s": t - t_start, "measured_batches": batches}
        # One training step on the device alone, on a fixed batch: the rate the device could absorb.
        model = M3DHMR.from_config(cfg.model_config()).to(self.device).train()
        loss_fn = HandMeshLoss(faces=torch.as_tensor(model.faces), weights=cfg.loss).to(self.device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-5)
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda *a: None)
        times = []
        warm = 1 if self.args.smoke else 2
        for i in range(plan.probe_steps + warm):
            sync()
            ts = time.perf_counter()
            total, _ = compute_loss(model, loss_fn, first_views, self.device, cfg.amp, cfg.external_cue_prob, cfg.external_cue_noise_px)
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            sync()
            if i >= warm:
                times.append(time.perf_counter() - ts)
        step_s = float(np.median(times))
        info.update({"device_step_ms": step_s * 1e3, "device_samples_per_s": cfg.batch_size / step_s,
                     "data_bound": rate < cfg.batch_size / step_s})
        del model, opt, loss_fn
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        t = time.perf_counter()
        for n in sorted({plan.final_eval_samples, cfg.data.eval_samples}):
            load_synth_testset(num_samples=n, seed=TEST_SEED, crop_size=crop, workers=workers)
        info.update({"testset_samples": plan.final_eval_samples, "testset_s": time.perf_counter() - t})
        self.report.data["data"] = info  # type: ignore[union-attr]
        print(f"gpu_run: data {rate:.0f} samples/s with {workers} workers; one device step {step_s * 1e3:.1f} ms "
              f"({cfg.batch_size / step_s:.0f} samples/s)", flush=True)
        return "ok"

    def phase_train(self) -> str:
        from training.train import Trainer

        plan = self.plan
        train_s = self.args.train_s
        if train_s is None:
            train_s = self.left() - self.reserve_after("train") - (5.0 if self.args.smoke else 15.0)
            if self.args.smoke:
                train_s = min(train_s, 5.0)
        train_s = max(train_s, plan.min_train_s)
        init_from = self._init_from() if self.main else None
        rate = (self.report.data.get("data", {}) if self.report else {}).get("samples_per_s")
        # an evaluation of the subset about every 45 s of training at the measured data rate
        eval_every = 5 if self.args.smoke else max(100, int(45.0 * (rate or 200.0) / self.cfg.batch_size))
        if self.dist.enabled:  # every rank must warm-start from the same file and stop/evaluate at the same steps
            holder = [init_from, eval_every, train_s]
            torch.distributed.broadcast_object_list(holder, src=0)
            init_from, eval_every, train_s = holder
        cfg = dataclasses.replace(self.cfg, time_budget_s=float(train_s), init_from=init_from, eval_every_steps=eval_every)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        trainer = Trainer(cfg, self.dist, self.device, show_progress=False)
        info: dict[str, Any] = {"time_budget_s": train_s, "batch_size": cfg.batch_size, "lr": cfg.lr, "two_views": cfg.data.two_views,
                                "workers": cfg.data.num_workers, "eval_every_steps": eval_every, "init_from": init_from,
                                "amp_dtype": ("bfloat16" if torch.cuda.is_bf16_supported() else "float16") if self.device.type == "cuda" else "none (CPU)",
                                "external_cue_prob": cfg.external_cue_prob, "config": cfg.to_dict(), "checkpoints": 0}
        if self.report is not None:
            self.report.data["train"] = info
        run_dir = cfg.resolved_out_dir()

        def on_save(name: str, path: Path) -> None:
            if name != "last" or self.report is None:
                return
            info["checkpoints"] += 1
            info["step"] = trainer.step
            self.final_checkpoint = path  # should fit() fail later, the phases after it use these weights
            self._weights_to_out(path, f"last checkpoint, step {trainer.step}")
            self._curve(run_dir)
            last = _last_row(run_dir / "train_log.csv")
            print(f"gpu_run: checkpoint at step {trainer.step} ({self.elapsed():.0f} s): loss {last.get('loss', '-')}, "
                  f"{last.get('samples_per_s', '-')} samples/s", flush=True)
            self.report.save()

        trainer.on_save = on_save
        summary = trainer.fit()
        if not self.main:
            return "ok"
        info["summary"] = summary
        best = run_dir / "checkpoints" / "best.safetensors"
        last = run_dir / "checkpoints" / "last.safetensors"
        self.final_checkpoint = best if best.is_file() else last
        source = f"{self.final_checkpoint.stem} checkpoint"
        if best.is_file():
            source += f" (lowest eval-subset PA-MPJPE {trainer.best_pa_mpjpe:.2f} mm)"
        self._weights_to_out(self.final_checkpoint, source)
        self._curve(run_dir)
        return "ok" + (" (stopped by the time budget)" if summary.get("stopped_early") else "")

    def _weights_to_out(self, checkpoint: Path, source: str) -> None:
        assert self.out is not None and self.report is not None
        from safetensors.torch import load_file

        info = self.report.data["train"]
        stem = self.preset
        try:
            sizes = layout_file_bytes(load_file(str(checkpoint)), WEIGHT_FILE_LIMIT)
            old = [p.name for p in self.out.files() if p.name == f"{stem}.safetensors" or p.name.startswith(f"{stem}.part")]
            reason = self.out.room([s + 64 * 1024 for s in sizes], replacing=old)
            if reason is not None:
                info["weights_out"] = {"files": [], "error": reason, "source": source}
                if f"weights: {reason}" not in self.out.skipped:
                    self.out.skipped.append(f"weights: {reason}")
                return
            written = write_limited_weights(checkpoint, self.out.path, stem, max_file_bytes=WEIGHT_FILE_LIMIT)
        except Exception as err:  # called from the trainer's checkpoint hook: never stop the training for it
            info["weights_out"] = {"files": [], "error": f"{type(err).__name__}: {err}"[:300], "source": source}
            print(f"gpu_run: writing the weights into OUT failed: {err}", flush=True)
            return
        info["weights_out"] = {"files": [p.name for p in written.paths], "dtype": written.dtype,
                               "bytes": written.total_bytes, "source": source}

    def _curve(self, run_dir: Path) -> None:
        assert self.out is not None
        title = f"{self.preset} on {self.report.data.get('device', {}).get('gpu', self.device.type)}"  # type: ignore[union-attr]
        draw_training_curve(run_dir / "train_log.csv", run_dir / "eval_log.csv", self.out.path / "training_curve.png", title)

    def phase_eval(self) -> str:
        from training import evaluate

        assert self.final_checkpoint is not None, "no trained checkpoint (the train phase failed or was skipped)"
        n = self.plan.final_eval_samples
        results: dict[str, Any] = {"samples": n, "trained": {}, "shipped": {}}
        self.report.data["eval"] = results  # type: ignore[union-attr]
        targets = [("trained", self.final_checkpoint)]
        shipped = WEIGHTS_DIR / f"{self.preset}.safetensors"
        if not self.args.smoke and shipped.is_file():
            targets.append(("shipped", shipped))
        for who, weights in targets:
            for cue in ("network", "external"):
                try:
                    metrics = evaluate.main(["--weights", str(weights), "--samples", str(n), "--device", str(self.device),
                                             "--out", str(self.work / "eval"), "--name", f"{who}_{cue}", "--cue", cue,
                                             "--batch-size", "64"])
                    results[who][cue] = metrics.to_dict()
                except Exception as err:  # e.g. shipped weights of an older network: noted, not fatal
                    results[who][cue] = f"failed: {type(err).__name__}: {err}"[:300]
        if "shipped" in dict(targets):
            results["shipped_note"] = "shipped = weights/" + shipped.name + " evaluated in the same run, same samples"
        return "ok"

    def phase_latency(self) -> str:
        from models.checkpoint import load_checkpoint
        from training.gpu_bench import bench_table, device_header, markdown_table

        assert self.final_checkpoint is not None, "no trained checkpoint"
        plan = self.plan
        model = load_checkpoint(self.final_checkpoint, device=self.device)
        deadline = time.perf_counter() + max(self.left() - self.reserve_after("latency"), 5.0)
        rows = bench_table(model, self.device, modes=plan.latency_modes, precisions=plan.precisions, batches=plan.batches,
                           runs=plan.runs, warmup=plan.warmup, deadline=deadline)
        if model.config is not None and model.config.fused_cue:  # the app's default call: the depth ensemble
            rows += bench_table(model, self.device, modes=plan.latency_modes, precisions=plan.precisions,
                                batches=[b for b in plan.batches if b <= 2], runs=plan.runs, warmup=plan.warmup,
                                deadline=deadline, ensemble=True)
        lat = {"header": device_header(self.device), "rows": rows, "table_md": markdown_table(rows),
               "timing": f"{plan.warmup} warm-up + {plan.runs} timed calls per cell, perf_counter between torch.cuda.synchronize, inputs on the device"}
        self.report.data["latency"] = lat  # type: ignore[union-attr]
        print(lat["table_md"], flush=True)
        del model
        return "ok"

    def phase_clip(self) -> str:
        assert self.final_checkpoint is not None, "no trained checkpoint"
        cache = Path(self.args.landmarks) if self.args.landmarks else DEFAULT_LANDMARKS
        if not cache.is_file():
            self.report.data["clip"] = {"status": f"no landmark cache at {cache}"}  # type: ignore[union-attr]
            return (f"skipped: no landmark cache at {cache} (make it on a CPU machine with "
                    "`python -m app.landmark_cache record --source CLIP --out .gpu_carry/CLIP.landmarks.jsonl --copy-video`)")
        json_path = self.work / "clip.json"
        cuda = self.device.type == "cuda"
        variants = ["eager:fp32", "eager:bf16", "graphs:fp32", "graphs:bf16"] if cuda else ["eager:fp32"]
        cmd = ["app.landmark_cache", "replay", "--cache", str(cache), "--weights", str(self.final_checkpoint),
               "--device", str(self.device), "--variants", *variants, "--json", str(json_path),
               "--warmup", str(self.plan.clip_warmup)]
        if self.args.video:
            cmd += ["--video", str(self.args.video)]
        if self.plan.clip_frames is not None:
            cmd += ["--frames", str(self.plan.clip_frames)]
        timeout = max(self.left() - self.reserve_after("clip"), 10.0)
        status, tail = run_module(cmd, timeout, self.work / "clip.log", self._threads())
        clip: dict[str, Any] = {"status": status}
        if json_path.is_file():
            clip.update(json.loads(json_path.read_text(encoding="utf-8")))
            clip["text"] = "\n".join(tail.splitlines()[-(len(variants) + 3):])
        else:
            clip["log_tail"] = tail
            print(tail, flush=True)
        self.report.data["clip"] = clip  # type: ignore[union-attr]
        return status

    def phase_export(self) -> str:
        assert self.final_checkpoint is not None, "no trained checkpoint"
        missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
        if missing:
            self.report.data["export"] = {"status": f"skipped: {', '.join(missing)} not installed"}  # type: ignore[union-attr]
            return f"skipped: {', '.join(missing)} not installed here (export on the CPU machine: python -m training.ship)"
        onnx_path = self.work / f"{self.preset}.onnx"
        timeout = max(self.left() - self.reserve_after("export"), 15.0)
        status, tail = run_module(["models.export_onnx", "--checkpoint", str(self.final_checkpoint), "--out", str(onnx_path)],
                                  timeout, self.work / "export.log", self._threads())
        ex: dict[str, Any] = {"status": status}
        self.report.data["export"] = ex  # type: ignore[union-attr]
        if status != "ok" or not onnx_path.is_file():
            ex["log_tail"] = tail
            print(tail, flush=True)
            return status
        ex["bytes"] = onnx_path.stat().st_size
        if importlib.util.find_spec("onnxruntime") is not None:
            from models.checkpoint import load_checkpoint
            from models.export_onnx import check_cue_parity

            parity = check_cue_parity(load_checkpoint(self.final_checkpoint), onnx_path)
            ex["parity_mm"] = {cue: 1e3 * metres for cue, metres in parity.items()}
            ex["parity_max_mm"] = max(ex["parity_mm"].values())
        reason = self.out.copy_in(onnx_path, onnx_path.name)  # type: ignore[union-attr]
        ex["in_out"] = reason is None
        if reason is not None:
            ex["left_out"] = reason
        return "ok"

    def phase_compile(self) -> str:
        from training.gpu_bench import markdown_table

        assert self.final_checkpoint is not None, "no trained checkpoint"
        plan = self.plan
        budget = self.left() - self.plan.reserve_s["finish"]
        if budget < (10.0 if self.args.smoke else 30.0):
            return f"skipped: {max(budget, 0):.0f} s left"
        json_path = self.work / "compile.json"
        modes = ["compile", "compile-graphs"] if (self.args.compile_graphs and self.device.type == "cuda") else ["compile"]
        precisions = list(plan.precisions) if not self.args.smoke else ["fp32"]
        batches = [str(b) for b in (plan.batches if not self.args.smoke else plan.batches[:1])]
        cmd = ["training.gpu_bench", "--weights", str(self.final_checkpoint), "--device", str(self.device),
               "--modes", *modes, "--precisions", *precisions, "--batches", *batches, "--runs", str(plan.runs),
               "--warmup", str(plan.warmup), "--compile-backend", plan.compile_backend,
               "--time-budget-s", str(max(budget - 40.0, 5.0)), "--json", str(json_path)]
        status, tail = run_module(cmd, budget, self.work / "compile.log", self._threads())
        lat = self.report.data.setdefault("latency", {"rows": []})  # type: ignore[union-attr]
        if json_path.is_file():
            rows = json.loads(json_path.read_text(encoding="utf-8"))["rows"]
            lat["rows"] = [r for r in lat.get("rows", []) if not str(r["mode"]).startswith("compile")] + rows
            lat["table_md"] = markdown_table(lat["rows"])
            lat["compile_backend"] = plan.compile_backend
            print(markdown_table(rows), flush=True)
        else:
            print(tail, flush=True)
            lat["compile_log_tail"] = tail
        return status

    def finish(self) -> None:
        assert self.out is not None and self.report is not None
        run_dir = self.cfg.resolved_out_dir()
        log = run_dir / "train_log.csv"
        if log.is_file():
            self.out.copy_in(log, "train_log.csv")
        self.report.data["ship_command"] = self._ship_command()
        self.report.save()

    def _ship_command(self) -> str | None:
        w = (self.report.data.get("train") or {}).get("weights_out", {}).get("files") if self.report else None
        if not w:
            return None
        return f"python -m training.ship --checkpoint OUT/{w[0]} --name {self.preset}"


def _last_row(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return rows[-1] if rows else {}


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    from models.config import PRESETS

    parser = argparse.ArgumentParser(prog="python -m training.gpu_run", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder (empty; what the lent machine returns)")
    parser.add_argument("--preset", default="realtime_slim", choices=sorted(PRESETS), help="network to train (paper_r18: bf16 weight parts)")
    parser.add_argument("--config", default=None, help="training config to start from (default: the preset's in training/configs)")
    parser.add_argument("--minutes", type=float, default=None, help="wall-clock budget of the whole command (default 8; smoke ~1.8)")
    parser.add_argument("--train-s", type=float, default=None, help="training seconds (default: what the budget leaves)")
    parser.add_argument("--batch-size", type=int, default=None, help="global batch (default 32; smoke 4)")
    parser.add_argument("--workers", type=int, default=None, help="data worker processes per GPU (default: cores per GPU - 1)")
    parser.add_argument("--init-from", default="auto", help="'auto' (shipped weights of the preset when they fit), 'none', or a checkpoint")
    parser.add_argument("--landmarks", default=None, help=f"landmark cache for the real-clip phase (default {DEFAULT_LANDMARKS.relative_to(REPO_ROOT)})")
    parser.add_argument("--video", default=None, help="the clip (default: the one the cache names)")
    parser.add_argument("--device", default=None, help="torch device (default cuda:LOCAL_RANK when available; cpu with --smoke)")
    parser.add_argument("--work", default=None, help="work folder (default runs/gpu_run/<preset>; emptied first)")
    parser.add_argument("--skip", nargs="+", default=[], choices=PHASES[1:], help="phases to leave out")
    parser.add_argument("--weights", default=None,
                        help="checkpoint for the phases after training when training is skipped (e.g. --skip data train)")
    parser.add_argument("--compile-graphs", action="store_true", help="also time torch.compile(mode='reduce-overhead')")
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny network and sizes: the whole command in under 2 minutes")
    parser.add_argument("--force", action="store_true", help="empty a non-empty --out first")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run every phase within the budget; returns 0 when training produced weights (or was skipped), else 1."""
    args = _parse_args(argv)
    run = GpuRun(args)
    try:
        if run.main:
            run.run_phase("device", run.phase_device)
            run.run_phase("data", run.phase_data)
        if run.dist.enabled:
            torch.distributed.barrier()
        run.run_phase("train", run.phase_train)
        if not run.main:
            return 0
        for name in PHASES[3:]:
            if run.left() < run.plan.reserve_s["finish"] and name not in args.skip:
                run.report.phase(name, "skipped: budget spent", 0.0)  # type: ignore[union-attr]
                continue
            run.run_phase(name, getattr(run, f"phase_{name}"))
        run.finish()
    finally:
        if run.dist.enabled and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    weights = (run.report.data.get("train") or {}).get("weights_out", {}).get("files")  # type: ignore[union-attr]
    print(f"gpu_run: done in {run.elapsed():.0f} s; OUT {args.out}: " + ", ".join(f["name"] for f in run.out.listing()), flush=True)  # type: ignore[union-attr]
    print(render_markdown(run.report.data), flush=True)  # type: ignore[union-attr]
    return 0 if weights or "train" in args.skip else 1


if __name__ == "__main__":
    raise SystemExit(main())
