"""Left/right mirroring of hand geometry.

Our model is a right hand. A left hand is its mirror image through the y-z plane of the hand frame
(x -> -x); mirroring reverses the handedness of every triangle, so faces get their winding flipped to
keep normals pointing outward. Joint order is unchanged (joint 1 is still the thumb CMC).
"""
from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def mirror_points(points: ArrayT) -> ArrayT:
    """(*, 3) points or vectors (numpy or torch, any dtype/device) with x negated."""
    sign = np.array([-1.0, 1.0, 1.0]) if isinstance(points, np.ndarray) else torch.tensor(
        [-1.0, 1.0, 1.0], dtype=points.dtype, device=points.device)
    return points * sign


def mirror_faces(faces: ArrayT) -> ArrayT:
    """(F, 3) faces with their winding flipped (swap of the last two corners)."""
    return faces[..., [0, 2, 1]]


def mirror_mesh(vertices: ArrayT, faces: ArrayT) -> tuple[ArrayT, ArrayT]:
    """Right <-> left hand mesh: mirrored vertices and flipped faces. Applying it twice is the identity."""
    return mirror_points(vertices), mirror_faces(faces)
