"""Absolute locations of the repository's data folders (never CWD-relative)."""
from __future__ import annotations

from pathlib import Path

REPO_ROOT: Path = Path(__file__).resolve().parents[1]
ASSETS_DIR: Path = REPO_ROOT / "assets"
WEIGHTS_DIR: Path = REPO_ROOT / "weights"
SHARED_REAL_DIR: Path = REPO_ROOT.parent / "shared" / "real"
