"""The cues and the hand-length setting through the live pipeline, the CLI and the window."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from app import cli
from app.backends import BackendRequest, BackendResult
from app.pipeline import HandPipeline, PipelineOptions
from app.smoothing import SmoothingParams
from app.sources import Frame
from tests.pipeline_fakes import GeometricBackend, ScriptedDetector, hand_landmarks


@dataclass
class RecordingBackend(GeometricBackend):
    """The geometric fake, remembering every request it got."""

    requests: list[BackendRequest] = field(default_factory=list)

    def infer(self, request: BackendRequest) -> BackendResult:
        self.requests.append(request)
        return super().infer(request)


def _world(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 0.04, (21, 3)).astype(np.float32)


def _pipeline(cue: str, hand_length_cm: float | None = None) -> tuple[HandPipeline, RecordingBackend]:
    backend = RecordingBackend()
    script = [[(hand_landmarks((160, 120), 80), "right"), (hand_landmarks((60, 120), 60, flip_x=True), "left")]]
    detector = ScriptedDetector(script)
    world = [_world(1), _world(2)]
    original = detector.detect

    def detect_with_world(bgr, t=None):
        return [type(d)(**{**d.__dict__, "world_landmarks": w}) for d, w in zip(original(bgr, t), world)]

    detector.detect = detect_with_world  # type: ignore[method-assign]
    options = PipelineOptions(cue=cue, hand_length_cm=hand_length_cm, smoothing=SmoothingParams(enabled=False))
    return HandPipeline(backend, options=options, detector=detector), backend


def _frame() -> Frame:
    return Frame(bgr=np.full((240, 320, 3), 90, np.uint8), t=0.0, index=0)


def test_fused_cue_sends_2d_and_3d_landmarks_in_each_crops_frame() -> None:
    pipeline, backend = _pipeline("fused")
    result = pipeline.process(_frame())
    request = backend.requests[-1]
    assert request.joints_2d_external is not None and request.landmarks_3d is not None
    assert request.hand_length_m is None
    # wrist-relative, same lengths as the world landmarks, mirrored for the left hand (det -1 rotation)
    for i, world in enumerate((_world(1), _world(2))):
        lm = request.landmarks_3d[i]
        assert np.allclose(lm[0], 0.0)
        assert np.allclose(np.linalg.norm(lm, axis=1), np.linalg.norm(world - world[0], axis=1), atol=1e-5)
        rotation = np.asarray(request.virt_to_cam[i], np.float64)
        back = lm.astype(np.float64) @ rotation.T
        assert np.allclose(back, world - world[0], atol=1e-5)
    assert {h.cue for h in result.hands} == {"fused"}


@pytest.mark.parametrize("cue, external, landmarks", [("mediapipe", True, False), ("network", False, False)])
def test_other_cues_send_less(cue: str, external: bool, landmarks: bool) -> None:
    pipeline, backend = _pipeline(cue)
    result = pipeline.process(_frame())
    request = backend.requests[-1]
    assert (request.joints_2d_external is not None) == external
    assert (request.landmarks_3d is not None) == landmarks
    assert all(h.cue == cue for h in result.hands)


def test_hand_length_setting_reaches_the_network_and_the_result() -> None:
    pipeline, backend = _pipeline("fused", hand_length_cm=17.5)
    result = pipeline.process(_frame())
    assert np.allclose(backend.requests[-1].hand_length_m, 0.175)
    assert len(result.hands) == 2
    assert all(h.depth_source in ("dgp", "ensemble", "size") and h.hand_length_m > 0 for h in result.hands)


@pytest.mark.parametrize("length", [5.0, 31.0])
def test_implausible_hand_lengths_are_refused(length: float) -> None:
    with pytest.raises(ValueError, match="hand length"):
        PipelineOptions(hand_length_cm=length)


def test_cli_refuses_a_hand_length_outside_the_range_before_the_run(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    code = cli.main(["record", "--source", str(tmp_path / "none.mp4"), "--hand-length-cm", "45", "--untrained",
                     "realtime_fused"])
    assert code == 2
    err = capsys.readouterr().err
    assert "--hand-length-cm" in err and "Traceback" not in err


def test_cli_switches_the_depth_ensemble_off() -> None:
    from app.construction import pipeline_options

    parser = cli.build_parser()
    assert pipeline_options(parser.parse_args(["record", "--source", "x.mp4"])).depth_ensemble is True
    assert pipeline_options(parser.parse_args(["record", "--source", "x.mp4", "--no-depth-ensemble"])).depth_ensemble is False


def test_the_depth_guard_replaces_an_impossible_depth() -> None:
    @dataclass
    class TooClose(RecordingBackend):
        def infer(self, request: BackendRequest) -> BackendResult:
            out = super().infer(request)
            shifted = out.translation_virt.copy()
            shifted[:, 2] = 0.03  # 3 cm: closer than any hand can be
            return BackendResult(**{**out.__dict__, "translation_virt": shifted})

    pipeline, _ = _pipeline("fused")
    pipeline.backend = TooClose()
    result = pipeline.process(_frame())
    assert result.hands and all(h.depth_source == "size" for h in result.hands)
    assert all(0.1 < h.depth_m < 2.0 for h in result.hands)


@pytest.mark.gui
def test_window_shows_the_cue_and_remembers_the_hand_length(qtbot, tmp_path: Path, monkeypatch) -> None:
    from PyQt6.QtCore import QSettings

    from app.ui.main_window import MainWindow
    from app.ui.worker import EngineSettings, LiveWorker
    from tests.gui_support import FakePipeline

    QSettings.setPath(QSettings.Format.NativeFormat, QSettings.Scope.UserScope, str(tmp_path / "settings"))
    QSettings("handmesh", "demo").clear()

    from app.ui.renderer3d import ThreadedRenderer

    class BlankRenderer(ThreadedRenderer):
        """Draws nothing (no Open3D, no X display)."""

        def _render_on_thread(self, snapshot) -> np.ndarray:
            return np.zeros((snapshot.size[1], snapshot.size[0], 3), np.uint8)

    def make_window() -> MainWindow:
        worker = LiveWorker(lambda s: FakePipeline(delay_s=0.0), EngineSettings())
        return MainWindow(worker, BlankRenderer(), output_dir=tmp_path)

    first = make_window()
    assert first.cue_combo.currentText() == "fused"
    assert first.ensemble_check.isChecked() and first.ensemble_check.isEnabled()
    first.ensemble_check.setChecked(False)
    assert first.current_settings().options.depth_ensemble is False
    first.cue_combo.setCurrentText("network")
    assert not first.ensemble_check.isEnabled()
    first.cue_combo.setCurrentText("fused")
    first.ensemble_check.setChecked(True)
    assert not first.hand_length_check.isChecked()
    first.hand_length_check.setChecked(True)
    first.hand_length_spin.setValue(17.0)
    assert first.current_settings().options.hand_length_cm == pytest.approx(17.0)
    first.close()
    second = make_window()
    try:
        assert second.hand_length_check.isChecked()
        assert second.hand_length_spin.value() == pytest.approx(17.0)
        assert second.worker.settings.options.hand_length_cm == pytest.approx(17.0)
    finally:
        second.close()
