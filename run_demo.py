"""Launch the hand mesh demo, the headless recorder, the benchmark or the pre-flight doctor.

Run ``python run_demo.py --help`` for the commands. All logic lives in :mod:`app.launcher`.
"""
from __future__ import annotations

from app.launcher import main

if __name__ == "__main__":
    raise SystemExit(main())
