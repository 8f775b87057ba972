"""Anatomical pose parameters: layout, limits, rotation axes, named poses and a random pose sampler.

A pose is a (22,) vector of joint angles in radians (0 = the flat rest hand). Positive flexion curls a
finger towards the palm; positive finger abduction spreads it away from the middle finger (for the
middle finger: towards the thumb). Thumb: CMC flexion (across the palm), abduction (away from the index
finger), opposition (rotation about the thumb's own axis), MCP flexion and abduction, IP flexion.
"""
from __future__ import annotations

import numpy as np

from models.hand.anatomy import BONE_JOINTS, FINGER_NAMES, NUM_BONES

NUM_POSE_DOFS: int = 22
POSE_DOF_NAMES: tuple[str, ...] = (
    "thumb_cmc_flex", "thumb_cmc_abd", "thumb_cmc_opp", "thumb_mcp_flex", "thumb_mcp_abd", "thumb_ip_flex",
) + tuple(f"{finger}_{dof}" for finger in FINGER_NAMES[1:] for dof in ("mcp_flex", "mcp_abd", "pip_flex", "dip_flex"))

_FINGER_LIMITS_DEG = ((-25.0, 90.0), (-15.0, 20.0), (-5.0, 110.0), (-10.0, 85.0))
POSE_LIMITS: np.ndarray = np.deg2rad(np.array(
    [(-30.0, 55.0), (-25.0, 45.0), (-20.0, 65.0), (-10.0, 60.0), (-12.0, 12.0), (-15.0, 85.0)]
    + [lim for _ in range(4) for lim in _FINGER_LIMITS_DEG]
)).astype(np.float32)
"""(22, 2) float32 lower/upper limit of each pose DoF, radians."""

# Per bone, the DoFs applied in order R = R(dof_0) @ R(dof_1) @ ... (-1 = unused slot). Kind of each DoF:
# 0 flexion, 1 abduction, 2 twist about the bone.
BONE_DOFS: tuple[tuple[int, int, int], ...] = (
    (-1, -1, -1), (1, 0, 2), (4, 3, -1), (5, -1, -1),
    (7, 6, -1), (8, -1, -1), (9, -1, -1),
    (11, 10, -1), (12, -1, -1), (13, -1, -1),
    (15, 14, -1), (16, -1, -1), (17, -1, -1),
    (19, 18, -1), (20, -1, -1), (21, -1, -1),
)
DOF_KIND: tuple[int, ...] = (0, 1, 2, 0, 1, 0) + (0, 1, 0, 0) * 4
# +1: abduction towards the thumb side, -1: towards the little-finger side (thumb, index .. little).
_SPREAD_TO_RADIAL: tuple[float, ...] = (1.0, 1.0, 1.0, -1.0, -1.0)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _orthogonal(v: np.ndarray, axis: np.ndarray) -> np.ndarray:
    return _unit(v - np.dot(v, axis) * axis)


def dof_axes(rest_joints: np.ndarray) -> np.ndarray:
    """World-frame rotation axis of every pose DoF for a right hand.

    Args:
        rest_joints: (21, 3) rest joints in the MediaPipe order (any right-hand frame, metres).
    Returns:
        (22, 3) float64 unit axes; the rotation of DoF k is about axis k by the DoF's angle.
    """
    j = np.asarray(rest_joints, dtype=np.float64)
    dorsal = _unit(np.cross(j[17] - j[0], j[5] - j[0]))
    radial = _orthogonal(j[5] - j[17], dorsal)
    thumb_dorsal_hint = _unit(0.8 * radial + 0.6 * dorsal)
    axes = np.zeros((NUM_POSE_DOFS, 3))
    for bone in range(1, NUM_BONES):
        finger = (bone - 1) // 3
        joint = BONE_JOINTS[bone]
        child = joint + 1  # in the MediaPipe order a finger joint's child is the next joint
        u = _unit(j[child] - j[joint])
        hint = thumb_dorsal_hint if finger == 0 else dorsal
        n = _orthogonal(hint, u)
        flex = _unit(np.cross(n, u))
        abd = n if np.dot(np.cross(n, u), radial) * _SPREAD_TO_RADIAL[finger] > 0 else -n
        for dof in BONE_DOFS[bone]:
            if dof < 0:
                continue
            # Opposition (kind 2) pronates the thumb: the nail turns from radial towards palmar.
            axes[dof] = (flex, abd, -u)[DOF_KIND[dof]]
    return axes


def clamp_pose_np(pose: np.ndarray) -> np.ndarray:
    """Clip (..., 22) radians to ``POSE_LIMITS``."""
    return np.clip(pose, POSE_LIMITS[:, 0], POSE_LIMITS[:, 1]).astype(np.float32)


def _deg(values: dict[str, float]) -> np.ndarray:
    pose = np.zeros(NUM_POSE_DOFS)
    for name, deg in values.items():
        pose[POSE_DOF_NAMES.index(name)] = np.deg2rad(deg)
    return pose


def _curl(finger: str, mcp: float, pip: float, dip: float, abd: float = 0.0) -> dict[str, float]:
    return {f"{finger}_mcp_flex": mcp, f"{finger}_pip_flex": pip, f"{finger}_dip_flex": dip,
            f"{finger}_mcp_abd": abd}


_FIST_THUMB = {"thumb_cmc_flex": 30.0, "thumb_cmc_abd": -5.0, "thumb_cmc_opp": 35.0,
               "thumb_mcp_flex": 45.0, "thumb_ip_flex": 50.0}
# Thumb angles that bring the thumb tip 9 mm from the index tip (pads touching) with the index curled
# 45/60/35 degrees; found once by gradient descent on the model and frozen here.
_PINCH_THUMB = {"thumb_cmc_flex": 28.0, "thumb_cmc_abd": 17.0, "thumb_cmc_opp": 42.0, "thumb_mcp_flex": 20.0,
                "thumb_ip_flex": 26.0}
_NAMED_DEG: dict[str, dict[str, float]] = {
    "open_palm": {"index_mcp_abd": 8.0, "ring_mcp_abd": 6.0, "little_mcp_abd": 10.0, "thumb_cmc_abd": 10.0},
    "fist": {**_curl("index", 85, 100, 60), **_curl("middle", 88, 100, 60), **_curl("ring", 88, 100, 60),
             **_curl("little", 88, 100, 60), **_FIST_THUMB},
    "point": {**_curl("middle", 85, 100, 60), **_curl("ring", 88, 100, 60), **_curl("little", 88, 100, 60),
              **_FIST_THUMB},
    "thumbs_up": {**_curl("index", 85, 100, 60), **_curl("middle", 88, 100, 60), **_curl("ring", 88, 100, 60),
                  **_curl("little", 88, 100, 60), "thumb_cmc_flex": -6.0, "thumb_cmc_abd": -12.0,
                  "thumb_cmc_opp": -20.0, "thumb_mcp_flex": 10.0, "thumb_mcp_abd": -5.0, "thumb_ip_flex": -12.0},
    "pinch": {**_curl("index", 45, 60, 35), **_curl("middle", 25, 35, 20), **_curl("ring", 30, 40, 25),
              **_curl("little", 35, 45, 25), **_PINCH_THUMB},
    "victory": {**_curl("index", 0, 0, 0, 12), **_curl("middle", 0, 0, 0, -10), **_curl("ring", 85, 100, 60),
                **_curl("little", 88, 100, 60), **_FIST_THUMB},
    "ok": {**_curl("index", 45, 60, 35), **_curl("middle", 10, 10, 5, -5), **_curl("ring", 12, 12, 5, 5),
           **_curl("little", 15, 15, 8, 10), **_PINCH_THUMB},
}
NAMED_POSES: tuple[str, ...] = tuple(_NAMED_DEG)


def named_pose(name: str) -> np.ndarray:
    """(22,) float32 radians of a named pose: one of ``NAMED_POSES``."""
    if name not in _NAMED_DEG:
        raise KeyError(f"named_pose: unknown pose {name!r}; choose one of {', '.join(NAMED_POSES)}")
    return clamp_pose_np(_deg(_NAMED_DEG[name]))


def sample_poses(num: int, rng: np.random.Generator) -> np.ndarray:
    """Anatomically plausible random poses with natural finger correlations.

    Half of the samples blend two random named poses and add small noise; the other half draw a global
    grasp level, per-finger curls correlated with their neighbours, DIP flexion coupled to PIP
    flexion (about 2/3) and a thumb that opposes more as the hand closes. All clipped to the limits.

    Returns:
        (num, 22) float32 radians.
    """
    named = np.stack([named_pose(n) for n in NAMED_POSES])
    out = np.zeros((num, NUM_POSE_DOFS))
    for i in range(num):
        if rng.random() < 0.5:
            a, b = rng.integers(0, len(named), size=2)
            t = rng.random()
            out[i] = (1 - t) * named[a] + t * named[b] + rng.normal(0.0, np.deg2rad(6.0), NUM_POSE_DOFS)
            continue
        grasp = rng.beta(0.8, 0.8)
        curl = np.clip(grasp + np.cumsum(rng.normal(0.0, 0.15, 4)) * 0.7, -0.1, 1.05)
        spread = rng.normal(0.3, 0.4) * (1.0 - grasp)
        for f in range(4):
            base = 6 + 4 * f
            pip = curl[f] * np.deg2rad(100.0) + rng.normal(0.0, np.deg2rad(5.0))
            out[i, base + 0] = curl[f] * np.deg2rad(80.0) + rng.normal(0.0, np.deg2rad(10.0))
            out[i, base + 1] = spread * np.deg2rad(12.0) + rng.normal(0.0, np.deg2rad(3.0))
            out[i, base + 2] = pip
            out[i, base + 3] = 0.66 * pip + rng.normal(0.0, np.deg2rad(5.0))
        close = np.clip(grasp + rng.normal(0.0, 0.2), 0.0, 1.0)
        out[i, 0] = close * np.deg2rad(35.0) + rng.normal(0.0, np.deg2rad(8.0))
        out[i, 1] = rng.uniform(np.deg2rad(-15.0), np.deg2rad(35.0))
        out[i, 2] = close * np.deg2rad(45.0) + rng.normal(0.0, np.deg2rad(8.0))
        out[i, 3] = close * np.deg2rad(40.0) + rng.normal(0.0, np.deg2rad(8.0))
        out[i, 4] = rng.normal(0.0, np.deg2rad(4.0))
        out[i, 5] = close * np.deg2rad(50.0) + rng.normal(0.0, np.deg2rad(10.0))
    return clamp_pose_np(out)


def sample_shapes(num: int, rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    """(num, 4) float32 shape parameters, normal with std ``scale``, clipped to [-2, 2]."""
    return np.clip(rng.normal(0.0, scale, size=(num, 4)), -2.0, 2.0).astype(np.float32)
