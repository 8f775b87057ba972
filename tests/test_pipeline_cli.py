"""The headless commands (record, benchmark, calibrate) end to end, and typed failures on bad input."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from app import cli
from app.calibrate import render_checkerboard_view
from app.recording import read_jsonl
from models.paths import SHARED_REAL_DIR

REAL_CLIP = SHARED_REAL_DIR / "open_palm_640x360.mp4"


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real clip when present (hands in view), else a small synthetic clip without hands."""
    if REAL_CLIP.is_file():
        return REAL_CLIP
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (320, 240))
    for k in range(12):
        img = np.full((240, 320, 3), 70, np.uint8)
        cv2.rectangle(img, (10 + 5 * k, 50), (60 + 5 * k, 120), (200, 180, 160), -1)
        writer.write(img)
    writer.release()
    return path


@pytest.mark.slow
def test_record_writes_video_jsonl_and_mesh(tmp_path: Path, clip: Path, capsys: pytest.CaptureFixture) -> None:
    video, jsonl, mesh = tmp_path / "out.mp4", tmp_path / "out.jsonl", tmp_path / "hands.obj"
    code = cli.main(["record", "--source", str(clip), "--backend", "torch", "--untrained", "realtime_slim",
                     "--frames", "6", "--record", str(video), "--jsonl", str(jsonl), "--vertices",
                     "--export-mesh", str(mesh)])
    assert code == 0
    records = read_jsonl(jsonl)
    assert [r["index"] for r in records] == list(range(6))
    assert set(records[0]["timings_ms"]) >= {"read", "detect", "crop", "network", "dgp", "smoothing", "draw"}
    cap = cv2.VideoCapture(str(video))
    count = 0
    while cap.read()[0]:
        count += 1
    assert count == 6
    out = capsys.readouterr().out
    assert "processed 6 frames" in out
    if clip == REAL_CLIP:
        assert all(len(r["hands"]) == 1 for r in records)
        assert len(records[0]["hands"][0]["vertices_cam"]) > 100
        assert mesh.read_text().count("\nf ") > 100
        assert "jitter" in out


@pytest.mark.slow
def test_benchmark_reports_stages_and_mediapipe_ratio(tmp_path: Path, clip: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    report_path = tmp_path / "bench.json"
    code = cli.main(["benchmark", "--source", str(clip), "--backend", "torch", "--untrained", "realtime_slim",
                     "--frames", "4", "--warmup", "2", "--both-cues", "--json", str(report_path)])
    assert code == 0
    report = json.loads(report_path.read_text())
    assert set(report["pipeline"]) == {"fused", "mediapipe", "network"}
    stages = report["pipeline"]["fused"]["stages_ms"]
    assert set(stages) >= {"read", "detect", "crop", "network", "dgp", "smoothing", "draw", "total"}
    assert all(stages[s]["p95"] >= stages[s]["p50"] >= 0.0 for s in stages)
    assert report["pipeline"]["fused"]["frames"] == 4
    assert report["mediapipe_alone"]["fps"] > 0
    ratio = report["ratio_end_to_end_over_mediapipe"]
    assert ratio == pytest.approx(report["pipeline"]["fused"]["fps_end_to_end"] / report["mediapipe_alone"]["fps"])
    assert report["hardware"]["backend"].startswith("torch")
    out = capsys.readouterr().out
    assert "MediaPipe alone" in out and "end-to-end FPS" in out


def test_calibrate_command_writes_a_loadable_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    K = np.array([[380.0, 0.0, 159.5], [0.0, 380.0, 119.5], [0.0, 0.0, 1.0]])
    rng = np.random.default_rng(4)
    views = tmp_path / "views"
    views.mkdir()
    for i in range(8):
        rvec = rng.uniform(-0.4, 0.4, 3)
        tvec = np.array([-0.09, -0.06, 0.0]) + np.array([rng.uniform(-0.03, 0.03), rng.uniform(-0.03, 0.03),
                                                          rng.uniform(0.38, 0.5)])
        cv2.imwrite(str(views / f"{i}.png"),
                    render_checkerboard_view(K, None, (320, 240), (7, 5), 0.03, rvec, tvec, px_per_square=24))
    out = tmp_path / "cam.json"
    code = cli.main(["calibrate", "--source", str(views), "--pattern", "7x5", "--square", "0.03",
                     "--every", "1", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    data = json.loads(out.read_text())
    assert data["image_size"] == [320, 240]
    assert data["K"][0][0] == pytest.approx(380.0, rel=0.02)
    assert "RMS reprojection error" in capsys.readouterr().out
    assert cli.main(["calibrate", "--source", str(views), "--pattern", "9", "--out", str(out)]) == 2


def test_bad_inputs_exit_with_a_message(tmp_path: Path, clip: Path, capsys: pytest.CaptureFixture) -> None:
    base = ["record", "--source", str(clip), "--backend", "torch", "--frames", "1"]
    assert cli.main(base + ["--untrained", "realtime_slim", "--intrinsics", str(tmp_path / "none.yaml")]) == 2
    assert "Intrinsics file not found" in capsys.readouterr().err
    assert cli.main(base + ["--weights", str(tmp_path / "none.safetensors")]) == 2
    assert "not found" in capsys.readouterr().err
    assert cli.main(["record", "--source", str(tmp_path / "missing.mp4"), "--untrained", "realtime_slim"]) == 2
    assert "not found" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["record", "--source", str(empty), "--untrained", "realtime_slim"]) == 2
    assert "No images" in capsys.readouterr().err


def test_weights_made_for_another_hand_asset_are_refused(tmp_path: Path, clip: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    from app.backends import create_backend
    from models.checkpoint import save_checkpoint
    from models.config import get_preset
    from models.errors import AssetHashMismatchError
    from models.m3dhmr import M3DHMR

    good = tmp_path / "good.safetensors"
    save_checkpoint(M3DHMR.from_config(get_preset("realtime_slim")), good)
    with safe_open(str(good), framework="pt") as handle:
        metadata = dict(handle.metadata())
    metadata["asset_sha256"] = "0" * 64
    foreign = tmp_path / "foreign.safetensors"
    save_file(load_file(str(good)), str(foreign), metadata=metadata)
    with pytest.raises(AssetHashMismatchError):
        create_backend("torch", foreign)
    code = cli.main(["record", "--source", str(clip), "--backend", "torch", "--weights", str(foreign),
                     "--frames", "1"])
    assert code == 2
    assert "sha256" in capsys.readouterr().err
