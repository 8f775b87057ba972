"""``benchmark`` command: times the real pipeline per stage and against MediaPipe alone.

Warm-up, ``perf_counter``, p50/p95 per stage, a hardware and provider header (naming the backend,
device and onnxruntime providers that really ran) and a JSON report. The pipeline is built by
:mod:`app.construction`, the same way the CLI and the GUI build theirs.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from app.construction import (OptionError, backend_report, build_pipeline, default_weights, open_source_option,
                              validate_pipeline_options)
from models.paths import REPO_ROOT

LOG = logging.getLogger("app.benchmark")

DEFAULT_BENCHMARK_JSON: Path = REPO_ROOT / "runs" / "benchmark.json"



def _percentiles(values: Sequence[float]) -> dict[str, float]:
    arr = np.asarray(values, np.float64)
    if arr.size == 0:
        return {"p50": float("nan"), "p95": float("nan"), "mean": float("nan")}
    return {"p50": float(np.percentile(arr, 50)), "p95": float(np.percentile(arr, 95)), "mean": float(arr.mean())}


def hardware_header(backend=None) -> dict[str, Any]:
    """Machine, library versions and the backend's provider/device for benchmark reports."""
    import cv2
    import mediapipe
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "opencv": cv2.__version__,
        "mediapipe": mediapipe.__version__,
        "numpy": np.__version__,
    }
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
        info["onnxruntime_available_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        info["onnxruntime"] = None
    if backend is not None:
        info["backend"] = getattr(backend, "name", type(backend).__name__)
        ran = backend_report(backend)
        info["backend_device"] = ran["device"]
        if "providers" in ran:
            info["backend_providers"] = ran["providers"]
    return info


def _bench_pipeline(pipeline, frames, warmup: int, draw_options) -> dict[str, Any]:
    """Time the real pipeline over cached frames (read time measured separately by the caller)."""
    from app.drawing import draw_annotated

    stage_ms: dict[str, list[float]] = {}
    hands_per_frame: list[int] = []
    t_measure = 0.0
    n_measured = 0
    for i, (frame, read_ms) in enumerate(frames):
        t0 = time.perf_counter()
        result = pipeline.process(frame)
        t1 = time.perf_counter()
        draw_annotated(frame.bgr, result, options=draw_options, fps=None)
        t2 = time.perf_counter()
        if i < warmup:
            continue
        timings = dict(result.timings_ms)
        timings["read"] = read_ms
        timings["draw"] = (t2 - t1) * 1e3
        for stage, ms in timings.items():
            stage_ms.setdefault(stage, []).append(ms)
        stage_ms.setdefault("total", []).append((t2 - t0) * 1e3 + read_ms)
        t_measure += (t2 - t0) + read_ms / 1e3
        n_measured += 1
        hands_per_frame.append(len(result.hands))
    return {
        "frames": n_measured,
        "fps_end_to_end": n_measured / t_measure if t_measure > 0 else float("nan"),
        "hands_per_frame_mean": float(np.mean(hands_per_frame)) if hands_per_frame else 0.0,
        "frames_with_hands": int(np.count_nonzero(hands_per_frame)),
        "stages_ms": {k: _percentiles(v) for k, v in stage_ms.items()},
    }


class _CachedSource:
    """Frames already decoded (so both benchmark passes see identical input)."""

    name = "cached"
    is_live = False

    def __init__(self, frames) -> None:
        self._frames = [frame for frame, _ in frames]
        self._i = 0
        self.fps = 25.0

    def read(self):
        if self._i >= len(self._frames):
            return None
        self._i += 1
        return self._frames[self._i - 1]

    def close(self) -> None:
        self._i = len(self._frames)


def _bench_overlapped(pipeline, frames, warmup: int, draw_options) -> dict[str, Any]:
    """End-to-end throughput with detection/crops of the next frame overlapping the network (two threads)."""
    from app.drawing import draw_annotated

    read_mean_s = float(np.mean([ms for _, ms in frames])) / 1e3  # decoding is not repeated: add its mean
    t_start = None
    n = 0
    for i, (frame, result) in enumerate(pipeline.run_overlapped(_CachedSource(frames))):
        draw_annotated(frame.bgr, result, options=draw_options, fps=None)
        if i + 1 == warmup:
            t_start = time.perf_counter()
        elif i + 1 > warmup:
            n += 1
    elapsed = time.perf_counter() - (t_start if t_start is not None else time.perf_counter())
    elapsed += n * read_mean_s
    return {"frames": n, "fps_end_to_end": n / elapsed if elapsed > 0 else float("nan")}


def _bench_mediapipe(frames, warmup: int, max_hands: int) -> dict[str, Any]:
    """MediaPipe alone (same detector settings, fresh tracking state) on the same frames."""
    from app.detection import HandDetector

    times: list[float] = []
    with HandDetector(max_hands=max_hands) as detector:
        for i, (frame, _) in enumerate(frames):
            t0 = time.perf_counter()
            detector.detect(frame.bgr, frame.t)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    total = float(np.sum(times))
    return {
        "frames": len(times),
        "fps": len(times) / total if total > 0 else float("nan"),
        "detect_ms": _percentiles(np.asarray(times) * 1e3),
    }


def run_benchmark(args: argparse.Namespace) -> int:
    """Run the benchmark described by ``args`` (see :func:`app.cli.add_benchmark_arguments`); returns 0.

    Options and the report path are checked before any frame is read, so a bad value or an unwritable
    folder is refused at once instead of after the whole run.

    Raises:
        OptionError, RecordingError (report path), SourceError, IntrinsicsError, NetworkError: user-fixable.
    """
    from app.drawing import DrawOptions
    from app.pipeline import PipelineOptions

    if args.frames < 1 or args.warmup < 0:
        raise OptionError(f"--frames must be >= 1 and --warmup >= 0, got --frames {args.frames} --warmup {args.warmup}")
    validate_pipeline_options(args)
    report_path = _check_report_path(args.json)
    source = open_source_option(args)
    needed = args.frames + args.warmup
    frames = []
    try:
        while len(frames) < needed:
            t0 = time.perf_counter()
            frame = source.read()
            read_ms = (time.perf_counter() - t0) * 1e3
            if frame is None:
                break
            frames.append((frame, read_ms))
    finally:
        source.close()
    if len(frames) <= args.warmup:
        raise OptionError(f"the source gave {len(frames)} frames; need more than --warmup {args.warmup} "
                          "(use --loop for short clips)")
    if len(frames) < needed:
        LOG.warning("source has %d frames; measuring %d after %d warm-up", len(frames), len(frames) - args.warmup,
                    args.warmup)
    pipeline = build_pipeline(args)
    header = hardware_header(pipeline.backend)
    ran = backend_report(pipeline.backend)
    draw_options = DrawOptions(mesh=args.mesh)
    cues = [args.cue] + ([c for c in ("fused", "mediapipe", "network") if c != args.cue] if args.both_cues else [])
    runs: dict[str, Any] = {}
    try:
        for cue in cues:
            pipeline.set_options(PipelineOptions(**{**_options_dict(pipeline.options), "cue": cue}))
            pipeline.reset()
            runs[cue] = _bench_pipeline(pipeline, frames, args.warmup, draw_options)
        pipeline.set_options(PipelineOptions(**{**_options_dict(pipeline.options), "cue": cues[0]}))
        pipeline.reset()
        overlapped = _bench_overlapped(pipeline, frames, max(args.warmup, 1), draw_options)
    finally:
        pipeline.close()
    mediapipe_alone = _bench_mediapipe(frames, args.warmup, args.max_hands)
    first = runs[cues[0]]
    report = {
        "command": " ".join(sys.argv),
        "hardware": header,
        "source": str(args.source),
        "image_size": [frames[0][0].width, frames[0][0].height],
        "warmup_frames": args.warmup,
        "backend": args.backend,
        "device": ran["device"],
        "device_requested": args.device,
        "backend_ran": ran,
        "weights": str(args.weights) if args.weights else (f"untrained:{args.untrained}" if args.untrained
                                                           else str(default_weights(args.backend))),
        "pipeline": runs,
        "mediapipe_alone": mediapipe_alone,
        "ratio_end_to_end_over_mediapipe": first["fps_end_to_end"] / mediapipe_alone["fps"],
        "overlapped": {**overlapped, "cue": cues[0],
                       "ratio_over_mediapipe": overlapped["fps_end_to_end"] / mediapipe_alone["fps"]},
    }
    _print_benchmark(report, cues)
    try:
        report_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    except OSError as err:  # e.g. the disk filled up during the run: the printed report above is kept
        from app.recording import RecordingError, describe_os_error

        raise RecordingError(f"cannot write the JSON report {report_path}: {describe_os_error(err)} "
                             "(the report was printed above)") from err
    print(f"JSON report: {report_path}")
    return 0


def _check_report_path(path: Path) -> Path:
    """``--json`` must be a writable ``.json`` file; checked before the run so the report is never lost."""
    from app.recording import RecordingError, prepare_output_file

    if Path(path).suffix.lower() != ".json":
        raise RecordingError(f"--json {path}: the benchmark report is a .json file")
    return prepare_output_file(path, what="benchmark report")


def _options_dict(options) -> dict[str, Any]:
    return {f: getattr(options, f) for f in options.__dataclass_fields__}


def _print_benchmark(report: dict[str, Any], cues: list[str]) -> None:
    hw = report["hardware"]
    print(f"# {hw['processor']} x{hw['cpu_count']} | torch {hw['torch']} ({hw['torch_threads']} threads) | "
          f"onnxruntime {hw.get('onnxruntime')} | mediapipe {hw['mediapipe']} | opencv {hw['opencv']}")
    print(f"# backend: {hw.get('backend')} on {hw.get('backend_device')} | CUDA: {hw['cuda']} | source {report['source']} "
          f"{report['image_size'][0]}x{report['image_size'][1]} | weights {report['weights']}")
    for cue in cues:
        run = report["pipeline"][cue]
        print(f"\npipeline (cue: {cue}), {run['frames']} frames, "
              f"{run['hands_per_frame_mean']:.2f} hands/frame")
        print(f"  {'stage':<10}{'p50 ms':>9}{'p95 ms':>9}{'mean ms':>9}")
        for stage in ("read", "detect", "crop", "network", "dgp", "smoothing", "draw", "total"):
            if stage in run["stages_ms"]:
                s = run["stages_ms"][stage]
                print(f"  {stage:<10}{s['p50']:9.2f}{s['p95']:9.2f}{s['mean']:9.2f}")
        print(f"  end-to-end FPS: {run['fps_end_to_end']:.1f}")
    mp_alone = report["mediapipe_alone"]
    print(f"\nMediaPipe alone: {mp_alone['fps']:.1f} FPS (p50 {mp_alone['detect_ms']['p50']:.2f} ms)")
    print(f"ratio end-to-end / MediaPipe alone: {report['ratio_end_to_end_over_mediapipe']:.2f}")
    ov = report["overlapped"]
    print(f"overlapped (detection of frame n+1 during the network of frame n, cue {ov['cue']}): "
          f"{ov['fps_end_to_end']:.1f} FPS end to end, ratio {ov['ratio_over_mediapipe']:.2f}")
