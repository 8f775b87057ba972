"""Checkpoints: safetensors round trip, strict loading, typed errors, asset hash checks; torch backend."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from app.backends import BackendRequest, BackendResult, MeshBackend, create_backend
from app.backends.torch_backend import TorchBackend
from models.checkpoint import load_checkpoint, read_checkpoint_metadata, save_checkpoint
from models.errors import AssetHashMismatchError, CheckpointError, CheckpointKeyMismatchError, InputShapeError
from models.m3dhmr import M3DHMR
from tests.net_fixtures import make_icosphere_asset, tiny_config

CROP = 64


@pytest.fixture(scope="module")
def model() -> M3DHMR:
    torch.manual_seed(0)
    return M3DHMR.from_config(tiny_config(), make_icosphere_asset()).eval()


def request(batch: int, external: bool = False) -> BackendRequest:
    rng = np.random.default_rng(batch)
    k = np.array([[160.0, 0.0, 31.5], [0.0, 160.0, 31.5], [0.0, 0.0, 1.0]], np.float32)
    return BackendRequest(
        crops_rgb=rng.integers(0, 256, size=(batch, CROP, CROP, 3), dtype=np.uint8),
        K_virt=np.broadcast_to(k, (batch, 3, 3)).copy(),
        virt_to_cam=np.broadcast_to(np.eye(3, dtype=np.float32), (batch, 3, 3)).copy(),
        joints_2d_external=rng.uniform(5, 58, size=(batch, 21, 2)).astype(np.float32) if external else None,
    )


def test_round_trip_reproduces_outputs(model: M3DHMR, tmp_path: Path) -> None:
    path = tmp_path / "net.safetensors"
    save_checkpoint(model, path, extra_metadata={"recipe": "unit-test"})
    meta = read_checkpoint_metadata(path)
    assert meta.config == model.config and meta.asset_sha256 == model.asset_sha256
    assert meta.extra == {"recipe": "unit-test"}
    stored = load_file(str(path))
    assert not any("spirals" in name or "template" in name or "up_index" in name for name in stored)
    loaded = load_checkpoint(path, asset=make_icosphere_asset())
    crops = torch.rand(2, 3, CROP, CROP)
    k = torch.tensor([[160.0, 0.0, 31.5], [0.0, 160.0, 31.5], [0.0, 0.0, 1.0]]).expand(2, 3, 3)
    with torch.no_grad():
        torch.testing.assert_close(loaded(crops, k).vertices_cam, model(crops, k).vertices_cam, rtol=0, atol=0)


def test_missing_and_unexpected_keys_raise(model: M3DHMR, tmp_path: Path) -> None:
    path = tmp_path / "net.safetensors"
    save_checkpoint(model, path)
    state = load_file(str(path))
    metadata = read_checkpoint_metadata(path)
    removed = "dgp_head.mlp.0.weight"
    state.pop(removed)
    state["decoder.extra.weight"] = torch.zeros(1)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        raw_meta = handle.metadata()
    broken = tmp_path / "broken.safetensors"
    save_file(state, str(broken), metadata=raw_meta)
    with pytest.raises(CheckpointKeyMismatchError) as info:
        load_checkpoint(broken, asset=make_icosphere_asset())
    assert info.value.missing == [removed]
    assert info.value.unexpected == ["decoder.extra.weight"]
    assert metadata.config.name == "test_tiny"


def test_other_asset_hash_is_refused(model: M3DHMR, tmp_path: Path) -> None:
    path = tmp_path / "net.safetensors"
    save_checkpoint(model, path)
    other = dataclasses.replace(make_icosphere_asset(), sha256="0" * 64)
    with pytest.raises(AssetHashMismatchError):
        load_checkpoint(path, asset=other)


def test_corrupt_or_foreign_files_raise(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint_metadata(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError):
        read_checkpoint_metadata(junk)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(CheckpointError, match="metadata"):
        read_checkpoint_metadata(foreign)


@pytest.mark.parametrize("batch", [0, 1, 3])
def test_torch_backend(model: M3DHMR, tmp_path: Path, batch: int) -> None:
    path = tmp_path / "net.safetensors"
    save_checkpoint(model, path)
    backend = create_backend("torch", path, asset=make_icosphere_asset())
    assert isinstance(backend, MeshBackend) and isinstance(backend, TorchBackend)
    assert backend.crop_size == CROP and backend.asset_sha256 == model.asset_sha256
    result = backend.infer(request(batch, external=True))
    assert isinstance(result, BackendResult)
    assert result.vertices_cam.shape == (batch, make_icosphere_asset().level_num_vertices[0], 3)
    assert result.vertices_cam.dtype == np.float32 and result.dgp_degenerate.dtype == bool
    if batch:
        np.testing.assert_allclose(result.joints_2d_used, request(batch, external=True).joints_2d_external)


def test_backend_rejects_bad_request(model: M3DHMR) -> None:
    backend = TorchBackend(model)
    bad = request(2)
    bad = dataclasses.replace(bad, crops_rgb=bad.crops_rgb[:, :32])
    with pytest.raises(InputShapeError, match="crops_rgb"):
        backend.infer(bad)
