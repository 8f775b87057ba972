"""Synthetic training samples as the network sees them: rectified crops from full synthetic frames.

For every index a random scene is drawn (`training.synth.scene`), a MediaPipe-like hand box is made
from noisy 2D joints, and the crop is cut with the SAME rectification the app uses
(`models.rectify.rectification_from_box`, margin 0.25, left hands mirrored) and warped with
`cv2.warpPerspective(frame, H, (S, S), INTER_LINEAR, BORDER_CONSTANT)`, exactly like `app/crops.py`.
Only the part of the frame that the crops see is rendered (at most `1.5 S` pixels on its longer side),
which is equivalent to warping the full frame up to resampling, and much faster.

Samples are deterministic functions of (seed, index). See /work/notes/api_synth.md for the keys.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from models.hand import HandModel
from models.rectify import Rectification, crop_to_image, rectification_from_box
from training.synth.augment import random_color_jitter
from training.synth.render import project_points
from training.synth.scene import LABEL_HAND, SceneGenerator, SceneSpec

CROP_MARGIN: float = 0.25
"""Same margin as the app's crops (app/crops.py DEFAULT_MARGIN)."""

View = dict[str, np.ndarray]


@dataclass(frozen=True)
class BoxJitter:
    """How the boxes deviate from the tight box of the true 2D joints (fractions of the hand box size).

    joint_sigma: per-landmark noise range (uniform), shift_sigma: common shift std, scale_sigma: log-scale
    std, outlier_p / outlier_shift: probability and std of a larger tracking lag.
    """

    joint_sigma: tuple[float, float] = (0.005, 0.03)
    shift_sigma: float = 0.03
    scale_sigma: float = 0.05
    outlier_p: float = 0.1
    outlier_shift: float = 0.08


def tight_box(points: np.ndarray) -> np.ndarray:
    """(4,) float64 x0, y0, x1, y1 tight box of (N, 2) pixels, at least 1 pixel wide (as app/crops.py)."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    centre = 0.5 * (lo + hi)
    half = np.maximum(0.5 * (hi - lo), 0.5)
    return np.concatenate([centre - half, centre + half])


def mediapipe_like_box(joints_2d: np.ndarray, rng: np.random.Generator, jitter: BoxJitter = BoxJitter()) -> np.ndarray:
    """Box (4,) of noisy landmarks: per-joint noise, common shift (occasionally a large one) and scale."""
    box = tight_box(joints_2d)
    size = float(max(box[2] - box[0], box[3] - box[1]))
    centre = 0.5 * (box[:2] + box[2:])
    noisy = joints_2d + rng.normal(0.0, rng.uniform(*jitter.joint_sigma) * size, joints_2d.shape)
    shift_sigma = jitter.outlier_shift if rng.random() < jitter.outlier_p else jitter.shift_sigma
    noisy = centre + (noisy - centre) * np.exp(rng.normal(0.0, jitter.scale_sigma)) + rng.normal(0.0, shift_sigma * size, 2)
    return tight_box(noisy)


def crop_footprint(H: np.ndarray, crop_size: int) -> np.ndarray:
    """(4,) x0, y0, x1, y1 image-pixel box covering the crop's pixels (homography H crop_from_image)."""
    s = crop_size - 0.5
    corners = np.array([[-0.5, -0.5], [s, -0.5], [s, s], [-0.5, s]])
    pts = crop_to_image(corners, H)
    return np.concatenate([pts.min(axis=0), pts.max(axis=0)])


class SynthHandDataset(Dataset):
    """Map-style dataset of rectified synthetic crops; index -> tuple of 1 or 2 view dicts.

    Args:
        seed: base seed; sample i depends only on (seed, i).
        length: what `len()` reports (any non-negative index works).
        crop_size: S, the crop side in pixels.
        two_views: return two views of the same scene (independent box jitter and photometric
            jitter) for the consistency losses.
        hand_model: the parametric hand (default: the shipped asset).
        box_jitter: how the MediaPipe-like boxes are perturbed.
        max_render_side: longest side of the rendered frame window (default 1.5 S).
    """

    def __init__(
        self,
        seed: int = 0,
        length: int = 32_000,
        crop_size: int = 128,
        two_views: bool = True,
        hand_model: HandModel | None = None,
        box_jitter: BoxJitter = BoxJitter(),
        max_render_side: int | None = None,
    ) -> None:
        if length < 0 or crop_size < 8:
            raise ValueError(f"SynthHandDataset: need length >= 0 and crop_size >= 8, got {length}, {crop_size}")
        self.seed = int(seed)
        self.length = int(length)
        self.crop_size = int(crop_size)
        self.two_views = bool(two_views)
        self.box_jitter = box_jitter
        self.max_render_side = int(max_render_side) if max_render_side is not None else (3 * self.crop_size) // 2
        self.generator = SceneGenerator(hand_model)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[View, ...]:
        if index < 0:
            raise IndexError(f"SynthHandDataset: negative index {index}")
        root = np.random.SeedSequence([self.seed, int(index)])
        scene_seq, render_seq, *view_seqs = root.spawn(4)
        spec = self.generator.sample_spec(np.random.default_rng(scene_seq))
        num_views = 2 if self.two_views else 1
        view_rngs = [np.random.default_rng(s) for s in view_seqs[:num_views]]
        return self.render_views(spec, np.random.default_rng(render_seq), view_rngs, index)

    def render_views(
        self, spec: SceneSpec, render_rng: np.random.Generator, view_rngs: list[np.random.Generator], index: int
    ) -> tuple[View, ...]:
        """Crops of one scene, one per view generator (each draws its own box and photometric jitter)."""
        s = self.crop_size
        joints_2d = spec.joints_2d
        rects = []
        for rng in view_rngs:
            box = mediapipe_like_box(joints_2d, rng, self.box_jitter)
            rect = rectification_from_box(spec.K, box, crop_size=s, margin=CROP_MARGIN, mirror=not spec.is_right)
            rects.append((box, rect))
        feet = np.stack([crop_footprint(np.asarray(r.H), s) for _, r in rects])
        x0 = int(np.clip(np.floor(feet[:, 0].min()) - 2, 0, spec.width - 1))
        y0 = int(np.clip(np.floor(feet[:, 1].min()) - 2, 0, spec.height - 1))
        x1 = int(np.clip(np.ceil(feet[:, 2].max()) + 3, x0 + 1, spec.width))
        y1 = int(np.clip(np.ceil(feet[:, 3].max()) + 3, y0 + 1, spec.height))
        rendered = self.generator.render(spec, render_rng, window=(x0, y0, x1, y1), max_side=self.max_render_side)
        image_from_window = np.linalg.inv(rendered.window_from_image)
        hand_mask = (rendered.label == LABEL_HAND).astype(np.uint8)
        views = []
        for rng, (box, rect) in zip(view_rngs, rects):
            H = np.asarray(rect.H, np.float64)
            h_window = H @ image_from_window
            crop = cv2.warpPerspective(rendered.image_bgr, h_window, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            crop = random_color_jitter(crop, rng, strength=0.35)
            mask = cv2.warpPerspective(hand_mask, h_window, (s, s), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT)
            views.append(self._labels(spec, rect, box, crop, mask, index))
        return tuple(views)

    @staticmethod
    def _labels(spec: SceneSpec, rect: Rectification, box: np.ndarray, crop_bgr: np.ndarray, mask: np.ndarray, index: int) -> View:
        virt_from_cam = np.asarray(rect.virt_from_cam, np.float64)
        k_virt = np.asarray(rect.K_virt, np.float64)
        verts_virt = spec.verts_cam @ virt_from_cam.T
        joints_virt = spec.joints_cam @ virt_from_cam.T
        root = joints_virt[0]
        f32 = np.float32
        return {
            "crop_rgb": np.ascontiguousarray(crop_bgr[:, :, ::-1]),
            "K_virt": k_virt.astype(f32),
            "virt_from_cam": virt_from_cam.astype(f32),
            "R": np.asarray(rect.R, f32),
            "crop_from_image": np.asarray(rect.H, f32),
            "K": spec.K.astype(f32),
            "image_size": np.array([spec.width, spec.height], np.int64),
            "box_xyxy": box.astype(f32),
            "verts_cam": spec.verts_cam.astype(f32),
            "joints_cam": spec.joints_cam.astype(f32),
            "verts_rel_virt": (verts_virt - root).astype(f32),
            "joints_rel_virt": (joints_virt - root).astype(f32),
            "translation_virt": root.astype(f32),
            "joints_2d_crop": project_points(joints_virt, k_virt).astype(f32),
            "joints_2d_image": spec.joints_2d.astype(f32),
            "mask_crop": mask.astype(np.uint8),
            "is_right": np.array(1 if spec.is_right else 0, np.int64),
            "index": np.array(index, np.int64),
        }


def views_to_tensors(view: View) -> dict[str, torch.Tensor]:
    """Convenience: a view dict as torch tensors (crop_rgb stays uint8 (S, S, 3) RGB)."""
    return {key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in view.items()}
