"""M3DHMR + HandDGP: the full network from an RGB crop to metric camera-space hand meshes.

crop (B,3,S,S) RGB [0,1] --StackedResNetEncoder--> stride-4 features + heatmaps --soft-argmax--> 2D joints
  -> features sampled at the 2D joints used (predicted, or external e.g. MediaPipe, eq. 1)
  -> MeshDecoder (lifting eq. 2, DSC layers eqs. 3-6, ROI layer) -> vertices
     (fused cue: the landmarks moved onto their 2D rays, corrected by the landmark refiner and moved
      onto the rays again, then + the template posed from them, then optional Taubin smoothing)
     (optional, every sample: each vertex's distance to the skeleton clamped to the hand model's range)
  -> joints = J_reg @ vertices
  -> wrist-relative vertices/joints in the virtual camera (metres)
  -> DGP weight head + closed-form DGP solve with K_virt -> translation in the virtual camera
  -> camera space through ``virt_to_cam`` (rotation back and un-mirroring for left hands).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from models.config import NUM_JOINTS, M3DHMRConfig
from models.decoder import MeshDecoder
from models.dgp import solve_translation
from models.encoders import StackedResNetEncoder
from models.errors import InputShapeError
from models.joint_head import DGPWeightHead, sample_features_at_points, soft_argmax_2d
from models.landmark_lift import lift_landmarks_to_rays
from models.landmark_refiner import LandmarkRefiner, palm_frame
from models.landmark_skinning import LandmarkSkinning
from models.mediapipe_frame import hand_length
from models.skin_thickness import ThicknessClamp, load_thickness_bounds
from models.surface_smoothing import TaubinSmoothing
from models.topology import DecoderTopology

HEATMAP_STRIDE: int = 4
LANDMARK_UNIT_M: float = 0.1
"""Fused 3D landmarks enter the decoder in units of 10 cm (about half a hand), after size normalisation."""
FUSED_CHANNELS: int = 4
"""Extra channels per joint with ``fused_cue``: x, y, z of the normalised landmark (times the mask) and the mask."""
MIN_HAND_LENGTH_M: float = 0.08
MAX_HAND_LENGTH_M: float = 0.30
"""Hand lengths outside this range are clamped (a toddler's hand is about 0.09 m, a large adult's 0.22 m)."""


class PreparedLandmarks(NamedTuple):
    """:meth:`M3DHMR.prepare_landmarks`: landmarks ``(B,21,3)`` metres as the decoder reads them; size_cue
    ``(B,1,1)`` metres, the scale head's; pull_target ``(B,21,3)`` the landmarks the pull goes towards: the
    pull refiner's output, or else the refiner's, before the second ray lift (None without either)."""

    landmarks: Tensor
    size_cue: Tensor
    pull_target: Tensor | None


@dataclass
class M3DHMROutput:
    """Network outputs (torch tensors). B = hands, V = asset vertices, J = 21 joints. Metres unless stated.

    vertices_rel (B,V,3) / joints_rel (B,J,3): virtual-camera axes, relative to the wrist (joint 0).
    joints_2d_pred (B,J,2) crop px (last stack); joints_2d_stacks (B,S_t,J,2) every stack;
    heatmaps (B,S_t,J,h,w) softmax probabilities; joints_2d_used (B,J,2) crop px used for sampling and DGP.
    dgp_weights (B,J) in (0,1). translation_virt (B,3) wrist in the virtual camera.
    vertices_virt/joints_virt: virtual camera. vertices_cam/joints_cam/translation_cam: real camera.
    dgp_residual (B,) metres; dgp_degenerate (B,) bool.
    vertices_unit (B,V,3): the wrist-relative mesh at the template's hand length (shape without scale).
    hand_length_pred (B,) metres: the network's hand length (wrist -> middle fingertip chain,
    ``models.mediapipe_frame.hand_length``); hand_length_used (B,): the one applied (given or predicted).
    """

    vertices_rel: Tensor
    joints_rel: Tensor
    joints_2d_pred: Tensor
    joints_2d_stacks: Tensor
    heatmaps: Tensor
    joints_2d_used: Tensor
    dgp_weights: Tensor
    translation_virt: Tensor
    vertices_virt: Tensor
    joints_virt: Tensor
    vertices_cam: Tensor
    joints_cam: Tensor
    translation_cam: Tensor
    dgp_residual: Tensor
    dgp_degenerate: Tensor
    vertices_unit: Tensor
    hand_length_pred: Tensor
    hand_length_used: Tensor

    def as_dict(self) -> dict[str, Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class M3DHMR(nn.Module):
    """The full network. Build with :meth:`from_config`; mesh constants come from ``topology``."""

    def __init__(
        self,
        *,
        topology: DecoderTopology,
        crop_size: int,
        encoder_blocks: tuple[int, int, int, int],
        width_mult: float,
        num_stacks: int,
        feature_channels: int,
        decoder_type: str,
        decoder_channels: tuple[int, ...],
        num_kernels: int,
        use_roi: bool,
        dgp_damping: float,
        dgp_hidden: int,
        fused_cue: bool = False,
        landmark_skin: bool = False,
        predict_scale: bool = False,
        skin_weights: Tensor | None = None,
        surface_smoothing: int = 0,
        landmark_skin_chain: bool = False,
        skin_clamp_bounds: np.ndarray | None = None,
        landmark_ray_lift: float = 0.0,
        landmark_refiner_hidden: int = 0,
        landmark_pull: float = 0.0,
        landmark_pull_hidden: int = 0,
    ) -> None:
        super().__init__()
        self.crop_size = crop_size
        if landmark_ray_lift and not fused_cue:
            raise ValueError("landmark_ray_lift needs fused_cue (it moves the fused landmarks)")
        self.landmark_ray_lift = float(landmark_ray_lift)
        if landmark_refiner_hidden and not fused_cue:
            raise ValueError("landmark_refiner_hidden needs fused_cue (it corrects the fused landmarks)")
        if landmark_pull and not ((landmark_refiner_hidden or landmark_pull_hidden) and landmark_skin):
            raise ValueError("landmark_pull needs a refiner (landmark_refiner_hidden or landmark_pull_hidden) and "
                             "landmark_skin (it pulls the mesh towards the refined landmarks by skinning)")
        if landmark_pull_hidden and not fused_cue:
            raise ValueError("landmark_pull_hidden needs fused_cue (its refiner reads the fused landmarks)")
        self.landmark_pull = float(landmark_pull)
        self.dgp_damping = dgp_damping
        self.asset_sha256 = topology.sha256
        self.asset_version = topology.version
        self.faces: np.ndarray = topology.faces
        self.config: M3DHMRConfig | None = None
        self.encoder = StackedResNetEncoder(
            blocks=encoder_blocks,
            width_mult=width_mult,
            num_stacks=num_stacks,
            feature_channels=feature_channels,
            num_joints=NUM_JOINTS,
        )
        self.fused_cue = bool(fused_cue)
        self.predict_scale = bool(predict_scale)
        joint_feature_channels = feature_channels + 2 + (FUSED_CHANNELS if fused_cue else 0)
        self.decoder = MeshDecoder(
            topology=topology,
            in_channels=joint_feature_channels,
            channels=decoder_channels,
            decoder_type=decoder_type,
            num_kernels=num_kernels,
            use_roi=use_roi,
        )
        self.dgp_head = DGPWeightHead(in_channels=joint_feature_channels, hidden=dgp_hidden)
        self.register_buffer("joint_regressor", topology.joint_regressor.clone(), persistent=False)
        template_joints = topology.joint_regressor @ topology.template_vertices
        self.template_hand_length = float(hand_length(template_joints))
        self.skinning: LandmarkSkinning | None = None
        if landmark_skin:
            if skin_weights is None:
                raise ValueError("landmark_skin needs the asset's skin weights")
            self.skinning = LandmarkSkinning(
                template_vertices=topology.template_vertices, template_joints=template_joints, skin_weights=skin_weights,
                chain=landmark_skin_chain,
            )
        self.skin_clamp: ThicknessClamp | None = None
        if skin_clamp_bounds is not None:
            if skin_weights is None:
                raise ValueError("skin_clamp needs the asset's skin weights")
            self.skin_clamp = ThicknessClamp(topology.template_vertices, topology.joint_regressor, skin_weights.numpy(),
                                             skin_clamp_bounds)
        self.smoothing: TaubinSmoothing | None = None
        if surface_smoothing:
            if not fused_cue:
                raise ValueError("surface_smoothing needs fused_cue (only samples with landmarks are smoothed)")
            self.smoothing = TaubinSmoothing(faces=topology.faces, num_vertices=topology.num_vertices,
                                             iterations=surface_smoothing)
        self.scale_head: nn.Module | None = None
        if predict_scale:
            self.scale_head = nn.Sequential(nn.Linear(joint_feature_channels + 2, dgp_hidden), nn.ReLU(inplace=True),
                                            nn.Linear(dgp_hidden, 1))
            nn.init.zeros_(self.scale_head[2].weight)
            nn.init.zeros_(self.scale_head[2].bias)
        # built last, so that adding it leaves the random initialisation of every other layer as it was
        self.refiner: LandmarkRefiner | None = LandmarkRefiner(landmark_refiner_hidden) if landmark_refiner_hidden else None
        self.pull_refiner: LandmarkRefiner | None = LandmarkRefiner(landmark_pull_hidden) if landmark_pull_hidden else None

    @classmethod
    def from_config(cls, config: M3DHMRConfig, asset: Any | None = None) -> M3DHMR:
        """Translate a config (and the hand asset; default ``load_hand_asset()``) into a model."""
        if asset is None:
            from models.hand.asset import load_hand_asset

            asset = load_hand_asset()
        model = cls(
            topology=DecoderTopology.from_asset(asset),
            crop_size=config.crop_size,
            encoder_blocks=tuple(config.encoder_blocks),
            width_mult=config.width_mult,
            num_stacks=config.num_stacks,
            feature_channels=config.feature_channels,
            decoder_type=config.decoder_type,
            decoder_channels=tuple(config.decoder_channels),
            num_kernels=config.num_kernels,
            use_roi=config.use_roi,
            dgp_damping=config.dgp_damping,
            dgp_hidden=config.dgp_hidden,
            fused_cue=config.fused_cue,
            landmark_skin=config.landmark_skin,
            predict_scale=config.predict_scale,
            surface_smoothing=config.surface_smoothing,
            landmark_skin_chain=config.landmark_skin_chain,
            skin_weights=(torch.as_tensor(np.asarray(asset.skin_weights), dtype=torch.float32)
                          if config.landmark_skin or config.skin_clamp else None),
            skin_clamp_bounds=(load_thickness_bounds(num_vertices=len(np.asarray(asset.template_vertices)))
                               if config.skin_clamp else None),
            landmark_ray_lift=config.landmark_ray_lift,
            landmark_refiner_hidden=config.landmark_refiner_hidden,
            landmark_pull=config.landmark_pull,
            landmark_pull_hidden=config.landmark_pull_hidden,
        )
        model.config = config
        return model

    def _check_inputs(self, crops: Tensor, k_virt: Tensor, crop_index: Tensor | None = None) -> None:
        size = self.crop_size
        if crops.ndim != 4 or crops.shape[1:] != (3, size, size):
            raise InputShapeError(f"crops must be (B, 3, {size}, {size}) RGB in [0,1], got {tuple(crops.shape)}")
        if crop_index is None:
            if k_virt.shape != (crops.shape[0], 3, 3):
                raise InputShapeError(f"K_virt must be (B, 3, 3) with B={crops.shape[0]}, got {tuple(k_virt.shape)}")
            return
        if crop_index.ndim != 1 or crop_index.dtype not in (torch.int32, torch.int64):
            raise InputShapeError(f"crop_index must be (R,) integers, got {tuple(crop_index.shape)} {crop_index.dtype}")
        # values are read on the CPU only: on a GPU the read would stall every call and break CUDA graph
        # capture, and index_select checks the range there itself
        if len(crop_index) and not crop_index.is_cuda and (int(crop_index.min()) < 0 or int(crop_index.max()) >= crops.shape[0]):
            raise InputShapeError(f"crop_index values must lie in [0, {crops.shape[0]}), got {crop_index.tolist()}")
        if k_virt.shape != (crop_index.shape[0], 3, 3):
            raise InputShapeError(f"K_virt must be (R, 3, 3) with R={crop_index.shape[0]} rows, got {tuple(k_virt.shape)}")

    def prepare_landmarks(self, landmarks: Tensor, points_2d: Tensor, K_virt: Tensor,
                          mask: Tensor) -> PreparedLandmarks:
        """The fused landmarks as the decoder, the skinning skip, the scale head and the pull read them.

        landmarks ``(B,21,3)`` metres, wrist-relative in the crop's frame; points_2d ``(B,21,2)`` the crop pixels
        the row uses (MediaPipe's on fused rows; input prep, so pass them detached); K_virt ``(B,3,3)``; mask
        ``(B,1,1)`` (1 = the row has landmarks). The landmarks are moved onto the rays of ``points_2d``
        (``landmark_ray_lift``), corrected by the refiner (if any) and, after it, moved onto the rays again:
        DGP solves the translation against those 2D points, and the refiner's moves across the image would
        bias its depth (README, "The landmark refiner": 9 mm of camera-space error for 0.2 mm of PA-MPJPE).
        The size cue is the length (``models.mediapipe_frame.hand_length``) of the landmarks before the
        refiner, which is fitted up to a similarity and so leaves their size as it was, up to noise. The
        pull's target is the pull refiner's output (``landmark_pull_hidden``) or else the refiner's, both
        before any second lift.
        """
        # a blend of 0 returns the landmarks as they are
        lifted = lift_landmarks_to_rays(landmarks, points_2d, K_virt, self.landmark_ray_lift, mask)
        size_cue = hand_length(lifted).clamp_min(1e-3).reshape(-1, 1, 1)
        pull_target = self.pull_refiner(lifted, landmarks, mask) if self.pull_refiner is not None else None
        if self.refiner is None:
            return PreparedLandmarks(lifted, size_cue, pull_target)
        refined = self.refiner(lifted, landmarks, mask)
        relifted = lift_landmarks_to_rays(refined, points_2d, K_virt, self.landmark_ray_lift, mask)
        return PreparedLandmarks(relifted, size_cue, refined if pull_target is None else pull_target)

    def pull_towards_landmarks(self, vertices_rel: Tensor, joints_rel: Tensor, refined: Tensor,
                               mask: Tensor) -> tuple[Tensor, Tensor]:
        """The placed mesh's articulation moved ``landmark_pull`` of the way towards the refined landmarks'.

        vertices_rel ``(B,V,3)`` / joints_rel ``(B,21,3)`` wrist-relative metres in the crop's frame (after
        DGP), refined ``(B,21,3)`` the pull target (:class:`PreparedLandmarks`), mask ``(B,1,1)``.
        The landmarks are brought to the mesh's hand length and turned so that their palm frame
        (``models.landmark_refiner.palm_frame``) is the mesh's: the pull changes how the fingers bend and
        spread, not where the hand points. The target skeleton is the blend of the two; the mesh follows it
        bone by bone (``LandmarkSkinning.retarget``), is re-centred on its wrist and brought back to its
        hand length, so the size (given or predicted) is kept exactly.
        Why after DGP: the refined landmarks are the better shape (on 356 validation hands their Procrustes
        error is 9.4 mm, the decoder's 10.3), but they leave MediaPipe's 2D rays, and a mesh that leaves
        them biases DGP's depth; placed by the mesh before the pull, the hand keeps DGP's wrist position.
        Rows with mask 0, or whose palm frame is degenerate, are returned as they are. Returns
        (vertices_rel, joints_rel)."""
        assert self.skinning is not None  # landmark_pull implies landmark_skin
        # rows without landmarks aim at their own skeleton: their all-zero landmarks would put the norms
        # below at zero, whose gradient is infinite, and 0 * inf poisons training even through where()
        refined = torch.where(mask > 0, refined, joints_rel)
        size = hand_length(joints_rel).clamp_min(1e-3).reshape(-1, 1, 1)
        shape = refined - refined[:, :1]
        shape = shape * (size / hand_length(shape).clamp_min(1e-3).reshape(-1, 1, 1))
        mesh_palm, _, mesh_ok = palm_frame(joints_rel)
        shape_palm, _, shape_ok = palm_frame(shape)
        shape = shape @ shape_palm @ mesh_palm.transpose(1, 2)
        use = (mask > 0) & (mesh_ok & shape_ok).reshape(-1, 1, 1)
        target = joints_rel + (self.landmark_pull * use.to(joints_rel.dtype)) * (shape - joints_rel)
        moved = self.skinning.retarget(vertices_rel, joints_rel, target)
        joints = torch.einsum("jv,bvc->bjc", self.joint_regressor.to(moved.dtype), moved)
        keep = size / hand_length(joints - joints[:, :1]).clamp_min(1e-3).reshape(-1, 1, 1)
        moved, joints = (moved - joints[:, :1]) * keep, (joints - joints[:, :1]) * keep
        return torch.where(use, moved, vertices_rel), torch.where(use, joints, joints_rel)

    def forward(
        self,
        crops: Tensor,
        K_virt: Tensor,
        joints_2d_external: Tensor | None = None,
        external_mask: Tensor | None = None,
        virt_to_cam: Tensor | None = None,
        landmarks_3d: Tensor | None = None,
        landmarks_3d_mask: Tensor | None = None,
        hand_length_given: Tensor | None = None,
        hand_length_mask: Tensor | None = None,
        crop_index: Tensor | None = None,
    ) -> M3DHMROutput:
        """Run the network.

        crops ``(B,3,S,S)`` float RGB [0,1]; K_virt ``(B,3,3)``; optional joints_2d_external ``(B,21,2)``
        crop px with external_mask ``(B,)`` bool/float (default all 1); optional virt_to_cam ``(B,3,3)``.
        With ``fused_cue``: landmarks_3d ``(B,21,3)`` wrist-relative metres in the crop's frame
        (``models.mediapipe_frame.world_landmarks_to_virtual``) with landmarks_3d_mask ``(B,)`` (1 = use).
        With ``predict_scale``: hand_length_given ``(B,)`` metres with hand_length_mask ``(B,)`` (1 = use it
        instead of the predicted length). Missing inputs mean "not given" (mask 0).

        Several rows per crop: with crop_index ``(R,)`` int64 (values in ``[0, B)``) the encoder runs once
        on the B crops and row r reads the features of crop ``crop_index[r]``; every other input and every
        output then has R rows (e.g. one crop under three cues: the app's depth ensemble). Without it, R = B.
        """
        if not torch.jit.is_tracing() and not torch.compiler.is_compiling():
            self._check_inputs(crops, K_virt, crop_index)
        features, heatmap_logits = self.encoder(crops)
        if crop_index is not None:
            features = features.index_select(0, crop_index)
            heatmap_logits = heatmap_logits.index_select(0, crop_index)
        joints_2d_stacks, heatmaps = soft_argmax_2d(heatmap_logits, float(HEATMAP_STRIDE))
        joints_2d_pred = joints_2d_stacks[:, -1]
        dtype = joints_2d_pred.dtype
        batch = features.shape[0]
        joints_2d_used = joints_2d_pred
        if joints_2d_external is not None:
            if external_mask is None:
                joints_2d_used = joints_2d_external.to(dtype)
            else:
                mask = external_mask.to(dtype).reshape(-1, 1, 1)
                joints_2d_used = mask * joints_2d_external.to(dtype) + (1.0 - mask) * joints_2d_pred
        sampled = sample_features_at_points(features, joints_2d_used, self.crop_size)
        coords = joints_2d_used * (2.0 / self.crop_size) - 1.0
        parts = [sampled, coords]
        lm_unit = lm_mask = lm_len = lm_len_scale = pull_target = None
        if self.fused_cue:
            if landmarks_3d is None:
                landmarks_3d = crops.new_zeros(batch, NUM_JOINTS, 3)
                landmarks_3d_mask = crops.new_zeros(batch)
            elif landmarks_3d_mask is None:
                landmarks_3d_mask = crops.new_ones(batch)
            lm = landmarks_3d.to(dtype)
            lm_mask = landmarks_3d_mask.to(dtype).reshape(-1, 1, 1)
            lm, lm_len_scale, pull_target = self.prepare_landmarks(lm, joints_2d_used.detach(), K_virt.to(dtype), lm_mask)
            # without a refiner the decoder's landmarks are the ones the size cue was measured on
            lm_len = lm_len_scale if self.refiner is None else hand_length(lm).clamp_min(1e-3).reshape(-1, 1, 1)
            lm_unit = lm * (self.template_hand_length / lm_len)
            parts += [lm_unit * (lm_mask / LANDMARK_UNIT_M), lm_mask.expand(-1, NUM_JOINTS, 1)]
        joint_features = torch.cat(parts, dim=-1)
        vertices = self.decoder(joint_features)
        if self.skinning is not None:
            assert lm_unit is not None and lm_mask is not None  # landmark_skin implies fused_cue
            # Samples without landmarks skin the template's own joints (the template, exactly), so the
            # masked rows stay finite in every runtime instead of relying on 0 * anything being 0.
            template_joints = self.skinning.template_joints.to(dtype).unsqueeze(0)
            skinned = self.skinning(lm_mask * lm_unit + (1.0 - lm_mask) * template_joints)
            vertices = vertices + lm_mask * (skinned - self.skinning.template_vertices.to(dtype))
        if self.smoothing is not None:
            assert lm_mask is not None  # surface_smoothing implies fused_cue
            vertices = vertices + lm_mask * (self.smoothing(vertices) - vertices)
        if self.skin_clamp is not None:
            vertices = self.skin_clamp(vertices)
        regressor = self.joint_regressor.to(vertices.dtype)
        joints = torch.einsum("jv,bvc->bjc", regressor, vertices)
        root = joints[:, :1]
        vertices_rel = vertices - root
        joints_rel = joints - root
        own_length = hand_length(joints_rel)
        to_unit = (self.template_hand_length / own_length.clamp_min(1e-3)).reshape(-1, 1, 1)
        vertices_unit = vertices_rel * to_unit
        if self.predict_scale:
            assert self.scale_head is not None
            joints_unit = joints_rel * to_unit
            if lm_mask is not None and lm_len_scale is not None:
                lm_log = torch.log(lm_len_scale.reshape(-1) / self.template_hand_length)
                scale_cue = torch.stack([lm_log * lm_mask.reshape(-1), lm_mask.reshape(-1)], dim=-1)
            else:
                scale_cue = crops.new_zeros(batch, 2)
            pooled = torch.cat([joint_features.mean(dim=1), scale_cue], dim=-1)
            length_pred = self.template_hand_length * torch.exp(self.scale_head(pooled).squeeze(-1))
            length_pred = length_pred.clamp(MIN_HAND_LENGTH_M, MAX_HAND_LENGTH_M)
            length_used = length_pred
            if hand_length_given is not None:
                given_mask = (crops.new_ones(batch) if hand_length_mask is None else hand_length_mask.to(dtype)).reshape(-1)
                given = hand_length_given.to(dtype).reshape(-1).clamp(MIN_HAND_LENGTH_M, MAX_HAND_LENGTH_M)
                length_used = given_mask * given + (1.0 - given_mask) * length_pred
            factor = (length_used / self.template_hand_length).reshape(-1, 1, 1)
            vertices_rel = vertices_unit * factor
            joints_rel = joints_unit * factor
        else:
            length_pred = length_used = own_length
        dgp_weights = self.dgp_head(joint_features)
        solution = solve_translation(
            joints_rel, joints_2d_used, K_virt.to(joints_rel.dtype), dgp_weights, damping=self.dgp_damping
        )
        translation = solution.translation
        if self.landmark_pull > 0.0 and pull_target is not None and lm_mask is not None:
            vertices_rel, joints_rel = self.pull_towards_landmarks(vertices_rel, joints_rel, pull_target, lm_mask)
            vertices_unit = vertices_rel * (self.template_hand_length / hand_length(joints_rel).clamp_min(1e-3)).reshape(-1, 1, 1)
        vertices_virt = vertices_rel + translation.unsqueeze(1)
        joints_virt = joints_rel + translation.unsqueeze(1)
        if virt_to_cam is None:
            vertices_cam, joints_cam, translation_cam = vertices_virt, joints_virt, translation
        else:
            rotation_t = virt_to_cam.to(vertices_virt.dtype).transpose(1, 2)
            vertices_cam = vertices_virt @ rotation_t
            joints_cam = joints_virt @ rotation_t
            translation_cam = (translation.unsqueeze(1) @ rotation_t).squeeze(1)
        return M3DHMROutput(
            vertices_rel=vertices_rel,
            joints_rel=joints_rel,
            joints_2d_pred=joints_2d_pred,
            joints_2d_stacks=joints_2d_stacks,
            heatmaps=heatmaps,
            joints_2d_used=joints_2d_used,
            dgp_weights=dgp_weights,
            translation_virt=translation,
            vertices_virt=vertices_virt,
            joints_virt=joints_virt,
            vertices_cam=vertices_cam,
            joints_cam=joints_cam,
            translation_cam=translation_cam,
            dgp_residual=solution.residual,
            dgp_degenerate=solution.degenerate,
            vertices_unit=vertices_unit,
            hand_length_pred=length_pred,
            hand_length_used=length_used,
        )
