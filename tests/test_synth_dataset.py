"""Synthetic scenes, rectified crop samples and the fixed test set."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.rectify import image_to_crop
from training.synth.dataset import SynthHandDataset
from training.synth.render import project_points
from training.synth.scene import HFOV_RANGE_DEG, LABEL_HAND, SceneGenerator
from training.synth.testset import load_synth_testset, synth_testset_path


@pytest.fixture(scope="module")
def generator() -> SceneGenerator:
    return SceneGenerator()


@pytest.fixture(scope="module")
def dataset(generator: SceneGenerator) -> SynthHandDataset:
    ds = SynthHandDataset(seed=5, length=100, two_views=True, hand_model=generator.hand)
    return ds


def _chirality(joints: np.ndarray, verts: np.ndarray, dorsal_palm: np.ndarray) -> float:
    """Sign of the triple product (index MCP, little MCP, centre of the back of the palm) about the
    wrist: fixed for a hand of one side whatever the pose, flipped by mirroring."""
    back = verts[dorsal_palm].mean(axis=0) - joints[0]
    return float(np.sign(np.linalg.det(np.stack([joints[5] - joints[0], joints[17] - joints[0], back]))))


def test_scene_specs_respect_ranges(generator: SceneGenerator) -> None:
    rng = np.random.default_rng(0)
    template = generator.hand.template.numpy()
    dorsal_palm = (generator.hand.regions.numpy() == 0) & (template[:, 2] > 0.008) & (template[:, 1] > 0.03)
    rights, lefts = [], []
    for _ in range(12):
        spec = generator.sample_spec(rng)
        hfov = np.degrees(2 * np.arctan(spec.width / 2 / spec.K[0, 0]))
        assert HFOV_RANGE_DEG[0] - 1e-6 <= hfov <= HFOV_RANGE_DEG[1] + 1e-6
        assert 0.1 < spec.joints_cam[:, 2].min() and spec.joints_cam.mean(axis=0)[2] < 1.4
        uv = spec.joints_2d
        inside = (uv[:, 0] >= 0) & (uv[:, 0] <= spec.width - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= spec.height - 1)
        assert inside.sum() >= 19
        (rights if spec.is_right else lefts).append(_chirality(spec.joints_cam, spec.verts_cam, dorsal_palm))
    assert rights and lefts
    assert len(set(rights)) == 1 and len(set(lefts)) == 1 and rights[0] == -lefts[0]


def test_full_frame_is_deterministic_and_labelled(generator: SceneGenerator) -> None:
    a = generator.generate(11)
    b = generator.generate(11)
    assert np.array_equal(a.image_bgr, b.image_bgr) and np.array_equal(a.verts_cam, b.verts_cam)
    assert not np.array_equal(a.image_bgr, generator.generate(12).image_bgr)
    h, w = a.image_bgr.shape[:2]
    assert a.mask.shape == (h, w) and a.mask.dtype == np.uint8 and a.mask.sum() > 50
    np.testing.assert_allclose(a.joints_2d, project_points(a.joints_cam, a.K))
    # The rendered hand silhouette contains most projected hand vertices.
    uv = np.round(project_points(a.verts_cam, a.K)).astype(int)
    ok = (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)
    near_mask = np.maximum.reduce([np.roll(a.mask, s, axis) for s in (-2, 0, 2) for axis in (0, 1)])
    assert near_mask[uv[ok, 1], uv[ok, 0]].mean() > 0.9


def test_window_render_matches_full_frame_labels(generator: SceneGenerator) -> None:
    spec = generator.sample_spec(np.random.default_rng(3))
    full = generator.render(spec, np.random.default_rng(0))
    box = np.concatenate([spec.joints_2d.min(axis=0), spec.joints_2d.max(axis=0)]).astype(int)
    x0, y0 = max(box[0] - 10, 0), max(box[1] - 10, 0)
    x1, y1 = min(box[2] + 10, spec.width), min(box[3] + 10, spec.height)
    window = generator.render(spec, np.random.default_rng(0), window=(x0, y0, x1, y1))
    same = window.label == full.label[y0:y1, x0:x1]
    assert same.mean() > 0.995
    assert (window.label == LABEL_HAND).sum() > 0


def test_sample_keys_shapes_and_geometry(dataset: SynthHandDataset) -> None:
    views = dataset[3]
    assert len(views) == 2
    s = dataset.crop_size
    for view in views:
        assert view["crop_rgb"].shape == (s, s, 3) and view["crop_rgb"].dtype == np.uint8
        assert view["mask_crop"].shape == (s, s) and view["mask_crop"].dtype == np.uint8
        for key, shape in (("K_virt", (3, 3)), ("virt_from_cam", (3, 3)), ("crop_from_image", (3, 3)), ("joints_cam", (21, 3)),
                           ("joints_rel_virt", (21, 3)), ("joints_2d_crop", (21, 2)), ("translation_virt", (3,))):
            assert view[key].shape == shape and view[key].dtype == np.float32, key
        assert view["verts_cam"].shape[1] == 3 and view["verts_rel_virt"].shape == view["verts_cam"].shape
        vfc = view["virt_from_cam"].astype(np.float64)
        assert abs(abs(np.linalg.det(vfc)) - 1.0) < 1e-5
        assert np.linalg.det(vfc) < 0 if view["is_right"] == 0 else np.linalg.det(vfc) > 0
        np.testing.assert_allclose(view["joints_rel_virt"][0], 0.0, atol=1e-7)
        from_image = image_to_crop(view["joints_2d_image"].astype(np.float64), view["crop_from_image"].astype(np.float64))
        np.testing.assert_allclose(from_image, view["joints_2d_crop"], atol=0.05)
        # The hand is in the crop: most joints inside, and the hand mask is not empty.
        inside = np.all((view["joints_2d_crop"] >= 0) & (view["joints_2d_crop"] <= s - 1), axis=1)
        assert inside.mean() > 0.8 and view["mask_crop"].sum() > 20
    # Two views: same scene, different boxes.
    np.testing.assert_array_equal(views[0]["verts_cam"], views[1]["verts_cam"])
    assert not np.allclose(views[0]["K_virt"], views[1]["K_virt"])


def test_samples_are_deterministic_by_seed_and_index(dataset: SynthHandDataset, generator: SceneGenerator) -> None:
    other = SynthHandDataset(seed=5, length=100, two_views=True, hand_model=generator.hand)
    a, b = dataset[7], other[7]
    for key in a[0]:
        np.testing.assert_array_equal(a[0][key], b[0][key])
        np.testing.assert_array_equal(a[1][key], b[1][key])
    assert not np.array_equal(dataset[8][0]["crop_rgb"], a[0]["crop_rgb"])
    reseeded = SynthHandDataset(seed=6, length=100, two_views=False, hand_model=generator.hand)[7]
    assert len(reseeded) == 1 and not np.array_equal(reseeded[0]["verts_cam"], a[0]["verts_cam"])


def test_left_and_right_hands_both_appear(dataset: SynthHandDataset) -> None:
    flags = {int(dataset[i][0]["is_right"]) for i in range(10)}
    assert flags == {0, 1}


def test_fixed_testset_is_cached_and_stable(tmp_path: Path, generator: SceneGenerator) -> None:
    first = load_synth_testset(3, seed=42, cache_dir=tmp_path)
    assert synth_testset_path(3, 42, 128, tmp_path).is_file()
    second = load_synth_testset(3, seed=42, cache_dir=tmp_path)
    assert len(first) == len(second) == 3
    for a, b in zip(first, second):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
