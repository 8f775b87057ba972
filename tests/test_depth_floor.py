"""training.depth_floor: DGP with the true hand against given 2D points, on hand-built caches."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.mediapipe_frame import hand_length
from training.depth_floor import NetworkCues, depth_floor, log_correlation, main, to_markdown
from training.mp_data import CueCache, CueDataError

DEPTH_M = 0.6
FOCAL_PX = 300.0
CENTRE_PX = 63.5


def _cache(mp_uv_of: object, n: int = 5, flat: bool = True) -> CueCache:
    """``n`` hands of 21 joints around the optical axis at ``DEPTH_M``; ``mp_uv_of(true_uv)`` makes the
    "MediaPipe" 2D points; MediaPipe's world landmarks are the true wrist-relative joints."""
    rng = np.random.default_rng(0)
    rel = rng.normal(0.0, 0.04, (n, 21, 3))
    rel[:, 0] = 0.0
    if flat:
        rel[..., 2] = 0.0
    joints = rel + np.array([0.0, 0.0, DEPTH_M])
    K = np.array([[FOCAL_PX, 0.0, CENTRE_PX], [0.0, FOCAL_PX, CENTRE_PX], [0.0, 0.0, 1.0]])
    uvw = joints @ K.T
    true_uv = uvw[..., :2] / uvw[..., 2:3]
    arrays = {
        "index": np.arange(n), "joints_cam": joints.astype(np.float32),
        "virt_from_cam": np.broadcast_to(np.eye(3), (n, 3, 3)).astype(np.float32),
        "K_virt": np.broadcast_to(K, (n, 3, 3)).astype(np.float32),
        "mp_uv_crop": mp_uv_of(true_uv).astype(np.float32),  # type: ignore[operator]
        "mp_world_virt": (rel * 1.3).astype(np.float32),
    }
    return CueCache(Path("hand-built"), arrays, np.ones(n, bool), np.ones(n, bool), None)


def test_exact_2d_points_give_the_true_wrist() -> None:
    report = depth_floor(_cache(lambda uv: uv, flat=False))
    for name, row in report["rows"].items():
        assert row["root_mean_mm"] < 0.05, name
    assert report["mediapipe_2d_error_mean_px"] < 1e-3
    assert report["mediapipe_spread_ratio_mean"] == pytest.approx(1.0, abs=1e-4)


def test_a_skeleton_drawn_five_percent_small_puts_the_hand_five_percent_further() -> None:
    report = depth_floor(_cache(lambda uv: CENTRE_PX + (uv - CENTRE_PX) * 0.95))
    expected_mm = (DEPTH_M / 0.95 - DEPTH_M) * 1000.0
    row = report["rows"]["true shape, MediaPipe 2D"]
    assert row["depth_bias_mm"] == pytest.approx(expected_mm, rel=1e-3)
    assert row["root_mean_mm"] == pytest.approx(expected_mm, rel=1e-3)
    assert report["mediapipe_spread_ratio_mean"] == pytest.approx(0.95, abs=1e-4)


def test_a_hand_drawn_at_the_median_length_lands_off_by_its_size_ratio() -> None:
    cache = _cache(lambda uv: uv, n=3, flat=False)
    joints = cache.arrays["joints_cam"].astype(np.float64)
    rel = joints - joints[:, :1]
    scales = np.array([0.9, 1.0, 1.2])  # hand 1 is the median one
    cache.arrays["joints_cam"] = (rel * scales[:, None, None] + joints[:, :1]).astype(np.float32)
    lengths = np.array([float(hand_length(torch.from_numpy(r))) for r in rel * scales[:, None, None]])
    report = depth_floor(cache)
    row = report["rows_size_unknown"]["true shape at the median length, true 2D joints"]
    expected_mm = np.abs(lengths[1] / lengths - 1.0) * DEPTH_M * 1000.0
    assert row["root_mean_mm"] == pytest.approx(expected_mm.mean(), rel=1e-3)
    assert report["hand_length_median_mm"] == pytest.approx(lengths[1] * 1000.0, rel=1e-5)
    assert report["hand_length_abs_log_deviation"] == pytest.approx(np.abs(np.log(lengths / lengths[1])).mean(), rel=1e-4)
    assert report["rows"]["true shape, true 2D joints"]["root_mean_mm"] < 0.05
    assert "every hand drawn at that median length" in to_markdown(report)


def test_robust_weights_shrug_off_one_wild_landmark() -> None:
    def one_wild(uv: np.ndarray) -> np.ndarray:
        out = uv.copy()
        out[:, 12] += 25.0
        return out

    rows = depth_floor(_cache(one_wild, flat=False), huber_px=2.0)["rows"]
    plain, robust = rows["true shape, MediaPipe 2D"], rows["true shape, MediaPipe 2D, Huber 2 px"]
    assert plain["root_mean_mm"] > 5.0
    assert robust["root_mean_mm"] < 0.5 * plain["root_mean_mm"]


def test_a_photo_cache_is_refused_and_the_report_is_written(tmp_path: Path) -> None:
    cache = _cache(lambda uv: uv)
    del cache.arrays["joints_cam"]
    with pytest.raises(CueDataError, match="no ground truth"):
        depth_floor(cache)
    assert "| true shape, true 2D joints | 0.0 / 0.0 / 0.0 |" in to_markdown(depth_floor(_cache(lambda uv: uv)))
    with pytest.raises(SystemExit, match="no chunk"):
        main(["--cache", str(tmp_path / "missing"), "--out", str(tmp_path / "out")])


def _network(mp_uv_of: object, lengths: torch.Tensor) -> NetworkCues:
    return NetworkCues(torch.from_numpy(_cache(mp_uv_of).arrays["mp_uv_crop"]).double(), lengths)


def test_the_network_rows_need_a_readable_checkpoint(tmp_path: Path) -> None:
    report = depth_floor(_cache(lambda uv: uv), network=_network(lambda uv: uv + 2.0, torch.full((5,), 0.19)))
    row = report["rows"]["true shape, network 2D (image-only cue)"]
    assert row["root_mean_mm"] > 1.0 and report["error_2d_mean_px"]["network 2D"] == pytest.approx(np.hypot(2.0, 2.0), abs=1e-4)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    cache = _cache(lambda uv: uv)
    np.savez(cache_dir / "chunk_00000.npz", all_index=np.arange(5), all_found=np.ones(5, bool), all_handed_ok=np.ones(5, bool),
             crop_rgb=np.zeros((5, 8, 8, 3), np.uint8), **cache.arrays)
    with pytest.raises(SystemExit, match="not a readable safetensors"):
        main(["--cache", str(cache_dir), "--weights", str(bad)])


def test_two_skeletons_off_in_opposite_ways_blend_to_the_truth() -> None:
    shrunk = _cache(lambda uv: CENTRE_PX + (uv - CENTRE_PX) * 0.95)
    report = depth_floor(shrunk, network=_network(lambda uv: CENTRE_PX + (uv - CENTRE_PX) * 1.05, torch.full((5,), 0.19)))
    assert report["blend_network_weight"] == pytest.approx(0.5)
    assert report["rows"]["true shape, best blend of MediaPipe and network 2D (network weight 0.5)"]["root_mean_mm"] < 0.05
    assert report["rows"]["true shape, MediaPipe 2D"]["root_mean_mm"] > 20.0
    assert report["error_2d_mean_px"]["best blend"] < 1e-3
    assert "network weight 0.5" in to_markdown(report)


def test_size_information_is_the_log_correlation_with_the_true_length() -> None:
    truth = torch.tensor([0.17, 0.18, 0.19, 0.20, 0.21], dtype=torch.float64)
    assert log_correlation(truth ** 2, truth) == pytest.approx(1.0)
    assert log_correlation(1.0 / truth, truth) == pytest.approx(-1.0)
    assert log_correlation(torch.full((5,), 0.19), truth) == 0.0
    cache = _cache(lambda uv: uv, flat=False)
    lengths = hand_length(torch.from_numpy(cache.arrays["joints_cam"].astype(np.float64)))
    report = depth_floor(cache, network=_network(lambda uv: uv, torch.full((5,), 0.19)))
    # the cache's MediaPipe world landmarks are the true hand scaled by 1.3: they carry the size exactly
    assert report["size_log_correlation"]["MediaPipe world landmarks"] == pytest.approx(1.0)
    assert report["size_log_correlation"]["network, fused cue"] == 0.0
    assert float(lengths.std()) > 0.0
    assert "no information about the size" in to_markdown(report)
