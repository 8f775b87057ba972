"""Arm anatomy and geometry, capsule ambient occlusion and the skin shading terms of the generator."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from models.hand.poses import named_pose
from training.synth.ambient_occlusion import hand_ambient_occlusion
from training.synth.arm import (
    WRIST_DEVIATION_LIMIT_RAD,
    WRIST_FLEX_LIMIT_RAD,
    ArmPose,
    arm_acceptance,
    arm_layers,
    forearm_direction_hand,
    solve_arm,
)
from training.synth.primitives import axis_angle_to_matrix, profile_tube, sweep_tube
from training.synth.render import (
    DirectionalLight,
    Lighting,
    MeshLayer,
    render_layers,
    vertex_normals,
)
from training.synth.scene import LABEL_FOREARM, SceneGenerator
from training.synth.skin import SkinTone

UPRIGHT_PALM = axis_angle_to_matrix(np.array([0.0, 1.0, 0.0]), np.pi) @ np.diag([1.0, -1.0, -1.0])
"""Hand -> camera rotation: fingers up in the image, palm toward the camera."""


def _signed_volume(verts: np.ndarray, faces: np.ndarray) -> float:
    tri = verts[faces]
    return float(np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6.0)


def test_sweep_tube_generalises_profile_tube_and_stays_closed_when_curved() -> None:
    profile = [(0.0, 1.0, 0.5), (1.0, 1.2, 0.7), (2.5, 0.9, 0.6)]
    straight_v, straight_f = profile_tube(profile, segments=10, cap_bulge=0.3)
    centres = np.array([[0.0, 0.0, z] for z, _, _ in profile])
    radii = np.array([[rx, ry] for _, rx, ry in profile])
    v, f = sweep_tube(centres, np.tile(np.eye(3), (3, 1, 1)), radii, segments=10, cap_bulge=0.3)
    np.testing.assert_allclose(v, straight_v)
    assert np.array_equal(f, straight_f)
    # A quarter bend: still watertight with outward winding.
    angles = np.linspace(0.0, np.pi / 2, 8)
    centres = np.stack([5.0 * (1 - np.cos(angles)), np.zeros(8), 5.0 * np.sin(angles)], axis=1)
    tangents = np.stack([np.sin(angles), np.zeros(8), np.cos(angles)], axis=1)
    frames = np.stack([np.cross(np.array([0.0, 1.0, 0.0]), tangents), np.tile([0.0, 1.0, 0.0], (8, 1)), tangents], axis=2)
    v, f = sweep_tube(centres, frames, np.full((8, 2), 0.5), segments=12)
    assert _signed_volume(v, f) > 0
    edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    assert np.all(np.unique(edges, axis=0, return_counts=True)[1] == 2)


def test_forearm_direction_is_the_hands_minus_y_turned_by_the_wrist() -> None:
    np.testing.assert_allclose(forearm_direction_hand(0.0, 0.0), [0.0, -1.0, 0.0], atol=1e-12)
    d = forearm_direction_hand(np.array([0.3, -0.5]), np.array([0.1, 0.2]))
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0)
    # Flexion alone turns the forearm about the hand's x axis by exactly the flexion angle.
    assert np.isclose(np.arccos(-forearm_direction_hand(0.4, 0.0)[1]), 0.4)


def test_arm_acceptance_is_monotone_with_a_floor() -> None:
    values = [arm_acceptance(np.deg2rad(a)) for a in (0, 30, 45, 60, 90, 180)]
    assert values[0] == values[1] == 1.0
    assert all(a >= b for a, b in itertools.pairwise(values))
    assert values[-1] == pytest.approx(0.1)


def test_solve_arm_points_an_upright_hands_forearm_down_and_within_wrist_limits() -> None:
    rng = np.random.default_rng(0)
    downs = []
    for is_right in (True, False):
        for _ in range(40):
            arm = solve_arm(rng, UPRIGHT_PALM, is_right, 1.0)
            d_h = arm.forearm_dir_h
            flex = np.arctan2(-d_h[2], -d_h[1])
            dev = np.arcsin(np.clip(d_h[0], -1.0, 1.0))
            assert abs(flex) <= WRIST_FLEX_LIMIT_RAD + 1e-9 and abs(dev) <= WRIST_DEVIATION_LIMIT_RAD + 1e-9
            downs.append((UPRIGHT_PALM @ d_h)[1])
    # Elbows hang below the hand for a person facing the camera (a few arms come from anywhere).
    assert np.mean(np.array(downs) > 0.3) > 0.8
    # A hand with its fingers pointing down cannot bend its wrist far enough: large misalignment.
    fingers_down = axis_angle_to_matrix(np.array([0.0, 0.0, 1.0]), np.pi) @ UPRIGHT_PALM
    misaligned = [solve_arm(rng, fingers_down, True, 1.0).misalignment for _ in range(20)]
    assert np.median(misaligned) > np.deg2rad(60.0)


def test_arm_mesh_starts_inside_the_wrist_stub_and_follows_the_forearm() -> None:
    tone = SkinTone(np.array([0.5, 0.6, 0.8], np.float32), 0.3, 0.1, 20.0, 0.03)
    direction = forearm_direction_hand(0.5, 0.1)
    translation = np.array([0.0, 0.0, 0.5])
    for sleeve, count in (("none", 1), ("long", 2)):
        layers = arm_layers(np.random.default_rng(1), tone, UPRIGHT_PALM, translation, ArmPose(direction, 0.4, 0.0), 1.0, sleeve=sleeve)
        assert len(layers) == count and all(layer.label == LABEL_FOREARM for layer in layers)
        skin = layers[0].vertices_cam
        local = (skin - translation) @ UPRIGHT_PALM  # back to the hand frame
        # The tube begins about 1.2 cm inside the hand and ends along the forearm axis.
        assert local[:, 1].max() > 0.005
        if sleeve == "none":
            far = local[local[:, 1] < -0.2].mean(axis=0)
            assert np.dot(far / np.linalg.norm(far), direction) > 0.97
    with pytest.raises(ValueError, match="sleeve"):
        arm_layers(np.random.default_rng(1), tone, UPRIGHT_PALM, translation, ArmPose(direction, 0.4, 0.0), 1.0, sleeve="cape")


def test_capsule_occlusion_darkens_a_fist_more_than_an_open_hand() -> None:
    generator = SceneGenerator()
    faces = generator.faces_right
    visibility = {}
    for name in ("open_palm", "fist"):
        verts, joints = generator.pose_hand(named_pose(name), np.zeros(4, np.float32))
        ao = hand_ambient_occlusion(verts, vertex_normals(verts, faces), joints)
        assert ao.shape == (len(verts),) and ao.dtype == np.float32
        assert ao.min() >= 0.35 - 1e-6 and ao.max() <= 1.0
        visibility[name] = float(ao.mean())
    assert visibility["fist"] < visibility["open_palm"] - 0.02
    assert visibility["open_palm"] > 0.85


def _flat_patch(occlusion: np.ndarray | None = None, subsurface: float = 0.0) -> MeshLayer:
    verts = np.array([[-0.1, -0.1, 0.5], [0.1, -0.1, 0.5], [0.1, 0.1, 0.5], [-0.1, 0.1, 0.5]])
    faces = np.array([[0, 2, 1], [0, 3, 2]])
    return MeshLayer(verts, faces, np.full((4, 3), 0.6), specular=0.0, occlusion=occlusion, subsurface=subsurface)


def test_occlusion_and_subsurface_shading_terms() -> None:
    K = np.array([[300.0, 0.0, 63.5], [0.0, 300.0, 63.5], [0.0, 0.0, 1.0]])
    grazing = Lighting((DirectionalLight(np.array([1.0, 0.0, 0.05]) / np.hypot(1.0, 0.05), np.ones(3)),), np.full(3, 0.3), np.full(3, 0.3), wrap=0.2)
    open_patch = render_layers([_flat_patch()], K, (128, 128), grazing).color_bgr[64, 64]
    occluded = render_layers([_flat_patch(np.full(4, 0.5))], K, (128, 128), grazing).color_bgr[64, 64]
    assert np.all(occluded < open_patch - 0.05)
    skin = render_layers([_flat_patch(subsurface=0.4)], K, (128, 128), grazing).color_bgr[64, 64]
    # Light wraps further in red than in blue past the terminator (BGR order).
    assert skin[2] > open_patch[2] + 0.02 and skin[0] <= open_patch[0] + 1e-6
