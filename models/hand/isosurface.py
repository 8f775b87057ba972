"""Marching tetrahedra: a closed, manifold, outward-oriented triangle mesh from a sampled field.

Each grid cube is split into the six Kuhn tetrahedra that share its main diagonal; the split is the same
in every cube, so neighbouring tetrahedra agree on shared faces and the extracted surface is watertight.
Used at build time only.
"""
from __future__ import annotations

import itertools

import numpy as np

# Corner c of a cube has offset (c & 1, (c >> 1) & 1, (c >> 2) & 1) in (x, y, z) grid steps.
_KUHN_TETS: np.ndarray = np.array(
    [[0, 1 << a, (1 << a) | (1 << b), 7] for a, b, _ in itertools.permutations(range(3))], dtype=np.int64
)


def _case_table() -> list[list[tuple[tuple[int, int], ...]]]:
    """For each inside-bitmask of a tetrahedron: triangles as triples of (inside, outside) corner pairs."""
    table: list[list[tuple[tuple[int, int], ...]]] = []
    for mask in range(16):
        ins = [i for i in range(4) if mask >> i & 1]
        outs = [i for i in range(4) if not mask >> i & 1]
        if len(ins) == 1:
            tris = [tuple((ins[0], o) for o in outs)]
        elif len(ins) == 3:
            tris = [tuple((i, outs[0]) for i in ins)]
        elif len(ins) == 2:
            a, b = ins
            c, d = outs
            tris = [((a, c), (a, d), (b, d)), ((a, c), (b, d), (b, c))]
        else:
            tris = []
        table.append(tris)
    return table


_CASES = _case_table()


def marching_tetrahedra(values: np.ndarray, origin: np.ndarray, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """Extract the zero level set of ``values`` (negative inside).

    Args:
        values: (nx, ny, nz) float64 samples at ``origin + spacing * (i, j, k)``; must be positive on the
            grid border so the surface is closed.
        origin: (3,) metres. spacing: metres.
    Returns:
        vertices (N, 3) float64 and faces (F, 3) int64 with outward (counter-clockwise) winding.
    """
    if np.any(values[[0, -1]] <= 0) or np.any(values[:, [0, -1]] <= 0) or np.any(values[:, :, [0, -1]] <= 0):
        raise ValueError("marching_tetrahedra: the field must be positive on the whole grid border")
    vals = np.where(values == 0.0, 1e-12, values)
    nx, ny, nz = vals.shape
    inside = vals < 0
    cube_in = np.zeros((nx - 1, ny - 1, nz - 1), dtype=np.int64)
    for c in range(8):
        dx, dy, dz = c & 1, (c >> 1) & 1, (c >> 2) & 1
        cube_in += inside[dx:nx - 1 + dx, dy:ny - 1 + dy, dz:nz - 1 + dz]
    ci, cj, ck = np.nonzero((cube_in > 0) & (cube_in < 8))
    corner_ids = np.empty((len(ci), 8), dtype=np.int64)
    for c in range(8):
        dx, dy, dz = c & 1, (c >> 1) & 1, (c >> 2) & 1
        corner_ids[:, c] = ((ci + dx) * ny + (cj + dy)) * nz + (ck + dz)
    tets = corner_ids[:, _KUHN_TETS].reshape(-1, 4)
    flat = vals.ravel()
    tet_in = flat[tets] < 0
    masks = (tet_in * (1 << np.arange(4))).sum(axis=1)
    edge_a: list[np.ndarray] = []
    edge_b: list[np.ndarray] = []
    for mask in range(1, 15):
        sel = tets[masks == mask]
        if len(sel) == 0:
            continue
        for tri in _CASES[mask]:
            edge_a.append(np.stack([sel[:, p[0]] for p in tri], axis=1))
            edge_b.append(np.stack([sel[:, p[1]] for p in tri], axis=1))
    ea = np.concatenate(edge_a)  # (T, 3) inside grid vertex of each triangle corner's edge
    eb = np.concatenate(edge_b)  # (T, 3) outside grid vertex
    keys = ea * flat.size + eb
    uniq, inverse = np.unique(keys.ravel(), return_inverse=True)
    faces = inverse.reshape(-1, 3).astype(np.int64)
    ga, gb = uniq // flat.size, uniq % flat.size
    va, vb = flat[ga], flat[gb]
    t = np.clip(va / (va - vb), 0.02, 0.98)

    def grid_pos(g: np.ndarray) -> np.ndarray:
        i = g // (ny * nz)
        j = (g // nz) % ny
        k = g % nz
        return origin + spacing * np.stack([i, j, k], axis=1).astype(np.float64)

    pa, pb = grid_pos(ga), grid_pos(gb)
    verts = pa + t[:, None] * (pb - pa)
    # Orient each triangle so that its normal points from the inside corners to the outside corners.
    tri = verts[faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    outward = grid_pos(eb.ravel()).reshape(-1, 3, 3).mean(1) - grid_pos(ea.ravel()).reshape(-1, 3, 3).mean(1)
    flip = np.einsum("ij,ij->i", normal, outward) < 0
    faces[flip] = faces[flip][:, [0, 2, 1]]
    return verts, faces
