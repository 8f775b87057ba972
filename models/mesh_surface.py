"""How smooth a triangle mesh's surface is: the bend between adjacent faces.

The bend across an interior edge is the angle between the normals of its two faces (0 where the surface
is flat across the edge). A hand's skin bends smoothly except at a few joint creases: on our template at
rest the mean bend over all edges is about 13 degrees and on posed synthetic ground-truth meshes about 17;
a predicted mesh whose vertices are close to the truth but jittered (a crumpled surface) bends far more.
Used by the training losses (``training.losses.dihedral_loss``, ``fold_loss``) and by the evaluation of
the app's meshes on real photos (``app.evaluate_app``).
"""
from __future__ import annotations

import numpy as np
import torch

from models.errors import TopologyError


def _faces_tensor(faces: torch.Tensor | np.ndarray) -> torch.Tensor:
    if isinstance(faces, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(faces, dtype=np.int64))  # also a reversed view
    return faces.long()


def face_adjacency(faces: torch.Tensor | np.ndarray) -> torch.Tensor:
    """``(P, 2)`` int64: the two faces on each side of every interior edge of a triangle list ``(F, 3)``
    (edges with one face, on an open boundary, are left out).

    Raises:
        TopologyError: ``faces`` is not ``(F, 3)``, or an edge is shared by more than two faces.
    """
    f = _faces_tensor(faces)
    if f.ndim != 2 or f.shape[1] != 3:
        raise TopologyError(f"faces must have shape (F, 3), got {tuple(f.shape)}")
    edges = torch.sort(torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]], dim=0), dim=1).values
    owner = torch.arange(len(f)).repeat(3)
    _, edge_id, counts = torch.unique(edges, dim=0, return_inverse=True, return_counts=True)
    if bool((counts > 2).any()):
        raise TopologyError("an edge is shared by more than two faces (not a manifold mesh)")
    order = torch.argsort(edge_id, stable=True)
    sorted_ids, sorted_faces = edge_id[order], owner[order]
    first = torch.ones_like(sorted_ids, dtype=torch.bool)
    first[1:] = sorted_ids[1:] != sorted_ids[:-1]
    starts = first.nonzero().squeeze(1)
    starts = starts[counts[sorted_ids[starts]] == 2]
    return torch.stack([sorted_faces[starts], sorted_faces[starts + 1]], dim=1)


def dihedral_cosines(verts: torch.Tensor, faces: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
    """``(B, P)``: cosine of the bend across every interior edge (``adjacency`` from
    :func:`face_adjacency`): 1 where the surface is flat across the edge, -1 where it folds back onto
    itself. ``verts (B, V, 3)`` in any frame and unit; invariant to rigid motion, uniform scale and a
    consistent flip of the winding (a mirrored left hand)."""
    f = faces.long()
    v0, v1, v2 = verts[:, f[:, 0]], verts[:, f[:, 1]], verts[:, f[:, 2]]
    normals = torch.nn.functional.normalize(torch.cross(v1 - v0, v2 - v0, dim=-1), dim=-1)
    a = adjacency.long()
    return (normals[:, a[:, 0]] * normals[:, a[:, 1]]).sum(-1)


def bend_angles_deg(verts: torch.Tensor | np.ndarray, faces: torch.Tensor | np.ndarray) -> torch.Tensor:
    """``(B, P)`` float64 degrees: the bend across every interior edge of ``verts (B, V, 3)`` (or one
    ``(V, 3)`` mesh, then ``B`` = 1); 0 where flat."""
    v = torch.from_numpy(np.array(verts, np.float64)) if isinstance(verts, np.ndarray) else verts.detach().double()
    if v.ndim == 2:
        v = v.unsqueeze(0)
    f = _faces_tensor(faces)
    cos = dihedral_cosines(v, f, face_adjacency(f))
    return torch.rad2deg(torch.acos(cos.clamp(-1.0, 1.0)))


def mean_bend_deg(verts: torch.Tensor | np.ndarray, faces: torch.Tensor | np.ndarray) -> np.ndarray:
    """``(B,)`` float64 degrees: each mesh's mean bend over its interior edges (:func:`bend_angles_deg`)."""
    return bend_angles_deg(verts, faces).mean(dim=1).numpy()
