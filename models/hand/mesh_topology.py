"""Triangle-mesh topology helpers (pure numpy): edges, manifold checks, orientation, ordered rings.

Faces are (F, 3) int64 vertex indices with counter-clockwise winding seen from outside.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.errors import TopologyError


def directed_edges(faces: np.ndarray) -> np.ndarray:
    """(3F, 2) the directed edges of every face in winding order: all first edges (v0, v1), then all
    (v1, v2), then all (v2, v0); row ``k * F + i`` belongs to face ``i``."""
    return np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])


def unique_edges(faces: np.ndarray) -> np.ndarray:
    """(E, 2) int64 undirected edges (sorted pairs, lexicographic order)."""
    return np.unique(np.sort(directed_edges(faces), axis=1), axis=0)


def face_adjacency(faces: np.ndarray) -> np.ndarray:
    """(P, 2) int64: the two faces on each side of every interior edge, in the order of
    :func:`unique_edges` (edges with one face, on an open boundary, are left out).

    Raises:
        TopologyError: ``faces`` is not (F, 3), or an edge is shared by more than two faces.
    """
    f = np.asarray(faces, dtype=np.int64)
    if f.ndim != 2 or f.shape[1] != 3:
        raise TopologyError(f"faces must have shape (F, 3), got {tuple(f.shape)}")
    _, edge_id, counts = np.unique(np.sort(directed_edges(f), axis=1), axis=0, return_inverse=True,
                                   return_counts=True)
    if bool((counts > 2).any()):
        raise TopologyError("an edge is shared by more than two faces (not a manifold mesh)")
    edge_id = edge_id.reshape(-1)
    order = np.argsort(edge_id, kind="stable")
    ids, owners = edge_id[order], np.tile(np.arange(len(f)), 3)[order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    starts = starts[counts[ids[starts]] == 2]
    return np.stack([owners[starts], owners[starts + 1]], axis=1)


def euler_characteristic(num_vertices: int, faces: np.ndarray) -> int:
    """V - E + F (2 for a closed genus-0 surface)."""
    return int(num_vertices - len(unique_edges(faces)) + len(faces))


@dataclass(frozen=True)
class ManifoldReport:
    """Result of ``check_closed_manifold``; ``ok`` is True when every check passed."""

    edges_not_shared_by_two_faces: int
    inconsistently_oriented_edges: int
    unused_vertices: int
    non_manifold_vertices: int
    components: int
    euler_characteristic: int

    @property
    def ok(self) -> bool:
        return (self.edges_not_shared_by_two_faces == 0 and self.inconsistently_oriented_edges == 0
                and self.unused_vertices == 0 and self.non_manifold_vertices == 0 and self.components == 1
                and self.euler_characteristic == 2)


def connected_components(num_vertices: int, faces: np.ndarray) -> np.ndarray:
    """(V,) int64 component label of each vertex (union-find over face edges)."""
    parent = np.arange(num_vertices)

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a, b in unique_edges(faces):
        ra, rb = find(int(a)), find(int(b))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    roots = np.array([find(i) for i in range(num_vertices)])
    _, labels = np.unique(roots, return_inverse=True)
    return labels.astype(np.int64)


def check_closed_manifold(num_vertices: int, faces: np.ndarray) -> ManifoldReport:
    """Check a mesh is a closed, consistently oriented, connected 2-manifold of genus 0."""
    directed = directed_edges(faces)
    und = np.sort(directed, axis=1)
    _, counts = np.unique(und, axis=0, return_counts=True)
    bad_share = int(np.sum(counts != 2))
    # Consistent orientation: each directed edge occurs exactly once.
    _, dcounts = np.unique(directed, axis=0, return_counts=True)
    bad_orient = int(np.sum(dcounts != 1))
    used = np.zeros(num_vertices, dtype=bool)
    used[faces.ravel()] = True
    non_manifold = 0
    for v, ring in enumerate(_fan_successors(num_vertices, faces)):
        if not ring:
            continue
        start = next(iter(ring))
        seen, cur = 1, ring.get(start)
        while cur is not None and cur != start and seen <= len(ring):
            cur = ring.get(cur)
            seen += 1
        if cur != start or seen != len(ring):
            non_manifold += 1
    return ManifoldReport(
        edges_not_shared_by_two_faces=bad_share,
        inconsistently_oriented_edges=bad_orient,
        unused_vertices=int(np.sum(~used)),
        non_manifold_vertices=non_manifold,
        components=int(connected_components(num_vertices, faces).max() + 1) if len(faces) else 0,
        euler_characteristic=euler_characteristic(num_vertices, faces),
    )


def _fan_successors(num_vertices: int, faces: np.ndarray) -> list[dict[int, int]]:
    """Per vertex v, map a -> b for every face (v, a, b) in CCW order."""
    succ: list[dict[int, int]] = [dict() for _ in range(num_vertices)]
    for f in faces:
        a, b, c = int(f[0]), int(f[1]), int(f[2])
        succ[a][b] = c
        succ[b][c] = a
        succ[c][a] = b
    return succ


def ordered_one_rings(num_vertices: int, faces: np.ndarray) -> list[list[int]]:
    """Per vertex, its neighbours in counter-clockwise order (seen from outside), starting at the
    smallest neighbour index. Requires a closed manifold mesh."""
    rings: list[list[int]] = []
    for succ in _fan_successors(num_vertices, faces):
        if not succ:
            rings.append([])
            continue
        start = min(succ)
        ring = [start]
        cur = succ[start]
        while cur != start:
            ring.append(cur)
            cur = succ[cur]
            if len(ring) > len(succ):
                raise ValueError("ordered_one_rings: the mesh is not manifold around a vertex")
        rings.append(ring)
    return rings


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V, 3) area-weighted unit vertex normals."""
    tri = vertices[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    vn = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(vn, faces[:, k], fn)
    return vn / np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-20)


def signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Signed enclosed volume (positive for outward winding), cubic metres."""
    tri = vertices[faces]
    return float(np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6.0)
