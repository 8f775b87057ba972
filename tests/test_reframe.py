"""Exact re-framing of rectified crops (training.reframe): image, intrinsics, camera and labels agree."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.rectify import apply_homography
from training.mp_data import CueBatch, CueDataset, collate_cue_samples, load_cue_cache
from training.reframe import (draw_reframes, joint_box_reframes, reframe_homography, reframe_rows, rotation_to_optical_axis,
                              warp_crops)
from training.synth.dataset import BoxJitter
from tests.cue_cache_support import view_config, write_cue_cache


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> CueBatch:
    folder = write_cue_cache(tmp_path_factory.mktemp("reframe") / "synth", 4, 5, photos=False)
    dataset = CueDataset(load_cue_cache(folder), None, augment=False)
    return collate_cue_samples([dataset[i] for i in range(len(dataset))])


def _project(K: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    uvw = points @ K.transpose(1, 2)
    return uvw[..., :2] / uvw[..., 2:3]


def test_rotation_to_optical_axis_takes_each_ray_onto_z() -> None:
    rays = torch.tensor([[0.1, -0.2, 1.0], [0.0, 0.0, 1.0], [-0.3, 0.05, 0.9]], dtype=torch.float64)
    rot = rotation_to_optical_axis(rays)
    turned = (rot @ (rays / rays.norm(dim=-1, keepdim=True)).unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(turned, torch.tensor([[0.0, 0.0, 1.0]] * 3, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(rot @ rot.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(3, 3, 3), atol=1e-12, rtol=0)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(3, dtype=torch.float64))


def test_labels_camera_and_intrinsics_stay_consistent_after_reframing(batch: CueBatch) -> None:
    rows = torch.tensor([0, 2, 3])
    centre = torch.tensor([[50.0, 70.0], [80.0, 60.0], [63.5, 63.5]])
    zoom = torch.tensor([1.1, 0.9, 1.0])
    out = reframe_rows(batch, rows, centre, zoom)
    virt = out.joints_cam @ out.virt_from_cam.transpose(1, 2)
    torch.testing.assert_close(_project(out.K_virt, virt), out.joints_uv, atol=2e-3, rtol=0)
    torch.testing.assert_close(virt - virt[:, :1], out.joints_rel, atol=1e-5, rtol=0)
    verts = out.verts_cam @ out.virt_from_cam.transpose(1, 2)
    torch.testing.assert_close(verts - virt[:, :1], out.verts_rel, atol=1e-5, rtol=0)
    K_image = torch.tensor([[500.0, 0, 319.5], [0, 500, 239.5], [0, 0, 1]]).expand(len(batch), 3, 3)
    image_uv = _project(K_image, batch.joints_cam)
    torch.testing.assert_close(apply_homography(image_uv, out.crop_from_image), out.joints_uv, atol=2e-2, rtol=0)
    # the chosen centre lands on the principal point; row 1 is untouched
    H, _, k_new = reframe_homography(batch.K_virt[rows], centre, zoom)
    torch.testing.assert_close(apply_homography(centre.unsqueeze(1), H).squeeze(1), k_new[:, :2, 2], atol=1e-3, rtol=0)
    for name in ("crops", "K_virt", "virt_from_cam", "mp_uv", "joints_uv", "joints_rel"):
        assert torch.equal(getattr(out, name)[1], getattr(batch, name)[1]), name
    # zoom > 1 enlarges the hand in the crop
    extent = lambda uv: (uv.amax(1) - uv.amin(1)).norm(dim=-1)  # noqa: E731
    assert extent(out.joints_uv)[0] > extent(batch.joints_uv)[0] * 1.05


def test_the_principal_point_at_zoom_one_is_the_identity(batch: CueBatch) -> None:
    rows = torch.arange(len(batch))
    out = reframe_rows(batch, rows, batch.K_virt[:, :2, 2].clone(), torch.ones(len(batch)))
    torch.testing.assert_close(out.crops, batch.crops, atol=1e-4, rtol=0)
    torch.testing.assert_close(out.joints_uv, batch.joints_uv, atol=1e-3, rtol=0)


def test_crop_content_moves_where_the_homography_says() -> None:
    size = 64
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij")
    spot = torch.tensor([40.0, 22.0])
    blob = torch.exp(-((xs - spot[0]) ** 2 + (ys - spot[1]) ** 2) / (2 * 1.5**2))
    crops = blob.expand(1, 3, size, size).clone()
    K = torch.tensor([[[70.0, 0, 31.5], [0, 70.0, 31.5], [0, 0, 1]]])
    H, _, _ = reframe_homography(K, torch.tensor([[36.0, 28.0]]), torch.tensor([1.2]))
    warped = warp_crops(crops, H)[0, 0]
    w = warped / warped.sum()
    peak = torch.stack([(w * xs).sum(), (w * ys).sum()])
    torch.testing.assert_close(peak, apply_homography(spot.reshape(1, 1, 2), H)[0, 0], atol=0.3, rtol=0)


def test_draw_reframes_spreads_about_the_centre() -> None:
    centre, zoom = draw_reframes(4000, 128, 0.04, 0.07, torch.Generator().manual_seed(0))
    assert abs(float(centre.mean()) - 63.5) < 0.5 and 4.0 < float(centre.std()) < 6.3
    assert abs(float(zoom.log().std()) - 0.07) < 0.01


def test_a_joint_box_without_jitter_frames_the_hand_as_the_generator_does(batch: CueBatch) -> None:
    size = int(batch.crops.shape[-1])
    still = BoxJitter(joint_sigma=(0.0, 0.0), shift_sigma=0.0, scale_sigma=0.0, outlier_p=0.0)
    rows = torch.arange(len(batch))
    centre, zoom = joint_box_reframes(batch.joints_uv, size, torch.Generator().manual_seed(0), still, margin=0.25)
    out = reframe_rows(batch, rows, centre, zoom)
    lo, hi = out.joints_uv.amin(1), out.joints_uv.amax(1)
    # the tight box of the true joints sits on the principal point, its longer half side S / 2 / 1.25
    torch.testing.assert_close(0.5 * (lo + hi), out.K_virt[:, :2, 2], atol=1.0, rtol=0)
    torch.testing.assert_close((0.5 * (hi - lo)).amax(1), torch.full((len(batch),), size / 2 / 1.25), atol=1.0, rtol=0)


def test_joint_boxes_jitter_like_the_generator() -> None:
    """Same distribution of box centres and sizes as training.synth.dataset.mediapipe_like_box."""
    import numpy as np

    from training.synth.dataset import mediapipe_like_box

    joints = np.random.default_rng(3).uniform([20.0, 30.0], [80.0, 100.0], (21, 2))
    n = 3000
    centre, zoom = joint_box_reframes(torch.from_numpy(joints).float().expand(n, 21, 2), 128, torch.Generator().manual_seed(1))
    rng = np.random.default_rng(2)
    boxes = np.stack([mediapipe_like_box(joints, rng) for _ in range(n)])
    ref_centre = 0.5 * (boxes[:, :2] + boxes[:, 2:])
    ref_zoom = 51.2 / (0.5 * (boxes[:, 2:] - boxes[:, :2])).max(axis=1)
    np.testing.assert_allclose(centre.mean(0).numpy(), ref_centre.mean(0), atol=0.3)
    np.testing.assert_allclose(centre.std(0).numpy(), ref_centre.std(0), rtol=0.1)
    assert abs(float(zoom.log().mean()) - float(np.log(ref_zoom).mean())) < 0.005
    assert abs(float(zoom.log().std()) / float(np.log(ref_zoom).std()) - 1.0) < 0.1


def test_the_trainer_reframes_synthetic_rows(tmp_path: Path) -> None:
    from training.train_fused import FusedTrainer

    root = tmp_path / "caches"
    caches = {"synth": write_cue_cache(root / "synth", 8, 1, photos=False), "photos": write_cue_cache(root / "photos", 30, 2, photos=True),
              "test": write_cue_cache(root / "test", 4, 3, photos=False)}
    summary = FusedTrainer(view_config(caches, tmp_path / "run", synth_reframe_prob=1.0), show_progress=False).fit()
    assert summary["steps"] == 2
    summary = FusedTrainer(view_config(caches, tmp_path / "run2", synth_reframe_prob=0.5, synth_joint_box_prob=0.5),
                           show_progress=False).fit()
    assert summary["steps"] == 2
