"""Evaluate the path a user runs: full frames -> MediaPipe -> rectified crops -> network -> DGP -> camera space.

``training.evaluate`` scores the network on crops cut around the true hand; this module scores what the
application delivers, MediaPipe's misses and offsets included, and says how the mesh agrees with
MediaPipe on real footage. Four subcommands (each prints a table and writes ``<out>/<name>.json`` and
``<out>/<name>.md``; ``pictures`` writes a PNG):

``synth``     the synthetic TEST set (seed ``training.synth.testset.TEST_SEED``, indices ``0..n-1``) rendered
              as full frames (``app.mediapipe_labels.synth_full_frame``) and run through :class:`HandPipeline`
              with MediaPipe in IMAGE mode (every frame independent), smoothing off and the frame's exact
              ``K``. The result hand is matched to the true hand by its landmarks (as
              ``app.mediapipe_labels.match_hand`` does). Reported: MediaPipe's detection rate, handedness
              agreement, and on found hands FreiHAND's PA-MPJPE, PA-MPVPE, F@5, F@15 plus camera-space
              MPJPE, root error and the hand-length ratio, each twice: hand size unknown, and with the TRUE
              hand length given (``PipelineOptions.hand_length_cm``; MediaPipe runs once per frame:
              :meth:`HandPipeline.prepare` once, :meth:`HandPipeline.finish` per setting). The scale part of
              the camera-space error is reported three ways (see :func:`scale_summary`).
``photos``    agreement on the real photos (``../shared/real/photos``; no keypoint labels, so MediaPipe's
              landmarks are the reference): projected mesh joints vs MediaPipe's landmarks, projected size,
              pose diversity across hands, hands placed implausibly near. The app's FOV intrinsics.
``clip``      the same agreement figures on the real clip (MediaPipe in tracking mode, the normal pipeline).
``pictures``  a grid of real photos, each with its mesh drawn over it and a side view of the same mesh.

    python -m app.evaluate_app synth --n 1000 --cue fused
    python -m app.evaluate_app photos --root ../shared/real/photos --split held-out --cue all
    python -m app.evaluate_app clip --cue all
    python -m app.evaluate_app pictures --out assets/readme/real_meshes.png

Any checkpoint runs with ``--weights PATH`` (``.onnx`` -> onnxruntime, ``.safetensors`` -> torch; the
suffix picks the backend unless ``--backend`` is given); ``--untrained PRESET`` times an untrained model.

Agreement figure (``photos``, ``clip``): per hand, the mean distance between the projected mesh joints
(``HandResult.joints_img``) and MediaPipe's 21 landmarks, divided by the diagonal of MediaPipe's landmark
box. ``clip`` also reports the figure of ``tests/test_real_clip.py`` (median joint distance over the
longest side of the landmark box), which the acceptance bound of issue 12 refers to.
"""
from __future__ import annotations

import argparse
import functools
import json
import logging
import math
import platform
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from app.detection import HandDetection, landmarks_box, suppress_duplicates
from app.intrinsics import Intrinsics
from app.pipeline import CUES, HAND_LENGTH_RANGE_CM, HandPipeline, PipelineOptions
from app.results import FrameResult, HandResult
from app.smoothing import SmoothingParams
from app.sources import Frame
from app.mediapipe_labels import MATCH_FRACTION
from models.mediapipe_frame import hand_length
from models.mesh_surface import mean_bend_deg
from models.paths import REPO_ROOT, SHARED_REAL_DIR


DEFAULT_OUT: Path = REPO_ROOT / "runs" / "eval_app"
DEFAULT_PHOTOS: Path = SHARED_REAL_DIR / "photos"
DEFAULT_CLIP: Path = SHARED_REAL_DIR / "open_palm_640x360.mp4"
DEFAULT_PICTURE: Path = REPO_ROOT / "assets" / "readme" / "real_meshes.png"
AGREEMENT_BOUNDS: tuple[float, float] = (0.15, 0.08)
"""Agreement thresholds reported as fractions of hands (tests/test_real_clip.py's bound; issue 12's target)."""
SIZE_RATIO_RANGE: tuple[float, float] = (0.8, 1.25)
"""Accepted ratio of the projected mesh-joint box diagonal to MediaPipe's landmark box diagonal."""
NEAR_LIMIT_M: float = 0.15
"""A wrist placed closer to the camera than this (metres) is counted as implausibly near."""
DIVERSITY_MAX_HANDS: int = 400
"""Pose diversity is the median over all pairs of at most this many hands (a fixed random subset)."""

# Photos of the README picture: (label, path relative to the photo root). All are in the held-out split
# (training.mp_data.photo_is_held_out), chosen by looking at them; none of the sets has a thumbs-up.
PICTURE_PHOTOS: tuple[tuple[str, str], ...] = (
    ("fist", "webcam_hands/996_pic00089.jpg"),
    ("pointing", "webcam_hands/996_pic00078.jpg"),
    ("open hand", "webcam_hands/55_pic00035.jpg"),
    ("two hands: fist + open", "webcam_hands/996_pic00023.jpg"),
    ("OK sign", "webcam_hands/1528664299.56_pic00052.jpg"),
    ("sign digit 1 (100x100 crop)", "sign_digits/1/IMG_4255.JPG"),
)


class AppEvaluationError(RuntimeError):
    """The evaluation cannot run: missing data, nothing to score, or an unwritable output."""


# --------------------------------------------------------------------------------------------- detector


class StillImageAdapter:
    """MediaPipe in IMAGE mode behind the interface :class:`HandPipeline` expects of its ``detector``.

    Every image is detected on its own (no tracking between frames), as ``app.mediapipe_labels`` does
    for the training cache, so a synthetic test frame or a photo is scored independently of the one
    before. Handedness names the person's hand (unmirrored images).

    Args:
        max_hands: most hands reported per image.
        detector: an ``app.mediapipe_labels.StillImageDetector`` (or anything with its ``detect(bgr)``);
            built here when None.
    """

    def __init__(self, max_hands: int = 2, detector: Any | None = None) -> None:
        if detector is None:
            from app.mediapipe_labels import StillImageDetector

            detector = StillImageDetector(max_hands=max_hands)
        self._still = detector
        self.max_hands = int(max_hands)

    def detect(self, bgr: np.ndarray, t: float | None = None) -> list[HandDetection]:
        """Hands in one ``(H, W, 3)`` uint8 BGR image; ``t`` is ignored (no tracking). Second readings of one
        hand are dropped as the live detector drops them (``app.detection.suppress_duplicates``)."""
        detections = []
        for hand in self._still.detect(bgr)[: self.max_hands]:
            uv = np.asarray(hand.uv_img, np.float32)
            detections.append(HandDetection(
                landmarks_img=uv.copy(),
                landmarks_z=np.asarray(hand.z, np.float32).copy(),
                world_landmarks=np.asarray(hand.world, np.float32).copy(),
                handedness="right" if hand.right else "left",
                score=float(hand.score),
                box_img=landmarks_box(uv),
            ))
        return suppress_duplicates(detections)

    def reset(self) -> None:
        """Nothing to forget: IMAGE mode keeps no state between images."""

    def close(self) -> None:
        close = getattr(self._still, "close", None)
        if callable(close):
            close()
            return
        landmarker = getattr(self._still, "_landmarker", None)  # StillImageDetector keeps its graph here
        if landmarker is not None:
            landmarker.close()


# --------------------------------------------------------------------------------------------- helpers


def match_detection(landmarks: Sequence[np.ndarray], joints_2d: np.ndarray,
                    fraction: float = MATCH_FRACTION) -> int | None:
    """Index of the landmark set that is the true hand, or None.

    Args:
        landmarks: per detected hand ``(21, 2)`` pixels.
        joints_2d: ``(21, 2)`` true joints projected into the same image, pixels.
        fraction: the best hand's median joint distance must be below ``fraction`` times the longest side
            of the true joints' box.
    """
    truth = np.asarray(joints_2d, np.float64)
    size = float(np.ptp(truth, axis=0).max())
    best, best_d = None, math.inf
    for i, lm in enumerate(landmarks):
        d = float(np.median(np.linalg.norm(np.asarray(lm, np.float64) - truth, axis=1)))
        if d < best_d:
            best, best_d = i, d
    return best if best is not None and best_d < fraction * size else None


def result_hand_for(result: FrameResult, detection: HandDetection) -> HandResult | None:
    """The hand of ``result`` computed from ``detection`` (same landmarks), or None when it was dropped."""
    for hand in result.hands:
        if np.array_equal(hand.landmarks_img, detection.landmarks_img):
            return hand
    return None


def hand_length_m(joints: np.ndarray) -> float:
    """Hand length (``models.mediapipe_frame.hand_length``: wrist -> middle MCP -> PIP -> DIP -> tip) of
    ``(21, 3)`` joints, in the joints' unit, as a float64 number."""
    return float(hand_length(np.asarray(joints, np.float64)))


def box_diagonal(points_img: np.ndarray) -> float:
    """Diagonal of the tight box around ``(N, 2)`` pixel points, pixels."""
    return float(np.linalg.norm(np.ptp(np.asarray(points_img, np.float64), axis=0)))


@dataclass(frozen=True)
class Agreement:
    """Agreement of one hand's projected mesh joints with MediaPipe's landmarks (no units: box fractions).

    error_diag: mean joint distance / diagonal of MediaPipe's landmark box (the report's figure).
    error_side: median joint distance / longest side of that box (tests/test_real_clip.py's figure).
    size_ratio: diagonal of the projected joints' box / diagonal of the landmark box.
    """

    error_diag: float
    error_side: float
    size_ratio: float


def agreement(joints_img: np.ndarray, landmarks_img: np.ndarray) -> Agreement:
    """:class:`Agreement` of ``(21, 2)`` projected joints with ``(21, 2)`` landmarks (pixels)."""
    j = np.asarray(joints_img, np.float64)
    lm = np.asarray(landmarks_img, np.float64)
    dist = np.linalg.norm(j - lm, axis=1)
    diag = max(box_diagonal(lm), 1e-9)
    side = max(float(np.ptp(lm, axis=0).max()), 1e-9)
    return Agreement(float(dist.mean() / diag), float(np.median(dist) / side), box_diagonal(j) / diag)


def pairwise_pa_mpjpe_mm(joints: np.ndarray, max_items: int = DIVERSITY_MAX_HANDS, seed: int = 0) -> float:
    """Median PA-MPJPE (mm) over all pairs of ``(N, 21, 3)`` root-relative joint sets (metres).

    A pose-diversity figure: a network that outputs the same hand for every input scores near 0. Pairs are
    aligned with FreiHAND's Procrustes (``training.metrics.pa_point_distances``); at most ``max_items``
    sets (a fixed random subset) enter. NaN for fewer than two sets.
    """
    from training.metrics import pa_point_distances

    pts = np.asarray(joints, np.float64)
    if pts.shape[0] < 2:
        return float("nan")
    if pts.shape[0] > max_items:
        pick = np.sort(np.random.default_rng(seed).choice(pts.shape[0], size=max_items, replace=False))
        pts = pts[pick]
    a, b = np.triu_indices(pts.shape[0], k=1)
    values = []
    for start in range(0, a.size, 20_000):
        sl = slice(start, start + 20_000)
        values.append(pa_point_distances(pts[a[sl]], pts[b[sl]]).mean(dim=1).numpy())
    return float(np.median(np.concatenate(values)) * 1000.0)


@functools.cache
def _skin_measure() -> Any:
    """``models.skin_thickness.SkinThickness`` of the hand asset (imported here: it needs torch)."""
    from models.hand.asset import load_hand_asset
    from models.skin_thickness import SkinThickness

    return SkinThickness.from_asset(load_hand_asset())


def skin_deviation_mm(vertices: np.ndarray) -> list[float]:
    """Per mesh of ``(N, V, 3)`` vertices (any frame, position, size): the mean over its vertices of how
    far the skin's distance to the skeleton is from the rest template's, in mm at the template's hand length
    (``models.skin_thickness``). Empty when ``V`` is not the hand asset's vertex count (another topology)."""
    verts = np.asarray(vertices, np.float64)
    measure = _skin_measure()
    if verts.ndim != 3 or verts.shape[1] != measure.rest_distance.shape[0]:
        return []
    import torch

    deviation = measure.deviation_any_size(torch.as_tensor(verts, dtype=torch.float32))
    return [float(v) for v in deviation.mean(dim=1) * 1000.0]


def right_handed(points: np.ndarray, is_left: bool) -> np.ndarray:
    """``(21, 3)`` root-relative points, x mirrored for left hands (so every hand has right-hand chirality)."""
    p = np.asarray(points, np.float64)
    return p * np.array([-1.0, 1.0, 1.0]) if is_left else p


def _median(values: Sequence[float]) -> float:
    return float(np.median(values)) if len(values) else float("nan")


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def _fraction(flags: Sequence[bool]) -> float:
    return float(np.mean(flags)) if len(flags) else float("nan")


def clamp_hand_length_cm(length_cm: float) -> float:
    """A hand length inside the range :class:`PipelineOptions` accepts (synthetic hands stay inside it)."""
    low, high = HAND_LENGTH_RANGE_CM
    return float(np.clip(length_cm, low, high))


# --------------------------------------------------------------------------------------------- backend / pipeline


def open_backend(args: argparse.Namespace) -> Any:
    """The mesh backend named by ``--backend/--weights/--untrained/--device`` (``app.construction``).

    The backend defaults to the kind the ``--weights`` suffix names, else onnx.
    """
    from app.construction import WEIGHT_SUFFIXES, load_backend, validate_pipeline_options

    kind = args.backend
    if kind is None:
        suffix = Path(args.weights).suffix.lower() if args.weights is not None else ".onnx"
        kind = next((k for k, s in WEIGHT_SUFFIXES.items() if s == suffix), "onnx")
    args.backend = kind
    validate_pipeline_options(args)
    return load_backend(kind, args.device, args.weights, args.untrained)


def backend_info(backend: Any, args: argparse.Namespace) -> dict[str, Any]:
    """What ran: backend, weights file (or untrained preset), model preset, host."""
    from app.construction import backend_report, default_weights

    weights = (None if args.untrained else str(args.weights or default_weights(args.backend)))
    return {
        "backend": backend_report(backend),
        "weights": weights,
        "untrained": args.untrained,
        "model": getattr(getattr(backend, "config", None), "name", None),
        "host": f"{platform.node()} {platform.machine()} python {platform.python_version()}",
    }


def still_pipeline(backend: Any, cue: str, *, max_hands: int = 2, detector: Any | None = None) -> HandPipeline:
    """:class:`HandPipeline` with MediaPipe in IMAGE mode and smoothing off (for independent images)."""
    options = PipelineOptions(max_hands=max_hands, cue=cue, smoothing=SmoothingParams(enabled=False))
    adapter = detector if detector is not None else StillImageAdapter(max_hands=max_hands)
    return HandPipeline(backend, options=options, detector=adapter)


OWN_DEPTH_VARIANT: str = "fused-own-depth"
"""Synthetic evaluation only: the fused cue without the depth ensemble (its own DGP depth), for comparison."""


def _cues(cue: str) -> tuple[str, ...]:
    return CUES if cue == "all" else (cue,)


def _variant(name: str) -> tuple[str, bool]:
    """``(cue, depth_ensemble)`` of a synthetic evaluation column."""
    return ("fused", False) if name == OWN_DEPTH_VARIANT else (name, True)


# --------------------------------------------------------------------------------------------- synth


SETTINGS: tuple[str, ...] = ("size_unknown", "true_size")


@dataclass
class _SettingAccumulator:
    """Per cue and size setting: the metrics of every found hand (camera frame, metres in, mm out)."""

    pred_joints: list[np.ndarray] = field(default_factory=list)
    pred_verts: list[np.ndarray] = field(default_factory=list)
    gt_joints: list[np.ndarray] = field(default_factory=list)
    gt_verts: list[np.ndarray] = field(default_factory=list)
    length_ratio: list[float] = field(default_factory=list)
    guarded: list[bool] = field(default_factory=list)
    faces: np.ndarray | None = None
    dropped: int = 0

    def add(self, hand: HandResult, gt_joints: np.ndarray, gt_verts: np.ndarray, faces: np.ndarray | None = None) -> None:
        """One found hand; ``faces (F, 3)`` (the mesh's triangles, any consistent winding) adds the
        surface bend figures."""
        if faces is not None:
            self.faces = faces
        self.pred_joints.append(np.asarray(hand.joints_cam, np.float64))
        self.pred_verts.append(np.asarray(hand.vertices_cam, np.float64))
        self.gt_joints.append(np.asarray(gt_joints, np.float64))
        self.gt_verts.append(np.asarray(gt_verts, np.float64))
        self.length_ratio.append(float(hand_length_m(hand.joints_cam) / hand_length_m(gt_joints)))
        self.guarded.append(hand.depth_source == "size")

    def summary(self) -> dict[str, Any]:
        """Metrics (FreiHAND definitions, ``training.metrics``) plus scale figures; NaN when empty."""
        from training.metrics import MetricAccumulator

        out: dict[str, Any] = {"hands": len(self.pred_joints), "dropped": self.dropped}
        if not self.pred_joints:
            return out
        pj, gj = np.stack(self.pred_joints), np.stack(self.gt_joints)
        pv, gv = np.stack(self.pred_verts), np.stack(self.gt_verts)
        acc = MetricAccumulator()
        same_topology = pv.shape[1:] == gv.shape[1:]
        acc.update(pj, gj, pv if same_topology else None, gv if same_topology else None, camera_space=True)
        out.update(acc.compute().to_dict())
        if same_topology and self.faces is not None:
            out.update(surface_bend_deg=float(mean_bend_deg(pv, self.faces).mean()),
                       surface_bend_true_deg=float(mean_bend_deg(gv, self.faces).mean()))
        if same_topology:
            out.update(skin_thickness_mm=_mean(skin_deviation_mm(pv)), skin_thickness_true_mm=_mean(skin_deviation_mm(gv)))
        d_root = pj[:, 0] - gj[:, 0]
        ratio = np.asarray(self.length_ratio)
        # Rescaling a camera-space prediction about the camera centre keeps every projection and scales
        # depth with size (what DGP does when the mesh is larger): the error left is not scale.
        rescaled = pj / ratio[:, None, None]
        # The best single scale about the camera centre per hand (least squares): an oracle bound on what
        # any size correction could remove.
        best = (pj * gj).sum(axis=(1, 2)) / np.maximum((pj * pj).sum(axis=(1, 2)), 1e-18)
        out.update(
            depth_error_mm=float(np.abs(d_root[:, 2]).mean() * 1000.0),
            depth_bias_mm=float(d_root[:, 2].mean() * 1000.0),
            depth_share_of_root_error=float((d_root[:, 2] ** 2).sum() / max((d_root ** 2).sum(), 1e-18)),
            mpjpe_cam_rescaled_mm=float(np.linalg.norm(rescaled - gj, axis=-1).mean() * 1000.0),
            mpjpe_cam_best_scale_mm=float(np.linalg.norm(pj * best[:, None, None] - gj, axis=-1).mean() * 1000.0),
            hand_length_ratio_median=float(np.median(ratio)),
            hand_length_ratio_iqr=[float(np.percentile(ratio, 25)), float(np.percentile(ratio, 75))],
            hand_length_abs_log_ratio_mean=float(np.abs(np.log(ratio)).mean()),
            guard_fraction=float(np.mean(self.guarded)),
        )
        return out


def scale_summary(unknown: dict[str, Any], known: dict[str, Any]) -> dict[str, Any]:
    """How much of the camera-space error is scale.

    * ``share_removed_by_true_size``: 1 - MPJPE_cam(true size given to the network) / MPJPE_cam(size unknown);
    * ``share_removed_by_rescale``: 1 - MPJPE_cam(size-unknown prediction rescaled about the camera centre to
      the true hand length: every projection kept, depth scaled with size) / MPJPE_cam(size unknown); negative
      when the mesh's depth is off in the other direction than its size;
    * ``share_removed_by_best_scale``: the same with the least-squares scale about the camera centre per hand
      (an oracle: the most any size correction could remove);
    * ``depth_share_of_root_error``: sum of squared root depth errors / sum of squared root errors.
    """
    base = unknown.get("mpjpe_cam_mm", float("nan"))

    def share(value: float) -> float:
        return float(1.0 - value / base) if base and math.isfinite(base) else float("nan")

    return {
        "mpjpe_cam_size_unknown_mm": base,
        "mpjpe_cam_true_size_mm": known.get("mpjpe_cam_mm", float("nan")),
        "mpjpe_cam_rescaled_mm": unknown.get("mpjpe_cam_rescaled_mm", float("nan")),
        "share_removed_by_true_size": share(known.get("mpjpe_cam_mm", float("nan"))),
        "share_removed_by_rescale": share(unknown.get("mpjpe_cam_rescaled_mm", float("nan"))),
        "mpjpe_cam_best_scale_mm": unknown.get("mpjpe_cam_best_scale_mm", float("nan")),
        "share_removed_by_best_scale": share(unknown.get("mpjpe_cam_best_scale_mm", float("nan"))),
        "depth_share_of_root_error_size_unknown": unknown.get("depth_share_of_root_error", float("nan")),
        "depth_share_of_root_error_true_size": known.get("depth_share_of_root_error", float("nan")),
    }


def evaluate_synth(
    pipeline: HandPipeline,
    n: int,
    *,
    seed: int | None = None,
    cues: Sequence[str] = ("fused",),
    start: int = 0,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Score the app's path on synthetic test frames ``start..start+n-1`` of ``seed``.

    ``pipeline`` must use a still-image detector (:func:`still_pipeline`); its intrinsics are set to each
    frame's exact ``K``. Returns the report dict (see the module doc); ``samples`` holds one entry per frame.
    """
    from training.metrics import pa_point_distances
    from training.synth.scene import SceneGenerator
    from training.synth.testset import TEST_SEED
    from app.mediapipe_labels import synth_full_frame

    if n < 1:
        raise AppEvaluationError(f"--n must be at least 1, got {n}")
    seed = TEST_SEED if seed is None else int(seed)
    generator = SceneGenerator()
    accs = {(c, s): _SettingAccumulator() for c in cues for s in SETTINGS}
    found = any_detected = handed_ok = 0
    mp_world_err: list[float] = []
    samples: list[dict[str, Any]] = []
    base_options = pipeline.options
    t0 = time.perf_counter()
    for k, index in enumerate(range(start, start + n)):
        spec, image = synth_full_frame(generator, seed, index)
        height, width = image.shape[:2]
        pipeline.set_intrinsics(Intrinsics(K=np.asarray(spec.K, np.float64), dist=np.zeros(0), size=(width, height),
                                           assumed=False, origin="synthetic frame"))
        pipeline.reset()  # independent frames: no track (and no handedness vote) carries over
        prepared = pipeline.prepare(Frame(bgr=image, t=float(k), index=index))
        any_detected += bool(prepared.detections)
        match = match_detection([d.landmarks_img for d in prepared.detections], spec.joints_2d)
        sample: dict[str, Any] = {"index": index, "found": match is not None}
        samples.append(sample)
        if match is None:
            continue
        found += 1
        det = prepared.detections[match]
        sample["handedness_ok"] = (prepared.handedness[match] == "right") == bool(spec.is_right)
        handed_ok += sample["handedness_ok"]
        gt_joints = np.asarray(spec.joints_cam, np.float64)
        gt_verts = np.asarray(spec.verts_cam, np.float64)
        world = np.asarray(det.world_landmarks, np.float64)
        mp_world_err.append(float(pa_point_distances(world[None], gt_joints[None]).mean()) * 1000.0)
        true_cm = clamp_hand_length_cm(float(hand_length(gt_joints)) * 100.0)
        sample["true_hand_length_cm"] = round(true_cm, 2)
        for cue in cues:
            cue_name, ensemble = _variant(cue)
            for setting in SETTINGS:
                pipeline.set_options(replace(base_options, cue=cue_name, depth_ensemble=ensemble,
                                             hand_length_cm=true_cm if setting == "true_size" else None))
                result = pipeline.finish(replace(prepared, cue=cue_name))
                hand = result_hand_for(result, det)
                acc = accs[(cue, setting)]
                key = f"{cue}/{setting}"
                if hand is None:
                    acc.dropped += 1
                    sample[key] = None
                    continue
                acc.add(hand, gt_joints, gt_verts, result.faces_right)
                pred = np.asarray(hand.joints_cam, np.float64)
                sample[key] = {
                    "pa_mpjpe_mm": round(float(pa_point_distances(pred[None], gt_joints[None]).mean()) * 1000.0, 2),
                    "mpjpe_cam_mm": round(float(np.linalg.norm(pred - gt_joints, axis=1).mean()) * 1000.0, 2),
                    "root_error_mm": round(float(np.linalg.norm(pred[0] - gt_joints[0])) * 1000.0, 2),
                    "hand_length_ratio": round(acc.length_ratio[-1], 4),
                    "depth_source": hand.depth_source,
                }
        pipeline.set_options(base_options)
        if progress is not None and ((k + 1) % 50 == 0 or k + 1 == n):
            progress(f"synth: {k + 1}/{n} frames, found {found}, {(k + 1) / (time.perf_counter() - t0):.2f} frames/s")
    per_cue: dict[str, Any] = {}
    for cue in cues:
        unknown, known = accs[(cue, "size_unknown")].summary(), accs[(cue, "true_size")].summary()
        per_cue[cue] = {"size_unknown": unknown, "true_size": known, "scale": scale_summary(unknown, known)}
    return {
        "kind": "synth",
        "seed": seed,
        "indices": [start, start + n - 1],
        "frames": n,
        "detection": {
            "any_hand_detected_rate": any_detected / n,
            "found": found,
            "detection_rate": found / n,
            "handedness_agreement": handed_ok / found if found else float("nan"),
        },
        "mediapipe_world_pa_mpjpe_mm": _mean(mp_world_err),
        "cues": per_cue,
        "seconds": time.perf_counter() - t0,
        "samples": samples,
    }


_SYNTH_ROWS: tuple[tuple[str, str, str], ...] = (
    ("hands scored", "hands", "d"),
    ("hands dropped (impossible network output)", "dropped", "d"),
    ("PA-MPJPE (mm)", "pa_mpjpe_mm", ".2f"),
    ("PA-MPVPE (mm)", "pa_mpvpe_mm", ".2f"),
    ("F@5 mm", "f_at_5mm", ".3f"),
    ("F@15 mm", "f_at_15mm", ".3f"),
    ("camera-space MPJPE (mm)", "mpjpe_cam_mm", ".2f"),
    ("camera-space MPVPE (mm)", "mpvpe_cam_mm", ".2f"),
    ("root error (mm)", "root_error_mm", ".2f"),
    ("root depth error (mm)", "depth_error_mm", ".2f"),
    ("root depth bias, predicted - true (mm)", "depth_bias_mm", "+.2f"),
    ("depth share of root error (squared)", "depth_share_of_root_error", ".2f"),
    ("camera MPJPE, rescaled to true size (mm)", "mpjpe_cam_rescaled_mm", ".2f"),
    ("camera MPJPE, best scale about the camera (mm)", "mpjpe_cam_best_scale_mm", ".2f"),
    ("hand length / true (median)", "hand_length_ratio_median", ".3f"),
    ("depth guard fired (fraction)", "guard_fraction", ".3f"),
    ("mesh surface: mean bend between adjacent faces (deg)", "surface_bend_deg", ".1f"),
    ("same for the true meshes (deg)", "surface_bend_true_deg", ".1f"),
    ("skin thickness: mean |distance to skeleton - template's| (mm)", "skin_thickness_mm", ".2f"),
    ("same for the true meshes (mm)", "skin_thickness_true_mm", ".2f"),
)


def _fmt(value: Any, fmt: str) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and not math.isfinite(value):
        return "n/a"
    return format(value, fmt)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A markdown table (also readable as plain text)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def synth_markdown(report: dict[str, Any]) -> str:
    """The synthetic report as markdown: detection, then one column per cue and size setting."""
    det = report["detection"]
    lines = [
        f"### Synthetic test set through the app's path (seed {report['seed']}, frames "
        f"{report['indices'][0]}-{report['indices'][1]})",
        "",
        f"- MediaPipe found the true hand in {det['found']} of {report['frames']} frames "
        f"(detection rate {det['detection_rate']:.3f}; any hand {det['any_hand_detected_rate']:.3f}); handedness "
        f"agrees on {_fmt(det['handedness_agreement'], '.3f')} of found hands",
        "- MediaPipe's own world landmarks on the same hands: PA-MPJPE "
        f"{_fmt(report['mediapipe_world_pa_mpjpe_mm'], '.2f')} mm",
        "",
    ]
    header = ["metric"]
    columns = []
    for cue, entry in report["cues"].items():
        for setting in SETTINGS:
            header.append(f"{cue}, {'size unknown' if setting == 'size_unknown' else 'true size given'}")
            columns.append(entry[setting])
    rows = [[label] + [_fmt(col.get(key), fmt) for col in columns] for label, key, fmt in _SYNTH_ROWS]
    lines.append(markdown_table(header, rows))
    lines.append("How much of the camera-space error is scale:")
    lines.append("")
    scale_rows = []
    for cue, entry in report["cues"].items():
        s = entry["scale"]
        scale_rows.append([cue, _fmt(s["mpjpe_cam_size_unknown_mm"], ".2f"), _fmt(s["mpjpe_cam_true_size_mm"], ".2f"),
                           _fmt(s["share_removed_by_true_size"], ".2f"), _fmt(s["mpjpe_cam_rescaled_mm"], ".2f"),
                           _fmt(s["share_removed_by_rescale"], ".2f"), _fmt(s["mpjpe_cam_best_scale_mm"], ".2f"),
                           _fmt(s["share_removed_by_best_scale"], ".2f"),
                           _fmt(s["depth_share_of_root_error_size_unknown"], ".2f")])
    lines.append(markdown_table(
        ["cue", "cam MPJPE, size unknown (mm)", "true size given (mm)", "share removed",
         "rescaled to true length (mm)", "share removed", "best scale (mm)", "share removed",
         "depth share of root error"], scale_rows))
    lines.append(
        "Definitions: FreiHAND's (training.metrics: Procrustes with scale per hand; F-score strict <) on the hands "
        "MediaPipe found and matched to the true hand; camera-space errors without alignment. 'True size given' "
        "runs the network with PipelineOptions.hand_length_cm = the true hand length. 'Rescaled post hoc' scales "
        "the size-unknown prediction about the camera centre by true/predicted hand length (projections unchanged); "
        "'best scale' uses the least-squares scale about the camera centre per hand (an oracle bound). "
        "'Depth guard fired': HandResult.depth_source == 'size'.")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------- photos


@dataclass
class _AgreementAccumulator:
    """Per cue: agreement figures of every detected hand, and what pose diversity needs."""

    errors_diag: list[float] = field(default_factory=list)
    errors_side: list[float] = field(default_factory=list)
    size_ratios: list[float] = field(default_factory=list)
    distances_m: list[float] = field(default_factory=list)
    depths_m: list[float] = field(default_factory=list)
    guarded: list[bool] = field(default_factory=list)
    mesh_rel: list[np.ndarray] = field(default_factory=list)
    world_rel: list[np.ndarray] = field(default_factory=list)
    bends_deg: list[float] = field(default_factory=list)
    skin_mm: list[float] = field(default_factory=list)
    dropped: int = 0

    def add(self, hand: HandResult, world_landmarks: np.ndarray | None, faces: np.ndarray | None = None) -> Agreement:
        """One detected hand; ``faces (F, 3)`` (its mesh's triangles) adds its surface bend."""
        a = agreement(hand.joints_img, hand.landmarks_img)
        if faces is not None:
            self.bends_deg.append(float(mean_bend_deg(hand.vertices_cam, faces)[0]))
        self.skin_mm += skin_deviation_mm(np.asarray(hand.vertices_cam)[None])
        self.errors_diag.append(a.error_diag)
        self.errors_side.append(a.error_side)
        self.size_ratios.append(a.size_ratio)
        self.distances_m.append(hand.distance_m)
        self.depths_m.append(hand.depth_m)
        self.guarded.append(hand.depth_source == "size")
        left = hand.handedness == "left"
        joints = np.asarray(hand.joints_cam, np.float64)
        self.mesh_rel.append(right_handed(joints - joints[0], left))
        if world_landmarks is not None:
            world = np.asarray(world_landmarks, np.float64)
            self.world_rel.append(right_handed(world - world[0], left))
        return a

    def summary(self, *, diversity: bool = True) -> dict[str, Any]:
        e = np.asarray(self.errors_diag)
        low, high = SIZE_RATIO_RANGE
        out: dict[str, Any] = {
            "hands": len(self.errors_diag),
            "dropped": self.dropped,
            "agreement_median": _median(self.errors_diag),
            "agreement_mean": _mean(self.errors_diag),
            f"fraction_under_{AGREEMENT_BOUNDS[0]:g}": _fraction(e < AGREEMENT_BOUNDS[0]),
            f"fraction_under_{AGREEMENT_BOUNDS[1]:g}": _fraction(e < AGREEMENT_BOUNDS[1]),
            "test_figure_median": _median(self.errors_side),
            "size_ratio_median": _median(self.size_ratios),
            "size_ratio_within_range": _fraction([low <= r <= high for r in self.size_ratios]),
            f"closer_than_{NEAR_LIMIT_M:g}m": int(sum(d < NEAR_LIMIT_M for d in self.distances_m)),
            "depth_m_min_median_max": ([float(np.min(self.depths_m)), _median(self.depths_m),
                                        float(np.max(self.depths_m))] if self.depths_m else None),
            "guard_fraction": _fraction(self.guarded),
        }
        if self.bends_deg:
            out["surface_bend_deg"] = _mean(self.bends_deg)
        if self.skin_mm:
            out["skin_thickness_mm"] = _mean(self.skin_mm)
        if diversity:
            mesh = pairwise_pa_mpjpe_mm(np.stack(self.mesh_rel)) if len(self.mesh_rel) > 1 else float("nan")
            world = pairwise_pa_mpjpe_mm(np.stack(self.world_rel)) if len(self.world_rel) > 1 else float("nan")
            out.update(pose_diversity_mesh_mm=mesh, pose_diversity_mediapipe_mm=world,
                       pose_diversity_ratio=mesh / world if world and math.isfinite(world) else float("nan"))
        return out


def select_photos(root: Path, split: str, limit: int | None = None) -> list[Path]:
    """Photos under ``root`` of the split ``held-out`` (``training.mp_data.photo_is_held_out``) or ``all``."""
    from app.mediapipe_labels import LabelCacheError, list_photos
    from training.mp_data import photo_is_held_out

    try:
        photos = list_photos(root)
    except LabelCacheError as err:
        raise AppEvaluationError(str(err)) from err
    if split == "held-out":
        photos = [p for p in photos if photo_is_held_out(str(p.relative_to(root)))]
    elif split != "all":
        raise AppEvaluationError(f"--split must be 'held-out' or 'all', got {split!r}")
    return photos[:limit] if limit is not None else photos


def evaluate_photos(
    pipeline: HandPipeline,
    photos: Sequence[Path],
    root: Path,
    *,
    cues: Sequence[str] = CUES,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Agreement of the mesh with MediaPipe on real photos (MediaPipe runs once per photo, for every cue).

    ``pipeline`` must use a still-image detector and the FOV default (no intrinsics file).
    """
    accs = {c: _AgreementAccumulator() for c in cues}
    unreadable = with_hands = detected = 0
    per_photo: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for k, path in enumerate(photos):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            unreadable += 1
            continue
        pipeline.reset()
        prepared = pipeline.prepare(Frame(bgr=np.ascontiguousarray(image), t=float(k), index=k))
        entry: dict[str, Any] = {"photo": str(path.relative_to(root)), "hands": len(prepared.detections)}
        per_photo.append(entry)
        if prepared.detections:
            with_hands += 1
            detected += len(prepared.detections)
        for cue in cues:
            result = pipeline.finish(replace(prepared, cue=cue))
            figures = []
            for det in prepared.detections:
                hand = result_hand_for(result, det)
                if hand is None:
                    accs[cue].dropped += 1
                    continue
                a = accs[cue].add(hand, det.world_landmarks, result.faces_for(hand))
                figures.append(round(a.error_diag, 4))
            entry[cue] = figures
        if progress is not None and ((k + 1) % 100 == 0 or k + 1 == len(photos)):
            rate = (k + 1) / (time.perf_counter() - t0)
            progress(f"photos: {k + 1}/{len(photos)}, {detected} hands, {rate:.1f} photos/s")
    return {
        "kind": "photos",
        "reference": "MediaPipe's landmarks (the photos have no keypoint labels): agreement, not accuracy",
        "photos": len(photos),
        "unreadable": unreadable,
        "photos_with_hands": with_hands,
        "hands_detected": detected,
        "cues": {c: accs[c].summary() for c in cues},
        "seconds": time.perf_counter() - t0,
        "per_photo": per_photo,
    }


_AGREEMENT_ROWS: tuple[tuple[str, str, str], ...] = (
    ("hands", "hands", "d"),
    ("hands dropped (impossible network output)", "dropped", "d"),
    ("agreement: mean joint distance / landmark box diagonal, median", "agreement_median", ".3f"),
    (f"fraction of hands under {AGREEMENT_BOUNDS[0]:g}", f"fraction_under_{AGREEMENT_BOUNDS[0]:g}", ".3f"),
    (f"fraction of hands under {AGREEMENT_BOUNDS[1]:g}", f"fraction_under_{AGREEMENT_BOUNDS[1]:g}", ".3f"),
    ("test_real_clip figure: median joint distance / box side, median", "test_figure_median", ".3f"),
    ("projected size / landmark box size, median", "size_ratio_median", ".3f"),
    (f"projected size within {SIZE_RATIO_RANGE[0]:g}-{SIZE_RATIO_RANGE[1]:g} (fraction)", "size_ratio_within_range",
     ".3f"),
    ("pose diversity: median pairwise PA-MPJPE, mesh (mm)", "pose_diversity_mesh_mm", ".1f"),
    ("pose diversity: same for MediaPipe's world landmarks (mm)", "pose_diversity_mediapipe_mm", ".1f"),
    ("pose diversity ratio mesh / MediaPipe", "pose_diversity_ratio", ".2f"),
    (f"hands placed closer than {NEAR_LIMIT_M:g} m", f"closer_than_{NEAR_LIMIT_M:g}m", "d"),
    ("depth guard fired (fraction)", "guard_fraction", ".3f"),
    ("mesh surface: mean bend between adjacent faces (deg)", "surface_bend_deg", ".1f"),
    ("skin thickness: mean |distance to skeleton - template's| (mm)", "skin_thickness_mm", ".2f"),
)


def agreement_markdown(report: dict[str, Any], title: str, intro: Sequence[str]) -> str:
    """An agreement report (photos or clip) as markdown, one column per cue."""
    cues = list(report["cues"])
    rows = []
    for label, key, fmt in _AGREEMENT_ROWS:
        if not any(key in report["cues"][c] for c in cues):
            continue
        rows.append([label] + [_fmt(report["cues"][c].get(key), fmt) for c in cues])
    lines = [f"### {title}", "", *[f"- {line}" for line in intro], "", markdown_table(["figure"] + cues, rows)]
    lines.append(
        "Reference: MediaPipe's 2D landmarks and 3D world landmarks (no human keypoint labels): these figures "
        "measure agreement with MediaPipe, not accuracy. Agreement per hand = mean distance between the projected "
        "mesh joints (HandResult.joints_img) and MediaPipe's 21 landmarks / diagonal of the landmark box. Pose "
        f"diversity: median PA-MPJPE over pairs of hands (root-relative, left hands mirrored; at most "
        f"{DIVERSITY_MAX_HANDS} hands). Surface bend: the mean angle between the normals of adjacent faces "
        "(models.mesh_surface; our template at rest: 13 deg, posed synthetic ground truth: about 17); higher is "
        "more crumpled. Skin thickness: per vertex, how far its distance to the bone segments between the mesh's "
        "own joints is from the rest template's, at the template's hand length (models.skin_thickness; posed "
        "synthetic ground truth: about 0.9 mm); a pointed knuckle or a collapsed finger raises it.")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------- clip


def evaluate_clip(
    backend: Any,
    source_path: Path,
    *,
    cues: Sequence[str] = CUES,
    smoothing: float = 0.0,
    hfov_deg: float | None = None,
    max_frames: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Agreement on a video: the normal pipeline (MediaPipe tracking mode), one full pass per cue.

    ``smoothing`` is the CLI's strength (0 = off, the default here: smoothing lags the mesh behind the
    unsmoothed landmarks and would be counted as disagreement).
    """
    from app.intrinsics import DEFAULT_HFOV_DEG
    from app.sources import SourceNotFoundError, VideoFileSource

    if not Path(source_path).is_file():
        raise SourceNotFoundError(f"video file not found: {source_path}")
    per_cue: dict[str, Any] = {}
    frames = 0
    t0 = time.perf_counter()
    for cue in cues:
        acc = _AgreementAccumulator()
        options = PipelineOptions(cue=cue, smoothing=SmoothingParams.from_strength(smoothing),
                                  hfov_deg=DEFAULT_HFOV_DEG if hfov_deg is None else float(hfov_deg))
        frames = with_hands = 0
        with VideoFileSource(source_path) as src, HandPipeline(backend, options=options) as pipeline:
            for frame in src:
                if max_frames is not None and frames >= max_frames:
                    break
                prepared = pipeline.prepare(frame)
                result = pipeline.finish(prepared)
                frames += 1
                with_hands += bool(prepared.detections)
                for det in prepared.detections:
                    hand = result_hand_for(result, det)
                    if hand is None:
                        acc.dropped += 1
                        continue
                    acc.add(hand, det.world_landmarks, result.faces_for(hand))
        summary = acc.summary(diversity=False)
        summary["frames"] = frames
        summary["frames_with_hands"] = with_hands
        per_cue[cue] = summary
        if progress is not None:
            progress(f"clip: cue {cue} done, {frames} frames, {summary['hands']} hands")
    return {
        "kind": "clip",
        "source": str(source_path),
        "reference": "MediaPipe's landmarks (no keypoint labels): agreement, not accuracy",
        "smoothing": smoothing,
        "frames": frames,
        "cues": per_cue,
        "seconds": time.perf_counter() - t0,
    }


# --------------------------------------------------------------------------------------------- pictures


def _rotation_y(angle_rad: float) -> np.ndarray:
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def render_side_view(
    meshes: Sequence[tuple[np.ndarray, np.ndarray, tuple[int, int, int]]],
    size: tuple[int, int],
    *,
    background: tuple[int, int, int] = (40, 40, 40),
) -> np.ndarray:
    """Side view of camera-space meshes: turned 90 degrees about the vertical axis through their centroid.

    Args:
        meshes: per hand ``(vertices_cam (V, 3) metres, faces (F, 3) outward winding, colour BGR)``.
        size: ``(width, height)`` of the panel, pixels.
    Returns:
        ``(height, width, 3)`` uint8 BGR panel: flat-shaded meshes (painter's algorithm, ``app.drawing``),
        seen from the camera's right (the camera is at the panel's left, its depth axis points right),
        nearly orthographic, fitted to the panel, with a 10 cm scale bar.
    """
    from app.drawing import draw_mesh

    width, height = size
    panel = np.full((height, width, 3), background, np.uint8)
    if not meshes:
        return panel
    all_verts = np.concatenate([np.asarray(v, np.float64) for v, _, _ in meshes])
    centre = all_verts.mean(axis=0)
    # Rotating by +90 deg about y maps the camera's depth axis (z) onto the panel's x axis: the viewer
    # stands on the camera's +x side looking toward -x; farther points appear further right.
    rot = _rotation_y(math.pi / 2.0)
    turned = [(np.asarray(v, np.float64) - centre) @ rot.T for v, _, _ in meshes]
    stacked = np.concatenate(turned)
    extent = np.ptp(stacked[:, :2], axis=0)
    scale_px_per_m = 0.8 * min(width / max(extent[0], 1e-3), height / max(extent[1], 1e-3))
    distance = 20.0 * max(float(np.abs(stacked).max()), 0.05)  # far away: almost orthographic
    focal = scale_px_per_m * distance
    mid = 0.5 * (stacked[:, :2].min(axis=0) + stacked[:, :2].max(axis=0))
    offset = np.array([width / 2.0, height / 2.0]) - mid * scale_px_per_m

    def project(points: np.ndarray) -> np.ndarray:
        p = np.asarray(points, np.float64)
        return p[:, :2] / p[:, 2:3] * focal + offset

    for verts, (_, faces, colour) in zip(turned, meshes):
        draw_mesh(panel, verts + np.array([0.0, 0.0, distance]), faces, project, colour, alpha=1.0)
    bar = int(round(0.10 * scale_px_per_m))
    if 4 <= bar < width - 20:
        y = height - 12
        cv2.line(panel, (10, y), (10 + bar, y), (220, 220, 220), 2, cv2.LINE_AA)
        cv2.putText(panel, "10 cm", (12, y - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (220, 220, 220), 1, cv2.LINE_AA)
    cv2.putText(panel, "camera ->", (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (220, 220, 220), 1, cv2.LINE_AA)
    cv2.putText(panel, "side view", (width - 70, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (220, 220, 220), 1, cv2.LINE_AA)
    return panel


def render_front_view(image_bgr: np.ndarray, result: FrameResult, height: int, *, skeleton: bool = False) -> np.ndarray:
    """The photo resized to ``height`` pixels with every hand's mesh (and optionally its projected skeleton) over it."""
    from app.drawing import draw_mesh, draw_skeleton, hand_colour

    h0, w0 = image_bgr.shape[:2]
    s = height / h0
    width = max(1, int(round(w0 * s)))
    out = cv2.resize(image_bgr, (width, height), interpolation=cv2.INTER_CUBIC if s > 1 else cv2.INTER_AREA)
    K = np.asarray(result.K, np.float64)

    def to_panel(uv: np.ndarray) -> np.ndarray:
        return (np.asarray(uv, np.float64) + 0.5) * s - 0.5  # pixel centres at integer coordinates

    def project(points: np.ndarray) -> np.ndarray:
        p = np.asarray(points, np.float64)
        return to_panel(p[:, :2] / p[:, 2:3] * np.array([K[0, 0], K[1, 1]]) + K[:2, 2])

    for hand in result.hands:
        colour = hand_colour(hand)
        draw_mesh(out, hand.vertices_cam, result.faces_for(hand), project, colour, alpha=0.6)
        if skeleton:
            draw_skeleton(out, to_panel(hand.joints_img), colour, 1)
    return out


def render_pictures(
    pipeline: HandPipeline,
    root: Path,
    photos: Sequence[tuple[str, str]] = PICTURE_PHOTOS,
    *,
    panel_height: int = 220,
    columns: int = 2,
    footer: str = "",
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """The README grid: per photo, the front view (mesh over the photo) beside a side view of the same mesh.

    ``footer``: one line of text under the grid (e.g. the cue and the weights).

    Returns:
        ``(grid BGR uint8, per-photo info)``; ``pipeline`` must use a still-image detector.
    """
    from app.drawing import hand_colour

    cells: list[np.ndarray] = []
    info: list[dict[str, Any]] = []
    title_h = 22
    for k, (label, rel) in enumerate(photos):
        path = root / rel
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise AppEvaluationError(f"cannot read picture photo {path}")
        pipeline.reset()
        result = pipeline.finish(pipeline.prepare(Frame(bgr=np.ascontiguousarray(image), t=float(k), index=k)))
        front = render_front_view(image, result, panel_height)
        side = render_side_view([(h.vertices_cam, result.faces_for(h), hand_colour(h)) for h in result.hands],
                                (panel_height, panel_height))
        row = np.concatenate([front, side], axis=1)
        title = np.full((title_h, row.shape[1], 3), 255, np.uint8)
        figures = [agreement(h.joints_img, h.landmarks_img).error_diag for h in result.hands]
        text = f"{label}: " + (", ".join(f"{h.handedness} {h.distance_m:.2f} m" for h in result.hands)
                               if result.hands else "no hand found")
        cv2.putText(title, text, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        cells.append(np.concatenate([title, row], axis=0))
        info.append({"label": label, "photo": rel, "hands": len(result.hands),
                     "agreement": [round(f, 4) for f in figures],
                     "distance_m": [round(h.distance_m, 3) for h in result.hands]})
    cell_w = max(c.shape[1] for c in cells)
    cell_h = max(c.shape[0] for c in cells)
    pad = 6
    rows_n = math.ceil(len(cells) / columns)
    grid = np.full((rows_n * (cell_h + pad) + pad, columns * (cell_w + pad) + pad, 3), 255, np.uint8)
    for i, cell in enumerate(cells):
        r, c = divmod(i, columns)
        y, x = pad + r * (cell_h + pad), pad + c * (cell_w + pad)
        grid[y:y + cell.shape[0], x:x + cell.shape[1]] = cell
    if footer:
        strip = np.full((20, grid.shape[1], 3), 255, np.uint8)
        cv2.putText(strip, footer, (pad, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (60, 60, 60), 1, cv2.LINE_AA)
        grid = np.concatenate([grid, strip], axis=0)
    return grid, info


def write_picture(path: Path, image_bgr: np.ndarray, max_bytes: int = 600_000) -> int:
    """Write ``image_bgr`` as a compact PNG (``training.synth.realism.write_compact_png``), coarser levels
    until it fits ``max_bytes``; returns the file size in bytes."""
    from training.synth.realism import write_compact_png

    path.parent.mkdir(parents=True, exist_ok=True)
    size = 0
    for step in (4, 6, 8, 12, 16):
        write_compact_png(path, image_bgr, level_step=step)
        size = path.stat().st_size
        if size <= max_bytes:
            break
    return size


# --------------------------------------------------------------------------------------------- output


def write_report(report: dict[str, Any], markdown: str, out_dir: Path, name: str) -> tuple[Path, Path]:
    """Write ``<out_dir>/<name>.json`` (strict JSON: NaN written as null) and ``<out_dir>/<name>.md``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"{name}.json", out_dir / f"{name}.md"
    json_path.write_text(json.dumps(jsonable(report), indent=1, allow_nan=False) + "\n", encoding="utf-8")
    md_path.write_text(markdown, encoding="utf-8")
    return json_path, md_path


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars/arrays as Python numbers/lists and non-finite floats as None."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --------------------------------------------------------------------------------------------- CLI


def _add_backend_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", type=Path, default=None,
                        help="checkpoint (.safetensors -> torch) or exported network (.onnx); default: the shipped one")
    parser.add_argument("--backend", choices=("onnx", "torch"), default=None,
                        help="default: from the --weights suffix, else onnx")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--untrained", default=None, metavar="PRESET",
                        help="an untrained model of this preset (for tests and timings)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the .json and .md reports")
    parser.add_argument("--name", default=None, help="report file stem (default: the subcommand, plus the cue)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app.evaluate_app", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    synth = sub.add_parser("synth", help="synthetic test frames through the app's full path")
    synth.add_argument("--n", type=int, default=1000, help="frames (indices start..start+n-1)")
    synth.add_argument("--start", type=int, default=0)
    synth.add_argument("--seed", type=int, default=None, help="default: training.synth.testset.TEST_SEED")
    synth.add_argument("--cue", choices=(*CUES, OWN_DEPTH_VARIANT, "all"), default="fused",
                       help=f"'all': every cue and {OWN_DEPTH_VARIANT} (the fused cue without the depth ensemble)")
    _add_backend_args(synth)

    photos = sub.add_parser("photos", help="agreement with MediaPipe on real photos (no labels)")
    photos.add_argument("--root", type=Path, default=DEFAULT_PHOTOS)
    photos.add_argument("--split", choices=("held-out", "all"), default="held-out")
    photos.add_argument("--limit", type=int, default=None, help="first N photos of the split (quick runs)")
    photos.add_argument("--cue", choices=(*CUES, "all"), default="all")
    _add_backend_args(photos)

    clip = sub.add_parser("clip", help="agreement with MediaPipe on a real video (tracking mode)")
    clip.add_argument("--source", type=Path, default=DEFAULT_CLIP)
    clip.add_argument("--cue", choices=(*CUES, "all"), default="all")
    clip.add_argument("--smoothing", type=float, default=0.0, help="smoothing strength in [0, 1] (default 0: off)")
    clip.add_argument("--max-frames", type=int, default=None)
    _add_backend_args(clip)

    pictures = sub.add_parser("pictures", help="README grid: meshes over real photos, front and side views")
    pictures.add_argument("--root", type=Path, default=DEFAULT_PHOTOS)
    pictures.add_argument("--cue", choices=CUES, default="fused")
    pictures.add_argument("--panel-height", type=int, default=220)
    _add_backend_args(pictures)
    pictures.set_defaults(out=DEFAULT_PICTURE)
    return parser


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run one subcommand from parsed arguments; prints the table and returns the report.

    Data paths are checked before the backend loads, so a wrong path fails at once.
    """
    photos: list[Path] = []
    if args.command == "synth" and args.n < 1:
        raise AppEvaluationError(f"--n must be at least 1, got {args.n}")
    if args.command == "photos":
        photos = select_photos(args.root, args.split, args.limit)
    if args.command == "clip" and not Path(args.source).is_file():
        raise AppEvaluationError(f"video file not found: {args.source} (the real clip lives in ../shared/real/)")
    if args.command == "pictures":
        if Path(args.out).suffix.lower() != ".png":
            raise AppEvaluationError(f"pictures --out must name a .png file, got {args.out}")
        missing = [rel for _, rel in PICTURE_PHOTOS if not (Path(args.root) / rel).is_file()]
        if missing:
            raise AppEvaluationError(f"picture photos missing under {args.root}: {', '.join(missing)}")
    backend = open_backend(args)
    info = backend_info(backend, args)
    if args.command == "synth":
        cues = (*CUES, OWN_DEPTH_VARIANT) if args.cue == "all" else (args.cue,)
        with still_pipeline(backend, _variant(cues[0])[0]) as pipeline:
            report = evaluate_synth(pipeline, args.n, seed=args.seed, cues=cues, start=args.start, progress=_progress)
        report.update(info)
        markdown = synth_markdown(report) + _info_lines(info)
        name = args.name or f"synth_{args.cue}"
    elif args.command == "photos":
        with still_pipeline(backend, "fused") as pipeline:
            report = evaluate_photos(pipeline, photos, args.root, cues=_cues(args.cue), progress=_progress)
        report.update(info, split=args.split, root=str(args.root))
        intro = [f"{report['photos']} photos ({args.split} split of {args.root.name}/), {report['photos_with_hands']} "
                 f"with hands, {report['hands_detected']} hands detected by MediaPipe (IMAGE mode)",
                 "intrinsics: the app's field-of-view default"]
        markdown = agreement_markdown(report, "Real photos: mesh vs MediaPipe", intro) + _info_lines(info)
        name = args.name or f"photos_{args.split}"
    elif args.command == "clip":
        report = evaluate_clip(backend, args.source, cues=_cues(args.cue), smoothing=args.smoothing,
                               max_frames=args.max_frames, progress=_progress)
        report.update(info)
        intro = [f"{Path(args.source).name}: {report['frames']} frames, MediaPipe in tracking mode (the normal "
                 f"pipeline), smoothing {args.smoothing:g}, intrinsics: the app's field-of-view default"]
        markdown = agreement_markdown(report, "Real clip: mesh vs MediaPipe", intro) + _info_lines(info)
        name = args.name or "clip"
    else:
        out = Path(args.out)
        weights = info["weights"] and Path(info["weights"]).name or f"UNTRAINED {info['untrained']}"
        with still_pipeline(backend, args.cue) as pipeline:
            footer = (f"cue {args.cue}; weights {weights}; {pipeline.options.hfov_deg:g} deg FOV assumed; side view: "
                      "the mesh turned 90 deg about the vertical axis")
            grid, pictures = render_pictures(pipeline, args.root, panel_height=args.panel_height, footer=footer)
        size = write_picture(out, grid)
        report = {"kind": "pictures", "png": str(out), "bytes": size, "cue": args.cue, "pictures": pictures, **info}
        print(markdown_table(["picture", "photo", "hands", "agreement", "distance (m)"],
                             [[p["label"], p["photo"], str(p["hands"]), str(p["agreement"]), str(p["distance_m"])]
                              for p in pictures]))
        print(f"wrote {out} ({size / 1000:.0f} kB, {grid.shape[1]}x{grid.shape[0]})")
        return report
    json_path, md_path = write_report(report, markdown, Path(args.out), name)
    print(markdown)
    print(f"wrote {json_path} and {md_path}")
    return report


def _info_lines(info: dict[str, Any]) -> str:
    backend = info["backend"]
    weights = info["weights"] or f"UNTRAINED {info['untrained']}"
    return (f"\n- weights: {weights} (model {info['model']}); backend {backend.get('name')} "
            f"{backend.get('providers') or backend.get('device') or ''}\n- host: {info['host']}\n")


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status (2 for a user-facing error, printed as one line)."""
    from app.construction import OptionError
    from app.detection import DetectorError
    from app.intrinsics import IntrinsicsError
    from app.sources import SourceError
    from models.errors import NetworkError

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except (AppEvaluationError, OptionError, SourceError, IntrinsicsError, DetectorError, NetworkError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
