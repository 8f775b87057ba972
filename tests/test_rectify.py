"""Rectification geometry (numpy and torch): round trips, centring, mirroring, consistency with projection."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from models.rectify import (
    cam_to_virtual,
    crop_to_image,
    image_to_crop,
    look_at_rotation,
    rectification_from_box,
    virtual_to_cam,
)

K_WEBCAM = np.array([[900.0, 0.0, 640.0], [0.0, 900.0, 360.0], [0.0, 0.0, 1.0]])
BOXES = np.array([[10.0, 8.0, 190.0, 170.0], [600.0, 300.0, 700.0, 420.0], [1100.0, 560.0, 1275.0, 715.0]])


def as_backend(array: np.ndarray, backend: str):
    return torch.from_numpy(array) if backend == "torch" else array


def to_numpy(array) -> np.ndarray:
    return array.numpy() if isinstance(array, torch.Tensor) else np.asarray(array)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("mirror", [False, True])
def test_round_trips(backend: str, mirror: bool) -> None:
    intrinsics = as_backend(np.broadcast_to(K_WEBCAM, (3, 3, 3)).copy(), backend)
    rect = rectification_from_box(intrinsics, as_backend(BOXES, backend), crop_size=128, mirror=mirror)
    rng = np.random.default_rng(0)
    pixels = as_backend(rng.uniform([0, 0], [1280, 720], size=(3, 50, 2)), backend)
    back = crop_to_image(image_to_crop(pixels, rect.H), rect.H)
    np.testing.assert_allclose(to_numpy(back), to_numpy(pixels), atol=1e-9)
    points = as_backend(rng.normal(size=(3, 50, 3)) + [0, 0, 2.0], backend)
    back3 = virtual_to_cam(cam_to_virtual(points, rect.virt_from_cam), rect.virt_from_cam)
    np.testing.assert_allclose(to_numpy(back3), to_numpy(points), atol=1e-9)
    assert type(back) is type(pixels) and type(rect.H) is type(pixels)
    det = np.linalg.det(to_numpy(rect.virt_from_cam))
    np.testing.assert_allclose(det, -1.0 if mirror else 1.0, atol=1e-12)
    np.testing.assert_allclose(to_numpy(rect.R) @ np.swapaxes(to_numpy(rect.R), -1, -2), np.broadcast_to(np.eye(3), (3, 3, 3)), atol=1e-12)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_corner_hand_ends_centred_in_crop(backend: str) -> None:
    box = np.array([5.0, 5.0, 185.0, 205.0])  # a hand in the top-left corner of a 1280x720 frame
    rect = rectification_from_box(as_backend(K_WEBCAM, backend), as_backend(box, backend), crop_size=128, margin=0.25)
    centre = as_backend(np.array([[(box[0] + box[2]) / 2, (box[1] + box[3]) / 2]]), backend)
    np.testing.assert_allclose(to_numpy(image_to_crop(centre, rect.H)), [[63.5, 63.5]], atol=1e-9)
    corners = as_backend(np.array([[box[0], box[1]], [box[2], box[1]], [box[2], box[3]], [box[0], box[3]]]), backend)
    in_crop = to_numpy(image_to_crop(corners, rect.H))
    offsets = np.abs(in_crop - 63.5)
    assert offsets.max() == pytest.approx(64.0 / 1.25, abs=1e-6)  # the box fills the crop up to the margin
    assert offsets.max(axis=0).min() > 35.0  # and is not squashed along either axis


def test_rotation_is_identity_for_centred_box_and_looks_at_centre() -> None:
    rotation = look_at_rotation(K_WEBCAM, np.array([640.0, 360.0]))
    np.testing.assert_allclose(rotation, np.eye(3), atol=1e-12)
    centre = np.array([100.0, 50.0])
    rotation = look_at_rotation(K_WEBCAM, centre)
    ray = np.linalg.inv(K_WEBCAM) @ np.array([*centre, 1.0])
    np.testing.assert_allclose(rotation @ (ray / np.linalg.norm(ray)), [0, 0, 1], atol=1e-12)


@pytest.mark.parametrize("mirror", [False, True])
def test_homography_agrees_with_virtual_camera_projection(mirror: bool) -> None:
    rect = rectification_from_box(K_WEBCAM, BOXES[0], crop_size=128, mirror=mirror)
    rng = np.random.default_rng(1)
    points_cam = rng.normal(scale=0.05, size=(30, 3)) + np.array([-0.55, -0.33, 0.9])
    pixels_img = points_cam @ K_WEBCAM.T
    pixels_img = pixels_img[:, :2] / pixels_img[:, 2:]
    points_virt = cam_to_virtual(points_cam, rect.virt_from_cam)
    pixels_crop = points_virt @ rect.K_virt.T
    pixels_crop = pixels_crop[:, :2] / pixels_crop[:, 2:]
    np.testing.assert_allclose(image_to_crop(pixels_img, rect.H), pixels_crop, atol=1e-9)


def test_mirroring_flips_the_crop_horizontally() -> None:
    plain = rectification_from_box(K_WEBCAM, BOXES[1], crop_size=128, mirror=False)
    mirrored = rectification_from_box(K_WEBCAM, BOXES[1], crop_size=128, mirror=True)
    pixels = np.random.default_rng(2).uniform([600, 300], [700, 420], size=(20, 2))
    a, b = image_to_crop(pixels, plain.H), image_to_crop(pixels, mirrored.H)
    np.testing.assert_allclose(b[:, 0], 127.0 - a[:, 0], atol=1e-9)
    np.testing.assert_allclose(b[:, 1], a[:, 1], atol=1e-9)


def test_batched_mirror_flags_and_torch_matches_numpy() -> None:
    mirror = np.array([False, True, False])
    intrinsics = np.broadcast_to(K_WEBCAM, (3, 3, 3)).copy()
    rect_np = rectification_from_box(intrinsics, BOXES, mirror=mirror)
    rect_t = rectification_from_box(torch.from_numpy(intrinsics), torch.from_numpy(BOXES), mirror=torch.from_numpy(mirror))
    for name in ("R", "virt_from_cam", "virt_to_cam", "K_virt", "H"):
        np.testing.assert_allclose(getattr(rect_t, name).numpy(), getattr(rect_np, name), atol=1e-12)
    assert rect_np.mirror.tolist() == mirror.tolist()
