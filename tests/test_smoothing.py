"""One Euro filter behaviour and hand identity tracking."""
from __future__ import annotations

import numpy as np
import pytest

from app.smoothing import HandSmoother, HandTracker, OneEuroFilter, OneEuroParams, SmoothingParams, box_iou


def test_one_euro_reduces_jitter_of_a_still_signal() -> None:
    rng = np.random.default_rng(0)
    noisy = 0.5 + rng.normal(0.0, 0.005, size=(200, 3))
    filt = OneEuroFilter(OneEuroParams(min_cutoff=1.0, beta=0.0))
    out = np.array([filt(x, i / 30.0) for i, x in enumerate(noisy)])
    assert np.std(np.diff(out[50:], axis=0)) < 0.2 * np.std(np.diff(noisy[50:], axis=0))
    np.testing.assert_allclose(out[50:].mean(axis=0), 0.5, atol=2e-3)


def test_beta_reduces_lag_on_fast_motion() -> None:
    t = np.arange(60) / 30.0
    ramp = np.stack([t * 1.0, np.zeros_like(t), np.ones_like(t)], axis=1)  # 1 m/s
    lags = []
    for beta in (0.0, 5.0):
        filt = OneEuroFilter(OneEuroParams(min_cutoff=0.5, beta=beta))
        out = np.array([filt(x, ti) for x, ti in zip(ramp, t)])
        lags.append(abs(ramp[-1, 0] - out[-1, 0]))
    assert lags[1] < 0.5 * lags[0]


def test_first_sample_passes_through_and_shape_change_resets() -> None:
    filt = OneEuroFilter()
    x = np.array([1.0, 2.0])
    np.testing.assert_array_equal(filt(x, 0.0), x)
    y = np.ones((3, 3))
    np.testing.assert_array_equal(filt(y, 0.1), y)
    with pytest.raises(ValueError):
        OneEuroFilter(OneEuroParams(min_cutoff=0.0))


def test_smoother_filters_translation_and_shape_separately() -> None:
    params = SmoothingParams(
        translation=OneEuroParams(min_cutoff=0.1, beta=0.0), shape=OneEuroParams(min_cutoff=1000.0, beta=0.0)
    )
    smoother = HandSmoother(params)
    smoother(np.zeros(3), np.zeros((4, 3)), 0.0)
    tr, rel = smoother(np.ones(3), np.ones((4, 3)), 1 / 30)
    assert tr[0] < 0.05  # heavy smoothing on translation
    assert rel[0, 0] > 0.95  # almost none on the shape
    off = HandSmoother(SmoothingParams(enabled=False))
    off(np.zeros(3), np.zeros((4, 3)), 0.0)
    tr, rel = off(np.ones(3), np.ones((4, 3)), 1 / 30)
    assert tr[0] == 1.0 and rel[0, 0] == 1.0


def test_strength_maps_to_parameters() -> None:
    assert not SmoothingParams.from_strength(0.0).enabled
    weak, strong = SmoothingParams.from_strength(0.2), SmoothingParams.from_strength(0.9)
    assert strong.translation.min_cutoff < weak.translation.min_cutoff


def test_box_iou() -> None:
    a = np.array([0.0, 0.0, 10.0, 10.0])
    assert box_iou(a, a) == pytest.approx(1.0)
    assert box_iou(a, np.array([5.0, 0.0, 15.0, 10.0])) == pytest.approx(50 / 150)
    assert box_iou(a, np.array([20.0, 20.0, 30.0, 30.0])) == 0.0


def _box(cx: float, cy: float, s: float = 100.0) -> np.ndarray:
    return np.array([cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2])


def test_two_crossing_hands_keep_their_ids() -> None:
    tracker = HandTracker()
    ids_left, ids_right = set(), set()
    for k in range(30):
        # Left hand moves right, right hand moves left; they pass each other (overlapping boxes).
        xl, xr = 100 + 10 * k, 400 - 10 * k
        order = [0, 1] if k % 2 == 0 else [1, 0]  # MediaPipe's output order is not stable
        boxes = [_box(xl, 200), _box(xr, 210)]
        hands = ["left", "right"]
        tracks = tracker.update([boxes[i] for i in order], [hands[i] for i in order], [0.9, 0.9], k / 30)
        for i, track in zip(order, tracks):
            (ids_left if i == 0 else ids_right).add(track.track_id)
            assert track.handedness == hands[i]
    assert len(ids_left) == 1 and len(ids_right) == 1 and ids_left != ids_right


def test_single_mislabelled_frame_does_not_flip_a_track() -> None:
    tracker = HandTracker()
    labels = ["right"] * 5 + ["left"] + ["right"] * 3
    ids, hand = set(), []
    for k, lab in enumerate(labels):
        (track,) = tracker.update([_box(300 + k, 200)], [lab], [0.9], k / 30)
        ids.add(track.track_id)
        hand.append(track.handedness)
    assert ids == {0} and set(hand) == {"right"}


def test_lost_hand_gets_a_new_id_after_max_missed() -> None:
    tracker = HandTracker(max_missed=2)
    (first,) = tracker.update([_box(100, 100)], ["right"], [0.9], 0.0)
    for k in range(3):
        assert tracker.update([], [], [], (k + 1) / 30) == []
    (again,) = tracker.update([_box(100, 100)], ["right"], [0.9], 0.2)
    assert again.track_id != first.track_id
    (far,) = tracker.update([_box(900, 700)], ["right"], [0.9], 0.25)
    assert far.track_id != again.track_id  # a jump across the frame is a new hand
