"""Mesh hierarchy for the spiral decoder: simplified levels and sparse down/up-sampling matrices.

Level l+1 is a half-edge-collapse simplification of level l, so its vertices are a subset of level l's.
down[l] (V_{l+1}, V_l) selects those vertices; up[l] (V_l, V_{l+1}) places every level-l vertex with the
barycentric coordinates of its closest level-(l+1) triangle (preferring triangles that touch its own
region), as in CoMA (Ranjan et al. 2018). Build time only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from models.hand.decimation import decimate


@dataclass(frozen=True)
class SparseTriplets:
    """Sparse matrix as (row, col, value) triplets; ``shape`` = (rows, cols)."""

    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    shape: tuple[int, int]

    def dense(self) -> np.ndarray:
        out = np.zeros(self.shape)
        np.add.at(out, (self.rows, self.cols), self.values)
        return out


@dataclass(frozen=True)
class Hierarchy:
    """vertices[l] (V_l, 3), faces[l] (F_l, 3), kept[l] indices of level l+1 vertices in level l,
    down[l] / up[l] as described in the module docstring."""

    vertices: tuple[np.ndarray, ...]
    faces: tuple[np.ndarray, ...]
    kept: tuple[np.ndarray, ...]
    down: tuple[SparseTriplets, ...]
    up: tuple[SparseTriplets, ...]


def closest_barycentric(points: np.ndarray, tri: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Closest point of triangle ``tri[i]`` (N, 3, 3) to ``points[i]`` (N, 3).

    Returns:
        squared distances (N,) and barycentric coordinates (N, 3) of the closest points.
    """
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    ab, ac, ap = b - a, c - a, points - a
    d00 = np.einsum("ni,ni->n", ab, ab)
    d01 = np.einsum("ni,ni->n", ab, ac)
    d11 = np.einsum("ni,ni->n", ac, ac)
    d20 = np.einsum("ni,ni->n", ap, ab)
    d21 = np.einsum("ni,ni->n", ap, ac)
    denom = np.maximum(d00 * d11 - d01 * d01, 1e-30)
    v = (d11 * d20 - d01 * d21) / denom
    w = (d00 * d21 - d01 * d20) / denom
    bary = np.stack([1.0 - v - w, v, w], axis=-1)
    inside = np.all(bary >= 0.0, axis=-1)
    proj = np.einsum("nk,nki->ni", bary, tri)
    best_d = np.where(inside, np.sum((points - proj) ** 2, axis=-1), np.inf)
    best_bary = np.where(inside[:, None], bary, 0.0)
    # Outside the triangle the closest point lies on an edge.
    for i, j in ((0, 1), (1, 2), (2, 0)):
        p0, p1 = tri[:, i], tri[:, j]
        e = p1 - p0
        t = np.clip(np.einsum("ni,ni->n", points - p0, e) / np.maximum(np.einsum("ni,ni->n", e, e), 1e-30), 0.0, 1.0)
        d = np.sum((points - (p0 + t[:, None] * e)) ** 2, axis=-1)
        better = ~inside & (d < best_d)
        cand = np.zeros_like(bary)
        cand[:, i] = 1.0 - t
        cand[:, j] = t
        best_bary = np.where(better[:, None], cand, best_bary)
        best_d = np.where(better, d, best_d)
    return best_d, best_bary


def _upsample(fine: np.ndarray, coarse: np.ndarray, coarse_faces: np.ndarray, kept: np.ndarray,
              fine_regions: np.ndarray, num_nearest: int = 8) -> SparseTriplets:
    # Candidate triangles: those around the fine vertex's nearest coarse vertices.
    vertex_faces: list[list[int]] = [[] for _ in range(len(coarse))]
    for fi, f in enumerate(coarse_faces):
        for v in f:
            vertex_faces[int(v)].append(fi)
    _, near = cKDTree(coarse).query(fine, k=min(num_nearest, len(coarse)))
    coarse_regions = fine_regions[kept]
    kept_pos = {int(k): i for i, k in enumerate(kept)}
    rows, cols, vals = [], [], []
    for n in range(len(fine)):
        if n in kept_pos:
            rows.append(n)
            cols.append(kept_pos[n])
            vals.append(1.0)
            continue
        cand = np.array(sorted({fi for c in near[n] for fi in vertex_faces[int(c)]}), dtype=np.int64)
        d2, bary = closest_barycentric(np.repeat(fine[n][None], len(cand), axis=0), coarse[coarse_faces[cand]])
        touches = (coarse_regions[coarse_faces[cand]] == fine_regions[n]).any(axis=1)
        best = int(np.argmin(np.where(touches, d2, d2 + 1.0)))
        for k in range(3):
            if bary[best, k] > 1e-9:
                rows.append(n)
                cols.append(int(coarse_faces[cand[best], k]))
                vals.append(float(bary[best, k]))
    return SparseTriplets(np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64),
                          np.array(vals), (len(fine), len(coarse)))


def build_hierarchy(vertices: np.ndarray, faces: np.ndarray, regions: np.ndarray, num_levels: int = 5,
                    length_weight: float = 0.25) -> Hierarchy:
    """Build ``num_levels`` levels, each with half the vertices of the previous one (rounded)."""
    verts = [vertices]
    facs = [faces]
    regs = [regions]
    kept_all, down, up = [], [], []
    for _ in range(num_levels - 1):
        target = int(round(len(verts[-1]) / 2))
        dec = decimate(verts[-1], facs[-1], target, length_weight=length_weight)
        coarse = verts[-1][dec.kept]
        kept_all.append(dec.kept)
        down.append(SparseTriplets(np.arange(len(dec.kept), dtype=np.int64), dec.kept.copy(),
                                   np.ones(len(dec.kept)), (len(dec.kept), len(verts[-1]))))
        up.append(_upsample(verts[-1], coarse, dec.faces, dec.kept, regs[-1]))
        verts.append(coarse)
        facs.append(dec.faces)
        regs.append(regs[-1][dec.kept])
    return Hierarchy(tuple(verts), tuple(facs), tuple(kept_all), tuple(down), tuple(up))
