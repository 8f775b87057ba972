"""Hand detection and 2D landmarks with MediaPipe 0.10.21 in tracking (VIDEO) mode.

We use the Tasks ``HandLandmarker`` with a model bundle assembled at run time, in memory, from the
two TFLite files that the mediapipe wheel itself ships (palm detector + landmark model, "full"
variants); nothing is downloaded and nothing is written into the repository.

Handedness (measured here on ../shared/real/open_palm_640x360.mp4, a right hand, palm to the camera,
confirmed by the chirality of the landmarks): the legacy ``solutions.hands`` API labels it "Left" (it
assumes a mirrored selfie image), but the Tasks ``HandLandmarker`` of 0.10.21 labels it "Right": the Tasks
graph already reports the hand as seen in the unmirrored image. :class:`HandDetector` reports the person's
hand: it keeps the Tasks label for unmirrored frames and swaps it when told the input is mirrored
(``mirrored_input=True``, a selfie view), since the mirror image of a right hand looks like a left hand.
"""
from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

NUM_LANDMARKS = 21
HAND_CONNECTIONS: tuple[tuple[int, int], ...] = (
    (0, 1), (1, 2), (2, 3), (3, 4),
    (0, 5), (5, 6), (6, 7), (7, 8),
    (5, 9), (9, 10), (10, 11), (11, 12),
    (9, 13), (13, 14), (14, 15), (15, 16),
    (13, 17), (0, 17), (17, 18), (18, 19), (19, 20),
)
"""Skeleton edges over the 21 MediaPipe joints (for drawing)."""


class DetectorError(RuntimeError):
    """MediaPipe's hand models could not be loaded or run."""


@dataclass(frozen=True)
class HandDetection:
    """One hand found by MediaPipe.

    Attributes:
        landmarks_img: ``(21, 2)`` float32 pixel coordinates in the frame given to :meth:`detect`.
        landmarks_z: ``(21,)`` float32 MediaPipe's relative depth (wrist = 0, same scale as x pixels;
            smaller = closer to the camera).
        world_landmarks: ``(21, 3)`` float32 MediaPipe's metric hand-centred landmarks, metres.
        handedness: ``"left"`` or ``"right"``, the person's hand (already corrected for mirroring).
        score: handedness classifier score in [0, 1].
        box_img: ``(4,)`` float32 tight x0, y0, x1, y1 around the landmarks, pixels.
    """

    landmarks_img: np.ndarray
    landmarks_z: np.ndarray
    world_landmarks: np.ndarray
    handedness: str
    score: float
    box_img: np.ndarray


def mediapipe_package_dir() -> Path:
    """Folder of the installed ``mediapipe`` package."""
    import mediapipe

    return Path(mediapipe.__file__).resolve().parent


@lru_cache(maxsize=1)
def hand_landmarker_bundle() -> bytes:
    """The ``.task`` bundle (a zip) built from the wheel's own TFLite models, as bytes.

    Raises:
        DetectorError: when the wheel lacks the models (mediapipe newer than 0.10.21 stopped shipping them).
    """
    pkg = mediapipe_package_dir()
    members = {
        "hand_detector.tflite": pkg / "modules" / "palm_detection" / "palm_detection_full.tflite",
        "hand_landmarks_detector.tflite": pkg / "modules" / "hand_landmark" / "hand_landmark_full.tflite",
    }
    missing = [str(p) for p in members.values() if not p.is_file()]
    if missing:
        raise DetectorError(
            f"MediaPipe's bundled hand models are missing ({', '.join(missing)}). Install mediapipe==0.10.21, "
            "the last release that ships them: `pip install mediapipe==0.10.21`."
        )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as bundle:
        for name, path in members.items():
            bundle.write(path, arcname=name)
    return buffer.getvalue()


def landmarks_box(landmarks_img: np.ndarray) -> np.ndarray:
    """Tight ``(4,)`` float32 x0, y0, x1, y1 box around ``(21, 2)`` pixel landmarks."""
    pts = np.asarray(landmarks_img, dtype=np.float32)
    return np.concatenate([pts.min(axis=0), pts.max(axis=0)]).astype(np.float32)


DUPLICATE_CONTAINMENT: float = 0.7
"""A hand whose landmark box lies at least this much (intersection / its own area) inside a larger
hand's box is taken for a second reading of that hand (see :func:`suppress_duplicates`)."""

PHANTOM_SIDE_RATIO: float = 0.5
"""... whatever its handedness label, when its box is also at most this fraction of the larger one's size
(square root of the area ratio)."""


def box_area(box: np.ndarray) -> float:
    """Area of a ``(4,)`` x0, y0, x1, y1 box (pixels squared; 0 for an empty box)."""
    return float(max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1]))


def box_intersection_area(a: np.ndarray, b: np.ndarray) -> float:
    """Area shared by two ``(4,)`` x0, y0, x1, y1 boxes (pixels squared)."""
    return box_area(np.concatenate([np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])]))


def is_duplicate_of(smaller: HandDetection, larger: HandDetection) -> bool:
    """Whether ``smaller`` is another reading of the hand ``larger`` (see :func:`suppress_duplicates`)."""
    a, b = smaller.box_img, larger.box_img
    own, big = box_area(a), box_area(b)
    if own <= 0.0 or big < own:  # no area to compare, or not the smaller of the two
        return False
    if box_intersection_area(a, b) / own < DUPLICATE_CONTAINMENT:
        return False
    return smaller.handedness == larger.handedness or (own / big) ** 0.5 <= PHANTOM_SIDE_RATIO


def suppress_duplicates(detections: list[HandDetection]) -> list[HandDetection]:
    """Drop the extra readings of one hand that MediaPipe sometimes returns, keeping MediaPipe's order.

    On still photos of curled hands (sign-language digits) MediaPipe's two palm detections can land on
    one hand, and the landmark model then reports it twice: a second skeleton inside the first, often
    squeezed onto the fingers. The boxes of such pairs overlap little by IoU (a small box inside a large
    one), so MediaPipe's own overlap test lets them through. Measured on the 3,619 photos of
    ``../shared/real/photos``: 11 of the 184 photos with two hands were this case, every one on a single
    hand, and in each the larger skeleton was the right one (looked at, one by one). So a detection whose
    landmark box lies at least :data:`DUPLICATE_CONTAINMENT` inside a larger one's is dropped when both
    carry the same handedness label, or when it is also at most :data:`PHANTOM_SIDE_RATIO` of the other's
    size. Two real hands that overlap (hands clasped, one in front of the other) are a left and a right
    hand of similar size and both stay.

    Args:
        detections: as returned by MediaPipe, any number.
    Returns:
        the detections that are not another one's duplicate, in their original order.
    """
    by_size = sorted(range(len(detections)), key=lambda i: -box_area(detections[i].box_img))
    kept: list[int] = []
    for i in by_size:
        if not any(is_duplicate_of(detections[i], detections[j]) for j in kept):
            kept.append(i)
    return [detections[i] for i in sorted(kept)]


class HandDetector:
    """MediaPipe HandLandmarker in VIDEO (tracking) mode: palm detection runs only when tracking is lost.

    Args:
        max_hands: maximum number of hands reported per frame (any positive number).
        mirrored_input: True when the frames are already mirrored (selfie view); labels are then swapped
            so that they still name the person's hand.
        min_detection_confidence, min_presence_confidence, min_tracking_confidence: MediaPipe thresholds.

    Use one detector per video stream: VIDEO mode needs increasing time stamps, which
    :meth:`detect` enforces. Call :meth:`close` (or use ``with``) to free the graph.
    """

    def __init__(
        self,
        *,
        max_hands: int = 2,
        mirrored_input: bool = False,
        min_detection_confidence: float = 0.5,
        min_presence_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
    ) -> None:
        if max_hands < 1:
            raise ValueError(f"max_hands must be at least 1, got {max_hands}")
        self.max_hands = int(max_hands)
        self.mirrored_input = bool(mirrored_input)
        self._thresholds = (min_detection_confidence, min_presence_confidence, min_tracking_confidence)
        self._landmarker = self._create()
        self._last_ts_ms = -1

    def _create(self):  # returns mediapipe.tasks.python.vision.HandLandmarker
        from mediapipe.tasks.python.core.base_options import BaseOptions
        from mediapipe.tasks.python.vision import HandLandmarker, HandLandmarkerOptions, RunningMode

        det, pres, track = self._thresholds
        options = HandLandmarkerOptions(
            base_options=BaseOptions(model_asset_buffer=hand_landmarker_bundle()),
            running_mode=RunningMode.VIDEO,
            num_hands=self.max_hands,
            min_hand_detection_confidence=float(det),
            min_hand_presence_confidence=float(pres),
            min_tracking_confidence=float(track),
        )
        try:
            return HandLandmarker.create_from_options(options)
        except (RuntimeError, ValueError) as err:
            raise DetectorError(f"MediaPipe HandLandmarker failed to start: {err}") from err

    def reset(self) -> None:
        """Forget tracking state (e.g. after switching sources)."""
        self._landmarker.close()
        self._landmarker = self._create()
        self._last_ts_ms = -1

    def detect(self, bgr: np.ndarray, t: float | None = None) -> list[HandDetection]:
        """Find hands in one frame.

        Args:
            bgr: ``(H, W, 3)`` uint8 BGR frame (any size; frames under 2x2 pixels yield no hand).
            t: time stamp in seconds; when missing or not increasing, the previous stamp + 1 ms is used.
        Returns:
            up to ``max_hands`` detections, in MediaPipe's order, second readings of one hand dropped
            (:func:`suppress_duplicates`).
        """
        import mediapipe as mp

        image = np.asarray(bgr)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 BGR frame, got {image.shape} {image.dtype}")
        height, width = image.shape[:2]
        if height < 2 or width < 2:
            return []
        ts_ms = int(round(t * 1000.0)) if t is not None else self._last_ts_ms + 1
        ts_ms = max(ts_ms, self._last_ts_ms + 1)
        self._last_ts_ms = ts_ms
        rgb = np.ascontiguousarray(image[:, :, ::-1])
        result = self._landmarker.detect_for_video(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb), ts_ms)
        detections: list[HandDetection] = []
        for i, landmarks in enumerate(result.hand_landmarks):
            pts = np.array([[lm.x * width, lm.y * height, lm.z * width] for lm in landmarks], dtype=np.float32)
            world = result.hand_world_landmarks[i] if i < len(result.hand_world_landmarks) else []
            world_arr = (np.array([[lm.x, lm.y, lm.z] for lm in world], dtype=np.float32)
                         if world else np.zeros((NUM_LANDMARKS, 3), np.float32))
            category = result.handedness[i][0]
            label = str(category.category_name).lower()
            if self.mirrored_input:
                label = "right" if label == "left" else "left"
            detections.append(
                HandDetection(
                    landmarks_img=pts[:, :2].copy(),
                    landmarks_z=pts[:, 2].copy(),
                    world_landmarks=world_arr,
                    handedness=label,
                    score=float(category.score),
                    box_img=landmarks_box(pts[:, :2]),
                )
            )
        return suppress_duplicates(detections)

    def close(self) -> None:
        self._landmarker.close()

    def __enter__(self) -> "HandDetector":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
