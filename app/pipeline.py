"""The live pipeline, without any window: frame -> hands in metric camera space.

One :meth:`HandPipeline.process` call runs, for one frame:

``detect``     MediaPipe landmarks (tracking mode), undistortion of the landmarks when the intrinsics
               have lens distortion, and hand identity tracking (stable ``track_id`` and handedness);
``crop``       per hand a rectified ``S x S`` crop (virtual camera looking at the hand; left hands mirrored),
               stacked into one batch;
``network``    one backend call for all hands of the frame (torch or onnxruntime): root-relative mesh,
               2D joints, DGP weights and the DGP translation in the virtual camera, mapped back to the
               real camera with ``virt_to_cam`` (the closed-form DGP solve is part of the network graph);
``dgp``        camera-space assembly: root-relative geometry in camera axes, wrist translation, projection
               of the joints into the image, per-hand confidence;
``smoothing``  One Euro filters per track (translation and root-relative geometry separately).

``read`` (source) and ``draw`` (consumer) times are added by :meth:`HandPipeline.run` and the
consumers (:meth:`FrameResult.with_timing`). The pipeline never draws or shows anything.

Frames must be unmirrored camera images (what cameras deliver): geometry and handedness are then
physical. A selfie view is a display option (``DrawOptions.mirror_view``), applied after drawing.

The cue (``cue``) decides what the network gets from MediaPipe: ``"fused"`` (the default: MediaPipe's
2D landmarks for feature sampling and DGP, and its 3D world landmarks, rotated into the crop's frame,
as an extra per-joint input), ``"mediapipe"`` (the 2D landmarks only) or ``"network"`` (nothing: the
paper's image-only path, the network's own 2D joints). With the fused cue the same call also runs the
two other cues on every hand and puts the fused mesh at the mean of the three wrist depths
(``depth_ensemble``, see ``models.depth_ensemble``). A known hand length (``hand_length_cm``) fixes the
mesh's metric size, hence its depth; otherwise the network estimates it. A plausibility guard replaces
a DGP depth that disagrees with the hand's size in the image (``HandResult.depth_source``).
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Iterator

import numpy as np

from app.backends import BackendRequest, BackendResult, MeshBackend
from app.backends.base import implausible_hands
from app.crops import DEFAULT_MARGIN, CropBatch, make_crop_batch
from app.detection import HandDetection, HandDetector
from app.intrinsics import DEFAULT_HFOV_DEG, Intrinsics
from app.results import FrameResult, HandResult
from app.smoothing import HandTracker, SmoothingParams, Track
from app.sources import Frame, FrameSource
from models.depth_ensemble import place_with_ensemble
from models.depth_guard import guard_translation

LOG = logging.getLogger(__name__)

CUES: tuple[str, ...] = ("fused", "mediapipe", "network")
HAND_LENGTH_RANGE_CM: tuple[float, float] = (8.0, 30.0)
"""Accepted hand lengths (wrist crease to the tip of the middle finger); adults measure about 17-20 cm."""


@dataclass(frozen=True)
class PipelineOptions:
    """Run-time options of :class:`HandPipeline`.

    Attributes:
        max_hands: most hands processed per frame.
        cue: ``"fused"`` (MediaPipe 2D + 3D landmarks), ``"mediapipe"`` (2D only) or ``"network"`` (image only).
        hand_length_cm: the user's hand length (wrist crease to the middle fingertip), centimetres, or
            None to let the network estimate it.
        depth_ensemble: with the ``fused`` cue, also run the ``mediapipe`` and ``network`` cues on every hand
            (one batched call of three rows per hand) and place the fused mesh at the mean of the three
            wrist depths (``models.depth_ensemble``); False: the fused run's own DGP depth, one row per hand.
        margin: crop margin around the landmark box (fraction; must match training).
        smoothing: One Euro parameters (``SmoothingParams(enabled=False)`` for raw output).
        hfov_deg: horizontal field of view assumed when no intrinsics are given.
        min_detection_confidence, min_presence_confidence, min_tracking_confidence: MediaPipe thresholds.
    """

    max_hands: int = 2
    cue: str = "fused"
    hand_length_cm: float | None = None
    depth_ensemble: bool = True
    margin: float = DEFAULT_MARGIN
    smoothing: SmoothingParams = field(default_factory=SmoothingParams)
    hfov_deg: float = DEFAULT_HFOV_DEG
    min_detection_confidence: float = 0.5
    min_presence_confidence: float = 0.5
    min_tracking_confidence: float = 0.5

    def __post_init__(self) -> None:
        if self.cue not in CUES:
            raise ValueError(f"cue must be one of {CUES}, got {self.cue!r}")
        if self.max_hands < 1:
            raise ValueError(f"max_hands must be at least 1, got {self.max_hands}")
        if self.hand_length_cm is not None:
            low, high = HAND_LENGTH_RANGE_CM
            if not low <= float(self.hand_length_cm) <= high:
                raise ValueError(f"hand length must be between {low:g} and {high:g} cm (wrist crease to the tip of "
                                 f"the middle finger), got {self.hand_length_cm}")


@dataclass(frozen=True)
class PreparedFrame:
    """A frame after detection, tracking and cropping, waiting for the network (see :meth:`HandPipeline.prepare`)."""

    frame: Frame
    intrinsics: Intrinsics
    detections: tuple[HandDetection, ...]
    tracks: tuple[Track, ...]
    handedness: tuple[str, ...]
    crops: CropBatch
    cue: str
    timings_ms: dict[str, float]


def backend_description(backend: MeshBackend) -> str:
    """Short human-readable name of a backend (kind, device or provider)."""
    return str(getattr(backend, "name", type(backend).__name__))


class HandPipeline:
    """Source frames in, :class:`FrameResult` out. Not thread-safe: use it from one worker thread.

    Args:
        backend: the mesh network behind the backend protocol (torch or onnxruntime).
        intrinsics: the camera's intrinsics (any resolution; scaled to each frame). None: a
            field-of-view default, marked ``intrinsics_assumed`` in every result.
        options: see :class:`PipelineOptions`.
        detector: a MediaPipe detector to use (default: one built from ``options``).
    """

    def __init__(
        self,
        backend: MeshBackend,
        *,
        intrinsics: Intrinsics | None = None,
        options: PipelineOptions = PipelineOptions(),
        detector: HandDetector | None = None,
    ) -> None:
        self.backend = backend
        self.options = options
        self._base_intrinsics = intrinsics
        self._intrinsics_cache: dict[tuple[int, int], Intrinsics] = {}
        self.detector = detector or self._make_detector(options)
        self.tracker = HandTracker(smoothing=options.smoothing)
        self.faces_right = np.asarray(backend.faces, dtype=np.int64)
        self.hands_dropped = 0
        """Hands dropped so far because the network's output was non-finite or impossible (see ``implausible_hands``)."""

    @staticmethod
    def _make_detector(options: PipelineOptions) -> HandDetector:
        return HandDetector(
            max_hands=options.max_hands,
            mirrored_input=False,
            min_detection_confidence=options.min_detection_confidence,
            min_presence_confidence=options.min_presence_confidence,
            min_tracking_confidence=options.min_tracking_confidence,
        )

    # -- configuration -------------------------------------------------------------------------

    def intrinsics_for(self, width: int, height: int) -> Intrinsics:
        """Intrinsics of a ``width x height`` frame (file intrinsics scaled, or the FOV default)."""
        key = (int(width), int(height))
        cached = self._intrinsics_cache.get(key)
        if cached is None:
            if self._base_intrinsics is None:
                cached = Intrinsics.from_fov(key[0], key[1], self.options.hfov_deg)
            else:
                cached = self._base_intrinsics.scaled_to(*key)
            self._intrinsics_cache[key] = cached
        return cached

    def set_intrinsics(self, intrinsics: Intrinsics | None) -> None:
        self._base_intrinsics = intrinsics
        self._intrinsics_cache.clear()

    def set_options(self, options: PipelineOptions) -> None:
        """Change options between frames; the detector is rebuilt when its settings change."""
        old = self.options
        self.options = options
        if (old.max_hands, old.min_detection_confidence, old.min_presence_confidence, old.min_tracking_confidence) != (
            options.max_hands, options.min_detection_confidence, options.min_presence_confidence,
            options.min_tracking_confidence,
        ):
            self.detector.close()
            self.detector = self._make_detector(options)
        if options.smoothing != old.smoothing:
            self.tracker.set_smoothing(options.smoothing)
        if options.hfov_deg != old.hfov_deg:
            self._intrinsics_cache.clear()

    def reset(self) -> None:
        """Forget tracking and smoothing state (call after switching sources)."""
        self.detector.reset()
        self.tracker.reset()

    # -- processing ----------------------------------------------------------------------------

    def detect(self, bgr: np.ndarray, t: float) -> list[HandDetection]:
        """MediaPipe detections of one (unmirrored) BGR frame."""
        return self.detector.detect(bgr, t)

    @property
    def backend_name(self) -> str:
        """The backend's current name (a torch backend whose CUDA graph capture failed renames itself eager)."""
        return backend_description(self.backend)

    def process(self, frame: Frame) -> FrameResult:
        """Run every stage on one frame and return its immutable result."""
        return self.finish(self.prepare(frame))

    def prepare(self, frame: Frame) -> PreparedFrame:
        """First half of :meth:`process`: detection, tracking and crops (no network)."""
        timings: dict[str, float] = {}
        opts = self.options
        bgr = frame.bgr
        height, width = bgr.shape[:2]
        intr = self.intrinsics_for(width, height)

        t0 = time.perf_counter()
        detections = self.detect(bgr, frame.t)[: opts.max_hands]
        ideal_landmarks = [intr.undistort_points(d.landmarks_img) for d in detections]
        tracks = self.tracker.update(
            [np.concatenate([lm.min(axis=0), lm.max(axis=0)]) for lm in ideal_landmarks],
            [d.handedness for d in detections],
            [d.score for d in detections],
            frame.t,
        )
        t1 = time.perf_counter()
        timings["detect"] = (t1 - t0) * 1e3

        mirror = [track.handedness == "left" for track in tracks]
        crops = make_crop_batch(
            bgr, intr, ideal_landmarks, mirror, crop_size=int(self.backend.crop_size), margin=opts.margin,
            world_landmarks=[d.world_landmarks for d in detections],
        )
        timings["crop"] = (time.perf_counter() - t1) * 1e3
        return PreparedFrame(
            frame=frame,
            intrinsics=intr,
            detections=tuple(detections),
            tracks=tuple(tracks),
            handedness=tuple(track.handedness for track in tracks),
            crops=crops,
            cue=opts.cue,
            timings_ms=timings,
        )

    def finish(self, prepared: PreparedFrame) -> FrameResult:
        """Second half of :meth:`process`: one batched network call, camera-space assembly, smoothing."""
        timings = dict(prepared.timings_ms)
        frame, intr, crops = prepared.frame, prepared.intrinsics, prepared.crops
        height, width = frame.bgr.shape[:2]
        hands: list[HandResult] = []
        dropped = 0
        if len(crops):
            t2 = time.perf_counter()
            cue = prepared.cue
            length_cm = self.options.hand_length_cm
            request = BackendRequest(
                crops_rgb=crops.crops_rgb,
                K_virt=crops.K_virt,
                virt_to_cam=crops.virt_to_cam,
                joints_2d_external=crops.landmarks_crop if cue in ("fused", "mediapipe") else None,
                landmarks_3d=crops.landmarks_3d if cue == "fused" else None,
                hand_length_m=None if length_cm is None else np.full((len(crops),), length_cm / 100.0, np.float32),
            )
            ensemble = cue == "fused" and self.options.depth_ensemble and getattr(self.backend.config, "fused_cue", False)
            if ensemble:
                out = infer_with_depth_ensemble(self.backend, request)
            else:
                out = self.backend.infer(request)
            t3 = time.perf_counter()
            timings["network"] = (t3 - t2) * 1e3
            broken = implausible_hands(out)  # NaN/inf or impossible: dropped, never reported
            dropped = int(broken.sum())
            if dropped:
                self._warn_dropped(frame.index, dropped)

            virt_to_cam = np.asarray(crops.virt_to_cam, np.float64)
            t_virt, guarded = guard_translation(out.translation_virt, out.joints_rel, out.joints_2d_used, crops.K_virt)
            translation = np.einsum("bij,bj->bi", virt_to_cam, t_virt)
            verts_rel = np.asarray(out.vertices_rel, np.float64) @ virt_to_cam.transpose(0, 2, 1)
            joints_rel = np.asarray(out.joints_rel, np.float64) @ virt_to_cam.transpose(0, 2, 1)
            lengths = np.asarray(out.hand_length, np.float64)
            weights = np.asarray(out.dgp_weights, np.float32)
            degenerate = np.asarray(out.dgp_degenerate, bool)
            t4 = time.perf_counter()
            timings["dgp"] = (t4 - t3) * 1e3

            n_verts = verts_rel.shape[1]
            for i, (det, track) in enumerate(zip(prepared.detections, prepared.tracks)):
                if broken[i]:
                    continue
                rel = np.concatenate([verts_rel[i], joints_rel[i]], axis=0)
                tr, rel_s = track.smoother(translation[i], rel, frame.t)
                verts_cam = rel_s[:n_verts] + tr
                joints_cam = rel_s[n_verts:] + tr
                confidence = 0.0 if degenerate[i] else float(det.score) * float(np.mean(weights[i]))
                hands.append(
                    HandResult(
                        track_id=track.track_id,
                        handedness=prepared.handedness[i],
                        detection_score=float(det.score),
                        confidence=confidence,
                        box_img=crops.boxes_img[i].copy(),
                        landmarks_img=np.asarray(det.landmarks_img, np.float32).copy(),
                        joints_img=intr.project(joints_cam),
                        joints_cam=joints_cam.astype(np.float32),
                        vertices_cam=verts_cam.astype(np.float32),
                        translation_cam=np.asarray(tr, np.float32),
                        dgp_weights=weights[i].copy(),
                        cue=cue,
                        hand_length_m=float(lengths[i]),
                        depth_source="size" if guarded[i] else ("ensemble" if ensemble else "dgp"),
                    )
                )
            timings["smoothing"] = (time.perf_counter() - t4) * 1e3
        else:
            timings.update(network=0.0, dgp=0.0, smoothing=0.0)

        hands.sort(key=lambda h: h.track_id)
        return FrameResult(
            index=frame.index,
            t=frame.t,
            image_size=(width, height),
            K=intr.K.copy(),
            dist=intr.dist.copy(),
            intrinsics_assumed=intr.assumed,
            hands=tuple(hands),
            faces_right=self.faces_right,
            timings_ms=timings,
            backend=self.backend_name,
            hands_dropped=dropped,
        )

    def _warn_dropped(self, frame_index: int, count: int) -> None:
        """Log dropped hands: the first time, then every 100th (a corrupt model would flood the log)."""
        self.hands_dropped += count
        if self.hands_dropped == count or self.hands_dropped % 100 < count:
            LOG.warning(
                "frame %d: dropped %d hand(s): the network output is non-finite or impossible (%d so far); "
                "the weights may be corrupt: run `python run_demo.py doctor`", frame_index, count, self.hands_dropped)

    def run(self, source: FrameSource, *, max_frames: int | None = None) -> Iterator[tuple[Frame, FrameResult]]:
        """Process a source frame by frame; yields ``(frame, result)`` with the ``read`` time included."""
        count = 0
        while max_frames is None or count < max_frames:
            t0 = time.perf_counter()
            frame = source.read()
            read_ms = (time.perf_counter() - t0) * 1e3
            if frame is None:
                return
            result = self.process(frame)
            yield frame, result.with_timing("read", read_ms)
            count += 1

    def run_overlapped(
        self, source: FrameSource, *, max_frames: int | None = None
    ) -> Iterator[tuple[Frame, FrameResult]]:
        """Like :meth:`run`, with reading, detection and crops of frame n+1 overlapping the network of frame n.

        A producer thread runs :meth:`prepare` (MediaPipe, tracking, crops) at most one frame ahead; the
        calling thread runs :meth:`finish` (network, DGP, smoothing). Both MediaPipe and the backends
        release the GIL, so on two or more cores the throughput approaches ``1 / max(detect, network)``
        instead of ``1 / (detect + network)``; results are the same as :meth:`run` for the same frames.
        Per-stage times then include the contention between the two threads.
        """
        handoff: queue.Queue[object] = queue.Queue(maxsize=1)
        stop = threading.Event()
        done = object()

        def put(item: object) -> None:
            while not stop.is_set():
                try:
                    handoff.put(item, timeout=0.05)
                    return
                except queue.Full:
                    continue

        def produce() -> None:
            try:
                count = 0
                while not stop.is_set() and (max_frames is None or count < max_frames):
                    t0 = time.perf_counter()
                    frame = source.read()
                    read_ms = (time.perf_counter() - t0) * 1e3
                    if frame is None:
                        break
                    put((self.prepare(frame), read_ms))
                    count += 1
            except Exception as err:  # relayed to and re-raised in the consuming thread
                put(err)
            finally:
                put(done)

        producer = threading.Thread(target=produce, name="hand-pipeline-prepare", daemon=True)
        producer.start()
        try:
            while True:
                item = handoff.get()
                if item is done:
                    return
                if isinstance(item, Exception):
                    raise item
                prepared, read_ms = item  # type: ignore[misc]
                yield prepared.frame, self.finish(prepared).with_timing("read", read_ms)
        finally:
            stop.set()
            producer.join(timeout=10.0)

    def close(self) -> None:
        self.detector.close()

    def __enter__(self) -> "HandPipeline":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def infer_with_depth_ensemble(backend: MeshBackend, request: BackendRequest) -> BackendResult:
    """The fused cue's result with the depth ensemble of ``models.depth_ensemble``.

    One backend call of ``3 B`` rows reading the ``B`` crops (``crop_index``: the encoder runs once per
    crop): every hand with the fused cue, with MediaPipe's 2D landmarks only and image-only (per-row
    masks). The fused rows are returned, placed at the mean of the three wrist depths (members whose
    output is broken, see ``implausible_hands``, do not vote): rescaled about the camera when the hand
    size is unknown, moved to that depth at the given size otherwise. ``request`` must have one row per
    crop and carry both ``joints_2d_external`` and ``landmarks_3d``.
    """
    if request.joints_2d_external is None or request.landmarks_3d is None or request.crop_index is not None:
        raise ValueError("the depth ensemble needs one row per crop with the fused cue's inputs "
                         "(MediaPipe 2D and 3D landmarks)")
    b = request.batch_size
    if b == 0:
        return backend.infer(request)

    def tile3(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else np.concatenate([a, a, a], axis=0)

    tiled = BackendRequest(
        crops_rgb=request.crops_rgb, crop_index=np.tile(np.arange(b, dtype=np.int64), 3),
        K_virt=tile3(request.K_virt), virt_to_cam=tile3(request.virt_to_cam),
        joints_2d_external=tile3(request.joints_2d_external), landmarks_3d=tile3(request.landmarks_3d),
        hand_length_m=tile3(request.hand_length_m),
        external_rows=np.repeat(np.array([True, True, False]), b),
        landmarks_rows=np.repeat(np.array([True, False, False]), b),
    )
    everything = backend.infer(tiled)
    broken = implausible_hands(everything).reshape(3, b)
    fused = everything.take(slice(0, b))
    members = np.asarray(everything.translation_virt, np.float64)[b:, 2].reshape(2, b).T
    members = np.where(broken[1:].T, np.nan, members)
    placed = place_with_ensemble(
        fused.translation_virt, fused.vertices_rel, fused.joints_rel, fused.hand_length, fused.joints_2d_used,
        request.K_virt, fused.dgp_weights, members, size_given=request.hand_length_m is not None,
    )
    virt_to_cam = np.asarray(request.virt_to_cam, np.float64)
    t_cam = np.einsum("bij,bj->bi", virt_to_cam, placed.translation_virt)

    def to_cam(rel: np.ndarray) -> np.ndarray:
        return (rel + placed.translation_virt[:, None, :]) @ virt_to_cam.transpose(0, 2, 1)

    return replace(
        fused,
        translation_virt=placed.translation_virt.astype(np.float32),
        vertices_rel=placed.vertices_rel.astype(np.float32),
        joints_rel=placed.joints_rel.astype(np.float32),
        hand_length=placed.hand_length.astype(np.float32),
        translation_cam=t_cam.astype(np.float32),
        vertices_cam=to_cam(placed.vertices_rel).astype(np.float32),
        joints_cam=to_cam(placed.joints_rel).astype(np.float32),
    )


def with_options(pipeline: HandPipeline, **changes: object) -> PipelineOptions:
    """``PipelineOptions`` of ``pipeline`` with some fields replaced (helper for UIs and CLIs)."""
    return replace(pipeline.options, **changes)
