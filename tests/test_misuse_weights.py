"""Misuse battery: broken, foreign or mismatched weights, and network outputs that cannot be true.

Each test is one case of issue 11 and failed on the code before the fix (a flipped exponent byte loaded
silently, a .safetensors given to the onnx backend raised a protobuf DecodeError traceback, ...).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from app import cli
from app.backends import BackendResult, create_backend
from app.pipeline import HandPipeline, PipelineOptions
from app.smoothing import SmoothingParams
from app.sources import Frame
from models.errors import CheckpointError
from tests.misuse_support import (SHIPPED_ONNX, SHIPPED_SAFETENSORS, flip_exponent_byte, forbid_run,
                                  needs_shipped_weights, shipped_copy)
from tests.pipeline_fakes import GeometricBackend, ScriptedDetector, hand_landmarks

RAW = PipelineOptions(smoothing=SmoothingParams(enabled=False))


@needs_shipped_weights
@pytest.mark.parametrize("shipped", [SHIPPED_SAFETENSORS, SHIPPED_ONNX], ids=["torch", "onnx"])
def test_shipped_weights_with_a_flipped_exponent_byte_are_refused(tmp_path: Path, shipped: Path) -> None:
    from models.weights_manifest import WeightsIntegrityError

    weights = shipped_copy(tmp_path / "weights", shipped)
    flip_exponent_byte(weights)
    kind = "onnx" if shipped.suffix == ".onnx" else "torch"
    with pytest.raises(WeightsIntegrityError) as info:
        create_backend(kind, weights)
    message = str(info.value)
    assert str(weights) in message and "sha256" in message and "git checkout" in message


@needs_shipped_weights
def test_cli_refuses_corrupt_shipped_weights_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    weights = shipped_copy(tmp_path / "weights", SHIPPED_ONNX)
    flip_exponent_byte(weights)
    code = cli.main(["record", "--source", "sample", "--weights", str(weights), "--frames", "1", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert "error:" in err and weights.name in err and "Traceback" not in err


@needs_shipped_weights
def test_an_intact_copy_next_to_its_manifest_still_loads(tmp_path: Path) -> None:
    """Positive control of the two tests above: verification does not refuse intact weights."""
    backend = create_backend("onnx", shipped_copy(tmp_path / "weights", SHIPPED_ONNX))
    assert backend.crop_size > 0


@needs_shipped_weights
def test_safetensors_given_to_the_onnx_backend_is_one_line(capsys: pytest.CaptureFixture,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_run(monkeypatch)
    code = cli.main(["record", "--source", "sample", "--backend", "onnx", "--weights", str(SHIPPED_SAFETENSORS),
                     "--frames", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "--backend torch" in err
    with pytest.raises(CheckpointError):
        create_backend("onnx", SHIPPED_SAFETENSORS)


@needs_shipped_weights
def test_onnx_given_to_the_torch_backend_names_the_right_backend(capsys: pytest.CaptureFixture,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_run(monkeypatch)
    code = cli.main(["record", "--source", "sample", "--backend", "torch", "--weights", str(SHIPPED_ONNX),
                     "--frames", "1"])
    assert code == 2 and "--backend onnx" in capsys.readouterr().err


@pytest.mark.parametrize("content", [b"not an onnx model at all\n" * 40, None], ids=["text", "truncated"])
def test_garbage_or_truncated_onnx_is_a_typed_error(tmp_path: Path, content: bytes | None,
                                                    capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "model.onnx"
    if content is None:
        if not SHIPPED_ONNX.is_file():
            pytest.skip("no shipped ONNX file to cut short")
        content = SHIPPED_ONNX.read_bytes()[:5000]
    bad.write_bytes(content)
    with pytest.raises(CheckpointError, match="model.onnx"):
        create_backend("onnx", bad)
    code = cli.main(["record", "--source", "sample", "--weights", str(bad), "--frames", "1", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "model.onnx" in err and "Traceback" not in err


def test_device_cuda_with_onnx_never_runs_on_the_cpu_quietly(capsys: pytest.CaptureFixture,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from app.backends.onnx_backend import cuda_provider_problem

    if cuda_provider_problem() is None:
        pytest.skip("onnxruntime can use CUDA here: see test_onnx_backend_reports_the_provider_that_runs")
    forbid_run(monkeypatch)
    code = cli.main(["record", "--source", "sample", "--backend", "onnx", "--device", "cuda", "--frames", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "cuda" in err.lower()
    if SHIPPED_ONNX.is_file():
        from models.errors import DeviceUnavailableError

        with pytest.raises(DeviceUnavailableError):
            create_backend("onnx", SHIPPED_ONNX, device="cuda")


@needs_shipped_weights
def test_onnx_backend_reports_the_provider_that_runs() -> None:
    from app.backends.onnx_backend import cuda_provider_problem
    from app.construction import backend_report

    cpu = create_backend("onnx", SHIPPED_ONNX, device="cpu")
    assert backend_report(cpu) == {"name": "onnxruntime-cpu", "device": "cpu", "providers": ["CPUExecutionProvider"]}
    if cuda_provider_problem() is None:
        gpu = create_backend("onnx", SHIPPED_ONNX, device="cuda")
        assert backend_report(gpu)["device"] == "cuda"


def _result_with(translation: np.ndarray) -> BackendResult:
    b = translation.shape[0]
    arrays = {
        "vertices_rel": np.zeros((b, 5, 3)), "joints_rel": np.zeros((b, 21, 3)),
        "joints_2d_pred": np.zeros((b, 21, 2)), "joints_2d_used": np.zeros((b, 21, 2)),
        "dgp_weights": np.full((b, 21), 0.5), "translation_virt": translation,
        "vertices_cam": translation[:, None, :] + np.zeros((b, 5, 3)),
        "joints_cam": translation[:, None, :] + np.zeros((b, 21, 3)), "translation_cam": translation,
        "dgp_residual": np.zeros(b), "dgp_degenerate": np.zeros(b, bool),
    }
    return BackendResult.from_arrays(arrays)


def test_non_finite_or_impossible_outputs_are_flagged() -> None:
    from app.backends.base import implausible_hands

    t = np.array([[0.0, 0.0, 0.5], [0.0, 0.0, np.nan], [4.7e32, 0.0, 4.7e32], [0.0, 0.0, -0.5], [0.0, 0.0, np.inf]])
    assert implausible_hands(_result_with(t)).tolist() == [False, True, True, True, True]


class _BrokenBackend(GeometricBackend):
    """The geometric fake with its wrist translation replaced (NaN or 4.7e32 m, as corrupt weights give)."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def infer(self, request):  # type: ignore[override]
        out = super().infer(request)
        arrays = {name: np.array(getattr(out, name)) for name in out.__dataclass_fields__}
        arrays["translation_cam"][0] = self.value
        arrays["vertices_cam"][0] = self.value
        arrays["joints_cam"][0] = self.value
        return BackendResult.from_arrays(arrays)


@pytest.mark.parametrize("value", [np.nan, 4.7e32], ids=["nan", "4.7e32"])
def test_a_hand_with_broken_network_output_is_dropped_with_a_warning(value: float,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    hands = [(hand_landmarks((170.0, 200.0), 140.0, flip_x=True), "left"),
             (hand_landmarks((480.0, 170.0), 120.0), "right")]
    frame = Frame(bgr=np.full((480, 640, 3), 90, np.uint8), t=0.0, index=0)
    with caplog.at_level(logging.WARNING, logger="app.pipeline"):
        with HandPipeline(_BrokenBackend(value), options=RAW, detector=ScriptedDetector([hands])) as pipeline:
            result = pipeline.process(frame)
    assert len(result.hands) == 1 and result.hands_dropped == 1
    assert all(np.isfinite(h.translation_cam).all() and h.distance_m < 5.0 for h in result.hands)
    assert "dropped 1 hand" in caplog.text
