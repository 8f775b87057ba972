"""Fit the landmark refiner (``models.landmark_refiner``) and install it into a fused checkpoint.

    python -m training.train_refiner --config training/configs/landmark_refiner.json
    python -m training.train_refiner --config training/configs/landmark_refiner.json --evaluate weights/realtime_fused.safetensors
    python -m training.train_refiner --pull-refiner-from FITTED.safetensors --into NETWORK.safetensors --pull 0.5 --out OUT.safetensors

The refiner learns, from the synthetic label caches (``python -m app.mediapipe_labels``), how MediaPipe's
3D landmarks on our renders differ from our hand model's true joints: per hand, the true joints mapped
onto the lifted landmarks by the similarity that PA-MPJPE uses, expressed in the landmarks' palm frame,
minus the landmarks (the target residual). It sees only the landmarks, never the image, so it trains in a
minute on two cores. Its inputs are made exactly as the network makes them: MediaPipe's world landmarks in
the crop's virtual camera, moved onto their 2D rays with the base checkpoint's ``landmark_ray_lift``.

Writes ``out_checkpoint``: every tensor of ``base_checkpoint`` plus the refiner's, with the config's
``landmark_refiner_hidden`` set; and ``<out_checkpoint stem>_refiner.json`` / ``.md``: PA-MPJPE of the
landmarks before and after the refiner on the validation (and test) caches, how far it moves the joints,
and the pose diversity of real photos' landmarks before and after (a refiner that pulled every hand to one
pose would lower it).

``--pull-refiner-from``: copy the refiner of one checkpoint (fitted on the landmarks alone) into another
network as its pull refiner (``landmark_pull_hidden``, ``M3DHMR.pull_towards_landmarks``) with the pull's
blend; for a network whose own refiner was trained further with it (``freeze_refiner: false``).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from models.checkpoint import load_checkpoint, save_checkpoint
from models.config import get_preset
from models.landmark_lift import lift_landmarks_to_rays
from models.landmark_refiner import MIN_FEATURE_STD, LandmarkRefiner
from models.m3dhmr import M3DHMR
from training.config import read_json_fields, repo_path
from training.metrics import pa_point_distances, procrustes_similarity
from training.mp_data import CueCache, load_cue_cache, merge_cue_caches

DIVERSITY_HANDS: int = 300
"""Pose diversity: median PA-MPJPE over all pairs of this many hands (a fixed random subset)."""


class RefinerTrainError(RuntimeError):
    """A refiner config, cache or checkpoint that cannot be used; the message says what to fix."""


@dataclass(frozen=True)
class RefinerConfig:
    """What to fit and where to write it (paths relative to the repository root)."""

    train_caches: tuple[str, ...]
    val_cache: str
    base_checkpoint: str
    out_checkpoint: str
    test_cache: str | None = None
    photo_cache: str | None = None
    hidden: int = 256
    dropout: float = 0.1
    steps: int = 4000
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-2
    input_noise: float = 0.02
    seed: int = 0

    def resolve(self, path: str) -> Path:
        return repo_path(path)


def load_refiner_config(path: Path | str) -> RefinerConfig:
    """Read a JSON config; unknown or missing fields are an error."""
    p, raw = read_json_fields(path, RefinerConfig, RefinerTrainError, "refiner config")
    try:
        return RefinerConfig(**raw)
    except TypeError as err:
        raise RefinerTrainError(f"{p}: {err}") from err


@dataclass
class LandmarkSet:
    """Landmarks of N hands as the network sees them: ``lifted`` / ``unlifted (N,21,3)`` float64 metres,
    wrist-relative in the crop's virtual camera; ``truth (N,21,3)`` the true joints in the same frame
    (None for photos); ``uv (N,21,2)`` MediaPipe's 2D landmarks (crop pixels), ``k_virt (N,3,3)`` and the
    ``ray_lift`` blend, to put refined landmarks back onto the rays as the network does."""

    lifted: torch.Tensor
    unlifted: torch.Tensor
    truth: torch.Tensor | None
    uv: torch.Tensor
    k_virt: torch.Tensor
    ray_lift: float


def landmark_set(cache: CueCache, ray_lift: float) -> LandmarkSet:
    """The landmarks of every hand of ``cache``, lifted with ``ray_lift`` (``models.landmark_lift``)."""
    world = torch.from_numpy(cache.arrays["mp_world_virt"]).double()
    unlifted = world - world[:, :1]
    uv = torch.from_numpy(cache.arrays["mp_uv_crop"]).double()
    k_virt = torch.from_numpy(cache.arrays["K_virt"]).double()
    lifted = lift_landmarks_to_rays(unlifted, uv, k_virt, ray_lift)
    truth = None
    if cache.has_gt:
        joints = torch.from_numpy(cache.arrays["joints_cam"]).double()
        virt_from_cam = torch.from_numpy(cache.arrays["virt_from_cam"]).double()
        truth = (joints - joints[:, :1]) @ virt_from_cam.transpose(1, 2)
    return LandmarkSet(lifted, unlifted, truth, uv, k_virt, ray_lift)


def target_residual(refiner: LandmarkRefiner, data: LandmarkSet) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training pairs: features ``(N,126)`` float32, palm-frame target residuals ``(N,21,3)`` float32 and
    the rows with a usable palm frame ``(N,)`` bool."""
    assert data.truth is not None
    features, rotation, palm, ok = refiner.features(data.lifted, data.unlifted)
    scale, rot, shift = procrustes_similarity(data.truth, data.lifted, allow_reflection=False)
    truth_on_landmarks = scale * data.truth @ rot.transpose(1, 2) + shift
    residual = ((truth_on_landmarks - data.lifted) @ rotation) / palm
    return features.float(), residual.float(), ok & torch.isfinite(residual).all(dim=-1).all(dim=-1)


def fit_refiner(cfg: RefinerConfig, train: LandmarkSet, log: bool = True) -> LandmarkRefiner:
    """Fit a refiner on ``train`` (AdamW, one-cycle learning rate, dropout and input noise against
    overfitting; the loss is the mean joint distance in palm-length units). Returns it in eval mode
    with dropout 0, as the network runs it."""
    torch.manual_seed(cfg.seed)
    refiner = LandmarkRefiner(cfg.hidden, dropout=cfg.dropout)
    features, residual, ok = target_residual(refiner, train)
    features, residual = features[ok], residual[ok]
    if len(features) < cfg.batch_size:
        raise RefinerTrainError(f"{len(features)} training hands; need at least batch_size={cfg.batch_size}")
    with torch.no_grad():
        refiner.input_mean.copy_(features.mean(dim=0))
        refiner.input_std.copy_(features.std(dim=0).clamp_min(MIN_FEATURE_STD))
    optimizer = torch.optim.AdamW(refiner.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, cfg.lr, total_steps=cfg.steps)
    generator = torch.Generator().manual_seed(cfg.seed)
    refiner.train()
    start = time.perf_counter()
    for step in range(cfg.steps):
        rows = torch.randint(0, len(features), (cfg.batch_size,), generator=generator)
        x = features[rows]
        x = x + cfg.input_noise * refiner.input_std * torch.randn(x.shape, generator=generator)
        loss = (refiner.residual(x) - residual[rows]).norm(dim=-1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if log and (step + 1) % 1000 == 0:
            print(f"step {step + 1}/{cfg.steps}: loss {loss.item():.4f} palm lengths, {time.perf_counter() - start:.0f} s",
                  flush=True)
    refiner.dropout = 0.0
    return refiner.eval()


@torch.no_grad()
def refine(refiner: LandmarkRefiner, data: LandmarkSet) -> torch.Tensor:
    """The refined landmarks ``(N,21,3)`` float64 of a set (the refiner's own output)."""
    return refiner(data.lifted, data.unlifted)


def back_on_rays(refined: torch.Tensor, data: LandmarkSet) -> torch.Tensor:
    """``refined (N,21,3)`` landmarks of ``data`` moved back onto MediaPipe's 2D rays: what the network's
    decoder and skinning skip read (``M3DHMR.prepare_landmarks``)."""
    return lift_landmarks_to_rays(refined, data.uv, data.k_virt, data.ray_lift)


def pose_diversity_mm(points: torch.Tensor, seed: int = 0) -> float:
    """Median PA-MPJPE (mm) over all pairs of at most ``DIVERSITY_HANDS`` hands of ``points (N,21,3)``."""
    generator = torch.Generator().manual_seed(seed)
    subset = points[torch.randperm(len(points), generator=generator)[:DIVERSITY_HANDS]]
    i, j = torch.triu_indices(len(subset), len(subset), 1)
    return float(pa_point_distances(subset[i], subset[j]).mean(dim=1).median()) * 1000.0


def score(refiner: LandmarkRefiner, data: LandmarkSet) -> dict[str, float]:
    """PA-MPJPE (mm, mean over hands) of the landmarks before and after the refiner, and after it and the
    second lift (what the network reads); the refiner's mean joint move."""
    assert data.truth is not None
    refined = refine(refiner, data)
    final = back_on_rays(refined, data)
    return {
        "hands": len(data.lifted),
        "pa_mpjpe_lifted_mm": float(pa_point_distances(data.lifted, data.truth).mean()) * 1000.0,
        "pa_mpjpe_refined_mm": float(pa_point_distances(refined, data.truth).mean()) * 1000.0,
        "pa_mpjpe_network_input_mm": float(pa_point_distances(final, data.truth).mean()) * 1000.0,
        "mean_joint_move_mm": float((refined - data.lifted).norm(dim=-1).mean()) * 1000.0,
    }


def _write_with_refiner(base_model: M3DHMR, config: Any, slot: str, refiner: LandmarkRefiner, out: Path,
                        notes: dict[str, str], asset: Any | None) -> M3DHMR:
    """``base_model``'s tensors with ``refiner``'s in the module ``slot`` (``refiner`` or ``pull_refiner``) of
    a network built from ``config``, written to ``out``."""
    model = M3DHMR.from_config(config, asset)
    state = {k: v for k, v in base_model.state_dict().items() if not k.startswith(f"{slot}.")}
    state.update({f"{slot}.{k}": v.float() for k, v in refiner.state_dict().items()})
    model.load_state_dict(state, strict=True)
    save_checkpoint(model.float(), out, extra_metadata=notes)
    return model


def install(base_model: M3DHMR, refiner: LandmarkRefiner, out: Path, notes: dict[str, str], asset: Any | None = None) -> M3DHMR:
    """Write ``base_model``'s tensors (a loaded fused-cue checkpoint) plus the refiner's to ``out``, with
    ``landmark_refiner_hidden`` in its config (``asset``: the hand asset, default the shipped one)."""
    if base_model.config is None or not base_model.config.fused_cue:
        raise RefinerTrainError("the base checkpoint is not a fused-cue one; the refiner corrects the fused landmarks")
    config = dataclasses.replace(base_model.config, landmark_refiner_hidden=refiner.out.in_features)
    return _write_with_refiner(base_model, config, "refiner", refiner, out, notes, asset)


def install_pull_refiner(base_model: M3DHMR, refiner: LandmarkRefiner, pull: float, out: Path,
                         notes: dict[str, str], asset: Any | None = None) -> M3DHMR:
    """Write ``base_model``'s tensors (a loaded fused-cue checkpoint) plus ``refiner``'s as its pull refiner to
    ``out``, with ``landmark_pull = pull`` and ``landmark_pull_hidden`` in its config (``asset``: the hand
    asset, default the shipped one)."""
    if base_model.config is None or not base_model.config.fused_cue:
        raise RefinerTrainError("the base checkpoint is not a fused-cue one; the pull moves the fused mesh")
    try:
        config = dataclasses.replace(base_model.config, landmark_pull=float(pull), landmark_pull_hidden=refiner.out.in_features)
    except ValueError as error:
        raise RefinerTrainError(f"cannot add a pull of {pull} to this network: {error}") from error
    return _write_with_refiner(base_model, config, "pull_refiner", refiner, out, notes, asset)


def _markdown(report: dict[str, Any]) -> str:
    lines = ["# Landmark refiner", "", f"`{report['command']}`", "",
             "| set | hands | PA-MPJPE lifted landmarks (mm) | refined (mm) | refined, back on the rays (mm) | "
             "mean joint move (mm) |", "|---|---|---|---|---|---|"]
    for name in ("train", "val", "test"):
        if name in report:
            r = report[name]
            lines.append(f"| {name} | {r['hands']} | {r['pa_mpjpe_lifted_mm']:.2f} | {r['pa_mpjpe_refined_mm']:.2f} | "
                         f"{r['pa_mpjpe_network_input_mm']:.2f} | {r['mean_joint_move_mm']:.2f} |")
    if "photos" in report:
        p = report["photos"]
        lines += ["", f"Real photos ({p['hands']} hands, no ground truth): mean joint move {p['mean_joint_move_mm']:.2f} mm; "
                  f"pose diversity (median pairwise PA-MPJPE) of MediaPipe's world landmarks {p['diversity_unlifted_mm']:.1f} mm, "
                  f"lifted {p['diversity_lifted_mm']:.1f} mm, refined {p['diversity_refined_mm']:.1f} mm, refined and back on the rays "
                  f"{p['diversity_network_input_mm']:.1f} mm."]
    return "\n".join(lines) + "\n"


def refiner_report(refiner: LandmarkRefiner, cfg: RefinerConfig, lift: float, command: str,
                   train: LandmarkSet | None = None) -> dict[str, Any]:
    """The report's figures for ``refiner`` on the config's caches (``train`` when already loaded)."""
    if train is None:
        train = landmark_set(merge_cue_caches([load_cue_cache(cfg.resolve(p)) for p in cfg.train_caches]), lift)
    val = landmark_set(load_cue_cache(cfg.resolve(cfg.val_cache)), lift)
    report: dict[str, Any] = {"command": command, "config": dataclasses.asdict(cfg), "ray_lift": lift,
                              "train": score(refiner, train), "val": score(refiner, val)}
    if cfg.test_cache:
        report["test"] = score(refiner, landmark_set(load_cue_cache(cfg.resolve(cfg.test_cache)), lift))
    if cfg.photo_cache:
        photos = landmark_set(load_cue_cache(cfg.resolve(cfg.photo_cache)), lift)
        refined = refine(refiner, photos)
        report["photos"] = {"hands": len(photos.lifted),
                            "mean_joint_move_mm": float((refined - photos.lifted).norm(dim=-1).mean()) * 1000.0,
                            "diversity_unlifted_mm": pose_diversity_mm(photos.unlifted),
                            "diversity_lifted_mm": pose_diversity_mm(photos.lifted),
                            "diversity_refined_mm": pose_diversity_mm(refined),
                            "diversity_network_input_mm": pose_diversity_mm(back_on_rays(refined, photos))}
    if not math.isfinite(report["val"]["pa_mpjpe_refined_mm"]):
        raise RefinerTrainError("the refined validation landmarks are not finite")
    return report


def _write_report(report: dict[str, Any], stem: Path) -> None:
    Path(f"{stem}_refiner.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    Path(f"{stem}_refiner.md").write_text(_markdown(report), encoding="utf-8")
    print(_markdown(report))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m training.train_refiner", description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=None, help="refiner config (required unless --pull-refiner-from)")
    parser.add_argument("--evaluate", type=Path, default=None, metavar="CHECKPOINT",
                        help="do not fit: report the refiner inside this checkpoint on the config's caches")
    parser.add_argument("--pull-refiner", action="store_true",
                        help="with --evaluate: report the checkpoint's pull refiner instead of its refiner")
    parser.add_argument("--pull-refiner-from", type=Path, default=None, metavar="CHECKPOINT",
                        help="instead of fitting: copy this checkpoint's refiner into --into as its pull refiner")
    parser.add_argument("--into", type=Path, default=None, metavar="CHECKPOINT", help="with --pull-refiner-from: the network")
    parser.add_argument("--pull", type=float, default=get_preset("realtime_fused").landmark_pull,
                        help="with --pull-refiner-from: the pull's blend, 0-1 (default: the realtime_fused preset's)")
    parser.add_argument("--out", type=Path, default=None, metavar="STEM",
                        help="with --evaluate: write STEM_refiner.json / .md (default: the checkpoint's stem); "
                             "with --pull-refiner-from: the checkpoint to write")
    args = parser.parse_args(argv)
    if args.pull_refiner_from is not None:
        if args.into is None or args.out is None:
            parser.error("--pull-refiner-from needs --into and --out")
        source = load_checkpoint(args.pull_refiner_from)
        if source.refiner is None:
            raise RefinerTrainError(f"{args.pull_refiner_from} has no landmark refiner (landmark_refiner_hidden is 0)")
        install_pull_refiner(load_checkpoint(args.into), source.refiner, args.pull, args.out,
                             {"pull_refiner_from": str(args.pull_refiner_from), "pull_into": str(args.into)})
        print(f"wrote {args.out}")
        return {"out": str(args.out)}
    if args.config is None:
        parser.error("--config is required (or --pull-refiner-from)")
    cfg = load_refiner_config(args.config)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    if args.evaluate is not None:
        model = load_checkpoint(args.evaluate)
        refiner = model.pull_refiner if args.pull_refiner else model.refiner
        if refiner is None or model.config is None:
            which, width = (("pull refiner", "landmark_pull_hidden") if args.pull_refiner
                            else ("landmark refiner", "landmark_refiner_hidden"))
            raise RefinerTrainError(f"{args.evaluate} has no {which} ({width} is 0)")
        command = (f"python -m training.train_refiner --config {args.config} --evaluate {args.evaluate}"
                   + (" --pull-refiner" if args.pull_refiner else ""))
        report = refiner_report(refiner.eval(), cfg, model.config.landmark_ray_lift, command)
        _write_report(report, args.out if args.out is not None else args.evaluate.with_suffix(""))
        return report
    base = cfg.resolve(cfg.base_checkpoint)
    base_model = load_checkpoint(base)
    base_config = base_model.config
    if base_config is None or not base_config.fused_cue:
        raise RefinerTrainError(f"{base} is not a fused-cue checkpoint")
    lift = base_config.landmark_ray_lift
    train = landmark_set(merge_cue_caches([load_cue_cache(cfg.resolve(p)) for p in cfg.train_caches]), lift)
    refiner = fit_refiner(cfg, train)
    report = refiner_report(refiner, cfg, lift, f"python -m training.train_refiner --config {args.config}", train)
    out = cfg.resolve(cfg.out_checkpoint)
    install(base_model, refiner, out, {"refiner_val_pa_mpjpe_mm": f"{report['val']['pa_mpjpe_refined_mm']:.3f}"})
    _write_report(report, out.with_suffix(""))
    return report


if __name__ == "__main__":
    main()
