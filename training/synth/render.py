"""Small CPU mesh rasteriser for synthetic hand images (numpy + OpenCV).

Within each mesh, faces are painted back to front (painter's algorithm, one `cv2.fillConvexPoly` per
face into a face-index buffer, sub-pixel vertex positions); meshes are merged with a per-pixel depth
test, so intersecting objects meet cleanly. Shading is Gouraud (lit per vertex with smooth
normals, interpolated per pixel with barycentric weights; fast, and fine at the sizes we render):
ambient (sky/ground hemisphere, darkened by a per-vertex ambient-occlusion factor) + wrapped Lambert
diffuse (a cheap stand-in for skin's subsurface scattering; with `MeshLayer.subsurface` the red channel
wraps further than blue, so light bleeds reddish past the terminator as in real skin) + Blinn-Phong
specular, for any number of directional lights; a per-pixel grain texture modulates the diffuse colour.

Shading happens directly on display values (no gamma decode/encode): lighting in linear space with a
2.2 gamma was tried and gave flatter, lower-contrast hands than webcams show (their tone curves add
contrast), and MediaPipe found fewer of them.

Conventions: camera frame is OpenCV's (x right, y down, z forward), metres; images (and albedos) are
BGR float32 display values in [0, 1]; pixel centres sit at integer coordinates.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

_SUBPIXEL_BITS = 4
_SUBPIXEL_SCALE = float(1 << _SUBPIXEL_BITS)
_NEAR_M = 0.02


@dataclass(frozen=True)
class DirectionalLight:
    """A light at infinity.

    direction_cam: (3,) unit vector from the surface TOWARD the light, camera frame.
    color_bgr: (3,) intensity per BGR channel (1.0 = white light of unit strength).
    """

    direction_cam: np.ndarray
    color_bgr: np.ndarray


@dataclass(frozen=True)
class Lighting:
    """Scene lighting: hemisphere ambient plus directional lights.

    ambient_sky_bgr / ambient_ground_bgr: (3,) ambient intensity for normals pointing up (-y) / down (+y).
    wrap: diffuse wrap in [0, 1); 0 = pure Lambert, larger = softer terminator (skin-like).
    """

    lights: tuple[DirectionalLight, ...]
    ambient_sky_bgr: np.ndarray
    ambient_ground_bgr: np.ndarray
    wrap: float = 0.3


@dataclass(frozen=True)
class MeshLayer:
    """One object to draw.

    vertices_cam: (V, 3) float, camera frame, metres.
    faces: (F, 3) int, outward-facing counter-clockwise winding (seen from outside, in a right-handed frame).
    albedo_bgr: (V, 3) float in [0, 1], per-vertex base colour.
    specular: per-object specular strength (0 = matte).
    shininess: Blinn-Phong exponent.
    label: integer written into the label map where this object is visible (> 0).
    texture_noise: amplitude of per-pixel multiplicative albedo noise (pores, cloth grain).
    cull_backfaces: skip faces facing away from the camera (closed meshes only).
    occlusion: optional (V,) float in [0, 1], ambient visibility per vertex (1 = open sky, lower in
        creases and between fingers); scales the ambient term fully and direct light partly.
    subsurface: extra diffuse wrap of the red channel (0 = none; ~0.3 for skin).
    """

    vertices_cam: np.ndarray
    faces: np.ndarray
    albedo_bgr: np.ndarray
    specular: float = 0.1
    shininess: float = 20.0
    label: int = 1
    texture_noise: float = 0.0
    cull_backfaces: bool = True
    occlusion: np.ndarray | None = None
    subsurface: float = 0.0


_DIRECT_OCCLUSION = np.float32(0.5)
"""How much of the ambient occlusion also darkens direct light (creases are partly shadowed)."""


@dataclass(frozen=True)
class RenderResult:
    """Output of `render_layers`.

    color_bgr: (H, W, 3) float32 in [0, 1], shaded colour where label > 0 (0 elsewhere).
    label: (H, W) uint8, the MeshLayer.label of the visible surface (0 = nothing).
    depth_m: (H, W) float32, camera z of the visible surface in metres (inf = nothing).
    alpha: (H, W) float32 in [0, 1], coverage with softened (anti-aliased) silhouettes.
    """

    color_bgr: np.ndarray
    label: np.ndarray
    depth_m: np.ndarray
    alpha: np.ndarray


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals, (V, 3) float32, for CCW outward faces."""
    v = vertices.astype(np.float64)
    tri = v[faces]
    face_n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals = np.zeros_like(v)
    for corner in range(3):
        np.add.at(normals, faces[:, corner], face_n)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return (normals / np.maximum(length, 1e-12)).astype(np.float32)


def project_points(points_cam: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Pinhole projection of (N, 3) camera-frame points (metres) to (N, 2) pixels with intrinsics K (3, 3)."""
    z = np.maximum(points_cam[:, 2:3], 1e-9)
    xy = points_cam[:, :2] / z
    return np.stack([K[0, 0] * xy[:, 0] + K[0, 1] * xy[:, 1] + K[0, 2], K[1, 1] * xy[:, 1] + K[1, 2]], axis=1)


def render_layers(
    layers: list[MeshLayer],
    K: np.ndarray,
    image_size: tuple[int, int],
    lighting: Lighting,
    rng: np.random.Generator | None = None,
) -> RenderResult:
    """Rasterise and shade several meshes together (they occlude one another correctly per face).

    K: (3, 3) intrinsics in pixels; image_size: (width, height). `rng` drives the per-pixel texture
    noise (None: no noise). Faces with a vertex closer than 2 cm are dropped.
    """
    width, height = image_size
    color = np.zeros((height, width, 3), np.float32)
    label = np.zeros((height, width), np.uint8)
    depth = np.full((height, width), np.inf, np.float32)
    alpha = np.zeros((height, width), np.float32)
    if not layers:
        return RenderResult(color, label, depth, alpha)

    verts, faces, albedo, normals, layer_of_face, layer_of_vertex = [], [], [], [], [], []
    offset = 0
    for index, layer in enumerate(layers):
        v = np.asarray(layer.vertices_cam, np.float64)
        f = np.asarray(layer.faces, np.int64)
        verts.append(v)
        faces.append(f + offset)
        albedo.append(np.asarray(layer.albedo_bgr, np.float32))
        normals.append(vertex_normals(v, f))
        layer_of_face.append(np.full(len(f), index, np.int32))
        layer_of_vertex.append(np.full(len(v), index, np.int32))
        offset += len(v)
    v_all = np.concatenate(verts)
    f_all = np.concatenate(faces)
    albedo_all = np.concatenate(albedo)
    normal_all = np.concatenate(normals)
    face_layer = np.concatenate(layer_of_face)
    vertex_layer = np.concatenate(layer_of_vertex)

    uv = project_points(v_all, K)
    tri_uv = uv[f_all]
    tri_z = v_all[f_all, 2]
    keep = tri_z.min(axis=1) > _NEAR_M
    # Signed area in pixel coordinates (y down): outward CCW faces seen from the front are clockwise here.
    e1 = tri_uv[:, 1] - tri_uv[:, 0]
    e2 = tri_uv[:, 2] - tri_uv[:, 0]
    area = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    cull = np.array([layer.cull_backfaces for layer in layers])[face_layer]
    keep &= np.where(cull, area < 0.0, np.abs(area) > 0.0)
    lo = tri_uv.min(axis=1)
    hi = tri_uv.max(axis=1)
    keep &= (hi[:, 0] >= 0) & (hi[:, 1] >= 0) & (lo[:, 0] <= width - 1) & (lo[:, 1] <= height - 1)
    keep &= np.abs(tri_uv).max(axis=(1, 2)) < 1e5
    face_ids = np.nonzero(keep)[0]
    if face_ids.size == 0:
        return RenderResult(color, label, depth, alpha)

    order = face_ids[np.argsort(-tri_z[face_ids].mean(axis=1), kind="stable")]
    x0 = int(max(np.floor(lo[face_ids, 0].min()) - 1, 0))
    y0 = int(max(np.floor(lo[face_ids, 1].min()) - 1, 0))
    x1 = int(min(np.ceil(hi[face_ids, 0].max()) + 2, width))
    y1 = int(min(np.ceil(hi[face_ids, 1].max()) + 2, height))
    # Painter's algorithm within each layer (closed meshes, small faces), a per-pixel depth test
    # between layers (so intersecting objects, e.g. the forearm inside the wrist, meet cleanly).
    shape = (y1 - y0, x1 - x0)
    tri_uv32 = tri_uv.astype(np.float32)
    z32 = v_all[:, 2].astype(np.float32)
    best_depth = np.full(shape, np.inf, np.float32)
    id_buffer = np.zeros(shape, np.int32)
    bary_map = np.zeros(shape + (2,), np.float32)
    for index in range(len(layers)):
        layer_faces = order[face_layer[order] == index]
        if layer_faces.size == 0:
            continue
        layer_ids = np.zeros(shape, np.int32)
        pts = np.round((tri_uv[layer_faces] - np.array([x0, y0])) * _SUBPIXEL_SCALE).astype(np.int32)
        for face, polygon in zip((layer_faces + 1).tolist(), pts):
            cv2.fillConvexPoly(layer_ids, polygon, face, cv2.LINE_8, _SUBPIXEL_BITS)
        ys, xs = np.nonzero(layer_ids)
        fid = layer_ids[ys, xs] - 1
        l1, l2 = _barycentric(tri_uv32[fid], (xs + x0).astype(np.float32), (ys + y0).astype(np.float32))
        corners = f_all[fid]
        z = z32[corners[:, 0]] * (1.0 - l1 - l2) + z32[corners[:, 1]] * l1 + z32[corners[:, 2]] * l2
        wins = z < best_depth[ys, xs]
        ys, xs = ys[wins], xs[wins]
        best_depth[ys, xs] = z[wins]
        id_buffer[ys, xs] = fid[wins] + 1
        bary_map[ys, xs, 0] = l1[wins]
        bary_map[ys, xs, 1] = l2[wins]

    ys, xs = np.nonzero(id_buffer)
    fid = id_buffer[ys, xs] - 1
    l1 = bary_map[ys, xs, 0]
    l2 = bary_map[ys, xs, 1]
    l0 = 1.0 - l1 - l2
    corners = f_all[fid]
    pixel_layer = face_layer[fid]

    # Gouraud shading: light every vertex once, then interpolate the lit colour per pixel. Packed
    # per-vertex values: diffuse colour (3), specular highlight (3), depth (1).
    packed = np.concatenate(
        [_shade_vertices(v_all, normal_all, albedo_all, layers, vertex_layer, lighting), v_all[:, 2:3].astype(np.float32)],
        axis=1,
    )
    pix = packed[corners[:, 0]] * l0[:, None] + packed[corners[:, 1]] * l1[:, None] + packed[corners[:, 2]] * l2[:, None]
    diffuse = pix[:, 0:3]
    noise_amp = np.array([layer.texture_noise for layer in layers], np.float32)[pixel_layer]
    if rng is not None and np.any(noise_amp > 0):
        grain = _grain_sample(rng, id_buffer.shape)[ys, xs]
        diffuse = diffuse * (1.0 + noise_amp * grain)[:, None]
    rgb = diffuse + pix[:, 3:6]

    label_values = np.array([layer.label for layer in layers], np.uint8)
    color[ys + y0, xs + x0] = rgb
    label[ys + y0, xs + x0] = label_values[pixel_layer]
    depth[ys + y0, xs + x0] = pix[:, 6]
    covered = (id_buffer > 0).astype(np.float32)
    # Soft silhouette: pixels on the inner rim of the coverage get partial alpha (cheap anti-aliasing).
    soft = cv2.GaussianBlur(covered, (3, 3), 0.6)
    alpha[y0:y1, x0:x1] = covered * np.clip(0.35 + soft, 0.0, 1.0)
    return RenderResult(np.clip(color, 0.0, None), label, depth, alpha)


def _barycentric(tri_uv: np.ndarray, px: np.ndarray, py: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Barycentric weights (l1, l2) of pixels (px, py) (N,) in their triangles tri_uv (N, 3, 2), clamped
    into the triangle (pixels filled by the rasteriser's boundary rule may lie just outside)."""
    e1 = tri_uv[:, 1] - tri_uv[:, 0]
    e2 = tri_uv[:, 2] - tri_uv[:, 0]
    det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    det = np.where(np.abs(det) < 1e-12, np.float32(1e-12), det)
    dx = px - tri_uv[:, 0, 0]
    dy = py - tri_uv[:, 0, 1]
    l1 = np.clip((dx * e2[:, 1] - dy * e2[:, 0]) / det, 0.0, 1.0)
    l2 = np.clip((e1[:, 0] * dy - e1[:, 1] * dx) / det, 0.0, 1.0)
    over = l1 + l2
    shrink = np.where(over > 1.0, 1.0 / np.maximum(over, 1e-9), 1.0).astype(np.float32)
    return (l1 * shrink).astype(np.float32), (l2 * shrink).astype(np.float32)


def _shade_vertices(
    vertices: np.ndarray,
    normals: np.ndarray,
    albedo: np.ndarray,
    layers: list[MeshLayer],
    vertex_layer: np.ndarray,
    lighting: Lighting,
) -> np.ndarray:
    """Per-vertex lit colour: (V, 6) float32 = diffuse colour (3) and the Blinn-Phong highlight (3),
    BGR display values. Vertices of open (non-culled) layers
    are lit on the viewer's side."""
    pos = vertices.astype(np.float32)
    view = -pos / np.maximum(np.linalg.norm(pos, axis=1, keepdims=True), 1e-9)
    nrm = normals
    two_sided = np.array([not layer.cull_backfaces for layer in layers])[vertex_layer]
    if np.any(two_sided):
        flip = two_sided & ((nrm * view).sum(axis=1) < 0)
        nrm = np.where(flip[:, None], -nrm, nrm)
    occlusion = np.concatenate(
        [
            np.ones(int((vertex_layer == i).sum()), np.float32) if layer.occlusion is None else np.asarray(layer.occlusion, np.float32)
            for i, layer in enumerate(layers)
        ]
    )[:, None]
    up = np.float32(0.5) - np.float32(0.5) * nrm[:, 1:2]
    ambient = up * lighting.ambient_sky_bgr[None].astype(np.float32) + (1.0 - up) * lighting.ambient_ground_bgr[None].astype(np.float32)
    shade = ambient * occlusion
    direct_vis = 1.0 - _DIRECT_OCCLUSION * (1.0 - occlusion)
    spec_strength = np.array([layer.specular for layer in layers], np.float32)[vertex_layer][:, None]
    shininess = np.array([layer.shininess for layer in layers], np.float32)[vertex_layer][:, None]
    subsurface = np.array([layer.subsurface for layer in layers], np.float32)[vertex_layer][:, None]
    # Per-channel wrap (B, G, R): red light scatters furthest in skin.
    wrap = np.float32(lighting.wrap) + subsurface * np.array([[-0.3, 0.2, 1.0]], np.float32)
    wrap = np.clip(wrap, 0.0, 0.95)
    highlight = np.zeros_like(nrm)
    for light in lighting.lights:
        ldir = np.asarray(light.direction_cam, np.float32)
        ldir = ldir / max(float(np.linalg.norm(ldir)), 1e-9)
        lcol = np.asarray(light.color_bgr, np.float32)[None]
        ndl = (nrm @ ldir)[:, None]
        shade = shade + np.clip((ndl + wrap) / (1.0 + wrap), 0.0, None) * lcol * direct_vis
        half = view + ldir[None]
        half /= np.maximum(np.linalg.norm(half, axis=1, keepdims=True), 1e-9)
        ndh = np.clip((nrm * half).sum(axis=1), 0.0, None)[:, None]
        lit = (ndl > 0).astype(np.float32)
        highlight = highlight + lit * spec_strength * np.power(ndh, shininess) * lcol * direct_vis
    return np.concatenate([albedo * shade, highlight], axis=1).astype(np.float32)


_GRAIN_SIDE = 512
_grain_cache: list[np.ndarray] = []


def _grain_texture() -> np.ndarray:
    """A fixed, tileable-enough multi-scale noise texture (512, 512) float32, zero mean, std ~0.8."""
    if not _grain_cache:
        rng = np.random.default_rng(12345)
        fine = cv2.GaussianBlur(rng.standard_normal((_GRAIN_SIDE, _GRAIN_SIDE)).astype(np.float32), (0, 0), 0.8)
        coarse = cv2.resize(rng.standard_normal((_GRAIN_SIDE // 8, _GRAIN_SIDE // 8)).astype(np.float32), (_GRAIN_SIDE, _GRAIN_SIDE), interpolation=cv2.INTER_CUBIC)
        _grain_cache.append(np.tile(1.2 * fine + 0.5 * coarse, (2, 2)))
    return _grain_cache[0]


def _grain_sample(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) float32 window of the grain texture at a random offset (tiled when larger than it)."""
    height, width = shape
    texture = _grain_texture()
    if height > _GRAIN_SIDE or width > _GRAIN_SIDE:
        reps = (height // texture.shape[0] + 1, width // texture.shape[1] + 1)
        return np.tile(texture, reps)[:height, :width]
    oy, ox = int(rng.integers(0, _GRAIN_SIDE)), int(rng.integers(0, _GRAIN_SIDE))
    return texture[oy : oy + height, ox : ox + width]


def composite(background_bgr: np.ndarray, render: RenderResult) -> np.ndarray:
    """Alpha-blend a render over a background; both BGR float32 in [0, 1], (H, W, 3). Returns a new image."""
    a = render.alpha[:, :, None]
    return background_bgr * (1.0 - a) + render.color_bgr * a
