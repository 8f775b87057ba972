"""The live worker (app/ui/worker.py): latest frame wins, one pending result, clean stop, errors,
reopening, settings and recording; with a fake pipeline and in-memory sources (Qt offscreen)."""
from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, TypeVar

import cv2
import pytest
from PyQt6.QtCore import Qt

from app.pipeline import PipelineOptions
from app.recording import read_jsonl
from app.results import FrameResult
from app.smoothing import SmoothingParams
from app.sources import Frame
from app.ui.worker import EngineSettings, LatestSlot, LiveWorker, ProcessedFrame, RateMeter, with_options
from tests.gui_support import STEP_TIMEOUT_S, WAIT_MS, CountingSource, FakePipeline, gui_threads_alive

pytestmark = pytest.mark.gui

T = TypeVar("T")


class Factory:
    """Pipeline factory that remembers what it built."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.built: list[tuple[FakePipeline, EngineSettings]] = []

    def __call__(self, settings: EngineSettings) -> FakePipeline:
        pipeline = FakePipeline(options=settings.options, delay_s=self.delay_s, backend_name=f"fake-{settings.backend}")
        self.built.append((pipeline, settings))
        return pipeline


def wait_until(predicate: Callable[[], bool], timeout: float = STEP_TIMEOUT_S) -> bool:
    """Poll ``predicate`` until it holds (True) or ``timeout`` seconds pass (its last value)."""
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


class Turnstile:
    """A gate a worker thread passes only with a permit the test grants; the test can wait until the
    thread has arrived at the gate ``n`` times (so what it did before arriving is done)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._permits = 0
        self._open = False
        self.arrivals = 0

    def pass_through(self) -> None:
        """Called by the worker thread: count the arrival, then wait for a permit (or an open gate)."""
        with self._cond:
            self.arrivals += 1
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._permits > 0 or self._open)
            if not self._open:
                self._permits -= 1

    def allow(self, n: int = 1) -> None:
        with self._cond:
            self._permits += n
            self._cond.notify_all()

    def open(self) -> None:
        """Let every later arrival through (so the worker can always be stopped)."""
        with self._cond:
            self._open = True
            self._cond.notify_all()

    def wait_arrivals(self, n: int, timeout: float = STEP_TIMEOUT_S) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: self.arrivals >= n, timeout), f"{self.arrivals} arrivals, wanted {n}"


class SteppedSource(CountingSource):
    """An endless live source that delivers a frame only when the test allows one (a camera whose frame
    times the test decides)."""

    def __init__(self) -> None:
        super().__init__(name="stepped")
        self.gate = Turnstile()

    def read(self) -> Frame | None:
        self.gate.pass_through()
        return super().read()

    def deliver(self, clock: "ManualClock", t: float) -> int:
        """Deliver the next frame at time ``t``; returns when the capture thread has stored it in the
        frame slot and counted it (it is back waiting for the next frame)."""
        clock.now = t
        index = self.read_count
        self.gate.allow()
        self.gate.wait_arrivals(index + 2)
        return index


class GatedPipeline(FakePipeline):
    """A fake pipeline whose every ``prepare`` call (the detection half) waits for the test's permit;
    records the frames it started in order."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = Turnstile()
        self.started: list[int] = []

    def prepare(self, frame: Frame) -> Frame:
        self.started.append(frame.index)
        self.gate.pass_through()
        return super().prepare(frame)


class ManualClock:
    """Time in seconds as the test sets it."""

    def __init__(self) -> None:
        self.now = 0.0


class ClockedMeter(RateMeter):
    """A :class:`RateMeter` reading the test's clock instead of ``time.perf_counter``."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__(window_s=100.0)
        self.clock = clock

    def tick(self, now: float | None = None) -> None:
        super().tick(self.clock.now if now is None else now)

    def rate(self, now: float | None = None) -> float:
        return super().rate(self.clock.now if now is None else now)


class ObservedSlot(LatestSlot[T]):
    """A :class:`LatestSlot` that records what was put, so the test can wait for a put."""

    def __init__(self) -> None:
        super().__init__()
        self.puts: list[object] = []
        self._seen = threading.Condition()

    def put(self, item: T) -> bool:
        was_empty = super().put(item)
        with self._seen:
            self.puts.append(item)
            self._seen.notify_all()
        return was_empty

    def wait_puts(self, n: int, timeout: float = STEP_TIMEOUT_S) -> None:
        with self._seen:
            assert self._seen.wait_for(lambda: len(self.puts) >= n, timeout), f"{len(self.puts)} puts, wanted {n}"


class Emissions:
    """Records, for every ``result_ready`` emission, how many results had been put when it came."""

    def __init__(self, slot: ObservedSlot) -> None:
        self.slot = slot
        self.at_put: list[int] = []
        self._cond = threading.Condition()

    def __call__(self) -> None:
        with self._cond:
            self.at_put.append(len(self.slot.puts))
            self._cond.notify_all()

    def wait(self, n: int, timeout: float = STEP_TIMEOUT_S) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.at_put) >= n, timeout), f"{self.at_put}, wanted {n} emissions"


def test_latest_frame_wins_and_gui_never_holds_two_results(qtbot) -> None:
    """Stepped explicitly (no assumption about thread speeds): the source delivers frames while the
    pipeline is busy, the pipeline takes only the newest one, the GUI gets one pending result and one
    ``result_ready`` until it takes it, and the rates are measured on the test's clock."""
    clock = ManualClock()
    pipeline = GatedPipeline()
    worker = LiveWorker(lambda settings: pipeline, realtime=False)
    worker.capture_meter = ClockedMeter(clock)
    worker.processing_meter = ClockedMeter(clock)
    results: ObservedSlot[ProcessedFrame] = ObservedSlot()
    worker._results = results  # white-box: observe every result handed towards the GUI
    emitted = Emissions(results)
    # Direct: recorded on the presenting thread at the moment of emission, with no event loop in between.
    worker.result_ready.connect(emitted, Qt.ConnectionType.DirectConnection)
    source = SteppedSource()
    worker.set_source(lambda: source)
    worker.start()
    try:
        source.deliver(clock, 0.0)
        pipeline.gate.wait_arrivals(1)  # frame 0 is being processed ...
        for i in range(1, 5):           # ... while the camera delivers frames 1-4 (5 fps vs 1 fps)
            source.deliver(clock, 0.2 * i)
        clock.now = 1.0
        pipeline.gate.allow()  # frame 0 done
        results.wait_puts(1)
        pipeline.gate.wait_arrivals(2)
        assert pipeline.started == [0, 4]  # the latest frame wins: 1-3 were overwritten, never queued
        for i in range(5, 9):
            source.deliver(clock, 0.2 * i)
        clock.now = 2.0
        pipeline.gate.allow()  # frame 4 done; the GUI has not taken frame 0's result
        results.wait_puts(2)
        pipeline.gate.wait_arrivals(3)
        assert pipeline.started == [0, 4, 8] and pipeline.processed == [0, 4]
        # Two results were produced, but the GUI holds one (the newest) and was signalled once.
        assert [r.result.index for r in results.puts] == [0, 4] and emitted.at_put[:1] == [1]
        first = worker.take_result()
        assert first is not None and first.result.index == 4 and worker.take_result() is None
        assert first.dropped == 6  # frames 1, 2, 3, 5, 6, 7
        clock.now = 3.0
        pipeline.gate.allow()  # frame 8 done: the slot was empty, so the GUI is signalled again
        emitted.wait(2)
        # Signalled when the first and the third result arrived in an empty slot, not on the replacement.
        assert emitted.at_put == [1, 3] and len(results.puts) == 3
        second = worker.take_result()
        assert second is not None and second.result.index == 8 and worker.take_result() is None
        assert second.dropped == 6 and source.read_count == 9 and pipeline.processed == [0, 4, 8]
        # Capture: 9 frames over 0.0-1.6 s; processing: 3 results at 1, 2 and 3 s (rates at t = 3 s).
        assert second.capture_fps == pytest.approx(8 / 3.0)
        assert second.processing_fps == pytest.approx(1.0)
        assert second.capture_fps > second.processing_fps > 0
    finally:
        source.gate.open()
        pipeline.gate.open()
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
        qtbot.waitUntil(lambda: bool(errors), timeout=WAIT_MS)
        assert "stopped delivering" in errors[0] and lost.closed
        reopened = CountingSource(frames=None, name="camera:0")
        opened: list[str] = []
        worker.source_opened.connect(opened.append)
        worker.set_source(lambda: reopened)
        qtbot.waitUntil(lambda: reopened.read_count > 5, timeout=WAIT_MS)
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
        qtbot.waitUntil(lambda: bool(errors), timeout=WAIT_MS)
        assert "not found" in errors[0].lower()
        worker.set_source(lambda: CountingSource(frames=4, name="four"))
        qtbot.waitUntil(lambda: bool(ended), timeout=WAIT_MS)
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
        qtbot.waitUntil(lambda: ready == ["fake-onnx"], timeout=WAIT_MS)
        smooth_off = with_options(worker.settings, max_hands=1, smoothing=SmoothingParams(enabled=False))
        worker.update_settings(smooth_off)
        first = factory.built[0][0]
        qtbot.waitUntil(lambda: first.option_updates == 1, timeout=WAIT_MS)
        assert first.options.max_hands == 1 and len(factory.built) == 1
        worker.update_settings(replace(smooth_off, backend="torch"))
        qtbot.waitUntil(lambda: ready == ["fake-onnx", "fake-torch"], timeout=WAIT_MS)
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
        qtbot.waitUntil(lambda: bool(errors), timeout=WAIT_MS)
        assert "no CUDA device" in errors[0]
        worker.update_settings(replace(worker.settings, device="cpu"))
        qtbot.waitUntil(lambda: calls == ["cuda", "cpu"], timeout=WAIT_MS)
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
        qtbot.waitUntil(lambda: len(results) >= 2, timeout=WAIT_MS)
        worker.start_recording(tmp_path / "rec.mp4", tmp_path / "rec.jsonl")
        qtbot.waitUntil(lambda: sum(1 for r in results if r.recording) >= 8, timeout=WAIT_MS)
        worker.stop_recording()
        qtbot.waitUntil(lambda: len(changes) == 2, timeout=WAIT_MS)
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
    factory = Factory(delay_s=0.05)
    worker = LiveWorker(factory, realtime=True)
    worker.set_source(lambda: CountingSource())
    worker.start()
    # Stop while frames flow (the pipeline is mid-frame or about to be), not before anything started.
    assert wait_until(lambda: bool(factory.built) and len(factory.built[0][0].processed) >= 2)
    start = time.perf_counter()
    worker.stop()
    worker.stop()
    assert time.perf_counter() - start < 2.0
    assert not any(t.name in ("capture", "processing", "inference", "presenting") for t in threading.enumerate())


class OverlapPipeline(FakePipeline):
    """Records, for each frame's ``finish``, whether ``prepare`` of a later frame ran while it waited
    (up to ``wait_s``), and how many frames were between the two halves whenever the worker changed or
    reset the pipeline. (Not at close: a frame prepared while the worker stops is dropped, by design.)"""

    def __init__(self, wait_s: float) -> None:
        super().__init__()
        self.wait_s = wait_s
        self.cond = threading.Condition()
        self.prepared_up_to = -1
        self.between = 0
        self.overlapped: list[bool] = []
        self.finished: list[int] = []
        self.between_at_changes: list[int] = []

    def prepare(self, frame: Frame) -> Frame:
        with self.cond:
            self.prepared_up_to = max(self.prepared_up_to, frame.index)
            self.between += 1
            self.cond.notify_all()
        return frame

    def finish(self, frame: Frame) -> FrameResult:
        with self.cond:
            self.overlapped.append(self.cond.wait_for(lambda: self.prepared_up_to > frame.index, self.wait_s))
        result = super().finish(frame)
        with self.cond:
            self.finished.append(frame.index)
            self.between -= 1
        return result

    def set_options(self, options: PipelineOptions) -> None:
        self.between_at_changes.append(self.between)
        super().set_options(options)

    def reset(self) -> None:
        self.between_at_changes.append(self.between)
        super().reset()


def test_detection_of_the_next_frame_overlaps_the_network_of_this_one(qtbot) -> None:
    """The processing thread prepares frame n+1 while the inference thread finishes frame n (a
    sequential loop could never satisfy the fake's wait, and every frame would wait it out); frames
    finish once each, in order, and the pipeline is never changed, reset or closed with a frame
    between its two halves."""
    pipeline = OverlapPipeline(wait_s=2.0)
    worker = LiveWorker(lambda settings: pipeline, realtime=False)
    worker.result_ready.connect(worker.take_result)
    worker.set_source(lambda: CountingSource())
    worker.start()
    try:
        qtbot.waitUntil(lambda: len(pipeline.overlapped) >= 6, timeout=WAIT_MS)
        worker.update_settings(with_options(worker.settings, max_hands=1))
        qtbot.waitUntil(lambda: pipeline.option_updates == 1, timeout=WAIT_MS)
        worker.set_source(lambda: CountingSource(name="second"))
        qtbot.waitUntil(lambda: pipeline.resets >= 2, timeout=WAIT_MS)
    finally:
        worker.stop()
    assert all(pipeline.overlapped[:6])
    # every source counts its frames from 0: in order, each once, with one restart at the switch
    order = pipeline.finished
    assert sum(later <= earlier for earlier, later in zip(order, order[1:])) == 1
    assert pipeline.closed and pipeline.between_at_changes and set(pipeline.between_at_changes) == {0}
    assert gui_threads_alive() == []
