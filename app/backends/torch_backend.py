"""PyTorch backend: runs :class:`models.m3dhmr.M3DHMR` in eval mode under ``torch.inference_mode``."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.backends.base import RESULT_FIELDS, BackendRequest, BackendResult
from models.checkpoint import load_checkpoint
from models.config import M3DHMRConfig, crops_to_network_input
from models.m3dhmr import M3DHMR


class TorchBackend:
    """Mesh backend on a torch device (``cpu`` or ``cuda``)."""

    def __init__(self, model: M3DHMR, device: str | torch.device = "cpu") -> None:
        if model.config is None:
            raise ValueError("model has no config; build it with M3DHMR.from_config or load_checkpoint")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.config: M3DHMRConfig = model.config
        self.asset_sha256 = model.asset_sha256
        self.crop_size = model.crop_size
        self.faces = np.asarray(model.faces, np.int64)
        self.name = f"torch-{self.device.type}"
        self.num_vertices = int(model.decoder.template.shape[0])

    @classmethod
    def from_checkpoint(cls, path: Path | str, asset: Any | None = None, device: str | torch.device = "cpu") -> TorchBackend:
        return cls(load_checkpoint(path, asset=asset, device=device), device=device)

    def infer(self, request: BackendRequest) -> BackendResult:
        request.validate(self.crop_size)
        if request.batch_size == 0:
            return BackendResult.empty(self.num_vertices)
        device = self.device
        with torch.inference_mode():
            crops = torch.from_numpy(crops_to_network_input(request.crops_rgb)).to(device)
            k_virt = torch.as_tensor(request.K_virt, dtype=torch.float32, device=device)
            virt_to_cam = torch.as_tensor(request.virt_to_cam, dtype=torch.float32, device=device)
            external = None
            if request.joints_2d_external is not None:
                external = torch.as_tensor(request.joints_2d_external, dtype=torch.float32, device=device)
            landmarks = hand_length = None
            if request.landmarks_3d is not None:
                landmarks = torch.as_tensor(request.landmarks_3d, dtype=torch.float32, device=device)
            if request.hand_length_m is not None:
                hand_length = torch.as_tensor(request.hand_length_m, dtype=torch.float32, device=device)
            external_mask = torch.from_numpy(request.row_mask(request.external_rows, external is not None)).to(device)
            landmarks_mask = torch.from_numpy(request.row_mask(request.landmarks_rows, landmarks is not None)).to(device)
            crop_index = None
            if request.crop_index is not None:
                crop_index = torch.as_tensor(np.asarray(request.crop_index, np.int64), device=device)
            out = self.model(crops, k_virt, joints_2d_external=external, external_mask=external_mask,
                             virt_to_cam=virt_to_cam, landmarks_3d=landmarks, landmarks_3d_mask=landmarks_mask,
                             hand_length_given=hand_length, crop_index=crop_index)
            arrays = {name: getattr(out, name).cpu().numpy() for name in RESULT_FIELDS}
            arrays["hand_length"] = out.hand_length_used.cpu().numpy()
        return BackendResult.from_arrays(arrays)
