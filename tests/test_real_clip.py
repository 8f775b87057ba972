"""Acceptance checks on real footage (../shared/real/open_palm_640x360.mp4; skipped when absent).

- MediaPipe (tracking mode) finds the hand in at least 90% of the 202 frames, and recording the
  whole clip produces a video that opens and holds every frame plus one JSONL line per frame (the
  network here is the geometric stand-in so that the whole clip fits the test budget; the real
  network's recording path is exercised in test_recording's Ctrl-C test).
- With the real network (the shipped weights when present, else an untrained model) and the default
  ``fused`` cue, the mesh's joints projected into the image lie within FUSED_BOUND of the hand box size
  of MediaPipe's landmarks (median) and the wrist depth is between 0.2 and 1.5 m. With an untrained
  model this holds because the landmark skinning and DGP place a mesh posed from MediaPipe's landmarks
  on its 2D joints; with the shipped weights it is a statement about the network.
- The image-only ``network`` cue and the 2D-only ``mediapipe`` cue are only meaningful with trained
  weights (skipped without them): their projected meshes lie within NETWORK_BOUND / MEDIAPIPE_BOUND.
  Bounds are set from what the shipped weights reach (``python -m app.evaluate_app clip --cue all``)
  with a small margin, so a worse model fails them.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from app.cli import default_weights
from app.drawing import draw_annotated
from app.pipeline import HandPipeline, PipelineOptions
from app.recording import Recorder, read_jsonl
from app.smoothing import SmoothingParams
from app.sources import VideoFileSource
from models.paths import SHARED_REAL_DIR
from tests.pipeline_fakes import GeometricBackend

REAL_CLIP = SHARED_REAL_DIR / "open_palm_640x360.mp4"
pytestmark = [pytest.mark.real, pytest.mark.skipif(not REAL_CLIP.is_file(), reason="../shared/real absent")]
SHIPPED = default_weights("torch")
FUSED_BOUND = 0.045
NETWORK_BOUND = 0.08
MEDIAPIPE_BOUND = 0.035
"""Median projected-joint distance to MediaPipe's landmarks / hand box side that the shipped weights must
stay under on this clip (shipped realtime_fused: see README "Measured results"). The fused cue's bound
was 0.035 until phase 18 (0.021 then); the pull towards the refined landmarks moves the fused mesh off
MediaPipe's 2D landmarks by design (0.034 with phase 18), so its bound keeps the same margin above that."""


def _backend():
    from app.backends import create_backend
    from app.backends.torch_backend import TorchBackend
    from models.config import get_preset
    from models.m3dhmr import M3DHMR

    if SHIPPED is not None:
        return create_backend("torch", SHIPPED)
    torch.manual_seed(0)
    return TorchBackend(M3DHMR.from_config(get_preset("realtime_slim")))


def _mesh_joints_img(hand, result, regressor: np.ndarray) -> np.ndarray:
    joints = regressor @ hand.vertices_cam.astype(np.float64)
    K = result.K
    return joints[:, :2] / joints[:, 2:3] * np.array([K[0, 0], K[1, 1]]) + K[:2, 2]


@pytest.mark.slow
def test_whole_clip_detection_rate_and_recording(tmp_path: Path) -> None:
    video, jsonl = tmp_path / "clip.mp4", tmp_path / "clip.jsonl"
    frames = with_hands = 0
    with VideoFileSource(REAL_CLIP) as src, HandPipeline(GeometricBackend(crop_size=32)) as pipeline, \
            Recorder(video, jsonl, fps=src.fps) as recorder:
        for frame, result in pipeline.run(src):
            recorder.write(result, draw_annotated(frame.bgr, result, fps=25.0))
            frames += 1
            with_hands += len(result.hands) >= 1
            assert len(result.hands) <= 1
            assert all(h.handedness == "right" for h in result.hands)
    assert frames == 202
    assert with_hands / frames >= 0.9
    cap = cv2.VideoCapture(str(video))
    assert cap.isOpened()
    decoded = 0
    while cap.read()[0]:
        decoded += 1
    cap.release()
    assert decoded == 202
    assert len(read_jsonl(jsonl)) == 202


def _run_network(cue: str, step: int = 10):
    from models.hand.asset import load_hand_asset

    regressor = np.asarray(load_hand_asset().joint_regressor, np.float64)
    errors, errors_mesh, depths = [], [], []
    options = PipelineOptions(cue=cue, smoothing=SmoothingParams(enabled=False))
    with VideoFileSource(REAL_CLIP) as src, HandPipeline(_backend(), options=options) as pipeline:
        for frame in src:
            if frame.index % step:
                continue
            result = pipeline.process(frame)
            for hand in result.hands:
                box = float(np.ptp(hand.landmarks_img, axis=0).max())
                errors.append(np.median(np.linalg.norm(hand.joints_img - hand.landmarks_img, axis=1)) / box)
                mesh_uv = _mesh_joints_img(hand, result, regressor)
                errors_mesh.append(np.median(np.linalg.norm(mesh_uv - hand.landmarks_img, axis=1)) / box)
                depths.append(hand.depth_m)
    return np.array(errors), np.array(errors_mesh), np.array(depths)


@pytest.mark.slow
def test_projected_mesh_matches_mediapipe_and_depth_is_plausible() -> None:
    errors, errors_mesh, depths = _run_network("fused")
    assert len(errors) >= 18  # 21 sampled frames, hand found in (almost) all
    bound = FUSED_BOUND if SHIPPED is not None else 0.15
    assert np.median(errors) < bound
    assert np.median(errors_mesh) < bound
    assert np.all((depths > 0.2) & (depths < 1.5)), depths


@pytest.mark.slow
@pytest.mark.skipif(SHIPPED is None, reason="the image-only and 2D-only cues need the shipped (trained) weights")
@pytest.mark.parametrize("cue", ["network", "mediapipe"])
def test_other_cues_with_shipped_weights(cue: str) -> None:
    errors, errors_mesh, depths = _run_network(cue)
    bound = NETWORK_BOUND if cue == "network" else MEDIAPIPE_BOUND
    assert np.median(errors_mesh) < bound
    assert np.all((depths > 0.2) & (depths < 1.5)), depths


@pytest.mark.slow
@pytest.mark.skipif(default_weights("onnx") is None, reason="needs the shipped ONNX weights")
@pytest.mark.parametrize("cue", ["fused", "mediapipe", "network"])
def test_the_default_onnx_backend_keeps_every_found_hand_for_every_cue(cue: str) -> None:
    """The app's default backend (shipped ONNX) reports every hand MediaPipe finds, with every cue: an
    export once produced NaN meshes for the cues without MediaPipe's 3D landmarks, and the app dropped them."""
    from app.backends import create_backend

    options = PipelineOptions(cue=cue, smoothing=SmoothingParams(enabled=False))
    found = reported = dropped = 0
    with VideoFileSource(REAL_CLIP) as src, HandPipeline(create_backend("onnx", default_weights("onnx")), options=options) as pipeline:
        for frame in src:
            if frame.index % 20:
                continue
            prepared = pipeline.prepare(frame)
            result = pipeline.finish(prepared)
            found += len(prepared.detections)
            reported += len(result.hands)
            dropped += result.hands_dropped
    assert found >= 9 and dropped == 0 and reported == found


@pytest.mark.slow
def test_two_real_hands_are_batched_tracked_and_placed() -> None:
    """The clip beside its mirror image: a right and a left hand, in one network call per frame."""
    frames = []
    with VideoFileSource(REAL_CLIP) as src:
        for frame in src:
            if frame.index >= 100 and frame.index % 4 == 0:
                frames.append(frame)
            if len(frames) == 8:
                break
    options = PipelineOptions(max_hands=2, smoothing=SmoothingParams(enabled=False))
    ids: dict[str, set[int]] = {"left": set(), "right": set()}
    with HandPipeline(_backend(), options=options) as pipeline:
        for frame in frames:
            pair = np.ascontiguousarray(np.concatenate([frame.bgr, frame.bgr[:, ::-1]], axis=1))
            result = pipeline.process(type(frame)(bgr=pair, t=frame.t, index=frame.index))
            assert len(result.hands) == 2
            for hand in result.hands:
                ids[hand.handedness].add(hand.track_id)
                box = float(np.ptp(hand.landmarks_img, axis=0).max())
                err = np.median(np.linalg.norm(hand.joints_img - hand.landmarks_img, axis=1)) / box
                assert err < 0.15
                # The right hand is in the left half of the composite, its mirror image in the right half.
                assert (hand.translation_cam[0] < 0) == (hand.handedness == "right")
    assert len(ids["left"]) == 1 and len(ids["right"]) == 1 and ids["left"] != ids["right"]
