"""Taubin smoothing of the mesh surface: a fixed, parameter-free layer (one matrix product, also in ONNX).

Why: with the ``fused`` cue the mesh is the template posed from MediaPipe's landmarks by linear blend
skinning (``models.landmark_skinning``) plus the decoder's residual. Skinning folds the skin at the
knuckles, and the decoder does not remove every fold: on the synthetic test frames through the app's
path the fused meshes bend 21.6 degrees per edge on average where the true meshes bend 16.8
(``models.mesh_surface``), and on real photos the folds show as facets and spikes.

Method (Taubin, "A signal processing approach to fair surface design", SIGGRAPH 1995): each iteration
is two steps of ``v <- v + f (mean of v's one-ring neighbours - v)``, first with ``f = lambda > 0``
(shrinks, removes high-frequency folds) and then with ``f = mu < -lambda`` (inflates back), so the
surface loses its folds without the steady shrinkage of plain Laplacian smoothing. Uniform weights over
the one-ring (the mesh's edges). Frame and unit free: ``(B, V, 3)`` in, the same out.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor, nn

from models.errors import TopologyError
from models.hand.mesh_topology import unique_edges

TAUBIN_LAMBDA: float = 0.5
TAUBIN_MU: float = -0.53
"""Taubin's pass band: ``1/lambda + 1/mu`` = 0.113, a low pass that keeps the hand's shape."""


def ring_mean_matrix(num_vertices: int, faces: np.ndarray) -> sp.csr_matrix:
    """``(V, V)`` float64 sparse W: row v averages v's one-ring (``1 / degree`` at each neighbour along an
    edge of ``faces``, either winding), so ``W @ points`` is every vertex's neighbour mean.

    Raises:
        TopologyError: a face index is out of range, or a vertex is on no edge.
    """
    f = np.asarray(faces, np.int64)
    if f.ndim != 2 or f.shape[1] != 3 or f.size == 0 or f.min() < 0 or f.max() >= num_vertices:
        raise TopologyError(f"faces must be (F, 3) indices into {num_vertices} vertices, got {f.shape}")
    edges = unique_edges(f)
    rows, cols = np.concatenate([edges[:, 0], edges[:, 1]]), np.concatenate([edges[:, 1], edges[:, 0]])
    degree = np.bincount(rows, minlength=num_vertices)
    if degree.min() == 0:
        raise TopologyError(f"vertex {int(np.argmin(degree))} is on no edge; it cannot be smoothed")
    return sp.csr_matrix((1.0 / degree[rows], (rows, cols)), shape=(num_vertices, num_vertices))


def taubin_operator(num_vertices: int, faces: np.ndarray, iterations: int) -> np.ndarray:
    """``(V, V)`` float64: the linear map of ``iterations`` Taubin iterations (each ``I + lambda (W - I)``
    then ``I + mu (W - I)``, W from :func:`ring_mean_matrix`); rows sum to 1."""
    ring_mean = ring_mean_matrix(num_vertices, faces)
    identity = sp.identity(num_vertices, format="csr")
    operator = identity.copy()
    for _ in range(iterations):
        for factor in (TAUBIN_LAMBDA, TAUBIN_MU):
            operator = (identity + factor * (ring_mean - identity)) @ operator
    return operator.toarray()


class TaubinSmoothing(nn.Module):
    """``(B, V, 3)`` vertices -> ``(B, V, 3)`` after ``iterations`` Taubin iterations (0: unchanged).

    The iterations are composed once into one ``(V, V)`` matrix (:func:`taubin_operator`), so the layer is
    a single matrix product at run time (one MatMul in ONNX; twelve gather steps cost onnxruntime about
    4 ms per three rows, the product a fraction of that).

    Args:
        faces: ``(F, 3)`` int64 triangles of the mesh (either winding).
        num_vertices: V.
        iterations: Taubin iterations (each one a lambda and a mu step).
    """

    def __init__(self, *, faces: np.ndarray, num_vertices: int, iterations: int) -> None:
        super().__init__()
        if iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {iterations}")
        self.iterations = int(iterations)
        operator = taubin_operator(num_vertices, faces, self.iterations)
        self.register_buffer("operator", torch.from_numpy(operator.astype(np.float32)), persistent=False)

    def forward(self, vertices: Tensor) -> Tensor:
        if self.iterations == 0:
            return vertices
        return torch.matmul(self.operator.to(vertices.dtype), vertices)
