"""Realism check: does MediaPipe find our synthetic hands? `python -m training.synth.realism --n 300`.

Runs MediaPipe Hands 0.10.21 (`mediapipe.solutions.hands`, static_image_mode=True, up to 2 hands) on
full synthetic frames and reports:
- detection rate: fraction of frames where MediaPipe returns a hand whose landmarks match ours
  (median landmark distance below 35 % of our hand box size);
- 2D error of the matched landmarks against our labels: mean per-joint distance in pixels and as a
  fraction of the hand box size (max side of the tight box of our 21 joints), median and mean;
- handedness agreement (MediaPipe assumes mirrored input: on our unmirrored frames its "Left" is the
  person's right hand).
Writes a picture grid of sample frames to assets/readme/synthetic_samples.png (and crops to
assets/readme/synthetic_crops.png) and, with --json, the numbers.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

from models.paths import ASSETS_DIR
from training.synth.dataset import SynthHandDataset
from training.synth.scene import SceneGenerator, SynthFrame

REALISM_SEED: int = 777
MATCH_FRACTION: float = 0.35


def _hand_size(joints_2d: np.ndarray) -> float:
    return float(np.ptp(joints_2d, axis=0).max())


def _fit(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Letterbox a BGR image into (height, width)."""
    scale = min(width / image.shape[1], height / image.shape[0])
    resized = cv2.resize(image, (int(image.shape[1] * scale), int(image.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    canvas = np.zeros((height, width, 3), np.uint8)
    y0 = (height - resized.shape[0]) // 2
    x0 = (width - resized.shape[1]) // 2
    canvas[y0 : y0 + resized.shape[0], x0 : x0 + resized.shape[1]] = resized
    return canvas


def sample_grid(frames: list[SynthFrame], cols: int = 4, tile: tuple[int, int] = (320, 240)) -> np.ndarray:
    """BGR uint8 grid of the first rows*cols frames."""
    rows = len(frames) // cols
    tiles = [_fit(f.image_bgr, *tile) for f in frames[: rows * cols]]
    return np.concatenate([np.concatenate(tiles[r * cols : (r + 1) * cols], axis=1) for r in range(rows)], axis=0)


def crop_grid(num: int = 16, cols: int = 8, seed: int = REALISM_SEED) -> np.ndarray:
    """BGR uint8 grid of training crops (128 px, shown at 160 px)."""
    dataset = SynthHandDataset(seed=seed, two_views=False)
    tiles = [cv2.resize(dataset[i][0]["crop_rgb"][:, :, ::-1], (160, 160), interpolation=cv2.INTER_LINEAR) for i in range(num)]
    rows = num // cols
    return np.concatenate([np.concatenate(tiles[r * cols : (r + 1) * cols], axis=1) for r in range(rows)], axis=0)


def write_compact_png(path: Path, image_bgr: np.ndarray, level_step: int = 4) -> None:
    """Write a BGR uint8 picture as a small PNG: values rounded to multiples of `level_step` (invisible
    for noisy camera-like images, but it lets PNG compress the sensor noise) at maximum compression."""
    quantised = np.clip(np.round(image_bgr.astype(np.float32) / level_step) * level_step, 0, 255).astype(np.uint8)
    if not cv2.imwrite(str(path), quantised, [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise OSError(f"could not write {path}")


def run_mediapipe(frames: list[SynthFrame]) -> dict[str, float]:
    """Detection rate and 2D error of MediaPipe Hands on the frames (see module doc)."""
    import mediapipe as mp

    detected = 0
    errors_px: list[float] = []
    errors_rel: list[float] = []
    handedness_ok = 0
    with mp.solutions.hands.Hands(static_image_mode=True, max_num_hands=2, model_complexity=1, min_detection_confidence=0.5) as hands:
        for frame in frames:
            h, w = frame.image_bgr.shape[:2]
            result = hands.process(cv2.cvtColor(frame.image_bgr, cv2.COLOR_BGR2RGB))
            if not result.multi_hand_landmarks:
                continue
            size = _hand_size(frame.joints_2d)
            best: tuple[float, np.ndarray, str] | None = None
            for landmarks, handed in zip(result.multi_hand_landmarks, result.multi_handedness):
                pts = np.array([[lm.x * w, lm.y * h] for lm in landmarks.landmark])
                dist = np.linalg.norm(pts - frame.joints_2d, axis=1)
                if best is None or np.median(dist) < np.median(best[1]):
                    best = (float(np.median(dist)), dist, handed.classification[0].label)
            if best is None or best[0] > MATCH_FRACTION * size:
                continue
            detected += 1
            errors_px.append(float(best[1].mean()))
            errors_rel.append(float(best[1].mean() / size))
            # Unmirrored frame: MediaPipe's "Left" is the person's right hand.
            handedness_ok += int((best[2] == "Left") == frame.is_right)
    n = len(frames)
    return {
        "frames": n,
        "detection_rate": detected / n,
        "mean_joint_error_px_median": float(np.median(errors_px)) if errors_px else float("nan"),
        "mean_joint_error_px_mean": float(np.mean(errors_px)) if errors_px else float("nan"),
        "mean_joint_error_rel_median": float(np.median(errors_rel)) if errors_rel else float("nan"),
        "mean_joint_error_rel_mean": float(np.mean(errors_rel)) if errors_rel else float("nan"),
        "handedness_agreement": handedness_ok / max(detected, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="MediaPipe detection rate and 2D error on synthetic frames.")
    parser.add_argument("--n", type=int, default=300, help="number of synthetic frames")
    parser.add_argument("--seed", type=int, default=REALISM_SEED)
    parser.add_argument("--no-pictures", action="store_true", help="do not write the README pictures")
    parser.add_argument("--json", type=Path, default=None, help="write the numbers to this JSON file")
    args = parser.parse_args()
    generator = SceneGenerator()
    t0 = time.perf_counter()
    frames = [generator.generate(np.random.SeedSequence([args.seed, i]).generate_state(1)[0]) for i in range(args.n)]
    t1 = time.perf_counter()
    stats = run_mediapipe(frames)
    t2 = time.perf_counter()
    print(f"generated {args.n} frames in {t1 - t0:.1f} s; MediaPipe in {t2 - t1:.1f} s")
    print(f"MediaPipe detection rate: {100 * stats['detection_rate']:.1f} % of {args.n} frames (target >= 80 %)")
    print(
        f"2D error of matched hands vs our labels: mean per-joint {stats['mean_joint_error_px_median']:.1f} px median "
        f"({stats['mean_joint_error_px_mean']:.1f} px mean), {100 * stats['mean_joint_error_rel_median']:.1f} % of the hand box "
        f"median ({100 * stats['mean_joint_error_rel_mean']:.1f} % mean)"
    )
    print(f"handedness agreement (unmirrored frames): {100 * stats['handedness_agreement']:.1f} %")
    if not args.no_pictures:
        out_dir = ASSETS_DIR / "readme"
        out_dir.mkdir(parents=True, exist_ok=True)
        write_compact_png(out_dir / "synthetic_samples.png", sample_grid(frames[:12]))
        write_compact_png(out_dir / "synthetic_crops.png", crop_grid())
        print(f"wrote {out_dir / 'synthetic_samples.png'} and {out_dir / 'synthetic_crops.png'}")
    if args.json is not None:
        args.json.write_text(json.dumps(stats, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
