"""ONNX Runtime backend: runs an exported network; refuses files made for another topology or config.

Providers: CUDA and TensorRT when onnxruntime-gpu finds a GPU, else CPU (the default order below).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from app.backends.base import RESULT_FIELDS, BackendRequest, BackendResult
from models.config import M3DHMRConfig, NUM_JOINTS, config_from_json, crops_to_network_input
from models.errors import AssetHashMismatchError, CheckpointError
from models.export_onnx import INPUT_NAMES, ONNX_FORMAT, OUTPUT_NAMES, read_onnx_metadata

PREFERRED_PROVIDERS: tuple[str, ...] = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def available_providers(preferred: tuple[str, ...] = PREFERRED_PROVIDERS) -> list[str]:
    """The preferred providers usable here, best first (CPU always last).

    onnxruntime-gpu lists CUDA/TensorRT even on machines without a GPU (and then prints load errors),
    so GPU providers are only offered when torch sees a CUDA device.
    """
    offered = set(ort.get_available_providers())
    gpu_ok = torch.cuda.is_available()
    return [p for p in preferred if p in offered and (gpu_ok or p == "CPUExecutionProvider")]


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
    ) -> None:
        path = Path(onnx_path)
        if not path.is_file():
            raise CheckpointError(f"ONNX file {path} does not exist; export it with `python -m models.export_onnx`")
        metadata = read_onnx_metadata(path)
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
        self.session = ort.InferenceSession(str(path), sess_options=options, providers=providers or available_providers())
        names = [o.name for o in self.session.get_outputs()]
        if tuple(names) != OUTPUT_NAMES:
            raise CheckpointError(f"ONNX file {path} has outputs {names}, expected {list(OUTPUT_NAMES)}; re-export it")
        self.config = file_config
        self.asset_sha256 = str(asset.sha256)
        self.crop_size = file_config.crop_size
        self.faces = np.asarray(asset.faces, np.int64)
        self.num_vertices = int(np.asarray(asset.template_vertices).shape[0])
        self.name = "onnxruntime-" + self.session.get_providers()[0].replace("ExecutionProvider", "").lower()

    def infer(self, request: BackendRequest) -> BackendResult:
        request.validate(self.crop_size)
        batch = request.batch_size
        if batch == 0:
            return BackendResult.empty(self.num_vertices)
        if request.joints_2d_external is None:
            external = np.zeros((batch, NUM_JOINTS, 2), np.float32)
            mask = np.zeros((batch,), np.float32)
        else:
            external = np.asarray(request.joints_2d_external, np.float32)
            mask = np.ones((batch,), np.float32)
        feeds = dict(
            zip(
                INPUT_NAMES,
                (
                    crops_to_network_input(request.crops_rgb),
                    np.asarray(request.K_virt, np.float32),
                    np.asarray(request.virt_to_cam, np.float32),
                    external,
                    mask,
                ),
            )
        )
        outputs = self.session.run(list(RESULT_FIELDS), feeds)
        return BackendResult.from_arrays(dict(zip(RESULT_FIELDS, outputs)))
