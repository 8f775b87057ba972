"""Command-line front door of ``run_demo.py``: parses arguments and dispatches to a subcommand.

Subcommands:
    doctor      pre-flight checks (see :mod:`app.doctor`)

With no subcommand the desktop demo is launched; until the desktop app exists this runs the doctor
and says so.
"""
from __future__ import annotations

import argparse
from typing import Sequence

from app import doctor


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run_demo.py",
        description="Real-time monocular 3D hand mesh recovery (M3DHMR + HandDGP).",
    )
    parser.add_argument("--doctor", action="store_true", help="same as the `doctor` subcommand")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    doctor_parser = subparsers.add_parser("doctor", help="check that everything the demo needs is present")
    doctor.add_arguments(doctor_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "doctor":
        return doctor.run(args)
    if args.doctor:
        return doctor.run(doctor_parser_defaults(parser))
    print("The desktop app is not built yet; running the pre-flight doctor instead.\n")
    return doctor.run(doctor_parser_defaults(parser))


def doctor_parser_defaults(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The doctor's default options (used when it runs without its own subcommand arguments)."""
    return parser.parse_args(["doctor"])
