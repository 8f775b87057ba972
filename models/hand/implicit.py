"""Implicit (signed-distance-like) description of the rest right hand, used only at build time.

``hand_sdf(points)`` is negative inside the hand and positive outside, close to a Euclidean distance
near the surface (metres). Frame: see ``models.hand.anatomy``. The shape is a smooth union of a palm
slab (super-elliptic cross-sections), thenar and hypothenar pads, a wrist stub and five tapered finger
tubes with knuckles and round tips.
"""
from __future__ import annotations

import numpy as np

from models.hand.anatomy import FingerDesign, rest_fingers

WRIST_BOTTOM_Y: float = -0.022


def _smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum with blend width ``k`` (metres)."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b * (1.0 - h) + a * h - k * h * (1.0 - h)


def _smoothstep(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _rounded_intersection(d1: np.ndarray, d2: np.ndarray, r: float) -> np.ndarray:
    """Intersection of two distance fields with the crease rounded by radius ``r``."""
    a = d1 + r
    b = d2 + r
    outside = np.sqrt(np.maximum(a, 0.0) ** 2 + np.maximum(b, 0.0) ** 2)
    return outside + np.minimum(np.maximum(a, b), 0.0) - r


def _ellipsoid(p: np.ndarray, center: np.ndarray, axes: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Approximate distance to an ellipsoid; ``axes`` (3, 3) rows are its unit axes."""
    q = (p - center) @ axes.T
    k0 = np.linalg.norm(q / radii, axis=-1)
    k1 = np.linalg.norm(q / radii**2, axis=-1)
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-9)


def _palm(p: np.ndarray, fingers: tuple[FingerDesign, ...]) -> np.ndarray:
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    grow = _smoothstep(y, -0.005, 0.050)
    half_w = 0.0290 + 0.0130 * grow
    center_x = 0.0005 * grow
    thick = _smoothstep(y, -0.012, 0.040)
    half_t = 0.0165 - 0.0045 * thick
    center_z = -0.0010 - 0.0005 * thick
    dx = (x - center_x) / half_w
    dz = (z - center_z) / half_t
    rho = dx**4 + dz**2
    grad = np.sqrt((4.0 * dx**3 / half_w) ** 2 + (2.0 * dz / half_t) ** 2)
    d_cross = (rho - 1.0) / np.maximum(grad, 1.0 / 0.02)
    # Top border follows the knuckle arc (index .. little MCPs), a little beyond the joints.
    mcp_x = np.array([f.base[0] for f in fingers[1:]])
    mcp_y = np.array([f.base[1] for f in fingers[1:]])
    top_y = np.interp(x, mcp_x, mcp_y) + 0.004
    d_top = y - top_y
    d_bottom = WRIST_BOTTOM_Y - y
    body = _rounded_intersection(d_cross, d_top, 0.010)
    return _rounded_intersection(body, d_bottom, 0.003)


def _finger(p: np.ndarray, finger: FingerDesign) -> np.ndarray:
    joints = finger.joints()
    tip_r = finger.radii[-1]
    # Centres along the finger: joints and mid-bone points; the tip sphere is pulled back so that the
    # surface apex coincides with the tip joint.
    centres = [joints[0], 0.5 * (joints[0] + joints[1]), joints[1], 0.5 * (joints[1] + joints[2]), joints[2]]
    tip_centre = joints[3] - finger.directions[2] * tip_r
    centres.append(0.5 * (joints[2] + tip_centre))
    centres.append(tip_centre)
    centres_arr = np.stack(centres)
    radii = finger.radii
    dorsal = finger.dorsal
    result = None
    for i in range(len(centres_arr) - 1):
        a, b = centres_arr[i], centres_arr[i + 1]
        ra, rb = radii[i], radii[i + 1]
        axis = b - a
        length = np.linalg.norm(axis)
        u = axis / length
        rel = p - a
        along = rel @ u
        t = np.clip(along / length, 0.0, 1.0)
        radial = rel - np.outer(t.ravel() * length, u).reshape(rel.shape)
        dorsal_local = dorsal - np.dot(dorsal, u) * u
        dorsal_local /= np.linalg.norm(dorsal_local)
        comp = radial @ dorsal_local
        # Elliptic cross-section: compress the dorsal-palmar component.
        radial_scaled = radial + np.multiply.outer(comp * (1.0 / finger.depth_ratio - 1.0), dorsal_local)
        dist = np.linalg.norm(radial_scaled, axis=-1) - (ra + t * (rb - ra))
        result = dist if result is None else _smin(result, dist, 0.002)
    assert result is not None
    return result


def hand_sdf(points: np.ndarray) -> np.ndarray:
    """Signed distance-like field of the rest right hand.

    Args:
        points: (..., 3) float64, metres, hand frame.
    Returns:
        (...,) float64, negative inside.
    """
    fingers = rest_fingers()
    d = _palm(points, fingers)
    thumb = fingers[0]
    tj = thumb.joints()
    meta_axis = thumb.directions[0]
    side = np.cross(thumb.dorsal, meta_axis)
    side /= np.linalg.norm(side)
    dors = np.cross(meta_axis, side)
    thenar = _ellipsoid(points, tj[0] + 0.35 * (tj[1] - tj[0]) + np.array([0.006, 0.0, -0.001]),
                        np.stack([meta_axis, side, dors]), np.array([0.027, 0.015, 0.0115]))
    d = _smin(d, thenar, 0.014)
    hypothenar = _ellipsoid(points, np.array([0.026, 0.040, -0.007]), np.eye(3), np.array([0.013, 0.034, 0.010]))
    d = _smin(d, hypothenar, 0.008)
    finger_d = np.stack([_finger(points, f) for f in fingers])
    d = _smin(d, finger_d[0], 0.008)
    for f in range(1, 5):
        d = _smin(d, finger_d[f], 0.005)
    return d
