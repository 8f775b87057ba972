"""Spiral sequences over closed manifold triangle meshes (SpiralNet++ style, Gong et al. 2019).

A spiral starts at the vertex itself, then walks its 1-ring counter-clockwise (seen from outside,
starting at the smallest neighbour index), then the next rings in the same rotational order. Short
spirals are padded by repeating the last valid index (never -1).
"""
from __future__ import annotations

import numpy as np

from models.hand.mesh_topology import ordered_one_rings


def _spiral_sequence(v: int, rings: list[list[int]], allowed: np.ndarray | None, needed: int) -> list[int]:
    seq = [v]
    visited = {v}
    first = [u for u in rings[v] if allowed is None or allowed[u]]
    frontier = []
    for u in first:
        seq.append(u)
        visited.add(u)
        frontier.append(u)
    prev = v
    while len(seq) < needed and frontier:
        next_frontier = []
        for u in frontier:
            ring = rings[u]
            start = ring.index(prev) if prev in ring else 0
            for w in ring[start:] + ring[:start]:
                if w in visited or (allowed is not None and not allowed[w]):
                    continue
                visited.add(w)
                seq.append(w)
                next_frontier.append(w)
            prev = u
        frontier = next_frontier
    return seq


def spiral_indices(num_vertices: int, faces: np.ndarray, length: int = 9, dilation: int = 1,
                   regions: np.ndarray | None = None) -> np.ndarray:
    """Spiral index table.

    Args:
        num_vertices: V. faces: (F, 3) int64, closed manifold, CCW.
        length: entries per row (entry 0 is the vertex itself).
        dilation: keep every ``dilation``-th element of the full spiral sequence.
        regions: optional (V,) labels; when given, each spiral only visits vertices of its own region
            (walking through that region only).
    Returns:
        (V, length) int64.
    """
    if length < 1 or dilation < 1:
        raise ValueError(f"spiral_indices: length and dilation must be >= 1, got {length}, {dilation}")
    rings = ordered_one_rings(num_vertices, faces)
    needed = (length - 1) * dilation + 1
    out = np.zeros((num_vertices, length), dtype=np.int64)
    for v in range(num_vertices):
        allowed = None if regions is None else regions == regions[v]
        seq = _spiral_sequence(v, rings, allowed, needed)[:needed:dilation]
        seq = seq + [seq[-1]] * (length - len(seq))
        out[v] = seq
    return out
