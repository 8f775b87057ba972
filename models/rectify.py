"""Rectification geometry: a canonical virtual camera looking at the hand (numpy OR torch, batched).

Frames: *camera* = the real camera (x right, y down, z forward, metres); *virtual* = the virtual camera
after rotating toward the hand box centre (and mirroring x for left hands); *image* = real-image pixels;
*crop* = SxS pixels of the virtual camera. Pixel i has its centre at coordinate i (OpenCV convention),
so the crop's principal point is ``((S-1)/2, (S-1)/2)`` and mirroring the crop is ``u -> S-1-u``.

- ``R`` (proper rotation, camera -> virtual) turns the optical axis onto the ray through the box centre
  (look-at with the camera's y axis as "down" reference, so the hand keeps its image roll).
- ``M = diag(-1, 1, 1)`` for left hands (mirror in the virtual camera: the network only sees right hands);
  ``virt_from_cam = M @ R`` (det -1 when mirrored), ``virt_to_cam = virt_from_cam^T``.
- ``K_virt`` has the focal that maps the box, with a margin, onto the crop: the box corners' rays, seen in
  the virtual camera, reach at most ``(S/2) / (1 + margin)`` pixels from the centre.
- ``H = K_virt @ virt_from_cam @ K^-1`` maps image pixels to crop pixels (the app warps with it).

Every function accepts numpy arrays or torch tensors with leading batch dims ``*`` and returns the same
type, dtype and device.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

Array = Any  # np.ndarray | torch.Tensor (same type in and out)


def _is_torch(x: Array) -> bool:
    return isinstance(x, torch.Tensor)


def _stack(items: list[Array], axis: int) -> Array:
    return torch.stack(items, dim=axis) if _is_torch(items[0]) else np.stack(items, axis=axis)


def _cross(a: Array, b: Array) -> Array:
    return torch.linalg.cross(a, b, dim=-1) if _is_torch(a) else np.cross(a, b)


def _norm(a: Array) -> Array:
    return torch.linalg.norm(a, dim=-1, keepdims=True) if _is_torch(a) else np.linalg.norm(a, axis=-1, keepdims=True)


def _inv(a: Array) -> Array:
    return torch.linalg.inv(a) if _is_torch(a) else np.linalg.inv(a)


def _transpose(a: Array) -> Array:
    return a.transpose(-1, -2) if _is_torch(a) else np.swapaxes(a, -1, -2)


def _to_homogeneous(points: Array) -> Array:
    ones = points[..., :1] * 0 + 1
    return torch.cat([points, ones], dim=-1) if _is_torch(points) else np.concatenate([points, ones], axis=-1)


def _as_like(value: Array, like: Array) -> Array:
    if _is_torch(like):
        return torch.as_tensor(value, dtype=like.dtype, device=like.device)
    return np.asarray(value, dtype=like.dtype)


def apply_homography(points: Array, homography: Array) -> Array:
    """Map pixels ``(*, N, 2)`` through ``(*, 3, 3)`` homographies -> ``(*, N, 2)``."""
    mapped = _to_homogeneous(points) @ _transpose(homography)
    return mapped[..., :2] / mapped[..., 2:3]


def image_to_crop(points_img: Array, homography: Array) -> Array:
    """Image pixels ``(*, N, 2)`` -> crop pixels, with ``H = crop_from_image`` ``(*, 3, 3)``."""
    return apply_homography(points_img, homography)


def crop_to_image(points_crop: Array, homography: Array) -> Array:
    """Crop pixels ``(*, N, 2)`` -> image pixels (inverse of :func:`image_to_crop`)."""
    return apply_homography(points_crop, _inv(homography))


def cam_to_virtual(points_cam: Array, virt_from_cam: Array) -> Array:
    """Camera-frame points ``(*, N, 3)`` metres -> virtual-camera frame (``X_v = A X``, A orthogonal)."""
    return points_cam @ _transpose(virt_from_cam)


def virtual_to_cam(points_virt: Array, virt_from_cam: Array) -> Array:
    """Virtual-camera points ``(*, N, 3)`` -> camera frame (``X = A^T X_v``; also undoes mirroring)."""
    return points_virt @ virt_from_cam


def look_at_rotation(intrinsics: Array, center_px: Array) -> Array:
    """Rotation ``(*, 3, 3)`` camera -> virtual whose z axis is the ray through ``center_px (*, 2)``."""
    ray = (_to_homogeneous(center_px)[..., None, :] @ _transpose(_inv(intrinsics)))[..., 0, :]
    z_axis = ray / _norm(ray)
    down = _as_like([0.0, 1.0, 0.0], z_axis) + z_axis * 0
    x_axis = _cross(down, z_axis)
    x_axis = x_axis / _norm(x_axis)
    y_axis = _cross(z_axis, x_axis)
    return _stack([x_axis, y_axis, z_axis], axis=-2)


def mirror_matrix(mirror: Array) -> Array:
    """``diag(-1, 1, 1)`` where ``mirror (*,)`` is true, identity elsewhere -> ``(*, 3, 3)`` float."""
    if _is_torch(mirror):
        sign = 1.0 - 2.0 * mirror.to(torch.float64)
        ones = torch.ones_like(sign)
        return torch.diag_embed(torch.stack([sign, ones, ones], dim=-1))
    sign = 1.0 - 2.0 * np.asarray(mirror, dtype=np.float64)
    ones = np.ones_like(sign)
    diag = np.stack([sign, ones, ones], axis=-1)
    return diag[..., :, None] * np.eye(3)


def virtual_intrinsics(focal: Array, crop_size: int) -> Array:
    """``K_virt (*, 3, 3)`` for focal ``(*,)`` pixels; principal point ``((S-1)/2, (S-1)/2)``."""
    center = focal * 0 + (crop_size - 1) / 2.0
    zero, one = focal * 0, focal * 0 + 1
    return _stack(
        [_stack([focal, zero, center], -1), _stack([zero, focal, center], -1), _stack([zero, zero, one], -1)], -2
    )


def box_corners(box_xyxy: Array) -> Array:
    """``(*, 4)`` box (x0, y0, x1, y1) pixels -> corners ``(*, 4, 2)``."""
    x0, y0, x1, y1 = box_xyxy[..., 0], box_xyxy[..., 1], box_xyxy[..., 2], box_xyxy[..., 3]
    return _stack([_stack([x0, y0], -1), _stack([x1, y0], -1), _stack([x1, y1], -1), _stack([x0, y1], -1)], -2)


def virtual_focal_for_box(intrinsics: Array, box_xyxy: Array, rotation: Array, crop_size: int, margin: float) -> Array:
    """Focal ``(*,)`` making the box (seen by the rotated camera) span ``S / (1 + margin)`` pixels at most."""
    rays = _to_homogeneous(box_corners(box_xyxy)) @ _transpose(rotation @ _inv(intrinsics))
    tangents = rays[..., :2] / rays[..., 2:3]
    flat = abs(tangents).reshape(tuple(tangents.shape[:-2]) + (8,))
    extent = flat.amax(dim=-1) if _is_torch(flat) else flat.max(axis=-1)
    return (crop_size / 2.0) / (1.0 + margin) / extent


@dataclass(frozen=True)
class Rectification:
    """Everything needed to warp one hand into the canonical crop and to map results back (see module doc)."""

    R: Array  # (*, 3, 3) proper rotation camera -> virtual (before mirroring)
    virt_from_cam: Array  # (*, 3, 3) M @ R
    virt_to_cam: Array  # (*, 3, 3) (M @ R)^T: pass to the network as `virt_to_cam`
    K_virt: Array  # (*, 3, 3) crop intrinsics
    H: Array  # (*, 3, 3) crop_from_image homography
    mirror: Array  # (*,) bool
    crop_size: int


def rectification_from_box(
    intrinsics: Array,
    box_xyxy: Array,
    crop_size: int = 128,
    margin: float = 0.25,
    mirror: Array | bool = False,
) -> Rectification:
    """Build the rectification of hand boxes ``(*, 4)`` image pixels seen by a camera ``K (*, 3, 3)``.

    ``mirror`` (bool or ``(*,)``) mirrors the virtual camera for left hands.
    """
    batch_shape = box_xyxy.shape[:-1]
    if _is_torch(box_xyxy):
        mirror_arr = torch.as_tensor(mirror, dtype=torch.bool, device=box_xyxy.device).expand(batch_shape)
    else:
        mirror_arr = np.broadcast_to(np.asarray(mirror, dtype=bool), batch_shape)
    center = (box_xyxy[..., :2] + box_xyxy[..., 2:]) / 2.0
    rotation = look_at_rotation(intrinsics, center)
    focal = virtual_focal_for_box(intrinsics, box_xyxy, rotation, crop_size, margin)
    k_virt = virtual_intrinsics(focal, crop_size)
    mirror_m = _as_like(mirror_matrix(mirror_arr), rotation)
    virt_from_cam = mirror_m @ rotation
    homography = k_virt @ virt_from_cam @ _inv(intrinsics)
    return Rectification(
        R=rotation,
        virt_from_cam=virt_from_cam,
        virt_to_cam=_transpose(virt_from_cam),
        K_virt=k_virt,
        H=homography,
        mirror=mirror_arr,
        crop_size=crop_size,
    )
