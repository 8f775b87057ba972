"""Random synthetic camera frames of a hand: camera, hand, forearm, occluders, lights, background.

`SceneGenerator.sample_spec(rng)` decides everything random about one frame (a `SceneSpec`, geometry
in the real camera frame: x right, y down, z forward, metres); `render(spec, rng, window, max_side)`
draws the whole frame or only a window of it (used by the crop dataset, which needs only the part of
the frame its crop sees); `generate(seed)` does both for a full frame (`SynthFrame`).

Images are BGR uint8. Pixel centres are at integer coordinates (OpenCV).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from models.hand import HandModel
from models.hand.mirror import mirror_faces, mirror_points
from models.hand.poses import sample_poses, sample_shapes
from training.synth.ambient_occlusion import hand_ambient_occlusion
from training.synth.arm import (
    LABEL_FOREARM,
    ArmPose,
    arm_acceptance,
    arm_layers,
    solve_arm,
)
from training.synth.augment import camera_pipeline, motion_blur
from training.synth.backgrounds import BackgroundSampler
from training.synth.occluders import sample_occluders
from training.synth.primitives import (
    axis_angle_to_matrix,
    random_rotation,
    transform_points,
)
from training.synth.render import (
    DirectionalLight,
    Lighting,
    MeshLayer,
    project_points,
    render_layers,
    vertex_normals,
)
from training.synth.skin import SkinLayout, SkinTone, sample_skin_tone, skin_albedo

LABEL_HAND = 1
LABEL_OCCLUDER = 3
__all__ = ["LABEL_FOREARM", "LABEL_HAND", "LABEL_OCCLUDER", "SceneGenerator", "SceneSpec", "SynthFrame"]

IMAGE_SIZES: tuple[tuple[int, int], ...] = ((640, 480), (640, 360), (1280, 720), (960, 540), (800, 600), (480, 640))
_IMAGE_SIZE_P = (0.3, 0.2, 0.2, 0.15, 0.1, 0.05)
HFOV_RANGE_DEG = (40.0, 90.0)
DEPTH_RANGE_M = (0.2, 1.2)


class SceneError(RuntimeError):
    """A scene could not be built (e.g. no hand placement fits the frame)."""


@dataclass(frozen=True)
class SceneSpec:
    """Everything random about one frame, before any pixel is drawn.

    width, height: frame size in pixels. K: (3, 3) float64 intrinsics.
    is_right: handedness of the hand. verts_cam (V, 3) / joints_cam (21, 3): float64 metres, camera frame.
    hand_faces: (F, 3) int64, outward winding for this hand (reversed for left hands).
    hand_albedo: (V, 3) float32 BGR. hand_occlusion: (V,) float32 ambient visibility (capsule ambient
    occlusion of the posed hand). hand_subsurface: red-channel wrap of the skin. layers: arm, sleeves,
    occluders (camera frame).
    lighting: lights in the camera frame. hand_blur: (length px at full resolution, angle rad) of the
    hand's own motion blur, or None. render_seed: drives background, texture grain and camera noise.
    """

    width: int
    height: int
    K: np.ndarray
    is_right: bool
    verts_cam: np.ndarray
    joints_cam: np.ndarray
    hand_faces: np.ndarray
    hand_albedo: np.ndarray
    hand_specular: float
    hand_shininess: float
    hand_texture_noise: float
    hand_occlusion: np.ndarray
    hand_subsurface: float
    layers: tuple[MeshLayer, ...]
    lighting: Lighting
    hand_blur: tuple[float, float] | None
    render_seed: int

    @property
    def joints_2d(self) -> np.ndarray:
        """(21, 2) float64 joints projected into the frame, pixels."""
        return project_points(self.joints_cam, self.K)


@dataclass(frozen=True)
class RenderedWindow:
    """A rendered part of a frame.

    image_bgr: (h, w, 3) uint8; label: (h, w) uint8 (0 background, 1 hand, 2 forearm/sleeve, 3 occluder).
    window_from_image: (3, 3) float64 affine map from full-frame pixels to window pixels.
    """

    image_bgr: np.ndarray
    label: np.ndarray
    window_from_image: np.ndarray


@dataclass(frozen=True)
class SynthFrame:
    """A full synthetic frame with labels.

    image_bgr: (H, W, 3) uint8 BGR. K: (3, 3) float64. verts_cam (V, 3), joints_cam (21, 3): float64
    metres, camera frame. joints_2d: (21, 2) float64 pixels. mask: (H, W) uint8, 1 where the hand
    (not forearm or occluder) is visible. is_right: handedness. faces: (F, 3) int64 winding of this hand.
    """

    image_bgr: np.ndarray
    K: np.ndarray
    verts_cam: np.ndarray
    joints_cam: np.ndarray
    joints_2d: np.ndarray
    mask: np.ndarray
    is_right: bool
    faces: np.ndarray


def window_transform(x0: float, y0: float, scale: float) -> np.ndarray:
    """(3, 3) affine taking full-frame pixels to the pixels of a window whose top-left full-frame pixel
    is (x0, y0), resampled by `scale` (pixel centres at integers on both sides)."""
    return np.array(
        [[scale, 0.0, scale * (0.5 - x0) - 0.5], [0.0, scale, scale * (0.5 - y0) - 0.5], [0.0, 0.0, 1.0]]
    )


def sample_intrinsics(rng: np.random.Generator) -> tuple[int, int, np.ndarray]:
    """A random camera: (width, height, K) with horizontal field of view in `HFOV_RANGE_DEG`."""
    width, height = IMAGE_SIZES[int(rng.choice(len(IMAGE_SIZES), p=_IMAGE_SIZE_P))]
    hfov = np.deg2rad(rng.uniform(*HFOV_RANGE_DEG))
    fx = width / 2.0 / np.tan(hfov / 2.0)
    fy = fx * rng.uniform(0.99, 1.01)
    cx = (width - 1) / 2.0 + rng.normal(0.0, 0.01 * width)
    cy = (height - 1) / 2.0 + rng.normal(0.0, 0.01 * height)
    return width, height, np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def sample_hand_orientation(rng: np.random.Generator) -> np.ndarray:
    """Rotation (3, 3) hand frame -> camera frame.

    Hand frame: +y wrist -> fingers, +z back of the hand. 10 %: uniformly random. Otherwise palm or back
    toward the camera (50/50), tilted by |N(0, 30 deg)|, with roll mostly near fingers-up
    (60 %) or anywhere in 360 degrees (40 %).
    """
    if rng.random() < 0.1:
        return random_rotation(rng)
    base = np.diag([1.0, -1.0, -1.0])  # fingers up in the image, back of the hand toward the camera
    if rng.random() < 0.5:
        base = axis_angle_to_matrix(np.array([0.0, 1.0, 0.0]), np.pi) @ base  # palm toward the camera
    tilt_axis_angle = rng.uniform(0, 2 * np.pi)
    tilt = axis_angle_to_matrix(np.array([np.cos(tilt_axis_angle), np.sin(tilt_axis_angle), 0.0]), abs(rng.normal(0.0, 0.5)))
    roll_angle = rng.normal(0.0, np.deg2rad(35.0)) if rng.random() < 0.6 else rng.uniform(0, 2 * np.pi)
    roll = axis_angle_to_matrix(np.array([0.0, 0.0, 1.0]), roll_angle)
    return roll @ tilt @ base


def sample_lighting(rng: np.random.Generator) -> Lighting:
    """Key light mostly from the camera side (sometimes from behind), optional fill light, tinted ambient."""
    def tint(spread: float) -> np.ndarray:
        warm = rng.normal(0.0, spread)
        return np.array([1.0 - warm, 1.0, 1.0 + warm]) * (1.0 + rng.normal(0.0, 0.03, 3))

    key_dir = np.array([rng.uniform(-1, 1), rng.uniform(-1.0, 0.5), -rng.uniform(0.2, 1.2)])
    if rng.random() < 0.05:
        key_dir[2] = rng.uniform(0.2, 1.0)
    lights = [DirectionalLight(key_dir / np.linalg.norm(key_dir), tint(0.08) * rng.uniform(0.45, 1.0))]
    if rng.random() < 0.5:
        fill_dir = np.array([rng.uniform(-1, 1), rng.uniform(-1, 1), -rng.uniform(0.0, 1.0)])
        lights.append(DirectionalLight(fill_dir / max(np.linalg.norm(fill_dir), 1e-6), tint(0.1) * rng.uniform(0.1, 0.35)))
    ambient = rng.uniform(0.25, 0.55)
    sky = tint(0.06) * ambient
    ground = sky * rng.uniform(0.5, 0.9)
    return Lighting(tuple(lights), sky, ground, wrap=float(rng.uniform(0.2, 0.5)))


class SceneGenerator:
    """Samples and renders synthetic hand frames. Uses one `HandModel` (default: the shipped asset).

    `backgrounds`: the background sampler (default: procedural kinds only); `pose_sampler`: draws one
    (22,) pose from a generator (default `models.hand.poses.sample_poses`; e.g.
    `training.synth.real_priors.BendMatchedPoses` for poses matched to real photos)."""

    def __init__(self, hand_model: HandModel | None = None, backgrounds: BackgroundSampler | None = None,
                 pose_sampler: Callable[[np.random.Generator], np.ndarray] | None = None) -> None:
        self.hand = hand_model if hand_model is not None else HandModel.default()
        self.hand.eval()
        self.faces_right = self.hand.faces.cpu().numpy().astype(np.int64)
        self.faces_left = np.ascontiguousarray(mirror_faces(self.faces_right))
        template = self.hand.template.cpu().numpy().astype(np.float64)
        with torch.no_grad():
            rest_joints = self.hand.regress_joints(self.hand.template[None].float())[0].numpy().astype(np.float64)
        self.skin_layout = SkinLayout.from_rest_hand(template, self.faces_right, rest_joints)
        self.backgrounds = backgrounds if backgrounds is not None else BackgroundSampler()
        self.pose_sampler = pose_sampler

    def pose_hand(self, pose: np.ndarray, shape: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Right hand in its own frame: pose (22,), shape (4,) -> vertices (V, 3), joints (21, 3) float64."""
        with torch.no_grad():
            out = self.hand(torch.from_numpy(pose[None].astype(np.float32)), torch.from_numpy(shape[None].astype(np.float32)))
        return out.vertices[0].numpy().astype(np.float64), out.joints[0].numpy().astype(np.float64)

    def sample_spec(self, rng: np.random.Generator) -> SceneSpec:
        """Draw one random scene."""
        width, height, K = sample_intrinsics(rng)
        is_right = bool(rng.random() < 0.5)
        pose = sample_poses(1, rng)[0] if self.pose_sampler is None else self.pose_sampler(rng)
        shape = sample_shapes(1, rng, scale=0.8)[0]
        verts_h, joints_h = self.pose_hand(pose, shape)
        size = float(np.exp(0.1 * shape[0]))
        if not is_right:
            verts_h, joints_h = mirror_points(verts_h), mirror_points(joints_h)
        rotation, translation, arm = self._place_hand(rng, K, width, height, joints_h, is_right, size)
        verts_cam = transform_points(verts_h, rotation, translation)
        joints_cam = transform_points(joints_h, rotation, translation)
        faces = self.faces_right if is_right else self.faces_left
        occlusion = hand_ambient_occlusion(verts_cam, vertex_normals(verts_cam, faces), joints_cam, size)
        tone = sample_skin_tone(rng)
        subsurface = float(rng.uniform(0.2, 0.45))
        albedo = skin_albedo(tone, self.skin_layout, rng)
        layers = arm_layers(rng, tone, rotation, translation, arm, size, subsurface=subsurface)
        layers.extend(sample_occluders(rng, joints_cam))
        hand_px = float(np.ptp(project_points(joints_cam, K), axis=0).max())
        hand_blur = (rng.uniform(2.0, 2.0 + 0.06 * hand_px), rng.uniform(0, np.pi)) if rng.random() < 0.2 else None
        return SceneSpec(
            width=width,
            height=height,
            K=K,
            is_right=is_right,
            verts_cam=verts_cam,
            joints_cam=joints_cam,
            hand_faces=faces,
            hand_albedo=albedo,
            hand_specular=tone.specular,
            hand_shininess=tone.shininess,
            hand_texture_noise=tone.texture_noise,
            hand_occlusion=occlusion,
            hand_subsurface=subsurface,
            layers=tuple(layers),
            lighting=sample_lighting(rng),
            hand_blur=hand_blur,
            render_seed=int(rng.integers(0, 2**31 - 1)),
        )

    def _place_hand(
        self, rng: np.random.Generator, K: np.ndarray, width: int, height: int, joints_h: np.ndarray, is_right: bool, size: float
    ) -> tuple[np.ndarray, np.ndarray, ArmPose]:
        """Orientation, arm and position: an orientation from `sample_hand_orientation` is kept with the
        probability `arm_acceptance` gives its arm (a hand must be attached to a plausible arm of a
        person facing the camera); the forearm never points into the camera; hand at 0.2-1.2 m, all
        joints inside the frame (2 % margin) in 90 % of the scenes, at least 19 of 21 in the others."""
        centre_h = joints_h.mean(axis=0)
        k_inv = np.linalg.inv(K)
        need = 21 if rng.random() < 0.9 else 19
        mx, my = 0.02 * width, 0.02 * height
        for _attempt in range(200):
            rotation = sample_hand_orientation(rng)
            arm = solve_arm(rng, rotation, is_right, size)
            if (rotation @ arm.forearm_dir_h)[2] < -0.55:  # forearm would point into the camera
                continue
            if rng.random() >= arm_acceptance(arm.misalignment):
                continue
            depth = float(np.exp(rng.uniform(np.log(DEPTH_RANGE_M[0]), np.log(DEPTH_RANGE_M[1]))))
            target = np.array([rng.uniform(0.12, 0.88) * width, rng.uniform(0.12, 0.88) * height, 1.0])
            centre_cam = depth * (k_inv @ target)
            translation = centre_cam - rotation @ centre_h
            joints_cam = transform_points(joints_h, rotation, translation)
            if joints_cam[:, 2].min() < 0.1:
                continue
            uv = project_points(joints_cam, K)
            inside = (uv[:, 0] >= mx) & (uv[:, 0] <= width - 1 - mx) & (uv[:, 1] >= my) & (uv[:, 1] <= height - 1 - my)
            if inside.sum() >= need:
                return rotation, translation, arm
        raise SceneError("could not place the hand inside the frame in 200 attempts")

    def forearm_layers(
        self,
        rng: np.random.Generator,
        tone: SkinTone,
        rotation: np.ndarray,
        translation: np.ndarray,
        direction_h: np.ndarray,
        size: float,
        is_right: bool,
    ) -> list[MeshLayer]:
        """A 25 cm forearm along `direction_h` (3,), hand frame (times `size`),
        blended into the wrist stub (see `training.synth.arm`), bare skin, one layer. `is_right` is accepted for compatibility (the hand frame already is
        mirrored for left hands)."""
        arm = ArmPose(np.asarray(direction_h, np.float64), 0.25 * size, 0.0)
        return arm_layers(rng, tone, rotation, translation, arm, size, subsurface=0.3, sleeve="none")

    def render(
        self,
        spec: SceneSpec,
        rng: np.random.Generator,
        window: tuple[int, int, int, int] | None = None,
        max_side: int | None = None,
    ) -> RenderedWindow:
        """Draw the frame, or only `window` = (x0, y0, x1, y1) full-frame pixels (x1, y1 exclusive),
        downscaled so that its longer side is at most `max_side` pixels (None: full resolution)."""
        x0, y0, x1, y1 = window if window is not None else (0, 0, spec.width, spec.height)
        scale = 1.0 if max_side is None else min(1.0, max_side / max(x1 - x0, y1 - y0))
        w = max(int(round((x1 - x0) * scale)), 1)
        h = max(int(round((y1 - y0) * scale)), 1)
        a = window_transform(x0, y0, scale)
        k_w = a @ spec.K
        image = self.backgrounds.sample(rng, w, h)
        hand = MeshLayer(spec.verts_cam, spec.hand_faces, spec.hand_albedo, specular=spec.hand_specular,
                         shininess=spec.hand_shininess, label=LABEL_HAND, texture_noise=spec.hand_texture_noise,
                         occlusion=spec.hand_occlusion, subsurface=spec.hand_subsurface)
        result = render_layers([hand, *spec.layers], k_w, (w, h), spec.lighting, rng)
        color, alpha = result.color_bgr, result.alpha
        if spec.hand_blur is not None:
            length, angle = spec.hand_blur
            color = motion_blur(color * alpha[..., None], length * scale, angle)
            alpha = motion_blur(alpha, length * scale, angle)
            color = color / np.maximum(alpha[..., None], 1e-4)
        ys, xs = np.nonzero(alpha > 0)
        if ys.size:
            ry0, ry1, rx0, rx1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
            a_roi = alpha[ry0:ry1, rx0:rx1, None]
            bg = image[ry0:ry1, rx0:rx1].astype(np.float32) / 255.0
            fg = np.clip(color[ry0:ry1, rx0:rx1], 0.0, 1.0)
            image[ry0:ry1, rx0:rx1] = ((bg * (1.0 - a_roi) + fg * a_roi) * 255.0 + 0.5).astype(np.uint8)
        image = camera_pipeline(image, rng, pixel_scale=scale)
        return RenderedWindow(image, result.label, a)

    def generate(self, seed: int | np.random.Generator) -> SynthFrame:
        """One full frame with labels, deterministic for an integer seed."""
        rng = np.random.default_rng(seed) if not isinstance(seed, np.random.Generator) else seed
        spec = self.sample_spec(rng)
        rendered = self.render(spec, np.random.default_rng(spec.render_seed))
        return SynthFrame(
            image_bgr=rendered.image_bgr,
            K=spec.K,
            verts_cam=spec.verts_cam,
            joints_cam=spec.joints_cam,
            joints_2d=spec.joints_2d,
            mask=(rendered.label == LABEL_HAND).astype(np.uint8),
            is_right=spec.is_right,
            faces=spec.hand_faces,
        )
