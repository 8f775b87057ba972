"""Skeleton layout and the rest-pose design of our procedural right hand.

Frame (rest pose, right hand, metres): origin at the wrist joint; +y from the wrist towards the middle
fingertip, +z out of the back of the hand (dorsal; the palm faces -z), +x towards the little finger
(ulnar side), so the thumb lies on the -x side. Right-handed axes.

Joint order is the MediaPipe / FreiHAND order: 0 wrist; 1-4 thumb CMC, MCP, IP, tip; 5-8 index MCP, PIP,
DIP, tip; 9-12 middle; 13-16 ring; 17-20 little. Bones (skinning transforms) are the 16 non-tip joints:
bone b rotates about joint ``BONE_JOINTS[b]`` and moves the segment that starts there.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NUM_JOINTS: int = 21
NUM_BONES: int = 16
FINGER_NAMES: tuple[str, ...] = ("thumb", "index", "middle", "ring", "little")
REGION_NAMES: tuple[str, ...] = ("palm", "thumb", "index", "middle", "ring", "little")
JOINT_NAMES: tuple[str, ...] = (
    "wrist",
    "thumb_cmc", "thumb_mcp", "thumb_ip", "thumb_tip",
    "index_mcp", "index_pip", "index_dip", "index_tip",
    "middle_mcp", "middle_pip", "middle_dip", "middle_tip",
    "ring_mcp", "ring_pip", "ring_dip", "ring_tip",
    "little_mcp", "little_pip", "little_dip", "little_tip",
)
# Joint index (0..20) of each bone's pivot.
BONE_JOINTS: tuple[int, ...] = (0, 1, 2, 3, 5, 6, 7, 9, 10, 11, 13, 14, 15, 17, 18, 19)
BONE_PARENTS: tuple[int, ...] = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)
# Joint index of each fingertip and the bone that carries it (thumb, index, middle, ring, little).
TIP_JOINTS: tuple[int, ...] = (4, 8, 12, 16, 20)
TIP_BONES: tuple[int, ...] = (3, 6, 9, 12, 15)
# Bones of each finger (proximal to distal); finger f has region f + 1.
FINGER_BONES: tuple[tuple[int, int, int], ...] = ((1, 2, 3), (4, 5, 6), (7, 8, 9), (10, 11, 12), (13, 14, 15))
# Parent joint of each of the 21 joints (-1 for the wrist): the skeleton's drawing order.
JOINT_PARENTS: tuple[int, ...] = (-1, 0, 1, 2, 3, 0, 5, 6, 7, 0, 9, 10, 11, 0, 13, 14, 15, 0, 17, 18, 19)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _finger_direction(angle_deg: float) -> np.ndarray:
    """Unit vector in the palm plane, ``angle_deg`` from +y towards +x (ulnar)."""
    a = np.deg2rad(angle_deg)
    return np.array([np.sin(a), np.cos(a), 0.0])


@dataclass(frozen=True)
class FingerDesign:
    """Rest geometry of one finger: base joint, three bone directions and lengths, and radii.

    ``radii`` are lateral half-widths (metres) at: base joint, mid proximal, second joint, mid middle,
    third joint, mid distal, tip sphere. ``depth_ratio`` scales them along the dorsal axis.
    """

    base: np.ndarray          # (3,) metres
    directions: np.ndarray    # (3, 3) unit bone directions
    lengths: np.ndarray       # (3,) metres; the last one ends at the surface tip
    radii: np.ndarray         # (7,) metres
    dorsal: np.ndarray        # (3,) unit, nail side of the finger (orthogonal to the bones)
    depth_ratio: float

    def joints(self) -> np.ndarray:
        """(4, 3) joints from the base to the surface tip."""
        pts = [self.base]
        for d, length in zip(self.directions, self.lengths):
            pts.append(pts[-1] + d * length)
        return np.stack(pts)


def _straight_finger(base: tuple[float, float, float], angle_deg: float, lengths: tuple[float, float, float],
                     scale: float) -> FingerDesign:
    d = _finger_direction(angle_deg)
    base_radii = np.array([0.0108, 0.0093, 0.0097, 0.0084, 0.0085, 0.0080, 0.0079])
    return FingerDesign(
        base=np.array(base), directions=np.stack([d, d, d]), lengths=np.array(lengths),
        radii=base_radii * scale, dorsal=np.array([0.0, 0.0, 1.0]), depth_ratio=0.86,
    )


def _thumb() -> FingerDesign:
    cmc = np.array([-0.021, 0.026, -0.009])
    dirs = np.stack([
        _unit(np.array([-0.62, 0.74, -0.22])),
        _unit(np.array([-0.50, 0.84, -0.14])),
        _unit(np.array([-0.40, 0.90, -0.08])),
    ])
    dorsal_hint = _unit(np.array([-0.80, 0.0, 0.60]))
    u = dirs[1]
    dorsal = _unit(dorsal_hint - np.dot(dorsal_hint, u) * u)
    radii = np.array([0.0135, 0.0118, 0.0112, 0.0103, 0.0104, 0.0095, 0.0091])
    return FingerDesign(base=cmc, directions=dirs, lengths=np.array([0.043, 0.032, 0.029]),
                        radii=radii, dorsal=dorsal, depth_ratio=0.82)


def rest_fingers() -> tuple[FingerDesign, ...]:
    """Thumb, index, middle, ring, little of the rest (flat, slightly spread) right hand."""
    return (
        _thumb(),
        _straight_finger((-0.0300, 0.0895, -0.0010), -7.0, (0.0410, 0.0245, 0.0230), 1.00),
        _straight_finger((-0.0095, 0.0915, 0.0000), -1.0, (0.0450, 0.0280, 0.0240), 1.03),
        _straight_finger((0.0105, 0.0885, -0.0010), 5.0, (0.0420, 0.0270, 0.0235), 0.97),
        _straight_finger((0.0295, 0.0800, -0.0040), 12.0, (0.0330, 0.0200, 0.0215), 0.85),
    )


def rest_joints_design() -> np.ndarray:
    """(21, 3) float64 designed rest joints (the asset's exact joints are regressed from the mesh)."""
    out = np.zeros((NUM_JOINTS, 3))
    for f, finger in enumerate(rest_fingers()):
        out[1 + 4 * f: 5 + 4 * f] = finger.joints()
    return out
