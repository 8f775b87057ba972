"""The prepared GPU command: weights that fit the return limits, the landmark cache, the runners, and
``python -m training.gpu_run --smoke`` end to end on the CPU (tiny network, under 2 minutes)."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch

from models.checkpoint import load_checkpoint, save_checkpoint
from models.config import get_preset
from models.errors import CheckpointError
from models.inference_runners import RUNNER_OUTPUTS, RunnerError, example_inputs, make_runner
from models.m3dhmr import M3DHMR
from models.paths import ASSETS_DIR, REPO_ROOT
from training.gpu_run import MAX_OUT_FILES, TINY_MODEL, WEIGHT_FILE_LIMIT, GpuRunError, OutFolder
from training.weight_parts import MIB, join_parts, layout_file_bytes, part_info, resolve_checkpoint, write_limited_weights

SMOKE_TIMEOUT_S = 170


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread: on a small, busy CPU two OpenMP threads waiting on each other made these tiny
    steps many times slower (see training.gpu_run, smoke mode)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_model() -> M3DHMR:
    torch.manual_seed(0)
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in TINY_MODEL.items()}
    return M3DHMR.from_config(dataclasses.replace(get_preset("realtime_slim"), **values)).eval()


def _bf16_round(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.bfloat16).float() if t.is_floating_point() else t


def test_weights_fit_one_float32_file_or_bf16_parts_that_join_back(tiny_model: M3DHMR, tmp_path: Path) -> None:
    ckpt = tmp_path / "run" / "best.safetensors"
    save_checkpoint(tiny_model, ckpt, extra_metadata={"step": "7"})
    state = tiny_model.state_dict()

    single = write_limited_weights(ckpt, tmp_path / "a", "tiny", max_file_bytes=15 * MIB)
    assert single.dtype == "float32" and [p.name for p in single.paths] == ["tiny.safetensors"]
    assert part_info(single.paths[0]) is None and resolve_checkpoint(single.paths[0], tmp_path) == single.paths[0]
    loaded = load_checkpoint(single.paths[0])
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in state.items())

    # A limit below the float32 size: bfloat16 parts, each under the limit, joined into one float32 file.
    limit = 128 * 1024 + 300 * 1024
    parts = write_limited_weights(ckpt, tmp_path / "b", "tiny", max_file_bytes=limit)
    assert parts.dtype == "bfloat16" and parts.parts >= 2
    assert all(p.stat().st_size <= limit for p in parts.paths)
    assert [p.name for p in parts.paths] == [f"tiny.part{i + 1}of{parts.parts}.safetensors" for i in range(parts.parts)]
    joined = resolve_checkpoint(parts.paths[-1], tmp_path / "joined")
    model = load_checkpoint(joined)  # strict: every tensor present, asset hash checked
    for key, value in state.items():
        assert torch.equal(model.state_dict()[key], _bf16_round(value)), key
    assert next(model.parameters()).dtype == torch.float32

    parts.paths[0].unlink()
    with pytest.raises(CheckpointError, match="missing"):
        join_parts(parts.paths[1], tmp_path / "x.safetensors")


def test_trainer_saves_by_wall_clock_and_reports_every_save(tmp_path: Path) -> None:
    """``checkpoint_every_s`` saves ``last`` by time (steps disabled); ``on_save`` sees every save."""
    from training.config import train_config_from_dict
    from training.train import DistInfo, Trainer

    cfg = train_config_from_dict({
        "name": "tiny", "model_preset": "realtime_slim", "model_overrides": TINY_MODEL, "batch_size": 2, "epochs": 1,
        "lr_milestones_epochs": [], "max_steps": 3, "log_every_steps": 1, "eval_every_steps": 0,
        "checkpoint_every_steps": 0, "checkpoint_every_s": 1e-6, "out_dir": str(tmp_path / "run"),
        "data": {"samples_per_epoch": 8, "two_views": False, "num_workers": 0, "unique_samples": 2},
    })
    trainer = Trainer(cfg, DistInfo(), torch.device("cpu"), show_progress=False)
    seen: list[tuple[str, int]] = []
    trainer.on_save = lambda name, path: seen.append((name, trainer.step)) if path.is_file() else None
    trainer.fit()
    assert seen == [("last", 1), ("last", 2), ("last", 3), ("last", 3)]  # every step by time, then the final save


def test_paper_r18_weights_fit_the_return_limits() -> None:
    """bfloat16 in 4 files under 16 MiB, leaving room (8 files, 64 MiB) for the reports."""
    sizes = layout_file_bytes(M3DHMR.from_config(get_preset("paper_r18")).state_dict(), WEIGHT_FILE_LIMIT)
    assert len(sizes) == 4 and max(sizes) <= 16_000_000 - 128 * 1024 and sum(sizes) < 58 * MIB
    assert layout_file_bytes(M3DHMR.from_config(get_preset("realtime_slim")).state_dict(), WEIGHT_FILE_LIMIT) == [
        sum(t.numel() * t.element_size() for t in M3DHMR.from_config(get_preset("realtime_slim")).state_dict().values())]


def test_out_folder_keeps_to_eight_files_and_64_mib(tmp_path: Path) -> None:
    out = OutFolder(tmp_path / "out")
    assert out.room([15 * MIB] * 4) is None
    assert "per-file" in (out.room([17 * MIB]) or "")
    assert "64 MiB" in (out.room([15 * MIB] * 5) or "")
    assert "file limit" in (out.room([1000] * (MAX_OUT_FILES - 2)) or "")  # the 3 report files are reserved
    (tmp_path / "out" / "stray.txt").write_text("x")
    with pytest.raises(GpuRunError, match="not empty"):
        OutFolder(tmp_path / "out")


def test_runners_match_the_model_and_refuse_graphs_without_cuda(tiny_model: M3DHMR) -> None:
    assert tiny_model.config is not None
    inputs = example_inputs(tiny_model.config, 2, "cpu")
    runner = make_runner(tiny_model, "eager", "fp32", inputs)
    out = runner(inputs)
    assert tuple(out) == RUNNER_OUTPUTS
    with torch.inference_mode():
        ref = tiny_model(inputs[0], inputs[1], joints_2d_external=inputs[3], virt_to_cam=inputs[2])
    assert torch.allclose(out["joints_cam"], ref.joints_cam) and torch.equal(out["dgp_degenerate"], ref.dgp_degenerate)
    with pytest.raises(RunnerError, match="shapes"):
        runner(example_inputs(tiny_model.config, 3, "cpu"))
    bf16 = make_runner(tiny_model, "eager", "bf16", inputs)(inputs)
    assert bf16["vertices_cam"].dtype == torch.float32 and torch.isfinite(bf16["vertices_rel"]).all()
    with pytest.raises(RunnerError, match="CUDA"):
        make_runner(tiny_model, "graphs", "fp32", inputs)


def _plain_call(model: M3DHMR, request: Any) -> dict[str, np.ndarray]:
    """The network called directly on a request, absent inputs passed as None (no zero-filled, masked inputs)."""
    def t(a: np.ndarray | None) -> torch.Tensor | None:
        return None if a is None else torch.as_tensor(np.asarray(a, np.float32))

    with torch.inference_mode():
        out = model(torch.from_numpy(request.crops_rgb).permute(0, 3, 1, 2).float() / 255.0, t(request.K_virt),
                    joints_2d_external=t(request.joints_2d_external), virt_to_cam=t(request.virt_to_cam),
                    landmarks_3d=t(request.landmarks_3d), hand_length_given=t(request.hand_length_m),
                    external_mask=None if request.external_rows is None else t(request.external_rows),
                    landmarks_3d_mask=None if request.landmarks_rows is None else t(request.landmarks_rows),
                    crop_index=None if request.crop_index is None else torch.as_tensor(request.crop_index))
    return {"vertices_cam": out.vertices_cam.numpy(), "joints_cam": out.joints_cam.numpy(),
            "hand_length": out.hand_length_used.numpy()}


def test_torch_backend_runners_give_the_plain_call_outputs_for_every_cue_and_the_ensemble() -> None:
    """The torch backend feeds the exported graph's inputs (zeros under a 0 mask where a cue is absent) to
    a prepared runner (eager here; CUDA graphs or compiled calls on a GPU) and gets what the network's plain
    call gives for the fused cue, 2D only, image only, a given hand length, and the depth ensemble's three
    rows per crop; one runner serves every input shape, whatever the masks."""
    from app.backends.base import BackendRequest
    from app.backends.torch_backend import TorchBackend
    from app.pipeline import infer_with_depth_ensemble
    from models.export_onnx import hand_like_joints

    torch.manual_seed(0)
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in TINY_MODEL.items()}
    model = M3DHMR.from_config(dataclasses.replace(get_preset("realtime_fused"), **values)).eval()
    s, b = model.crop_size, 2
    rng = np.random.default_rng(0)
    k_virt = np.tile(np.array([[2.5 * s, 0, s / 2], [0, 2.5 * s, s / 2], [0, 0, 1]], np.float32), (b, 1, 1))
    base = {"crops_rgb": rng.integers(0, 256, (b, s, s, 3), dtype=np.uint8), "K_virt": k_virt,
            "virt_to_cam": np.tile(np.diag([-1.0, 1.0, 1.0]).astype(np.float32), (b, 1, 1))}
    joints = hand_like_joints(b, s).numpy()
    landmarks = ((rng.random((b, 21, 3)) - 0.5) * 0.1).astype(np.float32)
    requests = {
        "fused": BackendRequest(**base, joints_2d_external=joints, landmarks_3d=landmarks),
        "mediapipe": BackendRequest(**base, joints_2d_external=joints),
        "network": BackendRequest(**base),
        "size given": BackendRequest(**base, joints_2d_external=joints, landmarks_3d=landmarks,
                                     hand_length_m=np.full(b, 0.17, np.float32)),
    }
    backend = TorchBackend(model, "cpu")
    assert backend.mode == "eager" and backend.name == "torch-cpu"
    for cue, request in requests.items():
        ours, plain = backend.infer(request), _plain_call(model, request)
        for name, value in plain.items():
            assert np.allclose(getattr(ours, name), value, rtol=1e-4, atol=1e-5), (cue, name)  # an untrained DGP solve puts it metres away
    ensemble = infer_with_depth_ensemble(backend, requests["fused"])
    assert np.isfinite(ensemble.vertices_cam).all() and ensemble.vertices_cam.shape == (b, backend.num_vertices, 3)
    backend.prepare([1, 2], ensemble=True)
    assert sorted(backend.prepare_s) == ["1 crops, 3 rows", "2 crops, 2 rows", "2 crops, 6 rows"]
    with pytest.raises(ValueError, match="mode"):
        TorchBackend(model, "cpu", mode="warp")


def test_torch_backend_falls_back_to_eager_when_a_mode_cannot_run_here() -> None:
    """CUDA graphs asked for on a machine without CUDA: the backend says why and runs eager, frames go on."""
    from app.backends.base import BackendRequest
    from app.backends.torch_backend import TorchBackend, default_mode

    torch.manual_seed(0)
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in TINY_MODEL.items()}
    model = M3DHMR.from_config(dataclasses.replace(get_preset("realtime_fused"), **values)).eval()
    s = model.crop_size
    assert default_mode("cpu") == "eager" and default_mode("cuda") == "graphs"
    backend = TorchBackend(model, "cpu", mode="graphs")
    request = BackendRequest(crops_rgb=np.full((1, s, s, 3), 90, np.uint8),
                             K_virt=np.array([[[2.5 * s, 0, s / 2], [0, 2.5 * s, s / 2], [0, 0, 1]]], np.float32),
                             virt_to_cam=np.eye(3, dtype=np.float32)[None])
    result = backend.infer(request)
    assert np.isfinite(result.vertices_cam).all()
    assert backend.mode == "eager" and "CUDA" in (backend.fallback_reason or "")


def test_runner_outputs_are_the_onnx_outputs() -> None:
    pytest.importorskip("onnx")
    from models.export_onnx import OUTPUT_NAMES

    assert RUNNER_OUTPUTS == OUTPUT_NAMES


def _fake_hand(centre: tuple[float, float], size: float) -> list[list[float]]:
    """21 plausible 2D landmarks (wrist, 5 fingers of 4 joints) around ``centre``, pixels."""
    pts = [[0.0, 0.5]]
    for finger in range(5):
        x = -0.4 + 0.2 * finger
        pts += [[x * (0.5 + 0.15 * k), 0.3 - 0.22 * k] for k in range(4)]
    return [[centre[0] + size * x, centre[1] + size * y] for x, y in pts]


def write_recording_jsonl(path: Path, frames: int, image_size: tuple[int, int] = (640, 360)) -> Path:
    """A recording JSONL (``run_demo.py --jsonl`` schema) with one right hand per frame."""
    w, h = image_size
    f = 0.5 * w / np.tan(np.radians(30.0))
    K = [[f, 0.0, (w - 1) / 2], [0.0, f, (h - 1) / 2], [0.0, 0.0, 1.0]]
    with path.open("w", encoding="utf-8") as fh:
        for i in range(frames):
            hand = {"track_id": 0, "handedness": "right", "detection_score": 0.9, "confidence": 0.5,
                    "box_img": [0, 0, 10, 10], "landmarks_img": _fake_hand((w / 2 + 2 * i, h / 2), 120.0)}
            fh.write(json.dumps({"index": i, "t": i / 25.0, "image_size": [w, h], "K": K, "intrinsics_assumed": True,
                                 "timings_ms": {"detect": 20.0 + i % 3}, "backend": "x", "hands": [hand]}) + "\n")
    return path


def test_landmark_cache_reads_a_recording_jsonl_and_replays_it(tmp_path: Path) -> None:
    from app.landmark_cache import CachedDetector, LandmarkCacheError, load_landmark_cache

    cache = load_landmark_cache(write_recording_jsonl(tmp_path / "rec.jsonl", 3))
    assert len(cache.frames) == 3 and not cache.has_world and cache.header == {}
    assert np.allclose(cache.detect_ms(), [20.0, 21.0, 22.0])
    detector = CachedDetector(cache)
    (hand,) = detector.detect(np.zeros((360, 640, 3), np.uint8), 1 / 25.0)
    assert hand.handedness == "right" and hand.landmarks_img.shape == (21, 2) and hand.world_landmarks.shape == (21, 3)
    assert np.allclose(hand.box_img, [hand.landmarks_img.min(0)[0], hand.landmarks_img.min(0)[1],
                                      hand.landmarks_img.max(0)[0], hand.landmarks_img.max(0)[1]])
    (tmp_path / "bad.jsonl").write_text('{"index": 0}\n')
    with pytest.raises(LandmarkCacheError, match="needs index"):
        load_landmark_cache(tmp_path / "bad.jsonl")


def test_gpu_run_smoke_end_to_end(tmp_path: Path) -> None:
    """The whole command on the CPU with tiny sizes: every phase runs, OUT holds what a GPU machine returns."""
    clip = ASSETS_DIR / "sample_clip.mp4"
    landmarks = write_recording_jsonl(tmp_path / "clip.jsonl", 12)
    out, work = tmp_path / "out", tmp_path / "work"
    cmd = [sys.executable, "-m", "training.gpu_run", "--smoke", "--out", str(out), "--work", str(work),
           "--landmarks", str(landmarks), "--video", str(clip)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=SMOKE_TIMEOUT_S, env=env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = json.loads((out / "report.json").read_text())
    failed = {k: v["status"] for k, v in report["phases"].items() if not v["status"].startswith(("ok", "skipped: onnx"))}
    assert not failed, failed
    files = sorted(p for p in out.iterdir())
    assert len(files) <= MAX_OUT_FILES and all(p.is_file() and p.stat().st_size < 16 * MIB for p in files)
    names = {p.name for p in files}
    assert {"report.json", "report.md", "training_curve.png", "realtime_slim.safetensors"} <= names
    assert cv2.imread(str(out / "training_curve.png")) is not None
    model = load_checkpoint(out / "realtime_slim.safetensors")
    assert model.crop_size == TINY_MODEL["crop_size"]
    assert report["data"]["samples_per_s"] > 0 and report["train"]["checkpoints"] >= 1
    assert set(report["eval"]["trained"]) == {"network", "external"}
    rows = {(r["mode"], r["precision"], r["batch"]): r["status"] for r in report["latency"]["rows"]}
    assert rows[("eager", "fp32", 1)] == "ok" and rows[("graphs", "fp32", 1)].startswith("skipped")
    assert rows[("compile", "fp32", 1)] == "ok"
    variant = report["clip"]["variants"]["eager:fp32"]
    assert variant["status"] == "ok" and variant["hands_per_frame_mean"] > 0
    assert report["clip"]["cpu_detector_ms"]["p50"] == pytest.approx(21.0)
    if report["phases"]["export"]["status"] == "ok":
        assert report["export"]["parity_max_mm"] < 0.1
