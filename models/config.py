"""Network configuration: the frozen config dataclass, named presets and the input normalisation.

This module is the ONE place that defines how an RGB crop becomes network input:
``crops_to_network_input`` (uint8 RGB HWC -> float32 RGB CHW in [0, 1]) is what callers apply, and the
model itself subtracts ``IMAGE_MEAN_RGB`` and divides by ``IMAGE_STD_RGB`` (so torch and ONNX agree).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import numpy as np

from models.errors import InputShapeError, UnknownPresetError

IMAGE_MEAN_RGB: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGE_STD_RGB: tuple[float, float, float] = (0.229, 0.224, 0.225)
NUM_JOINTS: int = 21
DECODER_TYPES: tuple[str, ...] = ("dsc", "spiralconv++", "dsconv")


def crops_to_network_input(crops_rgb: np.ndarray) -> np.ndarray:
    """Convert crops ``(B, S, S, 3)`` uint8 **RGB** to network input ``(B, 3, S, S)`` float32 in [0, 1]."""
    if crops_rgb.ndim != 4 or crops_rgb.shape[-1] != 3 or crops_rgb.dtype != np.uint8:
        raise InputShapeError(
            f"expected crops of shape (B, S, S, 3) uint8 RGB, got {crops_rgb.shape} {crops_rgb.dtype}"
        )
    return np.ascontiguousarray(crops_rgb.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0)


@dataclass(frozen=True)
class M3DHMRConfig:
    """Everything that defines the network architecture (not the topology asset, which is hashed separately).

    ``decoder_channels[l]`` is the feature width at mesh level ``l`` (0 = full resolution, last = coarsest).
    ``fused_cue``: every joint's decoder input also gets an external 3D landmark (MediaPipe's world
    landmark in the crop's frame, ``models.mediapipe_frame``) and a per-sample mask bit.
    ``landmark_skin``: add the template posed from those landmarks (``models.landmark_skinning``) as a
    gated skip to the decoder output (needs ``fused_cue``).
    ``predict_scale``: the mesh is predicted at a canonical size and scaled to a predicted (or given)
    hand length, as ScaleHP predicts the hand's metric scale before the DGP solve.
    ``landmark_skin_chain``: the skip re-places the landmarks along each finger at the template's bone
    lengths before posing (``models.landmark_skinning.LandmarkSkinning.chain``; needs ``landmark_skin``).
    ``surface_smoothing``: Taubin iterations (``models.surface_smoothing``) on the mesh of every sample
    that has the fused landmarks (0: none; samples without landmarks are never smoothed).
    ``skin_clamp``: keep every vertex's distance to the skeleton within the bounds our hand model ever
    reaches (``models.skin_thickness.ThicknessClamp``, bounds in ``assets/skin_thickness_bounds.json``),
    every sample and cue, after any smoothing (so the final mesh keeps them).
    ``landmark_ray_lift``: before anything reads them, the fused 3D landmarks are moved this far (0: not at
    all, 1: fully) onto the camera rays of the 2D landmarks, each at its own depth
    (``models.landmark_lift``); needs ``fused_cue``.
    ``landmark_refiner_hidden``: width of the MLP that corrects the (lifted) fused landmarks before anything
    reads them (``models.landmark_refiner``; 0: none); needs ``fused_cue``.
    ``landmark_pull``: after DGP has placed the mesh, its skeleton is moved this far (0: not at all, 1:
    fully) towards the refiner's landmarks as they were before the second ray lift, turned into the
    mesh's palm frame (the fingers' bend and spread change, not where the hand points), bone by bone
    (``models.landmark_skinning.LandmarkSkinning.retarget``), keeping DGP's wrist position and the hand
    length; fused rows only; needs ``landmark_skin`` and a refiner: ``landmark_pull_hidden``, the width of
    a refiner of its own (frozen, fitted on the landmarks alone) whose output the pull goes towards, or
    else the decoder's refiner (``landmark_refiner_hidden``).
    """

    name: str
    encoder_blocks: tuple[int, int, int, int]
    width_mult: float
    num_stacks: int
    feature_channels: int
    decoder_type: str
    decoder_channels: tuple[int, ...]
    crop_size: int = 128
    num_kernels: int = 8
    use_roi: bool = True
    dgp_damping: float = 1e-9
    dgp_hidden: int = 64
    fused_cue: bool = False
    landmark_skin: bool = False
    predict_scale: bool = False
    surface_smoothing: int = 0
    landmark_skin_chain: bool = False
    skin_clamp: bool = False
    landmark_ray_lift: float = 0.0
    landmark_refiner_hidden: int = 0
    landmark_pull: float = 0.0
    landmark_pull_hidden: int = 0

    def __post_init__(self) -> None:
        if self.decoder_type not in DECODER_TYPES:
            raise ValueError(f"decoder_type must be one of {DECODER_TYPES}, got {self.decoder_type!r}")
        if self.crop_size % 32 != 0:
            raise ValueError(f"crop_size must be a multiple of 32, got {self.crop_size}")
        if self.num_stacks < 1 or self.num_kernels < 1:
            raise ValueError("num_stacks and num_kernels must be >= 1")
        if len(self.encoder_blocks) != 4:
            raise ValueError("encoder_blocks needs 4 entries (BasicBlocks per ResNet stage)")
        if self.landmark_skin and not self.fused_cue:
            raise ValueError("landmark_skin needs fused_cue (the skip is posed from the fused 3D landmarks)")
        if self.landmark_skin_chain and not self.landmark_skin:
            raise ValueError("landmark_skin_chain needs landmark_skin (it changes how the skip is posed)")
        if self.surface_smoothing < 0 or (self.surface_smoothing and not self.fused_cue):
            raise ValueError("surface_smoothing must be >= 0 and needs fused_cue (only fused samples are smoothed)")
        if not 0.0 <= self.landmark_ray_lift <= 1.0 or (self.landmark_ray_lift and not self.fused_cue):
            raise ValueError("landmark_ray_lift must lie in [0, 1] and needs fused_cue (it moves the fused landmarks)")
        if self.landmark_refiner_hidden < 0 or (self.landmark_refiner_hidden and not self.fused_cue):
            raise ValueError("landmark_refiner_hidden must be >= 0 and needs fused_cue (it corrects the fused landmarks)")
        has_refiner = self.landmark_refiner_hidden or self.landmark_pull_hidden
        if not 0.0 <= self.landmark_pull <= 1.0 or (self.landmark_pull and not (has_refiner and self.landmark_skin)):
            raise ValueError("landmark_pull must lie in [0, 1] and needs a refiner (landmark_refiner_hidden or "
                             "landmark_pull_hidden) and landmark_skin (it pulls the mesh towards the refined landmarks by skinning)")
        if self.landmark_pull_hidden < 0 or (self.landmark_pull_hidden and not self.fused_cue):
            raise ValueError("landmark_pull_hidden must be >= 0 and needs fused_cue (its refiner reads the fused landmarks)")


PRESETS: dict[str, M3DHMRConfig] = {
    "paper_r18": M3DHMRConfig(
        name="paper_r18",
        encoder_blocks=(2, 2, 2, 2),
        width_mult=1.0,
        num_stacks=2,
        feature_channels=256,
        decoder_type="dsc",
        decoder_channels=(32, 32, 64, 128, 256),
    ),
    "paper_r34": M3DHMRConfig(
        name="paper_r34",
        encoder_blocks=(3, 4, 6, 3),
        width_mult=1.0,
        num_stacks=2,
        feature_channels=256,
        decoder_type="dsc",
        decoder_channels=(32, 32, 64, 128, 256),
    ),
    "realtime_slim": M3DHMRConfig(
        name="realtime_slim",
        encoder_blocks=(1, 1, 1, 1),
        width_mult=0.5,
        num_stacks=2,
        feature_channels=64,
        decoder_type="dsc",
        decoder_channels=(16, 16, 32, 32, 64),
        num_kernels=8,
        dgp_hidden=32,
    ),
}
PRESETS["realtime_fused"] = dataclasses.replace(
    PRESETS["realtime_slim"], name="realtime_fused", fused_cue=True, landmark_skin=True, predict_scale=True,
    surface_smoothing=6, landmark_skin_chain=True, skin_clamp=True, landmark_ray_lift=0.6, landmark_refiner_hidden=256,
    landmark_pull=0.5, landmark_pull_hidden=256,
)
"""``surface_smoothing=6``: the iterations at which the shipped fused meshes bend as much per edge as the
true meshes on 324 validation frames (seed 777: 16.9 vs 16.8 degrees, 21.7 unsmoothed). ``skin_clamp``:
no change on meshes our hand model can make; removes the pointed knuckles of tight real fists.
``landmark_ray_lift=0.6``: the best of 0 / 0.4 / 0.6 / 0.8 / 1 for the phase 13 weights on 356 found
validation hands (seed 777, fused cue: PA-MPJPE 14.93 / 14.24 / 14.06 / 14.02 / 14.14 mm, PA-MPVPE
13.41 / 12.84 / 12.73 / 12.78 / 12.96, camera space 70.1 / 68.7 / 68.8 / 69.1 / 70.1).
``landmark_pull=0.5`` with its own refiner (``landmark_pull_hidden=256``; phase 18): chosen on the same
validation hands and on the held-out real photos, network of phase 18 (fused cue, crop level):

=====  ========  ========  ====  ==========  ===============  =================
blend  PA-MPJPE  PA-MPVPE  F@5   camera mm   2D to truth px   real photos' 2D
=====  ========  ========  ====  ==========  ===============  =================
0      10.56     8.86      .652  61.9        8.52             0.021
0.5    9.58      8.30      .677  61.7        8.44             0.032
0.7    9.39      8.26      .679  61.8        8.68             0.037
=====  ========  ========  ====  ==========  ===============  =================

(real photos' 2D: median distance of the projected joints from MediaPipe's 2D landmarks / their box
diagonal.) On synthetic hands the pull leaves the projection as close to the truth as it was; on real
photos, where the refiner's corrections were never checked, it moves it away from MediaPipe's
landmarks; 0.5 keeps most of the Procrustes gain for two thirds of that move."""


def get_preset(name: str) -> M3DHMRConfig:
    """Return the named preset (``paper_r18``, ``paper_r34``, ``realtime_slim``, ``realtime_fused``)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise UnknownPresetError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None


def config_to_json(config: M3DHMRConfig) -> str:
    """Serialise a config to a compact, key-sorted JSON string (stored in checkpoints and ONNX metadata)."""
    return json.dumps(dataclasses.asdict(config), sort_keys=True)


def config_from_json(text: str) -> M3DHMRConfig:
    """Inverse of :func:`config_to_json`; tuples are restored from JSON lists."""
    raw = json.loads(text)
    fields = {f.name: f for f in dataclasses.fields(M3DHMRConfig)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ValueError(f"config JSON has unknown fields {unknown}; it was written by another version")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
    return M3DHMRConfig(**values)
