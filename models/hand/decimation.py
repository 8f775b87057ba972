"""Quadric-error half-edge-collapse simplification of closed manifold triangle meshes.

A half-edge collapse u -> v removes u and keeps v where it is, so the simplified mesh's vertices are a
subset of the input's (what the down-sampling matrices of a spiral mesh decoder need). The cost is the
quadric error (Garland & Heckbert 1997) of v's position against the planes of both vertices' original
faces, plus ``length_weight`` times the squared edge length so that flat areas keep an even density.
Collapses that violate the link condition (would make the mesh non-manifold) or fold a triangle over are
skipped, so the output stays a closed, oriented manifold of the same genus. Deterministic.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Decimation:
    """Result of ``decimate``.

    kept: (V', ) int64 indices into the input vertices, increasing.
    faces: (F', 3) int64 faces over the kept vertices (indices into ``kept``), CCW winding.
    """

    kept: np.ndarray
    faces: np.ndarray


def _face_quadrics(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    tri = vertices[faces]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    area2 = np.linalg.norm(n, axis=1)
    n = n / np.maximum(area2, 1e-30)[:, None]
    d = -np.einsum("ij,ij->i", n, tri[:, 0])
    plane = np.concatenate([n, d[:, None]], axis=1)
    weight = area2 / max(float(area2.mean()), 1e-30)
    return weight[:, None, None] * plane[:, :, None] * plane[:, None, :]


def decimate(vertices: np.ndarray, faces: np.ndarray, target_vertices: int, length_weight: float = 0.05,
             max_normal_turn_cos: float = 0.2) -> Decimation:
    """Simplify a closed manifold mesh to ``target_vertices`` vertices by half-edge collapses.

    Args:
        vertices: (V, 3) float64 metres. faces: (F, 3) int64, CCW, closed manifold.
        target_vertices: number of vertices to keep (>= 4).
        length_weight: weight of the squared-edge-length term relative to the quadric error.
        max_normal_turn_cos: a collapse is refused if any surviving face's normal turns so that the cosine
            between old and new normal drops below this.
    Raises:
        ValueError: when no valid collapse is left before reaching the target.
    """
    if target_vertices < 4 or target_vertices > len(vertices):
        raise ValueError(f"decimate: target_vertices must be in [4, {len(vertices)}], got {target_vertices}")
    pos = [tuple(map(float, p)) for p in vertices]
    fq = _face_quadrics(vertices, faces)
    quad = np.zeros((len(vertices), 4, 4))
    for k in range(3):
        np.add.at(quad, faces[:, k], fq)
    sym = quad[:, [0, 0, 0, 0, 1, 1, 1, 2, 2, 3], [0, 1, 2, 3, 1, 2, 3, 2, 3, 3]]
    q = [list(map(float, m)) for m in sym]
    face_list = [list(map(int, f)) for f in faces]
    face_alive = [True] * len(face_list)
    vfaces: list[set[int]] = [set() for _ in range(len(vertices))]
    for fi, f in enumerate(face_list):
        for v in f:
            vfaces[v].add(fi)
    alive = [True] * len(vertices)
    stamp = [0] * len(vertices)

    def neighbours(v: int) -> set[int]:
        out: set[int] = set()
        for fi in vfaces[v]:
            out.update(face_list[fi])
        out.discard(v)
        return out

    def quadric_error(m: list[float], p: tuple[float, ...]) -> float:
        x, y, z = p
        return (m[0] * x * x + 2.0 * (m[1] * x * y + m[2] * x * z + m[3] * x) + m[4] * y * y
                + 2.0 * (m[5] * y * z + m[6] * y) + m[7] * z * z + 2.0 * m[8] * z + m[9])

    def edge_entry(a: int, b: int) -> tuple[float, int, int, int, int]:
        """Cheapest half-edge collapse of edge {a, b} as a heap entry (cost, removed, kept, stamps)."""
        qa, qb = q[a], q[b]
        m = [qa[i] + qb[i] for i in range(10)]
        pa, pb = pos[a], pos[b]
        length2 = (pa[0] - pb[0]) ** 2 + (pa[1] - pb[1]) ** 2 + (pa[2] - pb[2]) ** 2
        cab = quadric_error(m, pb)
        cba = quadric_error(m, pa)
        if cab <= cba:
            return (cab + length_weight * length2, a, b, stamp[a], stamp[b])
        return (cba + length_weight * length2, b, a, stamp[b], stamp[a])

    def push_edge(a: int, b: int) -> None:
        heapq.heappush(heap, edge_entry(a, b))

    edges = np.unique(np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1),
                      axis=0)
    heap: list[tuple[float, int, int, int, int]] = [edge_entry(int(a), int(b)) for a, b in edges]
    heapq.heapify(heap)

    def normal(p0: tuple[float, ...], p1: tuple[float, ...], p2: tuple[float, ...]) -> tuple[float, float, float]:
        ax, ay, az = p1[0] - p0[0], p1[1] - p0[1], p1[2] - p0[2]
        bx, by, bz = p2[0] - p0[0], p2[1] - p0[1], p2[2] - p0[2]
        return (ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx)

    def collapse_ok(u: int, v: int) -> bool:
        nu, nv = neighbours(u), neighbours(v)
        if len(nu & nv) != 2 or len(nu) + len(nv) - 4 < 3:
            return False
        pv = pos[v]
        for fi in vfaces[u]:
            f = face_list[fi]
            if v in f:
                continue
            pts = [pos[w] for w in f]
            n_old = normal(*pts)
            pts_new = [pv if w == u else pos[w] for w in f]
            n_new = normal(*pts_new)
            dot = n_old[0] * n_new[0] + n_old[1] * n_new[1] + n_old[2] * n_new[2]
            len_old = (n_old[0] ** 2 + n_old[1] ** 2 + n_old[2] ** 2) ** 0.5
            len_new = (n_new[0] ** 2 + n_new[1] ** 2 + n_new[2] ** 2) ** 0.5
            if len_new <= 1e-14 or dot < max_normal_turn_cos * len_old * len_new:
                return False
        return True

    num_alive = len(vertices)
    while num_alive > target_vertices:
        if not heap:
            raise ValueError(f"decimate: ran out of valid collapses at {num_alive} vertices "
                             f"(target {target_vertices})")
        _, u, v, su, sv = heapq.heappop(heap)
        if not (alive[u] and alive[v]) or stamp[u] != su or stamp[v] != sv:
            continue
        if v not in neighbours(u) or not collapse_ok(u, v):
            continue
        for fi in list(vfaces[u]):
            f = face_list[fi]
            if v in f:
                face_alive[fi] = False
                for w in f:
                    vfaces[w].discard(fi)
            else:
                f[f.index(u)] = v
                vfaces[v].add(fi)
        vfaces[u] = set()
        alive[u] = False
        q[v] = [a + b for a, b in zip(q[v], q[u])]
        stamp[v] += 1
        num_alive -= 1
        for w in sorted(neighbours(v)):
            push_edge(v, w)
    kept = np.array([i for i in range(len(vertices)) if alive[i]], dtype=np.int64)
    remap = -np.ones(len(vertices), dtype=np.int64)
    remap[kept] = np.arange(len(kept))
    new_faces = np.array([face_list[i] for i in range(len(face_list)) if face_alive[i]], dtype=np.int64)
    return Decimation(kept=kept, faces=remap[new_faces])
