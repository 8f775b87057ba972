"""Decoder topology of any closed manifold hand mesh: levels, spirals, sampling matrices, ROI spirals."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.hand.hierarchy import SparseTriplets, build_hierarchy
from models.hand.spirals import spiral_indices

SPIRAL_LENGTH: int = 9
ROI_SPIRAL_LENGTH: int = 9
ROI_DILATION: int = 2


@dataclass(frozen=True)
class DecoderTopology:
    """level_faces[l] (F_l, 3); spirals[l] (V_l, 9); down[l] (V_{l+1}, V_l) and up[l] (V_l, V_{l+1}) as
    (rows, cols, values) triplets; roi_spirals (V, 9) region-restricted, dilation 2."""

    level_num_vertices: tuple[int, ...]
    level_faces: tuple[np.ndarray, ...]
    spirals: tuple[np.ndarray, ...]
    down: tuple[SparseTriplets, ...]
    up: tuple[SparseTriplets, ...]
    roi_spirals: np.ndarray


def build_decoder_topology(vertices: np.ndarray, faces: np.ndarray, regions: np.ndarray,
                           num_levels: int = 5) -> DecoderTopology:
    """Build the 5-level hierarchy and all spiral tables for a closed manifold mesh.

    Args:
        vertices: (V, 3) float64 metres. faces: (F, 3) int64 CCW closed manifold. regions: (V,) int64.
    """
    hier = build_hierarchy(vertices, faces, regions, num_levels=num_levels)
    spirals = tuple(spiral_indices(len(v), f, SPIRAL_LENGTH) for v, f in zip(hier.vertices, hier.faces))
    roi = spiral_indices(len(vertices), faces, ROI_SPIRAL_LENGTH, dilation=ROI_DILATION, regions=regions)
    return DecoderTopology(
        level_num_vertices=tuple(len(v) for v in hier.vertices), level_faces=hier.faces, spirals=spirals,
        down=hier.down, up=hier.up, roi_spirals=roi,
    )
