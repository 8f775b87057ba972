"""How smooth a triangle mesh's surface is: the bend between adjacent faces.

The bend across an interior edge is the angle between the normals of its two faces (0 where the surface
is flat across the edge). A hand's skin bends smoothly except at a few joint creases: on our template at
rest the mean bend over all edges is about 13 degrees and on posed synthetic ground-truth meshes about 17;
a predicted mesh whose vertices are close to the truth but jittered (a crumpled surface) bends far more.
Used by the training losses (``training.losses.dihedral_loss``, ``fold_loss``) and by the evaluation of
the app's meshes on real photos (``app.evaluate_app``).
"""
from __future__ import annotations

import functools

import numpy as np
import torch

from models.hand.mesh_topology import face_adjacency


@functools.lru_cache(maxsize=8)
def _faces_and_adjacency(faces_bytes: bytes, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """A face list (its bytes, int64) as a tensor, and its adjacency: computed once per face list
    (a right hand's and a left hand's reversed winding are two lists)."""
    faces = np.frombuffer(faces_bytes, dtype=np.int64).reshape(shape)
    return torch.from_numpy(faces.copy()), torch.from_numpy(face_adjacency(faces))


def dihedral_cosines(verts: torch.Tensor, faces: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
    """``(B, P)``: cosine of the bend across every interior edge (``adjacency`` from
    ``models.hand.mesh_topology.face_adjacency``, as a tensor): 1 where the surface is flat across the
    edge, -1 where it folds back onto itself. ``verts (B, V, 3)`` in any frame and unit; invariant to rigid motion, uniform scale and a
    consistent flip of the winding (a mirrored left hand)."""
    f = faces.long()
    v0, v1, v2 = verts[:, f[:, 0]], verts[:, f[:, 1]], verts[:, f[:, 2]]
    normals = torch.nn.functional.normalize(torch.cross(v1 - v0, v2 - v0, dim=-1), dim=-1)
    a = adjacency.long()
    return (normals[:, a[:, 0]] * normals[:, a[:, 1]]).sum(-1)


def bend_angles_deg(verts: torch.Tensor | np.ndarray, faces: torch.Tensor | np.ndarray) -> torch.Tensor:
    """``(B, P)`` float64 degrees: the bend across every interior edge of ``verts (B, V, 3)`` (or one
    ``(V, 3)`` mesh, then ``B`` = 1); 0 where flat. The faces' adjacency is computed once per face list.

    Raises:
        TopologyError: ``faces`` is not (F, 3), or an edge is shared by more than two faces.
    """
    v = torch.from_numpy(np.array(verts, np.float64)) if isinstance(verts, np.ndarray) else verts.detach().double()
    if v.ndim == 2:
        v = v.unsqueeze(0)
    f = np.ascontiguousarray(faces.cpu().numpy() if isinstance(faces, torch.Tensor) else faces, dtype=np.int64)
    f_t, adjacency = _faces_and_adjacency(f.tobytes(), f.shape)
    cos = dihedral_cosines(v, f_t, adjacency)
    return torch.rad2deg(torch.acos(cos.clamp(-1.0, 1.0)))


def mean_bend_deg(verts: torch.Tensor | np.ndarray, faces: torch.Tensor | np.ndarray) -> np.ndarray:
    """``(B,)`` float64 degrees: each mesh's mean bend over its interior edges (:func:`bend_angles_deg`)."""
    return bend_angles_deg(verts, faces).mean(dim=1).numpy()
