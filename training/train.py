"""Train M3DHMR + DGP: ``python -m training.train --config training/configs/realtime_cpu.json``.

Single process on CPU or one GPU, or many processes through torchrun (DistributedDataParallel; nccl on
CUDA, gloo on CPU), on one or several machines::

    torchrun --nproc_per_node 4 -m training.train --config training/configs/paper_r18.json
    torchrun --nnodes 2 --node_rank R --master_addr HOST --master_port 29500 --nproc_per_node 8 \\
        -m training.train --config ...

The config's ``batch_size`` is the global batch, split evenly over the processes. Outputs go to the
config's ``out_dir``: ``train_log.csv`` (every ``log_every_steps``), ``eval_log.csv`` (periodic
evaluation on the fixed synthetic test subset), TensorBoard events when tensorboard is installed, and
``checkpoints/last.safetensors`` (weights + network config + asset hash, loadable with
``models.checkpoint.load_checkpoint``) with ``checkpoints/last_state.safetensors`` (optimizer, step,
RNG) for ``--resume``; ``checkpoints/best.safetensors`` keeps the lowest evaluated PA-MPJPE.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import importlib.util
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as torch_dist
from safetensors.torch import load_file, save_file
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from models.checkpoint import load_state_strict, read_checkpoint_metadata, save_checkpoint
from models.config import crops_to_network_input
from models.m3dhmr import M3DHMR, M3DHMROutput
from training.config import DataConfig, TrainConfig, load_train_config
from training.losses import HandMeshLoss, LossPrediction, LossTarget, heatmap_kl_loss, view_pair_from_rectifications
from training.metrics import HandMetrics, MetricAccumulator

STATE_FORMAT = "handmesh-train-state-v1"
VIEW_KEYS: tuple[str, ...] = ("crop_rgb", "K_virt", "virt_from_cam", "crop_from_image", "joints_cam")
OPTIONAL_VIEW_KEYS: tuple[str, ...] = ("verts_cam",)  # absent e.g. for FreiHAND without a MANO topology


class TrainError(RuntimeError):
    """A training run cannot start or resume (bad resume folder, mismatched config, ...)."""


@dataclass(frozen=True)
class DistInfo:
    """This process's place in a (possibly single-process) distributed run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


@dataclass(frozen=True)
class ViewBatch:
    """A batch of one rectified view per sample, as the trainer and evaluator consume it.

    crops: ``(B, 3, S, S)`` float32 RGB in [0, 1] (``models.config.crops_to_network_input``).
    k_virt: ``(B, 3, 3)`` virtual-camera intrinsics, crop pixels.
    virt_from_cam: ``(B, 3, 3)`` camera -> network frame (rotation, times a mirror for left hands).
    crop_from_image: ``(B, 3, 3)`` homography full-image pixels -> crop pixels.
    verts_cam / joints_cam: ``(B, V, 3)`` / ``(B, 21, 3)`` ground truth in the real camera, metres.
    verts_rel: ``(B, V, 3)`` ground truth in the network frame relative to the wrist joint, metres.
    joints_uv: ``(B, 21, 2)`` ground-truth joints projected into the crop, pixels.
    """

    crops: torch.Tensor
    k_virt: torch.Tensor
    virt_from_cam: torch.Tensor
    crop_from_image: torch.Tensor
    verts_cam: torch.Tensor
    joints_cam: torch.Tensor
    verts_rel: torch.Tensor
    joints_uv: torch.Tensor

    @staticmethod
    def from_views(views: list[dict[str, np.ndarray]]) -> ViewBatch:
        """Stack per-sample view dicts (keys ``VIEW_KEYS``; ``crop_rgb`` is ``(S, S, 3)`` uint8 RGB).

        Without ``verts_cam`` the vertex fields are empty ``(B, 0, 3)`` tensors.
        """
        missing = [k for k in VIEW_KEYS if k not in views[0]]
        if missing:
            raise TrainError(f"training samples lack the fields {missing}; expected {list(VIEW_KEYS)}")
        crops = torch.from_numpy(crops_to_network_input(np.stack([v["crop_rgb"] for v in views])))

        def stack(key: str) -> torch.Tensor:
            return torch.from_numpy(np.stack([np.asarray(v[key], dtype=np.float32) for v in views]))

        k_virt, virt_from_cam = stack("K_virt"), stack("virt_from_cam")
        joints_cam = stack("joints_cam")
        verts_cam = stack("verts_cam") if "verts_cam" in views[0] else torch.zeros(len(views), 0, 3)
        joints_virt = joints_cam @ virt_from_cam.transpose(1, 2)
        verts_virt = verts_cam @ virt_from_cam.transpose(1, 2)
        uvw = joints_virt @ k_virt.transpose(1, 2)
        return ViewBatch(
            crops=crops,
            k_virt=k_virt,
            virt_from_cam=virt_from_cam,
            crop_from_image=stack("crop_from_image"),
            verts_cam=verts_cam,
            joints_cam=joints_cam,
            verts_rel=verts_virt - joints_virt[:, :1],
            joints_uv=uvw[..., :2] / uvw[..., 2:3],
        )


def collate_samples(samples: list[tuple[dict[str, np.ndarray], ...]]) -> list[ViewBatch]:
    """DataLoader collate: a list of samples, each a tuple of 1 or 2 view dicts -> one ViewBatch per view."""
    num_views = len(samples[0])
    return [ViewBatch.from_views([s[i] for s in samples]) for i in range(num_views)]


def build_train_dataset(data: DataConfig, crop_size: int) -> Dataset:
    """Map-style synthetic dataset: index -> tuple of 1 (or 2 with ``two_views``) view dicts (``VIEW_KEYS``)."""
    from training.synth.dataset import SynthHandDataset

    return SynthHandDataset(seed=data.seed, length=data.samples_per_epoch, crop_size=crop_size, two_views=data.two_views)


def synthetic_eval_samples(num_samples: int, seed: int, crop_size: int) -> list[tuple[dict[str, np.ndarray], ...]]:
    """The fixed synthetic test set (cached under ``data/``) as one-view samples."""
    from training.synth.testset import load_synth_testset

    return [(view,) for view in load_synth_testset(num_samples=num_samples, seed=seed, crop_size=crop_size)]


def build_eval_views(data: DataConfig, crop_size: int, batch_size: int = 64) -> list[ViewBatch]:
    """The evaluation subset used during training: the first ``data.eval_samples`` test-set samples."""
    from training.synth.testset import TEST_SEED

    seed = TEST_SEED if data.eval_seed is None else data.eval_seed
    samples = synthetic_eval_samples(data.eval_samples, seed, crop_size)
    return [collate_samples(samples[i : i + batch_size])[0] for i in range(0, len(samples), batch_size)]


def setup_distributed() -> DistInfo:
    """Initialise the process group from torchrun's environment (nccl on CUDA, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(rank=int(os.environ["RANK"]), world_size=world, local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(info.local_rank)
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend=backend)
    return info


def choose_device(dist: DistInfo, requested: str | None) -> torch.device:
    if requested:
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda", dist.local_rank)
    return torch.device("cpu")


def lr_at_epoch(cfg: TrainConfig, epoch: int) -> float:
    """Step schedule: ``lr * gamma ** (number of milestones reached)``; epoch counts from 0."""
    drops = sum(1 for m in cfg.lr_milestones_epochs if epoch >= m)
    return cfg.lr * cfg.lr_gamma**drops


class RunBatchSampler:
    """Yields, for every remaining optimizer step, this rank's sample indices.

    Synthetic samples are generated from their index, so step ``s`` simply uses the global indices
    ``s * B .. s * B + B - 1`` split over the ranks: every sample in the run is new, and a resumed run
    continues with exactly the samples it would have seen.
    """

    def __init__(
        self, *, start_step: int, total_steps: int, global_batch: int, dist: DistInfo, unique_samples: int = 0
    ) -> None:
        self.unique_samples = unique_samples
        self.start_step = start_step
        self.total_steps = total_steps
        self.global_batch = global_batch
        self.local_batch = global_batch // dist.world_size
        self.rank = dist.rank

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start_step, self.total_steps):
            first = step * self.global_batch + self.rank * self.local_batch
            indices = list(range(first, first + self.local_batch))
            yield [i % self.unique_samples for i in indices] if self.unique_samples > 0 else indices

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step)


def noisy_external_joints(joints_uv: torch.Tensor, noise_px: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """MediaPipe-like external 2D joints: ``joints_uv (B, 21, 2)`` crop pixels plus i.i.d. Gaussian noise of
    ``noise_px`` pixels (drawn from ``generator``, or torch's global generator when None)."""
    return joints_uv + noise_px * torch.randn(joints_uv.shape, generator=generator, dtype=joints_uv.dtype)


def forward_views(
    model: torch.nn.Module,
    views: list[ViewBatch],
    device: torch.device,
    amp: bool,
    external_cue_prob: float = 0.0,
    external_cue_noise_px: float = 0.0,
) -> M3DHMROutput:
    """Run the network on all views at once (view batches concatenated along the batch axis).

    With ``external_cue_prob > 0`` that fraction of the rows gets the ground-truth 2D joints plus
    Gaussian noise (``external_cue_noise_px``, crop pixels) as external joints, as the app's MediaPipe
    cue supplies them; the other rows use the network's own prediction.
    Autocast (bfloat16 where supported, else float16) is used only on CUDA and only when ``amp``.
    """
    crops = torch.cat([v.crops for v in views]).to(device, non_blocking=True)
    k_virt = torch.cat([v.k_virt for v in views]).to(device)
    virt_to_cam = torch.cat([v.virt_from_cam.transpose(1, 2) for v in views]).to(device)
    external = mask = None
    if external_cue_prob > 0:
        joints_uv = torch.cat([v.joints_uv for v in views])
        external = noisy_external_joints(joints_uv, external_cue_noise_px).to(device)
        mask = (torch.rand(joints_uv.shape[0]) < external_cue_prob).to(device)
    use_amp = amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    with torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=use_amp):
        return model(crops, k_virt, joints_2d_external=external, external_mask=mask, virt_to_cam=virt_to_cam)


def _split(t: torch.Tensor, n: int) -> list[torch.Tensor]:
    return list(torch.chunk(t.float(), n, dim=0))


def compute_loss(
    model: torch.nn.Module,
    loss_fn: HandMeshLoss,
    views: list[ViewBatch],
    device: torch.device,
    amp: bool,
    external_cue_prob: float = 0.0,
    external_cue_noise_px: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Forward all views, then the loss in float32 (consistency terms when there are two views; the
    heatmap term when its weight is > 0)."""
    out = forward_views(model, views, device, amp, external_cue_prob, external_cue_noise_px)
    total, terms = _mesh_losses(out, loss_fn, views, device)
    weights = loss_fn.weights
    if weights.heatmap > 0:
        joints_uv = torch.cat([v.joints_uv for v in views]).to(device)
        heatmap = heatmap_kl_loss(out.heatmaps.float(), joints_uv, views[0].crops.shape[-1], weights.heatmap_sigma_px)
        terms["heatmap"] = heatmap.detach()
        total = total + weights.heatmap * heatmap
    return total, terms


def _mesh_losses(
    out: M3DHMROutput, loss_fn: HandMeshLoss, views: list[ViewBatch], device: torch.device
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The M3DHMR + DGP terms of ``loss_fn`` for one forward of all views."""
    n = len(views)
    stacks = out.joints_2d_stacks
    uv_all = _split(stacks.reshape(stacks.shape[0], -1, 2), n)
    verts_rel, verts_cam, joints_cam = (_split(t, n) for t in (out.vertices_rel, out.vertices_cam, out.joints_cam))
    num_stacks = stacks.shape[1]
    preds, targets = [], []
    for i, v in enumerate(views):
        preds.append(LossPrediction(verts_rel=verts_rel[i], joints_uv=uv_all[i], verts_cam=verts_cam[i], joints_cam=joints_cam[i]))
        targets.append(
            LossTarget(
                verts_rel=v.verts_rel.to(device),
                joints_uv=v.joints_uv.to(device).repeat(1, num_stacks, 1),
                crop_size_px=float(v.crops.shape[-1]),
                verts_cam=v.verts_cam.to(device),
                joints_cam=v.joints_cam.to(device),
            )
        )
    if n == 1:
        return loss_fn(preds[0], targets[0])
    a, b = views[0], views[1]
    pair = view_pair_from_rectifications(
        a.virt_from_cam.to(device), a.crop_from_image.to(device), b.virt_from_cam.to(device), b.crop_from_image.to(device)
    )
    return loss_fn(preds[0], targets[0], preds[1], targets[1], pair)


@torch.no_grad()
def evaluate_views(
    model: M3DHMR,
    views: Iterable[ViewBatch],
    device: torch.device | str,
    use_vertices: bool = True,
    external_cue_noise_px: float | None = None,
    seed: int = 0,
) -> HandMetrics:
    """Metrics of ``model`` (run in eval mode) on view batches, camera-space outputs vs ground truth.

    ``use_vertices=False`` leaves the vertex metrics out (prediction and ground-truth topologies differ).
    ``external_cue_noise_px`` None: the network's own 2D joints drive feature sampling and DGP; a number:
    the ground-truth 2D joints plus Gaussian noise of that many crop pixels (seeded by ``seed``) do, as
    MediaPipe's landmarks do in the app.
    """
    was_training = model.training
    model.eval()
    acc = MetricAccumulator()
    noise = torch.Generator().manual_seed(seed)
    for v in views:
        external = None
        if external_cue_noise_px is not None:
            external = noisy_external_joints(v.joints_uv, external_cue_noise_px, noise).to(device)
        out = model(v.crops.to(device), v.k_virt.to(device), joints_2d_external=external,
                    virt_to_cam=v.virt_from_cam.transpose(1, 2).to(device))
        if use_vertices:
            acc.update(out.joints_cam, v.joints_cam, out.vertices_cam, v.verts_cam)
        else:
            acc.update(out.joints_cam, v.joints_cam)
    model.train(was_training)
    return acc.compute()


class CsvLog:
    """Append-only CSV file whose header is fixed by the first row written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fields: list[str] | None = None
        if path.exists():
            with path.open(newline="", encoding="utf-8") as fh:
                header = next(csv.reader(fh), None)
            self._fields = header

    def write(self, row: dict[str, Any]) -> None:
        new = self._fields is None
        if self._fields is None:
            self._fields = list(row)
        with self.path.open("a", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=self._fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)


def _tensorboard_writer(log_dir: Path) -> Any | None:
    if importlib.util.find_spec("tensorboard") is None:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(log_dir))


def save_train_state(path: Path, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, meta: dict[str, Any]) -> None:
    """Optimizer moments, GradScaler and RNG state as safetensors; ``meta`` (JSON-able) as metadata."""
    opt = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {"rng.torch": torch.get_rng_state()}
    for idx, state in opt["state"].items():
        for key, value in state.items():
            t = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            tensors[f"optim.{idx}.{key}"] = t.detach().cpu().contiguous()
    metadata = {
        "format": STATE_FORMAT,
        "param_groups": json.dumps(opt["param_groups"]),
        "scaler": json.dumps({k: float(v) if isinstance(v, torch.Tensor) else v for k, v in scaler.state_dict().items()}),
        "trainer": json.dumps(meta),
    }
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)


def load_train_state(
    path: Path, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler
) -> dict[str, Any]:
    """Inverse of :func:`save_train_state`; returns the trainer metadata (step, epoch, ...)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        metadata = fh.metadata() or {}
    if metadata.get("format") != STATE_FORMAT:
        raise TrainError(f"{path} is not a training-state file ({STATE_FORMAT}); resume from a run folder")
    tensors = load_file(str(path))
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(metadata["param_groups"])})
    scaler_state = json.loads(metadata["scaler"])
    if scaler_state:
        scaler.load_state_dict(scaler_state)
    torch.set_rng_state(tensors["rng.torch"])
    return json.loads(metadata["trainer"])


class Trainer:
    """Owns model, optimizer, data and logs of one run; ``fit()`` trains until the end or a stop."""

    def __init__(
        self,
        cfg: TrainConfig,
        dist: DistInfo,
        device: torch.device,
        *,
        asset: Any | None = None,
        show_progress: bool = True,
    ) -> None:
        if cfg.batch_size % dist.world_size != 0:
            raise TrainError(f"batch_size {cfg.batch_size} is not divisible by the {dist.world_size} processes")
        self.cfg = cfg
        self.dist = dist
        self.device = device
        self.show_progress = show_progress and dist.is_main
        self.out_dir = cfg.resolved_out_dir()
        self.ckpt_dir = self.out_dir / "checkpoints"
        torch.manual_seed(cfg.seed)
        self.asset = asset
        self.model = M3DHMR.from_config(cfg.model_config(), asset=asset).to(device)
        if cfg.init_from is not None:
            load_state_strict(self.model, Path(cfg.init_from))
        self.model.train()
        self.ddp: torch.nn.Module = (
            DistributedDataParallel(self.model, device_ids=[device.index] if device.type == "cuda" else None)
            if dist.enabled
            else self.model
        )
        self.loss_fn = HandMeshLoss(faces=torch.as_tensor(self.model.faces), weights=cfg.loss).to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        use_scaler = cfg.amp and device.type == "cuda" and not torch.cuda.is_bf16_supported()
        self.scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
        self.steps_per_epoch = max(1, cfg.data.samples_per_epoch // cfg.batch_size)
        total = cfg.epochs * self.steps_per_epoch
        self.total_steps = min(total, cfg.max_steps) if cfg.max_steps is not None else total
        self.step = 0
        self.best_pa_mpjpe = math.inf
        self.elapsed_before_s = 0.0
        self._eval_views: list[ViewBatch] | None = None
        self._t0: float | None = None
        self._last_save_t: float | None = None
        self.on_save: Callable[[str, Path], None] | None = None
        """Called on the main rank after every :meth:`save` with the name and the weights path (e.g. to copy them out)."""

    # ----------------------------------------------------------------- checkpoints
    def save(self, name: str = "last") -> Path:
        """Write ``checkpoints/<name>.safetensors`` (+ ``<name>_state.safetensors``); main rank only."""
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        path = self.ckpt_dir / f"{name}.safetensors"
        meta = {
            "step": self.step,
            "epoch": self.step // self.steps_per_epoch,
            "best_pa_mpjpe_mm": self.best_pa_mpjpe,
            "elapsed_s": self.elapsed_before_s + (time.perf_counter() - self._t0 if self._t0 is not None else 0.0),
        }
        save_checkpoint(
            self.model,
            path,
            extra_metadata={"train_config": self.cfg.to_json(), "step": str(self.step), "epoch": str(meta["epoch"])},
        )
        save_train_state(self.ckpt_dir / f"{name}_state.safetensors", self.optimizer, self.scaler, meta)
        self._last_save_t = time.perf_counter()
        if self.on_save is not None:
            self.on_save(name, path)
        return path

    def resume(self, run_dir_or_ckpt: Path) -> None:
        """Load weights and optimizer state from a run folder (its ``checkpoints/last``) or a checkpoint path."""
        p = Path(run_dir_or_ckpt)
        ckpt = p / "checkpoints" / "last.safetensors" if p.is_dir() else p
        state = ckpt.with_name(ckpt.stem + "_state.safetensors")
        if not ckpt.is_file() or not state.is_file():
            raise TrainError(f"cannot resume: {ckpt} and {state} must both exist")
        saved_config = read_checkpoint_metadata(ckpt).config
        if saved_config != self.model.config:
            raise TrainError(
                f"checkpoint {ckpt} was trained with network config {saved_config} but this run builds "
                f"{self.model.config}; resume with the run's own config"
            )
        load_state_strict(self.model, ckpt)
        meta = load_train_state(state, self.optimizer, self.scaler)
        self.step = int(meta["step"])
        self.best_pa_mpjpe = float(meta["best_pa_mpjpe_mm"])
        self.elapsed_before_s = float(meta["elapsed_s"])

    # ----------------------------------------------------------------- evaluation
    def evaluate(self) -> HandMetrics:
        if self._eval_views is None:
            self._eval_views = build_eval_views(self.cfg.data, self.model.config.crop_size)
        return evaluate_views(self.model, self._eval_views, self.device)

    # ----------------------------------------------------------------- loop
    def _elapsed_s(self, t0: float) -> float:
        """Training seconds including earlier runs of a resumed job; the max over ranks under DDP."""
        elapsed = time.perf_counter() - t0 + self.elapsed_before_s
        if self.dist.enabled:
            t = torch.tensor([elapsed], dtype=torch.float64, device=self.device)  # nccl needs a CUDA tensor
            torch_dist.all_reduce(t, op=torch_dist.ReduceOp.MAX)
            elapsed = float(t.item())
        return elapsed

    def schedule_epoch(self, elapsed_s: float) -> int:
        """Epoch used by the learning-rate schedule.

        The step count decides, unless a time budget is set and time runs out first: then progress is
        ``elapsed / time_budget``, so a time-limited CPU run still gets its learning-rate drop at the same
        fraction of the run (30/38 by default) instead of never.
        """
        by_steps = self.step // self.steps_per_epoch
        budget = self.cfg.time_budget_s
        if budget is None:
            return by_steps
        by_time = int(self.cfg.epochs * min(elapsed_s / budget, 1.0))
        return max(by_steps, by_time)

    def _loader(self) -> DataLoader:
        dataset: Dataset = build_train_dataset(self.cfg.data, self.model.config.crop_size)
        sampler = RunBatchSampler(
            start_step=self.step,
            total_steps=self.total_steps,
            global_batch=self.cfg.batch_size,
            dist=self.dist,
            unique_samples=self.cfg.data.unique_samples,
        )
        workers = self.cfg.data.num_workers
        return DataLoader(
            dataset,
            batch_sampler=sampler,
            num_workers=workers,
            collate_fn=collate_samples,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
            prefetch_factor=4 if workers > 0 else None,
        )

    def _log_eval(self, eval_log: CsvLog, tb: Any | None) -> HandMetrics:
        metrics = self.evaluate()
        eval_log.write({"step": self.step, **metrics.to_dict()})
        if tb is not None:
            for k, v in metrics.to_dict().items():
                tb.add_scalar(f"eval/{k}", v, self.step)
        if metrics.pa_mpjpe_mm < self.best_pa_mpjpe:
            self.best_pa_mpjpe = metrics.pa_mpjpe_mm
            self.save("best")
        return metrics

    def fit(self) -> dict[str, Any]:
        """Train from ``self.step`` to the end (or max_steps / time budget). Returns a summary dict."""
        cfg = self.cfg
        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "train_config.json").write_text(cfg.to_json(), encoding="utf-8")
        train_log = CsvLog(self.out_dir / "train_log.csv") if self.dist.is_main else None
        eval_log = CsvLog(self.out_dir / "eval_log.csv") if self.dist.is_main else None
        tb = _tensorboard_writer(self.out_dir / "tb") if self.dist.is_main else None
        self._t0 = t0 = time.perf_counter()
        start_step = self.step
        last_log_t, last_log_step = t0, self.step
        bar = tqdm(total=self.total_steps, initial=self.step, disable=not self.show_progress, unit="step", dynamic_ncols=True)
        sums: dict[str, float] = {}
        count = 0
        first_loss: float | None = None
        last_loss = math.nan
        stopped_early = False
        for views in self._loader():
            elapsed = self._elapsed_s(t0) if cfg.time_budget_s is not None else 0.0
            if cfg.time_budget_s is not None and elapsed >= cfg.time_budget_s:
                stopped_early = self.step < self.total_steps
                break
            epoch = self.schedule_epoch(elapsed)
            for group in self.optimizer.param_groups:
                group["lr"] = lr_at_epoch(cfg, epoch)
            total, terms = compute_loss(
                self.ddp, self.loss_fn, views, self.device, cfg.amp, cfg.external_cue_prob, cfg.external_cue_noise_px
            )
            if not torch.isfinite(total):
                raise TrainError(f"loss became {float(total)} at step {self.step}; lower the lr or check the data")
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(total).backward()
            if cfg.grad_clip_norm > 0:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip_norm)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.step += 1
            loss_value = float(total.detach())
            first_loss = loss_value if first_loss is None else first_loss
            last_loss = loss_value
            sums["loss"] = sums.get("loss", 0.0) + loss_value
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            count += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr_at_epoch(cfg, epoch):.0e}")
            if self.dist.is_main and (self.step % cfg.log_every_steps == 0 or self.step == self.total_steps):
                now = time.perf_counter()
                rate = (self.step - last_log_step) * cfg.batch_size / max(now - last_log_t, 1e-9)
                row = {"step": self.step, "epoch": epoch, "lr": lr_at_epoch(cfg, epoch)}
                row.update({k: v / count for k, v in sums.items()})
                row.update({"samples_per_s": rate, "elapsed_s": now - t0 + self.elapsed_before_s})
                row["step_epoch"] = self.step / self.steps_per_epoch
                assert train_log is not None
                train_log.write(row)
                if tb is not None:
                    for k, v in row.items():
                        tb.add_scalar(f"train/{k}", v, self.step)
                sums, count = {}, 0
                last_log_t, last_log_step = now, self.step
            if cfg.eval_every_steps > 0 and self.step % cfg.eval_every_steps == 0 and self.step < self.total_steps:
                if self.dist.is_main:
                    assert eval_log is not None
                    self._log_eval(eval_log, tb)
                self._barrier()
            if cfg.checkpoint_every_steps > 0 and self.step % cfg.checkpoint_every_steps == 0 and self.dist.is_main:
                self.save("last")
            since_save = time.perf_counter() - (self._last_save_t if self._last_save_t is not None else t0)
            if cfg.checkpoint_every_s is not None and since_save >= cfg.checkpoint_every_s and self.dist.is_main:
                self.save("last")
        bar.close()
        final_metrics: HandMetrics | None = None
        if self.dist.is_main:
            if cfg.eval_every_steps > 0 and eval_log is not None:
                final_metrics = self._log_eval(eval_log, tb)
            self.save("last")
            if tb is not None:
                tb.close()
        self._barrier()
        elapsed = time.perf_counter() - t0
        summary = {
            "steps_run": self.step - start_step,
            "step": self.step,
            "total_steps": self.total_steps,
            "stopped_early": stopped_early,
            "first_loss": first_loss,
            "last_loss": last_loss,
            "elapsed_s": elapsed,
            "samples_per_s": (self.step - start_step) * cfg.batch_size / max(elapsed, 1e-9),
            "final_metrics": final_metrics.to_dict() if final_metrics is not None else None,
            "world_size": self.dist.world_size,
            "ranks_in_sync": self._ranks_in_sync(),
        }
        if self.dist.is_main:
            (self.out_dir / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
        return summary

    def _ranks_in_sync(self) -> bool:
        """True when every process holds the same weights (DDP keeps them identical; a cheap check)."""
        if not self.dist.enabled:
            return True
        checksum = torch.stack([p.detach().double().sum() for p in self.model.parameters()]).sum().reshape(1)
        hi, lo = checksum.clone(), checksum.clone()
        torch_dist.all_reduce(hi, op=torch_dist.ReduceOp.MAX)
        torch_dist.all_reduce(lo, op=torch_dist.ReduceOp.MIN)
        return bool((hi - lo).abs().item() == 0.0)

    def _barrier(self) -> None:
        if self.dist.enabled:
            torch_dist.barrier()


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="training config (.json, or .yaml with PyYAML)")
    parser.add_argument("--resume", default=None, help="run folder or checkpoint to continue from ('auto' = this config's out_dir)")
    parser.add_argument("--out-dir", default=None, help="override the config's out_dir")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many optimizer steps in total")
    parser.add_argument("--time-budget-s", type=float, default=None, help="stop after this many seconds of training")
    parser.add_argument("--device", default=None, help="torch device (default: cuda:LOCAL_RANK if available, else cpu)")
    parser.add_argument("--no-progress", action="store_true", help="disable the tqdm progress bar")
    parser.add_argument("--init-from", default=None, help="initialise the weights from this checkpoint (fresh optimizer)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = _parse_args(argv)
    cfg = load_train_config(args.config)
    overrides: dict[str, Any] = {}
    if args.out_dir is not None:
        overrides["out_dir"] = str(Path(args.out_dir).resolve())
    if args.max_steps is not None:
        overrides["max_steps"] = args.max_steps
    if args.time_budget_s is not None:
        overrides["time_budget_s"] = args.time_budget_s
    if args.init_from is not None:
        overrides["init_from"] = str(Path(args.init_from).resolve())
    cfg = dataclasses.replace(cfg, **overrides)
    dist = setup_distributed()
    try:
        trainer = Trainer(cfg, dist, choose_device(dist, args.device), show_progress=not args.no_progress)
        if args.resume is not None:
            trainer.resume(cfg.resolved_out_dir() if args.resume == "auto" else Path(args.resume))
        summary = trainer.fit()
        if dist.is_main:
            print(json.dumps(summary, indent=2))
        if dist.enabled:
            # Every rank reaches the teardown before any leaves: a rank that destroys its gloo group while
            # another still talks to it aborts ("terminate called without an active exception"), which a
            # loaded machine made happen about once in seven runs. Only on success: after an error the
            # other ranks may sit in a different collective, and torchrun stops them.
            torch_dist.barrier()
        return summary
    finally:
        if dist.enabled and torch_dist.is_initialized():
            torch_dist.destroy_process_group()


if __name__ == "__main__":
    main()
