"""Trainer: config loading, a tiny real run that lowers the loss, exact resume, DDP with torchrun/gloo."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from models.checkpoint import load_checkpoint, read_checkpoint_metadata
from models.paths import REPO_ROOT
from training.evaluate import main as evaluate_main
from training.config import TrainConfigError, load_train_config, train_config_from_dict
from training.train import DistInfo, RunBatchSampler, Trainer, collate_samples, forward_views, lr_at_epoch, main

# The smallest network the config allows: realtime preset with tiny widths, one stack, 64 px crops.
TINY_MODEL = {
    "width_mult": 0.25,
    "feature_channels": 16,
    "decoder_channels": [8, 8, 8, 16, 16],
    "num_kernels": 2,
    "num_stacks": 1,
    "crop_size": 64,
    "dgp_hidden": 8,
}


def _tiny_config(out_dir: Path, **overrides: object) -> dict[str, object]:
    raw: dict[str, object] = {
        "name": "tiny",
        "model_preset": "realtime_slim",
        "model_overrides": TINY_MODEL,
        "batch_size": 2,
        "epochs": 2,
        "lr": 1e-3,
        "lr_milestones_epochs": [],
        "log_every_steps": 1,
        "eval_every_steps": 0,
        "checkpoint_every_steps": 0,
        "out_dir": str(out_dir),
        "data": {"samples_per_epoch": 8, "two_views": True, "num_workers": 0, "eval_samples": 2, "unique_samples": 2},
    }
    raw.update(overrides)
    return raw


def _fabricated_freihand_evaluation(root: Path) -> Path:
    """Two labelled 224x224 evaluation images in FreiHAND's official layout (joints 0.5 m away)."""
    (root / "evaluation" / "rgb").mkdir(parents=True)
    joints = np.zeros((21, 3)) + np.array([0.0, 0.0, 0.5])
    joints[1:, 1] = -np.linspace(0.02, 0.15, 20)
    joints[1:, 0] = np.tile(np.linspace(-0.04, 0.04, 5), 4)
    k = [[480.0, 0.0, 112.0], [0.0, 480.0, 112.0], [0.0, 0.0, 1.0]]
    files = {"evaluation_K.json": [k, k], "evaluation_scale.json": [0.03, 0.03], "evaluation_xyz.json": [joints.tolist()] * 2}
    for name, content in files.items():
        (root / name).write_text(json.dumps(content), encoding="utf-8")
    for i in range(2):
        image = np.full((224, 224, 3), (40 * i, 120, 180), np.uint8)
        cv2.imwrite(str(root / "evaluation" / "rgb" / f"{i:08d}.jpg"), image)
    return root


def _write(path: Path, raw: dict[str, object]) -> Path:
    path.write_text(json.dumps(raw), encoding="utf-8")
    return path


def test_shipped_configs_load_and_default_is_the_paper_schedule() -> None:
    for name in ("realtime_cpu.json", "paper_r18.json"):
        cfg = load_train_config(REPO_ROOT / "training" / "configs" / name)
        cfg.model_config()
    default = train_config_from_dict({})
    assert (default.lr, default.lr_milestones_epochs, default.lr_gamma, default.epochs, default.batch_size) == (
        1e-3,
        (30,),
        0.1,
        38,
        32,
    )


def test_lr_schedule_drops_tenfold_at_epoch_30() -> None:
    cfg = train_config_from_dict({})
    assert [lr_at_epoch(cfg, e) for e in (0, 29, 30, 37)] == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4])


def test_bad_config_fields_raise(tmp_path: Path) -> None:
    with pytest.raises(TrainConfigError, match="unknown fields"):
        train_config_from_dict({"learning_rate": 0.1})
    with pytest.raises(TrainConfigError, match="unknown fields"):
        train_config_from_dict({"model_overrides": {"widht": 1}})
    with pytest.raises(TrainConfigError):
        train_config_from_dict({"loss": {"mesh": -1}})
    with pytest.raises(TrainConfigError, match="not found"):
        load_train_config(tmp_path / "missing.json")


def test_batch_sampler_splits_global_batch_over_ranks_and_resumes() -> None:
    ranks = [
        list(RunBatchSampler(start_step=1, total_steps=3, global_batch=4, dist=DistInfo(rank=r, world_size=2)))
        for r in range(2)
    ]
    assert ranks[0] == [[4, 5], [8, 9]] and ranks[1] == [[6, 7], [10, 11]]
    cyc = list(RunBatchSampler(start_step=0, total_steps=2, global_batch=4, dist=DistInfo(), unique_samples=3))
    assert cyc == [[0, 1, 2, 0], [1, 2, 0, 1]]


@pytest.mark.slow
def test_tiny_training_run_lowers_the_loss_and_writes_a_loadable_checkpoint(tmp_path: Path) -> None:
    torch.set_num_threads(2)
    cfg_path = _write(tmp_path / "tiny.json", _tiny_config(tmp_path / "run", eval_every_steps=8))
    summary = main(["--config", str(cfg_path), "--max-steps", "8", "--no-progress"])
    assert summary["steps_run"] == 8
    run = tmp_path / "run"
    log = (run / "train_log.csv").read_text().splitlines()
    losses = [float(line.split(",")[3]) for line in log[1:]]
    # Over-fitting two samples: the last steps must be clearly below the first (DGP may spike at first).
    assert sum(losses[-2:]) / 2 < 0.8 * losses[0], losses
    assert log[0].startswith("step,epoch,lr,loss,mesh,pose2d,normal,edge")
    assert "consistency3d" in log[0] and "consistency2d" in log[0] and len(log) == 9
    assert (run / "eval_log.csv").is_file() and summary["final_metrics"]["num_samples"] == 2
    ckpt = run / "checkpoints" / "last.safetensors"
    meta = read_checkpoint_metadata(ckpt)
    assert meta.extra["step"] == "8" and meta.config.width_mult == 0.25
    model = load_checkpoint(ckpt)
    assert model.config == meta.config

    metrics = evaluate_main(["--weights", str(ckpt), "--samples", "2", "--out", str(tmp_path / "eval"), "--name", "tiny"])
    report = json.loads((tmp_path / "eval" / "tiny.json").read_text())
    assert report["metrics"]["num_samples"] == 2 == metrics.num_samples
    assert report["metrics"]["pa_mpjpe_mm"] == pytest.approx(metrics.pa_mpjpe_mm)
    assert "| PA-MPJPE (mm) |" in (tmp_path / "eval" / "tiny.md").read_text()

    freihand = _fabricated_freihand_evaluation(tmp_path / "freihand")
    fh = evaluate_main(["--weights", str(ckpt), "--freihand", str(freihand), "--out", str(tmp_path / "eval"), "--name", "fh"])
    assert fh.num_samples == 2 and math.isfinite(fh.pa_mpjpe_mm) and math.isnan(fh.pa_mpvpe_mm)
    assert "| PA-MPVPE (mm) | n/a |" in (tmp_path / "eval" / "fh.md").read_text()


def test_external_cue_mixing_and_warm_start(tmp_path: Path) -> None:
    """Rows drawn for the external cue use the (noisy) ground-truth 2D joints, as the app uses MediaPipe's;
    the others the network's own; init_from loads weights strictly and trains on with the heatmap term."""
    torch.set_num_threads(2)
    cfg = train_config_from_dict(_tiny_config(tmp_path / "run", max_steps=1))
    trainer = Trainer(cfg, DistInfo(), torch.device("cpu"), show_progress=False)
    views = collate_samples([trainer._loader().dataset[i] for i in range(2)])
    torch.manual_seed(0)
    with torch.no_grad():
        always = forward_views(trainer.model, views, torch.device("cpu"), False, external_cue_prob=1.0, external_cue_noise_px=0.0)
        never = forward_views(trainer.model, views, torch.device("cpu"), False, external_cue_prob=0.0)
        noisy = forward_views(trainer.model, views, torch.device("cpu"), False, external_cue_prob=1.0, external_cue_noise_px=3.0)
    gt_uv = torch.cat([v.joints_uv for v in views])
    torch.testing.assert_close(always.joints_2d_used, gt_uv)
    torch.testing.assert_close(never.joints_2d_used, never.joints_2d_pred)
    offsets = (noisy.joints_2d_used - gt_uv).flatten()
    assert 1.5 < float(offsets.std()) < 6.0
    trainer.save("last")

    warm_cfg = train_config_from_dict(_tiny_config(
        tmp_path / "warm", max_steps=2, init_from=str(tmp_path / "run" / "checkpoints" / "last.safetensors"),
        external_cue_prob=0.5, loss={"heatmap": 0.1},
    ))
    warm = Trainer(warm_cfg, DistInfo(), torch.device("cpu"), show_progress=False)
    for name, value in warm.model.state_dict().items():
        assert torch.equal(value, trainer.model.state_dict()[name]), name
    warm.fit()
    header = (tmp_path / "warm" / "train_log.csv").read_text().splitlines()[0]
    assert header.split(",")[-4] == "heatmap"


@pytest.mark.slow
def test_resume_restores_weights_optimizer_and_step(tmp_path: Path) -> None:
    torch.set_num_threads(2)
    cfg = train_config_from_dict(_tiny_config(tmp_path / "run", max_steps=4))
    cfg_a = dataclasses.replace(cfg, max_steps=2)
    first = Trainer(cfg_a, DistInfo(), torch.device("cpu"), show_progress=False)
    first.fit()
    saved = first.model.state_dict()
    state = load_file(str(tmp_path / "run" / "checkpoints" / "last_state.safetensors"))
    assert any(k.endswith(".exp_avg") for k in state)

    resumed = Trainer(cfg, DistInfo(), torch.device("cpu"), show_progress=False)
    resumed.resume(tmp_path / "run")
    assert resumed.step == 2
    for name, value in resumed.model.state_dict().items():
        assert torch.equal(value, saved[name]), name
    opt_a, opt_b = first.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    assert opt_a.keys() == opt_b.keys()
    for idx in opt_a:
        assert torch.equal(opt_a[idx]["exp_avg_sq"], opt_b[idx]["exp_avg_sq"])
    summary = resumed.fit()
    assert summary["steps_run"] == 2 and summary["step"] == 4
    steps = [line.split(",")[0] for line in (tmp_path / "run" / "train_log.csv").read_text().splitlines()[1:]]
    assert steps == ["1", "2", "3", "4"]


@pytest.mark.slow
def test_ddp_two_processes_gloo(tmp_path: Path) -> None:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun is not installed next to this Python")
    cfg_path = _write(tmp_path / "ddp.json", _tiny_config(tmp_path / "run", eval_every_steps=0))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [torchrun, "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(port)]
    cmd += ["-m", "training.train"]
    cmd += ["--config", str(cfg_path), "--max-steps", "3", "--no-progress"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps_run"] == 3 and summary["ranks_in_sync"]
    assert read_checkpoint_metadata(tmp_path / "run" / "checkpoints" / "last.safetensors").extra["step"] == "3"
