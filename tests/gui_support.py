"""Shared helpers of the GUI tests (tests/test_gui_*.py): a private Xvfb display for Open3D, a fake
pipeline producing a moving hand, and sources for the worker.

Qt runs on the ``offscreen`` platform in every GUI test (set before the QApplication exists);
Open3D's legacy visualizer needs an X display, which the session fixture :func:`xvfb_display`
provides with a private Xvfb server (skipped when Xvfb is not installed).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from app.pipeline import PipelineOptions
from app.results import FrameResult, HandResult
from app.sources import Frame, SourceError

# Before any QApplication is created (pytest-qt creates it lazily in the first test that needs it).
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# One llvmpipe thread: the machine running the tests has two cores.
os.environ.setdefault("LP_NUM_THREADS", "1")

GUI_THREAD_NAMES: tuple[str, ...] = ("capture", "processing", "inference", "presenting", "scene-render")

STEP_TIMEOUT_S = 60.0
"""How long a GUI test waits for a worker thread or the window to reach its next step: a deadlock guard
only (each step is milliseconds to a few seconds of work), never a speed target."""
WAIT_MS = int(STEP_TIMEOUT_S * 1000)
"""The same guard for ``qtbot.waitUntil`` (milliseconds): how long a loaded machine may take, not how
long the worker should take."""


def _free_display_number() -> int:
    for number in range(87, 400):
        if not Path(f"/tmp/.X11-unix/X{number}").exists() and not Path(f"/tmp/.X{number}-lock").exists():
            return number
    raise RuntimeError("no free X display number between :87 and :399")


@pytest.fixture(scope="session")
def xvfb_display() -> Iterator[str]:
    """Start a private Xvfb server for the session and point ``DISPLAY`` at it."""
    exe = shutil.which("Xvfb")
    if exe is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb); the Open3D view needs an X display")
    number = _free_display_number()
    proc = subprocess.Popen(
        [exe, f":{number}", "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    socket = Path(f"/tmp/.X11-unix/X{number}")
    deadline = time.monotonic() + 10.0
    while not socket.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if not socket.exists():
        proc.kill()
        pytest.skip(f"Xvfb did not start on :{number}")
    previous = os.environ.get("DISPLAY")
    os.environ["DISPLAY"] = f":{number}"
    try:
        yield f":{number}"
    finally:
        if previous is None:
            os.environ.pop("DISPLAY", None)
        else:
            os.environ["DISPLAY"] = previous
        proc.terminate()
        try:
            proc.wait(5.0)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(autouse=True, scope="session")
def private_qt_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Settings the window remembers (QSettings) go to a temporary folder, never the user's own."""
    try:
        from PyQt6.QtCore import QSettings
    except ImportError:  # a machine without Qt (e.g. the GPU image) has no window settings to protect
        yield
        return
    QSettings.setPath(QSettings.Format.NativeFormat, QSettings.Scope.UserScope, str(tmp_path_factory.mktemp("qt_settings")))
    yield


def gui_threads_alive() -> list[str]:
    """Names of live threads started by the GUI code (worker and renderer)."""
    import threading

    return [t.name for t in threading.enumerate() if t.is_alive() and t.name.startswith(GUI_THREAD_NAMES)]


@lru_cache(maxsize=1)
def hand_template() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The project's hand model at rest, turned to face a camera: ``(V, 3)`` vertices and ``(21, 3)``
    joints relative to the wrist in camera axes (metres; fingers up = -y), ``(F, 3)`` faces."""
    from models.hand.asset import load_hand_asset

    asset = load_hand_asset()
    # Hand frame -> camera (a rotation of pi about z): fingers (+y) point up (-y_cam), the palm (-z)
    # faces the camera, the thumb (-x) is on the image's right, as for a raised right hand.
    R = np.diag([-1.0, -1.0, 1.0])
    verts = np.asarray(asset.template_vertices, np.float64) @ R.T
    joints = np.asarray(asset.rest_joints, np.float64) @ R.T
    return verts.astype(np.float32), joints.astype(np.float32), np.asarray(asset.faces, np.int64)


def hand_at(translation: tuple[float, float, float], K: np.ndarray) -> HandResult:
    """A right hand of the template whose wrist is at ``translation`` (camera metres)."""
    verts_rel, joints_rel, _ = hand_template()
    t = np.asarray(translation, np.float32)
    joints = joints_rel + t
    uv = joints[:, :2] / joints[:, 2:3] * np.diag(K)[:2] + K[:2, 2]
    box = np.concatenate([uv.min(0) - 10, uv.max(0) + 10]).astype(np.float32)
    return HandResult(
        track_id=0,
        handedness="right",
        detection_score=0.9,
        confidence=0.8,
        box_img=box,
        landmarks_img=uv.astype(np.float32),
        joints_img=uv.astype(np.float32),
        joints_cam=joints,
        vertices_cam=verts_rel + t,
        translation_cam=t,
        dgp_weights=np.full(21, 0.8, np.float32),
    )


@dataclass
class FakePipeline:
    """Stands in for :class:`app.pipeline.HandPipeline`: one hand sweeping left to right with the frame
    index, ``delay_s`` of 'work' per frame; records what the worker did to it."""

    options: PipelineOptions = field(default_factory=PipelineOptions)
    delay_s: float = 0.0
    backend_name: str = "fake-backend"
    processed: list[int] = field(default_factory=list)
    resets: int = 0
    closed: bool = False
    option_updates: int = 0

    def prepare(self, frame: Frame) -> Frame:
        """The detection half (nothing to detect here): the worker hands the returned object to :meth:`finish`."""
        return frame

    def process(self, frame: Frame) -> FrameResult:
        return self.finish(self.prepare(frame))

    def finish(self, frame: Frame) -> FrameResult:
        if self.delay_s:
            time.sleep(self.delay_s)
        self.processed.append(frame.index)
        height, width = frame.bgr.shape[:2]
        f = 0.5 * width / np.tan(np.radians(30.0))
        K = np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])
        x = -0.12 + 0.02 * (frame.index % 13)
        hand = hand_at((x, 0.06, 0.45), K)
        return FrameResult(
            index=frame.index,
            t=frame.t,
            image_size=(width, height),
            K=K,
            dist=np.zeros(0),
            intrinsics_assumed=True,
            hands=(hand,),
            faces_right=hand_template()[2],
            timings_ms={"detect": 1.0, "network": 2.0},
            backend=self.backend_name,
        )

    def set_options(self, options: PipelineOptions) -> None:
        self.options = options
        self.option_updates += 1

    def reset(self) -> None:
        self.resets += 1

    def close(self) -> None:
        self.closed = True


class CountingSource:
    """A finite or endless source of small grey frames at 30 fps; ``fail_after`` makes it raise like a
    lost camera; ``live=False`` lets the worker pace it like a file.

    A live source blocks in :meth:`read` until its next frame is due, as a camera does. Without that the
    worker's capture thread spins, taking the frame slot's lock and the interpreter lock thousands of
    times a second, and on a loaded 2-core machine the threads that process and present frames were
    starved to about one result per second.
    """

    def __init__(self, *, frames: int | None = None, fail_after: int | None = None, size: tuple[int, int] = (160, 120),
                 name: str = "counting", live: bool = True) -> None:
        self.name = name
        self.is_live = live
        self._frames = frames
        self._fail_after = fail_after
        self._size = size
        self.read_count = 0
        self.closed = False
        self._first_read_at: float | None = None

    @property
    def fps(self) -> float:
        return 30.0

    def read(self) -> Frame | None:
        if self._fail_after is not None and self.read_count >= self._fail_after:
            raise SourceError(f"{self.name} stopped delivering frames")
        if self._frames is not None and self.read_count >= self._frames:
            return None
        if self.is_live:
            now = time.perf_counter()
            if self._first_read_at is None:
                self._first_read_at = now
            due = self._first_read_at + self.read_count / self.fps
            if due > now:
                time.sleep(due - now)
        image = np.full((self._size[1], self._size[0], 3), 90 + self.read_count % 50, np.uint8)
        frame = Frame(bgr=image, t=self.read_count / self.fps, index=self.read_count)
        self.read_count += 1
        return frame

    def close(self) -> None:
        self.closed = True

    def __iter__(self):  # pragma: no cover - protocol completeness
        return iter(self.read, None)

    def __enter__(self) -> "CountingSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
