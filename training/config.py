"""Training configuration: a frozen dataclass loaded from JSON (or YAML when PyYAML is installed).

Defaults reproduce M3DHMR's schedule: Adam, learning rate 1e-3 divided by 10 at epoch 30 of 38,
global batch 32. Under torchrun the global batch is split evenly over the processes.
Paths in a config file are resolved against the repository root (never the working directory).
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.config import M3DHMRConfig, get_preset
from models.paths import REPO_ROOT
from training.losses import LossWeights


class TrainConfigError(ValueError):
    """A training config file is missing, malformed, or has unknown or invalid fields."""


@dataclass(frozen=True)
class DataConfig:
    """Synthetic training data and the held-out synthetic test set used for periodic evaluation.

    samples_per_epoch: how many generated samples make one epoch (synthetic data is unbounded).
    two_views: draw two augmented views of every sample (needed by the consistency losses).
    num_workers: DataLoader worker processes per training process (0 = generate in the main process).
    eval_samples / eval_seed: the first ``eval_samples`` samples of the fixed synthetic test set (seed
        None = ``training.synth.testset.TEST_SEED``, the test set ``training.evaluate`` uses).
    unique_samples: 0 = every step draws new samples; N > 0 cycles over the first N samples (an
        over-fitting sanity check, used by the tests).
    """

    seed: int = 0
    samples_per_epoch: int = 32_000
    unique_samples: int = 0
    two_views: bool = True
    num_workers: int = 2
    eval_samples: int = 256
    eval_seed: int | None = None


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines one training run.

    model_preset / model_overrides: network preset name (models.config) and fields replaced on it.
    lr_milestones_epochs: epochs after which the learning rate is multiplied by ``lr_gamma``.
    max_steps / time_budget_s: optional hard stops (for CPU runs); the schedule is still by epoch.
    eval_every_steps / checkpoint_every_steps: periods in optimizer steps (0 disables; both also run at the end).
    checkpoint_every_s: also save ``last`` when this many seconds of training passed since the previous
        save (None disables), so a run cut short by a hard wall-clock limit still leaves recent weights.
    amp: bfloat16/float16 autocast, used only on CUDA.
    out_dir: run folder (checkpoints, CSV log); relative paths are under the repository root.
    external_cue_prob / external_cue_noise_px: fraction of training samples whose features are sampled
        (and whose DGP is solved) at external 2D joints, as the app does with MediaPipe's landmarks,
        instead of at the network's own prediction; those external joints are the ground truth plus
        Gaussian noise of this standard deviation in crop pixels (MediaPipe-like error).
    init_from: checkpoint whose weights initialise the model (strict load; optimizer starts fresh).
    """

    name: str = "paper_r18"
    model_preset: str = "paper_r18"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 32
    epochs: int = 38
    lr: float = 1e-3
    lr_milestones_epochs: tuple[int, ...] = (30,)
    lr_gamma: float = 0.1
    weight_decay: float = 0.0
    grad_clip_norm: float = 0.0
    max_steps: int | None = None
    time_budget_s: float | None = None
    amp: bool = True
    seed: int = 0
    log_every_steps: int = 20
    eval_every_steps: int = 2000
    checkpoint_every_steps: int = 1000
    checkpoint_every_s: float | None = None
    out_dir: str = "runs/paper_r18"
    external_cue_prob: float = 0.0
    external_cue_noise_px: float = 3.0
    init_from: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossWeights = field(default_factory=LossWeights)

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.epochs < 1 or self.lr <= 0:
            raise TrainConfigError("batch_size and epochs must be >= 1 and lr > 0")
        if self.max_steps is not None and self.max_steps < 1:
            raise TrainConfigError(f"max_steps must be >= 1 or null, got {self.max_steps}")
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise TrainConfigError(f"time_budget_s must be > 0 or null, got {self.time_budget_s}")
        if self.checkpoint_every_s is not None and self.checkpoint_every_s <= 0:
            raise TrainConfigError(f"checkpoint_every_s must be > 0 or null, got {self.checkpoint_every_s}")
        if not 0.0 <= self.external_cue_prob <= 1.0 or self.external_cue_noise_px < 0:
            raise TrainConfigError("external_cue_prob must be in [0, 1] and external_cue_noise_px >= 0")
        if list(self.lr_milestones_epochs) != sorted(self.lr_milestones_epochs):
            raise TrainConfigError(f"lr_milestones_epochs must be increasing, got {self.lr_milestones_epochs}")
        self.model_config()  # fail early on an unknown preset or override

    def model_config(self) -> M3DHMRConfig:
        """The network config: the preset with ``model_overrides`` applied."""
        base = get_preset(self.model_preset)
        known = {f.name for f in dataclasses.fields(M3DHMRConfig)}
        unknown = sorted(set(self.model_overrides) - known)
        if unknown:
            raise TrainConfigError(f"model_overrides has unknown fields {unknown}; valid: {sorted(known)}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in self.model_overrides.items()}
        return dataclasses.replace(base, **values)

    def resolved_out_dir(self) -> Path:
        return repo_path(self.out_dir)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def repo_path(path: str | Path) -> Path:
    """``path`` as given when absolute, else under ``REPO_ROOT`` (config paths are relative to the repository)."""
    p = Path(path)
    return p if p.is_absolute() else REPO_ROOT / p


def read_json_fields(path: Path | str, cls: type, error: type[Exception], what: str) -> tuple[Path, dict[str, Any]]:
    """Read a JSON config for the dataclass ``cls``: a relative path is looked up as given, then under
    ``REPO_ROOT``; unreadable JSON or fields ``cls`` does not have raise ``error`` ("cannot read <what> ...",
    "<path>: unknown fields [...]"). Returns the path read and its fields, lists turned into tuples."""
    p = Path(path)
    if not p.is_absolute() and not p.exists():
        p = REPO_ROOT / p
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise error(f"cannot read {what} {path}: {err}") from err
    if not isinstance(raw, dict):
        raise error(f"{p}: a {what} is a JSON object, got {type(raw).__name__}")
    unknown = sorted(set(raw) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise error(f"{p}: unknown fields {unknown}")
    return p, {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}


def _build(cls: type, raw: dict[str, Any], where: str) -> Any:
    if not isinstance(raw, dict):
        raise TrainConfigError(f"{where} must be a mapping, got {type(raw).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise TrainConfigError(f"{where} has unknown fields {unknown}; valid: {sorted(known)}")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "data":
            values[key] = _build(DataConfig, value, f"{where}.data")
        elif key == "loss":
            values[key] = _build(LossWeights, value, f"{where}.loss")
        elif isinstance(value, list):
            values[key] = tuple(value)
        else:
            values[key] = value
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:
        raise TrainConfigError(f"{where}: {err}") from err


def train_config_from_dict(raw: dict[str, Any]) -> TrainConfig:
    """Build a :class:`TrainConfig` from a (possibly partial) mapping; missing fields take defaults."""
    return _build(TrainConfig, raw, "config")


def load_train_config(path: str | Path) -> TrainConfig:
    """Load a ``.json`` (or ``.yaml``/``.yml`` when PyYAML is installed) training config.

    A relative path is looked up as given first, then under ``REPO_ROOT``.
    """
    p = Path(path)
    if not p.is_absolute() and not p.exists():
        p = REPO_ROOT / p
    if not p.is_file():
        raise TrainConfigError(f"training config {path} not found (looked also under {REPO_ROOT})")
    text = p.read_text(encoding="utf-8")
    if p.suffix.lower() in (".yaml", ".yml"):
        if importlib.util.find_spec("yaml") is None:
            raise TrainConfigError(f"{p} is YAML but PyYAML is not installed; use the JSON form or install pyyaml")
        import yaml

        raw = yaml.safe_load(text)
    else:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as err:
            raise TrainConfigError(f"{p} is not valid JSON: {err}") from err
    return train_config_from_dict(raw)
