"""Build the rest-pose surface mesh of the procedural right hand (build time only).

Pipeline: sample ``hand_sdf`` on a regular grid -> marching tetrahedra (closed manifold) -> quadric
half-edge-collapse simplification to the target vertex count -> a few rounds of tangential smoothing with
re-projection onto the implicit surface, which evens the triangles without changing the shape.
"""
from __future__ import annotations

import numpy as np

from models.hand.decimation import decimate
from models.hand.implicit import hand_sdf
from models.hand.isosurface import marching_tetrahedra
from models.hand.mesh_topology import check_closed_manifold, ordered_one_rings

GRID_SPACING: float = 0.0035
GRID_LOW: tuple[float, float, float] = (-0.105, -0.032, -0.042)
GRID_HIGH: tuple[float, float, float] = (0.066, 0.200, 0.034)


def _sdf_gradient(points: np.ndarray, eps: float = 1e-4) -> np.ndarray:
    """(N, 3) central-difference gradient of ``hand_sdf`` (one batched evaluation)."""
    offsets = np.concatenate([np.eye(3), -np.eye(3)]) * eps
    values = hand_sdf(points[None, :, :] + offsets[:, None, :])
    return (values[:3] - values[3:]).T / (2 * eps)


def _newton_step(points: np.ndarray, grad: np.ndarray) -> np.ndarray:
    return points - (hand_sdf(points) / np.maximum(np.einsum("ij,ij->i", grad, grad), 1e-12))[:, None] * grad


def project_to_surface(points: np.ndarray, iterations: int = 3) -> np.ndarray:
    """Newton steps that move (N, 3) points onto the zero level set of ``hand_sdf``."""
    p = points.copy()
    for _ in range(iterations):
        p = _newton_step(p, _sdf_gradient(p))
    return p


def relax(vertices: np.ndarray, faces: np.ndarray, iterations: int, step: float = 0.5) -> np.ndarray:
    """Tangential Laplacian smoothing, each round followed by a Newton step back onto the implicit surface."""
    rings = ordered_one_rings(len(vertices), faces)
    lengths = np.array([len(r) for r in rings])
    flat = np.concatenate([np.asarray(r) for r in rings])
    owner = np.repeat(np.arange(len(vertices)), lengths)
    v = vertices.copy()
    for _ in range(iterations):
        centroid = np.zeros_like(v)
        np.add.at(centroid, owner, v[flat])
        centroid /= lengths[:, None]
        g = _sdf_gradient(v)
        n = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
        d = centroid - v
        d -= np.einsum("ij,ij->i", d, n)[:, None] * n
        v = _newton_step(v + step * d, g)
    return project_to_surface(v)


def build_rest_surface(num_vertices: int, relax_iterations: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """The rest right-hand surface.

    Returns:
        vertices (num_vertices, 3) float64 metres (hand frame) and faces (F, 3) int64, CCW outward,
        a closed genus-0 manifold.
    Raises:
        RuntimeError: if the meshing produced something that is not a closed manifold (a design bug).
    """
    lo = np.array(GRID_LOW)
    hi = np.array(GRID_HIGH)
    counts = np.round((hi - lo) / GRID_SPACING).astype(int) + 1
    axes = [lo[i] + GRID_SPACING * np.arange(counts[i]) for i in range(3)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    values = hand_sdf(grid)
    verts, faces = marching_tetrahedra(values, lo, GRID_SPACING)
    dec = decimate(verts, faces, num_vertices, length_weight=0.25)
    v = relax(verts[dec.kept], dec.faces, relax_iterations)
    report = check_closed_manifold(len(v), dec.faces)
    if not report.ok:
        raise RuntimeError(f"build_rest_surface: mesh is not a closed genus-0 manifold: {report}")
    return v, dec.faces
