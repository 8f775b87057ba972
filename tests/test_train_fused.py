"""Fused-cue training data and trainer, on small caches fabricated in the exact format of
``app.mediapipe_labels`` (no MediaPipe run, no rendering)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from models.checkpoint import load_checkpoint, save_checkpoint
from models.config import get_preset
from models.hand.asset import load_hand_asset
from models.m3dhmr import M3DHMR
from models.paths import REPO_ROOT
from tests.cue_cache_support import S, view_config, write_cue_cache
from training.mp_data import CueDataset, collate_cue_samples, load_cue_cache, photo_is_held_out, photo_split
from training.train_fused import (
    FusedLoss,
    FusedLossWeights,
    FusedTrainError,
    FusedTrainConfig,
    FusedTrainer,
    draw_cues,
    forward_batch,
    load_fused_config,
    real_view_terms,
    restrict_cues,
    warm_start,
)


@pytest.fixture(scope="module")
def caches(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cue_caches")
    return {
        "synth": write_cue_cache(root / "synth", 12, 1, photos=False),
        "photos": write_cue_cache(root / "photos", 40, 2, photos=True),
        "test": write_cue_cache(root / "test", 6, 3, photos=False),
    }


def test_cache_round_trip_and_detection_rate(caches: dict[str, Path]) -> None:
    cache = load_cue_cache(caches["synth"])
    assert len(cache) == 12 and cache.has_gt
    assert cache.detection_rate() == pytest.approx(12 / 14)
    batch = collate_cue_samples([CueDataset(cache, None, augment=True)[i] for i in range(4)])
    assert batch.crops.shape == (4, 3, S, S) and batch.has_gt.all()
    # the true 2D joints in the crop are close to the (noisy) MediaPipe ones
    assert float((batch.joints_uv - batch.mp_uv).norm(dim=-1).median()) < 5.0


def test_photo_split_is_fixed_and_about_ten_percent(caches: dict[str, Path]) -> None:
    names = [f"x/{i}.jpg" for i in range(2000)]
    fraction = np.mean([photo_is_held_out(n) for n in names])
    assert 0.07 < fraction < 0.13
    assert [photo_is_held_out(n) for n in names[:50]] == [photo_is_held_out(n) for n in names[:50]]
    photos = load_cue_cache(caches["photos"])
    held, train = photo_split(photos, True), photo_split(photos, False)
    assert len(held) + len(train) == len(photos) and not set(held) & set(train)


def test_draw_cues_follows_the_probabilities() -> None:
    cues = draw_cues(3000, (0.6, 0.3, 0.1), torch.Generator().manual_seed(0))
    counts = torch.bincount(cues, minlength=3).float() / 3000
    assert torch.allclose(counts, torch.tensor([0.6, 0.3, 0.1]), atol=0.04)


def test_warm_start_widens_the_fused_inputs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    slim = M3DHMR.from_config(get_preset("realtime_slim"))
    path = tmp_path / "slim.safetensors"
    save_checkpoint(slim, path)
    fused = M3DHMR.from_config(get_preset("realtime_fused"))
    report = warm_start(fused, path)
    assert "decoder.project.weight" in report["widened"] and "dgp_head.mlp.0.weight" in report["widened"]
    old = slim.decoder.project.weight
    new = fused.decoder.project.weight
    assert torch.equal(new[:, : old.shape[1]], old) and torch.all(new[:, old.shape[1]:] == 0)
    assert torch.equal(fused.encoder.state_dict()["stem.0.weight"] if "stem.0.weight" in fused.encoder.state_dict()
                       else next(iter(fused.encoder.parameters())), next(iter(slim.encoder.parameters())))
    assert torch.all(fused.decoder.head.weight == 0)


def test_trainer_runs_mixed_batches_and_writes_loadable_checkpoints(caches: dict[str, Path], tmp_path: Path) -> None:
    cfg = FusedTrainConfig(
        synth_cache=str(caches["synth"]), photo_cache=str(caches["photos"]), test_cache=str(caches["test"]),
        out_dir=str(tmp_path / "run"), batch_size=6, real_per_batch=2, max_steps=4, time_budget_s=600,
        eval_every_steps=2, eval_samples=6, checkpoint_every_steps=2, log_every_steps=1, num_workers=0,
    )
    trainer = FusedTrainer(cfg, show_progress=False)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    summary = trainer.fit()
    assert summary["steps"] == 4
    changed = sum(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))
    assert changed > 10
    log = (tmp_path / "run" / "train_log.csv").read_text().splitlines()
    header = log[0].split(",")
    assert {"mesh", "real_pose2d", "real_world3d", "real_reproj", "real_prior", "scale"} <= set(header)
    assert not {"real_limits", "dihedral", "aligned"} & set(header)  # weight 0 by default: not computed
    final = summary["final"]
    assert np.isfinite(final["fused_pa_mpjpe_mm"]) and 0 <= final["real_pck10"] <= 1
    model = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.safetensors")
    # the skin-thickness clamp is left out of training (it would hide spikes from the thickness term)
    assert model.config == replace(get_preset("realtime_fused"), skin_clamp=False)
    assert FusedTrainer(replace(cfg, skin_clamp_in_training=True), show_progress=False).model.skin_clamp is not None


def test_shipped_training_config_loads() -> None:
    cfg = load_fused_config("training/configs/realtime_fused_cpu.json")
    assert cfg.model_preset == "realtime_fused" and abs(sum(cfg.cue_probs) - 1.0) < 1e-6


def test_amplitude_mixing_keeps_geometry_and_moves_low_frequencies() -> None:
    from training.appearance import mix_amplitude_spectrum

    rng = np.random.default_rng(0)
    synthetic = np.zeros((64, 64, 3), np.uint8)
    synthetic[20:44, 28:36] = 220  # a bright bar: its edges carry the geometry
    real = np.clip(rng.normal(90, 30, (64, 64, 3)), 0, 255).astype(np.uint8)
    assert np.array_equal(mix_amplitude_spectrum(synthetic, real, weight=0.0), synthetic)
    mixed = mix_amplitude_spectrum(synthetic, real, band=0.05, weight=1.0)
    # the mean brightness (DC amplitude) follows the real photo; the bar's edges (the geometry) stay put
    assert abs(float(mixed.mean()) - float(real.mean())) < abs(float(synthetic.mean()) - float(real.mean())) / 2
    edges = np.abs(np.diff(mixed[32, :, 0].astype(float)))
    assert set(np.argsort(edges)[-2:]) == {27, 35}
    with pytest.raises(ValueError):
        mix_amplitude_spectrum(synthetic, real[:32])


def test_real_view_terms_train_the_image_only_path_and_leave_the_teacher_alone(caches: dict[str, Path], tmp_path: Path) -> None:
    trainer = FusedTrainer(view_config(caches, tmp_path / "run"), show_progress=False)
    samples = [trainer.train_synth[0], trainer.train_synth[1]] + [trainer.train_real[i] for i in range(4)]
    batch = collate_cue_samples(samples)
    cues = torch.tensor([0, 2, 0, 1, 2, 2])
    out = forward_batch(trainer.model, batch, cues, None)
    surface = (trainer.loss_fn.faces, trainer.loss_fn.edges)
    terms = real_view_terms(trainer.model, out, batch, cues, trainer.cfg.loss, torch.Generator().manual_seed(0), 30.0, surface)
    assert set(terms) == {"real_distill", "real_distill_view", "real_con2d", "real_con3d", "real_surface", "real_surface_view"}
    assert all(torch.isfinite(v) and v >= 0 for v in terms.values())
    # the distillation target is detached: its gradient reaches the parameters only through the student rows
    trainer.model.zero_grad()
    terms["real_distill"].backward()
    head = trainer.model.decoder.head.weight.grad
    assert head is not None and float(head.abs().sum()) > 0
    none = real_view_terms(trainer.model, out, batch, cues, FusedLossWeights(), torch.Generator(), 30.0)
    assert none == {}  # weights 0: no extra forwards
    with pytest.raises(ValueError, match="real_surface"):
        real_view_terms(trainer.model, out, batch, cues, trainer.cfg.loss, torch.Generator(), 30.0)


def test_trainer_logs_the_view_terms(caches: dict[str, Path], tmp_path: Path) -> None:
    summary = FusedTrainer(view_config(caches, tmp_path / "run"), show_progress=False).fit()
    header = (tmp_path / "run" / "train_log.csv").read_text().splitlines()[0].split(",")
    assert {"real_distill", "real_distill_view", "real_con2d", "real_con3d", "real_limits",
            "real_surface", "real_surface_view", "dihedral", "real_fold", "thickness", "aligned"} <= set(header)
    final = summary["final"]
    assert np.isfinite(final["real_world3d_pa_mm"]) and final["real_fused_gap_mm"] >= 0
    assert np.isfinite(final["real_limits_deg"]) and final["real_limits_deg"] >= 0
    assert 0 < final["real_dihedral_deg"] < 180 and 0 < final["real_fused_dihedral_deg"] < 180
    assert 0 < final["fused_dihedral_deg"] < 180 and final["fused_dihedral_gap_deg"] > 0
    assert 0 < final["fused_true_thickness_mm"] < 3 and final["fused_thickness_mm"] > 0
    assert final["real_thickness_mm"] > 0 and final["real_fused_thickness_mm"] > 0


def test_the_thickness_term_needs_its_measure() -> None:
    asset = load_hand_asset()
    template = torch.as_tensor(np.asarray(asset.template_vertices), dtype=torch.float32)
    with pytest.raises(ValueError, match="SkinThickness"):
        FusedLoss(np.asarray(asset.faces), template, template[:21], 0.18, FusedLossWeights(thickness=1.0))


def test_ablation_trains_each_variant_from_the_same_start(caches: dict[str, Path], tmp_path: Path) -> None:
    from training.ablate_fused import VARIANTS, run_ablation

    base = view_config(caches, tmp_path / "unused")
    chosen = {k: VARIANTS[k] for k in ("all", "- real_distill")}
    report = run_ablation(base, 1, tmp_path / "ablation", chosen)
    assert list(report["variants"]) == ["start", "all", "- real_distill"]
    for row in report["variants"].values():
        assert np.isfinite(row["real_2d_mean"]) and np.isfinite(row["network_pa_mpjpe_mm"])
    table = (tmp_path / "ablation" / "ablation.md").read_text()
    assert "| - real_distill |" in table and "| start |" in table


def test_extra_synthetic_caches_are_merged(caches: dict[str, Path], tmp_path: Path) -> None:
    cfg = view_config(caches, tmp_path / "run", extra_synth_caches=(str(caches["test"]),), max_steps=1)
    trainer = FusedTrainer(cfg, show_progress=False)
    assert len(trainer.synth) == 12 + 6 and len(set(trainer.synth.arrays["index"].tolist())) == 18
    assert trainer.fit()["steps"] == 1


def test_generator_rows_carry_no_mediapipe_and_run_the_network_cue(caches: dict[str, Path], tmp_path: Path) -> None:
    from training.mp_data import GeneratorCueDataset
    from training.synth.dataset import SynthHandDataset

    generated = GeneratorCueDataset(seed=5, length=10)
    sample = generated[3]
    (view,) = SynthHandDataset(seed=5, length=10, two_views=False)[3]
    batch = collate_cue_samples([generated[3], load_and_sample(caches["synth"])])
    assert batch.has_mp.tolist() == [False, True] and batch.has_gt.all()
    assert float(batch.mp_uv[0].abs().sum()) == 0.0 and float(batch.mp_score[0]) == 0.0
    np.testing.assert_array_equal(sample["crop_rgb"], view["crop_rgb"])
    # the collated true 2D joints are the generator's own crop labels
    np.testing.assert_allclose(batch.joints_uv[0].numpy(), view["joints_2d_crop"], atol=1e-2)
    cues = restrict_cues(torch.tensor([0, 1, 0, 2]), torch.tensor([False, False, True, True]))
    assert cues.tolist() == [2, 2, 0, 2]
    summary = FusedTrainer(view_config(caches, tmp_path / "run", batch_size=7, generator_per_batch=2,
                                        synth_joint_box_prob=0.5), show_progress=False).fit()
    assert summary["steps"] == 2
    with pytest.raises(FusedTrainError, match="no room"):
        FusedTrainer(view_config(caches, tmp_path / "run2", batch_size=5, generator_per_batch=2), show_progress=False).fit()


def load_and_sample(folder: Path) -> dict[str, np.ndarray]:
    return CueDataset(load_cue_cache(folder), None, augment=False)[0]


def test_the_landmark_refiner_stays_frozen_unless_asked(caches: dict[str, Path], tmp_path: Path) -> None:
    cfg = view_config(caches, tmp_path / "run", max_steps=2)
    trainer = FusedTrainer(cfg, show_progress=False)
    assert trainer.model.refiner is not None
    before = {k: v.detach().clone() for k, v in trainer.model.refiner.state_dict().items()}
    trainer.fit()
    assert all(torch.equal(before[k], v) for k, v in trainer.model.refiner.state_dict().items())
    free = FusedTrainer(replace(cfg, out_dir=str(tmp_path / "free"), freeze_refiner=False), show_progress=False)
    trained = {id(p) for group in free.optimizer.param_groups for p in group["params"]}
    assert all(id(p) in trained for p in free.model.refiner.parameters())


def test_weight_averaging_keeps_and_evaluates_the_average(caches: dict[str, Path], tmp_path: Path) -> None:
    cfg = replace(view_config(caches, tmp_path / "run", max_steps=3), ema_decay=0.5)
    trainer = FusedTrainer(cfg, show_progress=False)
    trainer.fit()
    raw = dict(trainer.model.named_parameters())
    averaged = dict(trainer.kept_model.named_parameters())
    assert trainer.kept_model is not trainer.model
    assert any(not torch.equal(raw[k], v) for k, v in averaged.items())
    kept = load_checkpoint(tmp_path / "run" / "checkpoints" / "last_ema.safetensors").state_dict()
    assert all(torch.equal(kept[k], v) for k, v in trainer.kept_model.state_dict().items())
    last = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.safetensors").state_dict()
    assert all(torch.equal(last[k], v) for k, v in trainer.model.state_dict().items())
    with pytest.raises(FusedTrainError, match="ema_decay"):
        FusedTrainer(replace(cfg, ema_decay=1.0), show_progress=False)

def test_every_fused_training_config_loads() -> None:
    configs = sorted((REPO_ROOT / "training" / "configs").glob("realtime_fused_cpu*.json"))
    assert len(configs) >= 18
    for path in configs:
        cfg = load_fused_config(path)
        assert cfg.model_preset == "realtime_fused", path
