"""The mesh-backend protocol: what the live pipeline hands to the network and what it gets back.

All arrays are numpy. B = number of hands in the frame (0 allowed), S = crop size, V = mesh vertices.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Protocol, runtime_checkable

import numpy as np

from models.config import NUM_JOINTS, M3DHMRConfig, crops_to_network_input
from models.errors import InputShapeError
from models.export_onnx import OUTPUT_NAMES
from models.mediapipe_frame import hand_length

# The backend returns exactly the exported network outputs, in the same order.
RESULT_FIELDS: tuple[str, ...] = OUTPUT_NAMES


@dataclass(frozen=True)
class BackendRequest:
    """One network call for all hands of a frame.

    crops_rgb ``(B,S,S,3)`` uint8 **RGB** (already warped with the rectification homography);
    K_virt ``(B,3,3)`` crop intrinsics; virt_to_cam ``(B,3,3)`` (``X_cam = virt_to_cam @ X_virt``, det -1
    for mirrored left hands); joints_2d_external ``(B,21,2)`` crop px (e.g. MediaPipe) or None to use the
    network's own 2D joints; landmarks_3d ``(B,21,3)`` MediaPipe's world landmarks in the crop's frame,
    wrist-relative, metres (``models.mediapipe_frame.world_landmarks_to_virtual``) for the ``fused`` cue, or
    None; hand_length_m ``(B,)`` metres (wrist to middle fingertip) when the user knows it, or None (the
    network's estimate is used). Models without those inputs ignore them. external_rows / landmarks_rows
    ``(B,)`` bool pick the rows that use ``joints_2d_external`` / ``landmarks_3d`` (None: every row uses
    them when they are given), so one call can run several cues. crop_index ``(R,)`` int: row r reads crop
    ``crop_index[r]`` (the encoder runs once per crop); then crops_rgb has B <= R crops and every other
    array R rows. None: one row per crop.
    """

    crops_rgb: np.ndarray
    K_virt: np.ndarray
    virt_to_cam: np.ndarray
    joints_2d_external: np.ndarray | None = None
    landmarks_3d: np.ndarray | None = None
    hand_length_m: np.ndarray | None = None
    external_rows: np.ndarray | None = None
    landmarks_rows: np.ndarray | None = None
    crop_index: np.ndarray | None = None

    @property
    def batch_size(self) -> int:
        """R, the number of rows (results)."""
        return int(self.crops_rgb.shape[0] if self.crop_index is None else np.asarray(self.crop_index).shape[0])

    def crops_per_row(self) -> np.ndarray:
        """``(R,S,S,3)`` the crop of every row (crops repeated for backends that cannot share them)."""
        return self.crops_rgb if self.crop_index is None else self.crops_rgb[np.asarray(self.crop_index)]

    def validate(self, crop_size: int) -> None:
        """Raise :class:`InputShapeError` with an actionable message when shapes or dtypes are wrong."""
        crops = self.crops_rgb.shape[0] if self.crops_rgb.ndim == 4 else -1
        if self.crops_rgb.shape != (crops, crop_size, crop_size, 3) or self.crops_rgb.dtype != np.uint8:
            raise InputShapeError(
                f"crops_rgb must be (B, {crop_size}, {crop_size}, 3) uint8 RGB, got {self.crops_rgb.shape} {self.crops_rgb.dtype}"
            )
        if self.crop_index is not None:
            index = np.asarray(self.crop_index)
            if index.ndim != 1 or index.dtype.kind not in "iu" or (index.size and (index.min() < 0 or index.max() >= crops)):
                raise InputShapeError(f"crop_index must be (R,) integers in [0, {crops}), got {index.shape} {index.dtype}")
        b = self.batch_size
        if self.K_virt.shape != (b, 3, 3) or self.virt_to_cam.shape != (b, 3, 3):
            raise InputShapeError(f"K_virt and virt_to_cam must be ({b}, 3, 3), got {self.K_virt.shape}, {self.virt_to_cam.shape}")
        if self.joints_2d_external is not None and self.joints_2d_external.shape != (b, NUM_JOINTS, 2):
            raise InputShapeError(f"joints_2d_external must be ({b}, 21, 2) crop px, got {self.joints_2d_external.shape}")
        if self.landmarks_3d is not None and self.landmarks_3d.shape != (b, NUM_JOINTS, 3):
            raise InputShapeError(f"landmarks_3d must be ({b}, 21, 3) metres, got {self.landmarks_3d.shape}")
        if self.hand_length_m is not None and self.hand_length_m.shape != (b,):
            raise InputShapeError(f"hand_length_m must be ({b},) metres, got {self.hand_length_m.shape}")
        for name, given in (("external_rows", self.joints_2d_external), ("landmarks_rows", self.landmarks_3d)):
            rows = getattr(self, name)
            if rows is not None and (given is None or np.asarray(rows).shape != (b,)):
                raise InputShapeError(f"{name} must be ({b},) bool and needs its input, got {np.asarray(rows).shape}")

    def row_mask(self, rows: np.ndarray | None, given: bool) -> np.ndarray:
        """``(B,)`` float32 1/0: which rows use an input (``rows`` as the fields above)."""
        if not given:
            return np.zeros((self.batch_size,), np.float32)
        return np.ones((self.batch_size,), np.float32) if rows is None else np.asarray(rows, bool).astype(np.float32)

    def network_feeds(self, config: M3DHMRConfig, shares_crops: bool = True) -> dict[str, np.ndarray]:
        """The exported graph's inputs for this request (``models.export_onnx.input_names_for(config)``;
        float32, ``crop_index`` int64): crops ``(B or R,3,S,S)`` RGB in [0, 1] (every row's own crop when
        not ``shares_crops``, for graphs exported before ``crop_index``), inputs a row does not use as zeros
        (landmarks) or 0.185 m (hand length) with mask 0, so the masks alone decide what the network reads."""
        batch = self.batch_size
        external_given = self.joints_2d_external is not None
        feeds = {
            "crops": crops_to_network_input(self.crops_rgb if shares_crops else self.crops_per_row()),
            "K_virt": np.asarray(self.K_virt, np.float32),
            "virt_to_cam": np.asarray(self.virt_to_cam, np.float32),
            "joints_2d_external": (np.asarray(self.joints_2d_external, np.float32) if external_given
                                   else np.zeros((batch, NUM_JOINTS, 2), np.float32)),
            "external_mask": self.row_mask(self.external_rows, external_given),
        }
        if config.fused_cue:
            given = self.landmarks_3d is not None
            feeds["landmarks_3d"] = (np.asarray(self.landmarks_3d, np.float32) if given
                                     else np.zeros((batch, NUM_JOINTS, 3), np.float32))
            feeds["landmarks_3d_mask"] = self.row_mask(self.landmarks_rows, given)
        if config.predict_scale:
            given = self.hand_length_m is not None
            feeds["hand_length"] = (np.asarray(self.hand_length_m, np.float32) if given
                                    else np.full((batch,), 0.185, np.float32))
            feeds["hand_length_mask"] = np.full((batch,), 1.0 if given else 0.0, np.float32)
        if shares_crops:
            feeds["crop_index"] = (np.arange(batch, dtype=np.int64) if self.crop_index is None
                                   else np.asarray(self.crop_index, np.int64))
        return feeds


@dataclass(frozen=True)
class BackendResult:
    """Network outputs as numpy float32 (``dgp_degenerate`` bool); frames/units as in ``M3DHMROutput``.

    vertices_rel (B,V,3), joints_rel (B,21,3): wrist-relative, virtual-camera axes, metres;
    joints_2d_pred / joints_2d_used (B,21,2) crop px; dgp_weights (B,21); translation_virt (B,3) m;
    vertices_cam (B,V,3), joints_cam (B,21,3), translation_cam (B,3): real camera, metres;
    dgp_residual (B,) m; dgp_degenerate (B,) bool; hand_length (B,) m: the hand length the mesh has
    (wrist to middle fingertip along the finger; the given one, the network's estimate, or measured on the
    mesh for models without a scale output).
    """

    vertices_rel: np.ndarray
    joints_rel: np.ndarray
    joints_2d_pred: np.ndarray
    joints_2d_used: np.ndarray
    dgp_weights: np.ndarray
    translation_virt: np.ndarray
    vertices_cam: np.ndarray
    joints_cam: np.ndarray
    translation_cam: np.ndarray
    dgp_residual: np.ndarray
    dgp_degenerate: np.ndarray
    hand_length: np.ndarray

    @staticmethod
    def empty(num_vertices: int) -> BackendResult:
        """The result of a call with zero hands."""
        shapes = {
            "vertices_rel": (0, num_vertices, 3),
            "joints_rel": (0, NUM_JOINTS, 3),
            "joints_2d_pred": (0, NUM_JOINTS, 2),
            "joints_2d_used": (0, NUM_JOINTS, 2),
            "dgp_weights": (0, NUM_JOINTS),
            "translation_virt": (0, 3),
            "vertices_cam": (0, num_vertices, 3),
            "joints_cam": (0, NUM_JOINTS, 3),
            "translation_cam": (0, 3),
            "dgp_residual": (0,),
            "hand_length": (0,),
        }
        arrays = {name: np.zeros(shape, np.float32) for name, shape in shapes.items()}
        return BackendResult(**arrays, dgp_degenerate=np.zeros((0,), bool))

    def take(self, rows: slice | np.ndarray) -> BackendResult:
        """The result of the rows ``rows`` (a slice or an index/bool array over B)."""
        return BackendResult(**{f.name: np.asarray(getattr(self, f.name))[rows] for f in fields(BackendResult)})

    @staticmethod
    def from_arrays(arrays: dict[str, np.ndarray]) -> BackendResult:
        """From network outputs by name; ``hand_length`` (or ``hand_length_used``) is measured on
        ``joints_rel`` when the model has no such output."""
        arrays = dict(arrays)
        if "hand_length" not in arrays:
            arrays["hand_length"] = (arrays["hand_length_used"] if "hand_length_used" in arrays
                                     else hand_length(np.asarray(arrays["joints_rel"], np.float64)))
        values = {f.name: np.asarray(arrays[f.name], np.float32) for f in fields(BackendResult) if f.name != "dgp_degenerate"}
        return BackendResult(**values, dgp_degenerate=np.asarray(arrays["dgp_degenerate"]).astype(bool))


@runtime_checkable
class MeshBackend(Protocol):
    """Anything that runs the mesh network on a batch of rectified crops."""

    name: str
    config: M3DHMRConfig
    asset_sha256: str
    crop_size: int
    faces: np.ndarray  # (F, 3) int64, right-hand winding

    def infer(self, request: BackendRequest) -> BackendResult: ...


MAX_HAND_DISTANCE_M: float = 20.0
"""A wrist farther than this from the camera cannot belong to a hand the detector saw: the output is broken."""
MAX_HAND_EXTENT_M: float = 1.0
"""Largest plausible distance of a vertex or joint from the wrist (a real hand spans about 0.2 m)."""


def implausible_hands(result: BackendResult) -> np.ndarray:
    """``(B,)`` bool: hands whose network outputs are NaN/inf or physically impossible.

    Corrupt weights (one flipped exponent byte) or a broken input produce either non-finite numbers or
    values such as a wrist 4.7e32 m away; such hands must be dropped (with a warning), never reported.
    Checked: every output finite; the wrist in front of the camera and within :data:`MAX_HAND_DISTANCE_M`;
    vertices and joints within :data:`MAX_HAND_EXTENT_M` of the wrist.
    """
    batch = int(np.asarray(result.translation_cam).shape[0])
    bad = np.zeros((batch,), bool)
    if batch == 0:
        return bad
    for f in fields(BackendResult):
        value = np.asarray(getattr(result, f.name))
        if value.dtype.kind == "f" and value.shape[:1] == (batch,):
            bad |= ~np.isfinite(value.reshape(batch, -1)).all(axis=1)
    with np.errstate(invalid="ignore", over="ignore"):
        t = np.asarray(result.translation_cam, np.float64)
        bad |= ~(np.linalg.norm(t, axis=1) <= MAX_HAND_DISTANCE_M) | ~(t[:, 2] > 0.0)
        for name in ("vertices_cam", "joints_cam"):
            rel = np.asarray(getattr(result, name), np.float64) - t[:, None, :]
            bad |= ~(np.abs(rel).reshape(batch, -1).max(axis=1, initial=0.0) <= MAX_HAND_EXTENT_M)
    return bad
