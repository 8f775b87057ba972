"""HandDGP closed-form translation: exactness, invariances, gradients, degenerate input."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from models.dgp import pixels_to_normalized, solve_3x3_adjugate, solve_translation


def make_correspondences(batch: int, points: int = 21, dtype: torch.dtype = torch.float64, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    rel = (torch.rand(batch, points, 3, generator=generator, dtype=dtype) - 0.5) * torch.tensor([0.16, 0.18, 0.06], dtype=dtype)
    rel = rel - rel[:, :1]
    translation = torch.stack(
        [
            (torch.rand(batch, generator=generator, dtype=dtype) - 0.5) * 0.2,
            (torch.rand(batch, generator=generator, dtype=dtype) - 0.5) * 0.2,
            0.3 + torch.rand(batch, generator=generator, dtype=dtype) * 0.6,
        ],
        dim=-1,
    )
    intrinsics = torch.tensor([[400.0, 0.0, 63.5], [0.0, 410.0, 62.0], [0.0, 0.0, 1.0]], dtype=dtype).expand(batch, 3, 3).clone()
    cam = rel + translation[:, None]
    pixels = (cam / cam[..., 2:3]) @ intrinsics.transpose(1, 2)
    weights = 0.1 + torch.rand(batch, points, generator=generator, dtype=dtype)
    return rel, pixels[..., :2], intrinsics, weights, translation


def test_recovers_known_translation_noise_free() -> None:
    rel, pixels, intrinsics, weights, translation = make_correspondences(16)
    solution = solve_translation(rel, pixels, intrinsics, weights)
    assert (solution.translation - translation).abs().max() < 1e-6
    assert solution.residual.max() < 1e-8
    assert not solution.degenerate.any()


def test_float32_is_accurate_to_a_tenth_of_a_millimetre() -> None:
    rel, pixels, intrinsics, weights, translation = make_correspondences(16)
    solution = solve_translation(rel.float(), pixels.float(), intrinsics.float(), weights.float())
    assert solution.translation.dtype == torch.float32
    assert (solution.translation.double() - translation).abs().max() < 1e-4


def test_matches_numpy_weighted_least_squares_with_noise() -> None:
    rel, pixels, intrinsics, weights, _ = make_correspondences(4, seed=1)
    pixels = pixels + torch.randn(pixels.shape, generator=torch.Generator().manual_seed(3), dtype=pixels.dtype) * 2.0
    solution = solve_translation(rel, pixels, intrinsics, weights, damping=0.0)
    xy = pixels_to_normalized(pixels, intrinsics).numpy()
    for b in range(4):
        x, y = xy[b, :, 0], xy[b, :, 1]
        big = rel[b].numpy()
        w = weights[b].numpy()
        a = np.concatenate([np.stack([-np.ones_like(x), np.zeros_like(x), x], 1), np.stack([np.zeros_like(y), -np.ones_like(y), y], 1)])
        rhs = np.concatenate([big[:, 0] - x * big[:, 2], big[:, 1] - y * big[:, 2]])
        ww = np.concatenate([w, w])
        expected = np.linalg.lstsq(a * ww[:, None], rhs * ww, rcond=None)[0]
        np.testing.assert_allclose(solution.translation[b].numpy(), expected, atol=1e-10)
        rows = a @ expected - rhs
        rms = np.sqrt(np.sum(ww**2 * rows**2) / np.sum(ww**2))
        np.testing.assert_allclose(solution.residual[b].numpy(), rms, rtol=1e-6)


@pytest.mark.parametrize("scale", [1e-3, 0.5, 7.0, 1e3])
def test_invariant_to_scaling_all_weights(scale: float) -> None:
    rel, pixels, intrinsics, weights, _ = make_correspondences(5, seed=2)
    pixels = pixels + 1.5
    base = solve_translation(rel, pixels, intrinsics, weights)
    scaled = solve_translation(rel, pixels, intrinsics, weights * scale)
    torch.testing.assert_close(scaled.translation, base.translation, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(scaled.residual, base.residual, rtol=1e-8, atol=1e-12)


def test_weights_matter() -> None:
    rel, pixels, intrinsics, weights, translation = make_correspondences(1, seed=4)
    pixels = pixels.clone()
    pixels[0, 5] += 40.0  # one outlier
    uniform = solve_translation(rel, pixels, intrinsics, torch.ones_like(weights))
    downweighted_w = torch.ones_like(weights)
    downweighted_w[0, 5] = 0.0
    downweighted = solve_translation(rel, pixels, intrinsics, downweighted_w)
    assert (downweighted.translation - translation).abs().max() < 1e-6
    assert (uniform.translation - translation).abs().max() > 1e-3


def test_extra_vertex_correspondences_are_concatenated() -> None:
    rel, pixels, intrinsics, weights, translation = make_correspondences(2, points=21 + 30, seed=5)
    solution = solve_translation(rel, pixels, intrinsics, weights)
    assert (solution.translation - translation).abs().max() < 1e-6


def test_float64_gradcheck() -> None:
    rel, pixels, intrinsics, weights, _ = make_correspondences(2, points=6, seed=6)
    pixels = pixels + torch.randn(pixels.shape, generator=torch.Generator().manual_seed(1), dtype=pixels.dtype)
    inputs = (rel.requires_grad_(), pixels.requires_grad_(), intrinsics.requires_grad_(), weights.requires_grad_())

    def translation_and_residual(r, p, k, w):
        solution = solve_translation(r, p, k, w)
        return solution.translation, solution.residual

    assert torch.autograd.gradcheck(translation_and_residual, inputs, eps=1e-6, atol=1e-5)


def test_degenerate_inputs_are_finite_and_flagged() -> None:
    rel, pixels, intrinsics, weights, _ = make_correspondences(4, seed=7)
    rel, pixels, weights = rel.clone(), pixels.clone(), weights.clone()
    weights[0] = 0.0  # no information
    pixels[1] = pixels[1, :1]  # all 2D points coincide: depth unobservable
    rel[1] = 0.0
    weights[2, 1:] = 0.0  # a single effective point
    pixels[3, :, 1] = 0.5 * pixels[3, :, 0]  # collinear 2D points: still solvable
    for dtype in (torch.float64, torch.float32):
        args = (rel.detach().to(dtype).requires_grad_(), pixels.to(dtype), intrinsics.to(dtype), weights.detach().to(dtype).requires_grad_())
        solution = solve_translation(*args)
        assert torch.isfinite(solution.translation).all() and torch.isfinite(solution.residual).all()
        assert solution.degenerate.tolist() == [True, True, True, False]
        torch.testing.assert_close(solution.translation[0], torch.zeros(3, dtype=dtype))
        (solution.translation.sum() + solution.residual.sum()).backward()
        assert torch.isfinite(args[0].grad).all() and torch.isfinite(args[3].grad).all()


def test_adjugate_solver_matches_inverse() -> None:
    generator = torch.Generator().manual_seed(8)
    matrix = torch.randn(6, 3, 3, generator=generator, dtype=torch.float64) + 3 * torch.eye(3, dtype=torch.float64)
    rhs = torch.randn(6, 3, generator=generator, dtype=torch.float64)
    solution, det = solve_3x3_adjugate(matrix, rhs)
    torch.testing.assert_close(solution, torch.linalg.solve(matrix, rhs))
    torch.testing.assert_close(det, torch.linalg.det(matrix))


def test_hand_upside_down_in_3d_is_kept_in_front_of_the_camera() -> None:
    """3D points rotated 180 degrees about the optical axis against their 2D points: least squares puts
    the root behind the camera; the weak-perspective fallback keeps it in front, at the right distance."""
    rel, pixels, intrinsics, weights, translation = make_correspondences(6, seed=3)
    flipped = rel * torch.tensor([-1.0, -1.0, 1.0], dtype=rel.dtype)
    plain = solve_translation(rel, pixels, intrinsics, weights)
    solution = solve_translation(flipped, pixels, intrinsics, weights)
    assert not plain.degenerate.any()
    assert solution.degenerate.all()
    assert (solution.translation[:, 2] > 0.01).all()
    centroid_depth = translation[:, 2] + (weights[..., None] ** 2 * rel).sum(1)[:, 2] / (weights**2).sum(1)
    fallback_centroid = solution.translation[:, 2] + (weights[..., None] ** 2 * flipped).sum(1)[:, 2] / (weights**2).sum(1)
    torch.testing.assert_close(fallback_centroid, centroid_depth, rtol=0.25, atol=0.0)
    flipped.requires_grad_(True)
    solve_translation(flipped, pixels, intrinsics, weights).translation.sum().backward()
    assert torch.isfinite(flipped.grad).all()
