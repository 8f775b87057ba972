"""Root recovery baseline of CMR / MobRecon: iterative 2D registration (benchmark only, not used at run time).

Given root-relative 3D joints and their 2D detections, find the translation t minimising the reprojection
error ``sum_i ||pi(K (X_i + t)) - u_i||^2`` with scipy's iterative least squares (finite-difference
Jacobian, as the reference implementations do), starting from a similar-triangles guess; then reject
outliers (reprojection error above ``outlier_factor`` x median, at least ``min_outlier_px``) and solve again.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares


@dataclass(frozen=True)
class RegistrationResult:
    translation: np.ndarray  # (3,) metres, camera frame
    inliers: np.ndarray  # (N,) bool
    function_evaluations: int


def _project(points_cam: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    pixels = points_cam @ intrinsics.T
    return pixels[:, :2] / pixels[:, 2:3]


def initial_translation(points_rel: np.ndarray, points_2d: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    """Similar triangles: depth from the ratio of 3D to 2D spread, x/y from the 2D centroid's ray."""
    focal = 0.5 * (intrinsics[0, 0] + intrinsics[1, 1])
    spread_3d = np.linalg.norm(points_rel[:, :2] - points_rel[:, :2].mean(0), axis=1).mean()
    spread_2d = np.linalg.norm(points_2d - points_2d.mean(0), axis=1).mean()
    depth = focal * spread_3d / max(spread_2d, 1e-6)
    ray = np.linalg.solve(intrinsics, np.array([*points_2d.mean(0), 1.0]))
    return ray / ray[2] * depth - np.append(points_rel[:, :2].mean(0), 0.0)


def register_root(
    points_rel: np.ndarray,
    points_2d: np.ndarray,
    intrinsics: np.ndarray,
    outlier_factor: float = 3.0,
    min_outlier_px: float = 4.0,
) -> RegistrationResult:
    """points_rel ``(N, 3)`` metres (root-relative, camera axes), points_2d ``(N, 2)`` px, K ``(3, 3)``."""
    inliers = np.ones(points_rel.shape[0], bool)
    estimate = initial_translation(points_rel, points_2d, intrinsics)
    evaluations = 0
    for _ in range(2):
        rel, uv = points_rel[inliers], points_2d[inliers]

        def residuals(t: np.ndarray, rel: np.ndarray = rel, uv: np.ndarray = uv) -> np.ndarray:
            return (_project(rel + t, intrinsics) - uv).ravel()

        fit = least_squares(residuals, estimate, method="lm", x_scale=np.array([0.05, 0.05, 0.1]))
        estimate, evaluations = fit.x, evaluations + int(fit.nfev)
        errors = np.linalg.norm(_project(points_rel + estimate, intrinsics) - points_2d, axis=1)
        threshold = max(outlier_factor * float(np.median(errors)), min_outlier_px)
        new_inliers = errors <= threshold
        if new_inliers.sum() < 4 or np.array_equal(new_inliers, inliers):
            break
        inliers = new_inliers
    return RegistrationResult(translation=estimate, inliers=inliers, function_evaluations=evaluations)
