"""The live loop behind the window: capture, detection, inference and presenting threads, one pending result.

Practice 5 of DESIGN.md: the latest frame wins (the capture thread overwrites a one-frame slot, so a
slow pipeline drops frames instead of falling behind); the pipeline runs in two stages on two threads,
as the headless runner's ``HandPipeline.run_overlapped`` does: the processing thread runs MediaPipe,
tracking and crops (``prepare``) at most one frame ahead of the inference thread, which runs the
network, DGP and smoothing (``finish``). Both libraries release the interpreter lock, so on two cores
the frame rate approaches ``1 / max(detect, network)`` instead of ``1 / (detect + network)``; frames
still finish in order, each exactly once. A presenting thread draws the 2D overlay and feeds the
recorder for every inferred frame (a queue of two with backpressure, so recordings have every
processed frame while drawing overlaps the next inference), and hands the GUI immutable
:class:`ProcessedFrame` objects through a one-item slot: the GUI never has more than one pending
result, and the ``result_ready`` signal is emitted only when that slot goes from empty to full.

Everything that touches the pipeline, the recorder or the source runs on the worker's own threads;
the GUI thread only posts requests (:meth:`LiveWorker.set_source`, :meth:`LiveWorker.update_settings`,
:meth:`LiveWorker.start_recording` ...), which the threads apply between two frames.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Generic, Protocol, TypeVar

import numpy as np
from PyQt6.QtCore import QObject, pyqtSignal

from app.drawing import DrawOptions, draw_annotated
from app.pipeline import PipelineOptions
from app.recording import Recorder, RecordingError
from app.results import FrameResult
from app.sources import Frame, FrameSource, SourceError

LOG = logging.getLogger(__name__)

T = TypeVar("T")


class LatestSlot(Generic[T]):
    """A thread-safe mailbox holding at most one item; a new item replaces an unread one."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self.replaced = 0

    def put(self, item: T) -> bool:
        """Store ``item``; returns True when the slot was empty (False: an unread item was dropped)."""
        with self._cond:
            was_empty = self._item is None
            if not was_empty:
                self.replaced += 1
            self._item = item
            self._cond.notify_all()
            return was_empty

    def take(self, timeout: float | None = None) -> T | None:
        """Remove and return the item, waiting up to ``timeout`` seconds (None: no wait) for one."""
        with self._cond:
            if self._item is None and timeout:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item

    def clear(self) -> None:
        with self._cond:
            self._item = None

    def wake(self) -> None:
        """Wake a thread blocked in :meth:`take` (used on shutdown)."""
        with self._cond:
            self._cond.notify_all()


class RateMeter:
    """Events per second over a sliding window (``window_s`` seconds) of ``time.perf_counter`` stamps."""

    def __init__(self, window_s: float = 1.5) -> None:
        self.window_s = float(window_s)
        self._stamps: deque[float] = deque()
        self._lock = threading.Lock()
        self.count = 0

    def tick(self, now: float | None = None) -> None:
        now = time.perf_counter() if now is None else now
        with self._lock:
            self._stamps.append(now)
            self.count += 1
            self._trim(now)

    def _trim(self, now: float) -> None:
        while self._stamps and now - self._stamps[0] > self.window_s:
            self._stamps.popleft()

    def rate(self, now: float | None = None) -> float:
        """Events per second in the window ending ``now`` (0 when fewer than two events)."""
        now = time.perf_counter() if now is None else now
        with self._lock:
            self._trim(now)
            if len(self._stamps) < 2:
                return 0.0
            span = max(now - self._stamps[0], self._stamps[-1] - self._stamps[0])
            return (len(self._stamps) - 1) / span if span > 0 else 0.0

    def reset(self) -> None:
        with self._lock:
            self._stamps.clear()


class PipelineLike(Protocol):
    """What the worker needs from :class:`app.pipeline.HandPipeline` (tests pass a fake): ``prepare``
    (detection, tracking, crops) and ``finish`` (network, DGP, smoothing) of one frame, in that order;
    the worker calls ``finish`` of frame n on one thread while ``prepare`` of frame n+1 runs on another,
    and never changes, resets or closes the pipeline while a frame is between the two."""

    options: PipelineOptions

    def prepare(self, frame: Frame) -> Any: ...

    def finish(self, prepared: Any) -> FrameResult: ...

    def set_options(self, options: PipelineOptions) -> None: ...

    def reset(self) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class EngineSettings:
    """Everything the processing thread is configured with; the GUI posts a new one on any change.

    Attributes:
        backend: ``"onnx"`` or ``"torch"``; changing it (or ``device``) rebuilds the pipeline.
        device: ``"cpu"`` or ``"cuda"``.
        options: pipeline options (max hands, 2D cue, smoothing...) applied between frames.
        draw: what the 2D overlay shows (mesh/skeleton/labels, mirror view).
    """

    backend: str = "onnx"
    device: str = "cpu"
    options: PipelineOptions = field(default_factory=PipelineOptions)
    draw: DrawOptions = field(default_factory=DrawOptions)


PipelineFactory = Callable[[EngineSettings], PipelineLike]
"""Builds a pipeline for settings (loads the backend and MediaPipe; may raise typed errors)."""
SourceOpener = Callable[[], FrameSource]
"""Opens a frame source (may raise :class:`app.sources.SourceError`)."""


@dataclass(frozen=True)
class ProcessedFrame:
    """One processed frame as handed to the GUI (never modified after creation).

    Attributes:
        result: the pipeline's result, with ``read`` and ``draw`` timings.
        annotated_bgr: ``(H, W, 3)`` uint8 BGR frame with the 2D overlay (mirrored when asked).
        capture_fps: frames read per second by the capture thread (sliding window).
        processing_fps: frames processed per second by the worker (sliding window).
        dropped: frames the capture thread overwrote before processing, since the source opened.
        source_name: the source's name.
        recording: whether this frame was written to a recording.
    """

    result: FrameResult
    annotated_bgr: np.ndarray
    capture_fps: float
    processing_fps: float
    dropped: int
    source_name: str
    recording: bool


@dataclass(frozen=True)
class _Inferred:
    frame: Frame
    result: FrameResult


@dataclass(frozen=True)
class _Captured:
    frame: Frame
    read_ms: float
    generation: int


@dataclass(frozen=True)
class _Prepared:
    captured: _Captured
    pipeline: PipelineLike
    prepared: Any


class _InFlight:
    """How many frames the processing thread has handed to the inference thread and not yet seen
    finished; the processing thread waits for none before it changes, resets or closes the pipeline."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._count = 0

    def add(self) -> None:
        with self._cond:
            self._count += 1

    def done(self) -> None:
        with self._cond:
            self._count -= 1
            self._cond.notify_all()

    def wait_none(self, timeout: float) -> bool:
        """Block until no frame is in flight or ``timeout`` seconds pass; True when none is."""
        with self._cond:
            return self._cond.wait_for(lambda: self._count == 0, timeout)


class LiveWorker(QObject):
    """Owns the source, the pipeline and the recorder, and runs them on four threads (capture,
    processing: detection and crops, inference: network and smoothing, presenting).

    Args:
        pipeline_factory: builds the pipeline for given settings (called on the processing thread).
        settings: initial settings.
        realtime: pace file and folder sources at their nominal fps (as a camera would deliver them);
            False reads them as fast as the pipeline consumes them.

    Signals:
        result_ready: a :class:`ProcessedFrame` is waiting in :meth:`take_result`.
        error(str): a user-facing error (camera lost, unreadable file, pipeline failure).
        source_opened(str): a source opened (its name).
        source_ended(str): a finite source ended (its name).
        engine_ready(str): the pipeline is built (backend description).
        recording_changed(bool, str): recording started/stopped, with the output description.
    """

    result_ready = pyqtSignal()
    error = pyqtSignal(str)
    source_opened = pyqtSignal(str)
    source_ended = pyqtSignal(str)
    engine_ready = pyqtSignal(str)
    recording_changed = pyqtSignal(bool, str)

    def __init__(
        self,
        pipeline_factory: PipelineFactory,
        settings: EngineSettings = EngineSettings(),
        *,
        realtime: bool = True,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._factory = pipeline_factory
        self._realtime = bool(realtime)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._source_changed = threading.Event()
        self._frames: LatestSlot[_Captured] = LatestSlot()
        self._results: LatestSlot[ProcessedFrame] = LatestSlot()
        self._to_infer: queue.Queue[_Prepared | None] = queue.Queue(maxsize=1)
        self._in_flight = _InFlight()
        self._to_present: queue.Queue[_Inferred | None] = queue.Queue(maxsize=2)
        self._pending_opener: SourceOpener | None = None
        self._pending_settings: EngineSettings | None = settings
        self._settings = settings
        self._recording_request: tuple[str, tuple[Path | None, Path | None]] | None = None
        self._source_name = ""
        self._source_fps = 25.0
        self._generation = 0
        self.capture_meter = RateMeter()
        self.processing_meter = RateMeter()
        self._threads: list[threading.Thread] = []

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the capture, processing, inference and presenting threads (idempotent)."""
        if self._threads:
            return
        self._threads = [
            threading.Thread(target=self._capture_loop, name="capture", daemon=True),
            threading.Thread(target=self._processing_loop, name="processing", daemon=True),
            threading.Thread(target=self._inference_loop, name="inference", daemon=True),
            threading.Thread(target=self._presenting_loop, name="presenting", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the threads, close the source, the pipeline and the recorder (blocks up to ``timeout`` each)."""
        self._stop.set()
        self._source_changed.set()
        self._frames.wake()
        for thread in self._threads:
            thread.join(timeout)
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            LOG.warning("worker threads still running after %.1f s: %s", timeout, alive)
        self._threads = [t for t in self._threads if t.is_alive()]  # `running` stays True while one is busy

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def threads(self) -> tuple[threading.Thread, ...]:
        return tuple(self._threads)

    # -- requests from the GUI -------------------------------------------------------------------

    def set_source(self, opener: SourceOpener) -> None:
        """Switch to the source ``opener`` opens (on the capture thread; errors go to ``error``)."""
        with self._lock:
            self._pending_opener = opener
        self._source_changed.set()

    def update_settings(self, settings: EngineSettings) -> None:
        """Apply new settings before the next frame (rebuilds the pipeline when backend/device change)."""
        with self._lock:
            self._pending_settings = settings

    @property
    def settings(self) -> EngineSettings:
        with self._lock:
            return self._pending_settings or self._settings

    def start_recording(self, video_path: Path | None, jsonl_path: Path | None) -> None:
        """Record the annotated video and/or per-frame JSONL from the next processed frame on."""
        with self._lock:
            self._recording_request = ("start", (video_path, jsonl_path))

    def stop_recording(self) -> None:
        """Finalise the recording (the video is playable once ``recording_changed(False, ...)`` fires)."""
        with self._lock:
            self._recording_request = ("stop", (None, None))

    def recording_request_pending(self) -> str | None:
        """The recording request (``"start"`` or ``"stop"``) not yet applied by the presenting thread."""
        with self._lock:
            return self._recording_request[0] if self._recording_request is not None else None

    def take_result(self) -> ProcessedFrame | None:
        """The pending result, if any (the GUI calls this on ``result_ready``)."""
        return self._results.take()

    # -- capture thread -------------------------------------------------------------------------

    def _capture_loop(self) -> None:
        source: FrameSource | None = None
        paced_start = 0.0
        try:
            while not self._stop.is_set():
                with self._lock:
                    opener, self._pending_opener = self._pending_opener, None
                if opener is not None:
                    if source is not None:
                        source.close()
                        source = None
                    source = self._open(opener)
                    paced_start = time.perf_counter()
                    self._source_changed.clear()
                if source is None:
                    self._source_changed.wait(0.2)
                    self._source_changed.clear()
                    continue
                t0 = time.perf_counter()
                try:
                    frame = source.read()
                except SourceError as err:
                    self.error.emit(str(err))
                    source.close()
                    source = None
                    continue
                read_ms = (time.perf_counter() - t0) * 1e3
                if frame is None:
                    self.source_ended.emit(source.name)
                    source.close()
                    source = None
                    continue
                if self._realtime and not source.is_live:
                    delay = paced_start + frame.t - time.perf_counter()
                    if delay > 0:
                        self._source_changed.wait(delay)
                    elif delay < -0.5:
                        paced_start -= delay  # fell behind (e.g. a loop restart): re-anchor the clock
                self._frames.put(_Captured(frame, read_ms, self._generation))
                self.capture_meter.tick()
        finally:
            if source is not None:
                source.close()

    def _open(self, opener: SourceOpener) -> FrameSource | None:
        try:
            source = opener()
        except (SourceError, OSError, ValueError) as err:
            self.error.emit(str(err))
            return None
        with self._lock:
            self._generation += 1
            self._source_name = source.name
            self._source_fps = float(source.fps)
        self._frames.clear()
        self.capture_meter.reset()
        self.processing_meter.reset()
        self._frames.replaced = 0
        self.source_opened.emit(source.name)
        return source

    # -- processing thread (detection, tracking, crops) ------------------------------------------

    def _processing_loop(self) -> None:
        pipeline: PipelineLike | None = None
        generation = -1
        try:
            while not self._stop.is_set():
                pipeline = self._apply_settings(pipeline)
                captured = self._frames.take(timeout=0.1)
                if captured is None or pipeline is None:
                    continue
                if captured.generation != generation:
                    self._wait_for_inference()
                    pipeline.reset()
                    generation = captured.generation
                try:
                    prepared = pipeline.prepare(captured.frame)
                except Exception as err:  # a failing frame must not kill the live loop; it is shown and logged
                    LOG.exception("processing frame %d failed", captured.frame.index)
                    self.error.emit(f"Processing frame {captured.frame.index} failed: {err}")
                    continue
                self._hand_to_inference(_Prepared(captured, pipeline, prepared))
        finally:
            self._wait_for_inference()
            self._hand_to_inference(None)
            if pipeline is not None:
                pipeline.close()

    def _wait_for_inference(self, timeout: float = 10.0) -> None:
        """Wait until the inference thread has finished every frame handed to it (before the pipeline
        changes, resets or closes); gives up after ``timeout`` seconds (logged) so a stuck backend
        cannot hang a stop."""
        if not self._in_flight.wait_none(timeout):
            LOG.warning("the inference thread did not finish its frame within %.1f s", timeout)

    def _hand_to_inference(self, item: _Prepared | None) -> None:
        """Queue for the inference thread (one frame at most: the processing thread stays one frame ahead)."""
        if item is not None:
            self._in_flight.add()
        if not self._put_until_stopped(self._to_infer, item):
            self._in_flight.done()

    def _put_until_stopped(self, to: "queue.Queue[Any]", item: object) -> bool:
        """Put ``item`` on ``to``, waiting while it is full; a frame is given up (False) only once the
        worker stops, an end marker (None) never."""
        while True:
            try:
                to.put(item, timeout=0.1)
                return True
            except queue.Full:
                if self._stop.is_set() and item is not None:
                    return False

    # -- inference thread (network, DGP, smoothing) ---------------------------------------------

    def _inference_loop(self) -> None:
        try:
            while True:
                try:
                    item = self._to_infer.get(timeout=0.1)
                except queue.Empty:
                    continue
                if item is None:
                    return
                try:
                    self._infer_one(item)
                finally:
                    self._in_flight.done()
        finally:
            self._hand_to_presenter(None)

    def _infer_one(self, item: _Prepared) -> None:
        frame = item.captured.frame
        try:
            result = item.pipeline.finish(item.prepared).with_timing("read", item.captured.read_ms)
        except Exception as err:  # a failing frame must not kill the live loop; it is shown and logged
            LOG.exception("processing frame %d failed", frame.index)
            self.error.emit(f"Processing frame {frame.index} failed: {err}")
            return
        self._hand_to_presenter(_Inferred(frame, result))

    def _hand_to_presenter(self, item: "_Inferred | None") -> None:
        """Queue for the presenter, waiting while it is behind (every processed frame gets drawn and
        recorded; the backpressure slows inference instead of losing frames)."""
        self._put_until_stopped(self._to_present, item)

    def _apply_settings(self, pipeline: PipelineLike | None) -> PipelineLike | None:
        with self._lock:
            settings, self._pending_settings = self._pending_settings, None
        if settings is None:
            return pipeline
        previous, self._settings = self._settings, settings
        rebuild = pipeline is None or (previous.backend, previous.device) != (settings.backend, settings.device)
        if not rebuild:
            if settings.options != pipeline.options:
                self._wait_for_inference()
                pipeline.set_options(settings.options)
            return pipeline
        if pipeline is not None:
            self._wait_for_inference()
            pipeline.close()
        try:
            pipeline = self._factory(settings)
        except Exception as err:  # any failure to build is shown in the window; the loop keeps running
            LOG.exception("could not build the pipeline")
            self.error.emit(f"Could not start the {settings.backend}/{settings.device} backend: {err}")
            return None
        self.engine_ready.emit(str(getattr(pipeline, "backend_name", settings.backend)))
        return pipeline

    # -- presenting thread ----------------------------------------------------------------------

    def _presenting_loop(self) -> None:
        recorder: Recorder | None = None
        try:
            while True:
                recorder = self._apply_recording(recorder)
                try:
                    item = self._to_present.get(timeout=0.1)
                except queue.Empty:
                    continue
                if item is None:
                    return
                recorder = self._present_one(recorder, item)
        finally:
            if recorder is not None:
                self._finish_recording(recorder)

    def _finish_recording(self, recorder: Recorder, failure: BaseException | None = None) -> None:
        """Close ``recorder`` (video finalised, JSONL complete) and tell the GUI; a failed write or close
        is shown as an error naming the cause and what the files keep."""
        try:
            recorder.close()
        except RecordingError as err:
            failure = failure or err
        if failure is not None:
            self.error.emit(f"Recording stopped: {failure}")
        self.recording_changed.emit(False, _describe(recorder))

    def _apply_recording(self, recorder: Recorder | None) -> Recorder | None:
        with self._lock:
            request, self._recording_request = self._recording_request, None
        if request is None:
            return recorder
        action, (video_path, jsonl_path) = request
        if recorder is not None:
            self._finish_recording(recorder)
            recorder = None
        if action == "start":
            try:
                with self._lock:
                    fps = self._source_fps
                recorder = Recorder(video_path, jsonl_path, fps=fps)
            except (OSError, RecordingError) as err:
                self.error.emit(f"Cannot start recording: {err}")
                self.recording_changed.emit(False, "")
                return None
            self.recording_changed.emit(True, _describe(recorder))
        return recorder

    def _present_one(self, recorder: Recorder | None, item: "_Inferred") -> Recorder | None:
        """Draw, record and hand over one frame; returns the recorder (None once a write failed: the
        recording stops there, its files cut back to a common complete point, and the GUI is told)."""
        frame, result = item.frame, item.result
        try:
            t0 = time.perf_counter()
            annotated = draw_annotated(
                frame.bgr, result, options=self._settings.draw, fps=self.processing_meter.rate()
            )
            result = result.with_timing("draw", (time.perf_counter() - t0) * 1e3)
        except Exception as err:  # a failing frame must not kill the live loop; it is shown and logged
            LOG.exception("drawing frame %d failed", frame.index)
            self.error.emit(f"Drawing frame {frame.index} failed: {err}")
            return recorder
        if recorder is not None:
            try:
                recorder.write(result, annotated)  # video time stamps from result.t: real speed
            except Exception as err:  # disk full, unwritable file...: stop this recording, keep the loop
                if not isinstance(err, RecordingError):
                    LOG.exception("recording frame %d failed", frame.index)
                self._finish_recording(recorder, err)
                recorder = None
        self.processing_meter.tick()
        processed = ProcessedFrame(
            result=result,
            annotated_bgr=annotated,
            capture_fps=self.capture_meter.rate(),
            processing_fps=self.processing_meter.rate(),
            dropped=self._frames.replaced,
            source_name=self._source_name,
            recording=recorder is not None,
        )
        if self._results.put(processed):
            self.result_ready.emit()
        return recorder


def _describe(recorder: Recorder) -> str:
    parts = []
    if recorder.video is not None:
        parts.append(f"{recorder.video.path} ({recorder.video.frames_written} frames)")
    if recorder.jsonl is not None:
        parts.append(f"{recorder.jsonl.path} ({recorder.jsonl.records_written} lines)")
    return ", ".join(parts)


def with_draw(settings: EngineSettings, **changes: object) -> EngineSettings:
    """``settings`` with some :class:`DrawOptions` fields replaced."""
    return replace(settings, draw=replace(settings.draw, **changes))


def with_options(settings: EngineSettings, **changes: object) -> EngineSettings:
    """``settings`` with some :class:`PipelineOptions` fields replaced."""
    return replace(settings, options=replace(settings.options, **changes))
