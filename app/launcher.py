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
from typing import Sequence

from app import cli, doctor


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run_demo.py",
        description="Real-time monocular 3D hand mesh recovery (M3DHMR + HandDGP).",
    )
    parser.add_argument("--doctor", action="store_true", help="same as the `doctor` subcommand")
    cli.add_run_arguments(parser)
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
    from app.ui.app import run_gui

    return run_gui(args)
