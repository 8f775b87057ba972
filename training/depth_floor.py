"""How far the wrist lands from its true place when DGP solves against MediaPipe's 2D landmarks with a
perfect hand: the floor of the app's camera-space error on synthetic frames.

    python -m training.depth_floor --cache data/mediapipe_labels/synth_7d6754d556a0_seed1000003 \
        --out runs/depth_floor

HandDGP (Valassakis and Garcia-Hernando, ECCV 2024) finds the hand's translation as the one that makes
the root-relative 3D joints project onto 2D joints. The app hands it MediaPipe's 2D landmarks, so even
the true 3D shape at the true size inherits MediaPipe's 2D error: a 2D skeleton drawn 5 % too small
puts the hand about 5 % too far away. This command solves DGP (``models.dgp.solve_translation``, equal
weights) on every hand of a synthetic label cache (``python -m app.mediapipe_labels synth``) with

- the true shape and the true 2D joints (a check: the error must vanish),
- the true shape and MediaPipe's 2D landmarks,
- the same with robust weights (Huber, iteratively re-weighted; threshold ``--huber-px`` crop pixels),
- MediaPipe's world landmarks scaled to the true hand length and MediaPipe's 2D landmarks,
- with ``--weights``: the true shape and the network's own 2D joints (image-only cue), and the true shape
  and the best per-hand-constant blend of the two 2D sources (``(1 - w) * MediaPipe + w * network``, the
  ``w`` of 0, 0.1, .., 1 that does best on these very hands: a floor for any such average),

and reports the wrist's error (mean, median, 90th percentile), the mean absolute depth error and the
depth bias (millimetres), and how MediaPipe's 2D skeleton's spread compares with the true one's.

A second table is the floor when the hand's size is not given. One image fixes a hand's shape only up to
scale: the same picture shows a small hand near the camera or a large one further away, and DGP's
depth scales with the size the mesh is given. So it solves again with the true shape drawn at one hand
length for every hand, the median true length of the cache (no single length does better in the mean
absolute log error), against the true 2D joints (the cost of not knowing the size alone) and against
MediaPipe's 2D landmarks (both costs together). It also reports how much the true lengths spread, and
whether anything the app has reads the size off the image at all: the correlation of the log hand
length of MediaPipe's world landmarks (and, with ``--weights``, of the network's predicted length under
the fused cue, size not given) with the log true length. Our generator draws the hand's overall scale
independently of everything else in the scene, and a perspective camera sees a hand scaled by s at s
times the depth exactly as it sees the original, so on these frames both must be near 0.
Frames: every point in the crop's virtual camera (``virt_from_cam``), pixels of the rectified crop.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from models.checkpoint import load_checkpoint
from models.dgp import solve_translation
from models.errors import NetworkError
from models.mediapipe_frame import hand_length
from training.mp_data import CueCache, CueDataError, CueDataset, collate_cue_samples, load_cue_cache
from training.train_fused import CUES, forward_batch


def _project(points: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    uvw = points @ K.transpose(1, 2)
    return uvw[..., :2] / uvw[..., 2:3]


def robust_translation(points_rel: torch.Tensor, points_2d: torch.Tensor, K: torch.Tensor, huber_px: float,
                       iterations: int = 5) -> torch.Tensor:
    """DGP translation ``(B, 3)`` with Huber weights re-estimated from the reprojection residuals
    (``iterations`` rounds); arguments as :func:`models.dgp.solve_translation`."""
    weights = torch.ones(points_rel.shape[:2], dtype=points_rel.dtype)
    translation = solve_translation(points_rel, points_2d, K, weights).translation
    for _ in range(iterations):
        residual = (_project(points_rel + translation.unsqueeze(1), K) - points_2d).norm(dim=-1)
        weights = torch.where(residual < huber_px, torch.ones_like(residual), huber_px / residual.clamp_min(1e-9)).sqrt()
        translation = solve_translation(points_rel, points_2d, K, weights).translation
    return translation


class NetworkCues(NamedTuple):
    """What one checkpoint says about every hand of a cache, in the cache's order: joints_2d ``(N, 21, 2)``
    float64 crop px, its own 2D joints (the encoder's, the same under every cue); hand_length ``(N,)``
    float64 metres, its predicted hand length under the fused cue with the size not given."""

    joints_2d: torch.Tensor
    hand_length: torch.Tensor


@torch.no_grad()
def network_cues(weights: Path, cache: CueCache, batch_size: int = 64) -> NetworkCues:
    """Run the checkpoint ``weights`` on every hand of ``cache`` (see :class:`NetworkCues`)."""
    model = load_checkpoint(weights).eval()
    dataset = CueDataset(cache, None, augment=False)
    joints, lengths = [], []
    for start in range(0, len(dataset), batch_size):
        batch = collate_cue_samples([dataset[i] for i in range(start, min(len(dataset), start + batch_size))])
        cues = torch.full((len(batch),), CUES.index("fused"), dtype=torch.long)
        out = forward_batch(model, batch, cues, None)
        joints.append(out.joints_2d_pred.double())
        lengths.append(out.hand_length_used.double())
    return NetworkCues(torch.cat(joints), torch.cat(lengths))


def log_correlation(estimate: torch.Tensor, truth: torch.Tensor) -> float:
    """Pearson correlation of ``log(estimate)`` with ``log(truth)`` (both ``(N,)`` > 0); 0 when either is constant."""
    a, b = torch.log(estimate.double()), torch.log(truth.double())
    a, b = a - a.mean(), b - b.mean()
    denominator = float(a.norm() * b.norm())
    return float((a * b).sum()) / denominator if denominator > 0.0 else 0.0


BLEND_STEPS: int = 11  # network weights 0, 0.1, .., 1 for the best-blend row


def _row(translation: torch.Tensor, root: torch.Tensor) -> dict[str, float]:
    error = (translation - root).norm(dim=-1).numpy() * 1000.0
    depth = (translation[:, 2] - root[:, 2]).numpy() * 1000.0
    return {"root_mean_mm": float(error.mean()), "root_median_mm": float(np.median(error)),
            "root_p90_mm": float(np.percentile(error, 90)), "depth_abs_mean_mm": float(np.abs(depth).mean()),
            "depth_bias_mm": float(depth.mean())}


def depth_floor(cache: CueCache, huber_px: float = 2.0, network: NetworkCues | None = None) -> dict[str, Any]:
    """The report described in the module docstring, for every hand of a synthetic ``cache``;
    ``network`` (:func:`network_cues`) adds the network's 2D joints and its size estimate."""
    if not cache.has_gt:
        raise CueDataError(f"{cache.folder} has no ground truth (a photo cache?); pass a synthetic label cache")
    a = cache.arrays
    virt_from_cam = torch.from_numpy(a["virt_from_cam"]).double()
    K = torch.from_numpy(a["K_virt"]).double()
    joints = torch.from_numpy(a["joints_cam"]).double() @ virt_from_cam.transpose(1, 2)
    root, rel = joints[:, 0], joints - joints[:, :1]
    true_2d = _project(joints, K)
    mp_2d = torch.from_numpy(a["mp_uv_crop"]).double()
    mp_world_raw = torch.from_numpy(a["mp_world_virt"]).double()
    mp_world_raw = mp_world_raw - mp_world_raw[:, :1]
    mp_world = mp_world_raw * (hand_length(rel) / hand_length(mp_world_raw)).reshape(-1, 1, 1)
    equal = torch.ones(rel.shape[:2], dtype=torch.float64)
    rows = {
        "true shape, true 2D joints": _row(solve_translation(rel, true_2d, K, equal).translation, root),
        "true shape, MediaPipe 2D": _row(solve_translation(rel, mp_2d, K, equal).translation, root),
        f"true shape, MediaPipe 2D, Huber {huber_px:g} px": _row(robust_translation(rel, mp_2d, K, huber_px), root),
        "MediaPipe world at true length, MediaPipe 2D": _row(solve_translation(mp_world, mp_2d, K, equal).translation, root),
    }
    errors_px = {"MediaPipe 2D": float((mp_2d - true_2d).norm(dim=-1).mean())}

    def spread(uv: torch.Tensor) -> torch.Tensor:
        return (uv - uv.mean(dim=1, keepdim=True)).norm(dim=-1).mean(dim=-1)

    blend_weight: float | None = None
    if network is not None:
        net_2d = network.joints_2d.double()
        rows["true shape, network 2D (image-only cue)"] = _row(solve_translation(rel, net_2d, K, equal).translation, root)
        errors_px["network 2D"] = float((net_2d - true_2d).norm(dim=-1).mean())
        candidates = {}
        for step in range(BLEND_STEPS):
            w = step / (BLEND_STEPS - 1)
            mixed = (1.0 - w) * mp_2d + w * net_2d
            candidates[w] = (_row(solve_translation(rel, mixed, K, equal).translation, root), mixed)
        blend_weight = min(candidates, key=lambda w: candidates[w][0]["root_mean_mm"])
        rows[f"true shape, best blend of MediaPipe and network 2D (network weight {blend_weight:.1f})"] = candidates[blend_weight][0]
        errors_px["best blend"] = float((candidates[blend_weight][1] - true_2d).norm(dim=-1).mean())

    ratio = (spread(mp_2d) / spread(true_2d)).numpy()
    lengths = hand_length(rel)
    size_correlation = {"MediaPipe world landmarks": log_correlation(hand_length(mp_world_raw), lengths)}
    if network is not None:
        size_correlation["network, fused cue"] = log_correlation(network.hand_length, lengths)
    median_length = lengths.median()
    at_median = rel * (median_length / lengths).reshape(-1, 1, 1)
    size_unknown = {
        "true shape at the median length, true 2D joints": _row(solve_translation(at_median, true_2d, K, equal).translation, root),
        "true shape at the median length, MediaPipe 2D": _row(solve_translation(at_median, mp_2d, K, equal).translation, root),
    }
    return {
        "cache": str(cache.folder), "hands": len(cache),
        "true_depth_mean_mm": float(root[:, 2].mean() * 1000.0),
        "mediapipe_2d_error_mean_px": errors_px["MediaPipe 2D"], "error_2d_mean_px": errors_px,
        "crop_size_px": float(2.0 * K[0, 0, 2] + 1.0),
        "mediapipe_spread_ratio_mean": float(ratio.mean()), "mediapipe_spread_ratio_std": float(ratio.std()),
        "blend_network_weight": blend_weight,
        "size_log_correlation": size_correlation,
        "rows": rows,
        "hand_length_median_mm": float(median_length * 1000.0),
        "hand_length_abs_log_deviation": float(torch.log(lengths / median_length).abs().mean()),
        "rows_size_unknown": size_unknown,
    }


_TABLE_HEAD = ("| 3D points, 2D points | wrist error mean / median / p90 (mm) | depth error mean (mm) | depth bias (mm) |",
               "|---|---|---|---|")


def to_markdown(report: dict[str, Any]) -> str:
    lines = [
        f"### DGP with a perfect hand against MediaPipe's 2D landmarks ({report['hands']} hands, {report['cache']})",
        "",
        f"- true wrist depth: mean {report['true_depth_mean_mm']:.0f} mm; MediaPipe's 2D landmarks: mean error "
        f"{report['mediapipe_2d_error_mean_px']:.1f} px in the {report['crop_size_px']:.0f} px crop, skeleton spread "
        f"{report['mediapipe_spread_ratio_mean']:.3f} +- {report['mediapipe_spread_ratio_std']:.3f} of the true one",
        "- mean 2D error per source (px): " + ", ".join(f"{k} {v:.1f}" for k, v in report["error_2d_mean_px"].items()),
        "",
        *_TABLE_HEAD,
    ]
    lines += [_table_row(name, row) for name, row in report["rows"].items()]
    lines += [
        "",
        (f"Hand size not given: the true hand lengths (wrist to middle fingertip) have median "
         f"{report['hand_length_median_mm']:.0f} mm and lie on average {100.0 * report['hand_length_abs_log_deviation']:.1f} % "
         "from it (mean absolute log deviation); every hand drawn at that median length:"),
        "",
        *_TABLE_HEAD,
    ]
    lines += [_table_row(name, row) for name, row in report["rows_size_unknown"].items()]
    lines += [
        "",
        "Can the size be read off these images? Correlation of the log hand length with the log true length: "
        + ", ".join(f"{k} {v:+.2f}" for k, v in report["size_log_correlation"].items())
        + " (0: no information about the size).",
    ]
    return "\n".join(lines) + "\n"


def _table_row(name: str, row: dict[str, float]) -> str:
    return (f"| {name} | {row['root_mean_mm']:.1f} / {row['root_median_mm']:.1f} / {row['root_p90_mm']:.1f} | "
            f"{row['depth_abs_mean_mm']:.1f} | {row['depth_bias_mm']:+.1f} |")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", required=True, help="synthetic label cache folder (python -m app.mediapipe_labels synth)")
    parser.add_argument("--huber-px", type=float, default=2.0, help="robust threshold in crop pixels")
    parser.add_argument("--weights", type=Path, default=None,
                        help="also solve against this checkpoint's own 2D joints and report its size estimate")
    parser.add_argument("--out", type=Path, default=None, help="folder for depth_floor.json / depth_floor.md")
    args = parser.parse_args(argv)
    try:
        cache = load_cue_cache(args.cache)
        network = network_cues(args.weights, cache) if args.weights is not None else None
        report = depth_floor(cache, args.huber_px, network)
    except (CueDataError, NetworkError) as err:
        raise SystemExit(f"error: {err}") from None
    text = to_markdown(report)
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "depth_floor.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
        (args.out / "depth_floor.md").write_text(text, encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
