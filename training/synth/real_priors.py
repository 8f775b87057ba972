"""Statistics of real photos for the synthetic generator: hand-free background regions and a pose
distribution matched to the poses people show in real photos.

Zhao et al. (CVPR 2025, "Analyzing the synthetic-to-real domain gap in 3D hand pose estimation") measure
the largest synthetic-to-real gains from backgrounds, image statistics, the pose distribution and
occlusion. Two of those come from ``../shared/real/photos/webcam_hands`` (Apache-2.0, see its
SOURCES.md) through MediaPipe's labels (``python -m app.mediapipe_labels photos``):

- :class:`RealPhotoRegions`: rectangles of real room photos that contain no detected hand (every
  detected hand's landmark box, widened, is kept out), as backgrounds behind the synthetic hand and arm.
  Photos of the held-out split (``training.mp_data.photo_is_held_out``) are never used. A hand that
  MediaPipe missed can still appear in a region.
- :class:`BendMatchedPoses`: our pose sampler (``models.hand.poses.sample_poses``) re-weighted so that
  the 15 finger bend angles follow the bends of MediaPipe's world landmarks on the real photos
  (sampling-importance-resampling with per-joint histogram ratios, clipped). The prior's histograms are
  a small file, ``assets/real_pose_bends.json``, written by ``python -m training.synth.real_priors``.

Nothing here is drawn unless a generator is built with these objects; the default synthetic data (and
so the synthetic test set) is unchanged.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from models.hand import HandModel
from models.hand.poses import sample_poses
from models.paths import REPO_ROOT

FLEXION_TRIPLES: tuple[tuple[int, int, int], ...] = tuple(
    (a, b, c) for finger in range(5) for a, b, c in (
        (0, 1 + 4 * finger, 2 + 4 * finger), (1 + 4 * finger, 2 + 4 * finger, 3 + 4 * finger),
        (2 + 4 * finger, 3 + 4 * finger, 4 + 4 * finger))
)
"""(parent, joint, child) of the 15 finger joints whose bend angle describes a hand pose (rotation-free)."""

BEND_BINS_DEG: np.ndarray = np.arange(0.0, 185.0, 5.0)
"""Histogram bin edges of bend angles, degrees."""
BEND_PRIOR_PATH: Path = REPO_ROOT / "assets" / "real_pose_bends.json"
REAL_BACKGROUND_FOLDER: str = "webcam_hands"
"""The photo set whose rooms become backgrounds (the sign-digit crops are hands on white: no use)."""
HAND_BOX_MARGIN: float = 0.6
"""Each detected hand's landmark box is widened by this fraction of its size on every side."""
RATIO_CLIP: tuple[float, float] = (0.25, 4.0)
"""Per-joint density ratios are clipped to this range before they are multiplied."""
CANDIDATES_PER_POSE: int = 48


def flexion_angles(joints: np.ndarray) -> np.ndarray:
    """``(N, 15)`` bend angles in degrees (0 = straight) of ``(N, 21, 3)`` joints (any unit, any frame)."""
    out = []
    for a, b, c in FLEXION_TRIPLES:
        u = joints[:, b] - joints[:, a]
        v = joints[:, c] - joints[:, b]
        cos = (u * v).sum(-1) / np.maximum(np.linalg.norm(u, axis=-1) * np.linalg.norm(v, axis=-1), 1e-9)
        out.append(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))
    return np.stack(out, axis=1)


def _histograms(angles: np.ndarray) -> np.ndarray:
    """``(15, bins)`` normalised histograms (add-one smoothed) of ``(N, 15)`` bend angles."""
    rows = [np.histogram(angles[:, j], bins=BEND_BINS_DEG)[0].astype(np.float64) + 1.0 for j in range(angles.shape[1])]
    return np.stack([r / r.sum() for r in rows])


def _bin_of(angles: np.ndarray) -> np.ndarray:
    return np.clip(np.digitize(angles, BEND_BINS_DEG) - 1, 0, len(BEND_BINS_DEG) - 2)


def estimated_distance(real_bends: np.ndarray, synth_mp_bends: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Mean over the 15 joints of the 1D Wasserstein distance (degrees) between real and (weighted)
    synthetic bend angles, both measured on MediaPipe's world landmarks."""
    from scipy.stats import wasserstein_distance

    return float(np.mean([wasserstein_distance(real_bends[:, j], synth_mp_bends[:, j], v_weights=weights)
                          for j in range(real_bends.shape[1])]))


def log_ratio_table(real_hist: np.ndarray, synth_hist: np.ndarray, beta: float) -> np.ndarray:
    """``(15, bins)`` tempered, clipped per-joint log density ratios real / synthetic."""
    return beta * np.log(np.clip(real_hist / synth_hist, *RATIO_CLIP))


def pose_weights(log_ratio: np.ndarray, bends: np.ndarray) -> np.ndarray:
    """``(N,)`` unnormalised weights (max 1) of ``(N, 15)`` true bend angles under a log-ratio table."""
    log_w = log_ratio[np.arange(bends.shape[1])[None, :], _bin_of(bends)].sum(axis=1)
    return np.exp(log_w - log_w.max())


def build_bend_prior(real_mp: np.ndarray, synth_truth: np.ndarray, synth_mp: np.ndarray,
                     betas: tuple[float, ...] = (0.1, 0.2, 0.35, 0.5, 0.75, 1.0)) -> dict[str, object]:
    """The content of :data:`BEND_PRIOR_PATH`.

    Args:
        real_mp: ``(N, 21, 3)`` MediaPipe world landmarks of real hands (training split).
        synth_truth, synth_mp: ``(M, 21, 3)`` true joints and MediaPipe world landmarks of the same
            synthetic hands (a ``synth_*`` cache of the default generator).

    The ratio is taken between the MediaPipe-measured histograms (the same estimator on both sides)
    and applied to the true bends of new poses. The temperature ``beta`` is chosen by the importance-
    weighted distance on the synthetic cache: weighting its hands by their true bends estimates what a
    cache drawn with the prior would measure, without rendering one (product weights over 15 joints
    overshoot when untempered, because the joints are correlated).
    """
    real = flexion_angles(real_mp.astype(np.float64))
    truth = flexion_angles(synth_truth.astype(np.float64))
    measured = flexion_angles(synth_mp.astype(np.float64))
    real_hist, synth_hist = _histograms(real), _histograms(measured)
    scores = {beta: estimated_distance(real, measured, pose_weights(log_ratio_table(real_hist, synth_hist, beta), truth))
              for beta in betas}
    best = min(scores, key=scores.get)  # type: ignore[arg-type]
    return {
        "what": "finger bend-angle histograms (15 joints, FLEXION_TRIPLES) of MediaPipe's world landmarks on the "
                "real photos (training split) and on synthetic frames of the default generator",
        "source": "../shared/real/photos (Apache-2.0; SubhiH/HandsDataset, ardamavi/Sign-Language-Digits-Dataset) "
                  "through app.mediapipe_labels photos",
        "bins_deg": BEND_BINS_DEG.tolist(),
        "hands_real": int(len(real)),
        "hands_synthetic": int(len(truth)),
        "beta": best,
        "estimated_distance_deg": {"before": round(estimated_distance(real, measured), 2),
                                   **{f"beta_{b}": round(v, 2) for b, v in scores.items()}},
        "real": np.round(real_hist, 6).tolist(),
        "synthetic": np.round(synth_hist, 6).tolist(),
    }


class BendMatchedPoses:
    """Pose sampler whose finger bends follow a real-photo prior (see the module docstring).

    ``__call__(rng)`` returns one ``(22,)`` float32 pose in radians: :data:`CANDIDATES_PER_POSE` candidates
    from ``sample_poses``, posed with the hand model, weighted by :func:`pose_weights` of their true
    bends under the prior's tempered ratio table, one drawn by weight.
    """

    def __init__(self, prior_path: Path = BEND_PRIOR_PATH, hand_model: HandModel | None = None) -> None:
        try:
            prior = json.loads(Path(prior_path).read_text(encoding="utf-8"))
            real, synth = np.asarray(prior["real"], np.float64), np.asarray(prior["synthetic"], np.float64)
            beta = float(prior["beta"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ValueError(f"cannot read the pose prior {prior_path}: {err}; "
                             "rebuild it with `python -m training.synth.real_priors`") from err
        if real.shape != synth.shape or real.shape != (len(FLEXION_TRIPLES), len(BEND_BINS_DEG) - 1):
            raise ValueError(f"pose prior {prior_path} has histograms of shape {real.shape}/{synth.shape}")
        self.log_ratio = log_ratio_table(real, synth, beta)
        self.hand = hand_model if hand_model is not None else HandModel.default()

    def __call__(self, rng: np.random.Generator) -> np.ndarray:
        candidates = sample_poses(CANDIDATES_PER_POSE, rng)
        with torch.no_grad():
            joints = self.hand(torch.as_tensor(candidates, dtype=torch.float32)).joints.numpy()
        w = pose_weights(self.log_ratio, flexion_angles(joints.astype(np.float64)))
        return candidates[int(rng.choice(len(w), p=w / w.sum()))]


@dataclass(frozen=True)
class _PhotoBoxes:
    path: Path
    boxes: np.ndarray  # (K, 4) x0, y0, x1, y1 pixels, widened


class RealPhotoRegions:
    """Hand-free rectangles of real room photos (see the module docstring).

    Args:
        photo_root: ``../shared/real/photos``.
        photo_cache: a ``photos_*`` folder of ``app.mediapipe_labels`` made from that root (``files.json``
            and the detected hands' ``mp_uv_img``).
    """

    def __init__(self, photo_root: Path, photo_cache: Path) -> None:
        from training.mp_data import photo_is_held_out

        files = json.loads((Path(photo_cache) / "files.json").read_text(encoding="utf-8"))
        boxes: dict[int, list[np.ndarray]] = {}
        for chunk in sorted(Path(photo_cache).glob("chunk_*.npz")):
            with np.load(chunk) as data:
                for index, uv in zip(data["index"], data["mp_uv_img"]):
                    lo, hi = uv.min(axis=0), uv.max(axis=0)
                    pad = HAND_BOX_MARGIN * (hi - lo).max()
                    boxes.setdefault(int(index), []).append(np.concatenate([lo - pad, hi + pad]))
        self.photos: list[_PhotoBoxes] = [
            _PhotoBoxes(Path(photo_root) / name, np.array(boxes.get(i, []), np.float64).reshape(-1, 4))
            for i, name in enumerate(files)
            if name.startswith(REAL_BACKGROUND_FOLDER + "/") and not photo_is_held_out(name)
        ]
        if not self.photos:
            raise ValueError(f"no {REAL_BACKGROUND_FOLDER}/ photos of the training split in {photo_cache}")

    def __len__(self) -> int:
        return len(self.photos)

    def sample(self, rng: np.random.Generator, width: int, height: int, photos: int = 4, tries: int = 30) -> np.ndarray | None:
        """A ``(height, width, 3)`` uint8 BGR region that overlaps no widened hand box, resized: up to
        ``photos`` random photos, ``tries`` random windows each (15-70 % of the photo's height); None when
        every window touched a hand (the caller then draws another kind of background)."""
        aspect = width / height
        for _ in range(photos):
            item = self.photos[int(rng.integers(len(self.photos)))]
            image = cv2.imread(str(item.path), cv2.IMREAD_COLOR)
            if image is None:
                continue
            ph, pw = image.shape[:2]
            b = item.boxes
            for _ in range(tries):
                h = max(8, int(ph * rng.uniform(0.15, 0.7)))
                w = int(round(h * aspect))
                if w > pw:
                    w, h = pw, int(round(pw / aspect))
                x0, y0 = int(rng.integers(0, pw - w + 1)), int(rng.integers(0, ph - h + 1))
                if len(b) and ((b[:, 0] < x0 + w) & (b[:, 2] > x0) & (b[:, 1] < y0 + h) & (b[:, 3] > y0)).any():
                    continue
                region = image[y0:y0 + h, x0:x0 + w]
                if rng.random() < 0.5:
                    region = region[:, ::-1]
                return cv2.resize(np.ascontiguousarray(region), (width, height), interpolation=cv2.INTER_LINEAR)
        return None


def cache_arrays(folder: Path, key: str, training_photos_only: bool = False) -> np.ndarray:
    """One per-hand array of an ``app.mediapipe_labels`` cache folder (``key`` of every chunk that has
    detected hands, concatenated); ``training_photos_only``: a photo cache's hands outside the held-out
    split (``training.mp_data.photo_is_held_out``).

    Raises:
        ValueError: no chunk of ``folder`` holds ``key``.
    """
    from training.mp_data import photo_is_held_out

    files = json.loads((folder / "files.json").read_text(encoding="utf-8")) if training_photos_only else None
    rows = []
    for chunk in sorted(folder.glob("chunk_*.npz")):
        with np.load(chunk) as data:
            if key not in data.files:
                continue  # a chunk in which no hand was found
            values = data[key]
            if files is not None:
                values = values[np.array([not photo_is_held_out(files[int(i)]) for i in data["index"]], bool)]
            rows.append(values)
    if not rows:
        raise ValueError(f"{folder} has no {key}")
    return np.concatenate(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m training.synth.real_priors",
                                     description="write the real-photo pose prior (assets/real_pose_bends.json)")
    parser.add_argument("--photos", type=Path, required=True, help="a photos_* cache of app.mediapipe_labels")
    parser.add_argument("--synth", type=Path, required=True, help="a synth_* cache of the default generator")
    parser.add_argument("--out", type=Path, default=BEND_PRIOR_PATH)
    args = parser.parse_args(argv)
    prior = build_bend_prior(cache_arrays(args.photos, "mp_world", training_photos_only=True),
                             cache_arrays(args.synth, "joints_cam"), cache_arrays(args.synth, "mp_world"))
    args.out.write_text(json.dumps(prior) + "\n", encoding="utf-8")
    print(f"wrote {args.out}: {prior['hands_real']} real hands, beta {prior['beta']}, "
          f"estimated distance {prior['estimated_distance_deg']}")


if __name__ == "__main__":
    main()
