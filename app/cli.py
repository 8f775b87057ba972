"""Command-line commands of the live pipeline: argument parsing and dispatch of headless run/record,
benchmark and calibrate.

Backend and pipeline construction live in :mod:`app.construction` (shared with the GUI and the
benchmark), the benchmark in :mod:`app.benchmark_cli`; output files are checked before a run starts
(:func:`app.recording.prepare_output_file`).

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
import logging
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from app.benchmark_cli import DEFAULT_BENCHMARK_JSON, run_benchmark as _run_benchmark
from app.construction import (UNTRAINED_CACHE_DIR, OptionError, build_pipeline, default_weights, load_backend,
                              open_source_option, untrained_onnx, validate_pipeline_options)

LOG = logging.getLogger("app.cli")

COMMANDS: tuple[str, ...] = ("benchmark", "calibrate", "record")
MESH_SUFFIXES: tuple[str, ...] = (".ply", ".obj")

CliError = OptionError
"""A user-facing problem with the command line (printed without a traceback); alias of ``OptionError``."""

# Re-exported for callers that built pipelines through the CLI module before app.construction existed.
__all__ = ["COMMANDS", "CliError", "DEFAULT_BENCHMARK_JSON", "UNTRAINED_CACHE_DIR", "add_run_arguments",
           "add_subcommands", "build_pipeline", "default_weights", "dispatch", "load_backend", "main",
           "run_benchmark", "run_calibrate", "run_headless", "untrained_onnx"]


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
    parser.add_argument("--cue", choices=("fused", "mediapipe", "network"), default="fused",
                        help="what the network gets from MediaPipe: fused = its 2D and 3D landmarks (default), "
                             "mediapipe = its 2D landmarks only, network = nothing (image only)")
    parser.add_argument("--hand-length-cm", type=float, default=None, metavar="CM",
                        help="your hand length, wrist crease to the tip of the middle finger (adults: about "
                             "17-20 cm); fixes the mesh's size and so its distance (default: estimated)")
    parser.add_argument("--no-depth-ensemble", dest="depth_ensemble", action="store_false",
                        help="fused cue: use the fused run's own DGP depth instead of the mean of the three cues' "
                             "wrist depths (one network row per hand instead of three; faster, less accurate)")
    parser.add_argument("--smoothing", type=float, default=0.5,
                        help="One Euro smoothing strength in [0, 1] (0 = off)")


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """Recording and drawing options of the headless run."""
    parser.add_argument("--record", type=Path, default=None, help="write the annotated video here (.mp4/.avi)")
    parser.add_argument("--jsonl", type=Path, default=None, help="write per-frame results as JSON Lines here")
    parser.add_argument("--codec", choices=("h264", "mjpg"), default="h264",
                        help="h264: H.264 in fragmented .mp4, plays everywhere, survives a crash up to its last "
                             "0.5 s (default); mjpg: Motion-JPEG in .avi, every frame a key frame (larger)")
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
    parser.add_argument("--frames", type=int, default=100, help="frames measured (after warm-up)")
    parser.add_argument("--warmup", type=int, default=10, help="frames processed before measuring")
    parser.add_argument("--both-cues", action="store_true",
                        help="also run the pipeline with the other cues and report all")
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
# Error handling


def _guarded(handler: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a command; typed, user-fixable errors print one line instead of a traceback (exit 2).

    Ctrl-C before the processing loop (while a model loads, say) prints one line and exits 130.
    """
    from app.calibrate import CalibrationError
    from app.detection import DetectorError
    from app.intrinsics import IntrinsicsError
    from app.recording import RecordingError
    from app.sources import SourceError
    from models.errors import NetworkError

    try:
        return handler(args)
    except (OptionError, SourceError, IntrinsicsError, RecordingError, CalibrationError,
            DetectorError, NetworkError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted (Ctrl-C)", file=sys.stderr)
        return 130


def run_benchmark(args: argparse.Namespace) -> int:
    """``benchmark`` command (see :mod:`app.benchmark_cli`) with one-line errors."""
    return _guarded(_run_benchmark, args)


# ---------------------------------------------------------------------------------------------
# Headless run / record


def run_headless(args: argparse.Namespace) -> int:
    """Process a source without a window; optionally record the annotated video and JSONL.

    Ctrl-C (or SIGTERM) stops cleanly: the video is finalised and every JSONL line is complete.
    """
    return _guarded(_run_headless, args)


def check_headless_arguments(args: argparse.Namespace) -> None:
    """Refuse bad values and unwritable outputs of the headless run before any source or model opens.

    Raises:
        OptionError: ``--frames`` < 1, ``--export-frame`` < 0 or without ``--export-mesh``, out-of-range
            pipeline options, or two outputs naming the same file.
        RecordingError: ``--record`` / ``--jsonl`` / ``--export-mesh`` with a wrong suffix or codec, or in
            a folder that cannot be written.
    """
    from app.recording import check_codec, prepare_output_file

    if args.frames is not None and args.frames < 1:
        raise OptionError(f"--frames must be at least 1, got {args.frames} (omit it to process the whole source)")
    if args.export_frame is not None and args.export_frame < 0:
        raise OptionError(f"--export-frame must be a frame index >= 0, got {args.export_frame}")
    if args.export_frame is not None and args.export_mesh is None:
        raise OptionError("--export-frame needs --export-mesh FILE.ply|FILE.obj")
    validate_pipeline_options(args)
    outputs = [p for p in (args.record, args.jsonl, args.export_mesh) if p is not None]
    named = [Path(p).expanduser().resolve() for p in outputs]
    if len(set(named)) < len(named):
        raise OptionError("--record, --jsonl and --export-mesh must name different files")
    if args.record is not None:
        args.record = prepare_output_file(args.record, what="video", suffix=check_codec(args.codec))
    if args.jsonl is not None:
        args.jsonl = prepare_output_file(args.jsonl, what="JSONL")
    if args.export_mesh is not None:
        args.export_mesh = check_mesh_path(args.export_mesh)


def check_mesh_path(path: Path) -> Path:
    """``--export-mesh`` must be a writable ``.ply`` or ``.obj`` file (checked before the run)."""
    from app.recording import RecordingError, prepare_output_file

    if Path(path).suffix.lower() not in MESH_SUFFIXES:
        found = f"suffix {Path(path).suffix!r}" if Path(path).suffix else "no suffix"
        raise RecordingError(f"--export-mesh {path} has {found}; mesh export writes {' or '.join(MESH_SUFFIXES)} files "
                             f"(e.g. {Path(path).with_suffix('.ply').name})")
    return prepare_output_file(path, what="mesh")


def _run_headless(args: argparse.Namespace) -> int:
    from app.drawing import DrawOptions, draw_annotated
    from app.recording import GracefulStop, Recorder, export_meshes

    check_headless_arguments(args)
    source = open_source_option(args)
    try:
        pipeline = build_pipeline(args)
    except BaseException:
        source.close()
        raise
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
            try:
                export_meshes(export_target, args.export_mesh)
            except OSError as err:  # checked before the run; the disk may have filled up since
                from app.recording import RecordingError, describe_os_error

                raise RecordingError(f"cannot write the mesh file {args.export_mesh}: {describe_os_error(err)}") from err
            print(f"meshes of frame {export_target.index} written to {args.export_mesh}")
    print(
        f"{'interrupted after' if interrupted else 'processed'} {frames} frames in {elapsed:.1f} s "
        f"({frames / max(elapsed, 1e-9):.1f} FPS); hands in {with_hands} frames"
        + (f"; video: {args.record}" if args.record else "")
        + (f"; jsonl: {args.jsonl}" if args.jsonl else "")
    )
    if pipeline.hands_dropped:
        print(f"warning: {pipeline.hands_dropped} hand(s) dropped because the network output was non-finite or "
              "impossible (corrupt weights?): run `python run_demo.py doctor`", file=sys.stderr)
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
# Calibrate


def run_calibrate(args: argparse.Namespace) -> int:
    return _guarded(_run_calibrate, args)


def _run_calibrate(args: argparse.Namespace) -> int:
    from app.calibrate import calibrate_source, parse_pattern

    try:
        pattern = parse_pattern(args.pattern)
    except ValueError as err:
        raise CliError(str(err)) from err
    if not args.square > 0:
        raise OptionError(f"--square must be the checkerboard square side in metres (> 0), got {args.square}")
    for name in ("every", "max_views", "max_frames"):
        if getattr(args, name) < 1:
            raise OptionError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    from app.recording import RecordingError, prepare_output_file

    if args.out.suffix.lower() not in (".yaml", ".yml", ".xml", ".json"):
        raise RecordingError(f"--out {args.out}: intrinsics files are .yaml, .yml, .xml or .json")
    args.out = prepare_output_file(args.out, what="intrinsics")
    source = open_source_option(args)
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
