"""Synthetic data, FreiHAND loader, losses, trainer, metrics and evaluation."""
