"""Helpers of the misuse battery (tests/test_misuse_*.py): broken copies of the shipped weights,
a folder that cannot be written, and a guard that fails a test when a run starts although the
command line should have been refused first."""
from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
from pathlib import Path

import pytest

from models.paths import WEIGHTS_DIR

MANIFEST: Path = WEIGHTS_DIR / "manifest.json"


def _shipped_name() -> str:
    """Stem of the shipped model (the manifest's ``name``; ``realtime_fused`` when there is no manifest)."""
    try:
        return str(json.loads(MANIFEST.read_text(encoding="utf-8"))["name"])
    except (OSError, ValueError, KeyError):
        return "realtime_fused"


SHIPPED_SAFETENSORS: Path = WEIGHTS_DIR / f"{_shipped_name()}.safetensors"
SHIPPED_ONNX: Path = WEIGHTS_DIR / f"{_shipped_name()}.onnx"

needs_shipped_weights = pytest.mark.skipif(
    not (SHIPPED_SAFETENSORS.is_file() and SHIPPED_ONNX.is_file() and MANIFEST.is_file()),
    reason="the shipped weights and manifest are not in weights/",
)


def shipped_copy(folder: Path, source: Path) -> Path:
    """Copy a shipped weights file and ``manifest.json`` into ``folder`` (a stand-in for weights/)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(MANIFEST, folder / MANIFEST.name)
    target = folder / source.name
    shutil.copy2(source, target)
    return target


def _largest_float32_tensor_safetensors(path: Path) -> tuple[int, int]:
    """(absolute byte offset, byte length) of the largest F32 tensor's data in a safetensors file."""
    raw = path.read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + header_len])
    best = max((v for k, v in header.items() if k != "__metadata__" and v["dtype"] == "F32"),
               key=lambda v: v["data_offsets"][1] - v["data_offsets"][0])
    start, end = best["data_offsets"]
    return 8 + header_len + start, end - start


def _largest_initializer_onnx(path: Path) -> tuple[int, int]:
    """(absolute byte offset, byte length) of the largest float initializer's raw data in an ONNX file."""
    import onnx

    model = onnx.load_model(str(path), load_external_data=False)
    best = max((t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT and t.raw_data),
               key=lambda t: len(t.raw_data))
    raw = path.read_bytes()
    offset = raw.find(best.raw_data)
    assert offset > 0, "initializer bytes not found in the file"
    return offset, len(best.raw_data)


def flip_exponent_byte(path: Path) -> None:
    """Flip one exponent bit of one float32 weight (little-endian byte 3 of a value) in place.

    A small weight is multiplied by 2**128: the file stays structurally valid and loads, which is
    exactly the silent corruption a manifest hash must catch.
    """
    if path.suffix == ".onnx":
        offset, length = _largest_initializer_onnx(path)
    else:
        offset, length = _largest_float32_tensor_safetensors(path)
    position = offset + (length // 8) * 4 + 3  # the high byte of a float32 in the middle of the tensor
    with path.open("r+b") as handle:
        handle.seek(position)
        byte = handle.read(1)[0]
        handle.seek(position)
        handle.write(bytes([byte ^ 0x40]))


def readonly_dir(tmp_path: Path) -> Path:
    """A folder this process cannot create files in (skips the test where none can be made)."""
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o555)
    candidates = [folder, Path("/sys")] if os.geteuid() == 0 else [folder]
    for candidate in candidates:
        try:
            handle, probe = tempfile.mkstemp(dir=candidate)
        except OSError:
            return candidate
        os.close(handle)
        os.unlink(probe)
    pytest.skip("no read-only folder available (running as root without a read-only /sys)")


class RunStarted(AssertionError):
    """Raised by :func:`forbid_run` when a source is opened or a pipeline built."""


def forbid_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make opening any source fail the test: the command must be refused before the run starts."""
    import app.sources

    def refuse(*args: object, **kwargs: object) -> None:
        raise RunStarted("the run started although the command line should have been refused first")

    monkeypatch.setattr(app.sources, "open_source", refuse)
