"""Launch the hand mesh demo, the headless recorder, the benchmark or the pre-flight doctor.

Run ``python run_demo.py --help`` for the commands. All logic lives in :mod:`app.launcher`.
"""
from __future__ import annotations

import sys

if __name__ == "__main__":
    try:  # Ctrl-C while the heavy libraries import (before the app's own handlers exist): one line, exit 130
        from app.launcher import main

        code = main()
    except KeyboardInterrupt:
        print("interrupted (Ctrl-C)", file=sys.stderr)
        code = 130
    raise SystemExit(code)
