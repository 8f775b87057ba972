"""Mesh backends behind one protocol: PyTorch and ONNX Runtime (see base.MeshBackend)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from app.backends.base import RESULT_FIELDS, BackendRequest, BackendResult, MeshBackend


def create_backend(
    kind: Literal["torch", "onnx"], path: Path | str, asset: Any | None = None, device: str = "cpu"
) -> MeshBackend:
    """Open a checkpoint (``torch``: .safetensors) or an exported network (``onnx``: .onnx).

    Weights listed in a ``manifest.json`` next to them (the shipped ones) are verified against its sha256
    first. ``device="cuda"`` runs on the GPU or fails: the onnx backend never falls back to the CPU quietly.

    Raises:
        models.errors.CheckpointError: wrong suffix for ``kind``, unreadable or foreign file.
        models.weights_manifest.WeightsIntegrityError: the file differs from its manifest (corrupt).
        models.errors.DeviceUnavailableError: ``device="cuda"`` but this backend cannot use a GPU here.
    """
    from models.errors import CheckpointError
    from models.weights_manifest import verify_weights_file

    if kind not in ("torch", "onnx"):
        raise ValueError(f"unknown backend kind {kind!r}; use 'torch' or 'onnx'")
    expected = ".onnx" if kind == "onnx" else ".safetensors"
    if Path(path).suffix.lower() != expected:
        other = "torch" if kind == "onnx" else "onnx"
        raise CheckpointError(
            f"{path} is not a {expected} file: the {kind} backend reads {expected} files "
            f"(use the {other} backend for {Path(path).suffix or 'this'} files)."
        )
    if Path(path).is_file():
        verify_weights_file(path)
    if kind == "torch":
        from app.backends.torch_backend import TorchBackend

        return TorchBackend.from_checkpoint(path, asset=asset, device=device)
    from app.backends.onnx_backend import OnnxBackend, onnx_providers_for

    return OnnxBackend(path, asset=asset, providers=onnx_providers_for(device), require_gpu=device != "cpu")


__all__ = ["RESULT_FIELDS", "BackendRequest", "BackendResult", "MeshBackend", "create_backend"]
