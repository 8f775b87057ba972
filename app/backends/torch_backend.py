"""PyTorch backend: runs :class:`models.m3dhmr.M3DHMR` in eval mode under ``torch.inference_mode``.

Execution modes (``models.inference_runners``): ``eager`` (one kernel launch per op; the CPU default) and
``graphs`` (each input shape captured once into a CUDA graph and replayed; the CUDA default, because this
small network's eager call is bound by kernel launches). A frame's call has one of a few shapes (hands in
view, three rows per hand under the depth ensemble), so each is captured on first use. A capture that
fails (an op a graph cannot hold) switches the backend to ``eager`` for good, with the reason in
``fallback_reason``, instead of failing the frame.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.backends.base import BackendRequest, BackendResult
from models.checkpoint import load_checkpoint
from models.config import M3DHMRConfig
from models.export_onnx import input_names_for
from models.inference_runners import MODES, PRECISIONS, Runner, RunnerError, example_inputs, make_runner
from models.m3dhmr import M3DHMR

log = logging.getLogger(__name__)


def default_mode(device: str | torch.device) -> str:
    """``graphs`` on a CUDA device, ``eager`` elsewhere."""
    return "graphs" if torch.device(device).type == "cuda" else "eager"


class TorchBackend:
    """Mesh backend on a torch device (``cpu`` or ``cuda``).

    ``mode``: ``eager``, ``graphs``, ``compile`` or ``compile-graphs`` (None: :func:`default_mode`);
    ``precision``: ``fp32`` (default), ``bf16`` or ``fp16`` autocast (``models.inference_runners``).
    """

    def __init__(self, model: M3DHMR, device: str | torch.device = "cpu", mode: str | None = None,
                 precision: str = "fp32", compile_backend: str = "inductor") -> None:
        if model.config is None:
            raise ValueError("model has no config; build it with M3DHMR.from_config or load_checkpoint")
        mode = mode or default_mode(device)
        if mode not in MODES or precision not in PRECISIONS:
            raise ValueError(f"unknown mode {mode!r} or precision {precision!r}; modes {MODES}, precisions {sorted(PRECISIONS)}")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.config: M3DHMRConfig = model.config
        self.asset_sha256 = model.asset_sha256
        self.crop_size = model.crop_size
        self.faces = np.asarray(model.faces, np.int64)
        self.num_vertices = int(model.decoder.template.shape[0])
        self.mode, self.precision, self.compile_backend = mode, precision, compile_backend
        self.input_names = input_names_for(model.config)
        self.fallback_reason: str | None = None
        self._runners: dict[tuple[tuple[int, ...], ...], Runner] = {}
        self.prepare_s: dict[str, float] = {}

    @property
    def name(self) -> str:
        suffix = "" if (self.mode, self.precision) == ("eager", "fp32") else f"-{self.mode}" + (
            "" if self.precision == "fp32" else f"-{self.precision}")
        return f"torch-{self.device.type}{suffix}"

    @classmethod
    def from_checkpoint(cls, path: Path | str, asset: Any | None = None, device: str | torch.device = "cpu",
                        mode: str | None = None) -> TorchBackend:
        return cls(load_checkpoint(path, asset=asset, device=device), device=device, mode=mode)

    def _runner(self, inputs: tuple[torch.Tensor, ...]) -> Runner:
        shapes = tuple(tuple(t.shape) for t in inputs)
        runner = self._runners.get(shapes)
        if runner is None:
            try:
                runner = make_runner(self.model, self.mode, self.precision, inputs, compile_backend=self.compile_backend)
            except (RunnerError, RuntimeError) as err:
                if self.mode == "eager":
                    raise
                self.fallback_reason = f"{self.mode} failed ({type(err).__name__}: {str(err).splitlines()[0][:200]}); running eager"
                log.warning("torch backend: %s", self.fallback_reason)
                self.mode, self._runners = "eager", {}
                runner = make_runner(self.model, "eager", self.precision, inputs)
            self._runners[shapes] = runner
            self.prepare_s[f"{inputs[0].shape[0]} crops, {inputs[1].shape[0]} rows"] = runner.prepare_s
        return runner

    def prepare(self, hands: list[int] | tuple[int, ...], ensemble: bool = False) -> None:
        """Build the runners for these hand counts now (graph capture, compilation) on plausible inputs,
        so the first frames are not slow; ``ensemble``: three rows per hand, as the depth ensemble calls."""
        for b in hands:
            if b > 0:
                self._runner(example_inputs(self.config, b, self.device, ensemble=ensemble))

    def infer(self, request: BackendRequest) -> BackendResult:
        request.validate(self.crop_size)
        if request.batch_size == 0:
            return BackendResult.empty(self.num_vertices)
        feeds = request.network_feeds(self.config)
        inputs = tuple(torch.from_numpy(feeds[name]).to(self.device) for name in self.input_names)
        out = self._runner(inputs)(inputs)
        return BackendResult.from_arrays({name: value.cpu().numpy() for name, value in out.items()})
