"""Annotated frames: 2D skeleton, projected mesh (shaded or wireframe), labels, FPS and stage timings.

Pure functions on BGR ``uint8`` images (OpenCV's colour order); they return a new image and never
show anything. Used by the headless recorder, the benchmark (to time the draw stage) and the Qt UI.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import cv2
import numpy as np

from app.detection import HAND_CONNECTIONS
from app.results import STAGES, FrameResult, HandResult

RIGHT_COLOUR_BGR: tuple[int, int, int] = (60, 180, 255)   # orange
LEFT_COLOUR_BGR: tuple[int, int, int] = (255, 160, 60)    # blue
LANDMARK_COLOUR_BGR: tuple[int, int, int] = (80, 255, 80)
_SHADE_LEVELS = 12
_DEPTH_SLABS = 8
# Unit vector toward the light, camera frame: from the camera side, upper right.
_LIGHT_DIR_CAM = np.array([0.3, -0.5, -1.0]) / np.linalg.norm([0.3, -0.5, -1.0])


@dataclass(frozen=True)
class DrawOptions:
    """What to draw on the annotated frame.

    ``mesh`` is ``"shaded"``, ``"wireframe"`` or ``"none"``; ``mirror_view`` flips the finished image
    horizontally (selfie view) before the text is drawn, so labels stay readable.
    """

    mesh: str = "shaded"
    mesh_alpha: float = 0.6
    skeleton: bool = True
    landmarks: bool = False
    labels: bool = True
    box: bool = False
    stats: bool = True
    mirror_view: bool = False


def hand_colour(hand: HandResult) -> tuple[int, int, int]:
    return RIGHT_COLOUR_BGR if hand.handedness == "right" else LEFT_COLOUR_BGR


def _to_px(points: np.ndarray) -> np.ndarray:
    """Float pixels -> int32 with 4 bits of sub-pixel precision (cv2 ``shift=4``)."""
    return np.round(np.asarray(points, np.float64) * 16.0).astype(np.int32)


def _drawable(points: np.ndarray, shape: tuple[int, ...]) -> bool:
    """Finite and within a generous margin of the image (OpenCV's fixed-point coordinates overflow)."""
    pts = np.asarray(points, np.float64)
    limit = 4.0 * max(shape[0], shape[1]) + 1000.0
    return bool(pts.size and np.all(np.isfinite(pts)) and np.abs(pts).max() < limit)


def draw_skeleton(image: np.ndarray, joints_img: np.ndarray, colour: tuple[int, int, int], thickness: int = 2) -> None:
    """Draw the 21-joint skeleton (``(21, 2)`` pixels) onto ``image`` in place (skipped when off-scale)."""
    if not _drawable(joints_img, image.shape):
        return
    pts = _to_px(joints_img)
    for a, b in HAND_CONNECTIONS:
        cv2.line(image, tuple(pts[a]), tuple(pts[b]), colour, thickness, cv2.LINE_AA, shift=4)
    for p in pts:
        cv2.circle(image, tuple(p), 3 * 16, (255, 255, 255), -1, cv2.LINE_AA, shift=4)


def _mesh_layer(
    image: np.ndarray,
    vertices_cam: np.ndarray,
    faces: np.ndarray,
    project,
    colour: tuple[int, int, int],
    mode: str,
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]] | None:
    """Render one mesh over its bounding box: (BGR layer, uint8 mask 0/255, (x0, y0) of the box in the image)."""
    if vertices_cam.shape[0] == 0 or np.any(vertices_cam[:, 2] <= 1e-3):
        return None
    uv = project(vertices_cam)
    if not _drawable(uv, image.shape):
        return None
    tri_cam = vertices_cam[faces]
    normals = np.cross(tri_cam[:, 1] - tri_cam[:, 0], tri_cam[:, 2] - tri_cam[:, 0])
    centres = tri_cam.mean(axis=1)
    # Outward faces whose normal points toward the camera are visible (back-face culling).
    visible = np.einsum("ij,ij->i", normals, centres) < 0.0
    if not np.any(visible):
        return None
    tri_uv = uv[faces[visible]]
    # Work inside the mesh's bounding box only (a hand covers a small part of the frame).
    height, width = image.shape[:2]
    x0 = int(np.clip(np.floor(tri_uv[..., 0].min()) - 1, 0, width))
    y0 = int(np.clip(np.floor(tri_uv[..., 1].min()) - 1, 0, height))
    x1 = int(np.clip(np.ceil(tri_uv[..., 0].max()) + 2, 0, width))
    y1 = int(np.clip(np.ceil(tri_uv[..., 1].max()) + 2, 0, height))
    if x1 <= x0 or y1 <= y0:
        return None
    layer = np.zeros((y1 - y0, x1 - x0, 3), np.uint8)
    tri_px = _to_px(tri_uv - np.array([x0, y0], np.float64))
    if mode == "wireframe":
        cv2.polylines(layer, list(tri_px), True, colour, 1, cv2.LINE_AA, shift=4)
    else:
        n = normals[visible]
        n = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
        lambert = np.clip(n @ _LIGHT_DIR_CAM, 0.0, 1.0)
        level = np.minimum(((0.35 + 0.65 * lambert) * _SHADE_LEVELS).astype(np.int64), _SHADE_LEVELS - 1)
        depth = centres[visible][:, 2]
        span = max(float(depth.max() - depth.min()), 1e-9)
        slab = np.minimum(((depth.max() - depth) / span * _DEPTH_SLABS).astype(np.int64), _DEPTH_SLABS - 1)
        # Painter's algorithm over depth slabs (far to near); inside a slab, one fillPoly call per shade
        # level. (One call over overlapping triangles would punch even-odd holes; triangles of one slab
        # and one shade rarely overlap, and this keeps the OpenCV calls under slabs x levels.)
        key = slab * _SHADE_LEVELS + level
        order = np.argsort(key, kind="stable")
        key_sorted = key[order]
        starts = np.r_[0, np.flatnonzero(np.diff(key_sorted)) + 1]
        stops = np.r_[starts[1:], len(order)]
        base = np.asarray(colour, np.float64)
        for start, stop in zip(starts.tolist(), stops.tolist()):
            shade = (key_sorted[start] % _SHADE_LEVELS + 0.5) / _SHADE_LEVELS
            c = np.clip(base * shade, 1, 255).astype(np.int64).tolist()
            cv2.fillPoly(layer, list(tri_px[order[start:stop]]), c, cv2.LINE_8, shift=4)
    # Every drawn pixel has a non-zero channel (shades are clipped to >= 1), so the max is a mask.
    mask = cv2.threshold(cv2.max(cv2.max(layer[..., 0], layer[..., 1]), layer[..., 2]), 0, 255, cv2.THRESH_BINARY)[1]
    return layer, mask, (x0, y0)


def draw_mesh(
    image: np.ndarray,
    vertices_cam: np.ndarray,
    faces: np.ndarray,
    project,
    colour: tuple[int, int, int],
    *,
    mode: str = "shaded",
    alpha: float = 0.6,
) -> None:
    """Blend a camera-space mesh projected with ``project`` (``(N, 3)`` metres -> ``(N, 2)`` pixels) into ``image``."""
    if mode == "none":
        return
    if mode not in ("shaded", "wireframe"):
        raise ValueError(f"mesh mode must be 'shaded', 'wireframe' or 'none', got {mode!r}")
    rendered = _mesh_layer(image, np.asarray(vertices_cam, np.float64), np.asarray(faces), project, colour, mode)
    if rendered is None:
        return
    layer, mask, (x0, y0) = rendered
    roi = image[y0:y0 + layer.shape[0], x0:x0 + layer.shape[1]]
    blended = cv2.addWeighted(roi, 1.0 - alpha, layer, alpha, 0.0)
    cv2.copyTo(blended, mask, roi)


def _text(image: np.ndarray, text: str, org: tuple[int, int], scale: float, colour: tuple[int, int, int]) -> None:
    cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)


def format_stats(fps: float | None, timings_ms: Mapping[str, float]) -> list[str]:
    """Text lines for the FPS and per-stage latency readout."""
    lines = [f"FPS {fps:5.1f}" if fps is not None else "FPS   -"]
    parts = [f"{s} {timings_ms[s]:.1f}" for s in STAGES if s in timings_ms]
    if parts:
        lines.append("ms: " + "  ".join(parts))
    return lines


def draw_annotated(
    bgr: np.ndarray,
    result: FrameResult,
    *,
    options: DrawOptions = DrawOptions(),
    fps: float | None = None,
    project=None,
) -> np.ndarray:
    """Annotated copy of the frame.

    Args:
        bgr: ``(H, W, 3)`` uint8 BGR frame the result was computed on.
        result: the pipeline's result for that frame.
        options: what to draw.
        fps: frames per second to show (the caller measures it), or None.
        project: callable ``(N, 3)`` camera metres -> ``(N, 2)`` pixels; default: pinhole with ``result.K``
            (pass ``Intrinsics.project`` to include lens distortion).
    Returns:
        ``(H, W, 3)`` uint8 BGR annotated image.
    """
    out = np.array(bgr, dtype=np.uint8, copy=True)
    K = np.asarray(result.K, np.float64)

    def pinhole(points: np.ndarray) -> np.ndarray:
        p = np.asarray(points, np.float64)
        return (p[:, :2] / p[:, 2:3]) * np.array([K[0, 0], K[1, 1]]) + np.array([K[0, 2], K[1, 2]])

    proj = project or pinhole
    for hand in result.hands:
        colour = hand_colour(hand)
        draw_mesh(out, hand.vertices_cam, result.faces_for(hand), proj, colour,
                  mode=options.mesh, alpha=options.mesh_alpha)
        if options.landmarks:
            draw_skeleton(out, hand.landmarks_img, LANDMARK_COLOUR_BGR, 1)
        if options.skeleton:
            draw_skeleton(out, hand.joints_img, colour, 2)
        if options.box:
            x0, y0, x1, y1 = _to_px(hand.box_img)
            cv2.rectangle(out, (x0, y0), (x1, y1), colour, 1, cv2.LINE_AA, shift=4)
    width = out.shape[1]
    if options.mirror_view:
        out = np.ascontiguousarray(out[:, ::-1])
    scale = max(1.0, out.shape[0] / 480.0)  # text grows with the frame, readable at 360p
    lines = format_stats(fps, result.timings_ms) if options.stats else []
    if options.stats and result.intrinsics_assumed:
        lines.append("intrinsics assumed (FOV default)")
    stats_bottom = int(18 * scale * (len(lines) + 1))
    if options.labels:
        for hand in result.hands:
            x0, y0, y1 = float(hand.box_img[0]), float(hand.box_img[1]), float(hand.box_img[3])
            if options.mirror_view:
                x0 = width - 1 - float(hand.box_img[2])
            label = f"#{hand.track_id} {hand.handedness} {hand.distance_m:.2f} m"
            # Above the box, unless that would overwrite the stats block: then just below it.
            y = y0 - 6 if y0 - 6 > stats_bottom or x0 > 420 * scale else min(stats_bottom + 4, y1)
            _text(out, label, (int(max(0, x0)), int(max(14, y))), 0.5 * scale, hand_colour(hand))
    for i, line in enumerate(lines):
        _text(out, line, (8, int(18 * scale * (i + 1))), 0.45 * scale, (255, 255, 255))
    return out
