"""Misuse and fault battery of the recorder (app/recording.py) and of the desktop app's signal handling.

One test per case; each failed on the OpenCV-based recorder it replaced: a recording killed (SIGKILL,
SIGTERM) must decode up to its last fragment with the JSONL in step; Ctrl-C / SIGTERM of the GUI must
finalise the recording and exit 130 / 0; a full disk (here a file size limit, RLIMIT_FSIZE, in a child
process) must leave a playable video and whole JSONL lines with a one-line error; timestamps are real
(variable frame rate); bad paths, codecs and frame sizes give :class:`RecordingError` naming the cause.
"""
from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest

from app.recording import DEFAULT_FRAGMENT_S, Recorder, RecordingError, VideoRecorder, read_jsonl
from models.paths import REPO_ROOT
from tests.recording_child import frame_times, synthetic_image, synthetic_result

CHILD_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


# -- helpers ----------------------------------------------------------------------------------------


def decode(path: Path) -> tuple[list[float], list[np.ndarray]]:
    """Presentation times (s) and BGR images of every frame PyAV decodes from ``path``."""
    times, images = [], []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            times.append(float(frame.time))
            images.append(frame.to_ndarray(format="bgr24"))
    return times, images


def jsonl_lines(path: Path) -> list[dict[str, Any]]:
    """Records of ``path``; asserts that the file holds only whole lines (it ends with a newline)."""
    data = path.read_bytes()
    assert data == b"" or data.endswith(b"\n"), f"cut last line: {data[-80:]!r}"
    return read_jsonl(path)


def assert_in_step(times: list[float], records: list[dict[str, Any]], *, exact: bool) -> None:
    """Video frames and JSONL lines match one to one (the video may lead by less than one fragment
    unless ``exact``), and each frame is shown at its record's time stamp minus the first one."""
    assert records, "no JSONL line"
    assert len(times) >= len(records)
    if exact:
        assert len(times) == len(records)
    else:
        extra = times[len(records) - 1:]
        assert extra[-1] - extra[0] <= DEFAULT_FRAGMENT_S + 0.05, (len(times), len(records))
    t0 = records[0]["t"]
    expected = [r["t"] - t0 for r in records]
    np.testing.assert_allclose(times[:len(records)], expected, atol=2e-3)


def wait_for_lines(proc: subprocess.Popen, jsonl: Path, count: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if jsonl.is_file() and jsonl.read_bytes().count(b"\n") >= count:
            return
        time.sleep(0.05)
    out, err = proc.communicate(timeout=10) if proc.poll() is not None else (b"", b"")
    raise AssertionError(f"the child did not write {count} lines (exit {proc.poll()}): {err.decode()[-2000:]}")


def start_recording_child(tmp_path: Path, *extra: str, codec: str = "h264") -> tuple[subprocess.Popen, Path, Path]:
    video, jsonl = tmp_path / ("rec.avi" if codec == "mjpg" else "rec.mp4"), tmp_path / "rec.jsonl"
    cmd = [sys.executable, "-m", "tests.recording_child", str(video), str(jsonl), "--codec", codec, *extra]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=CHILD_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return proc, video, jsonl


def finish(proc: subprocess.Popen, timeout: float = 60.0) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, err.decode()


# -- the process dies while recording ---------------------------------------------------------------


@pytest.mark.parametrize(("sig", "codec"), [(signal.SIGKILL, "h264"), (signal.SIGTERM, "h264"), (signal.SIGKILL, "mjpg")],
                         ids=["kill-9", "sigterm-default", "kill-9-mjpg-avi"])
def test_killed_recording_plays_up_to_its_last_fragment(tmp_path: Path, sig: signal.Signals, codec: str) -> None:
    """No handler runs (SIGKILL; SIGTERM with Python's default action): the fragmented MP4 decodes up
    to its last flushed fragment (the AVI up to its last frame) and the JSONL holds one whole line per
    frame, at most one fragment behind."""
    proc, video, jsonl = start_recording_child(tmp_path, "--mode", "plain", codec=codec)
    wait_for_lines(proc, jsonl, 30)
    proc.send_signal(sig)
    code, err = finish(proc)
    assert code == -sig, err[-2000:]
    times, images = decode(video)
    records = jsonl_lines(jsonl)
    assert len(records) >= 30 and len(times) >= 30
    assert_in_step(times, records, exact=False)
    if codec == "mjpg":
        assert len(times) - len(records) <= 1  # every frame is flushed as it is written
    assert {img.shape for img in images} == {(120, 160, 3)}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_signal_with_graceful_stop_finalises_both_files(tmp_path: Path, sig: signal.Signals) -> None:
    """The headless loop's handling (GracefulStop): stop between two frames, close: every frame has its
    line, and the frames keep their real (variable) time stamps."""
    proc, video, jsonl = start_recording_child(tmp_path, "--mode", "graceful")
    wait_for_lines(proc, jsonl, 20)
    proc.send_signal(sig)
    code, err = finish(proc)
    assert code == 130, err[-2000:]
    assert "Traceback" not in err
    times, _ = decode(video)
    assert_in_step(times, jsonl_lines(jsonl), exact=True)


def test_full_disk_keeps_a_playable_video_and_whole_lines(tmp_path: Path) -> None:
    """Writes beyond a file size limit fail (EFBIG, as ENOSPC on a full disk): the run stops with one
    line naming the cause and what was kept; both files end at a common complete point."""
    proc, video, jsonl = start_recording_child(tmp_path, "--noise", "--fsize", "400000", "--pace", "0")
    code, err = finish(proc)
    assert code == 2, err[-2000:]
    assert "Traceback" not in err
    assert err.startswith("error: ") and "the file size limit was reached" in err and "Kept " in err
    times, _ = decode(video)
    records = jsonl_lines(jsonl)
    assert len(times) >= 2 and video.stat().st_size <= 400000
    assert_in_step(times, records, exact=True)
    assert f"{len(times)} frames" in err and f"{len(records)} lines" in err


class _FillingFile:
    """Stands in for an open file on a disk with ``budget`` bytes left: the write that crosses it
    writes what fits, then fails with ENOSPC (as a real ``write`` on a full disk does)."""

    def __init__(self, handle: Any, budget: int) -> None:
        self._handle = handle
        self.budget = budget

    def write(self, data):  # noqa: ANN001 - str (old text handle) or bytes-like
        if len(data) > self.budget:
            self._handle.write(data[:self.budget])
            self._handle.flush()
            self.budget = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self.budget -= len(data)
        return self._handle.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)


def test_full_disk_never_leaves_a_cut_jsonl_line(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    recorder = Recorder(None, path)
    recorder.jsonl._handle = _FillingFile(recorder.jsonl._handle, budget=1500)
    written = 0
    with pytest.raises(RecordingError, match="the disk is full") as info:
        for index, t in frame_times(50):
            recorder.write(synthetic_result(index, t, (160, 120)))
            written += 1
    recorder.close()
    records = jsonl_lines(path)
    assert len(records) == written >= 1
    assert f"{written} lines" in str(info.value)
    with pytest.raises(RecordingError, match="stopped"):
        recorder.write(synthetic_result(999, 99.0, (160, 120)))


def test_full_disk_on_the_jsonl_cuts_the_video_back_to_match(tmp_path: Path) -> None:
    video, jsonl = tmp_path / "rec.mp4", tmp_path / "rec.jsonl"
    recorder = Recorder(video, jsonl, fragment_s=0.2)
    recorder.jsonl._handle = _FillingFile(recorder.jsonl._handle, budget=2500)
    with pytest.raises(RecordingError, match="the disk is full"):
        for index, t in frame_times(200):
            result = synthetic_result(index, t, (160, 120))
            recorder.write(result, synthetic_image(index, (160, 120), None))
    recorder.close()
    times, _ = decode(video)
    assert_in_step(times, jsonl_lines(jsonl), exact=True)


# -- time stamps ------------------------------------------------------------------------------------


def test_frames_keep_their_time_stamps(tmp_path: Path) -> None:
    """Variable frame rate: frames at 0, 0.04 and 0.5 s play at 0, 0.04 and 0.5 s (not 3 frames at 25 fps);
    a clock that goes back (another source) continues one nominal frame later."""
    path = tmp_path / "vfr.mp4"
    with VideoRecorder(path, fps=25.0) as rec:
        for k, t in enumerate([10.0, 10.04, 10.5, 3.0, 3.1]):
            rec.write(np.full((48, 64, 3), 40 * k, np.uint8), t)
    times, _ = decode(path)
    np.testing.assert_allclose(times, [0.0, 0.04, 0.5, 0.54, 0.64], atol=1e-3)


def test_mjpg_avi_keeps_time_stamps_and_every_frame(tmp_path: Path) -> None:
    path = tmp_path / "vfr.avi"
    rec = VideoRecorder(path, codec="mjpg")
    for k, t in enumerate([0.0, 0.04, 0.5]):
        rec.write(np.full((48, 64, 3), 60 * k, np.uint8), t)
    assert rec.frames_saved == 3  # each frame is flushed as it is written
    rec.close()
    times, _ = decode(path)
    np.testing.assert_allclose(times, [0.0, 0.04, 0.5], atol=1e-2)


# -- bad paths, codecs, frames ----------------------------------------------------------------------


def _unprivileged_prefix() -> list[str]:
    """A command prefix that runs without root's permission override (empty when not root)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: a read-only folder cannot be simulated")
    caps = "-dac_override,-dac_read_search"
    return [setpriv, f"--bounding-set={caps}", f"--inh-caps={caps}"]


@pytest.mark.parametrize("target", ["ro/out.mp4", "ro/new/out.mp4", "ro/new/out.jsonl"])
def test_read_only_folder_is_a_typed_error(target: str) -> None:
    """A read-only folder (or one that cannot be created in it) is refused at construction, before any
    frame, with the cause; root's permission override is dropped for the check (setpriv)."""
    base = Path(tempfile.mkdtemp(prefix="ro-recording-"))
    try:
        (base / "ro").mkdir()
        (base / "ro").chmod(0o555)
        code = (
            "import sys\n"
            "from app.recording import Recorder, RecordingError\n"
            "p = sys.argv[1]\n"
            "try:\n"
            "    r = Recorder(None, p) if p.endswith('.jsonl') else Recorder(p, None)\n"
            "    import numpy as np; from tests.recording_child import synthetic_result as s\n"
            "    r.write(s(0, 0.0, (32, 32)), np.zeros((32, 32, 3), np.uint8)); r.close()\n"
            "except RecordingError as err:\n"
            "    print('RecordingError:', err); sys.exit(3)\n"
        )
        cmd = [*_unprivileged_prefix(), sys.executable, "-c", code, str(base / target)]
        proc = subprocess.run(cmd, cwd=REPO_ROOT, env=CHILD_ENV, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 3, proc.stdout + proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr
        assert "permission denied" in proc.stdout and "writable folder" in proc.stdout
        assert "check that the folder is writable" not in proc.stdout
    finally:
        (base / "ro").chmod(0o755)
        shutil.rmtree(base)


@pytest.mark.parametrize("kind", ["video", "jsonl", "mesh"])
def test_a_file_in_place_of_the_folder_is_a_typed_error(tmp_path: Path, kind: str) -> None:
    """``out.txt/rec.mp4`` where ``out.txt`` is a file: one error naming the cause, no traceback."""
    (tmp_path / "out.txt").write_text("not a folder")
    folder = tmp_path / "out.txt"
    with pytest.raises(RecordingError, match="a part of the path is a file|cannot create the folder"):
        if kind == "video":
            Recorder(folder / "rec.mp4", None)
        elif kind == "jsonl":
            Recorder(None, folder / "rec.jsonl")
        else:
            from app.recording import export_meshes
            from tests.gui_support import FakePipeline

            result = FakePipeline().process(synthetic_frame())
            export_meshes(result, folder / "hands.ply")


def synthetic_frame():
    from app.sources import Frame

    return Frame(bgr=np.zeros((120, 160, 3), np.uint8), t=0.0, index=0)


@pytest.mark.parametrize(("codec", "match"), [("mp4v", "no longer offered"), ("xvid", "no longer offered"),
                                               ("divx3", "unknown video codec")])
def test_removed_and_unknown_codecs_are_refused(tmp_path: Path, codec: str, match: str) -> None:
    with pytest.raises(RecordingError, match=match) as info:
        VideoRecorder(tmp_path / "x.mp4", codec=codec)
    assert "h264" in str(info.value) and "mjpg" in str(info.value)


@pytest.mark.parametrize(("name", "match"), [("out", "no suffix; name it out.mp4"),
                                              ("out.avi", "choose the mjpg codec"),
                                              ("folder", "is a folder")])
def test_bad_video_names_are_refused_before_the_first_frame(tmp_path: Path, name: str, match: str) -> None:
    (tmp_path / "folder").mkdir()
    with pytest.raises(RecordingError, match=match):
        VideoRecorder(tmp_path / name)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.avi").exists()


@pytest.mark.parametrize(("width", "height"), [(1, 1), (321, 241), (64, 33)])
def test_odd_and_tiny_frames_are_padded_not_refused(tmp_path: Path, width: int, height: int) -> None:
    """H.264 4:2:0 needs even sizes: an odd size is padded by one row/column repeating the edge."""
    path = tmp_path / "odd.mp4"
    image = np.zeros((height, width, 3), np.uint8)
    image[:, :] = (30, 140, 220)
    with VideoRecorder(path) as rec:
        rec.write(image)
        rec.write(image)
    times, images = decode(path)
    assert len(times) == 2
    assert images[0].shape == (height + height % 2, width + width % 2, 3)
    assert np.abs(images[0].astype(int) - (30, 140, 220)).max() <= 12  # the padding repeats the edge


# -- the desktop app: signals and recording ---------------------------------------------------------


def _clip(path: Path, frames: int = 60, fps: float = 30.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (160, 120))
    for k in range(frames):
        img = np.full((120, 160, 3), 70, np.uint8)
        cv2.circle(img, (20 + 2 * k, 60), 12, (0, 200, 255), -1)
        writer.write(img)
    writer.release()
    return path


def _start_gui(tmp_path: Path, *extra: str) -> subprocess.Popen:
    env = {**CHILD_ENV, "QT_QPA_PLATFORM": "offscreen"}
    env.pop("DISPLAY", None)
    cmd = [sys.executable, "-m", "tests.gui_signal_child", str(tmp_path / "out"),
           "--source", str(_clip(tmp_path / "clip.avi")), *extra]
    return subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.gui
@pytest.mark.parametrize(("sig", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 0)], ids=["sigint", "sigterm"])
def test_gui_signal_closes_like_the_window_and_finalises_the_recording(
    tmp_path: Path, sig: signal.Signals, exit_code: int
) -> None:
    """Ctrl-C / SIGTERM while the GUI records: the window closes as with its close button, the video is
    finished with one frame per JSONL line at the frames' own times (real speed: the fake pipeline is
    slower than the 30 fps clip, so frames are skipped), exit 130 / 0, no traceback."""
    proc = _start_gui(tmp_path, "--record", "--delay-s", "0.06")
    try:
        deadline = time.monotonic() + 90.0
        jsonls: list[Path] = []
        while time.monotonic() < deadline and proc.poll() is None:
            jsonls = sorted((tmp_path / "out").glob("recording_*.jsonl"))
            if jsonls and jsonls[0].read_bytes().count(b"\n") >= 12:
                break
            time.sleep(0.1)
        assert proc.poll() is None and jsonls, proc.stderr.read().decode()[-3000:]
        proc.send_signal(sig)
        code, err = finish(proc, timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == exit_code, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    videos = sorted((tmp_path / "out").glob("recording_*.mp4"))
    assert len(videos) == 1
    times, _ = decode(videos[0])
    records = jsonl_lines(jsonls[0])
    assert_in_step(times, records, exact=True)
    steps = np.diff([r["t"] for r in records])
    assert steps.max() > 1.5 / 30.0  # frames were skipped: a fixed-rate file would play too fast
    assert times[-1] == pytest.approx(records[-1]["t"] - records[0]["t"], abs=2e-3)


@pytest.mark.gui
def test_gui_ctrl_c_while_the_model_loads_exits_without_a_traceback(tmp_path: Path) -> None:
    proc = _start_gui(tmp_path, "--load-s", "4")
    try:
        line = proc.stdout.readline().decode()
        assert line.strip() == "loading", proc.stderr.read().decode()[-3000:]
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        code, err = finish(proc, timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 130, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err


@pytest.mark.gui
def test_gui_recording_that_fails_stops_and_says_why(qtbot, tmp_path: Path, monkeypatch) -> None:
    """A write error in the middle of a GUI recording (a full disk) stops that recording once, tells
    the window (error + recording off), and the live loop goes on."""
    import app.ui.worker as worker_module
    from app.ui.worker import LiveWorker
    from tests.gui_support import WAIT_MS, CountingSource, FakePipeline

    class FillingRecorder(Recorder):
        def write(self, result, annotated_bgr=None) -> None:  # noqa: ANN001
            if self.jsonl is not None and self.jsonl.records_written + self.jsonl.records_pending >= 5:
                self.jsonl._handle = _FillingFile(self.jsonl._handle, budget=0)
            super().write(result, annotated_bgr)

    monkeypatch.setattr(worker_module, "Recorder", FillingRecorder)
    worker = LiveWorker(lambda settings: FakePipeline(delay_s=0.01), realtime=False)
    results, errors, changes = [], [], []
    worker.result_ready.connect(lambda: results.append(worker.take_result()))
    worker.error.connect(errors.append)
    worker.recording_changed.connect(lambda active, text: changes.append((active, text)))
    worker.set_source(lambda: CountingSource(size=(160, 120)))
    worker.start()
    try:
        qtbot.waitUntil(lambda: len(results) >= 2, timeout=WAIT_MS)
        worker.start_recording(tmp_path / "rec.mp4", tmp_path / "rec.jsonl")
        qtbot.waitUntil(lambda: len(changes) >= 2, timeout=WAIT_MS)
        count = len(results)
        qtbot.waitUntil(lambda: len(results) >= count + 5, timeout=WAIT_MS)
    finally:
        worker.stop()
    assert [active for active, _ in changes] == [True, False]
    failures = [e for e in errors if "Recording stopped" in e]
    assert len(failures) == 1 and "the disk is full" in failures[0], errors
    assert not results[-1].recording
    records = jsonl_lines(tmp_path / "rec.jsonl")
    if (tmp_path / "rec.mp4").exists():
        times, _ = decode(tmp_path / "rec.mp4")
        assert len(times) == len(records)
    else:
        assert records == []
