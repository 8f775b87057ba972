"""The rotated second view of real crops (training.real_views): image, 2D and 3D rotations agree."""
from __future__ import annotations

import math

import torch

from models.rectify import apply_homography
from training.real_views import (
    draw_angles,
    photometric_jitter,
    rotate_crops,
    rotate_points_2d,
    rotation_about_optical_axis,
)


def _blob(size: int, centre: tuple[float, float], sigma: float = 1.5) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij")
    return torch.exp(-((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / (2 * sigma**2))


def _peak(image: torch.Tensor) -> torch.Tensor:
    """Intensity-weighted centroid (x, y) of a ``(S, S)`` image, pixels."""
    ys, xs = torch.meshgrid(torch.arange(image.shape[0], dtype=torch.float32),
                            torch.arange(image.shape[1], dtype=torch.float32), indexing="ij")
    w = image / image.sum()
    return torch.stack([(w * xs).sum(), (w * ys).sum()])


def test_a_rotated_crop_moves_its_content_where_rotate_points_2d_says() -> None:
    size = 64
    point = (44.0, 20.0)
    crops = _blob(size, point).expand(3, 3, size, size).clone()
    angles = torch.tensor([math.radians(25.0), math.radians(-40.0), 0.0])
    rotated = rotate_crops(crops, angles)
    expected = rotate_points_2d(torch.tensor([[point]]).expand(3, 1, 2), angles, size)[:, 0]
    for k in range(3):
        assert torch.allclose(_peak(rotated[k, 0]), expected[k], atol=0.3), (k, _peak(rotated[k, 0]), expected[k])
    assert torch.allclose(rotated[2], crops[2], atol=1e-5)  # zero angle: unchanged


def test_the_3d_rotation_matches_the_image_rotation_under_a_centred_pinhole() -> None:
    size, focal = 128, 300.0
    centre = (size - 1) / 2.0
    k = torch.tensor([[focal, 0.0, centre], [0.0, focal, centre], [0.0, 0.0, 1.0]])
    points = torch.randn(2, 21, 3, generator=torch.Generator().manual_seed(0)) * 0.05 + torch.tensor([0.0, 0.0, 0.5])
    angles = torch.tensor([0.4, -0.9])

    def project(p: torch.Tensor) -> torch.Tensor:
        uvw = p @ k.T
        return uvw[..., :2] / uvw[..., 2:]

    rotated_3d = points @ rotation_about_optical_axis(angles).transpose(1, 2)
    assert torch.allclose(project(rotated_3d), rotate_points_2d(project(points), angles, size), atol=1e-3)


def test_angles_and_jitter_stay_in_range() -> None:
    generator = torch.Generator().manual_seed(3)
    angles = draw_angles(500, 30.0, generator)
    assert angles.abs().max() <= math.radians(30.0) + 1e-6 and angles.std() > 0.2
    crops = torch.rand(4, 3, 16, 16, generator=generator)
    jittered = photometric_jitter(crops, generator)
    assert jittered.min() >= 0.0 and jittered.max() <= 1.0 and not torch.allclose(jittered, crops)


def test_rotate_rows_turns_real_crops_and_their_labels_together() -> None:
    from training.mp_data import CueBatch
    from training.real_views import rotate_rows

    size = 64
    n = 3
    gen = torch.Generator().manual_seed(0)
    uv = torch.rand(n, 21, 2, generator=gen) * 40 + 12
    crops = torch.zeros(n, 3, size, size)
    for k in range(n):
        crops[k] = _blob(size, (float(uv[k, 5, 0]), float(uv[k, 5, 1])))
    world = torch.randn(n, 21, 3, generator=gen) * 0.03
    batch = CueBatch(crops=crops, K_virt=torch.eye(3).expand(n, 3, 3), virt_from_cam=torch.eye(3).expand(n, 3, 3).clone(),
                     crop_from_image=torch.eye(3).expand(n, 3, 3), mp_uv=uv, mp_world_virt=world, mp_score=torch.ones(n),
                     has_gt=torch.zeros(n, dtype=torch.bool), joints_cam=torch.zeros(n, 21, 3), verts_cam=torch.zeros(n, 5, 3),
                     joints_uv=torch.zeros(n, 21, 2), verts_rel=torch.zeros(n, 5, 3), joints_rel=torch.zeros(n, 21, 3),
                     has_mp=torch.ones(n, dtype=torch.bool))
    angles = torch.tensor([math.radians(150.0), math.radians(-90.0)])
    out = rotate_rows(batch, torch.tensor([0, 2]), angles)
    assert torch.equal(out.crops[1], crops[1]) and torch.equal(out.mp_uv[1], uv[1])  # row 1 untouched
    for row, angle in ((0, angles[0]), (2, angles[1])):
        assert torch.allclose(_peak(out.crops[row, 0]), out.mp_uv[row, 5], atol=0.5)  # label follows the image
        assert torch.allclose(out.mp_world_virt[row].norm(dim=-1), world[row].norm(dim=-1), atol=1e-6)
        assert torch.allclose(out.mp_world_virt[row, :, 2], world[row, :, 2])  # a roll keeps depth
        # the rotated virtual camera sees the same camera-space points as the rotated landmarks
        cam = world[row] @ batch.virt_from_cam[row]  # virt -> cam (orthonormal)
        assert torch.allclose(cam @ out.virt_from_cam[row].T, out.mp_world_virt[row], atol=1e-5)
        # image -> crop now lands on the rolled crop (the input's crop_from_image is the identity)
        assert torch.allclose(apply_homography(uv[row], out.crop_from_image[row]), out.mp_uv[row], atol=1e-4)
    assert torch.equal(out.crop_from_image[1], batch.crop_from_image[1])
    assert torch.allclose(batch.mp_uv, uv)  # the input batch is not modified
