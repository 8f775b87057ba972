"""Ship a trained checkpoint: weights/ gets the safetensors model, its ONNX export, the evaluation
report and ``manifest.json`` (sha256 of every file, network config, asset hash, training recipe and
the measured metrics).

    python -m training.ship --checkpoint runs/realtime_cpu/checkpoints/best.safetensors [--name realtime_slim]
    python -m training.ship --checkpoint gpu_out/paper_r18.part1of4.safetensors --name paper_r18   # bf16 parts
    python -m training.ship --checkpoint CKPT --name realtime_fused --surface-smoothing 6   # fused meshes smoothed
    python -m training.ship --checkpoint CKPT --name realtime_fused --landmark-ray-lift 0.6   # landmarks on their 2D rays
    python -m training.ship --update-reports runs/x/realtime_fused_app_synth_all.md --notes why   # reports only
    python -m training.ship --reexport-onnx --name realtime_fused --notes why   # ONNX graph only, same weights

Weight parts (``training.weight_parts``, written by ``training.gpu_run`` when a file must stay under a size
limit) are joined into one float32 checkpoint first; give any part, the others must lie beside it.

The app loads ``weights/<name>.onnx`` (onnxruntime) or ``weights/<name>.safetensors`` (torch); the doctor
verifies both against the manifest. Nothing is downloaded at run time.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import platform
import tempfile
from pathlib import Path
from typing import Any

import torch

from models.checkpoint import load_checkpoint, read_checkpoint_metadata, save_checkpoint
from models.config import config_to_json
from models.export_onnx import check_cue_parity, export_onnx
from models.file_hash import sha256_file
from models.paths import REPO_ROOT, WEIGHTS_DIR
from training import evaluate
from training.weight_parts import resolve_checkpoint

MANIFEST_FORMAT = "handmesh-weights-v1"


def _file_entry(path: Path, out_dir: Path, kind: str) -> dict[str, Any]:
    return {"path": path.relative_to(out_dir).as_posix(), "kind": kind, "bytes": path.stat().st_size, "sha256": sha256_file(path)}


def _training_recipe(extra: dict[str, str], run_dir: Path) -> dict[str, Any]:
    """What produced the checkpoint: its training config, step/epoch and the run's summary when present."""
    recipe: dict[str, Any] = {}
    for key, value in extra.items():
        try:
            recipe[key] = json.loads(value)
        except (json.JSONDecodeError, TypeError):
            recipe[key] = value
    summary = run_dir / "summary.json"
    if summary.is_file():
        recipe["run_summary"] = json.loads(summary.read_text(encoding="utf-8"))
    return recipe


PHOTO_ATTRIBUTION: tuple[str, ...] = (
    "webcam_hands: SubhiH/HandsDataset (Apache-2.0), 1,557 photos, resized to 640x480; MediaPipe landmarks as pseudo-labels",
    "sign_digits: ardamavi/Sign-Language-Digits-Dataset (Apache-2.0), 2,062 crops; MediaPipe landmarks as pseudo-labels",
)
"""Credit for the real photos (../shared/real/photos/SOURCES.md) when a training run used them."""


def _fused_data_recipe(extra: dict[str, str]) -> dict[str, Any] | None:
    """Data recipe of a ``training.train_fused`` checkpoint (caches, mix, attribution), else None."""
    if extra.get("trainer") != "training.train_fused" or "train_config" not in extra:
        return None
    cfg = json.loads(extra["train_config"])
    recipe: dict[str, Any] = {
        "synthetic": f"{cfg.get('synth_cache')}: full synthetic frames (training.synth, our hand model) with MediaPipe's "
                     "real outputs (app.mediapipe_labels synth); ground truth for every term",
        "batch": (f"{cfg.get('batch_size')} hands, of which {cfg.get('real_per_batch')} real photos"
                  + (f" and {cfg['generator_per_batch']} from the synthetic generator" if cfg.get("generator_per_batch") else "")),
        "cues": dict(zip(("fused", "mediapipe", "network"), cfg.get("cue_probs", ()))),
        "warm_start_from": cfg.get("warm_start_from"),
    }
    if cfg.get("extra_synth_caches"):
        recipe["synthetic_variants"] = [
            f"{path}: the same generator with opt-in real-photo statistics (app.mediapipe_labels synth "
            "--real-backgrounds: hand-free regions of the training photos as backgrounds; --matched-poses: poses "
            "re-weighted towards the real photos' finger bends, assets/real_pose_bends.json)"
            for path in cfg["extra_synth_caches"]]
    if cfg.get("generator_per_batch"):
        recipe["generator_rows"] = (f"{cfg['generator_per_batch']} rows per batch from training.synth.dataset.SynthHandDataset "
                                    f"(seed {cfg.get('generator_seed', 0)}, drawn on the fly): the generator's crop windows "
                                    "and joint boxes, hands MediaPipe misses included; no MediaPipe landmarks, network cue")
    framing = {k: cfg[k] for k in ("synth_joint_box_prob", "synth_reframe_prob") if cfg.get(k)}
    if framing:
        recipe["synthetic_reframing"] = framing
    loss = cfg.get("loss", {})
    terms = {k: v for k, v in loss.items() if k in ("real_distill", "real_surface", "real_con2d", "real_con3d") and v}
    if terms:
        recipe["label_free_terms"] = terms
    priors = {k: v for k, v in loss.items() if k in ("real_prior", "real_limits") and v}
    if priors:
        recipe["hand_model_priors_on_real_rows"] = priors
    surface = {k: v for k, v in loss.items() if k in ("dihedral", "real_fold") and v}
    if surface:
        if "real_fold" in surface:
            surface["fold_margin"] = loss.get("fold_margin", 0.05)
        recipe["surface_smoothness_terms"] = surface
    if loss.get("thickness"):
        recipe["skin_thickness_term"] = {"thickness": loss["thickness"],
                                         "thickness_margin_m": loss.get("thickness_margin_m", 0.003),
                                         "rows": "every row (models.skin_thickness)"}
    if cfg.get("photo_cache"):
        recipe["real_photos"] = (f"{cfg['photo_cache']}: ../shared/real/photos through app.mediapipe_labels photos; "
                                 "about 10 % held out by file name (training.mp_data.photo_is_held_out), never trained on")
        recipe["attribution"] = list(PHOTO_ATTRIBUTION)
    return recipe


def ship(checkpoint: Path, name: str, out_dir: Path = WEIGHTS_DIR, eval_samples: int = 1000, notes: str = "",
         extra_reports: tuple[Path, ...] = (), surface_smoothing: int | None = None,
         skin_clamp: bool | None = None, landmark_ray_lift: float | None = None,
         landmark_pull: float | None = None) -> Path:
    """Write ``out_dir/<name>.{safetensors,onnx}``, the evaluation report and the manifest; return the manifest path.

    ``extra_reports``: further evaluation files (e.g. ``app.evaluate_app`` JSON/markdown) copied beside the
    weights and listed in the manifest. ``surface_smoothing``: Taubin iterations written into the shipped
    config (``models.surface_smoothing``; None keeps the checkpoint's); ``skin_clamp`` likewise for the
    skin-thickness clamp (``models.skin_thickness.ThicknessClamp``) and ``landmark_ray_lift`` for the fused
    cue's ray lift (``models.landmark_lift``) and ``landmark_pull`` for its pull towards the refined
    landmarks (``M3DHMR.pull_towards_landmarks``)."""
    meta = read_checkpoint_metadata(checkpoint)
    model = load_checkpoint(checkpoint, surface_smoothing=surface_smoothing, skin_clamp=skin_clamp,
                            landmark_ray_lift=landmark_ray_lift, landmark_pull=landmark_pull).eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    weights_path = out_dir / f"{name}.safetensors"
    onnx_path = out_dir / f"{name}.onnx"
    save_checkpoint(model, weights_path, extra_metadata=meta.extra)
    export_onnx(model, onnx_path)
    parity = check_cue_parity(model, onnx_path)  # raises OnnxParityError: a broken export never ships
    metrics = evaluate.main(["--weights", str(weights_path), "--samples", str(eval_samples),
                             "--out", str(out_dir), "--name", f"{name}_synthetic"])
    report_md = out_dir / f"{name}_synthetic.md"
    report_json = out_dir / f"{name}_synthetic.json"
    copied = [_copy_into(Path(report), out_dir) for report in extra_reports]
    run_dir = checkpoint.parent.parent
    source = checkpoint.resolve()
    manifest = {
        "format": MANIFEST_FORMAT,
        "name": name,
        "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "files": [
            _file_entry(weights_path, out_dir, "torch-safetensors"),
            _file_entry(onnx_path, out_dir, "onnx"),
            _file_entry(report_md, out_dir, "evaluation-report"),
            _file_entry(report_json, out_dir, "evaluation-report"),
            *(_file_entry(p, out_dir, "evaluation-report") for p in copied),
        ],
        "config": json.loads(config_to_json(model.config)),
        "asset_sha256": model.asset_sha256,
        "source_checkpoint": str(source.relative_to(REPO_ROOT) if source.is_relative_to(REPO_ROOT) else source),
        "training": _training_recipe(meta.extra, run_dir),
        "data_recipe": _fused_data_recipe(meta.extra)
        or "training.synth.SynthHandDataset (procedural scenes, our hand model), see training/configs",
        "notes": notes,
        "onnx_parity_max_m": parity,
        "metrics_synthetic_test": dataclasses.asdict(metrics),
        "evaluated_on": {"samples": eval_samples, "torch": torch.__version__, "host": platform.platform()},
    }
    manifest_path = out_dir / "manifest.json"
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest_path


def _copy_into(report: Path, out_dir: Path) -> Path:
    """``out_dir/<report's name>``, copied there unless ``report`` already is that file."""
    target = out_dir / report.name
    if report.resolve() != target.resolve():
        target.write_bytes(report.read_bytes())
    return target


def _load_manifest(out_dir: Path) -> tuple[Path, dict[str, Any]]:
    manifest_path = out_dir / "manifest.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"no manifest at {manifest_path}: ship the weights first")
    return manifest_path, json.loads(manifest_path.read_text(encoding="utf-8"))


def _save_with_update(manifest_path: Path, manifest: dict[str, Any], files: list[str], note: str) -> Path:
    """Write ``manifest`` with one more ``report_updates`` entry (time, the files replaced, ``note``)."""
    manifest.setdefault("report_updates", []).append({
        "utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "files": files, "note": note,
    })
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest_path


def update_reports(reports: tuple[Path, ...], out_dir: Path = WEIGHTS_DIR, note: str = "") -> Path:
    """Replace or add evaluation reports beside shipped weights without touching the weights.

    For figures that change while the network does not (e.g. a new step of the app's pipeline): each file of
    ``reports`` is copied into ``out_dir`` and its manifest entry (size, sha256) is rewritten or added;
    ``note`` is appended to the manifest's ``report_updates``. Returns the manifest path.
    """
    manifest_path, manifest = _load_manifest(out_dir)
    entries = {entry["path"]: i for i, entry in enumerate(manifest["files"])}
    for report in reports:
        name = Path(report).name
        if name in entries and manifest["files"][entries[name]]["kind"] != "evaluation-report":
            raise ValueError(f"{name} is a weights file in the manifest, not a report")
    for report in reports:
        entry = _file_entry(_copy_into(Path(report), out_dir), out_dir, "evaluation-report")
        if entry["path"] in entries:
            manifest["files"][entries[entry["path"]]] = entry
        else:
            manifest["files"].append(entry)
    return _save_with_update(manifest_path, manifest, [Path(r).name for r in reports], note)


def reexport_onnx(name: str, out_dir: Path = WEIGHTS_DIR, note: str = "") -> Path:
    """Export ``out_dir/<name>.onnx`` again from the shipped ``<name>.safetensors`` (after the ONNX graph's
    interface changed; the weights do not), check torch/onnxruntime parity for every cue, and rewrite the
    manifest's ONNX entry and ``onnx_parity_max_m``; ``note`` goes to ``report_updates``. Returns the manifest."""
    manifest_path, manifest = _load_manifest(out_dir)
    model = load_checkpoint(out_dir / f"{name}.safetensors").eval()
    onnx_path = out_dir / f"{name}.onnx"
    with tempfile.TemporaryDirectory(prefix="handmesh-onnx-") as tmp:
        fresh = export_onnx(model, Path(tmp) / onnx_path.name)
        parity = check_cue_parity(model, fresh)  # raises OnnxParityError: a broken export never replaces the file
        onnx_path.write_bytes(fresh.read_bytes())
    entry = _file_entry(onnx_path, out_dir, "onnx")
    manifest["files"] = [entry if f["path"] == entry["path"] else f for f in manifest["files"]]
    manifest["onnx_parity_max_m"] = parity
    return _save_with_update(manifest_path, manifest, [entry["path"]], note)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m training.ship", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="trained checkpoint (models.checkpoint format)")
    parser.add_argument("--update-reports", type=Path, nargs="+", default=None, metavar="REPORT",
                        help="instead of shipping: replace or add these evaluation reports beside the shipped "
                             "weights in --out-dir and update their manifest entries (--notes says why)")
    parser.add_argument("--reexport-onnx", action="store_true",
                        help="instead of shipping: export --name's ONNX file again from its shipped safetensors "
                             "(parity checked) and update the manifest (--notes says why)")
    parser.add_argument("--name", default="realtime_slim", help="file stem in weights/ (default realtime_slim)")
    parser.add_argument("--out-dir", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--eval-samples", type=int, default=1000)
    parser.add_argument("--notes", default="", help="free text stored in the manifest (e.g. the generator commit)")
    parser.add_argument("--surface-smoothing", type=int, default=None, metavar="N",
                        help="Taubin iterations on fused meshes written into the shipped config (a fixed layer "
                             "without weights; default: the checkpoint's own)")
    parser.add_argument("--skin-clamp", action="store_true", default=None,
                        help="switch on the skin-thickness clamp in the shipped config (a fixed layer without "
                             "weights; default: the checkpoint's own)")
    parser.add_argument("--landmark-ray-lift", type=float, default=None, metavar="BLEND",
                        help="how far the fused landmarks move onto their 2D rays, 0-1, written into the shipped "
                             "config (no weights; default: the checkpoint's own)")
    parser.add_argument("--landmark-pull", type=float, default=None, metavar="BLEND",
                        help="how far the placed fused mesh is pulled towards the refined landmarks, 0-1, written "
                             "into the shipped config (no weights; default: the checkpoint's own)")
    parser.add_argument("--extra-report", type=Path, action="append", default=[],
                        help="another evaluation file to ship and list in the manifest (repeatable)")
    args = parser.parse_args(argv)
    if args.update_reports:
        print(f"wrote {update_reports(tuple(args.update_reports), args.out_dir, args.notes)}")
        return
    if args.reexport_onnx:
        print(f"wrote {reexport_onnx(args.name, args.out_dir, args.notes)}")
        return
    if args.checkpoint is None:
        parser.error("--checkpoint is required (or --update-reports)")
    with tempfile.TemporaryDirectory(prefix="handmesh-join-") as tmp:
        checkpoint = resolve_checkpoint(args.checkpoint, Path(tmp))
        notes = args.notes if checkpoint == args.checkpoint else f"{args.notes} (joined from the weight parts {args.checkpoint})".strip()
        manifest = ship(checkpoint, args.name, args.out_dir, args.eval_samples, notes, tuple(args.extra_report),
                        args.surface_smoothing, args.skin_clamp, args.landmark_ray_lift, args.landmark_pull)
    print(f"wrote {manifest}")


if __name__ == "__main__":
    main()
