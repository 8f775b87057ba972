"""The 3D scene renderer (app/ui/renderer3d.py): viewer-camera geometry without a display, and the
Open3D legacy renderer under a private Xvfb display."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from app.ui.renderer3d import (
    BACKGROUND_RGB,
    HandMesh,
    Open3DLegacyRenderer,
    OrbitCamera,
    SceneOptions,
    ThreadedRenderer,
    frustum_lines,
    ground_grid_lines,
    project_points,
)
from tests.gui_support import hand_template

pytestmark = pytest.mark.gui

CHILD_PROCESS_TIMEOUT_S = 300.0
"""Deadlock guard for the renderer child process (start, answer, exit); never reached when it works,
however loaded the machine."""


def test_orbit_camera_looks_at_its_target_from_any_angle() -> None:
    for camera in (OrbitCamera(), OrbitCamera(yaw_deg=120.0, pitch_deg=-40.0, distance=2.0, target=(0.1, -0.2, 0.7))):
        T = camera.extrinsic()
        R = T[:3, :3]
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(R) == pytest.approx(1.0)
        K = camera.intrinsic(400, 300)
        uv, ok = project_points(np.asarray([camera.target]), T, K)
        assert ok.all()
        np.testing.assert_allclose(uv[0], [199.5, 149.5], atol=1e-9)
        assert np.linalg.norm(camera.eye() - np.asarray(camera.target)) == pytest.approx(camera.distance)


def test_default_view_has_scene_up_pointing_up_and_sees_the_real_camera() -> None:
    camera = OrbitCamera()
    T, K = camera.extrinsic(), camera.intrinsic(480, 480)
    # A point above the target (smaller y in camera space) appears higher in the viewer image.
    above = np.asarray(camera.target) + [0.0, -0.1, 0.0]
    uv, _ = project_points(np.stack([np.asarray(camera.target), above]), T, K)
    assert uv[1, 1] < uv[0, 1]
    # The real camera (origin) is in front of the viewer and inside the image.
    origin_uv, ok = project_points(np.zeros((1, 3)), T, K)
    assert ok[0] and (0 <= origin_uv[0]).all() and (origin_uv[0] < 480).all()


def test_orbit_zoom_pan_change_the_view_as_a_user_expects() -> None:
    camera = OrbitCamera()
    turned = camera.orbited(50.0, 0.0)
    assert turned.yaw_deg == pytest.approx(camera.yaw_deg - 20.0) and turned.distance == camera.distance
    assert camera.orbited(0.0, 1e6).pitch_deg == 89.0
    assert camera.zoomed(1.0).distance == pytest.approx(camera.distance * 0.9)
    assert camera.zoomed(-1e3).distance == 20.0
    moved = camera.panned(10.0, 0.0, 480)
    shift = np.asarray(moved.target) - np.asarray(camera.target)
    forward = camera.extrinsic()[2, :3]
    assert abs(shift @ forward) < 1e-12 and np.linalg.norm(shift) > 0
    # The scene follows the drag: the old target now projects 10 pixels right of the centre.
    uv, _ = project_points(np.asarray([camera.target]), moved.extrinsic(), moved.intrinsic(480, 480))
    np.testing.assert_allclose(uv[0], [249.5, 239.5], atol=1e-6)


def test_frustum_and_grid_geometry() -> None:
    K = np.array([[500.0, 0, 319.5], [0, 500.0, 179.5], [0, 0, 1]])
    points, lines = frustum_lines(K, (640, 360), depth=0.1)
    np.testing.assert_allclose(points[0], 0.0)
    np.testing.assert_allclose(points[1:5, 2], 0.1)
    uv, _ = project_points(points[1:5], np.eye(4), K)
    np.testing.assert_allclose(uv, [[0, 0], [639, 0], [639, 359], [0, 359]], atol=1e-9)
    assert points[5, 1] < points[1, 1]  # the "up" tick sits above the image's top edge
    assert lines.max() == 5
    grid_points, grid_lines = ground_grid_lines(0.3, step=0.1)
    np.testing.assert_allclose(grid_points[:, 1], 0.3)
    assert grid_lines.shape[1] == 2 and grid_lines.max() == len(grid_points) - 1


@pytest.fixture(scope="module")
def renderer(xvfb_display: str):
    r = Open3DLegacyRenderer(width=320, height=240)
    yield r
    r.close()


def _hand(x: float) -> HandMesh:
    verts, joints, faces = hand_template()
    t = np.array([x, 0.05, 0.45], np.float32)
    return HandMesh(verts + t, faces, joints_cam=joints + t, label="right")


def test_open3d_renderer_draws_the_hand_where_the_viewer_camera_projects_it(renderer: Open3DLegacyRenderer) -> None:
    renderer.reset_view()
    renderer.set_options(SceneOptions(show_mesh=True, show_skeleton=False, show_labels=False))
    renderer.set_hands([_hand(0.0)])
    image = renderer.render()
    assert image.shape == (240, 320, 3) and image.dtype == np.uint8
    hand = _hand(0.0)
    uv, _ = project_points(hand.vertices_cam, renderer.camera.extrinsic(), renderer.camera.intrinsic(320, 240))
    u, v = np.round(np.median(uv, axis=0)).astype(int)
    background = np.round(np.asarray(BACKGROUND_RGB) * 255)
    patch = image[v - 2:v + 3, u - 2:u + 3].reshape(-1, 3).astype(float)
    assert np.abs(patch - background).sum(axis=1).min() > 60, "no mesh where the hand projects"
    renderer.set_hands([])
    empty = renderer.render()
    assert np.abs(empty[v - 2:v + 3, u - 2:u + 3].astype(float) - background).sum(axis=2).max() < 40


def test_open3d_image_changes_when_the_hand_moves_and_when_the_view_orbits(renderer: Open3DLegacyRenderer) -> None:
    renderer.reset_view()
    renderer.set_options(SceneOptions())
    renderer.set_hands([_hand(-0.08)])
    left = renderer.render().astype(int)
    renderer.set_hands([_hand(0.08)])
    right = renderer.render().astype(int)
    assert np.abs(left - right).sum(axis=2).astype(bool).mean() > 0.01
    renderer.orbit(60.0, 10.0)
    turned = renderer.render().astype(int)
    assert np.abs(turned - right).sum(axis=2).astype(bool).mean() > 0.02
    renderer.reset_view()
    np.testing.assert_array_equal(renderer.render(), right)


def test_open3d_renderer_resizes_and_runs_every_open3d_call_on_one_thread(xvfb_display: str) -> None:
    threads: set[int] = set()

    class Spy(Open3DLegacyRenderer):
        def _render_on_thread(self, snapshot):
            threads.add(threading.get_ident())
            return super()._render_on_thread(snapshot)

        def _close_on_thread(self) -> None:
            threads.add(threading.get_ident())
            super()._close_on_thread()

    spy = Spy(width=200, height=150)
    spy.set_hands([_hand(0.0)])
    futures = [spy.submit_render() for _ in range(3)]
    assert all(f.result().shape == (150, 200, 3) for f in futures)
    spy.resize(160, 120)
    assert spy.render().shape == (120, 160, 3)
    spy.close()
    spy.close()
    assert len(threads) == 1 and threading.get_ident() not in threads
    assert not any(t.ident in threads and t.is_alive() for t in threading.enumerate())


def test_closed_renderer_refuses_to_render() -> None:
    class Blank(ThreadedRenderer):
        def _render_on_thread(self, snapshot):
            return np.zeros((snapshot.size[1], snapshot.size[0], 3), np.uint8)

    blank = Blank(width=32, height=16)
    assert blank.render().shape == (16, 32, 3)
    blank.close()
    with pytest.raises(RuntimeError, match="closed"):
        blank.render()
    with pytest.raises(ValueError, match="at least 16x16"):
        blank.resize(8, 8)


def test_process_renderer_matches_the_in_process_renderer_and_exits_on_close(
    renderer: Open3DLegacyRenderer, xvfb_display: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.ui.renderer3d import Open3DProcessRenderer

    child = Open3DProcessRenderer(width=320, height=240, start_timeout_s=CHILD_PROCESS_TIMEOUT_S)
    # close() waits 5 s for the child to exit before terminating it; the child runs at a lower CPU
    # priority (nice 10), so on a loaded machine it can need longer. Whether it exits by itself (exit
    # code 0) must not depend on that budget: let close() wait as long as the child needs (bounded).
    real_join = child.process.join
    monkeypatch.setattr(child.process, "join",
                        lambda timeout=None: real_join(None if timeout is None else CHILD_PROCESS_TIMEOUT_S))
    try:
        for r in (renderer, child):
            r.reset_view()
            r.set_options(SceneOptions())
            r.set_hands([_hand(0.02)])
            r.orbit(15.0, -5.0)
        np.testing.assert_array_equal(child.render(), renderer.render())
    finally:
        child.close()
        renderer.reset_view()
    assert child.process.exitcode == 0
