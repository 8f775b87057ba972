"""Renderer, primitives, backgrounds and augmentations of the synthetic data generator."""
from __future__ import annotations

import numpy as np

from training.synth.augment import color_jitter, jpeg, motion_blur_kernel, sensor_noise
from training.synth.backgrounds import BackgroundSampler
from training.synth.primitives import box, capped_tube, uv_sphere
from training.synth.render import DirectionalLight, Lighting, MeshLayer, render_layers, vertex_normals

K = np.array([[400.0, 0.0, 159.5], [0.0, 400.0, 119.5], [0.0, 0.0, 1.0]])
SIZE = (320, 240)


def _lighting(direction: tuple[float, float, float] = (0.0, 0.0, -1.0)) -> Lighting:
    return Lighting(
        lights=(DirectionalLight(np.array(direction), np.array([0.8, 0.8, 0.8])),),
        ambient_sky_bgr=np.full(3, 0.2),
        ambient_ground_bgr=np.full(3, 0.2),
        wrap=0.0,
    )


def _sphere_layer(radius: float = 0.05, z: float = 0.5, flip: bool = False) -> MeshLayer:
    verts, faces = uv_sphere(radius, rings=24, segments=32)
    if flip:
        faces = faces[:, ::-1]
    return MeshLayer(verts + np.array([0.0, 0.0, z]), faces, np.full((len(verts), 3), 0.8), specular=0.0, label=7)


def _signed_volume(verts: np.ndarray, faces: np.ndarray) -> float:
    tri = verts[faces]
    return float(np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6.0)


def test_primitives_are_closed_and_outward() -> None:
    for verts, faces in (uv_sphere(1.0), capped_tube((1.0, 0.5), (1.2, 0.7), 3.0), box((1.0, 2.0, 3.0))):
        assert _signed_volume(verts, faces) > 0
        edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
        _, counts = np.unique(edges, axis=0, return_counts=True)
        assert np.all(counts == 2)  # every edge shared by exactly two faces: watertight
    assert abs(_signed_volume(*box((1.0, 2.0, 3.0))) - 6.0) < 1e-9


def test_vertex_normals_of_sphere_point_outward() -> None:
    verts, faces = uv_sphere(1.0, 12, 16)
    normals = vertex_normals(verts, faces)
    assert np.all((normals * verts).sum(axis=1) > 0.95)


def test_sphere_silhouette_area_and_depth() -> None:
    result = render_layers([_sphere_layer()], K, SIZE, _lighting())
    mask = result.label == 7
    # Projected radius of a sphere at distance d: f * r / sqrt(d^2 - r^2).
    r_px = 400.0 * 0.05 / np.sqrt(0.5**2 - 0.05**2)
    assert abs(mask.sum() / (np.pi * r_px**2) - 1.0) < 0.05
    assert abs(float(result.depth_m[120, 160]) - 0.45) < 2e-3
    assert np.isinf(result.depth_m[0, 0]) and result.label[0, 0] == 0
    assert result.alpha[mask].min() > 0.0 and result.alpha[~mask].max() == 0.0


def test_backface_culling_uses_winding() -> None:
    inside_out = render_layers([_sphere_layer(flip=True)], K, SIZE, _lighting())
    # With reversed winding only the far hemisphere faces the camera.
    assert abs(float(inside_out.depth_m[120, 160]) - 0.55) < 2e-3


def test_nearer_object_occludes_farther_one() -> None:
    verts, faces = uv_sphere(0.03, 12, 16)
    near = MeshLayer(verts + [0.0, 0.0, 0.4], faces, np.full((len(verts), 3), 0.5), label=1)
    far = MeshLayer(verts * 3 + [0.0, 0.0, 0.6], faces, np.full((len(verts), 3), 0.5), label=2)
    for order in ([near, far], [far, near]):
        result = render_layers(order, K, SIZE, _lighting())
        assert result.label[120, 160] == 1
        assert result.label[120, 160 + 60] == 2


def test_light_direction_controls_shading() -> None:
    from_left = render_layers([_sphere_layer()], K, SIZE, _lighting((-1.0, 0.0, -0.3)))
    left, right = from_left.color_bgr[120, 160 - 30].mean(), from_left.color_bgr[120, 160 + 30].mean()
    assert left > right + 0.2


def test_backgrounds_are_deterministic_and_sized() -> None:
    sampler = BackgroundSampler()
    for seed in range(12):
        a = sampler.sample(np.random.default_rng(seed), 200, 150)
        b = sampler.sample(np.random.default_rng(seed), 200, 150)
        assert a.shape == (150, 200, 3) and a.dtype == np.uint8
        assert np.array_equal(a, b)
    assert not np.array_equal(sampler.sample(np.random.default_rng(0), 64, 64), sampler.sample(np.random.default_rng(1), 64, 64))


def test_augmentations() -> None:
    rng = np.random.default_rng(0)
    image = (rng.uniform(0, 255, (64, 80, 3))).astype(np.uint8)
    assert np.abs(color_jitter(image).astype(int) - image).max() <= 1
    darker = color_jitter(image, brightness=0.5)
    assert darker.mean() < 0.6 * image.mean()
    assert abs(float(motion_blur_kernel(7.0, 0.3).sum()) - 1.0) < 1e-5
    assert jpeg(image, 50).shape == image.shape
    noisy_a = sensor_noise(image, np.random.default_rng(3), 0.02, 0.001, 0.3)
    noisy_b = sensor_noise(image, np.random.default_rng(3), 0.02, 0.001, 0.3)
    assert np.array_equal(noisy_a, noisy_b) and not np.array_equal(noisy_a, image)
