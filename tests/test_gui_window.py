"""The main window (app/ui/main_window.py) with the real Open3D renderer under a private Xvfb display
(Qt itself on the offscreen platform): on a scripted source with a fake pipeline (fast), and on the
real clip and the bundled sample clip with the real pipeline."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from PyQt6.QtCore import QPoint, Qt

from app.recording import read_jsonl
from app.sources import SAMPLE_CLIP_PATH
from app.ui.app import initial_settings, make_pipeline_factory
from app.ui.main_window import MainWindow
from app.ui.renderer3d import BACKGROUND_RGB, Open3DLegacyRenderer, Open3DProcessRenderer
from app.ui.worker import EngineSettings, LiveWorker
from models.paths import SHARED_REAL_DIR
from tests.gui_support import WAIT_MS, CountingSource, FakePipeline, gui_threads_alive, hand_template

pytestmark = pytest.mark.gui

REAL_CLIP = SHARED_REAL_DIR / "open_palm_640x360.mp4"
BACKGROUND = np.round(np.asarray(BACKGROUND_RGB) * 255)


def processing_fps(window: MainWindow) -> float:
    match = re.search(r"processing\s+([\d.]+) FPS", window.fps_label.text())
    return float(match.group(1)) if match else -1.0


def non_background_fraction(image: np.ndarray) -> float:
    """Share of pixels clearly different from the 3D view's background (hand, grid, frustum)."""
    return float((np.abs(image.astype(float) - BACKGROUND).sum(axis=2) > 60).mean())


def open_window(qtbot, tmp_path: Path, factory, source, opener=None, realtime: bool = True) -> MainWindow:
    worker = LiveWorker(factory, EngineSettings(), realtime=realtime)
    window = MainWindow(worker, Open3DLegacyRenderer(), output_dir=tmp_path, source=source, source_opener=opener)
    window.resize(1100, 460)
    window.show()
    qtbot.waitExposed(window)
    return window


def close_window(qtbot, window: MainWindow) -> None:
    window.close()
    qtbot.waitUntil(lambda: gui_threads_alive() == [], timeout=WAIT_MS)


def drag(qtbot, widget, start: QPoint, end: QPoint, button=Qt.MouseButton.LeftButton) -> None:
    qtbot.mousePress(widget, button, pos=start)
    qtbot.mouseMove(widget, end)
    qtbot.mouseRelease(widget, button, pos=end)


def test_window_on_a_scripted_source(qtbot, tmp_path: Path, xvfb_display: str) -> None:
    sources: list[CountingSource] = []

    def opener(spec):
        sources.append(CountingSource(frames=30, size=(320, 240), name=f"scripted:{spec}", live=False))
        return sources[-1]

    hand_template()  # load the hand asset before the clock starts
    window = open_window(qtbot, tmp_path, lambda s: FakePipeline(delay_s=0.02), "a", opener)
    try:
        qtbot.waitUntil(lambda: window.frames_displayed >= 2, timeout=WAIT_MS)
        qtbot.waitUntil(lambda: window.view3d.image is not None, timeout=WAIT_MS)
        first_3d = window.view3d.image.copy()
        assert window.hands_label.text().startswith("hands: 1 | cue: ")
        assert window.intrinsics_label.isVisibleTo(window)  # the fake marks its intrinsics as assumed
        assert "fake-backend" in window.backend_label.text()
        # The scripted hand sweeps sideways: the 3D image follows it.
        qtbot.waitUntil(
            lambda: window.view3d.image is not None and not np.array_equal(window.view3d.image, first_3d), timeout=WAIT_MS
        )
        # The finite source ends: the window says so and keeps running.
        qtbot.waitUntil(lambda: window.error_banner.isVisibleTo(window), timeout=WAIT_MS)
        assert "ended" in window.error_label.text()
        assert processing_fps(window) > 0
        # With the scene still, orbit with the mouse: the view changes; the reset button restores it.
        qtbot.waitUntil(window.view3d.is_idle, timeout=WAIT_MS)
        still = window.view3d.image.copy()
        drag(qtbot, window.view3d, QPoint(200, 200), QPoint(260, 215))
        qtbot.waitUntil(lambda: window.view3d.is_idle() and not np.array_equal(window.view3d.image, still), timeout=WAIT_MS)
        assert np.abs(window.view3d.image.astype(int) - still).sum(axis=2).astype(bool).mean() > 0.02
        count = window.view3d.frames_rendered
        qtbot.mouseClick(window.view3d.reset_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: window.view3d.frames_rendered > count and window.view3d.is_idle(), timeout=WAIT_MS)
        np.testing.assert_array_equal(window.view3d.image, still)
        # Screenshot and mesh export of the frame on screen.
        shot = window.save_screenshot()
        assert cv2.imread(str(shot)).shape[:2] == (window.height(), window.width())
        ply, obj = window.export_current_meshes("ply"), window.export_current_meshes("obj")
        assert ply.read_text().startswith("ply") and "\nf " in obj.read_text()
        # Keyboard shortcuts: Ctrl+S screenshot, Ctrl+E export, Ctrl+R record on and off.
        window.activateWindow()
        qtbot.keyClick(window, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
        qtbot.keyClick(window, Qt.Key.Key_E, Qt.KeyboardModifier.ControlModifier)
        assert len(list(tmp_path.glob("screenshot_*.png"))) == 2 and len(list(tmp_path.glob("*.ply"))) == 2
        qtbot.keyClick(window, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
        assert window.record_label.isVisibleTo(window)
        qtbot.keyClick(window, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
        assert not window.record_label.isVisibleTo(window)
        # Reopen after the end: a fresh source is opened and frames flow again.
        shown = window.frames_displayed
        qtbot.mouseClick(window.reopen_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: window.frames_displayed > shown, timeout=WAIT_MS)
        assert len(sources) == 2 and sources[0].closed
    finally:
        close_window(qtbot, window)


def test_lost_camera_is_shown_and_can_be_reopened(qtbot, tmp_path: Path, xvfb_display: str) -> None:
    sources: list[CountingSource] = []

    def opener(spec):
        sources.append(CountingSource(fail_after=None if sources else 3, name=f"camera:{spec}"))
        return sources[-1]

    window = open_window(qtbot, tmp_path, lambda s: FakePipeline(), 0, opener)
    try:
        qtbot.waitUntil(lambda: window.error_banner.isVisibleTo(window), timeout=WAIT_MS)
        assert "stopped delivering" in window.error_label.text()
        shown = window.frames_displayed
        qtbot.mouseClick(window.reopen_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: window.frames_displayed > shown + 2, timeout=WAIT_MS)
        assert not window.error_banner.isVisibleTo(window)
    finally:
        close_window(qtbot, window)


@pytest.fixture(scope="module")
def real_factory():
    """The real pipeline factory: shipped ONNX weights when present, else an untrained model."""
    from app import cli

    untrained = None if cli.default_weights("onnx") is not None else "realtime_slim"
    args = argparse.Namespace(backend="onnx", device="cpu", weights=None, untrained=untrained, intrinsics=None,
                              max_hands=2, cue="fused", smoothing=0.5, hfov=None, mirror_view=False, mesh=None)
    return make_pipeline_factory(args), initial_settings(args)


@pytest.mark.slow
@pytest.mark.real
@pytest.mark.skipif(not REAL_CLIP.is_file(), reason=f"real footage absent: {REAL_CLIP}")
def test_window_on_the_real_clip(qtbot, tmp_path: Path, xvfb_display: str, real_factory) -> None:
    factory, settings = real_factory
    worker = LiveWorker(factory, settings)
    window = MainWindow(worker, Open3DProcessRenderer(), output_dir=tmp_path, source=str(REAL_CLIP))
    window.resize(1100, 460)
    window.show()
    try:
        qtbot.waitUntil(lambda: window.frames_displayed >= 3, timeout=WAIT_MS)
        first_label = window.fps_label.text()
        qtbot.waitUntil(lambda: window.frames_displayed >= 6 and window.fps_label.text() != first_label, timeout=WAIT_MS)
        assert processing_fps(window) > 0
        # the clip shows one hand in almost every frame: a displayed frame soon carries it, with the cue
        # and the depth ensemble (the default)
        qtbot.waitUntil(lambda: window.hands_label.text().startswith("hands: 1 | cue: fused | depth: mean of 3 cues | "),
                        timeout=WAIT_MS)
        assert window.intrinsics_label.isVisibleTo(window)
        qtbot.waitUntil(lambda: window.view3d.image is not None, timeout=WAIT_MS)
        # Hand, grid and frustum are drawn in 3D, and the drawn hand follows the (moving) real hand.
        assert non_background_fraction(window.view3d.image) > 0.02
        seen = window.view3d.image.copy()
        qtbot.waitUntil(lambda: not np.array_equal(window.view3d.image, seen), timeout=WAIT_MS)
        before = window.view3d.image.copy()
        drag(qtbot, window.view3d, QPoint(150, 150), QPoint(250, 170))
        qtbot.waitUntil(
            lambda: np.abs(window.view3d.image.astype(int) - before).sum(axis=2).astype(bool).mean() > 0.05,
            timeout=WAIT_MS,
        )
        # Record a few frames: a playable video with one frame per JSONL line.
        changes: list[tuple[bool, str]] = []
        worker.recording_changed.connect(lambda active, text: changes.append((active, text)))
        window.toggle_recording(True)
        assert window.record_label.isVisibleTo(window)
        qtbot.waitUntil(lambda: window.last_frame is not None and window.last_frame.recording, timeout=WAIT_MS)
        start = window.frames_displayed
        qtbot.waitUntil(lambda: window.frames_displayed >= start + 4, timeout=WAIT_MS)
        window.toggle_recording(False)
        qtbot.waitUntil(lambda: any(not active for active, _ in changes), timeout=WAIT_MS)
    finally:
        window.close()
        qtbot.waitUntil(lambda: gui_threads_alive() == [], timeout=WAIT_MS)
    import multiprocessing

    assert multiprocessing.active_children() == []  # the Open3D renderer process is gone too
    videos, jsonls = sorted(tmp_path.glob("recording_*.mp4")), sorted(tmp_path.glob("recording_*.jsonl"))
    assert len(videos) == 1 and len(jsonls) == 1
    records = read_jsonl(jsonls[0])
    cap = cv2.VideoCapture(str(videos[0]))
    sizes = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        sizes.append(frame.shape)
    cap.release()
    assert len(records) >= 4 and len(sizes) == len(records)
    assert set(sizes) == {(360, 640, 3)}
    assert [r["index"] for r in records] == sorted({r["index"] for r in records})
    assert all(len(r["hands"]) == 1 for r in records)


@pytest.mark.slow
@pytest.mark.skipif(not SAMPLE_CLIP_PATH.is_file(), reason=f"bundled sample clip not generated yet: {SAMPLE_CLIP_PATH}")
def test_window_on_the_bundled_sample_clip(qtbot, tmp_path: Path, xvfb_display: str, real_factory) -> None:
    factory, settings = real_factory
    window = MainWindow(LiveWorker(factory, settings), Open3DLegacyRenderer(), output_dir=tmp_path, source="sample")
    window.resize(1100, 460)
    window.show()
    try:
        qtbot.waitUntil(lambda: window.frames_displayed >= 3, timeout=WAIT_MS)
        first_label = window.fps_label.text()
        qtbot.waitUntil(lambda: window.fps_label.text() != first_label, timeout=WAIT_MS)
        assert processing_fps(window) > 0
        assert "sample_clip" in window.source_label.text()
        qtbot.waitUntil(lambda: window.view3d.image is not None, timeout=WAIT_MS)
    finally:
        window.close()
        qtbot.waitUntil(lambda: gui_threads_alive() == [], timeout=WAIT_MS)


def test_run_gui_without_a_display_explains_what_to_do(monkeypatch, capsys) -> None:
    from app.ui.app import run_gui

    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    assert run_gui(argparse.Namespace()) == 2
    assert "xvfb-run" in capsys.readouterr().err


def test_benchmark_gui_flag_prints_the_windows_own_fps_readout(
    qtbot, tmp_path: Path, xvfb_display: str, monkeypatch, capsys
) -> None:
    from app.ui import app as gui_app

    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (160, 120))
    for i in range(20):
        writer.write(np.full((120, 160, 3), 40 + 5 * i, np.uint8))
    writer.release()
    hand_template()
    monkeypatch.setattr(gui_app, "make_pipeline_factory", lambda args: (lambda settings: FakePipeline()))
    parser = argparse.ArgumentParser()
    from app import cli

    cli.add_run_arguments(parser)
    gui_app.add_gui_arguments(parser)
    args = parser.parse_args(["--source", str(clip), "--benchmark-gui", "2.5", "--output-dir", str(tmp_path),
                              "--gui-screenshot", str(tmp_path / "shot.png"), "--window-size", "900x400"])
    assert gui_app.run_gui(args) == 0
    out = capsys.readouterr().out
    match = re.search(r"processing FPS shown by the window .*: median ([\d.]+)", out)
    assert match and float(match.group(1)) > 5, out
    assert cv2.imread(str(tmp_path / "shot.png")).shape[:2] == (400, 900)
    qtbot.waitUntil(lambda: gui_threads_alive() == [], timeout=WAIT_MS)
