"""Command-line front door of ``run_demo.py``: parses arguments and dispatches to a command.

    python run_demo.py                         desktop app: first camera, else the bundled sample clip
    python run_demo.py --source FILE|DIR|INDEX same, on a chosen source
    python run_demo.py --source X --no-gui --record out.mp4 [--jsonl out.jsonl]   headless recorder
    python run_demo.py benchmark --source X --frames N --backend torch|onnx --device cpu|cuda
    python run_demo.py calibrate ...           checkerboard calibration -> intrinsics file
    python run_demo.py doctor [--json]         pre-flight checks (also: --doctor)

Options of a subcommand go after its name (argparse lets a subcommand's defaults overwrite
top-level values).
"""
from __future__ import annotations

import argparse
import logging
import os
from typing import Sequence

from app import cli, doctor
from app.ui.app import add_gui_arguments, display_problem, run_gui
from models.paths import REPO_ROOT

HEADLESS_DEMO_DIR = REPO_ROOT / "runs" / "demo"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run_demo.py",
        description="Real-time monocular 3D hand mesh recovery (M3DHMR + HandDGP).",
    )
    parser.add_argument("--doctor", action="store_true", help="same as the `doctor` subcommand")
    cli.add_run_arguments(parser)
    add_gui_arguments(parser)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    doctor_parser = subparsers.add_parser("doctor", help="check that everything the demo needs is present")
    doctor.add_arguments(doctor_parser)
    cli.add_subcommands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command; returns the process exit code."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "doctor":
        return doctor.run(args)
    if args.doctor:
        return doctor.run(parser.parse_args(["doctor"]))
    if args.command in cli.COMMANDS:
        return cli.dispatch(args)
    if args.no_gui:
        return cli.run_headless(args)
    problem = display_problem()
    if problem is not None and not os.environ.get("QT_QPA_PLATFORM"):
        return run_headless_demo(args, problem)
    return run_gui(args)


def run_headless_demo(args: argparse.Namespace, problem: str) -> int:
    """The demo on a machine without a display: run the same pipeline headless and record what the
    window would have shown (annotated mp4 + JSONL under runs/demo/), so the user still sees a result."""
    HEADLESS_DEMO_DIR.mkdir(parents=True, exist_ok=True)
    if args.record is None:
        args.record = HEADLESS_DEMO_DIR / "annotated.mp4"
    if args.jsonl is None:
        args.jsonl = HEADLESS_DEMO_DIR / "hands.jsonl"
    print(f"{problem}\nRunning headless instead: annotated video -> {args.record}, per-frame hands -> {args.jsonl}\n")
    return cli.run_headless(args)
