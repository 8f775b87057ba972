"""HandPipeline on synthetic frames: geometry chain, batching, tracking, bad inputs, drawing."""
from __future__ import annotations

import numpy as np
import pytest

from app.drawing import DrawOptions, draw_annotated
from app.intrinsics import Intrinsics
from app.pipeline import HandPipeline, PipelineOptions
from app.results import FrameResult
from app.smoothing import SmoothingParams
from app.sources import ArraySource, Frame
from tests.pipeline_fakes import ROOT_DEPTH_M, GeometricBackend, ScriptedDetector, hand_landmarks

W, H = 640, 360
RAW = PipelineOptions(smoothing=SmoothingParams(enabled=False))


def _frame(index: int = 0, image: np.ndarray | None = None) -> Frame:
    bgr = image if image is not None else np.full((H, W, 3), 90, np.uint8)
    return Frame(bgr=bgr, t=index / 25.0, index=index)


def _two_hands() -> list[tuple[np.ndarray, str]]:
    return [
        (hand_landmarks((170.0, 200.0), 140.0, flip_x=True), "left"),
        (hand_landmarks((480.0, 170.0), 120.0), "right"),
    ]


def test_projected_joints_return_to_the_landmarks_for_both_hands() -> None:
    backend = GeometricBackend()
    script = [_two_hands()]
    with HandPipeline(backend, options=RAW, detector=ScriptedDetector(script)) as pipeline:
        result = pipeline.process(_frame())
    assert backend.calls == [2]  # both hands in one network call
    assert [h.handedness for h in result.hands] == ["left", "right"]
    assert result.intrinsics_assumed
    for hand, (landmarks, _) in zip(result.hands, script[0]):
        np.testing.assert_allclose(hand.joints_img, landmarks, atol=0.05)
        assert 0.9 * ROOT_DEPTH_M < hand.depth_m <= ROOT_DEPTH_M  # 0.5 m along the virtual axis
        assert hand.joints_cam.shape == (21, 3) and hand.vertices_cam.shape == (21, 3)
        assert hand.joints_cam.dtype == np.float32
        x0, y0, x1, y1 = hand.box_img
        assert x0 < landmarks[:, 0].min() and x1 > landmarks[:, 0].max()
        assert y0 < landmarks[:, 1].min() and y1 > landmarks[:, 1].max()
        assert 0.0 < hand.confidence <= 1.0
    # The left hand sits left of the image centre: negative x in the camera.
    assert result.hands[0].translation_cam[0] < 0 < result.hands[1].translation_cam[0]
    assert set(result.timings_ms) == {"detect", "crop", "network", "dgp", "smoothing"}
    assert result.faces_for(result.hands[0])[0].tolist() == result.faces_right[0, ::-1].tolist()


def test_network_cue_does_not_pass_mediapipe_joints() -> None:
    backend = GeometricBackend()
    options = PipelineOptions(cue="network", smoothing=SmoothingParams(enabled=False))
    with HandPipeline(backend, options=options, detector=ScriptedDetector([_two_hands()[1:]])) as pipeline:
        result = pipeline.process(_frame())
    landmarks = _two_hands()[1][0]
    # The fake 'network' puts its own fan in the crop: it no longer reproduces MediaPipe's landmarks.
    assert np.abs(result.hands[0].joints_img - landmarks).max() > 5.0
    assert np.all(np.isfinite(result.hands[0].joints_cam))


def test_distortion_is_handled_end_to_end() -> None:
    K = np.array([[500.0, 0.0, 319.5], [0.0, 500.0, 179.5], [0.0, 0.0, 1.0]])
    intr = Intrinsics(K=K, dist=np.array([-0.3, 0.1, 0.0, 0.0, 0.0]), size=(W, H), assumed=False)
    script = [_two_hands()]
    with HandPipeline(GeometricBackend(), intrinsics=intr, options=RAW, detector=ScriptedDetector(script)) as p:
        result = p.process(_frame())
    assert not result.intrinsics_assumed
    for hand, (landmarks, _) in zip(result.hands, script[0]):
        np.testing.assert_allclose(hand.joints_img, landmarks, atol=0.1)


def test_intrinsics_file_is_scaled_to_the_frame() -> None:
    K = np.array([[1000.0, 0.0, 639.5], [0.0, 1000.0, 359.5], [0.0, 0.0, 1.0]])
    intr = Intrinsics(K=K, dist=np.zeros(0), size=(1280, 720), assumed=False)
    with HandPipeline(GeometricBackend(), intrinsics=intr, options=RAW, detector=ScriptedDetector([[]])) as p:
        result = p.process(_frame())
    np.testing.assert_allclose(result.K[0, 0], 500.0)
    np.testing.assert_allclose(result.K[:2, 2], [319.5, 179.5])  # pixel centres stay centred


def test_no_hand_gives_an_empty_result_and_skips_the_network() -> None:
    backend = GeometricBackend()
    with HandPipeline(backend, options=RAW, detector=ScriptedDetector([[]])) as pipeline:
        result = pipeline.process(_frame())
    assert result.hands == () and backend.calls == []
    assert result.timings_ms["network"] == 0.0
    image = draw_annotated(_frame().bgr, result, fps=30.0)
    assert image.shape == (H, W, 3)


def test_ids_survive_detector_reordering_and_smoothing_reduces_jitter() -> None:
    rng = np.random.default_rng(0)
    base = _two_hands()
    script = []
    for k in range(30):
        entries = [(lm + rng.normal(0.0, 1.5, lm.shape).astype(np.float32), hand) for lm, hand in base]
        script.append(entries if k % 2 == 0 else entries[::-1])
    depths: dict[str, dict[int, list[float]]] = {"raw": {}, "smooth": {}}
    for mode, smoothing in (("raw", SmoothingParams(enabled=False)), ("smooth", SmoothingParams())):
        options = PipelineOptions(smoothing=smoothing)
        with HandPipeline(GeometricBackend(), options=options, detector=ScriptedDetector(script)) as pipeline:
            for k in range(30):
                result = pipeline.process(_frame(k))
                for hand in result.hands:
                    depths[mode].setdefault(hand.track_id, []).append(hand.translation_cam[0])
                    assert hand.handedness == ("left" if hand.track_id == 0 else "right")
    assert sorted(depths["raw"]) == [0, 1] and sorted(depths["smooth"]) == [0, 1]
    for track in (0, 1):
        raw_jitter = np.std(np.diff(depths["raw"][track][10:]))
        smooth_jitter = np.std(np.diff(depths["smooth"][track][10:]))
        assert smooth_jitter < 0.6 * raw_jitter


@pytest.mark.parametrize("shape", [(1, 1), (H, W), (2160, 3840, 3), (3, 5, 3)])
def test_odd_inputs_with_real_mediapipe_do_not_crash(shape: tuple[int, ...]) -> None:
    image = np.full(shape, 120, np.uint8)
    with HandPipeline(GeometricBackend(), options=RAW) as pipeline:
        frame, result = next(pipeline.run(ArraySource([image])))
    assert frame.bgr.shape[:2] == shape[:2] and frame.bgr.shape[2] == 3
    assert isinstance(result, FrameResult) and result.hands == ()
    assert result.image_size == (shape[1], shape[0]) and "read" in result.timings_ms


def test_drawing_modes_change_the_image() -> None:
    with HandPipeline(GeometricBackend(), options=RAW, detector=ScriptedDetector([_two_hands()])) as pipeline:
        result = pipeline.process(_frame())
    base = _frame().bgr
    images = {
        mode: draw_annotated(base, result, options=DrawOptions(mesh=mode, stats=False, labels=False, skeleton=False))
        for mode in ("none", "wireframe", "shaded")
    }
    assert np.array_equal(images["none"], base)
    assert np.count_nonzero(images["shaded"] != base) > np.count_nonzero(images["wireframe"] != base) > 0
    full = draw_annotated(base, result, options=DrawOptions(mirror_view=True), fps=24.0)
    assert full.shape == base.shape and not np.array_equal(full, base)
    with pytest.raises(ValueError):
        draw_annotated(base, result, options=DrawOptions(mesh="glitter"))


def test_results_are_immutable() -> None:
    with HandPipeline(GeometricBackend(), options=RAW, detector=ScriptedDetector([_two_hands()])) as pipeline:
        result = pipeline.process(_frame())
    with pytest.raises(AttributeError):
        result.hands = ()  # type: ignore[misc]
    with pytest.raises(TypeError):
        result.timings_ms["draw"] = 1.0  # type: ignore[index]
    assert result.with_timing("draw", 2.0).timings_ms["draw"] == 2.0


def test_options_validate() -> None:
    with pytest.raises(ValueError):
        PipelineOptions(cue="openpose")
    with pytest.raises(ValueError):
        PipelineOptions(max_hands=0)


def test_overlapped_run_gives_the_same_results_as_sequential() -> None:
    rng = np.random.default_rng(1)
    script = [[(lm + rng.normal(0, 1.0, lm.shape).astype(np.float32), hand) for lm, hand in _two_hands()]
              for _ in range(12)]
    images = [np.full((H, W, 3), 90, np.uint8)] * 12
    outputs = {}
    for mode in ("run", "run_overlapped"):
        with HandPipeline(GeometricBackend(), detector=ScriptedDetector(script)) as pipeline:
            outputs[mode] = [r for _, r in getattr(pipeline, mode)(ArraySource(images), max_frames=10)]
    assert len(outputs["run"]) == len(outputs["run_overlapped"]) == 10
    for a, b in zip(outputs["run"], outputs["run_overlapped"]):
        assert a.index == b.index and [h.track_id for h in a.hands] == [h.track_id for h in b.hands]
        for ha, hb in zip(a.hands, b.hands):
            np.testing.assert_array_equal(ha.vertices_cam, hb.vertices_cam)


def test_overlapped_run_relays_source_errors_and_stops_early() -> None:
    class Failing(ArraySource):
        def read(self):
            frame = super().read()
            if frame is not None and frame.index == 3:
                raise RuntimeError("camera unplugged")
            return frame

    images = [np.full((H, W, 3), 90, np.uint8)] * 6
    with HandPipeline(GeometricBackend(), detector=ScriptedDetector([_two_hands()])) as pipeline:
        seen = []
        with pytest.raises(RuntimeError, match="unplugged"):
            for frame, _ in pipeline.run_overlapped(Failing(images)):
                seen.append(frame.index)
        assert seen == [0, 1, 2]
        runner = pipeline.run_overlapped(ArraySource(images * 10))
        next(runner)
        runner.close()  # the producer thread stops and is joined
