"""Checkpoints: safetensors files carrying the config JSON and the topology asset hash in their metadata.

Loading is strict: every parameter/buffer name must match (missing or unexpected names raise
``CheckpointKeyMismatchError``), and the checkpoint's asset hash must equal the loaded asset's
(``AssetHashMismatchError``). Mesh constants are non-persistent buffers, so they never enter the file.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from models.config import M3DHMRConfig, config_from_json, config_to_json
from models.errors import AssetHashMismatchError, CheckpointError, CheckpointKeyMismatchError
from models.m3dhmr import M3DHMR

CHECKPOINT_FORMAT: str = "m3dhmr-dgp/1"
RESERVED_KEYS: frozenset[str] = frozenset({"format", "config_json", "asset_sha256", "asset_version"})


@dataclass(frozen=True)
class CheckpointMetadata:
    config: M3DHMRConfig
    asset_sha256: str
    asset_version: str
    extra: dict[str, str] = field(default_factory=dict)


def save_checkpoint(model: M3DHMR, path: Path | str, extra_metadata: dict[str, str] | None = None) -> None:
    """Write ``model``'s state dict (float tensors as stored) plus config and asset hash to ``path``."""
    if model.config is None:
        raise CheckpointError("model has no config; build it with M3DHMR.from_config before saving")
    extra = dict(extra_metadata or {})
    clash = RESERVED_KEYS & set(extra)
    if clash:
        raise CheckpointError(f"extra metadata may not use reserved keys {sorted(clash)}")
    metadata = {
        **extra,
        "format": CHECKPOINT_FORMAT,
        "config_json": config_to_json(model.config),
        "asset_sha256": model.asset_sha256,
        "asset_version": model.asset_version,
    }
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata=metadata)


def read_checkpoint_metadata(path: Path | str) -> CheckpointMetadata:
    """Read config and asset hash without loading the tensors."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; train one or pass the path of a shipped weight file")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"checkpoint {path} is not a readable safetensors file: {error}") from error
    if metadata.get("format") != CHECKPOINT_FORMAT or "config_json" not in metadata or "asset_sha256" not in metadata:
        raise CheckpointError(f"checkpoint {path} lacks {CHECKPOINT_FORMAT} metadata (config_json, asset_sha256)")
    extra = {k: v for k, v in metadata.items() if k not in RESERVED_KEYS}
    return CheckpointMetadata(
        config=config_from_json(metadata["config_json"]),
        asset_sha256=metadata["asset_sha256"],
        asset_version=metadata.get("asset_version", ""),
        extra=extra,
    )


def load_state_strict(model: M3DHMR, path: Path | str) -> None:
    """Load tensors from ``path`` into ``model``; raise on missing/unexpected names or a foreign asset."""
    metadata = read_checkpoint_metadata(path)
    if metadata.asset_sha256 != model.asset_sha256:
        raise AssetHashMismatchError(f"checkpoint {path}", metadata.asset_sha256, model.asset_sha256)
    state = load_file(str(path))
    expected = set(model.state_dict())
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - expected)
    if missing or unexpected:
        raise CheckpointKeyMismatchError(str(path), missing, unexpected)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"checkpoint {path} has tensors of the wrong shape: {error}") from error


def load_checkpoint(path: Path | str, asset: Any | None = None, device: str | torch.device = "cpu", *,
                    surface_smoothing: int | None = None, skin_clamp: bool | None = None,
                    landmark_ray_lift: float | None = None, landmark_pull: float | None = None) -> M3DHMR:
    """Build the model from the checkpoint's own config and the asset (default ``load_hand_asset()``), load strictly.

    ``surface_smoothing`` replaces the config's Taubin iterations (a fixed layer without parameters, so any
    value loads the same tensors); None keeps the checkpoint's own. ``skin_clamp`` likewise switches the
    skin-thickness clamp (``models.skin_thickness.ThicknessClamp``, also without parameters), and
    ``landmark_ray_lift`` sets how far the fused landmarks are moved onto their 2D rays
    (``models.landmark_lift``, no parameters either), ``landmark_pull`` how far the placed fused mesh is
    pulled towards the refined landmarks (``M3DHMR.pull_towards_landmarks``, no parameters).
    """
    metadata = read_checkpoint_metadata(path)
    given = {"surface_smoothing": (int, surface_smoothing), "skin_clamp": (bool, skin_clamp),
             "landmark_ray_lift": (float, landmark_ray_lift), "landmark_pull": (float, landmark_pull)}
    overrides = {name: kind(value) for name, (kind, value) in given.items() if value is not None}
    try:
        config = dataclasses.replace(metadata.config, **overrides)
    except ValueError as error:  # the config's own checks, e.g. smoothing or a lift without the fused cue
        raise CheckpointError(f"checkpoint {path}: cannot set {overrides}: {error}") from error
    model = M3DHMR.from_config(config, asset)
    load_state_strict(model, path)
    return model.to(device).eval()
