"""Recording: video + JSONL written per frame, Ctrl-C safety of the headless command, mesh export."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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


def _count_frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened()
    count = 0
    while cap.read()[0]:
        count += 1
    cap.release()
    return count


def test_recorder_writes_every_frame_and_line(tmp_path: Path) -> None:
    video, jsonl = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    with Recorder(video, jsonl, fps=25.0, include_vertices=True) as rec:
        for frame, result in _results(12):
            rec.write(result.with_timing("draw", 1.0), frame.bgr)
            assert len(read_jsonl(jsonl)) == result.index + 1  # flushed as it goes
    assert _count_frames(video) == 12
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


def test_codec_errors_are_typed(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="codec"):
        VideoRecorder(tmp_path / "x.mp4", codec="divx3")
    rec = VideoRecorder(tmp_path / "x.mp4", codec="h264")
    try:
        rec.write(np.zeros((32, 32, 3), np.uint8))
    except RecordingError as err:  # OpenCV's wheels have no H.264 encoder
        assert "mp4v" in str(err)
    finally:
        rec.close()
    with Recorder(tmp_path / "y.mp4") as both:
        with pytest.raises(RecordingError):
            both.write(next(iter(_results(1)))[1], None)


def test_mjpg_avi_and_size_changes(tmp_path: Path) -> None:
    path = tmp_path / "x.avi"
    with VideoRecorder(path, codec="mjpg", fps=10.0) as rec:
        rec.write(np.zeros((40, 60, 3), np.uint8))
        rec.write(np.zeros((41, 61, 3), np.uint8))  # resized to the first frame's size
    assert _count_frames(path) == 2


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
    assert _count_frames(video) == len(records)
