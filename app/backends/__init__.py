"""Mesh backends behind one protocol: PyTorch and ONNX Runtime (see base.MeshBackend)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from app.backends.base import RESULT_FIELDS, BackendRequest, BackendResult, MeshBackend


def create_backend(
    kind: Literal["torch", "onnx"], path: Path | str, asset: Any | None = None, device: str = "cpu"
) -> MeshBackend:
    """Open a checkpoint (``torch``: .safetensors) or an exported network (``onnx``: .onnx)."""
    if kind == "torch":
        from app.backends.torch_backend import TorchBackend

        return TorchBackend.from_checkpoint(path, asset=asset, device=device)
    if kind == "onnx":
        from app.backends.onnx_backend import OnnxBackend

        providers = None if device != "cpu" else ["CPUExecutionProvider"]
        return OnnxBackend(path, asset=asset, providers=providers)
    raise ValueError(f"unknown backend kind {kind!r}; use 'torch' or 'onnx'")


__all__ = ["RESULT_FIELDS", "BackendRequest", "BackendResult", "MeshBackend", "create_backend"]
