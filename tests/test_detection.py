"""MediaPipe hand detection: bundle, bad input, handedness for unmirrored/mirrored frames, many hands."""
from __future__ import annotations

import io
import zipfile

import cv2
import numpy as np
import pytest

from app.detection import (
    NUM_LANDMARKS,
    HandDetection,
    HandDetector,
    hand_landmarker_bundle,
    is_duplicate_of,
    landmarks_box,
    suppress_duplicates,
)
from app.sources import VideoFileSource
from models.paths import SHARED_REAL_DIR

REAL_CLIP = SHARED_REAL_DIR / "open_palm_640x360.mp4"
needs_real = pytest.mark.skipif(not REAL_CLIP.is_file(), reason="../shared/real absent")


def _real_frames(step: int, count: int, start: int = 0) -> list[np.ndarray]:
    frames = []
    with VideoFileSource(REAL_CLIP) as src:
        for frame in src:
            if frame.index >= start and (frame.index - start) % step == 0:
                frames.append(frame.bgr)
            if len(frames) >= count:
                break
    return frames


def _chirality(landmarks_xyz: np.ndarray) -> str:
    """Geometric handedness from 3D landmarks in image-like axes (x right, y down, z away).

    For a right hand, n = (index_mcp - wrist) x (little_mcp - wrist) points out of the palm, and the
    fingers curl toward the palm side.
    """
    p = np.asarray(landmarks_xyz, np.float64)
    n = np.cross(p[5] - p[0], p[17] - p[0])
    curl = sum(np.dot(p[tip] - 0.5 * (p[mcp] + p[tip - 2]), n) for mcp, tip in ((5, 8), (9, 12), (13, 16), (17, 20)))
    return "right" if curl > 0 else "left"


def test_bundle_is_built_from_the_wheel_models() -> None:
    with zipfile.ZipFile(io.BytesIO(hand_landmarker_bundle())) as bundle:
        assert sorted(bundle.namelist()) == ["hand_detector.tflite", "hand_landmarks_detector.tflite"]


def test_no_hand_tiny_frames_and_bad_input() -> None:
    rng = np.random.default_rng(0)
    with HandDetector(max_hands=2) as detector:
        assert detector.detect(np.full((240, 320, 3), 127, np.uint8), 0.0) == []
        assert detector.detect(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8), 0.04) == []
        assert detector.detect(np.zeros((1, 1, 3), np.uint8), 0.08) == []
        assert detector.detect(np.zeros((240, 320, 3), np.uint8), 0.0) == []  # non-increasing time is fine
        with pytest.raises(ValueError):
            detector.detect(np.zeros((10, 10), np.uint8), 0.1)
    with pytest.raises(ValueError):
        HandDetector(max_hands=0)


def test_landmarks_box() -> None:
    box = landmarks_box(np.array([[1.0, 5.0], [3.0, 2.0], [2.0, 9.0]]))
    assert box.tolist() == [1.0, 2.0, 3.0, 9.0]


@pytest.mark.real
@needs_real
def test_real_right_hand_is_labelled_right_and_mirror_option_swaps() -> None:
    frames = _real_frames(step=8, count=12)
    labels, mirrored_labels, selfie_labels, chirality = [], [], [], []
    with HandDetector(max_hands=2) as plain, HandDetector(max_hands=2) as on_mirror, \
            HandDetector(max_hands=2, mirrored_input=True) as selfie:
        for k, bgr in enumerate(frames):
            t = k * 8 / 25.0
            hands = plain.detect(bgr, t)
            assert len(hands) == 1
            hand = hands[0]
            labels.append(hand.handedness)
            chirality.append(_chirality(np.column_stack([hand.landmarks_img, hand.landmarks_z])))
            assert hand.landmarks_img.shape == (21, 2) and hand.world_landmarks.shape == (21, 3)
            assert 0.5 < hand.score <= 1.0
            assert np.all(hand.box_img[:2] >= 0) and hand.box_img[2] < 640 and hand.box_img[3] < 360
            flipped = np.ascontiguousarray(bgr[:, ::-1])
            mirrored_labels += [h.handedness for h in on_mirror.detect(flipped, t)]
            selfie_labels += [h.handedness for h in selfie.detect(flipped, t)]
    # The clip shows a right hand (SOURCES.md), and the landmarks' own chirality agrees.
    assert labels.count("right") >= 11
    assert chirality.count("right") >= 9
    # A mirrored image of a right hand looks like a left hand...
    assert mirrored_labels.count("left") >= 0.75 * len(mirrored_labels) > 0
    # ...unless the detector is told the input is a selfie view.
    assert selfie_labels.count("right") >= 0.75 * len(selfie_labels) > 0


@pytest.mark.real
@needs_real
def test_two_hands_side_by_side_are_both_found() -> None:
    frames = _real_frames(step=10, count=8, start=80)  # the hand is small in the first frames
    found = []
    with HandDetector(max_hands=4) as detector:
        for k, bgr in enumerate(frames):
            pair = np.ascontiguousarray(np.concatenate([bgr, bgr[:, ::-1]], axis=1))  # right hand + mirror
            hands = detector.detect(pair, k * 0.4)
            found.append(sorted((h.handedness, h.box_img[0] < 640) for h in hands))
    both = [f for f in found if len(f) == 2]
    assert len(both) >= 6
    # The original (left half) is the right hand; its mirror image (right half) a left hand.
    assert all(f == [("left", False), ("right", True)] for f in both)
    with HandDetector(max_hands=1) as single:
        assert len(single.detect(np.ascontiguousarray(np.concatenate([frames[0], frames[0][:, ::-1]], 1)), 0.0)) <= 1


def _detection(box: tuple[float, float, float, float], handedness: str = "right") -> HandDetection:
    x0, y0, x1, y1 = box
    grid = np.linspace(0.0, 1.0, NUM_LANDMARKS)
    pts = np.stack([x0 + (x1 - x0) * grid, y0 + (y1 - y0) * grid[::-1]], axis=1).astype(np.float32)
    return HandDetection(landmarks_img=pts, landmarks_z=np.zeros(NUM_LANDMARKS, np.float32),
                         world_landmarks=np.zeros((NUM_LANDMARKS, 3), np.float32), handedness=handedness,
                         score=0.9, box_img=landmarks_box(pts))


def test_a_second_reading_inside_a_hand_is_dropped_and_the_order_kept() -> None:
    hand = _detection((100, 100, 200, 220))
    squeezed = _detection((120, 100, 190, 150))  # on the fingers of the same hand, same label
    phantom = _detection((150, 110, 170, 130), "left")  # tiny, other label
    other = _detection((400, 100, 480, 200), "left")
    kept = suppress_duplicates([squeezed, other, hand, phantom])
    assert kept == [other, hand]
    assert is_duplicate_of(squeezed, hand) and is_duplicate_of(phantom, hand)
    assert not is_duplicate_of(hand, squeezed)  # only the smaller of two goes


def test_two_real_hands_that_overlap_both_stay() -> None:
    right = _detection((100, 100, 200, 220), "right")
    left = _detection((110, 95, 205, 215), "left")  # clasped: almost the same box, the other hand
    assert suppress_duplicates([right, left]) == [right, left]
    half_out = _detection((150, 100, 260, 220), "right")  # same label but half outside
    assert suppress_duplicates([right, half_out]) == [right, half_out]
    assert suppress_duplicates([]) == []


PHOTOS = SHARED_REAL_DIR / "photos"
# MediaPipe 0.10.21 read each of these curled hands twice here (IMAGE mode: all five; VIDEO mode: the last three)
DOUBLE_READ_PHOTOS = ("sign_digits/0/IMG_5142.JPG", "sign_digits/0/IMG_5918.JPG", "sign_digits/6/IMG_5873.JPG",
                      "sign_digits/0/IMG_4476.JPG", "sign_digits/0/IMG_5897.JPG")


@pytest.mark.skipif(not PHOTOS.is_dir(), reason="../shared/real/photos absent")
def test_real_photos_that_mediapipe_reads_twice_give_one_hand() -> None:
    from app.evaluate_app import StillImageAdapter

    with HandDetector(max_hands=2) as live:
        still = StillImageAdapter(max_hands=2)
        try:
            for rel in DOUBLE_READ_PHOTOS:
                image = cv2.imread(str(PHOTOS / rel), cv2.IMREAD_COLOR)
                live.reset()
                assert len(live.detect(image, 0.0)) == 1, rel
                assert len(still.detect(image)) == 1, rel
        finally:
            still.close()
