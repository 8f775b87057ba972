"""Fabricated hand-topology fixture for the network tests (independent of the real asset).

``make_icosphere_asset()`` builds a HandAsset-like object from a subdivided icosahedron with 5 levels
(12 -> 42 -> 162 -> 642 -> 2562 vertices; level 0 = finest) with the fields of TOPOLOGY_CONTRACT.md:
BFS spirals of length 9, exact down (vertex picking) / up (midpoint averaging) matrices, six contiguous
regions (nearest of the +-x/+-y/+-z directions), dilated region-restricted ROI spirals and a joint
regressor averaging 1-rings. Coordinates are metres (radius 5 cm), joint 0 (wrist) at the origin.
"""
from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch

from models.config import M3DHMRConfig


@dataclass(frozen=True)
class FakeSparseCOO:
    indices: np.ndarray  # (2, nnz) int64
    values: np.ndarray  # (nnz,) float32
    shape: tuple[int, int]

    def to_torch(self) -> torch.Tensor:
        return torch.sparse_coo_tensor(torch.from_numpy(self.indices), torch.from_numpy(self.values), self.shape).coalesce()


@dataclass(frozen=True)
class FakeHandAsset:
    version: str
    sha256: str
    template_vertices: np.ndarray
    faces: np.ndarray
    joint_regressor: np.ndarray
    regions: np.ndarray
    level_num_vertices: tuple[int, ...]
    level_faces: tuple[np.ndarray, ...]
    spirals: tuple[np.ndarray, ...]
    down: tuple[FakeSparseCOO, ...]
    up: tuple[FakeSparseCOO, ...]
    roi_spirals: np.ndarray
    extra: dict[str, str] = field(default_factory=dict)


def _icosahedron() -> tuple[np.ndarray, np.ndarray]:
    phi = (1.0 + 5.0**0.5) / 2.0
    verts = np.array(
        [[-1, phi, 0], [1, phi, 0], [-1, -phi, 0], [1, -phi, 0], [0, -1, phi], [0, 1, phi],
         [0, -1, -phi], [0, 1, -phi], [phi, 0, -1], [phi, 0, 1], [-phi, 0, -1], [-phi, 0, 1]],
        dtype=np.float64,
    )
    faces = np.array(
        [[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4], [11, 10, 2],
         [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9], [4, 9, 5],
         [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]],
        dtype=np.int64,
    )
    return verts / np.linalg.norm(verts, axis=1, keepdims=True), faces


def _subdivide(verts: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    midpoint: dict[tuple[int, int], int] = {}
    parents: list[tuple[int, int]] = []
    new_verts = list(verts)

    def mid(a: int, b: int) -> int:
        key = (min(a, b), max(a, b))
        if key not in midpoint:
            point = (verts[a] + verts[b]) / 2.0
            new_verts.append(point / np.linalg.norm(point))
            midpoint[key] = len(new_verts) - 1
            parents.append(key)
        return midpoint[key]

    new_faces = []
    for a, b, c in faces:
        ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
        new_faces += [[a, ab, ca], [b, bc, ab], [c, ca, bc], [ab, bc, ca]]
    return np.array(new_verts), np.array(new_faces, dtype=np.int64), parents


def _neighbours(faces: np.ndarray, count: int) -> list[list[int]]:
    sets: list[set[int]] = [set() for _ in range(count)]
    for a, b, c in faces:
        sets[a] |= {b, c}
        sets[b] |= {a, c}
        sets[c] |= {a, b}
    return [sorted(s) for s in sets]


def _bfs_order(start: int, neighbours: list[list[int]], allowed: np.ndarray | None, limit: int) -> list[int]:
    order, seen, queue = [start], {start}, deque([start])
    while queue and len(order) < limit:
        for n in neighbours[queue.popleft()]:
            if n not in seen and (allowed is None or allowed[n]):
                seen.add(n)
                order.append(n)
                queue.append(n)
    return order


def _pad(order: list[int], length: int) -> list[int]:
    return (order + [order[-1]] * length)[:length]


def _coo(rows: list[int], cols: list[int], vals: list[float], shape: tuple[int, int]) -> FakeSparseCOO:
    return FakeSparseCOO(np.array([rows, cols], np.int64), np.array(vals, np.float32), shape)


@lru_cache(maxsize=2)
def make_icosphere_asset(levels: int = 5, spiral_length: int = 9, roi_length: int = 9) -> FakeHandAsset:
    verts, faces = _icosahedron()
    meshes = [(verts, faces, [])]
    for _ in range(levels - 1):
        verts, faces, parents = _subdivide(verts, faces)
        meshes.append((verts, faces, parents))
    meshes = meshes[::-1]  # level 0 = finest
    counts = tuple(len(m[0]) for m in meshes)
    spirals = []
    for verts_l, faces_l, _ in meshes:
        nbrs = _neighbours(faces_l, len(verts_l))
        spirals.append(np.array([_pad(_bfs_order(v, nbrs, None, spiral_length), spiral_length) for v in range(len(verts_l))], np.int64))
    down, up = [], []
    for level in range(levels - 1):
        fine, coarse = counts[level], counts[level + 1]
        parents = meshes[level][2]
        down.append(_coo(list(range(coarse)), list(range(coarse)), [1.0] * coarse, (coarse, fine)))
        rows, cols, vals = list(range(coarse)), list(range(coarse)), [1.0] * coarse
        for offset, (a, b) in enumerate(parents):
            rows += [coarse + offset] * 2
            cols += [a, b]
            vals += [0.5, 0.5]
        up.append(_coo(rows, cols, vals, (fine, coarse)))
    fine_verts, fine_faces, _ = meshes[0]
    directions = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], np.float64)
    regions = np.argmax(fine_verts @ directions.T, axis=1).astype(np.int64)
    nbrs = _neighbours(fine_faces, counts[0])
    roi = []
    for v in range(counts[0]):
        order = _bfs_order(v, nbrs, regions == regions[v], 2 * roi_length)
        roi.append(_pad(order[::2], roi_length))  # dilation 2: every other vertex of the region BFS
    joint_vertices = np.linspace(0, counts[0] - 1, 21).astype(np.int64)
    regressor = np.zeros((21, counts[0]), np.float32)
    for j, v in enumerate(joint_vertices):
        ring = [v] + nbrs[v]
        regressor[j, ring] = 1.0 / len(ring)
    template = (fine_verts * 0.05).astype(np.float32)
    template -= regressor[0] @ template
    digest = hashlib.sha256()
    for array in (template, fine_faces, regressor, regions, np.array(roi), *spirals):
        digest.update(np.ascontiguousarray(array).tobytes())
    return FakeHandAsset(
        version="icosphere-test",
        sha256=digest.hexdigest(),
        template_vertices=template,
        faces=fine_faces,
        joint_regressor=regressor,
        regions=regions,
        level_num_vertices=counts,
        level_faces=tuple(m[1] for m in meshes),
        spirals=tuple(spirals),
        down=tuple(down),
        up=tuple(up),
        roi_spirals=np.array(roi, np.int64),
    )


def tiny_config(**overrides: object) -> M3DHMRConfig:
    """A very small network config for fast tests (64 px crops)."""
    values: dict[str, object] = dict(
        name="test_tiny",
        encoder_blocks=(1, 1, 1, 1),
        width_mult=0.25,
        num_stacks=2,
        feature_channels=16,
        decoder_type="dsc",
        decoder_channels=(8, 8, 8, 16, 16),
        crop_size=64,
        num_kernels=4,
        dgp_hidden=8,
    )
    values.update(overrides)
    return M3DHMRConfig(**values)  # type: ignore[arg-type]
