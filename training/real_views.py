"""Label-free terms for real crops: a second, rotated view of each crop and a fused-cue teacher.

Why: real photos have no 3D ground truth. With only joint-level terms on them, the image-only
(``network``) and 2D-only (``mediapipe``) paths learn joints that agree with MediaPipe while the
surface between them is unconstrained, and on real crops they produced flat, spiky meshes. Two
label-free signals constrain the whole mesh:

- **Two-view consistency** (M3DHMR's L_con2D / L_con3D, Wang et al.): the same crop rotated by an
  angle theta about its centre, with other photometric jitter, must give the same hand. A rectified
  crop's virtual camera has its principal point at the crop centre and square pixels, so rotating the
  image by theta is exactly rotating the camera about its optical axis: 2D joints rotate by theta
  about the centre and wrist-relative 3D points rotate by theta about the z axis.
- **Any roll**: the real photos show mostly upright hands (raised hands, sign digits), while a user's
  hand may hang down; :func:`rotate_rows` turns real crops and their MediaPipe labels by any angle
  (the same exact camera roll), so the image-only path sees every orientation of real hands.
- **Fused-cue teacher**: the same network run with MediaPipe's 2D and 3D landmarks (the ``fused``
  cue, which follows real fingers: 0.028 agreement on the real photos) gives a whole mesh; the image-
  only and 2D-only rows of the same crop are pulled towards it (detached: the teacher is not moved).

Frames: crop pixels with pixel centres at integer coordinates (centre ``(S - 1) / 2``); 3D points in
the crop's virtual camera (x right, y down, z forward), metres or the template's unit size.
"""
from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F

from models.rectify import apply_homography
from training.mp_data import CueBatch


def rotation_2d(angles_rad: torch.Tensor) -> torch.Tensor:
    """``(B,)`` angles -> ``(B, 2, 2)`` rotations of image coordinates (x right, y down)."""
    c, s = torch.cos(angles_rad), torch.sin(angles_rad)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)


def rotation_about_optical_axis(angles_rad: torch.Tensor) -> torch.Tensor:
    """``(B, 3, 3)``: the camera-frame rotation that matches :func:`rotation_2d` in the image."""
    rot = torch.zeros(angles_rad.shape[0], 3, 3, dtype=angles_rad.dtype, device=angles_rad.device)
    rot[:, :2, :2] = rotation_2d(angles_rad)
    rot[:, 2, 2] = 1.0
    return rot


def roll_homography(angles_rad: torch.Tensor, crop_size: int) -> torch.Tensor:
    """``(B, 3, 3)``: crop pixels -> where they land in the crop rotated by :func:`rotate_crops`
    (``p -> R (p - c) + c``, ``c`` the crop centre)."""
    centre = (crop_size - 1) / 2.0
    rot = rotation_2d(angles_rad)
    hom = torch.zeros(angles_rad.shape[0], 3, 3, dtype=angles_rad.dtype, device=angles_rad.device)
    hom[:, :2, :2] = rot
    hom[:, :2, 2] = centre * (1.0 - rot.sum(dim=-1))
    hom[:, 2, 2] = 1.0
    return hom


def rotate_points_2d(uv: torch.Tensor, angles_rad: torch.Tensor, crop_size: int) -> torch.Tensor:
    """``(B, N, 2)`` crop px -> where those pixels land in the crop rotated by :func:`rotate_crops`."""
    return apply_homography(uv, roll_homography(angles_rad.to(uv.dtype), crop_size))


def rotate_crops(crops: torch.Tensor, angles_rad: torch.Tensor) -> torch.Tensor:
    """Rotate ``(B, 3, S, S)`` crops by ``angles_rad`` about their centre (content at ``p`` moves to
    ``R (p - c) + c``); corners outside the source repeat the border, as the app's crops do."""
    inverse = rotation_2d(-angles_rad)  # affine_grid maps output coordinates to input coordinates
    theta = torch.cat([inverse, torch.zeros(crops.shape[0], 2, 1, dtype=crops.dtype, device=crops.device)], dim=2)
    grid = F.affine_grid(theta.to(crops.dtype), list(crops.shape), align_corners=False)
    return F.grid_sample(crops, grid, mode="bilinear", padding_mode="border", align_corners=False)


def photometric_jitter(crops: torch.Tensor, generator: torch.Generator, strength: float = 0.2) -> torch.Tensor:
    """Per-row brightness, contrast and colour-balance jitter of ``(B, 3, S, S)`` RGB crops in [0, 1]."""
    batch = crops.shape[0]

    def uniform(*shape: int) -> torch.Tensor:
        return (torch.rand(*shape, generator=generator) * 2.0 - 1.0).to(crops.device, crops.dtype)

    gain = 1.0 + strength * uniform(batch, 3, 1, 1)
    contrast = 1.0 + strength * uniform(batch, 1, 1, 1)
    mean = crops.mean(dim=(1, 2, 3), keepdim=True)
    return ((crops - mean) * contrast + mean * gain).clamp(0.0, 1.0)


def draw_angles(batch: int, max_deg: float, generator: torch.Generator) -> torch.Tensor:
    """``(B,)`` angles uniform in ``[-max_deg, max_deg]`` degrees, returned in radians."""
    return (torch.rand(batch, generator=generator, dtype=torch.float64) * 2.0 - 1.0).float() * math.radians(max_deg)


def rotate_rows(batch: CueBatch, rows: torch.Tensor, angles_rad: torch.Tensor) -> CueBatch:
    """``batch`` with the crops of ``rows`` (``(R,)`` indices) rotated by ``angles_rad (R,)`` about their
    centre, and their MediaPipe pseudo-labels rotated with them: ``mp_uv`` in the image,
    ``mp_world_virt`` about the optical axis, ``virt_from_cam`` (the rotated virtual camera) and
    ``crop_from_image`` (the image -> crop homography followed by the roll).

    Exact for real rows, whose labels are only MediaPipe's; rows with ground truth would also need their
    true 2D joints and wrist-relative points turned, so this is meant for real rows (crop pixels,
    virtual-camera frame as in the module docstring).
    """
    if rows.numel() == 0:
        return batch
    crop = int(batch.crops.shape[-1])
    rot3 = rotation_about_optical_axis(angles_rad.to(batch.crops.dtype))
    crops, mp_uv = batch.crops.clone(), batch.mp_uv.clone()
    mp_world, virt = batch.mp_world_virt.clone(), batch.virt_from_cam.clone()
    crop_from_image = batch.crop_from_image.clone()
    roll = roll_homography(angles_rad.to(batch.crops.dtype), crop)
    crops[rows] = rotate_crops(batch.crops[rows], angles_rad)
    crop_from_image[rows] = roll @ batch.crop_from_image[rows]
    mp_uv[rows] = apply_homography(batch.mp_uv[rows], roll)
    mp_world[rows] = batch.mp_world_virt[rows] @ rot3.transpose(1, 2)
    virt[rows] = rot3 @ batch.virt_from_cam[rows]
    return dataclasses.replace(batch, crops=crops, mp_uv=mp_uv, mp_world_virt=mp_world, virt_from_cam=virt,
                               crop_from_image=crop_from_image)
