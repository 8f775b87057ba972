"""Train the fused-cue network on MediaPipe's real outputs: synthetic frames with ground truth, mixed
with real photos that carry MediaPipe's landmarks as pseudo-labels.

    python -m training.train_fused --config training/configs/realtime_fused_cpu.json
    python -m training.train_fused --config training/configs/realtime_fused_cpu.json --evaluate CKPT [--json R.json]

Every batch mixes synthetic hands (full supervision) and real hands (label-free and pseudo-label
terms) from the caches written by ``python -m app.mediapipe_labels``. Each row runs with one cue, drawn
per row: ``fused`` (MediaPipe 2D + 3D landmarks), ``mediapipe`` (2D only) or ``network`` (image only);
on synthetic rows the true hand length is given to the network for a fraction of the rows, so the
camera-space path also learns with a known size. ``real_roll_prob``: that fraction of the real rows is
rolled by up to ``real_roll_max_deg`` with its labels (``training.real_views.rotate_rows``);
``synth_reframe_prob``: that fraction of the synthetic rows is re-framed on a shifted, scaled box
(``reframe_shift_sigma`` crop sides, ``reframe_log_zoom_sigma``; ``training.reframe``).
``synth_joint_box_prob``: that fraction of the synthetic rows (drawn first; the shifted, scaled boxes
go to the rest) is re-framed on a box drawn around its true 2D joints as the synthetic generator draws
its boxes (``training.reframe.joint_box_reframes``).
``generator_per_batch``: that many rows of each batch come straight from the image-only trainer's
generator (``training.mp_data.GeneratorCueDataset``, seed ``generator_seed``): its crop windows and
joint boxes, and the hands MediaPipe misses; they have no MediaPipe landmarks and run the network cue.
``spectrum_mix_prob`` mixes real photos' low-frequency
amplitude spectra into synthetic crops (``training.appearance``). Terms (weights in :class:`FusedLossWeights`):

synthetic rows (ground truth)
  mesh / joints3d: L1 of the size-normalised wrist-relative mesh / joints (shape, without scale)
  aligned: L1 of joints and mesh after the joints' Procrustes similarity onto the truth
      (``training.losses.aligned_l1``): the pose and shape alone, without the orientation error that
      dominates the wrist-relative terms
  normal, edge: M3DHMR's surface terms on the normalised mesh
  dihedral: the bend between every pair of adjacent faces against the true mesh's, so a mesh whose
      vertices are close but jittered (a crumpled surface) pays (``training.losses.dihedral_loss``)
  pose2d + heatmap: the network's own 2D joints (every stack) against the true 2D joints
  scale: |log predicted hand length - log true hand length|
  dgp_joints / dgp_verts: camera-space L1 after DGP (HandDGP)
real rows (no ground truth)
  real_pose2d + real_heatmap: the network's own 2D joints against MediaPipe's landmarks, robust (clipped
      at 15 % of the crop) and weighted by MediaPipe's score
  real_world3d: weak robust L1 between the normalised joints and MediaPipe's world landmarks (crop frame)
  real_reproj: DGP reprojection consistency: camera-space joints projected into the crop against the
      2D joints DGP solved with
  real_prior: bone-length ratios of the normalised joints against the template's
  real_fold: folds between adjacent faces sharper than the rest template's by more than
      ``fold_margin`` (in cosine; ``training.losses.fold_loss``), every cue
  thickness: every row, cue and source: each vertex's distance to the skeleton (the bone segments between
      the mesh's own joints) against the rest template's, beyond ``thickness_margin_m``
      (``models.skin_thickness``); the true meshes keep it to 0.9 mm on average, so on synthetic rows it
      is nearly free, and on real rows it holds the skin on its bones (no pointed knuckles)
  thickness_tail: every row: the mean of the worst ``thickness_tail_fraction`` of vertices' deviation
      beyond the clamp's per-vertex bounds (``assets/skin_thickness_bounds.json``) less
      ``thickness_tail_inset_m``; the few spiking vertices of a pointed knuckle, which the mean above
      dilutes 90 times
  real_limits: the hand model's joint limits: long-finger flexion and sideways bends outside them, in
      radians (``training.joint_limits``)
  real_distill: the normalised mesh of rows run without MediaPipe's 3D landmarks against the same
      network's fused-cue mesh of that crop (detached teacher; ``training.real_views``)
  real_surface: M3DHMR's surface terms (normal + edge) of the same student meshes (both views) against
      the teacher's, so the image-only surface takes the fused mesh's shape and not only its vertices'
      mean position
  real_con2d / real_con3d: M3DHMR's two-view consistency: the crop rotated about its centre (and
      jittered) runs with the network cue; its own 2D joints and normalised 3D joints must be the first
      view's, rotated (``training.real_views``)

Outputs (``out_dir``): ``train_log.csv``, ``eval_log.csv`` (synthetic test hands found by MediaPipe,
fused cue, and real held-out photos' 2D agreement), ``checkpoints/last.safetensors`` and
``best.safetensors`` (loadable with ``models.checkpoint.load_checkpoint``).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader

from models.checkpoint import save_checkpoint
from models.config import get_preset
from models.m3dhmr import M3DHMR, M3DHMROutput
from models.mediapipe_frame import hand_length
from models.hand.asset import load_hand_asset
from models.hand.mesh_topology import face_adjacency
from models.mesh_surface import bend_angles_deg, dihedral_cosines
from models.paths import REPO_ROOT
from training.config import read_json_fields, repo_path
from training.joint_limits import joint_limit_loss, joint_limit_violation
from training.losses import aligned_l1, dihedral_loss, edge_length_loss, fold_loss, heatmap_kl_loss, mesh_edges, normal_loss
from training.metrics import MetricAccumulator, procrustes_align_to_gt
from training.mp_data import (
    CueBatch,
    CueCache,
    CueDataset,
    GeneratorCueDataset,
    collate_cue_samples,
    load_cue_cache,
    merge_cue_caches,
    photo_split,
)
from training.reframe import draw_reframes, joint_box_reframes, reframe_rows
from training.real_views import (
    draw_angles,
    photometric_jitter,
    rotate_crops,
    rotate_points_2d,
    rotate_rows,
    rotation_about_optical_axis,
)
from models.skin_thickness import SkinThickness, load_thickness_bounds
from training.train import CsvLog

CUES: tuple[str, ...] = ("fused", "mediapipe", "network")
BONES: tuple[tuple[int, int], ...] = tuple((p, c) for c, p in enumerate((-1, 0, 1, 2, 3, 0, 5, 6, 7, 0, 9, 10, 11, 0, 13, 14, 15, 0, 17, 18, 19)) if p >= 0)


class FusedTrainError(RuntimeError):
    """A fused training run cannot start (bad config, missing caches)."""


@dataclass(frozen=True)
class FusedLossWeights:
    """Weights of the terms listed in the module docstring; 3D terms are divided by ``length_scale_m``."""

    mesh: float = 1.0
    joints3d: float = 1.0
    aligned: float = 0.0
    normal: float = 0.1
    edge: float = 1.0
    pose2d: float = 1.0
    heatmap: float = 0.1
    scale: float = 0.5
    dgp_joints: float = 1.0
    dgp_verts: float = 0.5
    real_pose2d: float = 1.0
    real_heatmap: float = 0.1
    real_world3d: float = 0.2
    real_reproj: float = 0.5
    real_prior: float = 0.2
    real_limits: float = 0.0
    real_distill: float = 0.0
    real_surface: float = 0.0
    real_con2d: float = 0.0
    real_con3d: float = 0.0
    dihedral: float = 0.0
    real_fold: float = 0.0
    fold_margin: float = 0.05
    thickness: float = 0.0
    thickness_margin_m: float = 0.003
    thickness_tail: float = 0.0
    thickness_tail_fraction: float = 0.02
    thickness_tail_inset_m: float = 0.001
    heatmap_sigma_px: float = 4.0
    length_scale_m: float = 0.2

    def weighted_sum(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """Sum of ``terms`` times their weights; ``real_distill_view`` (the rotated view's teacher term)
        shares ``real_distill``'s weight."""
        alias = {"real_distill_view": "real_distill", "real_surface_view": "real_surface"}
        return torch.stack([getattr(self, alias.get(k, k)) * v for k, v in terms.items()]).sum()


@dataclass(frozen=True)
class FusedTrainConfig:
    """One fused training run. Paths relative to the repository root unless absolute.

    ``skin_clamp_in_training``: keep the preset's skin-thickness clamp (``models.skin_thickness.ThicknessClamp``)
    in the trained model. Off by default: where the clamp acts its radial gradient is zero, so it would hide
    the decoder's spikes from the ``thickness`` term instead of teaching the decoder; it has no weights, so
    ``training.ship --skin-clamp`` switches it on in the shipped config.
    ``freeze_refiner``: the landmark refiner (``models.landmark_refiner``, fitted beforehand by
    ``training.train_refiner`` and brought in by ``warm_start_from``) keeps its weights; the rest of the
    network learns on its corrected landmarks.
    ``ema_decay``: when above 0, the trainer keeps an exponential moving average of the weights (and
    buffers), updated after every step with this decay (0.998: a horizon of about 500 steps); evaluation,
    the ``best`` checkpoint and ``last_ema`` use the average, ``last`` keeps the raw weights (an
    exponential form of the iterate averaging of Polyak & Juditsky, 1992). In phase 18, whose learning
    rate had dropped tenfold for the last 45 % of the steps, the average ended 0.03 mm of PA-MPJPE better
    than the raw weights (10.56 vs 10.59 mm on the validation hands) or equal (10.31 both)."""

    name: str = "realtime_fused"
    model_preset: str = "realtime_fused"
    synth_cache: str = ""
    extra_synth_caches: tuple[str, ...] = ()
    photo_cache: str | None = None
    test_cache: str | None = None
    warm_start_from: str | None = None
    out_dir: str = "runs/realtime_fused"
    batch_size: int = 16
    real_per_batch: int = 4
    lr: float = 1e-3
    lr_drop_fraction: float = 0.8
    lr_gamma: float = 0.1
    time_budget_s: float = 3600.0
    max_steps: int | None = None
    cue_probs: tuple[float, float, float] = (0.55, 0.2, 0.25)
    given_length_prob: float = 0.3
    spectrum_mix_prob: float = 0.0
    view_max_deg: float = 30.0
    real_roll_prob: float = 0.0
    real_roll_max_deg: float = 180.0
    synth_reframe_prob: float = 0.0
    reframe_shift_sigma: float = 0.04
    reframe_log_zoom_sigma: float = 0.07
    synth_joint_box_prob: float = 0.0
    generator_per_batch: int = 0
    generator_seed: int = 0
    eval_every_steps: int = 300
    eval_samples: int = 400
    checkpoint_every_steps: int = 100
    log_every_steps: int = 10
    num_workers: int = 1
    seed: int = 0
    skin_clamp_in_training: bool = False
    freeze_refiner: bool = True
    ema_decay: float = 0.0
    loss: FusedLossWeights = field(default_factory=FusedLossWeights)

    def resolve(self, path: str | None) -> Path | None:
        return None if path is None or path == "" else repo_path(path)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)


def load_fused_config(path: Path | str) -> FusedTrainConfig:
    """Load a JSON config; unknown fields are an error."""
    _, raw = read_json_fields(path, FusedTrainConfig, FusedTrainError, "training config")
    if "loss" in raw:
        raw["loss"] = FusedLossWeights(**raw["loss"])
    return FusedTrainConfig(**raw)


# --------------------------------------------------------------------------------------------- model


def warm_start(model: M3DHMR, path: Path) -> dict[str, list[str]]:
    """Copy every tensor of a checkpoint whose name and shape match; widen input layers that gained the
    fused channels (old columns copied, new ones zero); when layers were widened (a model without the fused
    inputs), zero the decoder's output head so that the landmark skinning skip alone defines the first
    predictions. Returns what was copied/widened/skipped."""
    from safetensors.torch import load_file

    source = load_file(str(path))
    target = model.state_dict()
    report: dict[str, list[str]] = {"copied": [], "widened": [], "skipped": []}
    with torch.no_grad():
        for name, tensor in target.items():
            if name not in source:
                report["skipped"].append(name)
                continue
            src = source[name]
            if src.shape == tensor.shape:
                tensor.copy_(src)
                report["copied"].append(name)
            elif src.ndim == 2 and tensor.ndim == 2 and src.shape[0] == tensor.shape[0] and src.shape[1] < tensor.shape[1]:
                tensor.zero_()
                tensor[:, : src.shape[1]] = src
                report["widened"].append(name)
            else:
                report["skipped"].append(name)
        if model.skinning is not None and report["widened"]:
            # coming from a model without the fused inputs: its decoder output would double-count the pose
            model.decoder.head.weight.zero_()
            model.decoder.head.bias.zero_()
    model.load_state_dict(target)
    return report


# --------------------------------------------------------------------------------------------- forward + loss


def draw_cues(batch: int, probs: tuple[float, ...], generator: torch.Generator) -> torch.Tensor:
    """Cue index per row (0 fused, 1 mediapipe, 2 network), ``(B,)`` int64."""
    p = torch.tensor(probs, dtype=torch.float64)
    return torch.multinomial(p / p.sum(), batch, replacement=True, generator=generator)


def restrict_cues(cues: torch.Tensor, has_mp: torch.Tensor) -> torch.Tensor:
    """``cues (B,)`` with the rows that have no MediaPipe landmarks (``has_mp (B,)`` False) set to the
    ``network`` cue, the only one they can run."""
    return torch.where(has_mp, cues, torch.full_like(cues, CUES.index("network")))


def forward_batch(model: M3DHMR, batch: CueBatch, cues: torch.Tensor, given_length: torch.Tensor | None) -> M3DHMROutput:
    """Run the model on a batch with per-row cues (see :func:`draw_cues`); ``given_length (B,)`` metres
    where > 0 fixes the hand length of that row."""
    external_mask = (cues <= 1).to(batch.crops.dtype)
    lm_mask = (cues == 0).to(batch.crops.dtype)
    kwargs: dict[str, Any] = {}
    if given_length is not None:
        kwargs = {"hand_length_given": given_length.clamp_min(1e-3), "hand_length_mask": (given_length > 0).to(batch.crops.dtype)}
    return model(batch.crops, batch.K_virt, joints_2d_external=batch.mp_uv, external_mask=external_mask,
                 virt_to_cam=batch.virt_from_cam.transpose(1, 2), landmarks_3d=batch.mp_world_virt,
                 landmarks_3d_mask=lm_mask, **kwargs)


def _unit(points_rel: torch.Tensor, length: torch.Tensor, template_length: float) -> torch.Tensor:
    return points_rel * (template_length / length.clamp_min(1e-3)).reshape(-1, 1, 1)


class FusedLoss(torch.nn.Module):
    """All terms of the module docstring for one forward; returns (total, detached terms)."""

    def __init__(self, faces: np.ndarray, template_vertices: torch.Tensor, template_joints: torch.Tensor,
                 template_length: float, weights: FusedLossWeights, thickness: SkinThickness | None = None) -> None:
        super().__init__()
        if (weights.thickness > 0 or weights.thickness_tail > 0) and thickness is None:
            raise ValueError("FusedLoss: the thickness terms need a SkinThickness")
        self.thickness = thickness
        tail_bounds = torch.zeros(0)
        if weights.thickness_tail > 0:
            tail_bounds = torch.from_numpy(load_thickness_bounds(num_vertices=template_vertices.shape[0]))
            tail_bounds = (tail_bounds - weights.thickness_tail_inset_m).clamp_min(0.0)
        self.register_buffer("tail_bounds", tail_bounds, persistent=False)
        faces_t = torch.as_tensor(faces, dtype=torch.long)
        self.register_buffer("faces", faces_t, persistent=False)
        self.register_buffer("edges", mesh_edges(faces_t), persistent=False)
        adjacency = torch.from_numpy(face_adjacency(faces_t.numpy()))
        self.register_buffer("adjacency", adjacency, persistent=False)
        rest = dihedral_cosines(template_vertices.detach().double().unsqueeze(0), faces_t, adjacency)[0].float()
        self.register_buffer("rest_cosines", rest, persistent=False)
        bones = torch.tensor(BONES)
        lengths = (template_joints[bones[:, 1]] - template_joints[bones[:, 0]]).norm(dim=-1)
        self.register_buffer("bone_ratio", lengths / lengths.sum(), persistent=False)
        self.register_buffer("bones", bones, persistent=False)
        self.template_length = template_length
        self.w = weights

    def forward(self, out: M3DHMROutput, batch: CueBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        w, s = self.w, self.w.length_scale_m
        crop = float(batch.crops.shape[-1])
        terms: dict[str, torch.Tensor] = {}
        gt = batch.has_gt
        real = ~gt
        joints_unit = _unit(out.joints_rel, hand_length(out.joints_rel), self.template_length)
        if gt.any():
            g = gt
            gt_len = hand_length(batch.joints_rel[g])
            gt_verts_unit = _unit(batch.verts_rel[g], gt_len, self.template_length)
            gt_joints_unit = _unit(batch.joints_rel[g], gt_len, self.template_length)
            pred_verts = out.vertices_unit[g]
            terms["mesh"] = (pred_verts - gt_verts_unit).abs().mean() / s
            terms["joints3d"] = (joints_unit[g] - gt_joints_unit).abs().mean() / s
            if w.aligned > 0:
                terms["aligned"] = aligned_l1(joints_unit[g], gt_joints_unit, s, pred_verts, gt_verts_unit)
            terms["normal"] = normal_loss(pred_verts, gt_verts_unit, self.faces)
            terms["edge"] = edge_length_loss(pred_verts, gt_verts_unit, self.edges, s)
            if w.dihedral > 0:
                terms["dihedral"] = dihedral_loss(pred_verts, gt_verts_unit, self.faces, self.adjacency)
            stacks = out.joints_2d_stacks[g]
            terms["pose2d"] = (stacks - batch.joints_uv[g].unsqueeze(1)).abs().mean() / crop
            terms["heatmap"] = heatmap_kl_loss(out.heatmaps[g], batch.joints_uv[g], int(crop), w.heatmap_sigma_px)
            terms["scale"] = (torch.log(out.hand_length_pred[g]) - torch.log(gt_len)).abs().mean()
            terms["dgp_joints"] = (out.joints_cam[g] - batch.joints_cam[g]).abs().mean() / s
            terms["dgp_verts"] = (out.vertices_cam[g] - batch.verts_cam[g]).abs().mean() / s
        if w.thickness > 0:
            assert self.thickness is not None
            terms["thickness"] = self.thickness.loss(out.vertices_unit, w.thickness_margin_m, s)
        if w.thickness_tail > 0:
            assert self.thickness is not None
            terms["thickness_tail"] = self.thickness.tail_loss(out.vertices_unit, self.tail_bounds,
                                                               w.thickness_tail_fraction, s)
        if real.any():
            r = real
            score = batch.mp_score[r].clamp(0.0, 1.0).reshape(-1, 1, 1, 1)
            diff = (out.joints_2d_stacks[r] - batch.mp_uv[r].unsqueeze(1)).abs() / crop
            terms["real_pose2d"] = (diff.clamp_max(0.15) * score).mean()
            terms["real_heatmap"] = heatmap_kl_loss(out.heatmaps[r], batch.mp_uv[r], int(crop), w.heatmap_sigma_px)
            mp_unit = _unit(batch.mp_world_virt[r], hand_length(batch.mp_world_virt[r]), self.template_length)
            terms["real_world3d"] = ((joints_unit[r] - mp_unit).abs() / s).clamp_max(0.1).mean()
            virt = out.joints_virt[r]
            uvw = virt @ batch.K_virt[r].transpose(1, 2)
            projected = uvw[..., :2] / uvw[..., 2:3].clamp_min(1e-3)
            terms["real_reproj"] = ((projected - out.joints_2d_used[r]).abs() / crop).clamp_max(0.2).mean()
            bone = (joints_unit[r][:, self.bones[:, 1]] - joints_unit[r][:, self.bones[:, 0]]).norm(dim=-1)
            ratio = bone / bone.sum(dim=-1, keepdim=True).clamp_min(1e-6)
            terms["real_prior"] = (ratio - self.bone_ratio).abs().mean() * len(BONES)
            if w.real_limits > 0:
                terms["real_limits"] = joint_limit_loss(joints_unit[r])
            if w.real_fold > 0:
                terms["real_fold"] = fold_loss(out.vertices_unit[r], self.rest_cosines, self.faces, self.adjacency,
                                               w.fold_margin)
        return w.weighted_sum(terms), {k: v.detach() for k, v in terms.items()}


def real_view_terms(model: M3DHMR, out: M3DHMROutput, batch: CueBatch, cues: torch.Tensor, weights: FusedLossWeights,
                    generator: torch.Generator, max_deg: float,
                    surface: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """``real_distill``, ``real_surface``, ``real_con2d`` and ``real_con3d`` (module docstring) on the real
    rows of ``batch``; terms whose weight is 0 are not computed (nor are their extra forwards run).
    ``surface``: the mesh's (faces (F, 3), edges (E, 2)) int64, needed when ``real_surface`` > 0."""
    real = ~batch.has_gt
    terms: dict[str, torch.Tensor] = {}
    want_surface = weights.real_surface > 0
    if want_surface and surface is None:
        raise ValueError("real_view_terms: real_surface needs the mesh's (faces, edges)")
    mesh = cast(tuple[torch.Tensor, torch.Tensor], surface)  # only used when want_surface, i.e. not None
    want_teacher = weights.real_distill > 0 or want_surface
    want_view = weights.real_con2d > 0 or weights.real_con3d > 0 or want_teacher
    if not real.any() or not (want_teacher or want_view):
        return terms
    s, length = weights.length_scale_m, model.template_hand_length
    rows = real.nonzero().squeeze(1)
    sub = CueBatch(**{k: getattr(batch, k)[rows] for k in batch.__dataclass_fields__})
    n, crop = len(rows), int(batch.crops.shape[-1])
    row_cues = cues[rows]
    teacher_verts = None
    if want_teacher:
        with torch.no_grad():
            teacher = forward_batch(model, sub, torch.zeros_like(row_cues), None)
        teacher_verts = teacher.vertices_unit.detach()
        student = row_cues != 0
        if student.any() and weights.real_distill > 0:
            terms["real_distill"] = (out.vertices_unit[rows][student] - teacher_verts[student]).abs().mean() / s
        if student.any() and want_surface:
            terms["real_surface"] = _surface_gap(out.vertices_unit[rows][student], teacher_verts[student], mesh, s)
    angles = draw_angles(n, max_deg, generator).to(batch.crops.device)
    view = dataclasses.replace(sub, crops=photometric_jitter(rotate_crops(sub.crops, angles), generator))
    second = forward_batch(model, view, torch.full_like(row_cues, CUES.index("network")), None)
    rot3 = rotation_about_optical_axis(angles)
    if weights.real_con2d > 0:
        expected = rotate_points_2d(out.joints_2d_pred[rows], angles, crop)
        terms["real_con2d"] = ((second.joints_2d_pred - expected).abs() / crop).clamp_max(0.15).mean()
    if weights.real_con3d > 0:
        first = _unit(out.joints_rel[rows], hand_length(out.joints_rel[rows]), length)
        first = torch.where((row_cues == 0).reshape(-1, 1, 1), first.detach(), first)  # the fused view is a teacher
        own = _unit(second.joints_rel, hand_length(second.joints_rel), length)
        terms["real_con3d"] = ((own - first @ rot3.transpose(1, 2)).abs() / s).clamp_max(0.1).mean()
    if teacher_verts is not None:
        rotated_teacher = teacher_verts @ rot3.transpose(1, 2)
        if weights.real_distill > 0:
            terms["real_distill_view"] = (second.vertices_unit - rotated_teacher).abs().mean() / s
        if want_surface:
            terms["real_surface_view"] = _surface_gap(second.vertices_unit, rotated_teacher, mesh, s)
    return terms


def _surface_gap(student: torch.Tensor, teacher: torch.Tensor, surface: tuple[torch.Tensor, torch.Tensor],
                 length_scale: float) -> torch.Tensor:
    """M3DHMR's normal + edge-length terms of ``(B, V, 3)`` student meshes against teacher meshes;
    ``surface`` = (faces (F, 3), edges (E, 2))."""
    faces, edges = surface
    return normal_loss(student, teacher, faces) + edge_length_loss(student, teacher, edges, length_scale)


# --------------------------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate_synthetic(model: M3DHMR, dataset: CueDataset, cue: str, batch_size: int = 64,
                       given_length: bool = False, thickness: SkinThickness | None = None) -> dict[str, float]:
    """Metrics on synthetic cached hands (found by MediaPipe) with one cue; camera-space vs ground truth.
    Beside :class:`training.metrics.MetricAccumulator`'s: ``dihedral_deg``, the predicted meshes' mean
    bend between adjacent faces (``models.mesh_surface.bend_angles_deg``), and ``dihedral_gap_deg``, its mean
    absolute difference from the true mesh's, edge by edge; with ``thickness``, ``thickness_mm``, the mean
    per-vertex deviation of the skin's distance to the skeleton from the template's
    (``models.skin_thickness``; the true meshes': ``true_thickness_mm``)."""
    was = model.training
    model.eval()
    acc = MetricAccumulator()
    lengths_pred, lengths_gt, bends, bend_gaps, skin, true_skin = [], [], [], [], [], []
    cue_id = CUES.index(cue)
    for start in range(0, len(dataset), batch_size):
        batch = collate_cue_samples([dataset[i] for i in range(start, min(len(dataset), start + batch_size))])
        cues = torch.full((len(batch),), cue_id, dtype=torch.long)
        given = hand_length(batch.joints_cam) if given_length else None
        out = forward_batch(model, batch, cues, given)
        acc.update(out.joints_cam, batch.joints_cam, out.vertices_cam, batch.verts_cam)
        bend = bend_angles_deg(out.vertices_cam, model.faces)
        bends.append(bend.mean(dim=1))
        bend_gaps.append((bend - bend_angles_deg(batch.verts_cam, model.faces)).abs().mean(dim=1))
        if thickness is not None:
            skin.append(thickness.deviation(out.vertices_unit).mean(dim=1))
            gt_len = hand_length(batch.joints_rel)
            true_skin.append(thickness.deviation(_unit(batch.verts_rel, gt_len, model.template_hand_length)).mean(dim=1))
        lengths_pred.append(out.hand_length_used)
        lengths_gt.append(hand_length(batch.joints_cam))
    model.train(was)
    metrics = acc.compute().to_dict()
    ratio = torch.cat(lengths_pred) / torch.cat(lengths_gt)
    metrics["hand_length_ratio_median"] = float(ratio.median())
    metrics["hand_length_abs_log_error"] = float(torch.log(ratio).abs().mean())
    metrics["dihedral_deg"] = float(torch.cat(bends).mean())
    metrics["dihedral_gap_deg"] = float(torch.cat(bend_gaps).mean())
    if thickness is not None:
        metrics["thickness_mm"] = 1e3 * float(torch.cat(skin).mean())
        metrics["true_thickness_mm"] = 1e3 * float(torch.cat(true_skin).mean())
    return metrics


@torch.no_grad()
def evaluate_real_2d(model: M3DHMR, dataset: CueDataset, batch_size: int = 64,
                     thickness: SkinThickness | None = None) -> dict[str, float]:
    """Held-out real hands with the network cue: its own 2D joints against MediaPipe's landmarks, in
    fractions of the landmark box diagonal (mean, PCK@0.1) and the extent ratio (own 2D box diagonal /
    landmark box diagonal); in 3D, both at the template's hand length: ``real_world3d_pa_mm``, PA-MPJPE of
    its joints against MediaPipe's world landmarks, and ``real_fused_gap_mm``, the mean vertex distance
    between its mesh and the same network's fused-cue mesh of that crop; ``real_limits_deg``, the mean
    summed angle (degrees) by which its long-finger joints lie outside the joint limits
    (``training.joint_limits``, 5 degree margin); ``real_dihedral_deg`` / ``real_fused_dihedral_deg``, the
    mean bend between adjacent faces of its network-cue / fused-cue meshes
    (``models.mesh_surface.bend_angles_deg``; higher is more crumpled); with ``thickness``,
    ``real_thickness_mm`` / ``real_fused_thickness_mm``, the mean per-vertex deviation of the skin's
    distance to the skeleton from the template's (``models.skin_thickness``)."""
    was = model.training
    model.eval()
    errors, extents, world_pa, teacher_gap, limits, bends, fused_bends = [], [], [], [], [], [], []
    skin: list[torch.Tensor] = []
    fused_skin: list[torch.Tensor] = []
    length = model.template_hand_length
    for start in range(0, len(dataset), batch_size):
        batch = collate_cue_samples([dataset[i] for i in range(start, min(len(dataset), start + batch_size))])
        out = forward_batch(model, batch, torch.full((len(batch),), 2, dtype=torch.long), None)
        teacher = forward_batch(model, batch, torch.zeros((len(batch),), dtype=torch.long), None)
        ref = batch.mp_uv
        diag = (ref.amax(1) - ref.amin(1)).norm(dim=-1).clamp_min(1e-6)
        own = out.joints_2d_pred
        errors.append((own - ref).norm(dim=-1) / diag.reshape(-1, 1))
        extents.append((own.amax(1) - own.amin(1)).norm(dim=-1) / diag)
        world = _unit(batch.mp_world_virt, hand_length(batch.mp_world_virt), length)
        aligned = procrustes_align_to_gt(_unit(out.joints_rel, hand_length(out.joints_rel), length), world)
        world_pa.append((aligned - world).norm(dim=-1).mean(dim=-1))
        teacher_gap.append((out.vertices_unit - teacher.vertices_unit).norm(dim=-1).mean(dim=-1))
        limits.append(joint_limit_violation(out.joints_rel).flatten(1).sum(-1))
        bends.append(bend_angles_deg(out.vertices_unit, model.faces).mean(dim=1))
        fused_bends.append(bend_angles_deg(teacher.vertices_unit, model.faces).mean(dim=1))
        if thickness is not None:
            skin.append(thickness.deviation(out.vertices_unit).mean(dim=1))
            fused_skin.append(thickness.deviation(teacher.vertices_unit).mean(dim=1))
    model.train(was)
    err = torch.cat(errors)
    extra = ({"real_thickness_mm": 1e3 * float(torch.cat(skin).mean()),
              "real_fused_thickness_mm": 1e3 * float(torch.cat(fused_skin).mean())} if thickness is not None else {})
    return {**extra, "real_2d_mean": float(err.mean()), "real_pck10": float((err < 0.1).float().mean()),
            "real_extent_ratio": float(torch.cat(extents).median()),
            "real_world3d_pa_mm": 1e3 * float(torch.cat(world_pa).mean()),
            "real_fused_gap_mm": 1e3 * float(torch.cat(teacher_gap).mean()),
            "real_limits_deg": math.degrees(float(torch.cat(limits).mean())),
            "real_dihedral_deg": float(torch.cat(bends).mean()),
            "real_fused_dihedral_deg": float(torch.cat(fused_bends).mean())}


# --------------------------------------------------------------------------------------------- loop


def skin_thickness_of(model: M3DHMR) -> SkinThickness:
    """The skin-thickness measure (``models.skin_thickness``) of ``model``'s template and joint regressor,
    with the hand asset's skinning weights; on the CPU."""
    return SkinThickness(model.decoder.template.detach().cpu(), model.joint_regressor.detach().cpu(),
                         np.asarray(load_hand_asset().skin_weights))


def held_out_photos(photos: CueCache, num_vertices: int) -> CueDataset:
    """The fixed held-out part of a photo cache (``training.mp_data.photo_split``), without augmentation."""
    return CueDataset(None, photos, augment=False, num_vertices=num_vertices,
                      photo_indices=photo_split(photos, held_out=True))


def _as_list(samples: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    return samples


class FusedTrainer:
    """Owns the model, optimizer, data and logs of one fused run."""

    def __init__(self, cfg: FusedTrainConfig, device: torch.device | str = "cpu", show_progress: bool = True) -> None:
        self.cfg = cfg
        self.device = torch.device(device)
        self.show_progress = show_progress
        torch.manual_seed(cfg.seed)
        preset = get_preset(cfg.model_preset)
        if preset.skin_clamp and not cfg.skin_clamp_in_training:
            preset = dataclasses.replace(preset, skin_clamp=False)
        self.model = M3DHMR.from_config(preset).to(self.device)
        self.warm_report: dict[str, list[str]] | None = None
        warm = cfg.resolve(cfg.warm_start_from)
        if warm is not None:
            self.warm_report = warm_start(self.model, warm)
        synth_path = cfg.resolve(cfg.synth_cache)
        if synth_path is None:
            raise FusedTrainError("synth_cache is required")
        extra = [load_cue_cache(self.cfg.resolve(p)) for p in cfg.extra_synth_caches]  # type: ignore[arg-type]
        self.synth = merge_cue_caches([load_cue_cache(synth_path), *extra])
        self.photos = load_cue_cache(cfg.resolve(cfg.photo_cache)) if cfg.photo_cache else None  # type: ignore[arg-type]
        self.train_synth = CueDataset(self.synth, None, augment=True, seed=cfg.seed, spectrum_source=self.photos,
                                      spectrum_mix_prob=cfg.spectrum_mix_prob)
        num_vertices = int(self.model.decoder.template.shape[0])
        self.train_real = (CueDataset(None, self.photos, augment=True, seed=cfg.seed + 1, num_vertices=num_vertices)
                           if self.photos is not None else None)
        test_path = cfg.resolve(cfg.test_cache)
        self.test_set: CueDataset | None = None
        if test_path is not None:
            test = load_cue_cache(test_path)
            keep = np.arange(min(len(test), cfg.eval_samples))
            test.arrays = {k: v[keep] for k, v in test.arrays.items()}
            self.test_set = CueDataset(test, None, augment=False)
        self.real_held_out: CueDataset | None = None
        if self.photos is not None:
            self.real_held_out = held_out_photos(self.photos, num_vertices)
        template_joints = self.model.joint_regressor @ self.model.decoder.template
        self.thickness = skin_thickness_of(self.model).to(self.device)
        self.loss_fn = FusedLoss(self.model.faces, self.model.decoder.template.cpu(), template_joints.cpu(),
                                 self.model.template_hand_length, cfg.loss, self.thickness).to(self.device)
        if self.model.refiner is not None and cfg.freeze_refiner:
            self.model.refiner.requires_grad_(False)
        if self.model.pull_refiner is not None:  # fitted on the landmarks alone; it only serves the pull
            self.model.pull_refiner.requires_grad_(False)
        self.optimizer = torch.optim.Adam([p for p in self.model.parameters() if p.requires_grad], lr=cfg.lr)
        if not 0.0 <= cfg.ema_decay < 1.0:
            raise FusedTrainError(f"ema_decay must lie in [0, 1), got {cfg.ema_decay}")
        self.ema: AveragedModel | None = None
        if cfg.ema_decay > 0:
            self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
        self.out_dir = cfg.resolve(cfg.out_dir) or REPO_ROOT / "runs" / cfg.name
        self.step = 0
        self.best = math.inf
        self.generator = torch.Generator().manual_seed(cfg.seed)

    def _loaders(self) -> tuple[DataLoader, DataLoader | None, DataLoader | None]:
        synth_bs = (self.cfg.batch_size - (self.cfg.real_per_batch if self.train_real is not None else 0)
                    - self.cfg.generator_per_batch)
        if synth_bs < 1:
            raise FusedTrainError(f"batch_size {self.cfg.batch_size} leaves no room for cached synthetic rows after "
                                  f"real_per_batch and generator_per_batch")
        synth = DataLoader(self.train_synth, batch_size=synth_bs, shuffle=True, drop_last=True, collate_fn=_as_list,
                           num_workers=self.cfg.num_workers, persistent_workers=self.cfg.num_workers > 0,
                           generator=torch.Generator().manual_seed(self.cfg.seed))
        real = None
        if self.train_real is not None and self.cfg.real_per_batch > 0:
            real = DataLoader(self.train_real, batch_size=self.cfg.real_per_batch, shuffle=True, drop_last=True,
                              collate_fn=_as_list, num_workers=0, generator=torch.Generator().manual_seed(self.cfg.seed + 1))
        generated = None
        if self.cfg.generator_per_batch > 0:
            generated = DataLoader(GeneratorCueDataset(self.cfg.generator_seed, crop_size=get_preset(self.cfg.model_preset).crop_size),
                                   batch_size=self.cfg.generator_per_batch,
                                   shuffle=True, drop_last=True, collate_fn=_as_list, num_workers=self.cfg.num_workers,
                                   persistent_workers=self.cfg.num_workers > 0,
                                   generator=torch.Generator().manual_seed(self.cfg.seed + 2))
        return synth, real, generated

    @property
    def kept_model(self) -> M3DHMR:
        """The weights that are evaluated and kept as ``best``: the moving average when ``ema_decay`` is
        set, else the trained model itself."""
        return self.model if self.ema is None else self.ema.module  # type: ignore[return-value]

    def save(self, name: str, extra: dict[str, Any] | None = None, model: M3DHMR | None = None) -> Path:
        path = self.out_dir / "checkpoints" / f"{name}.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"train_config": self.cfg.to_json(), "step": str(self.step), "trainer": "training.train_fused"}
        if extra:
            meta.update({k: json.dumps(v) for k, v in extra.items()})
        save_checkpoint(self.model if model is None else model, path, extra_metadata=meta)
        return path

    def _save_last(self) -> None:
        self.save("last")
        if self.ema is not None:
            self.save("last_ema", model=self.kept_model)

    def evaluate(self) -> dict[str, float]:
        row: dict[str, float] = {}
        model = self.kept_model
        if self.test_set is not None:
            metrics = evaluate_synthetic(model, self.test_set, "fused", thickness=self.thickness)
            row.update({f"fused_{k}": v for k, v in metrics.items() if isinstance(v, (int, float))})
        if self.real_held_out is not None:
            row.update(evaluate_real_2d(model, self.real_held_out, thickness=self.thickness))
        return row

    def _some_rows(self, candidates: torch.Tensor, prob: float) -> torch.Tensor:
        """Indices of the rows where ``candidates (B,)`` is true, each kept with probability ``prob``
        (drawn from the trainer's generator)."""
        rows = candidates.nonzero().squeeze(1)
        return rows[(torch.rand(len(rows), generator=self.generator) < prob).to(self.device)]

    def fit(self) -> dict[str, Any]:
        cfg = self.cfg
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "train_config.json").write_text(cfg.to_json(), encoding="utf-8")
        train_log = CsvLog(self.out_dir / "train_log.csv")
        eval_log = CsvLog(self.out_dir / "eval_log.csv")
        synth_loader, real_loader, generated_loader = self._loaders()
        real_iter = iter(real_loader) if real_loader is not None else None
        generated_iter = iter(generated_loader) if generated_loader is not None else None
        t0 = time.perf_counter()
        sums: dict[str, float] = {}
        count = 0
        epoch = 0
        done = False
        self.model.train()
        while not done:
            self.train_synth.epoch = epoch
            for samples in synth_loader:
                elapsed = time.perf_counter() - t0
                if elapsed >= cfg.time_budget_s or (cfg.max_steps is not None and self.step >= cfg.max_steps):
                    done = True
                    break
                if real_iter is not None:
                    try:
                        samples = samples + next(real_iter)
                    except StopIteration:
                        assert real_loader is not None
                        real_iter = iter(real_loader)
                        samples = samples + next(real_iter)
                if generated_iter is not None:
                    samples = samples + next(generated_iter)
                batch = collate_cue_samples(samples).to(self.device)
                free = batch.has_gt & batch.has_mp
                if cfg.synth_joint_box_prob > 0:
                    pick = self._some_rows(free, cfg.synth_joint_box_prob)
                    centre, zoom = joint_box_reframes(batch.joints_uv[pick], int(batch.crops.shape[-1]), self.generator)
                    batch = reframe_rows(batch, pick, centre.to(self.device), zoom.to(self.device))
                    free[pick] = False
                if cfg.synth_reframe_prob > 0:
                    pick = self._some_rows(free, cfg.synth_reframe_prob)
                    centre, zoom = draw_reframes(len(pick), int(batch.crops.shape[-1]), cfg.reframe_shift_sigma,
                                                 cfg.reframe_log_zoom_sigma, self.generator)
                    batch = reframe_rows(batch, pick, centre.to(self.device), zoom.to(self.device))
                if cfg.real_roll_prob > 0:
                    pick = self._some_rows(~batch.has_gt, cfg.real_roll_prob)
                    batch = rotate_rows(batch, pick, draw_angles(len(pick), cfg.real_roll_max_deg, self.generator).to(self.device))
                progress = max(elapsed / cfg.time_budget_s, (self.step / cfg.max_steps) if cfg.max_steps else 0.0)
                lr = cfg.lr * (cfg.lr_gamma if progress >= cfg.lr_drop_fraction else 1.0)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                cues = draw_cues(len(batch), cfg.cue_probs, self.generator).to(self.device)
                cues = restrict_cues(cues, batch.has_mp)
                given = None
                if cfg.given_length_prob > 0:
                    pick = (torch.rand(len(batch), generator=self.generator) < cfg.given_length_prob).to(self.device) & batch.has_gt
                    given = torch.where(pick, hand_length(batch.joints_cam), torch.zeros(len(batch), device=self.device))
                out = forward_batch(self.model, batch, cues, given)
                total, terms = self.loss_fn(out, batch)
                extra = real_view_terms(self.model, out, batch, cues, cfg.loss, self.generator, cfg.view_max_deg,
                                        (self.loss_fn.faces, self.loss_fn.edges))
                if extra:
                    total = total + cfg.loss.weighted_sum(extra)
                    terms.update({k: v.detach() for k, v in extra.items()})
                if not torch.isfinite(total):
                    raise FusedTrainError(f"loss became {float(total)} at step {self.step}")
                self.optimizer.zero_grad(set_to_none=True)
                total.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
                self.optimizer.step()
                if self.ema is not None:
                    self.ema.update_parameters(self.model)
                self.step += 1
                sums["loss"] = sums.get("loss", 0.0) + float(total.detach())
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
                count += 1
                if self.step % cfg.log_every_steps == 0:
                    row = {"step": self.step, "lr": lr, "elapsed_s": round(time.perf_counter() - t0, 1)}
                    row.update({k: round(v / count, 5) for k, v in sums.items()})
                    train_log.write(row)
                    if self.show_progress:
                        print(json.dumps(row), flush=True)
                    sums, count = {}, 0
                if cfg.checkpoint_every_steps > 0 and self.step % cfg.checkpoint_every_steps == 0:
                    self._save_last()
                if cfg.eval_every_steps > 0 and self.step % cfg.eval_every_steps == 0:
                    self._eval_and_keep(eval_log)
            epoch += 1
        final = self._eval_and_keep(eval_log)
        self._save_last()
        summary = {"steps": self.step, "elapsed_s": time.perf_counter() - t0, "final": final,
                   "warm_start": {k: len(v) for k, v in (self.warm_report or {}).items()}}
        (self.out_dir / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
        return summary

    def _eval_and_keep(self, eval_log: CsvLog) -> dict[str, float]:
        row = self.evaluate()
        eval_log.write({"step": self.step, **row})
        if self.show_progress:
            print("eval", json.dumps(row), flush=True)
        # model selection: synthetic fused PA-MPJPE plus the real 2D error (both lower is better)
        score = row.get("fused_pa_mpjpe_mm", 0.0) + 100.0 * row.get("real_2d_mean", 0.0)
        if score < self.best:
            self.best = score
            self.save("best", {"eval": row}, model=self.kept_model)
        return row


def evaluate_checkpoint(checkpoint: Path, cfg: FusedTrainConfig) -> dict[str, Any]:
    """Crop-level report of a checkpoint: the cached synthetic test hands (found by MediaPipe) with every cue,
    hand size unknown and given, and the held-out real photos' 2D agreement (network cue)."""
    from models.checkpoint import load_checkpoint

    model = load_checkpoint(checkpoint).eval()
    thickness = skin_thickness_of(model)
    report: dict[str, Any] = {"checkpoint": str(checkpoint)}
    test_path = cfg.resolve(cfg.test_cache)
    if test_path is not None:
        test = CueDataset(load_cue_cache(test_path), None, augment=False)
        report["test_hands"] = len(test)
        for cue in CUES:
            for given in (False, True):
                report[f"{cue}{'_true_size' if given else ''}"] = evaluate_synthetic(model, test, cue, given_length=given,
                                                                                   thickness=thickness)
    photo_path = cfg.resolve(cfg.photo_cache)
    if photo_path is not None:
        held = held_out_photos(load_cue_cache(photo_path), int(model.decoder.template.shape[0]))
        report["real_held_out_hands"] = len(held)
        report["real_held_out_2d_network_cue"] = evaluate_real_2d(model, held, thickness=thickness)
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m training.train_fused", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--evaluate", type=Path, default=None, metavar="CHECKPOINT",
                        help="do not train: report this checkpoint on the config's test and held-out caches")
    parser.add_argument("--json", type=Path, default=None, help="with --evaluate: also write the report here")
    parser.add_argument("--time-budget-s", type=float, default=None)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--out-dir", default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    cfg = load_fused_config(args.config)
    overrides: dict[str, Any] = {}
    if args.time_budget_s is not None:
        overrides["time_budget_s"] = args.time_budget_s
    if args.max_steps is not None:
        overrides["max_steps"] = args.max_steps
    if args.out_dir is not None:
        overrides["out_dir"] = str(Path(args.out_dir).resolve())
    cfg = dataclasses.replace(cfg, **overrides)
    if args.evaluate is not None:
        report = evaluate_checkpoint(args.evaluate, cfg)
        text = json.dumps(report, indent=2)
        print(text)
        if args.json is not None:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(text + "\n", encoding="utf-8")
        return report
    trainer = FusedTrainer(cfg, args.device)
    summary = trainer.fit()
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
