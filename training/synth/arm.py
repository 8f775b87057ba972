"""The arm a synthetic hand is attached to: where it goes (anatomy) and what it looks like (meshes).

Where: a person faces the camera (webcam use); the shoulder sits behind the hand (further from the
camera), usually lower and toward the hand's own side. The elbow is placed by two-link inverse
kinematics (forearm, upper arm) with the elbow hanging toward gravity, and the wrist chooses the
flexion/deviation within anatomical limits (flexion/extension +-65 deg, deviation +-25 deg) that points
the forearm closest to that elbow. `ArmPose.misalignment` tells how far the wrist limits kept the
forearm from the body's direction; scene sampling rejects most strongly misaligned (implausible) poses.

What: a tapered forearm swept along a curved centre line that starts inside the hand's wrist stub on
the stub's own axis (same cross-section, 5 % larger, so the junction shows no seam) and bends smoothly
into the forearm direction; it widens toward the forearm muscles; `DRAWN_ARM_LENGTH_M` of arm is
drawn (the elbow itself is not); bare arm or a long sleeve with a cuff and folds.

Frames: hand frame (+y wrist -> fingers, +z back of the hand, metres; the hand model's frame, x-mirrored
for left hands); camera frame OpenCV (x right, y down, z forward). Colours BGR in [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from training.synth.primitives import sweep_tube, transform_points
from training.synth.render import MeshLayer
from training.synth.skin import SkinTone, palm_tinted

LABEL_FOREARM = 2
WRIST_FLEX_LIMIT_RAD: float = float(np.deg2rad(65.0))
WRIST_DEVIATION_LIMIT_RAD: float = float(np.deg2rad(25.0))
FOREARM_LENGTH_M: tuple[float, float] = (0.23, 0.28)
UPPER_ARM_LENGTH_M: tuple[float, float] = (0.26, 0.32)
DRAWN_ARM_LENGTH_M: tuple[float, float] = (0.32, 0.5)
"""How much arm is drawn: the forearm plus the start of a nearly straight upper arm (an arm reaching
toward the camera), one tapered tube; a drawn elbow and upper arm toward the shoulder made MediaPipe
find fewer hands and showed floating stumps where no torso is drawn."""
SLEEVE_KINDS: tuple[str, ...] = ("none", "long")
_SLEEVE_P = (0.55, 0.45)
# The hand model's wrist stub (rest hand, unit size): ends 2.2 cm below the wrist joint, elliptic
# cross-section about 5.8 x 3.3 cm centred 1 mm toward the palm.
_STUB_END_Y = -0.022
_STUB_RADII = (0.0289, 0.0165)
_STUB_CENTRE_Z = -0.001


def forearm_direction_hand(flexion: np.ndarray | float, deviation: np.ndarray | float) -> np.ndarray:
    """Unit forearm axis (wrist -> elbow) in the hand frame, (..., 3) float64: the hand's -y axis turned
    by wrist flexion (about the hand's x axis) and deviation (about its z axis), radians."""
    f = np.asarray(flexion, np.float64)
    d = np.asarray(deviation, np.float64)
    return np.stack(np.broadcast_arrays(np.sin(d), -np.cos(d) * np.cos(f), -np.cos(d) * np.sin(f)), axis=-1)


_FLEX_GRID, _DEV_GRID = np.meshgrid(
    np.linspace(-WRIST_FLEX_LIMIT_RAD, WRIST_FLEX_LIMIT_RAD, 27), np.linspace(-WRIST_DEVIATION_LIMIT_RAD, WRIST_DEVIATION_LIMIT_RAD, 11)
)
_CANDIDATES_H = forearm_direction_hand(_FLEX_GRID.ravel(), _DEV_GRID.ravel())  # (297, 3)


@dataclass(frozen=True)
class ArmPose:
    """Arm geometry relative to the hand.

    forearm_dir_h: (3,) unit wrist -> elbow axis in the hand frame. length: metres of arm drawn.
    misalignment: radians between the chosen forearm and the one the body asks for.
    """

    forearm_dir_h: np.ndarray
    length: float
    misalignment: float


def sample_shoulder_offset(rng: np.random.Generator, is_right: bool) -> np.ndarray:
    """(3,) camera-frame vector wrist -> shoulder, metres, for a person facing the camera.

    Mostly behind the hand (+z), lower or level (+y), toward the hand's side (the person's right
    shoulder is on the image's left); the camera may be rolled; 12 % of arms come from anywhere
    (lying down, reaching from the side or above)."""
    if rng.random() < 0.12:
        direction = rng.standard_normal(3)
        direction[2] = abs(direction[2])
        return direction / np.linalg.norm(direction) * rng.uniform(0.25, 0.55)
    side = -1.0 if is_right else 1.0
    offset = np.array([side * rng.uniform(-0.12, 0.3), rng.uniform(-0.05, 0.45), rng.uniform(0.05, 0.45)])
    roll = rng.normal(0.0, np.deg2rad(12.0))
    c, s = np.cos(roll), np.sin(roll)
    return np.array([c * offset[0] - s * offset[1], s * offset[0] + c * offset[1], offset[2]])


def solve_arm(rng: np.random.Generator, rotation: np.ndarray, is_right: bool, size: float) -> ArmPose:
    """Arm for a hand with orientation `rotation` (3, 3, hand -> camera): shoulder, elbow by inverse
    kinematics, then the wrist angles (within limits, plus a little noise) closest to that elbow."""
    forearm = rng.uniform(*FOREARM_LENGTH_M) * size
    upper = rng.uniform(*UPPER_ARM_LENGTH_M) * size
    shoulder = sample_shoulder_offset(rng, is_right)
    dist = float(np.linalg.norm(shoulder))
    to_shoulder = shoulder / dist
    # Elbow bend: the elbow leaves the wrist->shoulder line toward gravity (+y), with some swivel.
    gravity = np.array([rng.normal(0.0, 0.4), 1.0, rng.normal(0.0, 0.3)])
    bend_dir = gravity - np.dot(gravity, to_shoulder) * to_shoulder
    bend_dir /= max(float(np.linalg.norm(bend_dir)), 1e-9)
    cos_a = np.clip((forearm**2 + dist**2 - upper**2) / (2.0 * forearm * dist), -1.0, 1.0)
    alpha = float(np.arccos(cos_a)) if dist < forearm + upper else 0.0
    target_cam = np.cos(alpha) * to_shoulder + np.sin(alpha) * bend_dir
    scores = _CANDIDATES_H @ (rotation.T @ target_cam)
    best = int(np.argmax(scores))
    misalignment = float(np.arccos(np.clip(scores[best], -1.0, 1.0)))
    flex = np.clip(_FLEX_GRID.ravel()[best] + rng.normal(0.0, 0.08), -WRIST_FLEX_LIMIT_RAD, WRIST_FLEX_LIMIT_RAD)
    dev = np.clip(_DEV_GRID.ravel()[best] + rng.normal(0.0, 0.05), -WRIST_DEVIATION_LIMIT_RAD, WRIST_DEVIATION_LIMIT_RAD)
    length = rng.uniform(*DRAWN_ARM_LENGTH_M) * size
    return ArmPose(forearm_direction_hand(flex, dev), float(length), misalignment)


def arm_acceptance(misalignment: float) -> float:
    """Probability of keeping a hand orientation whose forearm is `misalignment` radians off the
    body's direction: 1 up to 30 degrees, falling to a 10 % floor (rare contortions stay in the data)."""
    excess = max(misalignment - np.deg2rad(30.0), 0.0)
    return float(max(np.exp(-excess / np.deg2rad(20.0)), 0.1))


def _frames_along(directions: np.ndarray, dorsal: np.ndarray) -> np.ndarray:
    """(N, 3, 3) ring frames (columns x, y, t) with t = directions (N, 3), y = `dorsal` (3,) made
    orthogonal to t, x = y cross t (right-handed)."""
    y = dorsal[None] - (directions @ dorsal)[:, None] * directions
    y /= np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-9)
    x = np.cross(y, directions)
    return np.stack([x, y, directions], axis=2)


def _forearm_centre_line(arm: ArmPose, size: float, stations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres (N, 3) and unit tangents (N, 3), hand frame, at arc lengths `stations` (N,) from the wrist
    pivot: along the stub's axis (-y) until past the stub's end, then bending into the forearm axis."""
    axis0 = np.array([0.0, -1.0, 0.0])
    pivot = np.array([0.0, -0.004, _STUB_CENTRE_Z]) * size
    bend_start = (-_STUB_END_Y - 0.004 + 0.002) * size
    u = np.clip((stations - bend_start) / (0.05 * size), 0.0, 1.0)
    beta = u * u * (3.0 - 2.0 * u)
    tangents = (1.0 - beta)[:, None] * axis0[None] + beta[:, None] * arm.forearm_dir_h[None]
    tangents /= np.linalg.norm(tangents, axis=1, keepdims=True)
    steps = np.diff(stations)[:, None] * 0.5 * (tangents[1:] + tangents[:-1])
    centres = pivot[None] + stations[0] * axis0[None] + np.concatenate([np.zeros((1, 3)), np.cumsum(steps, axis=0)])
    return centres, tangents


def _cloth_color(rng: np.random.Generator) -> np.ndarray:
    """A clothing colour (3,) BGR in [0, 1]: mostly muted (greys, navy, denim), sometimes vivid."""
    saturation = rng.uniform(0, 90) if rng.random() < 0.7 else rng.uniform(90, 255)
    hsv = np.array([[[rng.uniform(0, 180), saturation, rng.uniform(15, 235)]]], np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32) / 255.0


def arm_layers(
    rng: np.random.Generator, tone: SkinTone, rotation: np.ndarray, translation: np.ndarray, arm: ArmPose, size: float,
    subsurface: float = 0.0, sleeve: str | None = None,
) -> list[MeshLayer]:
    """Meshes of the arm in the camera frame (label `LABEL_FOREARM`): skin first, then any sleeve.

    rotation (3, 3), translation (3,): the hand's placement (hand frame -> camera frame).
    sleeve: one of `SLEEVE_KINDS` or None (random: bare arm 55 %, long sleeve 45 %)."""
    kind = sleeve if sleeve is not None else SLEEVE_KINDS[int(rng.choice(len(SLEEVE_KINDS), p=_SLEEVE_P))]
    if kind not in SLEEVE_KINDS:
        raise ValueError(f"unknown sleeve kind {kind!r}; choose one of {SLEEVE_KINDS}")
    length = arm.length
    muscle = rng.uniform(0.9, 1.12)
    # Radii knots (arc length, rx, ry): stub-matching at the wrist, widest over the forearm muscles.
    stub_rx, stub_ry = 1.05 * _STUB_RADII[0] * size, 1.05 * _STUB_RADII[1] * size
    knots = np.array(
        [
            [-0.02 * size, 0.85 * stub_rx, 0.85 * stub_ry],
            [0.02 * size, stub_rx, stub_ry],
            [0.06 * size, stub_rx * 1.02, stub_ry * 1.12],
            [0.4 * length, 0.036 * size * muscle, 0.026 * size * muscle],
            [0.72 * length, 0.04 * size * muscle, 0.031 * size * muscle],
            [length, 0.035 * size, 0.031 * size],
        ]
    )
    stations = np.concatenate([np.array([-0.016, 0.0, 0.014, 0.026, 0.038, 0.05, 0.065]) * size, np.linspace(0.09 * size, length, 6)])
    centres_h, tangents_h = _forearm_centre_line(arm, size, stations)
    frames_h = _frames_along(tangents_h, np.array([0.0, 0.0, 1.0]))
    radii = np.stack([np.interp(stations, knots[:, 0], knots[:, 1]), np.interp(stations, knots[:, 0], knots[:, 2])], axis=1)
    centres = transform_points(centres_h, rotation, translation)
    frames = np.einsum("ij,njk->nik", rotation, frames_h)
    segments = 18
    phi = np.linspace(0.0, 2.0 * np.pi, segments, endpoint=False)
    ring_palmar = np.clip(0.5 - 1.5 * np.sin(phi), 0.0, 1.0)

    def skin_layer(vertices: np.ndarray, faces: np.ndarray, palmar: np.ndarray) -> MeshLayer:
        return MeshLayer(vertices, faces, palm_tinted(tone, palmar), specular=tone.specular, shininess=tone.shininess,
                         label=LABEL_FOREARM, texture_noise=tone.texture_noise, subsurface=subsurface)

    def cloth_layer(vertices: np.ndarray, faces: np.ndarray, color: np.ndarray, grain: float) -> MeshLayer:
        albedo = np.tile(color, (len(vertices), 1)) * rng.uniform(0.93, 1.07, (len(vertices), 1)).astype(np.float32)
        return MeshLayer(vertices, faces, albedo, specular=0.02, shininess=5.0, label=LABEL_FOREARM, texture_noise=grain)

    def tube_palmar(num_rings: int) -> np.ndarray:
        return np.concatenate([[0.5], np.tile(ring_palmar, num_rings), [0.5]])

    layers: list[MeshLayer] = []
    cut = len(stations)
    if kind == "long":
        sleeve_start = rng.uniform(0.03, 0.2) * length + 0.02 * size
        cut = int(np.searchsorted(stations, sleeve_start)) + 1
    v, f = sweep_tube(centres[:cut], frames[:cut], radii[:cut], segments=segments, cap_bulge=0.8)
    layers.append(skin_layer(v, f, tube_palmar(cut)))
    cloth = _cloth_color(rng)
    grain = float(rng.uniform(0.03, 0.15))
    grow = rng.uniform(1.15, 1.5)
    if kind == "long":
        start = max(cut - 2, 0)
        folds = 1.0 + rng.normal(0.0, 0.05, (len(stations) - start, 1))
        sleeve_radii = radii[start:] * grow * folds
        sleeve_radii[0] *= 0.92  # the cuff hugs the wrist
        v, f = sweep_tube(centres[start:], frames[start:], sleeve_radii, segments=segments, cap_bulge=0.6)
        layers.append(cloth_layer(v, f, cloth, grain))
    return layers
