"""ONNX Runtime backend: runs an exported network; refuses files made for another topology or config.

Providers: CUDA and TensorRT when onnxruntime-gpu finds a GPU, else CPU (the default order below).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from app.backends.base import BackendRequest, BackendResult
from models.config import M3DHMRConfig, config_from_json
from models.errors import AssetHashMismatchError, CheckpointError, DeviceUnavailableError
from models.export_onnx import CROP_INDEX_INPUT, ONNX_FORMAT, output_names_for, read_onnx_metadata

PREFERRED_PROVIDERS: tuple[str, ...] = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def available_providers(preferred: tuple[str, ...] = PREFERRED_PROVIDERS) -> list[str]:
    """The preferred providers usable here, best first (CPU always last).

    onnxruntime-gpu lists CUDA/TensorRT even on machines without a GPU (and then prints load errors),
    so GPU providers are only offered when torch sees a CUDA device.
    """
    offered = set(ort.get_available_providers())
    gpu_ok = torch.cuda.is_available()
    return [p for p in preferred if p in offered and (gpu_ok or p == "CPUExecutionProvider")]


GPU_PROVIDERS: frozenset[str] = frozenset({"TensorrtExecutionProvider", "CUDAExecutionProvider"})


def _ort_errors() -> tuple[type[BaseException], ...]:
    """onnxruntime's own exception classes (they derive from Exception only), plus protobuf's DecodeError."""
    from google.protobuf.message import DecodeError

    state = getattr(getattr(ort, "capi", None), "onnxruntime_pybind11_state", None)
    names = ("Fail", "InvalidArgument", "NoSuchFile", "NoModel", "EngineError", "RuntimeException",
             "InvalidProtobuf", "ModelLoaded", "NotImplemented", "InvalidGraph", "EPFail")
    found = [getattr(state, n) for n in names if isinstance(getattr(state, n, None), type)]
    return (DecodeError, OSError, ValueError, RuntimeError, *found)


def cuda_provider_problem() -> str | None:
    """Why onnxruntime cannot run on a CUDA GPU here (None when its CUDA provider is usable)."""
    offered = ort.get_available_providers()
    if "CUDAExecutionProvider" not in offered:
        return (f"this onnxruntime build has no CUDA provider (providers: {', '.join(offered)}); "
                "install onnxruntime-gpu")
    if not torch.cuda.is_available():
        return "onnxruntime offers CUDA but no CUDA device is visible (torch sees none)"
    return None


def onnx_providers_for(device: str) -> list[str]:
    """Execution providers for ``device``: ``cpu`` -> CPU only; ``cuda`` -> the GPU providers first.

    Raises:
        DeviceUnavailableError: ``cuda`` was asked for but onnxruntime cannot use a GPU here.
    """
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if not str(device).startswith("cuda"):
        raise DeviceUnavailableError(f"unknown device {device!r} for the onnx backend; use 'cpu' or 'cuda'")
    problem = cuda_provider_problem()
    if problem is not None:
        raise DeviceUnavailableError(f"--device {device} with the onnx backend: {problem}; use --device cpu")
    return available_providers()


class OnnxBackend:
    """Mesh backend on onnxruntime. ``asset`` (default ``load_hand_asset()``) must match the file's metadata."""

    def __init__(
        self,
        onnx_path: Path | str,
        asset: Any | None = None,
        providers: list[str] | None = None,
        config: M3DHMRConfig | None = None,
        intra_op_threads: int = 0,
        allow_spinning: bool = False,
        require_gpu: bool = False,
    ) -> None:
        path = Path(onnx_path)
        if not path.is_file():
            raise CheckpointError(f"ONNX file {path} does not exist; export it with `python -m models.export_onnx`")
        try:
            metadata = read_onnx_metadata(path)
        except _ort_errors() as error:
            raise CheckpointError(
                f"ONNX file {path} is not a readable ONNX model (corrupt, cut short or another format: "
                f"{type(error).__name__}); re-export it with `python -m models.export_onnx` or restore the shipped file"
            ) from error
        if metadata.get("format") != ONNX_FORMAT or "config_json" not in metadata or "asset_sha256" not in metadata:
            raise CheckpointError(f"ONNX file {path} lacks {ONNX_FORMAT} metadata; re-export it with models.export_onnx")
        if asset is None:
            from models.hand.asset import load_hand_asset

            asset = load_hand_asset()
        if metadata["asset_sha256"] != asset.sha256:
            raise AssetHashMismatchError(f"ONNX file {path}", metadata["asset_sha256"], asset.sha256)
        file_config = config_from_json(metadata["config_json"])
        if config is not None and config != file_config:
            raise CheckpointError(f"ONNX file {path} was exported with config {file_config.name!r}, expected {config.name!r}")
        options = ort.SessionOptions()
        if intra_op_threads > 0:
            options.intra_op_num_threads = intra_op_threads
        # Busy-waiting worker threads steal the cores MediaPipe runs on in the live loop; off by default.
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options,
                                                providers=providers or available_providers())
        except _ort_errors() as error:
            raise CheckpointError(f"onnxruntime cannot load {path} ({type(error).__name__}: {str(error)[:200]}); "
                                  "re-export it with `python -m models.export_onnx` or restore the shipped file") from error
        if require_gpu and self.session.get_providers()[0] not in GPU_PROVIDERS:
            raise DeviceUnavailableError(
                f"onnxruntime could not start a GPU provider for {path} (running providers: "
                f"{', '.join(self.session.get_providers())}; the CUDA libraries may be missing); use --device cpu"
            )
        names = [o.name for o in self.session.get_outputs()]
        expected = output_names_for(file_config)
        if tuple(names) != expected:
            raise CheckpointError(f"ONNX file {path} has outputs {names}, expected {list(expected)}; re-export it")
        self.input_names = tuple(i.name for i in self.session.get_inputs())
        self.shares_crops = CROP_INDEX_INPUT in self.input_names  # files exported before crop_index: repeat crops
        self.output_names = expected
        self.config = file_config
        self.asset_sha256 = str(asset.sha256)
        self.crop_size = file_config.crop_size
        self.faces = np.asarray(asset.faces, np.int64)
        self.num_vertices = int(np.asarray(asset.template_vertices).shape[0])
        self.name = "onnxruntime-" + self.session.get_providers()[0].replace("ExecutionProvider", "").lower()

    @property
    def providers(self) -> list[str]:
        """The execution providers of the session, in priority order (what really runs)."""
        return list(self.session.get_providers())

    @property
    def device(self) -> str:
        """``"cuda"`` when the session's first provider is a GPU provider, else ``"cpu"``."""
        return "cuda" if self.session.get_providers()[0] in GPU_PROVIDERS else "cpu"

    def infer(self, request: BackendRequest) -> BackendResult:
        request.validate(self.crop_size)
        batch = request.batch_size
        if batch == 0:
            return BackendResult.empty(self.num_vertices)
        feeds = request.network_feeds(self.config, self.shares_crops)
        outputs = self.session.run(list(self.output_names), {name: feeds[name] for name in self.input_names})
        return BackendResult.from_arrays(dict(zip(self.output_names, outputs)))
