"""Command-line commands of the live pipeline: headless run/record, benchmark, calibrate.

Wiring into ``run_demo.py`` (see :mod:`app.launcher`)::

    parser = argparse.ArgumentParser(...)
    cli.add_run_arguments(parser)          # --source, --no-gui, --record, --jsonl, --backend, ...
    sub = parser.add_subparsers(dest="command")
    cli.add_subcommands(sub)               # benchmark, calibrate, record
    args = parser.parse_args(argv)
    if args.command in cli.COMMANDS: return cli.dispatch(args)
    if args.no_gui: return cli.run_headless(args)

``python -m app.cli ...`` runs the same commands without the launcher.
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
from typing import Any, Callable, Sequence

import numpy as np

from models.paths import REPO_ROOT, WEIGHTS_DIR

LOG = logging.getLogger("app.cli")

COMMANDS: tuple[str, ...] = ("benchmark", "calibrate", "record")
DEFAULT_BENCHMARK_JSON: Path = REPO_ROOT / "runs" / "benchmark.json"
UNTRAINED_CACHE_DIR: Path = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "handmesh"


class CliError(RuntimeError):
    """A user-facing problem with the command line (printed without a traceback)."""


# ---------------------------------------------------------------------------------------------
# Arguments


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """``--source`` and camera options (shared by every command)."""
    parser.add_argument("--source", default=None,
                        help="camera index (0), video file, image folder, or 'sample' (default: first camera, "
                             "else the bundled sample clip)")
    parser.add_argument("--width", type=int, default=None, help="requested camera width in pixels")
    parser.add_argument("--height", type=int, default=None, help="requested camera height in pixels")
    parser.add_argument("--fps", type=float, default=None, help="requested camera frame rate")
    parser.add_argument("--loop", action="store_true", help="loop a video file or image folder")


def add_pipeline_arguments(parser: argparse.ArgumentParser) -> None:
    """Backend, intrinsics and pipeline options (shared by the GUI, headless run and benchmark)."""
    parser.add_argument("--backend", choices=("torch", "onnx"), default="onnx",
                        help="inference backend (default: onnx, faster on CPU)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="inference device")
    parser.add_argument("--weights", type=Path, default=None,
                        help="checkpoint (.safetensors for torch) or model (.onnx); default: the shipped weights")
    parser.add_argument("--untrained", metavar="PRESET", default=None,
                        help="use an untrained model of this preset (e.g. realtime_slim): for tests and timing only")
    parser.add_argument("--intrinsics", type=Path, default=None,
                        help="camera intrinsics file (.yaml/.yml/.xml/.json); default: assumed field of view")
    parser.add_argument("--hfov", type=float, default=None, help="assumed horizontal field of view, degrees")
    parser.add_argument("--max-hands", type=int, default=2, help="maximum number of hands per frame")
    parser.add_argument("--cue", choices=("mediapipe", "network"), default="mediapipe",
                        help="2D joints used for feature sampling and DGP")
    parser.add_argument("--smoothing", type=float, default=0.5,
                        help="One Euro smoothing strength in [0, 1] (0 = off)")


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """Recording and drawing options of the headless run."""
    parser.add_argument("--record", type=Path, default=None, help="write the annotated video here (.mp4/.avi)")
    parser.add_argument("--jsonl", type=Path, default=None, help="write per-frame results as JSON Lines here")
    parser.add_argument("--codec", choices=("mp4v", "h264", "mjpg", "xvid"), default="mp4v",
                        help="video codec (h264 only when this OpenCV build has the encoder)")
    parser.add_argument("--vertices", action="store_true", help="include mesh vertices in the JSONL")
    parser.add_argument("--mesh", choices=("shaded", "wireframe", "none"), default="shaded",
                        help="how to draw the projected mesh")
    parser.add_argument("--mirror-view", action="store_true", help="mirror the annotated video (selfie view)")
    parser.add_argument("--frames", type=int, default=None, help="stop after this many frames")
    parser.add_argument("--export-mesh", type=Path, default=None,
                        help="write the meshes of one frame to this .ply/.obj file")
    parser.add_argument("--export-frame", type=int, default=None,
                        help="frame index for --export-mesh (default: the last frame with a hand)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.add_argument("--sequential", action="store_true",
                        help="do not overlap detection of the next frame with the network (one thread)")


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Top-level options of ``run_demo.py`` (GUI and ``--no-gui`` headless mode)."""
    add_source_arguments(parser)
    add_pipeline_arguments(parser)
    parser.add_argument("--no-gui", action="store_true", help="run headless (record and/or print results)")
    add_output_arguments(parser)


def add_benchmark_arguments(parser: argparse.ArgumentParser) -> None:
    add_source_arguments(parser)
    add_pipeline_arguments(parser)
    parser.set_defaults(cue="mediapipe")
    parser.add_argument("--frames", type=int, default=100, help="frames measured (after warm-up)")
    parser.add_argument("--warmup", type=int, default=10, help="frames processed before measuring")
    parser.add_argument("--both-cues", action="store_true",
                        help="also run the pipeline with the other 2D cue and report both")
    parser.add_argument("--json", type=Path, default=DEFAULT_BENCHMARK_JSON, help="where to write the JSON report")
    parser.add_argument("--mesh", choices=("shaded", "wireframe", "none"), default="shaded",
                        help="mesh drawing mode timed in the draw stage")


def add_calibrate_arguments(parser: argparse.ArgumentParser) -> None:
    add_source_arguments(parser)
    parser.add_argument("--pattern", default="9x6", help="inner corners per row x per column (default 9x6)")
    parser.add_argument("--square", type=float, default=0.025, help="square side in metres (default 0.025)")
    parser.add_argument("--out", type=Path, required=True, help="intrinsics file to write (.yaml/.xml/.json)")
    parser.add_argument("--every", type=int, default=5, help="use every n-th frame (default 5)")
    parser.add_argument("--max-views", type=int, default=40, help="stop after this many board views")
    parser.add_argument("--max-frames", type=int, default=3000, help="give up after this many frames")


def add_subcommands(subparsers: Any) -> None:
    """Add ``benchmark``, ``calibrate`` and ``record`` to an ``add_subparsers()`` object."""
    bench = subparsers.add_parser("benchmark", help="time the real pipeline per stage and against MediaPipe alone")
    add_benchmark_arguments(bench)
    calib = subparsers.add_parser("calibrate", help="checkerboard calibration -> intrinsics file")
    add_calibrate_arguments(calib)
    record = subparsers.add_parser("record", help="headless run (same as --no-gui)")
    add_source_arguments(record)
    add_pipeline_arguments(record)
    add_output_arguments(record)


def dispatch(args: argparse.Namespace) -> int:
    """Run the subcommand in ``args.command``; returns the exit code."""
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "benchmark": run_benchmark,
        "calibrate": run_calibrate,
        "record": run_headless,
    }
    return _guarded(handlers[args.command], args)


# ---------------------------------------------------------------------------------------------
# Building blocks


def default_weights(kind: str) -> Path | None:
    """The shipped model for ``kind`` ('onnx' -> ``weights/*.onnx``, 'torch' -> ``weights/*.safetensors``).

    Prefers a file whose name contains "realtime"; None when nothing is shipped.
    """
    suffix = ".onnx" if kind == "onnx" else ".safetensors"
    files = sorted(WEIGHTS_DIR.glob(f"*{suffix}"))
    if not files:
        return None
    preferred = [f for f in files if "realtime" in f.name]
    return (preferred or files)[0]


def untrained_onnx(preset: str) -> Path:
    """Export (once, cached outside the repository) an untrained model of ``preset`` to ONNX."""
    from models.config import get_preset
    from models.export_onnx import export_onnx
    from models.m3dhmr import M3DHMR

    model = M3DHMR.from_config(get_preset(preset))
    path = UNTRAINED_CACHE_DIR / f"untrained_{preset}_{model.asset_sha256[:12]}.onnx"
    if not path.is_file():
        LOG.warning("exporting an untrained %s model to %s (one time, about 30 s)", preset, path)
        noisy = [logging.getLogger(name) for name in ("onnxscript", "onnx_ir", "torch.onnx")]
        levels = [logger.level for logger in noisy]
        for logger in noisy:
            logger.setLevel(logging.WARNING)
        try:
            export_onnx(model, path)
        finally:
            for logger, level in zip(noisy, levels):
                logger.setLevel(level)
    return path


def load_backend(kind: str, device: str, weights: Path | None, untrained: str | None):
    """Create the mesh backend chosen on the command line and log its provider/device."""
    from app.backends import create_backend
    from app.backends.torch_backend import TorchBackend

    if device == "cuda":
        import torch

        if kind == "torch" and not torch.cuda.is_available():
            raise CliError("--device cuda was requested but torch sees no CUDA device; use --device cpu.")
    if untrained is not None:
        LOG.warning("using an UNTRAINED %s model: meshes are meaningless, timings are real", untrained)
        if kind == "torch":
            from models.config import get_preset
            from models.m3dhmr import M3DHMR

            backend = TorchBackend(M3DHMR.from_config(get_preset(untrained)), device=device)
        else:
            backend = create_backend("onnx", untrained_onnx(untrained), device=device)
    else:
        path = weights or default_weights(kind)
        if path is None:
            raise CliError(
                f"No {kind} weights in {WEIGHTS_DIR}: pass --weights FILE, or --untrained realtime_slim to time an "
                "untrained model."
            )
        if not Path(path).is_file():
            raise CliError(f"Weights file not found: {path}")
        backend = create_backend(kind, Path(path), device=device)
    LOG.info("backend: %s", getattr(backend, "name", type(backend).__name__))
    return backend


def build_pipeline(args: argparse.Namespace, backend=None):
    """HandPipeline from parsed arguments (backend built from them unless given)."""
    from app.intrinsics import DEFAULT_HFOV_DEG, load_intrinsics
    from app.pipeline import HandPipeline, PipelineOptions
    from app.smoothing import SmoothingParams

    backend = backend or load_backend(args.backend, args.device, args.weights, args.untrained)
    intrinsics = load_intrinsics(args.intrinsics) if args.intrinsics is not None else None
    options = PipelineOptions(
        max_hands=args.max_hands,
        cue=args.cue,
        smoothing=SmoothingParams.from_strength(args.smoothing),
        hfov_deg=args.hfov if args.hfov is not None else DEFAULT_HFOV_DEG,
    )
    return HandPipeline(backend, intrinsics=intrinsics, options=options)


def _open_source(args: argparse.Namespace):
    from app.sources import open_source

    return open_source(args.source, loop=args.loop, width=args.width, height=args.height, fps=args.fps)


def _guarded(handler: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a command; typed, user-fixable errors print one line instead of a traceback."""
    from app.calibrate import CalibrationError
    from app.detection import DetectorError
    from app.intrinsics import IntrinsicsError
    from app.recording import RecordingError
    from app.sources import SourceError
    from models.errors import NetworkError

    try:
        return handler(args)
    except (CliError, SourceError, IntrinsicsError, RecordingError, CalibrationError, DetectorError,
            NetworkError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


# ---------------------------------------------------------------------------------------------
# Headless run / record


def run_headless(args: argparse.Namespace) -> int:
    """Process a source without a window; optionally record the annotated video and JSONL.

    Ctrl-C (or SIGTERM) stops cleanly: the video is finalised and every JSONL line is complete.
    """
    return _guarded(_run_headless, args)


def _run_headless(args: argparse.Namespace) -> int:
    from app.drawing import DrawOptions, draw_annotated
    from app.recording import GracefulStop, Recorder, export_meshes

    source = _open_source(args)
    pipeline = build_pipeline(args)
    draw_options = DrawOptions(mesh=args.mesh, mirror_view=args.mirror_view)
    recorder = Recorder(args.record, args.jsonl, fps=source.fps, codec=args.codec, include_vertices=args.vertices)
    export_target = None
    depth_track = DepthJitter()
    frames = with_hands = 0
    interrupted = False
    t_start = time.perf_counter()
    fps_ema: float | None = None
    t_prev = t_start
    with GracefulStop() as stop:
        try:
            runner = pipeline.run if args.sequential else pipeline.run_overlapped
            for frame, result in runner(source, max_frames=args.frames):
                t0 = time.perf_counter()
                annotated = (draw_annotated(frame.bgr, result, options=draw_options, fps=fps_ema)
                             if args.record is not None else None)
                result = result.with_timing("draw", (time.perf_counter() - t0) * 1e3)
                recorder.write(result, annotated)
                frames += 1
                with_hands += bool(result.hands)
                depth_track.add(result)
                if result.hands and (args.export_frame is None or result.index == args.export_frame):
                    export_target = result
                now = time.perf_counter()
                inst = 1.0 / max(now - t_prev, 1e-6)
                fps_ema = inst if fps_ema is None else 0.9 * fps_ema + 0.1 * inst
                t_prev = now
                if not args.quiet and (frames % 25 == 0 or frames == 1):
                    hands = ", ".join(f"{h.handedness} {h.distance_m:.2f} m" for h in result.hands) or "no hand"
                    print(f"frame {result.index}: {hands}; {fps_ema:.1f} FPS", flush=True)
                if stop.requested:
                    interrupted = True
                    break
        except KeyboardInterrupt:
            interrupted = True
        finally:
            recorder.close()
            pipeline.close()
            source.close()
    elapsed = time.perf_counter() - t_start
    if args.export_mesh is not None:
        if export_target is None:
            print("warning: no frame with a hand to export", file=sys.stderr)
        else:
            export_meshes(export_target, args.export_mesh)
            print(f"meshes of frame {export_target.index} written to {args.export_mesh}")
    print(
        f"{'interrupted after' if interrupted else 'processed'} {frames} frames in {elapsed:.1f} s "
        f"({frames / max(elapsed, 1e-9):.1f} FPS); hands in {with_hands} frames"
        + (f"; video: {args.record}" if args.record else "")
        + (f"; jsonl: {args.jsonl}" if args.jsonl else "")
    )
    summary = depth_track.summary()
    if summary:
        print("depth per hand: " + "; ".join(
            f"#{tid} median {s['median_m']:.3f} m, range {s['min_m']:.3f}-{s['max_m']:.3f} m, "
            f"frame-to-frame jitter {s['jitter_mm']:.1f} mm (median |dz|)" for tid, s in summary.items()))
    return 130 if interrupted else 0


class DepthJitter:
    """Collects each track's wrist depth over consecutive frames to report range and jitter."""

    def __init__(self) -> None:
        self._series: dict[int, list[tuple[int, float]]] = {}

    def add(self, result) -> None:
        for hand in result.hands:
            self._series.setdefault(hand.track_id, []).append((result.index, hand.depth_m))

    def summary(self) -> dict[int, dict[str, float]]:
        """Per track: median/min/max depth (m) and the median |dz| between consecutive frames (mm)."""
        out: dict[int, dict[str, float]] = {}
        for tid, series in self._series.items():
            idx = np.array([i for i, _ in series])
            z = np.array([d for _, d in series])
            consecutive = np.diff(idx) == 1
            dz = np.abs(np.diff(z))[consecutive]
            out[tid] = {
                "frames": float(len(z)),
                "median_m": float(np.median(z)),
                "min_m": float(z.min()),
                "max_m": float(z.max()),
                "jitter_mm": float(np.median(dz) * 1e3) if dz.size else float("nan"),
            }
        return out


# ---------------------------------------------------------------------------------------------
# Benchmark


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
        for attr in ("providers", "provider", "device"):
            if hasattr(backend, attr):
                value = getattr(backend, attr)
                info[f"backend_{attr}"] = value if isinstance(value, (str, list, tuple)) else str(value)
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
    return _guarded(_run_benchmark, args)


def _run_benchmark(args: argparse.Namespace) -> int:
    from app.drawing import DrawOptions
    from app.pipeline import PipelineOptions

    if args.frames < 1 or args.warmup < 0:
        raise CliError("--frames must be >= 1 and --warmup >= 0")
    source = _open_source(args)
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
        raise CliError(f"the source gave {len(frames)} frames; need more than --warmup {args.warmup} "
                       "(use --loop for short clips)")
    if len(frames) < needed:
        LOG.warning("source has %d frames; measuring %d after %d warm-up", len(frames), len(frames) - args.warmup,
                    args.warmup)
    pipeline = build_pipeline(args)
    header = hardware_header(pipeline.backend)
    draw_options = DrawOptions(mesh=args.mesh)
    cues = [args.cue] + ([c for c in ("mediapipe", "network") if c != args.cue] if args.both_cues else [])
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
        "device": args.device,
        "weights": str(args.weights) if args.weights else (f"untrained:{args.untrained}" if args.untrained
                                                           else str(default_weights(args.backend))),
        "pipeline": runs,
        "mediapipe_alone": mediapipe_alone,
        "ratio_end_to_end_over_mediapipe": first["fps_end_to_end"] / mediapipe_alone["fps"],
        "overlapped": {**overlapped, "cue": cues[0],
                       "ratio_over_mediapipe": overlapped["fps_end_to_end"] / mediapipe_alone["fps"]},
    }
    _print_benchmark(report, cues)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"JSON report: {args.json}")
    return 0


def _options_dict(options) -> dict[str, Any]:
    return {f: getattr(options, f) for f in options.__dataclass_fields__}


def _print_benchmark(report: dict[str, Any], cues: list[str]) -> None:
    hw = report["hardware"]
    print(f"# {hw['processor']} x{hw['cpu_count']} | torch {hw['torch']} ({hw['torch_threads']} threads) | "
          f"onnxruntime {hw.get('onnxruntime')} | mediapipe {hw['mediapipe']} | opencv {hw['opencv']}")
    print(f"# backend: {hw.get('backend')} | CUDA: {hw['cuda']} | source {report['source']} "
          f"{report['image_size'][0]}x{report['image_size'][1]} | weights {report['weights']}")
    for cue in cues:
        run = report["pipeline"][cue]
        print(f"\npipeline (2D cue: {cue}), {run['frames']} frames, "
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


# ---------------------------------------------------------------------------------------------
# Calibrate


def run_calibrate(args: argparse.Namespace) -> int:
    return _guarded(_run_calibrate, args)


def _run_calibrate(args: argparse.Namespace) -> int:
    from app.calibrate import calibrate_source, parse_pattern

    try:
        pattern = parse_pattern(args.pattern)
    except ValueError as err:
        raise CliError(str(err)) from err
    source = _open_source(args)
    try:
        result = calibrate_source(source, pattern, args.square, args.out, every=args.every,
                                  max_views=args.max_views, max_frames=args.max_frames)
    finally:
        source.close()
    K = result.intrinsics.K
    print(f"calibrated from {result.views_used} of {result.views_seen} frames examined; RMS reprojection error "
          f"{result.rms_px:.3f} px")
    print(f"fx={K[0, 0]:.1f} fy={K[1, 1]:.1f} cx={K[0, 2]:.1f} cy={K[1, 2]:.1f} "
          f"dist={np.round(result.intrinsics.dist, 4).tolist()} size={result.intrinsics.size}")
    print(f"written to {args.out}")
    return 0


# ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """Standalone parser: ``python -m app.cli {record,benchmark,calibrate} ...``."""
    parser = argparse.ArgumentParser(prog="python -m app.cli", description="Headless hand mesh pipeline tools.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_subcommands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    return dispatch(args)


if __name__ == "__main__":
    raise SystemExit(main())
