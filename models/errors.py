"""Typed errors raised by the network package (checkpoints, assets, bad input)."""
from __future__ import annotations


class NetworkError(Exception):
    """Base class of every error raised by the network code."""


class InputShapeError(NetworkError, ValueError):
    """A tensor handed to the network has the wrong shape or dtype."""


class UnknownPresetError(NetworkError, KeyError):
    """A configuration preset name does not exist."""


class CheckpointError(NetworkError):
    """A checkpoint file is missing, corrupt or lacks the required metadata."""


class CheckpointKeyMismatchError(CheckpointError):
    """Strict loading found missing or unexpected parameter names."""

    def __init__(self, path: str, missing: list[str], unexpected: list[str]) -> None:
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        super().__init__(
            f"checkpoint {path} does not match the model: {len(self.missing)} missing keys "
            f"{self.missing[:8]}, {len(self.unexpected)} unexpected keys {self.unexpected[:8]}; "
            "rebuild the model from the checkpoint's own config (load_checkpoint) or retrain."
        )


class AssetHashMismatchError(NetworkError):
    """Weights or an ONNX file were made for another hand topology asset."""

    def __init__(self, source: str, expected: str, found: str) -> None:
        self.expected = expected
        self.found = found
        super().__init__(
            f"{source} was built for hand asset sha256={expected[:16]}..., but the loaded asset has "
            f"sha256={found[:16]}...; load the matching assets/hand_model_*.npz or re-export/retrain."
        )


class TopologyError(NetworkError, ValueError):
    """The hand topology asset is inconsistent (shapes, index ranges, region-restricted spirals)."""


class DeviceUnavailableError(NetworkError):
    """The requested inference device (e.g. CUDA) cannot be used by this backend on this machine."""


class NonFiniteOutputError(NetworkError):
    """The network produced NaN/inf or physically impossible values (corrupt weights or a broken input)."""
