"""Skin appearance: a wide range of skin tones and per-vertex albedo detail (palms, nails, knuckles).

Colours are BGR floats in [0, 1] (display space, like the rest of the renderer). Per-vertex detail is
computed once from the rest-pose hand (right hand, hand-model frame: +y wrist -> middle fingertip,
+z dorsal, see /models/hand) and reused for every pose, because it follows the vertices.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.synth.render import vertex_normals

# Reference skin tones from very light to very dark, RGB 0-255 (roughly the Fitzpatrick / Monk range).
_TONE_ANCHORS_RGB = np.array(
    [
        [247, 222, 200],
        [236, 196, 168],
        [222, 174, 140],
        [198, 148, 112],
        [170, 118, 84],
        [134, 88, 60],
        [100, 64, 44],
        [70, 46, 34],
    ],
    np.float32,
)
_FINGER_TIPS = (4, 8, 12, 16, 20)
_FINGER_DIPS = (3, 7, 11, 15, 19)
_KNUCKLES = (5, 6, 9, 10, 13, 14, 17, 18, 2, 3, 7, 11, 15, 19)


@dataclass(frozen=True)
class SkinLayout:
    """Per-vertex appearance weights of the rest-pose hand, each (V,) float32 in [0, 1].

    palmar: 1 on the palm side; nail: 1 on finger nails; knuckle: 1 on dorsal knuckle skin;
    tip: 1 at the finger pads/tips (redder).
    """

    palmar: np.ndarray
    nail: np.ndarray
    knuckle: np.ndarray
    tip: np.ndarray

    @staticmethod
    def from_rest_hand(vertices: np.ndarray, faces: np.ndarray, joints: np.ndarray) -> SkinLayout:
        """Build from the rest-pose RIGHT hand: vertices (V, 3), faces (F, 3), joints (21, 3), metres."""
        normals = vertex_normals(vertices, faces)
        palmar = np.clip(0.5 - 1.5 * normals[:, 2], 0.0, 1.0)
        nail = np.zeros(len(vertices), np.float32)
        tip = np.zeros(len(vertices), np.float32)
        for tip_joint, dip_joint in zip(_FINGER_TIPS, _FINGER_DIPS):
            axis = joints[tip_joint] - joints[dip_joint]
            length = float(np.linalg.norm(axis))
            axis = axis / max(length, 1e-9)
            rel = vertices - joints[dip_joint]
            along = rel @ axis / max(length, 1e-9)
            radial = np.linalg.norm(rel - np.outer(rel @ axis, axis), axis=1)
            near_finger = radial < 0.013
            on_nail = near_finger & (along > 0.35) & (along < 1.05) & (normals[:, 2] > 0.45)
            nail = np.maximum(nail, on_nail.astype(np.float32) * np.clip((normals[:, 2] - 0.45) * 4.0, 0.0, 1.0))
            tip = np.maximum(tip, (near_finger & (along > 0.3)).astype(np.float32) * np.clip(along, 0.0, 1.0))
        knuckle = np.zeros(len(vertices), np.float32)
        for joint in _KNUCKLES:
            dist = np.linalg.norm(vertices - joints[joint], axis=1)
            knuckle = np.maximum(knuckle, np.exp(-((dist / 0.011) ** 2)) * np.clip(normals[:, 2] * 2.0, 0.0, 1.0))
        return SkinLayout(palmar.astype(np.float32), nail, knuckle.astype(np.float32), tip)


@dataclass(frozen=True)
class SkinTone:
    """A sampled skin: base colour (3,) BGR in [0, 1], plus material values for the renderer."""

    base_bgr: np.ndarray
    darkness: float
    specular: float
    shininess: float
    texture_noise: float


def sample_skin_tone(rng: np.random.Generator) -> SkinTone:
    """A random skin tone covering light to very dark skin, with small hue (redness/yellowness) changes."""
    t = rng.uniform(0.0, len(_TONE_ANCHORS_RGB) - 1)
    lo = int(np.floor(t))
    hi = min(lo + 1, len(_TONE_ANCHORS_RGB) - 1)
    rgb = (1.0 - (t - lo)) * _TONE_ANCHORS_RGB[lo] + (t - lo) * _TONE_ANCHORS_RGB[hi]
    rgb = rgb / 255.0
    redness = rng.normal(0.0, 0.03)
    yellowness = rng.normal(0.0, 0.03)
    rgb = rgb * np.array([1.0 + redness, 1.0 - 0.3 * redness + 0.5 * yellowness, 1.0 - redness - yellowness])
    rgb = np.clip(rgb * rng.uniform(0.92, 1.06), 0.02, 1.0)
    return SkinTone(
        base_bgr=rgb[::-1].astype(np.float32),
        darkness=float(t / (len(_TONE_ANCHORS_RGB) - 1)),
        specular=float(rng.uniform(0.04, 0.3)),
        shininess=float(rng.uniform(8.0, 40.0)),
        texture_noise=float(rng.uniform(0.01, 0.045)),
    )


def skin_albedo(tone: SkinTone, layout: SkinLayout, rng: np.random.Generator) -> np.ndarray:
    """Per-vertex albedo (V, 3) BGR float32 in [0, 1] of a hand with this tone.

    Palms are lighter and pinker (much more so for dark skin), knuckles slightly darker, finger tips
    redder, nails pale pink-white; plus low-frequency blotches.
    """
    albedo = palm_tinted(tone, layout.palmar)
    albedo = albedo * (1.0 - 0.18 * layout.knuckle[:, None])
    red_tip = np.array([0.9, 0.9, 1.05], np.float32)[None]
    albedo = albedo * (1.0 + (red_tip - 1.0) * layout.tip[:, None])
    nail_bgr = np.clip(tone.base_bgr[None] * 0.6 + np.array([0.3, 0.32, 0.42], np.float32), 0.0, 1.0)
    nail_w = 0.75 * layout.nail[:, None]
    albedo = albedo * (1.0 - nail_w) + nail_bgr * nail_w
    blotch = 1.0 + rng.normal(0.0, 0.03, size=(len(albedo), 1)).astype(np.float32)
    return np.clip(albedo * blotch, 0.0, 1.0).astype(np.float32)


def palm_tinted(tone: SkinTone, palmar: np.ndarray) -> np.ndarray:
    """(N, 3) BGR float32 albedo: the base tone, lighter and pinker where `palmar` (N,) in [0, 1] is high
    (palms and the inner forearm; much more so for dark skin)."""
    base = tone.base_bgr[None].astype(np.float32)
    pink_bgr = np.array([0.62, 0.62, 0.88], np.float32)[None]
    mix = (0.12 + 0.45 * tone.darkness) * np.asarray(palmar, np.float32)[:, None]
    return (base * (1.0 - mix) + np.maximum(base, pink_bgr * (0.75 - 0.25 * tone.darkness)) * mix).astype(np.float32)
