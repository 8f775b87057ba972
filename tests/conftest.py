"""Shared pytest set-up: fixtures that several test modules use are registered here as plugins."""
from __future__ import annotations

pytest_plugins = ["tests.gui_support"]
