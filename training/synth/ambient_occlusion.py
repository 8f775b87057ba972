"""Cheap pose-dependent ambient occlusion of the hand from capsules around its bones.

Each bone (and four palm rays) is a capsule of typical finger/palm thickness; a vertex is occluded by
every capsule it does not lie on, by about the cosine-weighted solid angle the capsule's nearest sphere
subtends: (r / d)^2 * max(n . w, 0) (d: distance to the segment, w: unit direction to it). This darkens
the skin between fingers, inside a fist and where fingers touch the palm, following the pose (a
stand-in for ray-traced occlusion; capsule occlusion is a standard real-time graphics trick).

Units: metres; joints in MediaPipe order; any frame (camera or hand) as long as all inputs share it.
"""
from __future__ import annotations

import numpy as np

# (parent joint, child joint, radius m) of the capsules, for a hand of unit size.
_CAPSULES: tuple[tuple[int, int, float], ...] = (
    (0, 1, 0.013), (1, 2, 0.011), (2, 3, 0.0095), (3, 4, 0.0085),
    (5, 6, 0.0095), (6, 7, 0.0085), (7, 8, 0.0075),
    (9, 10, 0.0095), (10, 11, 0.0085), (11, 12, 0.0075),
    (13, 14, 0.009), (14, 15, 0.008), (15, 16, 0.0072),
    (17, 18, 0.0082), (18, 19, 0.0075), (19, 20, 0.007),
    (0, 5, 0.012), (0, 9, 0.012), (0, 13, 0.012), (0, 17, 0.011),
)
_STRENGTH = 0.9
_MIN_VISIBILITY = 0.35


def hand_ambient_occlusion(vertices: np.ndarray, normals: np.ndarray, joints: np.ndarray, size: float = 1.0) -> np.ndarray:
    """Ambient visibility per vertex, (V,) float32 in [_MIN_VISIBILITY, 1] (1 = unoccluded).

    vertices, normals: (V, 3) (unit normals, outward); joints: (21, 3); size: hand scale factor for the
    capsule radii. Capsules closer than 1.3 radii to a vertex are the vertex's own surface and are
    faded out, so flat skin is not darkened by the bone under it.
    """
    idx = np.array([(a, b) for a, b, _ in _CAPSULES])
    radii = np.array([r for _, _, r in _CAPSULES], np.float32) * np.float32(size)
    a = joints[idx[:, 0]].astype(np.float32)
    ab = joints[idx[:, 1]].astype(np.float32) - a  # (C, 3)
    p = vertices.astype(np.float32)[:, None, :]  # (V, 1, 3)
    t = np.clip(((p - a[None]) * ab[None]).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12)[None], 0.0, 1.0)
    to_capsule = a[None] + t[..., None] * ab[None] - p  # (V, C, 3)
    dist = np.maximum(np.linalg.norm(to_capsule, axis=-1), 1e-6)
    cosine = np.clip((to_capsule * normals.astype(np.float32)[:, None, :]).sum(-1) / dist, 0.0, 1.0)
    fade = np.clip((dist / radii[None] - 1.3) / 0.7, 0.0, 1.0)
    occlusion = (fade * cosine * (radii[None] / dist) ** 2).sum(axis=1)
    return np.clip(1.0 - _STRENGTH * occlusion, _MIN_VISIBILITY, 1.0).astype(np.float32)
