"""app.evaluate_app: the app-path evaluation (synthetic frames, real photos, real clip, README pictures).

Fast checks only: the helpers on fabricated inputs (a perfect prediction scores 0), the still-image
detector adapter, a 3-frame synthetic run through the CLI with an untrained ``realtime_fused`` model
(well-formed numbers; the true hand length is honoured), and, when ../shared/real is present, the
photo report on 3 photos, one picture cell and 3 clip frames. The full runs are commands (module doc).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch

from app.evaluate_app import (
    PICTURE_PHOTOS,
    StillImageAdapter,
    _SettingAccumulator,
    agreement,
    evaluate_clip,
    evaluate_photos,
    main,
    match_detection,
    pairwise_pa_mpjpe_mm,
    render_pictures,
    render_side_view,
    scale_summary,
    skin_deviation_mm,
    still_pipeline,
)
from app.mediapipe_labels import MediaPipeHand
from app.results import HandResult
from models.paths import SHARED_REAL_DIR

PHOTOS = SHARED_REAL_DIR / "photos"
CLIP = SHARED_REAL_DIR / "open_palm_640x360.mp4"


def _hand_joints(seed: int = 0) -> np.ndarray:
    """A plausible ``(21, 3)`` right hand in camera space (metres): fingers fanned upward from the wrist."""
    rng = np.random.default_rng(seed)
    joints = np.zeros((21, 3))
    for f, angle in enumerate(np.linspace(-0.6, 0.6, 5)):
        direction = np.array([np.sin(angle), -np.cos(angle), 0.1 * rng.standard_normal()])
        for k in range(4):
            joints[1 + 4 * f + k] = (0.03 + 0.025 * k) * direction + 0.003 * rng.standard_normal(3)
    return joints + np.array([0.05, 0.02, 0.5])


def _result(joints_cam: np.ndarray, verts_cam: np.ndarray, *, depth_source: str = "dgp") -> HandResult:
    K = np.array([[500.0, 0.0, 320.0], [0.0, 500.0, 240.0], [0.0, 0.0, 1.0]])
    uv = (joints_cam[:, :2] / joints_cam[:, 2:3]) * 500.0 + K[:2, 2]
    return HandResult(
        track_id=0, handedness="right", detection_score=1.0, confidence=1.0, box_img=np.zeros(4, np.float32),
        landmarks_img=uv.astype(np.float32), joints_img=uv.astype(np.float32),
        joints_cam=joints_cam.astype(np.float32), vertices_cam=verts_cam.astype(np.float32),
        translation_cam=joints_cam[0].astype(np.float32), dgp_weights=np.ones(21, np.float32),
        cue="fused", hand_length_m=0.18, depth_source=depth_source,
    )


@pytest.fixture(scope="module")
def backend() -> Iterator[object]:
    """An untrained realtime_fused model on torch, one thread (two threads crawl on a loaded 2-core box)."""
    from app.backends.torch_backend import TorchBackend
    from models.config import get_preset
    from models.m3dhmr import M3DHMR

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    try:
        yield TorchBackend(M3DHMR.from_config(get_preset("realtime_fused")))
    finally:
        torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------------ helpers


def test_match_detection_picks_the_true_hand_or_none() -> None:
    truth = _hand_joints()[:, :2] * 1000.0
    near = truth + 2.0
    far = truth + 500.0
    assert match_detection([far, near], truth) == 1
    assert match_detection([truth], truth) == 0
    assert match_detection([far], truth) is None
    assert match_detection([], truth) is None


def test_agreement_is_zero_for_a_perfect_projection_and_measures_size() -> None:
    lm = _hand_joints()[:, :2] * 1000.0
    perfect = agreement(lm, lm)
    assert perfect.error_diag == 0.0 and perfect.error_side == 0.0 and perfect.size_ratio == pytest.approx(1.0)
    centre = lm.mean(axis=0)
    bigger = agreement(centre + 1.2 * (lm - centre), lm)
    assert bigger.size_ratio == pytest.approx(1.2)
    assert bigger.error_diag > 0.0


def test_pairwise_pose_diversity() -> None:
    a = _hand_joints(0) - _hand_joints(0)[0]
    rot = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    same = np.stack([a, 1.3 * a @ rot.T, a])  # one pose, rotated and scaled: Procrustes removes both
    assert pairwise_pa_mpjpe_mm(same) == pytest.approx(0.0, abs=1e-3)
    varied = np.stack([_hand_joints(s) - _hand_joints(s)[0] for s in range(4)])
    assert pairwise_pa_mpjpe_mm(varied) > 0.1
    assert math.isnan(pairwise_pa_mpjpe_mm(a[None]))


def test_perfect_prediction_scores_zero_and_scale_is_separated() -> None:
    gt = _hand_joints()
    verts = np.concatenate([gt, gt + 0.004])
    perfect = _SettingAccumulator()
    perfect.add(_result(gt, verts), gt, verts)
    s = perfect.summary()
    assert s["hands"] == 1
    for key in ("pa_mpjpe_mm", "pa_mpvpe_mm", "mpjpe_cam_mm", "root_error_mm", "depth_error_mm",
                "mpjpe_cam_rescaled_mm", "mpjpe_cam_best_scale_mm"):
        assert s[key] == pytest.approx(0.0, abs=1e-3), key
    assert s["f_at_5mm"] == pytest.approx(1.0) and s["f_at_15mm"] == pytest.approx(1.0)
    assert s["hand_length_ratio_median"] == pytest.approx(1.0, abs=1e-5)
    assert s["guard_fraction"] == 0.0

    # The same hand 20% too large and 20% too far (what DGP does with a too-large mesh): only scale is wrong.
    scaled = _SettingAccumulator()
    scaled.add(_result(1.2 * gt, 1.2 * verts, depth_source="size"), gt, verts)
    t = scaled.summary()
    assert t["pa_mpjpe_mm"] == pytest.approx(0.0, abs=1e-3)
    assert t["mpjpe_cam_mm"] > 50.0
    assert t["depth_bias_mm"] > 0.0
    assert t["depth_share_of_root_error"] > 0.9
    assert t["hand_length_ratio_median"] == pytest.approx(1.2, abs=1e-4)
    assert t["mpjpe_cam_rescaled_mm"] == pytest.approx(0.0, abs=1e-3)
    assert t["guard_fraction"] == 1.0
    share = scale_summary(t, s)
    assert share["share_removed_by_true_size"] == pytest.approx(1.0, abs=1e-4)
    assert share["share_removed_by_rescale"] == pytest.approx(1.0, abs=1e-4)
    assert share["share_removed_by_best_scale"] == pytest.approx(1.0, abs=1e-4)
    assert _SettingAccumulator().summary() == {"hands": 0, "dropped": 0}


def test_still_image_adapter_speaks_the_pipeline_detector_interface() -> None:
    uv = (_hand_joints()[:, :2] * 1000.0).astype(np.float32)

    class FakeStill:
        closed = False
        shifts = (0.0, 500.0, 1000.0)  # three hands side by side; (0, 0, 500): one of them read twice

        def detect(self, bgr: np.ndarray) -> list[MediaPipeHand]:
            return [MediaPipeHand(uv + shift, np.zeros(21, np.float32), np.ones((21, 3), np.float32), False, 0.9)
                    for shift in self.shifts]

        def close(self) -> None:
            FakeStill.closed = True

    still = FakeStill()
    adapter = StillImageAdapter(max_hands=2, detector=still)
    dets = adapter.detect(np.zeros((8, 8, 3), np.uint8), 0.0)
    assert len(dets) == 2
    assert dets[0].handedness == "left" and dets[0].score == pytest.approx(0.9)
    still.shifts = (0.0, 0.0, 500.0)
    assert len(adapter.detect(np.zeros((8, 8, 3), np.uint8), 0.0)) == 1  # the second reading is dropped
    np.testing.assert_array_equal(dets[0].landmarks_img, uv)
    np.testing.assert_allclose(dets[0].box_img, [*uv.min(axis=0), *uv.max(axis=0)])
    adapter.reset()
    adapter.close()
    assert FakeStill.closed


def test_side_view_draws_the_mesh() -> None:
    gt = _hand_joints()
    faces = np.array([[0, 9, 5], [0, 13, 9], [0, 17, 13], [0, 5, 1]], np.int64)
    # A thick fan (front and back copies) so that some faces face the side-view camera.
    verts = np.concatenate([gt, gt + np.array([0.0, 0.0, 0.02])])
    faces = np.concatenate([faces, faces[:, ::-1] + 21, [[0, 21, 9], [9, 21, 30]]])
    panel = render_side_view([(verts, faces, (60, 180, 255))], (120, 100))
    assert panel.shape == (100, 120, 3) and panel.dtype == np.uint8
    assert (np.abs(panel.astype(int) - 40).sum(axis=2) > 60).sum() > 50  # mesh pixels beside the text
    assert render_side_view([], (30, 20)).shape == (20, 30, 3)


# ------------------------------------------------------------------------------------------ synthetic


def test_synth_cli_on_three_frames(tmp_path: Path, backend: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """3 synthetic test frames through the CLI (MediaPipe finds frame 1): JSON and markdown, sane numbers."""
    import app.evaluate_app as evaluate_app

    monkeypatch.setattr(evaluate_app, "open_backend", lambda args: backend)
    monkeypatch.setattr(evaluate_app, "backend_info", lambda b, args: {
        "backend": {"name": "torch-cpu"}, "weights": None, "untrained": "realtime_fused",
        "model": "realtime_fused", "host": "test"})
    assert main(["synth", "--n", "3", "--cue", "fused", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "synth_fused.json").read_text())
    assert "PA-MPJPE" in (tmp_path / "synth_fused.md").read_text()
    det = report["detection"]
    assert report["frames"] == 3 and len(report["samples"]) == 3
    assert 1 <= det["found"] <= 3 and det["detection_rate"] == det["found"] / 3
    assert 0.0 <= det["handedness_agreement"] <= 1.0
    unknown, known = report["cues"]["fused"]["size_unknown"], report["cues"]["fused"]["true_size"]
    for entry in (unknown, known):
        assert entry["hands"] + entry["dropped"] == det["found"]
    assert known["hands"] >= 1
    for key in ("pa_mpjpe_mm", "pa_mpvpe_mm", "mpjpe_cam_mm", "root_error_mm", "hand_length_ratio_median"):
        assert math.isfinite(known[key]) and known[key] > 0.0, key
    assert 0.0 <= known["f_at_5mm"] <= known["f_at_15mm"] <= 1.0
    # realtime_fused takes the user's hand length: with the true one given the mesh has the true length.
    assert known["hand_length_ratio_median"] == pytest.approx(1.0, abs=0.02)
    assert 0.0 <= known["guard_fraction"] <= 1.0
    # the true meshes are smooth posed hands (about 17 deg); an untrained network's are not smoother
    assert 10.0 < known["surface_bend_true_deg"] < 25.0 and known["surface_bend_deg"] > 0.0
    assert 0.0 < known["skin_thickness_true_mm"] < 3.0 and known["skin_thickness_mm"] > 0.0
    scale = report["cues"]["fused"]["scale"]
    assert {"share_removed_by_true_size", "depth_share_of_root_error_size_unknown"} <= set(scale)


def test_skin_deviation_ignores_place_and_size_and_other_topologies() -> None:
    from models.hand.asset import load_hand_asset

    template = np.asarray(load_hand_asset().template_vertices, np.float64)
    moved = template * 1.3 + np.array([0.1, -0.2, 0.5])
    swollen = template * np.array([1.0, 1.0, 1.6])
    at_rest, placed, thick = skin_deviation_mm(np.stack([template, moved, swollen]))
    assert at_rest < 1e-3 and placed < 1e-3 and thick > 1.0
    assert skin_deviation_mm(template[None, :-1]) == []


# ------------------------------------------------------------------------------------------ real data


def test_cli_refuses_bad_paths_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["photos", "--root", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["clip", "--source", str(tmp_path / "missing.mp4")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["pictures", "--out", str(tmp_path / "x.jpg")]) == 2
    assert ".png" in capsys.readouterr().err


@pytest.mark.real
@pytest.mark.skipif(not PHOTOS.is_dir(), reason="../shared/real/photos absent")
def test_photo_report_on_three_photos(backend: object) -> None:
    names = [rel for label, rel in PICTURE_PHOTOS if label.startswith(("fist", "two hands", "open"))]
    photos = [PHOTOS / rel for rel in names]
    with still_pipeline(backend, "fused") as pipeline:
        report = evaluate_photos(pipeline, photos, PHOTOS, cues=("fused", "network"))
    assert report["photos"] == 3 and report["hands_detected"] >= 3
    assert "MediaPipe" in report["reference"]
    for cue in ("fused", "network"):
        s = report["cues"][cue]
        assert s["hands"] + s["dropped"] == report["hands_detected"]
        assert s["hands"] >= 2
        assert 0.0 <= s["agreement_median"] < 5.0
        assert 0.0 <= s["fraction_under_0.15"] <= 1.0 and 0.0 <= s["size_ratio_within_range"] <= 1.0
        assert s["pose_diversity_mediapipe_mm"] > 0.0 and s["pose_diversity_mesh_mm"] >= 0.0
        assert s["closer_than_0.15m"] >= 0
        assert 5.0 < s["surface_bend_deg"] < 90.0
        assert 0.0 < s["skin_thickness_mm"] < 20.0


@pytest.mark.real
@pytest.mark.skipif(not PHOTOS.is_dir(), reason="../shared/real/photos absent")
def test_one_picture_cell(backend: object) -> None:
    with still_pipeline(backend, "fused") as pipeline:
        grid, info = render_pictures(pipeline, PHOTOS, PICTURE_PHOTOS[:1], panel_height=80, columns=1, footer="x")
    assert grid.ndim == 3 and grid.shape[0] > 80 and grid.dtype == np.uint8
    assert info[0]["hands"] >= 1 and len(info[0]["agreement"]) == info[0]["hands"]


@pytest.mark.real
@pytest.mark.skipif(not CLIP.is_file(), reason="../shared/real absent")
def test_clip_report_on_a_few_frames(backend: object) -> None:
    report = evaluate_clip(backend, CLIP, cues=("mediapipe",), max_frames=3)
    s = report["cues"]["mediapipe"]
    assert s["frames"] == 3 and s["hands"] >= 2
    assert math.isfinite(s["agreement_median"]) and math.isfinite(s["test_figure_median"])
