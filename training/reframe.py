"""Re-frame rectified crops exactly: a new box centre (the virtual camera turned towards it) and a new
box size (a new focal length), with every label moved to match.

Why: the app crops each hand from MediaPipe's landmark box, and the fused trainer's synthetic crops are
framed the same way; the synthetic crop test set (``training.evaluate``) frames each hand with a
jittered box around its true joints instead. The image-only path scored lower on that framing than on
MediaPipe's crops of the same hands (README, "Measured results"), so synthetic rows are re-framed during
training: by random box shifts and scales (``draw_reframes``), or on a box drawn around their true 2D
joints the way the synthetic generator draws its boxes (``joint_box_reframes``).

A rectified crop is the image of a virtual pinhole camera ``K`` (``K_virt``: square pixels, principal
point at the crop centre). Turning that camera by ``R`` and scaling its focal length by ``zoom`` maps
crop pixels by the homography ``H = K' R K^-1`` (``K'``: ``K`` with ``zoom`` times the focal length):
exact for every point, whatever its depth. Frames as in ``training.real_views``: crop pixels with
centres at integer coordinates, 3D points in the crop's virtual camera (x right, y down, z forward).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from models.hand.model import axis_angle_to_rotmat
from models.rectify import apply_homography
from training.mp_data import CueBatch
from training.synth.dataset import CROP_MARGIN, BoxJitter, mediapipe_like_box


def rotation_to_optical_axis(rays: torch.Tensor) -> torch.Tensor:
    """``(B, 3)`` ray directions -> ``(B, 3, 3)`` the smallest rotations taking each onto +z."""
    r = rays / rays.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    z = torch.zeros_like(r)
    z[:, 2] = 1.0
    axis = torch.linalg.cross(r, z, dim=-1)
    sin = axis.norm(dim=-1, keepdim=True)
    angle = torch.atan2(sin, r[:, 2:3])
    return axis_angle_to_rotmat(axis / sin.clamp_min(1e-12) * angle)


def reframe_homography(K: torch.Tensor, centre_px: torch.Tensor, zoom: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The camera turn and new intrinsics that put crop pixel ``centre_px`` at the principal point, at
    ``zoom`` times the focal length.

    Args:
        K: ``(B, 3, 3)`` crop intrinsics; centre_px: ``(B, 2)`` crop pixels; zoom: ``(B,)`` (> 1: the hand
        grows in the crop).
    Returns:
        ``(H, R, K_new)``, each ``(B, 3, 3)``: crop pixels -> new crop pixels (homogeneous), the rotation
        of virtual-camera points, the new intrinsics.
    """
    ones = torch.ones_like(centre_px[:, :1])
    rays = (torch.linalg.inv(K) @ torch.cat([centre_px, ones], dim=1).unsqueeze(-1)).squeeze(-1)
    rot = rotation_to_optical_axis(rays)
    k_new = K.clone()
    k_new[:, 0, 0] = K[:, 0, 0] * zoom
    k_new[:, 1, 1] = K[:, 1, 1] * zoom
    k_new[:, 0, 1] = K[:, 0, 1] * zoom
    return k_new @ rot @ torch.linalg.inv(K), rot, k_new


def warp_crops(crops: torch.Tensor, H: torch.Tensor) -> torch.Tensor:
    """``(B, 3, S, S)`` crops resampled so that content at pixel ``p`` lands at ``H p``; outside the
    source the border repeats, as the app's crops do."""
    batch, _, size, _ = crops.shape
    coords = torch.arange(size, dtype=crops.dtype, device=crops.device)
    ys, xs = torch.meshgrid(coords, coords, indexing="ij")
    out_px = torch.stack([xs, ys], dim=-1).reshape(1, -1, 2).expand(batch, -1, -1)
    src = apply_homography(out_px, torch.linalg.inv(H).to(crops.dtype))
    grid = ((2.0 * src + 1.0) / size - 1.0).reshape(batch, size, size, 2)
    return F.grid_sample(crops, grid, mode="bilinear", padding_mode="border", align_corners=False)


def draw_reframes(batch: int, crop_size: int, shift_sigma: float, log_zoom_sigma: float,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, 2)`` new box centres (crop px; Gaussian shift of ``shift_sigma`` crop sides about the centre)
    and ``(B,)`` zooms (log-normal, ``log_zoom_sigma``)."""
    centre = (crop_size - 1) / 2.0
    shift = torch.randn(batch, 2, generator=generator) * shift_sigma * crop_size
    zoom = torch.exp(torch.randn(batch, generator=generator) * log_zoom_sigma)
    return centre + shift, zoom


def joint_box_reframes(joints_uv: torch.Tensor, crop_size: int, generator: torch.Generator,
                       jitter: BoxJitter = BoxJitter(), margin: float = CROP_MARGIN) -> tuple[torch.Tensor, torch.Tensor]:
    """Box centres ``(R, 2)`` (crop px) and zooms ``(R,)`` that frame each hand as the synthetic generator
    does: the box is ``training.synth.dataset.mediapipe_like_box`` of the true 2D joints, and its longer
    half side then spans ``S / 2 / (1 + margin)`` pixels, as ``models.rectify.virtual_focal_for_box``
    makes it.

    ``joints_uv``: ``(R, 21, 2)`` true 2D joints in crop pixels. The boxes' noise comes from a numpy
    generator seeded by one draw of ``generator`` (CPU).
    """
    rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))
    uv = joints_uv.detach().cpu().to(torch.float64).numpy()
    boxes = np.stack([mediapipe_like_box(hand, rng, jitter) for hand in uv]) if len(uv) else np.zeros((0, 4))
    half = 0.5 * (boxes[:, 2:] - boxes[:, :2]).max(axis=1)
    centre = torch.from_numpy(0.5 * (boxes[:, :2] + boxes[:, 2:]))
    zoom = torch.from_numpy((crop_size / 2.0) / (1.0 + margin) / half)
    return centre.to(joints_uv.dtype), zoom.to(joints_uv.dtype)


def reframe_rows(batch: CueBatch, rows: torch.Tensor, centre_px: torch.Tensor, zoom: torch.Tensor) -> CueBatch:
    """``batch`` with rows ``rows`` (``(R,)`` indices) re-framed on ``centre_px (R, 2)`` at ``zoom (R,)``:
    crops warped; ``K_virt``, ``virt_from_cam`` and ``crop_from_image`` follow the new virtual camera;
    MediaPipe's ``mp_uv`` and ``mp_world_virt`` and the ground truth (``joints_uv``, ``joints_rel``,
    ``verts_rel``; camera-space points are unchanged) move with it."""
    if rows.numel() == 0:
        return batch
    dtype = batch.crops.dtype
    H, rot, k_new = reframe_homography(batch.K_virt[rows], centre_px.to(dtype), zoom.to(dtype))
    fields = {k: getattr(batch, k).clone() for k in ("crops", "K_virt", "virt_from_cam", "crop_from_image", "mp_uv",
                                                     "mp_world_virt", "joints_uv", "joints_rel", "verts_rel")}
    fields["crops"][rows] = warp_crops(batch.crops[rows], H)
    fields["K_virt"][rows] = k_new
    fields["virt_from_cam"][rows] = rot @ batch.virt_from_cam[rows]
    fields["crop_from_image"][rows] = H @ batch.crop_from_image[rows]
    fields["mp_uv"][rows] = apply_homography(batch.mp_uv[rows], H)
    fields["mp_world_virt"][rows] = batch.mp_world_virt[rows] @ rot.transpose(1, 2)
    fields["joints_rel"][rows] = batch.joints_rel[rows] @ rot.transpose(1, 2)
    fields["verts_rel"][rows] = batch.verts_rel[rows] @ rot.transpose(1, 2)
    gt = batch.has_gt[rows].reshape(-1, 1, 1)
    moved_uv = apply_homography(batch.joints_uv[rows], H)
    fields["joints_uv"][rows] = torch.where(gt, moved_uv, batch.joints_uv[rows])
    return dataclasses.replace(batch, **fields)
