"""Closed triangle meshes of simple shapes (forearm tube, occluders), numpy, metres.

All meshes are watertight with outward counter-clockwise winding, built in a local frame and placed
with `transform_points`.
"""
from __future__ import annotations

import numpy as np


def uv_sphere(radius: float = 1.0, rings: int = 10, segments: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Sphere centred at the origin. Returns vertices (V, 3) float64 and faces (F, 3) int64."""
    theta = np.linspace(0.0, np.pi, rings + 1)[1:-1]
    phi = np.linspace(0.0, 2.0 * np.pi, segments, endpoint=False)
    ring_pts = [
        np.stack([np.sin(t) * np.cos(phi), np.sin(t) * np.sin(phi), np.full_like(phi, np.cos(t))], axis=1) for t in theta
    ]
    verts = np.concatenate([[[0.0, 0.0, 1.0]], *ring_pts, [[0.0, 0.0, -1.0]]]) * radius
    faces = []
    top, bottom = 0, len(verts) - 1
    for s in range(segments):
        faces.append([top, 1 + s, 1 + (s + 1) % segments])
    for r in range(rings - 2):
        a0 = 1 + r * segments
        b0 = a0 + segments
        for s in range(segments):
            s1 = (s + 1) % segments
            faces.append([a0 + s, b0 + s, b0 + s1])
            faces.append([a0 + s, b0 + s1, a0 + s1])
    last = 1 + (rings - 2) * segments
    for s in range(segments):
        faces.append([last + s, bottom, last + (s + 1) % segments])
    return verts, np.asarray(faces, np.int64)


def capped_tube(
    radii_start: tuple[float, float],
    radii_end: tuple[float, float],
    length: float,
    segments: int = 20,
    sections: int = 6,
    cap_bulge: float = 0.6,
) -> tuple[np.ndarray, np.ndarray]:
    """Elliptic tube along +z from z=0 to z=length, radii (rx, ry) interpolated linearly, both ends closed
    by domes (bulge = dome height / mean radius). Returns vertices (V, 3) float64, faces (F, 3) int64."""
    profile = [
        (t * length, (1 - t) * radii_start[0] + t * radii_end[0], (1 - t) * radii_start[1] + t * radii_end[1])
        for t in np.linspace(0.0, 1.0, sections + 1)
    ]
    return profile_tube(profile, segments=segments, cap_bulge=cap_bulge)


def profile_tube(
    profile: list[tuple[float, float, float]], segments: int = 20, cap_bulge: float = 0.6
) -> tuple[np.ndarray, np.ndarray]:
    """Closed elliptic tube along +z through rings (z, rx, ry) given in increasing z (at least 2), capped
    by domes at both ends. Returns vertices (V, 3) float64, faces (F, 3) int64, outward winding."""
    phi = np.linspace(0.0, 2.0 * np.pi, segments, endpoint=False)
    rings = [np.stack([rx * np.cos(phi), ry * np.sin(phi), np.full_like(phi, z)], axis=1) for z, rx, ry in profile]
    z0, rx0, ry0 = profile[0]
    z1, rx1, ry1 = profile[-1]
    start_cap = np.array([[0.0, 0.0, z0 - cap_bulge * 0.5 * (rx0 + ry0)]])
    end_cap = np.array([[0.0, 0.0, z1 + cap_bulge * 0.5 * (rx1 + ry1)]])
    verts = np.concatenate([start_cap, *rings, end_cap])
    faces = []
    for s in range(segments):
        faces.append([0, 1 + (s + 1) % segments, 1 + s])
    for r in range(len(profile) - 1):
        a0 = 1 + r * segments
        b0 = a0 + segments
        for s in range(segments):
            s1 = (s + 1) % segments
            faces.append([a0 + s, a0 + s1, b0 + s1])
            faces.append([a0 + s, b0 + s1, b0 + s])
    last = 1 + (len(profile) - 1) * segments
    end = len(verts) - 1
    for s in range(segments):
        faces.append([last + s, last + (s + 1) % segments, end])
    return verts, np.asarray(faces, np.int64)


def sweep_tube(
    centers: np.ndarray, frames: np.ndarray, radii: np.ndarray, segments: int = 18, cap_bulge: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Closed elliptic tube swept along a curved centre line, capped by domes at both ends.

    centers: (N, 3) ring centres (N >= 2), in order along the tube. frames: (N, 3, 3) right-handed
    orthonormal ring frames whose columns are (x, y, t): the ring's ellipse axes and the unit tangent
    (direction of travel). radii: (N, 2) ellipse radii along x and y. Returns vertices
    (N * segments + 2, 3) float64 and faces (F, 3) int64 with outward winding (same layout as
    `profile_tube`, of which this is the curved generalisation).
    """
    centers = np.asarray(centers, np.float64)
    frames = np.asarray(frames, np.float64)
    radii = np.asarray(radii, np.float64)
    phi = np.linspace(0.0, 2.0 * np.pi, segments, endpoint=False)
    local = np.stack([np.cos(phi), np.sin(phi)], axis=1)  # (S, 2)
    offsets = local[None, :, 0:1] * (radii[:, None, 0:1] * frames[:, None, :, 0]) + local[None, :, 1:2] * (
        radii[:, None, 1:2] * frames[:, None, :, 1]
    )
    rings = centers[:, None, :] + offsets  # (N, S, 3)
    start_cap = centers[0] - cap_bulge * 0.5 * radii[0].sum() * frames[0, :, 2]
    end_cap = centers[-1] + cap_bulge * 0.5 * radii[-1].sum() * frames[-1, :, 2]
    verts = np.concatenate([start_cap[None], rings.reshape(-1, 3), end_cap[None]])
    return verts, _tube_faces(len(centers), segments)


def _tube_faces(num_rings: int, segments: int) -> np.ndarray:
    """Faces (F, 3) int64 of a capped tube laid out as [start cap, rings..., end cap]."""
    s = np.arange(segments)
    s1 = (s + 1) % segments
    start = np.stack([np.zeros(segments, np.int64), 1 + s1, 1 + s], axis=1)
    r = np.arange(num_rings - 1)[:, None]
    a0 = 1 + r * segments
    b0 = a0 + segments
    quad_a = np.stack(np.broadcast_arrays(a0 + s, a0 + s1, b0 + s1), axis=-1).reshape(-1, 3)
    quad_b = np.stack(np.broadcast_arrays(a0 + s, b0 + s1, b0 + s), axis=-1).reshape(-1, 3)
    sides = np.stack([quad_a.reshape(num_rings - 1, segments, 3), quad_b.reshape(num_rings - 1, segments, 3)], axis=2).reshape(-1, 3)
    last = 1 + (num_rings - 1) * segments
    end = np.stack([last + s, last + s1, np.full(segments, num_rings * segments + 1)], axis=1)
    return np.concatenate([start, sides, end]).astype(np.int64)


def box(size: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned box centred at the origin with edge lengths `size` (x, y, z); 12 faces."""
    sx, sy, sz = (0.5 * s for s in size)
    verts = np.array(
        [[-sx, -sy, -sz], [sx, -sy, -sz], [sx, sy, -sz], [-sx, sy, -sz], [-sx, -sy, sz], [sx, -sy, sz], [sx, sy, sz], [-sx, sy, sz]]
    )
    quads = [[0, 3, 2, 1], [4, 5, 6, 7], [0, 1, 5, 4], [2, 3, 7, 6], [1, 2, 6, 5], [0, 4, 7, 3]]
    faces = []
    for a, b, c, d in quads:
        faces.append([a, b, c])
        faces.append([a, c, d])
    return verts, np.asarray(faces, np.int64)


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotation (3, 3) taking unit vector a to unit vector b (both (3,))."""
    a = a / np.linalg.norm(a)
    b = b / np.linalg.norm(b)
    v = np.cross(a, b)
    c = float(np.dot(a, b))
    if c < -1.0 + 1e-9:
        axis = np.cross(a, [1.0, 0.0, 0.0])
        if np.linalg.norm(axis) < 1e-6:
            axis = np.cross(a, [0.0, 1.0, 0.0])
        axis /= np.linalg.norm(axis)
        return 2.0 * np.outer(axis, axis) - np.eye(3)
    vx = np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
    return np.eye(3) + vx + vx @ vx / (1.0 + c)


def transform_points(points: np.ndarray, rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """x' = R x + t for (N, 3) points."""
    return points @ rotation.T + translation[None]


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """Uniformly distributed rotation matrix (3, 3) from a random unit quaternion."""
    q = rng.standard_normal(4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def axis_angle_to_matrix(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues rotation (3, 3) about a (3,) axis by `angle` radians."""
    axis = np.asarray(axis, np.float64)
    axis = axis / np.linalg.norm(axis)
    kx = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    return np.eye(3) + np.sin(angle) * kx + (1.0 - np.cos(angle)) * kx @ kx
