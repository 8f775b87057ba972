"""Deterministic stand-ins for MediaPipe and the network, to test the pipeline's geometry glue.

``GeometricBackend`` back-projects the 2D cue it receives (crop pixels) through ``K_virt`` at known
depths and maps the points to the real camera with ``virt_to_cam``, exactly as a perfect network
with DGP would. Projecting its camera-space joints with the real K must therefore give back the 2D
cue in the image: any error in crops, homographies, mirroring or the camera mapping shows up.
``ScriptedDetector`` returns pre-set detections per frame index.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from app.backends import BackendRequest, BackendResult
from app.detection import HandDetection, landmarks_box

ROOT_DEPTH_M = 0.5
# Joints 1..20 lie slightly behind/in front of the wrist so the hand is not planar.
JOINT_DEPTH_OFFSETS_M = np.linspace(-0.02, 0.03, 21).astype(np.float64)
JOINT_DEPTH_OFFSETS_M[0] = 0.0
# A small fan of triangles over the joints, wound to face the camera for a right hand.
FAN_FACES = np.array([[0, 9, 5], [0, 13, 9], [0, 17, 13], [0, 5, 1], [5, 9, 6], [9, 13, 10]], np.int64)


@dataclass
class GeometricBackend:
    """A perfect 'network' for any 2D cue: vertices = joints (V = 21)."""

    crop_size: int = 64
    name: str = "geometric-fake"
    asset_sha256: str = "fake"
    config: object = None
    faces: np.ndarray = field(default_factory=lambda: FAN_FACES.copy())
    calls: list[int] = field(default_factory=list)

    def infer(self, request: BackendRequest) -> BackendResult:
        request.validate(self.crop_size)
        b = request.batch_size
        self.calls.append(b)
        if b == 0:
            return BackendResult.empty(21)
        if request.joints_2d_external is not None:
            uv = np.asarray(request.joints_2d_external, np.float64)
        else:  # the 'network's own' 2D joints: a fixed fan around the crop centre
            angles = np.linspace(-1.2, 1.2, 21)
            radius = np.r_[0.0, np.full(20, 0.3 * self.crop_size)]
            c = (self.crop_size - 1) / 2.0
            uv = np.stack([c + radius * np.sin(angles), c + 0.3 * self.crop_size - radius * np.cos(angles)], -1)
            uv = np.broadcast_to(uv, (b, 21, 2)).copy()
        K = np.asarray(request.K_virt, np.float64)
        x = (uv[..., 0] - K[:, None, 0, 2]) / K[:, None, 0, 0]
        y = (uv[..., 1] - K[:, None, 1, 2]) / K[:, None, 1, 1]
        z = ROOT_DEPTH_M + JOINT_DEPTH_OFFSETS_M[None, :]
        virt = np.stack([x * z, y * z, np.broadcast_to(z, x.shape)], axis=-1)
        A = np.asarray(request.virt_to_cam, np.float64)
        cam = virt @ np.swapaxes(A, -1, -2)
        translation_virt = virt[:, 0]
        rel = virt - translation_virt[:, None]
        arrays = {
            "vertices_rel": rel,
            "joints_rel": rel,
            "joints_2d_pred": uv,
            "joints_2d_used": uv,
            "dgp_weights": np.full((b, 21), 0.8),
            "translation_virt": translation_virt,
            "vertices_cam": cam,
            "joints_cam": cam,
            "translation_cam": cam[:, 0],
            "dgp_residual": np.zeros(b),
            "dgp_degenerate": np.zeros(b, bool),
        }
        return BackendResult.from_arrays(arrays)


def hand_landmarks(centre: tuple[float, float], size: float, *, flip_x: bool = False) -> np.ndarray:
    """``(21, 2)`` plausible open-hand landmarks (wrist at the bottom) around ``centre``, pixels."""
    pts = [(0.0, 0.5)]
    for finger, angle in enumerate(np.linspace(-0.9, 0.6, 5)):
        base = 0.15 if finger == 0 else 0.25
        for k in range(4):
            r = base + 0.12 * (k + 1)
            pts.append((np.sin(angle) * r, 0.5 - np.cos(angle) * r))
    arr = np.asarray(pts) * size
    if flip_x:
        arr[:, 0] = -arr[:, 0]
    return (arr + np.asarray(centre)).astype(np.float32)


@dataclass
class ScriptedDetector:
    """Returns ``script[frame_number]`` (a list of (landmarks, handedness)) for successive calls."""

    script: list[list[tuple[np.ndarray, str]]]
    calls: int = 0

    def detect(self, bgr: np.ndarray, t: float | None = None) -> list[HandDetection]:
        entries = self.script[self.calls % len(self.script)] if self.script else []
        self.calls += 1
        return [
            HandDetection(
                landmarks_img=np.asarray(lm, np.float32),
                landmarks_z=np.zeros(21, np.float32),
                world_landmarks=np.zeros((21, 3), np.float32),
                handedness=hand,
                score=0.95,
                box_img=landmarks_box(lm),
            )
            for lm, hand in entries
        ]

    def reset(self) -> None:
        self.calls = 0

    def close(self) -> None:
        return None
