"""MediaPipe's real outputs on training images, cached: the cue the network is trained with.

The app feeds the network MediaPipe's landmarks (2D, and the world landmarks for the ``fused`` cue).
To train on the *real* error distribution of that cue, this command runs the app's own detector on

* ``synth``: full synthetic frames (the same scenes as ``training.synth.dataset.SynthHandDataset`` for
  a seed, rendered at full resolution), keeping ground truth beside what MediaPipe returned;
* ``photos``: real photos without labels (``../shared/real/photos``; MediaPipe is the teacher);

and writes, per hand, the rectified crop cut exactly as the app cuts it (MediaPipe's landmark box,
``models.rectify.rectification_from_box``, margin 0.25, left hands mirrored) and MediaPipe's outputs
mapped into the crop. Training reads only these files (``training.mp_data``); it never imports ``app``.

Files: ``<out>/<kind>_<key>/chunk_#####.npz`` (``key`` = generator fingerprint + seed for synthetic
frames, a hash of the file list for photos), one chunk per ``--chunk`` inputs, so an interrupted run
keeps its finished chunks and resumes where it stopped. Arrays in a chunk (H = hands kept, N = inputs):

    index (H,) int64                 input index (synthetic sample index, or photo number in the sorted list)
    crop_rgb (H, S, S, 3) uint8      RGB crop
    K_virt (H, 3, 3) float32         crop intrinsics, crop pixels
    virt_from_cam (H, 3, 3) float32  camera -> crop frame (times a mirror for left hands)
    crop_from_image (H, 3, 3) float32, K (H, 3, 3) float32, image_size (H, 2) int64 (width, height)
    mp_uv_crop (H, 21, 2) float32    MediaPipe landmarks, crop pixels
    mp_world_virt (H, 21, 3) float32 MediaPipe world landmarks, wrist-relative, crop frame, metres
    mp_world (H, 21, 3), mp_uv_img (H, 21, 2), mp_z (H, 21) float32: MediaPipe's raw outputs
    mp_right (H,) bool, mp_score (H,) float32: MediaPipe's handedness and its score
    is_right (H,) bool               handedness used for mirroring (ground truth for synthetic frames)
    joints_cam (H, 21, 3), verts_cam (H, V, 3) float32: ground truth, camera frame, metres (synth only)
    all_index (N,) int64, all_found (N,) bool, all_handed_ok (N,) bool: every input, found or not

    python -m app.mediapipe_labels synth --seed 0 --n 12000 --workers 2
    python -m app.mediapipe_labels photos --root ../shared/real/photos
    python -m app.mediapipe_labels frame-report --n 200     # the world-landmark frame (models.mediapipe_frame)
    python -m app.mediapipe_labels offset-report --cache data/mediapipe_labels/synth_<key>_seed0
"""
from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp_proc
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from app.crops import landmark_box
from models.mediapipe_frame import world_landmarks_to_virtual
from models.paths import REPO_ROOT
from models.rectify import image_to_crop, rectification_from_box

DEFAULT_OUT: Path = REPO_ROOT / "data" / "mediapipe_labels"
CROP_SIZE: int = 128
CROP_MARGIN: float = 0.25
MATCH_FRACTION: float = 0.35
"""A MediaPipe hand matches the synthetic hand when its median landmark distance is below this fraction of the hand box."""
PHOTO_HFOV_DEG: float = 60.0
"""Assumed horizontal field of view of the photos (the app's default when no intrinsics are given)."""
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp")


class LabelCacheError(RuntimeError):
    """The cache could not be built (bad folder, no images, unwritable output)."""


@dataclass(frozen=True)
class MediaPipeHand:
    """One hand as MediaPipe returned it on a full image (pixels of that image; see ``app.detection``)."""

    uv_img: np.ndarray  # (21, 2) float32
    z: np.ndarray  # (21,) float32
    world: np.ndarray  # (21, 3) float32 metres
    right: bool
    score: float


class StillImageDetector:
    """MediaPipe HandLandmarker in IMAGE mode (every image independent), built like ``app.detection``."""

    def __init__(self, max_hands: int = 2) -> None:
        from mediapipe.tasks.python.core.base_options import BaseOptions
        from mediapipe.tasks.python.vision import HandLandmarker, HandLandmarkerOptions, RunningMode

        from app.detection import hand_landmarker_bundle

        options = HandLandmarkerOptions(
            base_options=BaseOptions(model_asset_buffer=hand_landmarker_bundle()),
            running_mode=RunningMode.IMAGE,
            num_hands=max_hands,
        )
        self._landmarker = HandLandmarker.create_from_options(options)

    def detect(self, bgr: np.ndarray) -> list[MediaPipeHand]:
        """Hands in a ``(H, W, 3)`` uint8 BGR image (unmirrored; labels name the person's hand)."""
        import mediapipe as mp

        height, width = bgr.shape[:2]
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        result = self._landmarker.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb))
        hands = []
        for i, landmarks in enumerate(result.hand_landmarks):
            pts = np.array([[p.x * width, p.y * height, p.z * width] for p in landmarks], np.float32)
            world = np.array([[p.x, p.y, p.z] for p in result.hand_world_landmarks[i]], np.float32)
            category = result.handedness[i][0]
            hands.append(MediaPipeHand(pts[:, :2].copy(), pts[:, 2].copy(), world,
                                       str(category.category_name).lower() == "right", float(category.score)))
        return hands


def crop_hand(bgr: np.ndarray, K: np.ndarray, hand: MediaPipeHand, mirror: bool) -> dict[str, np.ndarray]:
    """Cut the app's rectified crop of one hand from a BGR image and map MediaPipe's outputs into it."""
    box = landmark_box(hand.uv_img)
    rect = rectification_from_box(K[None], box[None], crop_size=CROP_SIZE, margin=CROP_MARGIN, mirror=np.array([mirror]))
    H = np.asarray(rect.H[0], np.float64)
    crop = cv2.warpPerspective(bgr, H, (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    virt_from_cam = np.asarray(rect.virt_from_cam[0], np.float64)
    f32 = np.float32
    return {
        "crop_rgb": np.ascontiguousarray(crop[:, :, ::-1]),
        "K_virt": np.asarray(rect.K_virt[0], f32),
        "virt_from_cam": virt_from_cam.astype(f32),
        "crop_from_image": H.astype(f32),
        "K": K.astype(f32),
        "image_size": np.array([bgr.shape[1], bgr.shape[0]], np.int64),
        "mp_uv_crop": np.asarray(image_to_crop(hand.uv_img.astype(np.float64), H), f32),
        "mp_world_virt": world_landmarks_to_virtual(hand.world.astype(np.float64), virt_from_cam).astype(f32),
        "mp_world": hand.world.astype(f32),
        "mp_uv_img": hand.uv_img.astype(f32),
        "mp_z": hand.z.astype(f32),
        "mp_right": np.array(hand.right),
        "mp_score": np.array(hand.score, f32),
        "is_right": np.array(not mirror),
    }


def fov_intrinsics(width: int, height: int, hfov_deg: float = PHOTO_HFOV_DEG) -> np.ndarray:
    """``(3, 3)`` float64 pinhole intrinsics with the given horizontal field of view, centred."""
    f = 0.5 * width / np.tan(np.deg2rad(hfov_deg) / 2.0)
    return np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def match_hand(hands: list[MediaPipeHand], joints_2d: np.ndarray) -> MediaPipeHand | None:
    """The detected hand whose landmarks match the true 2D joints ``(21, 2)`` (see MATCH_FRACTION), or None."""
    size = float(np.ptp(joints_2d, axis=0).max())
    best, best_d = None, np.inf
    for hand in hands:
        d = float(np.median(np.linalg.norm(hand.uv_img - joints_2d, axis=1)))
        if d < best_d:
            best, best_d = hand, d
    return best if best is not None and best_d < MATCH_FRACTION * size else None


# --------------------------------------------------------------------------------------------- synthetic


def synth_full_frame(generator: Any, seed: int, index: int) -> tuple[Any, np.ndarray]:
    """The scene of ``SynthHandDataset(seed)[index]`` rendered at full resolution: (spec, BGR image)."""
    root = np.random.SeedSequence([seed, int(index)])
    scene_seq, render_seq, *_ = root.spawn(4)
    spec = generator.sample_spec(np.random.default_rng(scene_seq))
    rendered = generator.render(spec, np.random.default_rng(render_seq))
    return spec, rendered.image_bgr


@dataclass(frozen=True)
class SynthVariant:
    """Opt-in real-photo statistics for a synthetic cache (``training.synth.real_priors``).

    real_backgrounds: hand-free regions of the real room photos behind half of the hands; needs
        ``photo_root`` and ``photo_cache`` (the ``photos`` cache of that root, for the hand boxes).
    matched_poses: poses re-weighted towards the bends of real photos (``assets/real_pose_bends.json``).
    """

    real_backgrounds: bool = False
    matched_poses: bool = False
    photo_root: Path | None = None
    photo_cache: Path | None = None

    @property
    def suffix(self) -> str:
        """Cache folder suffix ('' for the default generator)."""
        return ("_realbg" if self.real_backgrounds else "") + ("_matchedposes" if self.matched_poses else "")

    def generator(self) -> Any:
        """A ``training.synth.scene.SceneGenerator`` drawing this variant."""
        from training.synth.backgrounds import BackgroundSampler
        from training.synth.real_priors import BendMatchedPoses, RealPhotoRegions
        from training.synth.scene import SceneGenerator

        backgrounds = None
        if self.real_backgrounds:
            if self.photo_root is None or self.photo_cache is None:
                raise LabelCacheError("real backgrounds need the photo folder and its photos_* cache")
            backgrounds = BackgroundSampler(real_regions=RealPhotoRegions(self.photo_root, self.photo_cache))
        return SceneGenerator(backgrounds=backgrounds, pose_sampler=BendMatchedPoses() if self.matched_poses else None)


def _synth_worker(args: tuple[int, list[int], SynthVariant]) -> list[tuple[int, bool, bool, dict[str, np.ndarray] | None]]:
    seed, indices, variant = args
    generator = variant.generator()
    detector = StillImageDetector()
    out = []
    for index in indices:
        spec, image = synth_full_frame(generator, seed, index)
        hand = match_hand(detector.detect(image), spec.joints_2d)
        if hand is None:
            out.append((index, False, False, None))
            continue
        record = crop_hand(image, spec.K, hand, mirror=not spec.is_right)
        record["joints_cam"] = spec.joints_cam.astype(np.float32)
        record["verts_cam"] = spec.verts_cam.astype(np.float32)
        out.append((index, True, hand.right == spec.is_right, record))
    return out


def _write_chunk(path: Path, results: list[tuple[int, bool, bool, dict[str, np.ndarray] | None]]) -> None:
    records = [r for *_, r in results if r is not None]
    arrays: dict[str, np.ndarray] = {
        "all_index": np.array([r[0] for r in results], np.int64),
        "all_found": np.array([r[1] for r in results], bool),
        "all_handed_ok": np.array([r[2] for r in results], bool),
        "index": np.array([r[0] for r in results if r[3] is not None], np.int64),
    }
    if records:
        arrays.update({k: np.stack([r[k] for r in records]) for k in records[0]})
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def _chunks(n: int, chunk: int) -> Iterator[tuple[int, list[int]]]:
    for c, start in enumerate(range(0, n, chunk)):
        yield c, list(range(start, min(n, start + chunk)))


def synth_cache_dir(out: Path, seed: int, variant: SynthVariant = SynthVariant()) -> Path:
    """Folder of one synthetic cache (keyed by the generator fingerprint, the seed and the variant)."""
    from training.synth.testset import generator_fingerprint

    return out / f"synth_{generator_fingerprint()}_seed{seed}{variant.suffix}"


def build_synth(out: Path, seed: int, n: int, workers: int, chunk: int, variant: SynthVariant = SynthVariant()) -> Path:
    """Run MediaPipe over ``n`` synthetic frames of ``seed`` (resumable); returns the cache folder."""
    variant.generator()  # fail here, before any worker starts, when the variant's inputs are missing
    folder = synth_cache_dir(out, seed, variant)
    folder.mkdir(parents=True, exist_ok=True)
    jobs = []
    for c, indices in _chunks(n, chunk):
        path = folder / f"chunk_{c:05d}.npz"
        if not path.is_file():
            # split each chunk over the workers so that chunks finish in order
            parts = [indices[w::workers] for w in range(workers)]
            jobs.append((path, parts))
    t0 = time.perf_counter()
    done = 0
    with mp_proc.get_context("spawn").Pool(workers) as pool:
        for path, parts in jobs:
            results = [r for part in pool.map(_synth_worker, [(seed, p, variant) for p in parts if p]) for r in part]
            results.sort(key=lambda r: r[0])
            _write_chunk(path, results)
            done += len(results)
            rate = done / (time.perf_counter() - t0)
            found = sum(r[1] for r in results) / max(len(results), 1)
            print(f"{path.name}: {len(results)} frames, found {found:.1%}, {rate:.1f} frames/s", flush=True)
    return folder


# --------------------------------------------------------------------------------------------- photos


def list_photos(root: Path) -> list[Path]:
    """Every image under ``root`` (recursive), sorted by relative path."""
    if not root.is_dir():
        raise LabelCacheError(f"photo folder {root} does not exist")
    photos = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not photos:
        raise LabelCacheError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {root}")
    return photos


def photo_key(root: Path, photos: list[Path]) -> str:
    digest = hashlib.sha256()
    for p in photos:
        digest.update(str(p.relative_to(root)).encode() + b"\0")
    return digest.hexdigest()[:12]


def _photo_worker(args: tuple[str, list[tuple[int, str]]]) -> list[tuple[int, bool, bool, dict[str, np.ndarray] | None]]:
    _, items = args
    detector = StillImageDetector()
    out: list[tuple[int, bool, bool, dict[str, np.ndarray] | None]] = []
    for index, path in items:
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            out.append((index, False, False, None))
            continue
        hands = detector.detect(image)
        if not hands:
            out.append((index, False, False, None))
            continue
        K = fov_intrinsics(image.shape[1], image.shape[0])
        for hand in hands:
            out.append((index, True, True, crop_hand(image, K, hand, mirror=not hand.right)))
    return out


def build_photos(out: Path, root: Path, workers: int, chunk: int) -> Path:
    """Run MediaPipe over every photo under ``root`` (resumable); returns the cache folder."""
    photos = list_photos(root)
    folder = out / f"photos_{photo_key(root, photos)}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "files.json").write_text(json.dumps([str(p.relative_to(root)) for p in photos], indent=0), encoding="utf-8")
    t0 = time.perf_counter()
    done = 0
    with mp_proc.get_context("spawn").Pool(workers) as pool:
        for c, indices in _chunks(len(photos), chunk):
            path = folder / f"chunk_{c:05d}.npz"
            if path.is_file():
                continue
            parts = [[(i, str(photos[i])) for i in indices[w::workers]] for w in range(workers)]
            results = [r for part in pool.map(_photo_worker, [("", p) for p in parts if p]) for r in part]
            results.sort(key=lambda r: r[0])
            _write_chunk(path, results)
            done += len(indices)
            print(f"{path.name}: {len(indices)} photos, {sum(r[3] is not None for r in results)} hands, "
                  f"{done / (time.perf_counter() - t0):.1f} photos/s", flush=True)
    return folder


# --------------------------------------------------------------------------------------------- frame report


def _rotation_fit(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Proper rotation R minimising ||R a_i - b_i|| over centred ``(N, 3)`` point sets."""
    a0, b0 = a - a.mean(0), b - b.mean(0)
    u, _, vt = np.linalg.svd(a0.T @ b0)
    d = np.sign(np.linalg.det(vt.T @ u.T))
    return vt.T @ np.diag([1.0, 1.0, d]) @ u.T


def frame_report(n: int, seed: int) -> dict[str, Any]:
    """Measure the frame of MediaPipe's world landmarks against ground truth on ``n`` synthetic frames."""
    from scipy.spatial.transform import Rotation

    from models.mediapipe_frame import hand_length
    from training.synth.scene import SceneGenerator

    generator = SceneGenerator()
    detector = StillImageDetector()
    rotvecs, err_cam, err_virt, err_fit, len_mp, len_gt, centroid = [], [], [], [], [], [], []
    for index in range(n):
        spec, image = synth_full_frame(generator, seed, index)
        hand = match_hand(detector.detect(image), spec.joints_2d)
        if hand is None:
            continue
        record = crop_hand(image, spec.K, hand, mirror=not spec.is_right)
        world_rel = hand.world.astype(np.float64) - hand.world[0]
        gt_rel = spec.joints_cam - spec.joints_cam[0]
        rotation = _rotation_fit(world_rel, gt_rel)
        rotvecs.append(np.degrees(Rotation.from_matrix(rotation).as_rotvec()))
        err_cam.append(np.linalg.norm(world_rel - gt_rel, axis=1).mean())
        gt_virt = gt_rel @ record["virt_from_cam"].astype(np.float64).T
        err_virt.append(np.linalg.norm(record["mp_world_virt"] - gt_virt, axis=1).mean())
        fitted = (world_rel - world_rel.mean(0)) @ rotation.T
        err_fit.append(np.linalg.norm(fitted - (gt_rel - gt_rel.mean(0)), axis=1).mean())
        len_mp.append(float(hand_length(hand.world.astype(np.float64))))
        len_gt.append(float(hand_length(spec.joints_cam)))
        centroid.append(hand.world.mean(0))
    rv = np.array(rotvecs)
    return {
        "frames": n,
        "hands_matched": len(rv),
        "rotation_world_to_camera_deg_mean_xyz": rv.mean(0).round(2).tolist(),
        "rotation_world_to_camera_deg_std_xyz": rv.std(0).round(2).tolist(),
        "wrist_relative_error_mm_camera_axes": round(1000 * float(np.mean(err_cam)), 2),
        "wrist_relative_error_mm_virtual_axes": round(1000 * float(np.mean(err_virt)), 2),
        "error_after_best_rotation_mm": round(1000 * float(np.mean(err_fit)), 2),
        "hand_length_mediapipe_m_mean": round(float(np.mean(len_mp)), 4),
        "hand_length_truth_m_mean": round(float(np.mean(len_gt)), 4),
        "hand_length_correlation": round(float(np.corrcoef(len_mp, len_gt)[0, 1]), 3),
        "hand_length_ratio_median": round(float(np.median(np.array(len_mp) / np.array(len_gt))), 3),
        "world_centroid_m_mean": np.mean(centroid, axis=0).round(4).tolist(),
    }


def _palm_frames(joints: np.ndarray) -> np.ndarray:
    """``(N, 3, 3)`` rows = hand-local axes (x: index MCP -> little MCP, y: wrist -> middle MCP, z: x cross y)."""
    y = joints[:, 9] - joints[:, 0]
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    x = joints[:, 17] - joints[:, 5]
    x -= (x * y).sum(1, keepdims=True) * y
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return np.stack([x, y, np.cross(x, y)], axis=1)


def offset_report(folder: Path) -> dict[str, Any]:
    """Per-joint systematic offset between MediaPipe's landmarks and our joints, from a synthetic cache.

    2D: each MediaPipe landmark is back-projected (crop camera) to the depth of the true joint; the
    offset to the true joint is expressed in the hand's local frame (``_palm_frames``) and averaged over
    hands (a systematic offset survives the averaging, noise does not). 3D: the same for MediaPipe's
    world landmarks after a best rotation onto the true wrist-relative joints. Millimetres.
    """
    from app.detection import NUM_LANDMARKS
    from models.hand.anatomy import JOINT_NAMES

    with_gt = [c for c in sorted(folder.glob("chunk_*.npz"))]
    parts: dict[str, list[np.ndarray]] = {}
    for chunk in with_gt:
        with np.load(chunk) as data:
            if "joints_cam" not in data.files:
                continue
            for key in ("mp_uv_crop", "mp_world_virt", "K_virt", "virt_from_cam", "joints_cam"):
                parts.setdefault(key, []).append(data[key].astype(np.float64))
    if not parts:
        raise LabelCacheError(f"{folder} holds no synthetic hands with ground truth")
    a = {k: np.concatenate(v) for k, v in parts.items()}
    joints_virt = np.einsum("nij,nkj->nki", a["virt_from_cam"], a["joints_cam"])
    k = a["K_virt"]
    depth = joints_virt[..., 2]
    x = (a["mp_uv_crop"][..., 0] - k[:, None, 0, 2]) / k[:, None, 0, 0] * depth
    y = (a["mp_uv_crop"][..., 1] - k[:, None, 1, 2]) / k[:, None, 1, 1] * depth
    offsets_2d = np.stack([x, y, depth], axis=-1) - joints_virt
    frames = _palm_frames(joints_virt)
    local_2d = np.einsum("nij,nkj->nki", frames, offsets_2d)
    rel = joints_virt - joints_virt[:, :1]
    offsets_3d = []
    for i in range(len(rel)):
        rotation = _rotation_fit(a["mp_world_virt"][i], rel[i])
        fitted = (a["mp_world_virt"][i] - a["mp_world_virt"][i].mean(0)) @ rotation.T + rel[i].mean(0)
        offsets_3d.append(fitted - rel[i])
    local_3d = np.einsum("nij,nkj->nki", frames, np.array(offsets_3d))
    rows = []
    for j in range(NUM_LANDMARKS):
        mean2 = 1000 * local_2d[:, j].mean(0)
        mean3 = 1000 * local_3d[:, j].mean(0)
        rows.append({"joint": JOINT_NAMES[j],
                     "offset_2d_mm_xyz_local": mean2.round(1).tolist(), "offset_2d_mm": round(float(np.linalg.norm(mean2[:2])), 1),
                     "scatter_2d_mm": round(float(1000 * np.linalg.norm(offsets_2d[:, j, :2], axis=1).mean()), 1),
                     "offset_3d_mm_xyz_local": mean3.round(1).tolist(), "offset_3d_mm": round(float(np.linalg.norm(mean3)), 1)})
    return {"hands": int(len(rel)), "frame": "hand-local: x index MCP -> little MCP, y wrist -> middle MCP, z palm normal",
            "joints": rows}


def pose_report(synth: Path, photos: Path) -> dict[str, Any]:
    """How far our synthetic pose distribution is from the poses in real photos, both seen through
    MediaPipe's world landmarks (same estimator on both sides): per finger joint the 1D Wasserstein
    distance between the bend-angle distributions (degrees), its mean, and the mean bends."""
    from scipy.stats import wasserstein_distance

    from training.synth.real_priors import cache_arrays, flexion_angles

    def angles(folder: Path, key: str) -> np.ndarray:
        try:
            return flexion_angles(cache_arrays(folder, key).astype(np.float64))
        except ValueError as err:
            raise LabelCacheError(str(err)) from err

    real = angles(photos, "mp_world")
    ours_mp = angles(synth, "mp_world")
    ours_true = angles(synth, "joints_cam")
    per_joint = [wasserstein_distance(real[:, j], ours_mp[:, j]) for j in range(real.shape[1])]
    return {
        "hands_real": int(len(real)), "hands_synthetic": int(len(ours_mp)),
        "wasserstein_deg_per_joint": np.round(per_joint, 1).tolist(),
        "wasserstein_deg_mean": round(float(np.mean(per_joint)), 2),
        "mean_bend_deg_real": round(float(real.mean()), 1),
        "mean_bend_deg_synthetic_mediapipe": round(float(ours_mp.mean()), 1),
        "mean_bend_deg_synthetic_truth": round(float(ours_true.mean()), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.mediapipe_labels", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_synth = sub.add_parser("synth", help="MediaPipe on full synthetic frames")
    p_synth.add_argument("--seed", type=int, default=0, help="dataset seed (training.synth.testset.TEST_SEED for the test set)")
    p_synth.add_argument("--n", type=int, default=12000)
    p_synth.add_argument("--real-backgrounds", type=Path, default=None, metavar="PHOTOS_CACHE",
                         help="hand-free regions of the real room photos as backgrounds (give the photos_* cache)")
    p_synth.add_argument("--matched-poses", action="store_true",
                         help="poses re-weighted towards real photos' finger bends (assets/real_pose_bends.json)")
    p_synth.add_argument("--photo-root", type=Path, default=REPO_ROOT.parent / "shared" / "real" / "photos")
    p_photos = sub.add_parser("photos", help="MediaPipe on a folder of real photos")
    p_photos.add_argument("--root", type=Path, default=REPO_ROOT.parent / "shared" / "real" / "photos")
    for p in (p_synth, p_photos):
        p.add_argument("--out", type=Path, default=DEFAULT_OUT)
        p.add_argument("--workers", type=int, default=2)
        p.add_argument("--chunk", type=int, default=500)
    p_frame = sub.add_parser("frame-report", help="measure the frame of MediaPipe's world landmarks")
    p_frame.add_argument("--n", type=int, default=200)
    p_frame.add_argument("--seed", type=int, default=4242)
    p_offset = sub.add_parser("offset-report", help="per-joint systematic offset of MediaPipe's landmarks vs ours")
    p_offset.add_argument("--cache", type=Path, required=True, help="a synth_* cache folder")
    p_pose = sub.add_parser("pose-report", help="synthetic vs real pose distribution (bend angles)")
    p_pose.add_argument("--synth", type=Path, required=True, help="a synth_* cache folder")
    p_pose.add_argument("--photos", type=Path, required=True, help="a photos_* cache folder")
    args = parser.parse_args(argv)
    try:
        if args.command == "synth":
            variant = SynthVariant(real_backgrounds=args.real_backgrounds is not None, matched_poses=args.matched_poses,
                                   photo_root=args.photo_root, photo_cache=args.real_backgrounds)
            print(build_synth(args.out, args.seed, args.n, max(1, args.workers), args.chunk, variant))
        elif args.command == "photos":
            print(build_photos(args.out, args.root, max(1, args.workers), args.chunk))
        elif args.command == "pose-report":
            print(json.dumps(pose_report(args.synth, args.photos), indent=1))
        elif args.command == "offset-report":
            print(json.dumps(offset_report(args.cache), indent=1))
        else:
            print(json.dumps(frame_report(args.n, args.seed), indent=2))
    except (LabelCacheError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
