"""The live worker (app/ui/worker.py): latest frame wins, one pending result, clean stop, errors,
reopening, settings and recording; with a fake pipeline and in-memory sources (Qt offscreen)."""
from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path

import cv2
import pytest

from app.recording import read_jsonl
from app.smoothing import SmoothingParams
from app.ui.worker import EngineSettings, LatestSlot, LiveWorker, RateMeter, with_options
from tests.gui_support import CountingSource, FakePipeline, gui_threads_alive

pytestmark = pytest.mark.gui


class Factory:
    """Pipeline factory that remembers what it built."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.built: list[tuple[FakePipeline, EngineSettings]] = []

    def __call__(self, settings: EngineSettings) -> FakePipeline:
        pipeline = FakePipeline(options=settings.options, delay_s=self.delay_s, backend_name=f"fake-{settings.backend}")
        self.built.append((pipeline, settings))
        return pipeline


def wait_until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_latest_slot_keeps_one_item_and_counts_drops() -> None:
    slot: LatestSlot[int] = LatestSlot()
    assert slot.put(1) is True
    assert slot.put(2) is False and slot.put(3) is False
    assert slot.replaced == 2
    assert slot.take() == 3 and slot.take() is None
    start = time.perf_counter()
    assert slot.take(timeout=0.05) is None
    assert time.perf_counter() - start >= 0.04


def test_rate_meter_measures_a_steady_rate() -> None:
    meter = RateMeter(window_s=1.0)
    for i in range(21):
        meter.tick(100.0 + i * 0.05)
    assert meter.rate(now=101.0) == pytest.approx(20.0, rel=0.01)
    assert meter.rate(now=110.0) == 0.0


def test_latest_frame_wins_and_gui_never_holds_two_results(qtbot) -> None:
    factory = Factory(delay_s=0.03)
    worker = LiveWorker(factory, realtime=False)
    emitted = []
    worker.result_ready.connect(lambda: emitted.append(1))
    source = CountingSource()
    worker.set_source(lambda: source)
    worker.start()
    try:
        qtbot.waitUntil(lambda: len(emitted) >= 1, timeout=5000)
        # The GUI does not consume: results pile up in the worker, but only one is pending and the
        # signal is not emitted again until it is taken.
        pipeline = factory.built[0][0]
        qtbot.waitUntil(lambda: len(pipeline.processed) >= 5, timeout=5000)
        assert len(emitted) == 1
        first = worker.take_result()
        assert first is not None and worker.take_result() is None
        assert first.result.index >= pipeline.processed[2]  # the newest result, not the first one
        qtbot.waitUntil(lambda: len(emitted) == 2, timeout=5000)
        # The capture thread outruns the 30 ms pipeline: frames were dropped, never queued.
        assert source.read_count > 2 * len(pipeline.processed)
        second = worker.take_result()
        assert second is not None and second.dropped > 0
        assert second.capture_fps > second.processing_fps > 0
    finally:
        worker.stop()
    assert not worker.running and source.closed and pipeline.closed
    assert gui_threads_alive() == []


def test_source_error_is_reported_and_a_lost_camera_can_be_reopened(qtbot) -> None:
    worker = LiveWorker(Factory(), realtime=False)
    errors: list[str] = []
    worker.error.connect(errors.append)
    worker.result_ready.connect(worker.take_result)
    lost = CountingSource(fail_after=3, name="camera:0")
    worker.set_source(lambda: lost)
    worker.start()
    try:
        qtbot.waitUntil(lambda: bool(errors), timeout=5000)
        assert "stopped delivering" in errors[0] and lost.closed
        reopened = CountingSource(frames=None, name="camera:0")
        opened: list[str] = []
        worker.source_opened.connect(opened.append)
        worker.set_source(lambda: reopened)
        qtbot.waitUntil(lambda: reopened.read_count > 5, timeout=5000)
        assert opened == ["camera:0"]
    finally:
        worker.stop()
    assert gui_threads_alive() == []


def test_unopenable_source_and_finite_source_end_are_signalled(qtbot, tmp_path: Path) -> None:
    from app.sources import open_source

    worker = LiveWorker(Factory(), realtime=False)
    errors: list[str] = []
    ended: list[str] = []
    worker.error.connect(errors.append)
    worker.source_ended.connect(ended.append)
    worker.result_ready.connect(worker.take_result)
    worker.set_source(lambda: open_source(tmp_path / "missing.mp4"))
    worker.start()
    try:
        qtbot.waitUntil(lambda: bool(errors), timeout=5000)
        assert "not found" in errors[0].lower()
        worker.set_source(lambda: CountingSource(frames=4, name="four"))
        qtbot.waitUntil(lambda: bool(ended), timeout=5000)
        assert ended == ["four"]
    finally:
        worker.stop()


def test_settings_rebuild_only_when_backend_changes(qtbot) -> None:
    factory = Factory()
    worker = LiveWorker(factory, EngineSettings(backend="onnx"), realtime=False)
    ready: list[str] = []
    worker.engine_ready.connect(ready.append)
    worker.result_ready.connect(worker.take_result)
    worker.set_source(lambda: CountingSource())
    worker.start()
    try:
        qtbot.waitUntil(lambda: ready == ["fake-onnx"], timeout=5000)
        smooth_off = with_options(worker.settings, max_hands=1, smoothing=SmoothingParams(enabled=False))
        worker.update_settings(smooth_off)
        first = factory.built[0][0]
        qtbot.waitUntil(lambda: first.option_updates == 1, timeout=5000)
        assert first.options.max_hands == 1 and len(factory.built) == 1
        worker.update_settings(replace(smooth_off, backend="torch"))
        qtbot.waitUntil(lambda: ready == ["fake-onnx", "fake-torch"], timeout=5000)
        assert first.closed and factory.built[1][1].options.max_hands == 1
    finally:
        worker.stop()


def test_failing_pipeline_factory_is_reported_not_fatal(qtbot) -> None:
    calls = []

    def factory(settings: EngineSettings) -> FakePipeline:
        calls.append(settings.device)
        if settings.device == "cuda":
            raise RuntimeError("no CUDA device")
        return FakePipeline()

    worker = LiveWorker(factory, EngineSettings(device="cuda"), realtime=False)
    errors: list[str] = []
    worker.error.connect(errors.append)
    worker.result_ready.connect(worker.take_result)
    worker.set_source(lambda: CountingSource())
    worker.start()
    try:
        qtbot.waitUntil(lambda: bool(errors), timeout=5000)
        assert "no CUDA device" in errors[0]
        worker.update_settings(replace(worker.settings, device="cpu"))
        qtbot.waitUntil(lambda: calls == ["cuda", "cpu"], timeout=5000)
    finally:
        worker.stop()


def test_recording_writes_one_jsonl_line_and_one_video_frame_per_processed_frame(qtbot, tmp_path: Path) -> None:
    factory = Factory(delay_s=0.01)
    worker = LiveWorker(factory, realtime=False)
    results = []
    worker.result_ready.connect(lambda: results.append(worker.take_result()))
    changes: list[tuple[bool, str]] = []
    worker.recording_changed.connect(lambda active, text: changes.append((active, text)))
    worker.set_source(lambda: CountingSource(size=(160, 120)))
    worker.start()
    try:
        qtbot.waitUntil(lambda: len(results) >= 2, timeout=5000)
        worker.start_recording(tmp_path / "rec.mp4", tmp_path / "rec.jsonl")
        qtbot.waitUntil(lambda: sum(1 for r in results if r.recording) >= 8, timeout=5000)
        worker.stop_recording()
        qtbot.waitUntil(lambda: len(changes) == 2, timeout=5000)
    finally:
        worker.stop()
    assert changes[0][0] is True and changes[1][0] is False
    records = read_jsonl(tmp_path / "rec.jsonl")
    indices = [r["index"] for r in records]
    assert len(records) >= 8
    # Every frame the pipeline processed while recording has its line, in order, none missing.
    processed = factory.built[0][0].processed
    first = processed.index(indices[0])
    assert indices == processed[first:first + len(indices)]
    assert all(len(r["hands"]) == 1 for r in records)
    cap = cv2.VideoCapture(str(tmp_path / "rec.mp4"))
    frames = 0
    while cap.read()[0]:
        frames += 1
    cap.release()
    assert frames == len(records)
    assert f"({len(records)} lines)" in changes[1][1]


def test_stop_is_prompt_and_idempotent() -> None:
    worker = LiveWorker(Factory(delay_s=0.05), realtime=True)
    worker.set_source(lambda: CountingSource())
    worker.start()
    time.sleep(0.2)
    start = time.perf_counter()
    worker.stop()
    worker.stop()
    assert time.perf_counter() - start < 2.0
    assert not any(t.name in ("capture", "processing", "presenting") for t in threading.enumerate())
