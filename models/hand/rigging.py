"""Skinning weights, regions, exact joint regressor and shape directions of the procedural hand.

Build time only (numpy). Frame and joint order: see ``models.hand.anatomy``.

Skinning: every finger f contributes an influence ``infl_f(v) = pi_f * g_f * sigma_0f`` (soft nearest
finger x radial falloff x smooth step across the finger's base joint plane); the palm/root bone takes the
rest. Inside a finger the weight passes from one bone to the next with a smooth step across each joint
plane, so the weights are smooth and sum to one.

Joint regressor: each non-tip joint is a non-negative affine combination (weights sum to one) of a few
vertices around it that get identical skinning weights restricted to the joint's two bones. Linear
blend skinning is linear in the rest position for fixed weights and both bones map the joint to the
same posed point, so the regressed joint equals the skeleton joint for every pose; for shapes the
skeleton is defined as the regressed joints of the shaped template, so it holds for every shape too.
Fingertip joints are single surface vertices carried rigidly by the distal bone.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import nnls

from models.hand.anatomy import (BONE_JOINTS, BONE_PARENTS, FINGER_BONES, NUM_BONES, NUM_JOINTS, TIP_BONES,
                                 TIP_JOINTS, FingerDesign)

# Half widths (metres) of the weight transition across the base, second and third joint of each finger.
_BLEND_HALF_WIDTH: tuple[tuple[float, float, float], ...] = (
    (0.012, 0.007, 0.005), (0.008, 0.006, 0.005), (0.008, 0.006, 0.005), (0.008, 0.006, 0.005),
    (0.007, 0.005, 0.004),
)
# Radial reach of each finger's influence: full up to the first value, none beyond the second (metres).
_RADIAL_REACH: tuple[tuple[float, float], ...] = (
    (0.017, 0.030), (0.013, 0.022), (0.013, 0.022), (0.013, 0.022), (0.012, 0.020),
)
NUM_SHAPE_PARAMS: int = 4
SHAPE_PARAM_NAMES: tuple[str, ...] = ("size", "palm_width", "finger_length", "thickness")


@dataclass(frozen=True)
class Rig:
    """Everything the runtime model needs besides the mesh.

    skin_weights: (V, 16) float64, rows sum to 1. regions: (V,) int64 in 0..5.
    joint_regressor: (21, V) float64, rows sum to 1. rest_joints: (21, 3) = joint_regressor @ vertices.
    shape_dirs: (V, 3, 4) metres per unit shape parameter. tip_vertex_ids: (5,) int64.
    """

    skin_weights: np.ndarray
    regions: np.ndarray
    joint_regressor: np.ndarray
    rest_joints: np.ndarray
    shape_dirs: np.ndarray
    tip_vertex_ids: np.ndarray


def _smoothstep(x: np.ndarray) -> np.ndarray:
    t = np.clip(x, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _polyline_closest(points: np.ndarray, joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance (N,) and closest point (N, 3) of points to the polyline through ``joints`` (K, 3)."""
    best_d = np.full(len(points), np.inf)
    best_p = np.zeros_like(points)
    for a, b in zip(joints[:-1], joints[1:]):
        ab = b - a
        t = np.clip((points - a) @ ab / (ab @ ab), 0.0, 1.0)
        c = a + t[:, None] * ab
        d = np.linalg.norm(points - c, axis=1)
        better = d < best_d
        best_d[better] = d[better]
        best_p[better] = c[better]
    return best_d, best_p


def _joint_plane_normals(finger: FingerDesign) -> np.ndarray:
    d = finger.directions
    normals = np.stack([d[0], d[0] + d[1], d[1] + d[2]])
    return normals / np.linalg.norm(normals, axis=1, keepdims=True)


def _finger_influences(vertices: np.ndarray, fingers: tuple[FingerDesign, ...]
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per finger: influence (5, V), cumulative joint steps sigma (5, 3, V), closest axis point (5, V, 3)."""
    dists, closest, sigmas = [], [], []
    for f, finger in enumerate(fingers):
        joints = finger.joints()
        d, c = _polyline_closest(vertices, joints)
        dists.append(d)
        closest.append(c)
        normals = _joint_plane_normals(finger)
        sig = np.stack([
            _smoothstep(((vertices - joints[k]) @ normals[k] + _BLEND_HALF_WIDTH[f][k]) / (2 * _BLEND_HALF_WIDTH[f][k]))
            for k in range(3)
        ])
        sig[1] = np.minimum(sig[1], sig[0])
        sig[2] = np.minimum(sig[2], sig[1])
        sigmas.append(sig)
    dist = np.stack(dists)
    soft = np.exp(-(dist - dist.min(axis=0, keepdims=True)) / 0.003)
    pi = soft / soft.sum(axis=0, keepdims=True)
    reach = np.stack([
        1.0 - _smoothstep((dist[f] - _RADIAL_REACH[f][0]) / (_RADIAL_REACH[f][1] - _RADIAL_REACH[f][0]))
        for f in range(len(fingers))
    ])
    sigma = np.stack(sigmas)
    influence = pi * reach * sigma[:, 0]
    return influence, sigma, np.stack(closest)


def _skin_weights(influence: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    weights = np.zeros((influence.shape[1], NUM_BONES))
    for f, bones in enumerate(FINGER_BONES):
        weights[:, bones[0]] = influence[f] * (1.0 - sigma[f, 1])
        weights[:, bones[1]] = influence[f] * (sigma[f, 1] - sigma[f, 2])
        weights[:, bones[2]] = influence[f] * sigma[f, 2]
    weights[:, 0] = 1.0 - influence.sum(axis=0)
    return weights


def _joint_ring(vertices: np.ndarray, joint: np.ndarray, allowed: np.ndarray, start: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Nearest allowed vertices whose non-negative affine combination reproduces ``joint``."""
    order = np.argsort(np.linalg.norm(vertices - joint, axis=1), kind="stable")
    order = order[allowed[order]]
    for count in range(start, min(len(order), 60) + 1, 2):
        ids = order[:count]
        a = np.vstack([vertices[ids].T * 1000.0, 10.0 * np.ones((1, count)),
                       0.05 * np.eye(count)])
        b = np.concatenate([joint * 1000.0, [10.0], 0.05 * np.full(count, 1.0 / count)])
        w, _ = nnls(a, b)
        w = w / w.sum()
        if np.linalg.norm(w @ vertices[ids] - joint) < 2e-5:
            keep = w > 1e-6
            return ids[keep], w[keep] / w[keep].sum()
    raise RuntimeError(f"joint regressor: no vertex ring encloses the joint at {joint}")


def _shape_dirs(vertices: np.ndarray, fingers: tuple[FingerDesign, ...], influence: np.ndarray,
                closest: np.ndarray, root_weight: np.ndarray) -> np.ndarray:
    dirs = np.zeros((len(vertices), 3, NUM_SHAPE_PARAMS))
    dirs[:, :, 0] = 0.10 * vertices
    base_x = np.array([f.base[0] for f in fingers])
    dirs[:, 0, 1] = 0.08 * (root_weight * vertices[:, 0] + influence.T @ base_x)
    for f, finger in enumerate(fingers):
        joints = finger.joints()
        axis = (joints[3] - joints[0]) / np.linalg.norm(joints[3] - joints[0])
        along = (vertices - joints[0]) @ axis
        dirs[:, :, 2] += 0.08 * (influence[f] * along)[:, None] * axis
        dirs[:, :, 3] += 0.10 * influence[f][:, None] * (vertices - closest[f])
    palm_z = np.zeros_like(vertices)
    palm_z[:, 2] = vertices[:, 2] + 0.0015
    dirs[:, :, 3] += 0.10 * root_weight[:, None] * palm_z
    return dirs


def build_rig(vertices: np.ndarray, fingers: tuple[FingerDesign, ...], design_joints: np.ndarray) -> Rig:
    """Rig the rest surface.

    Args:
        vertices: (V, 3) float64 rest surface, metres. fingers: rest finger designs (thumb .. little).
        design_joints: (21, 3) designed joints (fingertips are replaced by surface vertices).
    """
    num_v = len(vertices)
    influence, sigma, closest = _finger_influences(vertices, fingers)
    weights = _skin_weights(influence, sigma)
    tip_ids = np.zeros(5, dtype=np.int64)
    for f in range(len(fingers)):
        tip_ids[f] = int(np.argmin(np.linalg.norm(vertices - design_joints[TIP_JOINTS[f]], axis=1)))
    regressor = np.zeros((NUM_JOINTS, num_v))
    used = np.zeros(num_v, dtype=bool)
    for f, tip in enumerate(tip_ids):
        weights[tip] = 0.0
        weights[tip, TIP_BONES[f]] = 1.0
        regressor[TIP_JOINTS[f], tip] = 1.0
        used[tip] = True
    for bone in range(NUM_BONES):
        joint = BONE_JOINTS[bone]
        parent = BONE_PARENTS[bone]
        pair = [bone] if parent < 0 else [parent, bone]
        support = weights[:, pair].sum(axis=1)
        allowed = (support > 0.97) & ~used
        ids, w = _joint_ring(vertices, design_joints[joint], allowed, start=8)
        shared = weights[ids][:, pair].mean(axis=0)
        weights[ids] = 0.0
        weights[np.ix_(ids, pair)] = shared / shared.sum()
        regressor[joint, ids] = w
        used[ids] = True
    root_weight = weights[:, 0]
    region_weight = np.stack([root_weight] + [weights[:, list(b)].sum(axis=1) for b in FINGER_BONES], axis=1)
    regions = np.argmax(region_weight, axis=1).astype(np.int64)
    shape_dirs = _shape_dirs(vertices, fingers, influence, closest, root_weight)
    return Rig(skin_weights=weights, regions=regions, joint_regressor=regressor,
               rest_joints=regressor @ vertices, shape_dirs=shape_dirs, tip_vertex_ids=tip_ids)
