"""Decoder topology: the hand asset's mesh constants converted to torch, validated once.

``DecoderTopology.from_asset(asset)`` accepts ``models.hand.asset.HandAsset`` or any object with the same
fields (see /work/notes/TOPOLOGY_CONTRACT.md). Sparse up/down-sampling matrices are stored as padded
gather tables ``index (R, k)``, ``weight (R, k)`` (k = max non-zeros per row, padding weight 0): gathers
export to ONNX and run fast on CPU, unlike torch sparse tensors.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from models.config import NUM_JOINTS
from models.errors import TopologyError

NUM_REGIONS: int = 6


@dataclass(frozen=True)
class PaddedSparse:
    """A sparse ``(R, C)`` matrix as gather tables: ``y[r] = sum_j weight[r, j] * x[index[r, j]]``."""

    index: Tensor  # (R, k) int64
    weight: Tensor  # (R, k) float32
    num_cols: int

    @staticmethod
    def from_coo(indices: np.ndarray, values: np.ndarray, shape: tuple[int, int]) -> PaddedSparse:
        rows, cols = np.asarray(indices[0], np.int64), np.asarray(indices[1], np.int64)
        values = np.asarray(values, np.float64)
        num_rows, num_cols = int(shape[0]), int(shape[1])
        if rows.size and (rows.min() < 0 or rows.max() >= num_rows or cols.min() < 0 or cols.max() >= num_cols):
            raise TopologyError(f"sparse matrix indices out of range for shape {shape}")
        counts = np.bincount(rows, minlength=num_rows)
        if counts.min() == 0:
            raise TopologyError(f"sparse matrix of shape {shape} has empty rows; every vertex needs a source")
        width = int(counts.max())
        order = np.lexsort((cols, rows))
        rows, cols, values = rows[order], cols[order], values[order]
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        slot = np.arange(rows.size) - starts[rows]
        index = np.zeros((num_rows, width), np.int64)
        weight = np.zeros((num_rows, width), np.float32)
        index[rows, slot] = cols
        weight[rows, slot] = values
        return PaddedSparse(torch.from_numpy(index), torch.from_numpy(weight), num_cols)

    def dense(self) -> Tensor:
        """The matrix as a dense ``(R, C)`` float32 tensor (tests and initialisation only)."""
        out = torch.zeros(self.index.shape[0], self.num_cols, dtype=self.weight.dtype)
        return out.scatter_add_(1, self.index, self.weight)


def apply_padded_sparse(x: Tensor, index: Tensor, weight: Tensor) -> Tensor:
    """``(B, C_in_rows, F)`` -> ``(B, R, F)``: multiply the padded sparse matrix with every batch element."""
    return (x[:, index] * weight.to(x.dtype).unsqueeze(-1)).sum(dim=2)


@dataclass(frozen=True)
class DecoderTopology:
    """Torch view of the topology (CPU tensors; modules copy what they need into non-persistent buffers).

    Level 0 is the full-resolution mesh (V vertices), level ``num_levels - 1`` the coarsest.
    """

    version: str
    sha256: str
    level_num_vertices: tuple[int, ...]
    spirals: tuple[Tensor, ...]  # per level (V_l, L) int64
    up: tuple[PaddedSparse, ...]  # up[l]: level l+1 -> level l, (V_l, k)
    down: tuple[PaddedSparse, ...]  # down[l]: level l -> level l+1, (V_{l+1}, k)
    roi_spirals: Tensor  # (V, L_roi) int64, region-restricted
    regions: Tensor  # (V,) int64 in 0..5
    template_vertices: Tensor  # (V, 3) float32, metres, wrist at origin
    joint_regressor: Tensor  # (21, V) float32
    faces: np.ndarray  # (F, 3) int64

    @property
    def num_levels(self) -> int:
        return len(self.level_num_vertices)

    @property
    def num_vertices(self) -> int:
        return self.level_num_vertices[0]

    def coarse_template(self) -> Tensor:
        """Template vertices down-sampled to the coarsest level ``(V_last, 3)`` (for lifting initialisation)."""
        verts = self.template_vertices.unsqueeze(0)
        for matrix in self.down:
            verts = apply_padded_sparse(verts, matrix.index, matrix.weight)
        return verts[0]

    @staticmethod
    def from_asset(asset: Any) -> DecoderTopology:
        """Convert and validate a HandAsset-like object (fields of TOPOLOGY_CONTRACT.md)."""
        counts = tuple(int(n) for n in asset.level_num_vertices)
        levels = len(counts)
        if levels < 2 or len(asset.spirals) != levels or len(asset.up) != levels - 1 or len(asset.down) != levels - 1:
            raise TopologyError(
                f"asset {asset.version}: need matching levels, got {levels} vertex counts, "
                f"{len(asset.spirals)} spiral tables, {len(asset.up)} up and {len(asset.down)} down matrices"
            )
        spirals = []
        for level, (table, count) in enumerate(zip(asset.spirals, counts)):
            table = np.asarray(table, np.int64)
            if table.ndim != 2 or table.shape[0] != count or table.min() < 0 or table.max() >= count:
                raise TopologyError(f"asset {asset.version}: spiral table of level {level} is invalid {table.shape}")
            if not np.array_equal(table[:, 0], np.arange(count)):
                raise TopologyError(f"asset {asset.version}: spiral entry 0 must be the vertex itself (level {level})")
            spirals.append(torch.from_numpy(table.copy()))
        up, down = [], []
        for level in range(levels - 1):
            u, d = asset.up[level], asset.down[level]
            if tuple(u.shape) != (counts[level], counts[level + 1]) or tuple(d.shape) != (counts[level + 1], counts[level]):
                raise TopologyError(f"asset {asset.version}: up/down matrix shapes wrong at level {level}")
            up.append(PaddedSparse.from_coo(u.indices, u.values, tuple(u.shape)))
            down.append(PaddedSparse.from_coo(d.indices, d.values, tuple(d.shape)))
        regions = np.asarray(asset.regions, np.int64)
        roi = np.asarray(asset.roi_spirals, np.int64)
        vertex_count = counts[0]
        if regions.shape != (vertex_count,) or regions.min() < 0 or regions.max() >= NUM_REGIONS:
            raise TopologyError(f"asset {asset.version}: regions must be (V,) in 0..5")
        if roi.ndim != 2 or roi.shape[0] != vertex_count or roi.min() < 0 or roi.max() >= vertex_count:
            raise TopologyError(f"asset {asset.version}: roi_spirals must be (V, L) with valid indices")
        if not np.all(regions[roi] == regions[:, None]):
            raise TopologyError(f"asset {asset.version}: roi_spirals leave their vertex's region")
        template = np.asarray(asset.template_vertices, np.float32)
        regressor = np.asarray(asset.joint_regressor, np.float32)
        if template.shape != (vertex_count, 3) or regressor.shape != (NUM_JOINTS, vertex_count):
            raise TopologyError(f"asset {asset.version}: template {template.shape} / regressor {regressor.shape} wrong")
        return DecoderTopology(
            version=str(asset.version),
            sha256=str(asset.sha256),
            level_num_vertices=counts,
            spirals=tuple(spirals),
            up=tuple(up),
            down=tuple(down),
            roi_spirals=torch.from_numpy(roi.copy()),
            regions=torch.from_numpy(regions.copy()),
            template_vertices=torch.from_numpy(template.copy()),
            joint_regressor=torch.from_numpy(regressor.copy()),
            faces=np.asarray(asset.faces, np.int64).copy(),
        )
