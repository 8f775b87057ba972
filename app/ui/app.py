"""Entry point of the desktop app: ``run_gui(args)`` builds the QApplication, the worker, the 3D
renderer and the window, and runs the event loop.

Wiring into the launcher (``args`` come from a parser with :func:`app.cli.add_run_arguments` and
:func:`add_gui_arguments`)::

    from app.ui.app import run_gui      # import lazily: only app/ui imports PyQt6
    return run_gui(args)

``--benchmark-gui SECONDS`` runs the window for that long on the source and prints the processing
FPS the window itself displayed (the app's own readout), then exits.
"""
from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Sequence

from models.paths import REPO_ROOT

LOG = logging.getLogger(__name__)

DEFAULT_OUTPUT_DIR: Path = REPO_ROOT / "runs" / "gui"
"""Where recordings, screenshots and mesh exports go unless ``--output-dir`` says otherwise."""


def add_gui_arguments(parser: argparse.ArgumentParser) -> None:
    """Options only the desktop app uses (add them next to :func:`app.cli.add_run_arguments`)."""
    parser.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT_DIR,
                        help=f"folder for recordings, screenshots and mesh exports (default: {DEFAULT_OUTPUT_DIR})")
    parser.add_argument("--benchmark-gui", type=float, default=None, metavar="SECONDS",
                        help="run the window this many seconds, print the app's own FPS readout, then exit")
    parser.add_argument("--gui-screenshot", type=Path, default=None, metavar="PNG",
                        help="with --benchmark-gui: save a screenshot of the window here at the end")
    parser.add_argument("--window-size", default="1480x700", metavar="WxH", help="initial window size")
    parser.add_argument("--renderer", choices=("process", "thread"), default="process",
                        help="run Open3D in a child process (default; its renders do not hold this process's GIL) "
                             "or on a thread of the app")


def display_problem() -> str | None:
    """Why no window can open on this Linux session (None when one can)."""
    if not sys.platform.startswith("linux"):
        return None
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return None
    return (
        "No display: DISPLAY and WAYLAND_DISPLAY are unset. Run the app in a desktop session, or under a "
        "virtual display: `xvfb-run -s '-screen 0 1920x1080x24' python run_demo.py`, or run headless with "
        "`python run_demo.py --no-gui --record out.mp4`."
    )


def make_pipeline_factory(args: argparse.Namespace):
    """A :data:`app.ui.worker.PipelineFactory` building :class:`app.pipeline.HandPipeline` from ``args``
    for the backend/device the window asks for (weights: ``--weights`` when it suits the backend, else
    the shipped ones; ``--untrained PRESET`` for an untrained model).

    The intrinsics file is read here, at once: a missing or invalid file raises
    :class:`app.intrinsics.IntrinsicsError` before the window opens."""
    from app.construction import build_pipeline, load_backend, load_intrinsics_option, weights_for_backend
    from app.pipeline import HandPipeline
    from app.ui.worker import EngineSettings

    intrinsics = load_intrinsics_option(getattr(args, "intrinsics", None))

    def factory(settings: EngineSettings) -> HandPipeline:
        weights = weights_for_backend(getattr(args, "weights", None), settings.backend)
        backend = load_backend(settings.backend, settings.device, weights, getattr(args, "untrained", None))
        return build_pipeline(args, backend, options=settings.options, intrinsics=intrinsics)

    return factory


def initial_settings(args: argparse.Namespace):
    """:class:`EngineSettings` from the command line (backend, device, max hands, cue, smoothing, mirror)."""
    from dataclasses import replace

    from app.construction import pipeline_options
    from app.drawing import DrawOptions
    from app.ui.worker import EngineSettings

    options = pipeline_options(args)
    draw = replace(DrawOptions(), mirror_view=bool(getattr(args, "mirror_view", False)), stats=False)
    mesh = getattr(args, "mesh", None)
    if mesh in ("shaded", "wireframe", "none"):
        draw = replace(draw, mesh=mesh)
    return EngineSettings(
        backend=str(getattr(args, "backend", "onnx")), device=str(getattr(args, "device", "cpu")), options=options, draw=draw
    )


def _parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError as err:
        raise ValueError(f"--window-size must look like 1480x700, got {text!r}") from err
    if width < 1 or height < 1:
        raise ValueError(f"--window-size must be positive, like 1480x700, got {text!r}")
    return width, height


def run_gui(args: argparse.Namespace) -> int:
    """Open the desktop app with the options in ``args``; returns the exit code.

    Ctrl-C (SIGINT) and SIGTERM close the window like its close button (the worker stops, a recording
    is finalised) and the exit code is 130 / 0 (see :mod:`app.ui.signals`), also while a model loads.
    """
    from app.ui.signals import QuitOnSignal

    quitter = QuitOnSignal().install()
    try:
        code = _run_gui(args, quitter)
    finally:
        quitter.restore()
    return quitter.exit_code(code)


def _run_gui(args: argparse.Namespace, quitter) -> int:
    problem = display_problem()
    if problem is not None and not os.environ.get("QT_QPA_PLATFORM"):
        print(f"error: {problem}", file=sys.stderr)
        return 2
    # Bad options and a missing or invalid intrinsics file are refused in one line, before any window opens.
    from app.construction import OptionError, validate_pipeline_options
    from app.intrinsics import IntrinsicsError

    try:
        validate_pipeline_options(args)
        _parse_size(getattr(args, "window_size", "1480x700"))
        factory = make_pipeline_factory(args)
        settings = initial_settings(args)
    except (OptionError, IntrinsicsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    # One llvmpipe thread leaves the second core of small CPU-only machines to the pipeline; no effect on GPUs.
    os.environ.setdefault("LP_NUM_THREADS", "1")

    from PyQt6.QtCore import QTimer
    from PyQt6.QtWidgets import QApplication

    from app.ui.main_window import MainWindow
    from app.ui.renderer3d import Open3DLegacyRenderer, Open3DProcessRenderer
    from app.ui.worker import LiveWorker

    app = QApplication.instance() or QApplication(sys.argv[:1])
    worker = LiveWorker(factory, settings)
    source = getattr(args, "source", None)
    window = MainWindow(
        worker,
        Open3DLegacyRenderer() if getattr(args, "renderer", "process") == "thread" else Open3DProcessRenderer(),
        output_dir=Path(getattr(args, "output_dir", DEFAULT_OUTPUT_DIR)),
        source=source if source is not None else "default",
        smoothing_strength=float(getattr(args, "smoothing", 0.5)),
    )
    window.resize(*_parse_size(getattr(args, "window_size", "1480x700")))
    quitter.attach(window.close)  # SIGINT/SIGTERM: close from the event loop (a signal before now too)
    window.show()
    seconds = getattr(args, "benchmark_gui", None)
    started = time.perf_counter()
    if seconds is not None:
        def finish() -> None:
            shot = getattr(args, "gui_screenshot", None)
            if shot is not None:
                Path(shot).parent.mkdir(parents=True, exist_ok=True)
                window.grab().save(str(shot))
            print(format_benchmark(window, started, float(seconds)), flush=True)
            window.close()

        QTimer.singleShot(int(float(seconds) * 1000), finish)
    code = app.exec()
    if worker.running:  # a thread still busy (a model loading) after the stop timeout: do not wait for it
        LOG.warning("exiting while a worker thread is still busy")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(quitter.exit_code(int(code)))
    return int(code)


def format_benchmark(window, started: float, seconds: float) -> str:
    """The GUI benchmark report: the processing FPS the window displayed (after a warm-up of a
    quarter of the run, at most 5 s), frames displayed per second, 3D renders per second."""
    warmup = min(5.0, seconds / 4.0)
    readouts = [fps for t, fps in window.fps_readouts if t - started >= warmup]
    elapsed = max(time.perf_counter() - started, 1e-9)
    last = window.last_frame
    lines = [
        f"GUI benchmark: {seconds:.0f} s on {last.source_name if last else '-'}",
        f"  backend: {last.result.backend if last else '-'}",
        f"  processing FPS shown by the window (after {warmup:.1f} s warm-up): "
        + (f"median {statistics.median(readouts):.1f}, min {min(readouts):.1f}, max {max(readouts):.1f}, "
           f"last {readouts[-1]:.1f} ({len(readouts)} readouts)" if readouts else "no frame processed"),
        f"  capture FPS (last readout): {last.capture_fps:.1f}" if last else "  capture FPS: -",
        f"  frames displayed: {window.frames_displayed} ({window.frames_displayed / elapsed:.1f}/s over {elapsed:.1f} s)",
        f"  3D frames rendered: {window.view3d.frames_rendered} ({window.view3d.frames_rendered / elapsed:.1f}/s)",
    ]
    if last is not None:
        stages = " ".join(f"{k} {v:.1f}" for k, v in last.result.timings_ms.items())
        lines.append(f"  last frame stage ms: {stages}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m app.ui.app [run options]``: the desktop app without the launcher."""
    from app import cli

    parser = argparse.ArgumentParser(prog="python -m app.ui.app", description="Desktop hand mesh demo.")
    cli.add_run_arguments(parser)
    add_gui_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run_gui(args)


if __name__ == "__main__":
    raise SystemExit(main())
