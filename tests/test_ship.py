"""Shipping a checkpoint: weights, ONNX export, evaluation report and a manifest the doctor verifies."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from app.doctor import check_weights
from models.checkpoint import load_checkpoint
from models.errors import CheckpointError
from tests.test_train import _tiny_config, _write
from training.ship import MANIFEST_FORMAT, _fused_data_recipe, reexport_onnx, ship, update_reports
from training.train import main as train_main


@pytest.mark.slow
def test_ship_writes_files_the_doctor_verifies(tmp_path: Path) -> None:
    torch.set_num_threads(2)
    cfg_path = _write(tmp_path / "tiny.json", _tiny_config(tmp_path / "run"))
    train_main(["--config", str(cfg_path), "--max-steps", "1", "--no-progress"])
    checkpoint = tmp_path / "run" / "checkpoints" / "last.safetensors"

    manifest_path = ship(checkpoint, "tiny", out_dir=tmp_path / "weights", eval_samples=2, notes="test run")
    manifest = json.loads(manifest_path.read_text())
    assert manifest["format"] == MANIFEST_FORMAT and manifest["notes"] == "test run"
    assert {f["path"] for f in manifest["files"]} == {"tiny.safetensors", "tiny.onnx", "tiny_synthetic.md", "tiny_synthetic.json"}
    assert manifest["training"]["step"] == 1 and manifest["metrics_synthetic_test"]["num_samples"] == 2
    assert set(manifest["onnx_parity_max_m"]) == {"network", "mediapipe", "shared_crop"}
    assert max(manifest["onnx_parity_max_m"].values()) < 1e-3
    shipped = load_checkpoint(tmp_path / "weights" / "tiny.safetensors")
    assert manifest["asset_sha256"] == shipped.asset_sha256 and manifest["config"]["width_mult"] == 0.25

    assert check_weights(manifest_path).status == "ok"
    report = tmp_path / "tiny_app_synth_all.md"
    report.write_text("new figures\n")
    update_reports((report,), tmp_path / "weights", note="the pipeline changed")
    (tmp_path / "weights" / "tiny_synthetic.md").write_text("edited\n")
    with pytest.raises(ValueError, match="weights file"):
        update_reports((tmp_path / "weights" / "tiny.onnx",), tmp_path / "weights")
    update_reports((tmp_path / "weights" / "tiny_synthetic.md",), tmp_path / "weights")
    manifest = json.loads(manifest_path.read_text())
    assert "tiny_app_synth_all.md" in {f["path"] for f in manifest["files"]}
    assert [u["note"] for u in manifest["report_updates"]] == ["the pipeline changed", ""]
    assert check_weights(manifest_path).status == "ok"
    (tmp_path / "weights" / "tiny.onnx").write_bytes(b"an old export")
    reexport_onnx("tiny", tmp_path / "weights", note="new graph input")
    manifest = json.loads(manifest_path.read_text())
    assert manifest["report_updates"][-1]["files"] == ["tiny.onnx"] and max(manifest["onnx_parity_max_m"].values()) < 1e-3
    assert check_weights(manifest_path).status == "ok"
    onnx_file = tmp_path / "weights" / "tiny.onnx"
    data = onnx_file.read_bytes()
    onnx_file.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    failed = check_weights(manifest_path)
    assert failed.status == "fail" and "tiny.onnx sha256 mismatch" in failed.detail
    with pytest.raises(CheckpointError, match="smooth"):  # image-only networks have no fused meshes to smooth
        ship(checkpoint, "smoothed", out_dir=tmp_path / "weights", eval_samples=2, surface_smoothing=2)
    assert not (tmp_path / "weights" / "smoothed.safetensors").exists()
    with pytest.raises(CheckpointError, match="lift"):  # nor landmarks to lift
        ship(checkpoint, "lifted", out_dir=tmp_path / "weights", eval_samples=2, landmark_ray_lift=0.6)
    assert not (tmp_path / "weights" / "lifted.safetensors").exists()


def test_the_data_recipe_lists_the_label_free_terms_and_hand_priors_used() -> None:
    cfg = {"synth_cache": "data/s", "photo_cache": "data/p", "batch_size": 16, "real_per_batch": 5,
           "cue_probs": [0.25, 0.1, 0.65],
           "loss": {"real_distill": 2.0, "real_surface": 0.5, "real_con2d": 0.0, "real_limits": 1.0, "real_prior": 0.2, "mesh": 1.0}}
    recipe = _fused_data_recipe({"trainer": "training.train_fused", "train_config": json.dumps(cfg)})
    assert recipe is not None
    assert recipe["label_free_terms"] == {"real_distill": 2.0, "real_surface": 0.5}
    assert recipe["hand_model_priors_on_real_rows"] == {"real_limits": 1.0, "real_prior": 0.2}
    assert any("Apache-2.0" in a for a in recipe["attribution"])
    assert "generator_rows" not in recipe and "synthetic_reframing" not in recipe
    assert "surface_smoothness_terms" not in recipe
    cfg.update(batch_size=18, generator_per_batch=3, generator_seed=0, synth_joint_box_prob=0.5, synth_reframe_prob=0.4)
    recipe = _fused_data_recipe({"trainer": "training.train_fused", "train_config": json.dumps(cfg)})
    assert recipe is not None
    assert recipe["batch"] == "18 hands, of which 5 real photos and 3 from the synthetic generator"
    assert "seed 0" in recipe["generator_rows"] and "network cue" in recipe["generator_rows"]
    assert recipe["synthetic_reframing"] == {"synth_joint_box_prob": 0.5, "synth_reframe_prob": 0.4}
    cfg["loss"].update(dihedral=0.5, real_fold=0.5)
    recipe = _fused_data_recipe({"trainer": "training.train_fused", "train_config": json.dumps(cfg)})
    assert recipe is not None
    assert recipe["surface_smoothness_terms"] == {"dihedral": 0.5, "real_fold": 0.5, "fold_margin": 0.05}
    assert "skin_thickness_term" not in recipe
    cfg["loss"].update(thickness=3.0)
    recipe = _fused_data_recipe({"trainer": "training.train_fused", "train_config": json.dumps(cfg)})
    assert recipe is not None
    assert recipe["skin_thickness_term"]["thickness"] == 3.0 and recipe["skin_thickness_term"]["thickness_margin_m"] == 0.003
