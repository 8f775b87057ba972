"""Random objects between the camera and the hand (balls, phones/boxes, pens and bottles).

Occluders are placed on the ray from the camera to a random hand joint, 2-15 cm in front of it, and
are small enough that most of the hand stays visible. Camera frame, metres; colours BGR in [0, 1].
"""
from __future__ import annotations

import cv2
import numpy as np

from training.synth.primitives import box, capped_tube, random_rotation, transform_points, uv_sphere
from training.synth.render import MeshLayer

LABEL_OCCLUDER = 3
OCCLUDER_PROBABILITY = 0.15


def _random_object_color(rng: np.random.Generator) -> np.ndarray:
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(0, 255), rng.uniform(25, 255)]]], np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32) / 255.0


def sample_occluders(rng: np.random.Generator, joints_cam: np.ndarray, probability: float = OCCLUDER_PROBABILITY) -> list[MeshLayer]:
    """Zero or one occluder (with `probability`) in front of the hand whose joints are (21, 3) metres."""
    if rng.random() >= probability:
        return []
    target = joints_cam[int(rng.integers(len(joints_cam)))]
    distance = float(np.linalg.norm(target))
    gap = rng.uniform(0.02, min(0.15, 0.5 * distance))
    centre = target * (1.0 - gap / distance) + rng.normal(0.0, 0.025, 3) * np.array([1.0, 1.0, 0.0])
    kind = int(rng.integers(3))
    if kind == 0:
        verts, faces = uv_sphere(rng.uniform(0.012, 0.04), rings=10, segments=16)
    elif kind == 1:
        verts, faces = box((rng.uniform(0.02, 0.08), rng.uniform(0.04, 0.15), rng.uniform(0.006, 0.03)))
    else:
        radius = rng.uniform(0.004, 0.03)
        verts, faces = capped_tube((radius, radius), (radius, radius), rng.uniform(0.08, 0.2), segments=14, sections=2, cap_bulge=0.2)
        verts[:, 2] -= 0.5 * verts[:, 2].max()
    verts = transform_points(verts, random_rotation(rng), centre)
    color = _random_object_color(rng)
    albedo = np.tile(color, (len(verts), 1))
    return [
        MeshLayer(
            verts,
            faces,
            albedo,
            specular=float(rng.uniform(0.0, 0.6)),
            shininess=float(rng.uniform(5.0, 80.0)),
            label=LABEL_OCCLUDER,
            texture_noise=float(rng.uniform(0.0, 0.1)),
        )
    ]
