"""Synthetic hand data: renderer, scenes, rectified crop dataset, test set, realism check."""
from __future__ import annotations
