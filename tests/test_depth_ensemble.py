"""The fused cue's depth ensemble: the numpy placement (models.depth_ensemble), per-row cue masks in both
backends, and the pipeline that runs three cues in one call."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from app.backends import BackendRequest, BackendResult
from app.backends.onnx_backend import OnnxBackend
from app.backends.torch_backend import TorchBackend
from app.pipeline import HandPipeline, PipelineOptions, infer_with_depth_ensemble
from app.smoothing import SmoothingParams
from app.sources import Frame
from models.depth_ensemble import (
    mean_depth,
    place_with_ensemble,
    rescale_about_camera,
    translation_at_depth,
)
from models.depth_guard import MIN_DEPTH_M
from models.errors import InputShapeError
from models.m3dhmr import MAX_HAND_LENGTH_M
from models.mediapipe_frame import hand_length
from tests.misuse_support import SHIPPED_ONNX, SHIPPED_SAFETENSORS, needs_shipped_weights
from tests.pipeline_fakes import ScriptedDetector, hand_landmarks

K = np.array([[300.0, 0.0, 63.5], [0.0, 300.0, 63.5], [0.0, 0.0, 1.0]])


def _project(points: np.ndarray, k: np.ndarray) -> np.ndarray:
    uvw = points @ np.swapaxes(k, -1, -2)
    return uvw[..., :2] / uvw[..., 2:3]


def _hands(batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(joints_rel (B, 21, 3), translation (B, 3))``: random point sets with a hand length of 0.15 m,
    0.3-0.8 m away."""
    rng = np.random.default_rng(seed)
    rel = rng.normal(0.0, 0.02, (batch, 21, 3))
    rel -= rel[:, :1]
    rel *= (0.15 / hand_length(rel))[:, None, None]
    t = np.stack([rng.uniform(-0.1, 0.1, batch), rng.uniform(-0.1, 0.1, batch), rng.uniform(0.3, 0.8, batch)], -1)
    return rel, t


def test_mean_depth_leaves_out_members_that_are_no_hand() -> None:
    depths = np.array([[0.5, 0.6, 0.7], [0.5, np.nan, 0.7], [0.5, 0.02, np.inf], [np.nan, np.nan, np.nan]])
    np.testing.assert_allclose(mean_depth(depths)[:3], [0.6, 0.6, 0.5])
    assert np.isnan(mean_depth(depths)[3])  # nothing plausible: the primary's own value, untouched
    assert mean_depth(np.array([[MIN_DEPTH_M / 2, 0.4]]))[0] == pytest.approx(0.4)
    with pytest.raises(ValueError):
        mean_depth(np.zeros(3))


def test_rescaling_about_the_camera_moves_the_wrist_and_keeps_every_projection() -> None:
    rel, t = _hands(6)
    verts = rel[:, [0, 3, 7, 12, 20]] * 1.1
    length = hand_length(rel)
    depth = t[:, 2] * np.array([0.8, 0.9, 1.0, 1.1, 1.2, 1.3])
    placed = rescale_about_camera(t, verts, rel, length, depth)
    np.testing.assert_allclose(placed.translation_virt[:, 2], depth, rtol=1e-12)
    k = np.broadcast_to(K, (6, 3, 3))
    np.testing.assert_allclose(_project(placed.joints_rel + placed.translation_virt[:, None], k),
                               _project(rel + t[:, None], k), atol=1e-9)
    np.testing.assert_allclose(_project(placed.vertices_rel + placed.translation_virt[:, None], k),
                               _project(verts + t[:, None], k), atol=1e-9)
    np.testing.assert_allclose(placed.hand_length, length * depth / t[:, 2], rtol=1e-12)
    np.testing.assert_allclose(hand_length(placed.joints_rel), placed.hand_length, rtol=1e-9)


def test_rescaling_keeps_the_hand_length_in_the_networks_range() -> None:
    rel, t = _hands(2, seed=1)
    rel = rel * (0.2 / hand_length(rel))[:, None, None]  # 20 cm hands
    placed = rescale_about_camera(t, rel, rel, np.full(2, 0.2), t[:, 2] * np.array([3.0, np.nan]))
    assert placed.hand_length[0] == pytest.approx(MAX_HAND_LENGTH_M)
    assert placed.scale[1] == 1.0 and placed.hand_length[1] == pytest.approx(0.2)


def test_translation_at_the_true_depth_recovers_the_true_translation() -> None:
    rel, t = _hands(5, seed=2)
    k = np.broadcast_to(K, (5, 3, 3))
    uv = _project(rel + t[:, None], k)
    weights = np.random.default_rng(3).uniform(0.2, 1.0, (5, 21))
    np.testing.assert_allclose(translation_at_depth(rel, uv, k, weights, t[:, 2]), t, atol=1e-12)
    np.testing.assert_allclose(translation_at_depth(rel, uv, k, np.zeros((5, 21)), t[:, 2]), t, atol=1e-12)


def test_a_given_size_is_kept_and_only_the_depth_moves() -> None:
    rel, t = _hands(4, seed=4)
    k = np.broadcast_to(K, (4, 3, 3))
    uv = _project(rel + t[:, None], k)
    members = np.stack([t[:, 2] * 1.1, t[:, 2] * 1.3], -1)
    placed = place_with_ensemble(t, rel, rel, hand_length(rel), uv, k, np.ones((4, 21)), members, size_given=True)
    np.testing.assert_allclose(placed.translation_virt[:, 2], t[:, 2] * (1.0 + 1.1 + 1.3) / 3.0)
    np.testing.assert_array_equal(placed.joints_rel, rel)
    np.testing.assert_array_equal(placed.hand_length, hand_length(rel))
    unknown = place_with_ensemble(t, rel, rel, hand_length(rel), uv, k, np.ones((4, 21)), members, size_given=False)
    np.testing.assert_allclose(unknown.translation_virt[:, 2], placed.translation_virt[:, 2])
    np.testing.assert_allclose(unknown.hand_length, hand_length(rel) * (1.0 + 1.1 + 1.3) / 3.0)


# ------------------------------------------------------------------ the shipped network, both backends


def _fused_request(batch: int, seed: int = 5) -> BackendRequest:
    rng = np.random.default_rng(seed)
    crop = 128
    k = np.array([[320.0, 0.0, 63.5], [0.0, 320.0, 63.5], [0.0, 0.0, 1.0]], np.float32)
    landmarks = np.stack([hand_landmarks((64.0 + dx, 70.0), 90.0) for dx in rng.uniform(-6, 6, batch)])
    # world landmarks: the 2D hand seen 0.5 m away (a flat open hand), with a few mm of depth noise
    flat = (landmarks - 63.5) * (0.5 / 320.0)
    world = np.concatenate([flat, rng.normal(0.0, 0.005, (batch, 21, 1))], axis=-1).astype(np.float32)
    return BackendRequest(
        crops_rgb=rng.integers(0, 256, (batch, crop, crop, 3), dtype=np.uint8),
        K_virt=np.broadcast_to(k, (batch, 3, 3)).copy(),
        virt_to_cam=np.broadcast_to(np.eye(3, dtype=np.float32), (batch, 3, 3)).copy(),
        joints_2d_external=landmarks.astype(np.float32),
        landmarks_3d=world - world[:, :1],
    )


def _cue_request(request: BackendRequest, cue: str) -> BackendRequest:
    return replace(request, joints_2d_external=None if cue == "network" else request.joints_2d_external,
                   landmarks_3d=request.landmarks_3d if cue == "fused" else None)


@pytest.fixture(scope="module", params=["torch", "onnx"])
def shipped_backend(request: pytest.FixtureRequest):
    if not (SHIPPED_SAFETENSORS.is_file() and SHIPPED_ONNX.is_file()):
        pytest.skip("the shipped weights are not in weights/")
    if request.param == "torch":
        return TorchBackend.from_checkpoint(SHIPPED_SAFETENSORS)
    return OnnxBackend(SHIPPED_ONNX, providers=["CPUExecutionProvider"], intra_op_threads=1)


@needs_shipped_weights
def test_per_row_cue_masks_give_each_cues_own_output(shipped_backend) -> None:
    """One call with rows [fused | mediapipe | network] equals three calls, one per cue."""
    base = _fused_request(2)
    b = base.batch_size
    tiled = BackendRequest(
        crops_rgb=np.concatenate([base.crops_rgb] * 3), K_virt=np.concatenate([base.K_virt] * 3),
        virt_to_cam=np.concatenate([base.virt_to_cam] * 3),
        joints_2d_external=np.concatenate([base.joints_2d_external] * 3),
        landmarks_3d=np.concatenate([base.landmarks_3d] * 3),
        external_rows=np.repeat([True, True, False], b), landmarks_rows=np.repeat([True, False, False], b),
    )
    together = shipped_backend.infer(tiled)
    for i, cue in enumerate(("fused", "mediapipe", "network")):
        alone = shipped_backend.infer(_cue_request(base, cue))
        part = together.take(slice(i * b, (i + 1) * b))
        for name in ("vertices_rel", "translation_virt", "joints_2d_used", "hand_length"):
            np.testing.assert_allclose(getattr(part, name), getattr(alone, name), atol=2e-5, err_msg=f"{cue} {name}")
    mediapipe = together.take(slice(b, 2 * b))
    fused = together.take(slice(0, b))
    assert not np.allclose(mediapipe.vertices_rel, fused.vertices_rel, atol=1e-4)  # the masks really differ


def test_row_masks_and_crop_index_are_checked() -> None:
    request = replace(_fused_request(2), landmarks_3d=None, landmarks_rows=np.array([True, False]))
    with pytest.raises(InputShapeError, match="landmarks_rows"):
        request.validate(128)
    base = _fused_request(2)
    shared = replace(base, crops_rgb=base.crops_rgb[:1], crop_index=np.array([0, 0]))
    shared.validate(128)
    assert shared.batch_size == 2 and shared.crops_per_row().shape == (2, 128, 128, 3)
    np.testing.assert_array_equal(shared.crops_per_row()[1], base.crops_rgb[0])
    with pytest.raises(InputShapeError, match="crop_index"):
        replace(shared, crop_index=np.array([0, 1])).validate(128)
    with pytest.raises(InputShapeError, match="crop_index"):
        replace(shared, crop_index=np.array([0.0, 0.0])).validate(128)
    with pytest.raises(InputShapeError, match="K_virt"):
        replace(shared, crop_index=np.array([0, 0, 0])).validate(128)


@needs_shipped_weights
@pytest.mark.parametrize("length_m", [None, 0.18])
def test_the_ensemble_places_the_fused_mesh_at_the_mean_cue_depth(shipped_backend, length_m: float | None) -> None:
    base = _fused_request(3, seed=6)
    if length_m is not None:
        base = replace(base, hand_length_m=np.full(3, length_m, np.float32))
    out = infer_with_depth_ensemble(shipped_backend, base)
    runs = {cue: shipped_backend.infer(_cue_request(base, cue)) for cue in ("fused", "mediapipe", "network")}
    expected = mean_depth(np.stack([runs[c].translation_virt[:, 2] for c in runs], axis=-1))
    assert np.ptp(np.stack([runs[c].translation_virt[:, 2] for c in runs]), axis=0).max() > 1e-3  # members differ
    np.testing.assert_allclose(out.translation_virt[:, 2], expected, rtol=1e-4)
    fused = runs["fused"]

    def to_img(r: BackendResult) -> np.ndarray:
        return _project(r.joints_rel + r.translation_virt[:, None], base.K_virt.astype(np.float64))

    if length_m is None:  # size unknown: the same overlay, another size
        np.testing.assert_allclose(to_img(out), to_img(fused), atol=2e-3)
        np.testing.assert_allclose(out.hand_length / fused.hand_length, expected / fused.translation_virt[:, 2], rtol=1e-4)
    else:  # size given: the user's size, the same shape
        np.testing.assert_allclose(out.hand_length, length_m, rtol=1e-5)
        np.testing.assert_allclose(out.joints_rel, fused.joints_rel, atol=1e-6)
    np.testing.assert_allclose(out.joints_cam, out.joints_rel + out.translation_virt[:, None], atol=1e-5)


@needs_shipped_weights
def test_the_pipeline_runs_the_ensemble_in_one_call_and_can_switch_it_off(shipped_backend) -> None:
    calls: list[int] = []
    original = shipped_backend.infer

    class Counting:
        def __getattr__(self, name: str):
            return getattr(shipped_backend, name)

        def infer(self, request: BackendRequest) -> BackendResult:
            calls.append(request.batch_size)
            return original(request)

    landmarks = hand_landmarks((160, 120), 90)
    detector = ScriptedDetector([[(landmarks, "right")]])
    scripted = detector.detect
    world = np.concatenate([(landmarks - landmarks[0]) * (0.18 / 90.0), np.zeros((21, 1), np.float32)], axis=1)

    def detect_with_world(bgr, t=None):  # MediaPipe's world landmarks: the 2D hand, flat, 18 cm long
        return [replace(d, world_landmarks=world.astype(np.float32)) for d in scripted(bgr, t)]

    detector.detect = detect_with_world  # type: ignore[method-assign]
    frame = Frame(bgr=np.random.default_rng(7).integers(0, 256, (240, 320, 3), dtype=np.uint8), t=0.0, index=0)
    results = {}
    for ensemble in (True, False):
        options = PipelineOptions(smoothing=SmoothingParams(enabled=False), depth_ensemble=ensemble)
        with HandPipeline(Counting(), options=options, detector=detector) as pipeline:  # type: ignore[arg-type]
            results[ensemble] = pipeline.process(frame).hands[0]
    assert calls == [3, 1]
    with_, without = results[True], results[False]
    assert (with_.depth_source, without.depth_source) == ("ensemble", "dgp")
    np.testing.assert_allclose(with_.joints_img, without.joints_img, atol=0.05)  # the overlay is the same
    assert with_.depth_m != pytest.approx(without.depth_m, rel=1e-4)


def test_the_ensemble_needs_the_fused_inputs_and_one_row_per_crop() -> None:
    base = _fused_request(2)

    class NeverCalled:
        def infer(self, request: BackendRequest) -> BackendResult:
            raise AssertionError("the backend must not run")

    for bad in (replace(base, landmarks_3d=None), replace(base, joints_2d_external=None),
                replace(base, crop_index=np.array([0, 1]))):
        with pytest.raises(ValueError, match="depth ensemble"):
            infer_with_depth_ensemble(NeverCalled(), bad)  # type: ignore[arg-type]
