"""ONNX export: dynamic batch, metadata, torch vs onnxruntime parity (1e-4 m), asset-hash check in the backend."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from app.backends import BackendRequest
from app.backends.onnx_backend import OnnxBackend
from app.backends.torch_backend import TorchBackend
from models.config import config_from_json
from models.errors import AssetHashMismatchError, CheckpointError
from models.export_onnx import (
    CROP_INDEX_INPUT,
    ONNX_FORMAT,
    OUTPUT_NAMES,
    PARITY_TOLERANCE_M,
    check_cue_parity,
    export_onnx,
    hand_like_joints,
    read_onnx_metadata,
)
from models.m3dhmr import M3DHMR
from tests.misuse_support import SHIPPED_ONNX, SHIPPED_SAFETENSORS, needs_shipped_weights
from tests.net_fixtures import make_icosphere_asset, tiny_config

CROP = 64
METRIC = ("vertices_rel", "joints_rel", "translation_virt", "vertices_cam", "joints_cam", "translation_cam", "dgp_residual")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[M3DHMR, Path]:
    torch.manual_seed(0)
    model = M3DHMR.from_config(tiny_config(), make_icosphere_asset()).eval()
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / "tiny.onnx")
    return model, path


def make_request(batch: int, external: bool) -> BackendRequest:
    rng = np.random.default_rng(100 + batch)
    k = np.array([[150.0, 0.0, 31.5], [0.0, 150.0, 31.5], [0.0, 0.0, 1.0]], np.float32)
    rotation = np.linalg.qr(rng.normal(size=(batch, 3, 3)))[0].astype(np.float32)
    return BackendRequest(
        crops_rgb=rng.integers(0, 256, size=(batch, CROP, CROP, 3), dtype=np.uint8),
        K_virt=np.broadcast_to(k, (batch, 3, 3)).copy(),
        virt_to_cam=rotation,
        joints_2d_external=hand_like_joints(batch, CROP).numpy() if external else None,
    )


def test_metadata(exported: tuple[M3DHMR, Path]) -> None:
    model, path = exported
    metadata = read_onnx_metadata(path)
    assert metadata["format"] == ONNX_FORMAT
    assert metadata["asset_sha256"] == model.asset_sha256
    assert config_from_json(metadata["config_json"]) == model.config
    graph = onnx.load_model(str(path)).graph
    assert [o.name for o in graph.output] == list(OUTPUT_NAMES)
    batch_dim = graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value  # symbolic (dynamic) batch axis


@pytest.mark.parametrize("batch", [1, 2, 5])
def test_torch_onnxruntime_parity(exported: tuple[M3DHMR, Path], batch: int) -> None:
    model, path = exported
    torch_backend = TorchBackend(model)
    onnx_backend = OnnxBackend(path, asset=make_icosphere_asset(), providers=["CPUExecutionProvider"])
    external = make_request(batch, external=True)
    ours, theirs = torch_backend.infer(external), onnx_backend.infer(external)
    for name in METRIC:
        np.testing.assert_allclose(getattr(theirs, name), getattr(ours, name), atol=1e-4, rtol=0, err_msg=name)
    np.testing.assert_allclose(theirs.dgp_weights, ours.dgp_weights, atol=1e-5)
    np.testing.assert_array_equal(theirs.dgp_degenerate, ours.dgp_degenerate)
    own = make_request(batch, external=False)
    ours, theirs = torch_backend.infer(own), onnx_backend.infer(own)
    np.testing.assert_allclose(theirs.joints_2d_pred, ours.joints_2d_pred, atol=1e-3)
    np.testing.assert_allclose(theirs.vertices_rel, ours.vertices_rel, atol=1e-4)
    np.testing.assert_allclose(theirs.joints_2d_used, ours.joints_2d_pred, atol=1e-3)


def test_backend_refuses_other_asset(exported: tuple[M3DHMR, Path]) -> None:
    _, path = exported
    other = dataclasses.replace(make_icosphere_asset(), sha256="f" * 64)
    with pytest.raises(AssetHashMismatchError):
        OnnxBackend(path, asset=other)


def test_backend_refuses_other_config_and_missing_file(exported: tuple[M3DHMR, Path], tmp_path: Path) -> None:
    _, path = exported
    with pytest.raises(CheckpointError, match="config"):
        OnnxBackend(path, asset=make_icosphere_asset(), config=tiny_config(name="other"))
    with pytest.raises(CheckpointError, match="does not exist"):
        OnnxBackend(tmp_path / "nope.onnx", asset=make_icosphere_asset())


def test_zero_hands(exported: tuple[M3DHMR, Path]) -> None:
    _, path = exported
    backend = OnnxBackend(path, asset=make_icosphere_asset())
    empty = make_request(0, external=False)
    result = backend.infer(empty)
    assert result.vertices_cam.shape == (0, make_icosphere_asset().level_num_vertices[0], 3)


@needs_shipped_weights
def test_shipped_onnx_matches_torch_for_every_cue() -> None:
    """The shipped graph gives the torch model's mesh for every cue the app can run, including the rows
    without MediaPipe's 3D landmarks (zeros in, as the backend feeds them): an export once turned those
    into NaN in onnxruntime only, and the app silently dropped every hand of the network and mediapipe cues."""
    from models.checkpoint import load_checkpoint
    from models.export_onnx import cue_variants

    model = load_checkpoint(SHIPPED_SAFETENSORS)
    parity = check_cue_parity(model, SHIPPED_ONNX)
    assert set(parity) == {*cue_variants(model.config), "shared_crop"} >= {"network", "mediapipe", "fused", "shared_crop"}
    assert max(parity.values()) < PARITY_TOLERANCE_M



def test_files_exported_before_crop_index_still_share_crops(exported: tuple[M3DHMR, Path], tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A file without the ``crop_index`` input (as exported before it existed) still serves requests whose
    rows share crops: the backend repeats the crops per row, and the results equal the current export's."""
    import models.export_onnx as export_module

    model, path = exported
    current_names, current_examples = export_module.input_names_for, export_module.example_inputs
    monkeypatch.setattr(export_module, "input_names_for",
                        lambda config: tuple(n for n in current_names(config) if n != CROP_INDEX_INPUT))
    monkeypatch.setattr(export_module, "example_inputs",
                        lambda batch, size, config=None, crops=None: current_examples(batch, size, config)[:-1])
    legacy_path = export_onnx(model, tmp_path / "legacy.onnx")
    monkeypatch.undo()
    asset = make_icosphere_asset()
    legacy = OnnxBackend(legacy_path, asset=asset, providers=["CPUExecutionProvider"])
    current = OnnxBackend(path, asset=asset, providers=["CPUExecutionProvider"])
    assert not legacy.shares_crops and current.shares_crops
    rows = make_request(5, external=True)
    shared = dataclasses.replace(rows, crops_rgb=rows.crops_rgb[:2], crop_index=np.array([0, 1, 0, 1, 1]))
    theirs, ours = legacy.infer(shared), current.infer(shared)
    for name in METRIC:
        np.testing.assert_allclose(getattr(theirs, name), getattr(ours, name), atol=1e-5, rtol=0, err_msg=name)
    np.testing.assert_allclose(theirs.joints_2d_pred, ours.joints_2d_pred, atol=1e-3)
    pred = theirs.joints_2d_pred  # rows 0 and 2 read crop 0, row 1 crop 1
    np.testing.assert_allclose(pred[0], pred[2], atol=1e-4)
    assert np.abs(pred[0] - pred[1]).max() > 0.01  # untrained: small, yet 100x the same-crop tolerance
