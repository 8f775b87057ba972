"""Recording: H.264 video + JSONL in step, Ctrl-C safety of the headless command, mesh export.

Faults (kill -9, signals, full disk, read-only folders, odd sizes) are in tests/test_misuse_recording.py."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from app.pipeline import HandPipeline, PipelineOptions
from app.recording import (
    Recorder,
    RecordingError,
    VideoRecorder,
    export_meshes,
    frame_to_json,
    read_jsonl,
)
from app.sources import Frame
from app.smoothing import SmoothingParams
from models.paths import REPO_ROOT, SHARED_REAL_DIR
from tests.pipeline_fakes import GeometricBackend, ScriptedDetector, hand_landmarks


def _results(n: int):
    script = [[(hand_landmarks((200.0 + 3 * k, 180.0), 120.0), "right")] for k in range(n)]
    options = PipelineOptions(smoothing=SmoothingParams(enabled=False))
    with HandPipeline(GeometricBackend(), options=options, detector=ScriptedDetector(script)) as pipeline:
        for k in range(n):
            frame = Frame(bgr=np.full((240, 320, 3), 60, np.uint8), t=k / 25.0, index=k)
            yield frame, pipeline.process(frame)


def _frame_times(path: Path) -> list[float]:
    """Presentation times (s) of the frames PyAV decodes from ``path``."""
    with av.open(str(path)) as container:
        return [float(frame.time) for frame in container.decode(video=0)]


def test_recorder_writes_every_frame_and_line(tmp_path: Path) -> None:
    video, jsonl = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    with Recorder(video, jsonl, fps=25.0, include_vertices=True, fragment_s=0.2) as rec:
        for frame, result in _results(12):
            rec.write(result.with_timing("draw", 1.0), frame.bgr)
            # A line goes to disk with its video fragment: never ahead of the video, at most one fragment behind.
            assert len(read_jsonl(jsonl)) == rec.jsonl.records_written == rec.video.frames_saved
            assert result.index + 1 - rec.video.frames_saved <= 6
    np.testing.assert_allclose(_frame_times(video), [k / 25.0 for k in range(12)], atol=1e-3)
    with av.open(str(video)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
    records = read_jsonl(jsonl)
    assert [r["index"] for r in records] == list(range(12))
    hand = records[0]["hands"][0]
    assert hand["handedness"] == "right" and len(hand["joints_cam"]) == 21 and len(hand["vertices_cam"]) == 21
    assert np.array(records[0]["K"]).shape == (3, 3) and "draw" in records[0]["timings_ms"]
    assert records[0]["intrinsics_assumed"] is True


def test_frame_json_without_vertices_is_compact() -> None:
    _, result = next(iter(_results(1)))
    data = frame_to_json(result)
    assert "vertices_cam" not in data["hands"][0]
    json.dumps(data)


def test_video_without_its_frame_is_a_typed_error(tmp_path: Path) -> None:
    with Recorder(tmp_path / "y.mp4") as both:
        with pytest.raises(RecordingError, match="annotated frame"):
            both.write(next(iter(_results(1)))[1], None)


def test_mjpg_avi_writes_every_frame(tmp_path: Path) -> None:
    path = tmp_path / "x.avi"
    with VideoRecorder(path, codec="mjpg", fps=10.0) as rec:
        rec.write(np.zeros((40, 60, 3), np.uint8))
        rec.write(np.zeros((40, 60, 3), np.uint8))
    np.testing.assert_allclose(_frame_times(path), [0.0, 0.1], atol=1e-2)


def test_a_frame_of_another_size_is_letterboxed(tmp_path: Path) -> None:
    path = tmp_path / "sizes.mp4"
    with VideoRecorder(path) as rec:
        rec.write(np.full((120, 160, 3), 200, np.uint8), 0.0)
        rec.write(np.full((120, 320, 3), 200, np.uint8), 0.04)  # twice as wide: black bars above/below
    with av.open(str(path)) as container:
        images = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    assert [im.shape for im in images] == [(120, 160, 3)] * 2
    assert images[1][2:20].mean() < 20 and images[1][50:70].mean() > 180


@pytest.mark.parametrize("bad", [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 3), np.float32),
                                 np.zeros((0, 10, 3), np.uint8), np.zeros((10, 10, 4), np.uint8)],
                         ids=["grey", "float", "empty", "bgra"])
def test_frames_that_are_not_bgr_uint8_are_typed_errors(tmp_path: Path, bad: np.ndarray) -> None:
    with VideoRecorder(tmp_path / "x.mp4") as rec:
        with pytest.raises(RecordingError, match="uint8 BGR"):
            rec.write(bad)


def test_a_recording_that_never_got_a_frame_leaves_no_video(tmp_path: Path) -> None:
    with Recorder(tmp_path / "x.mp4", tmp_path / "x.jsonl"):
        pass
    assert not (tmp_path / "x.mp4").exists()
    assert (tmp_path / "x.jsonl").read_bytes() == b""


def test_recordings_read_back_as_a_source(tmp_path: Path) -> None:
    """The app's own video source (OpenCV) plays an H.264 fragmented-MP4 recording frame by frame."""
    from app.sources import open_source

    path = tmp_path / "rec.mp4"
    with VideoRecorder(path) as rec:
        for k in range(30):
            rec.write(np.full((48, 64, 3), 8 * k, np.uint8), k / 30.0)
    source = open_source(path)
    try:
        frames = list(iter(source.read, None))
    finally:
        source.close()
    assert len(frames) == 30 and frames[0].bgr.shape == (48, 64, 3)


@pytest.mark.parametrize("suffix", [".ply", ".obj"])
def test_mesh_export(tmp_path: Path, suffix: str) -> None:
    _, result = next(iter(_results(1)))
    path = export_meshes(result, tmp_path / f"hands{suffix}")
    lines = path.read_text().splitlines()
    if suffix == ".ply":
        assert "element vertex 21" in lines and "element face 6" in lines
        body = lines[lines.index("end_header") + 1:]
        assert len(body) == 27
    else:
        assert sum(1 for line in lines if line.startswith("v ")) == 21
        assert sum(1 for line in lines if line.startswith("f ")) == 6
        assert lines[1].startswith("o hand0_right")
    with pytest.raises(RecordingError):
        export_meshes(result, tmp_path / "x.stl")


def _clip_with_motion(path: Path, n: int = 60) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (320, 240))
    for k in range(n):
        img = np.full((240, 320, 3), 80, np.uint8)
        cv2.circle(img, (40 + 4 * k, 120), 20, (0, 200, 255), -1)
        writer.write(img)
    writer.release()
    return path


@pytest.mark.slow
def test_ctrl_c_leaves_a_playable_video_and_valid_jsonl(tmp_path: Path) -> None:
    real = SHARED_REAL_DIR / "open_palm_640x360.mp4"
    source = real if real.is_file() else _clip_with_motion(tmp_path / "clip.mp4")
    video, jsonl = tmp_path / "rec.mp4", tmp_path / "rec.jsonl"
    cmd = [sys.executable, "-m", "app.cli", "record", "--source", str(source), "--loop", "--backend", "torch",
           "--untrained", "realtime_slim", "--record", str(video), "--jsonl", str(jsonl), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 90.0
        while time.monotonic() < deadline and proc.poll() is None:
            if jsonl.is_file() and jsonl.read_text().count("\n") >= 5:
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err.decode()[-2000:]
    records = read_jsonl(jsonl)  # every line parses
    assert len(records) >= 5
    times = _frame_times(video)
    assert len(times) == len(records)
    np.testing.assert_allclose(times, [r["t"] - records[0]["t"] for r in records], atol=2e-3)


def test_a_bad_frame_is_refused_without_stopping_the_recording(tmp_path: Path) -> None:
    video, jsonl = tmp_path / "x.mp4", tmp_path / "x.jsonl"
    results = [result for _, result in _results(3)]
    with Recorder(video, jsonl) as rec:
        rec.write(results[0], np.zeros((240, 320, 3), np.uint8))
        with pytest.raises(RecordingError, match="uint8 BGR"):
            rec.write(results[1], np.zeros((240, 320, 3), np.float32))
        rec.write(results[2], np.zeros((240, 320, 3), np.uint8))
    assert [r["index"] for r in read_jsonl(jsonl)] == [0, 2]
    assert len(_frame_times(video)) == 2
