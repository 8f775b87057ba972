"""The 3D scene behind the 3D panel: hands in the real camera's space, rendered to an RGB image.

Open3D cannot be embedded in a Qt widget, so the scene is rendered off-screen to an image that the
panel shows (see DESIGN.md, measured facts). :class:`SceneRenderer` is the small interface the panel
uses; :class:`Open3DLegacyRenderer` implements it with Open3D's legacy ``Visualizer`` and a hidden
window (about 20 ms per 480x480 frame under Xvfb/Mesa on a 2-core CPU; Filament's
``OffscreenRenderer`` took 13-16 s per frame on the same machine).

Scene frame: the real camera's frame (OpenCV convention), metres: x right, y down, z forward. The
camera sits at the origin; its frustum is drawn so the user sees the hands in front of it, and a
ground grid lies on the plane ``y = ground_y`` (below the camera, since y points down).

Threading: Open3D's legacy visualizer owns an OpenGL context that must be used from one thread only.
Every Open3D call of a renderer runs on that renderer's own dedicated thread
(:class:`ThreadedRenderer`); the public methods only store state under a lock, and
:meth:`SceneRenderer.submit_render` returns a future, so the GUI thread never blocks on OpenGL.
"""
from __future__ import annotations

import math
import multiprocessing
import os
import multiprocessing.process
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from typing import Protocol, Sequence

import cv2
import numpy as np

from app.detection import HAND_CONNECTIONS

RIGHT_HAND_RGB: tuple[float, float, float] = (0.93, 0.62, 0.42)
"""Mesh colour of right hands (RGB in [0, 1])."""
LEFT_HAND_RGB: tuple[float, float, float] = (0.45, 0.68, 0.95)
"""Mesh colour of left hands (RGB in [0, 1])."""
BACKGROUND_RGB: tuple[float, float, float] = (0.13, 0.14, 0.16)


class RendererError(RuntimeError):
    """The 3D renderer could not start (no display for the hidden window, OpenGL unavailable)."""


@dataclass(frozen=True)
class HandMesh:
    """One hand to draw.

    Attributes:
        vertices_cam: ``(V, 3)`` float32 mesh vertices in the real camera's frame, metres.
        faces: ``(F, 3)`` int triangle indices into ``vertices_cam``, outward counter-clockwise winding.
        colour_rgb: mesh colour, RGB in [0, 1].
        joints_cam: optional ``(21, 3)`` float32 joints (MediaPipe order), metres, for the skeleton.
        label: optional text drawn next to the wrist (e.g. ``"right 0.48 m"``).
    """

    vertices_cam: np.ndarray
    faces: np.ndarray
    colour_rgb: tuple[float, float, float] = RIGHT_HAND_RGB
    joints_cam: np.ndarray | None = None
    label: str = ""


@dataclass(frozen=True)
class SceneOptions:
    """What the scene shows: mesh surfaces, the skeleton (drawn on top), the per-hand labels."""

    show_mesh: bool = True
    show_skeleton: bool = True
    show_labels: bool = True


@dataclass(frozen=True)
class OrbitCamera:
    """The viewer's camera orbiting a target point of the scene (camera-space metres).

    ``yaw`` turns about the scene's up axis (-y), ``pitch`` raises the eye above the target; at
    ``yaw = pitch = 0`` the viewer stands behind the target on the real camera's optical axis and looks
    forward (+z), as the real camera does.

    Attributes:
        target: ``(3,)`` the point looked at, metres.
        yaw_deg, pitch_deg: orbit angles, degrees (pitch clamped to (-89, 89)).
        distance: eye-to-target distance, metres (clamped to [0.05, 20]).
        fov_deg: vertical field of view of the viewer, degrees.
    """

    target: tuple[float, float, float] = (0.0, 0.0, 0.32)
    yaw_deg: float = -32.0
    pitch_deg: float = 18.0
    distance: float = 0.75
    fov_deg: float = 45.0

    def eye(self) -> np.ndarray:
        """``(3,)`` float64 eye position, metres."""
        yaw, pitch = math.radians(self.yaw_deg), math.radians(self.pitch_deg)
        offset = np.array(
            [math.sin(yaw) * math.cos(pitch), -math.sin(pitch), -math.cos(yaw) * math.cos(pitch)]
        )
        return np.asarray(self.target, dtype=np.float64) + self.distance * offset

    def extrinsic(self) -> np.ndarray:
        """``(4, 4)`` float64 scene-to-viewer transform; the viewer frame is OpenCV's (x right, y down, z forward)."""
        eye = self.eye()
        forward = np.asarray(self.target, dtype=np.float64) - eye
        forward /= np.linalg.norm(forward)
        up = np.array([0.0, -1.0, 0.0])
        right = np.cross(forward, up)
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)
        T = np.eye(4)
        T[:3, :3] = np.stack([right, down, forward])
        T[:3, 3] = -T[:3, :3] @ eye
        return T

    def intrinsic(self, width: int, height: int) -> np.ndarray:
        """``(3, 3)`` float64 pinhole matrix of the viewer for a ``width`` x ``height`` image, pixels."""
        f = 0.5 * height / math.tan(math.radians(self.fov_deg) / 2.0)
        return np.array([[f, 0.0, width / 2.0 - 0.5], [0.0, f, height / 2.0 - 0.5], [0.0, 0.0, 1.0]])

    def orbited(self, dx_px: float, dy_px: float, deg_per_px: float = 0.4) -> "OrbitCamera":
        """Orbit by a mouse drag of ``(dx_px, dy_px)`` pixels (right drag turns the scene right)."""
        pitch = float(np.clip(self.pitch_deg + dy_px * deg_per_px, -89.0, 89.0))
        return replace(self, yaw_deg=self.yaw_deg - dx_px * deg_per_px, pitch_deg=pitch)

    def zoomed(self, steps: float) -> "OrbitCamera":
        """Move closer by ``steps`` wheel notches (negative: farther); each notch scales distance by 0.9."""
        return replace(self, distance=float(np.clip(self.distance * 0.9**steps, 0.05, 20.0)))

    def panned(self, dx_px: float, dy_px: float, height_px: int) -> "OrbitCamera":
        """Slide the target with the view plane so the scene follows a drag of ``(dx_px, dy_px)`` pixels."""
        metres_per_px = 2.0 * self.distance * math.tan(math.radians(self.fov_deg) / 2.0) / max(height_px, 1)
        R = self.extrinsic()[:3, :3]
        shift = -(dx_px * R[0] + dy_px * R[1]) * metres_per_px
        target = np.asarray(self.target, dtype=np.float64) + shift
        return replace(self, target=(float(target[0]), float(target[1]), float(target[2])))


def project_points(points: np.ndarray, extrinsic: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project scene points into the viewer image.

    Args:
        points: ``(N, 3)`` scene points, metres.
        extrinsic: ``(4, 4)`` scene-to-viewer transform.
        K: ``(3, 3)`` viewer intrinsics, pixels.

    Returns:
        ``(N, 2)`` float64 pixel coordinates and ``(N,)`` bool mask of points in front of the viewer.
    """
    p = np.asarray(points, dtype=np.float64) @ extrinsic[:3, :3].T + extrinsic[:3, 3]
    in_front = p[:, 2] > 1e-3
    z = np.where(in_front, p[:, 2], 1.0)
    uv = (p[:, :2] / z[:, None]) @ K[:2, :2].T + K[:2, 2]
    return uv, in_front


def frustum_lines(K: np.ndarray | None, image_size: tuple[int, int] | None, depth: float = 0.12) -> tuple[np.ndarray, np.ndarray]:
    """The real camera drawn as a pyramid at the origin looking along +z.

    Args:
        K: ``(3, 3)`` real intrinsics, pixels (``None``: a 60 degree 4:3 camera).
        image_size: ``(width, height)`` of the images ``K`` describes.
        depth: pyramid depth, metres.

    Returns:
        ``(6, 3)`` float64 points (apex, four corners, the "up" tick above the top edge) and
        ``(10, 2)`` int32 line indices.
    """
    if K is None or image_size is None:
        width, height = 640, 480
        f = 0.5 * width / math.tan(math.radians(30.0))
        K = np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])
    else:
        width, height = image_size
    Kinv = np.linalg.inv(np.asarray(K, dtype=np.float64))
    corners_px = np.array([[0.0, 0.0, 1.0], [width - 1.0, 0.0, 1.0], [width - 1.0, height - 1.0, 1.0], [0.0, height - 1.0, 1.0]])
    corners = (corners_px @ Kinv.T) * depth
    up_tick = 0.5 * (corners[0] + corners[1]) + np.array([0.0, -0.25 * abs(corners[0, 1] - corners[3, 1]), 0.0])
    points = np.vstack([np.zeros((1, 3)), corners, up_tick[None]])
    lines = np.array(
        [[0, 1], [0, 2], [0, 3], [0, 4], [1, 2], [2, 3], [3, 4], [4, 1], [1, 5], [2, 5]], dtype=np.int32
    )
    return points, lines


def ground_grid_lines(
    ground_y: float = 0.3, half_width: float = 0.6, z_range: tuple[float, float] = (0.0, 1.4), step: float = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    """A grid on the plane ``y = ground_y`` (metres below the camera), ``step`` metres apart.

    Returns:
        ``(N, 3)`` float64 points and ``(M, 2)`` int32 line indices.
    """
    xs = np.arange(-half_width, half_width + 1e-9, step)
    zs = np.arange(z_range[0], z_range[1] + 1e-9, step)
    points: list[list[float]] = []
    for x in xs:
        points += [[x, ground_y, zs[0]], [x, ground_y, zs[-1]]]
    for z in zs:
        points += [[xs[0], ground_y, z], [xs[-1], ground_y, z]]
    lines = np.arange(len(points), dtype=np.int32).reshape(-1, 2)
    return np.asarray(points, dtype=np.float64), lines


class SceneRenderer(Protocol):
    """What the 3D panel needs from a renderer. Implementations are thread-safe: state setters may be
    called from any thread and rendering happens wherever the implementation decides."""

    def set_hands(self, hands: Sequence[HandMesh]) -> None:
        """Replace the hands in the scene."""

    def set_camera_intrinsics(self, K: np.ndarray | None, image_size: tuple[int, int] | None) -> None:
        """Shape of the drawn camera frustum (``K`` ``(3, 3)`` pixels for ``image_size`` ``(width, height)``)."""

    def set_options(self, options: SceneOptions) -> None:
        """What to show (mesh, skeleton, labels)."""

    def orbit(self, dx: float, dy: float) -> None:
        """Orbit the view by a mouse drag of ``(dx, dy)`` pixels."""

    def zoom(self, delta: float) -> None:
        """Zoom by ``delta`` wheel notches (positive: closer)."""

    def pan(self, dx: float, dy: float) -> None:
        """Pan the view by a mouse drag of ``(dx, dy)`` pixels."""

    def reset_view(self) -> None:
        """Back to the default view."""

    def resize(self, width: int, height: int) -> None:
        """Size of the rendered image, pixels."""

    def render(self) -> np.ndarray:
        """The current scene as an ``(H, W, 3)`` uint8 RGB image (blocks until rendered)."""

    def submit_render(self) -> "Future[np.ndarray]":
        """Render asynchronously; the future holds the ``(H, W, 3)`` uint8 RGB image."""

    def close(self) -> None:
        """Release the renderer's window and thread. Safe to call twice."""


@dataclass(frozen=True)
class _Snapshot:
    """Everything one render needs, copied under the lock so the render thread sees a consistent scene."""

    hands: tuple[HandMesh, ...]
    hands_version: int
    options: SceneOptions
    camera: OrbitCamera
    size: tuple[int, int]
    frustum: tuple[np.ndarray, np.ndarray]
    frustum_version: int


@dataclass
class _State:
    hands: tuple[HandMesh, ...] = ()
    hands_version: int = 0
    options: SceneOptions = SceneOptions()
    camera: OrbitCamera = OrbitCamera()
    size: tuple[int, int] = (480, 480)
    frustum: tuple[np.ndarray, np.ndarray] = field(default_factory=lambda: frustum_lines(None, None))
    frustum_version: int = 0


class ThreadedRenderer:
    """Scene state plus one dedicated render thread; subclasses implement :meth:`_render_on_thread`
    (and :meth:`_close_on_thread`), which only ever run on that thread."""

    def __init__(self, *, width: int = 480, height: int = 480, camera: OrbitCamera | None = None) -> None:
        self._lock = threading.Lock()
        self._home = camera or OrbitCamera()
        self._state = _State(camera=self._home, size=(int(width), int(height)))
        self._executor: ThreadPoolExecutor | None = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scene-render")

    def set_hands(self, hands: Sequence[HandMesh]) -> None:
        with self._lock:
            self._state.hands = tuple(hands)
            self._state.hands_version += 1

    def set_camera_intrinsics(self, K: np.ndarray | None, image_size: tuple[int, int] | None) -> None:
        frustum = frustum_lines(K, image_size)
        with self._lock:
            self._state.frustum = frustum
            self._state.frustum_version += 1

    def set_options(self, options: SceneOptions) -> None:
        with self._lock:
            self._state.options = options

    @property
    def camera(self) -> OrbitCamera:
        """The current viewer camera."""
        with self._lock:
            return self._state.camera

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of the rendered image, pixels."""
        with self._lock:
            return self._state.size

    def orbit(self, dx: float, dy: float) -> None:
        with self._lock:
            self._state.camera = self._state.camera.orbited(dx, dy)

    def zoom(self, delta: float) -> None:
        with self._lock:
            self._state.camera = self._state.camera.zoomed(delta)

    def pan(self, dx: float, dy: float) -> None:
        with self._lock:
            self._state.camera = self._state.camera.panned(dx, dy, self._state.size[1])

    def reset_view(self) -> None:
        with self._lock:
            self._state.camera = self._home

    def resize(self, width: int, height: int) -> None:
        if width < 16 or height < 16:
            raise ValueError(f"render size must be at least 16x16 pixels, got {width}x{height}")
        with self._lock:
            self._state.size = (int(width), int(height))

    def _snapshot(self) -> _Snapshot:
        with self._lock:
            s = self._state
            return _Snapshot(s.hands, s.hands_version, s.options, s.camera, s.size, s.frustum, s.frustum_version)

    def submit_render(self) -> "Future[np.ndarray]":
        if self._executor is None:
            raise RendererError("the renderer is closed")
        snapshot = self._snapshot()
        return self._executor.submit(self._render_on_thread, snapshot)

    def render(self) -> np.ndarray:
        return self.submit_render().result()

    def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        executor.submit(self._close_on_thread)
        executor.shutdown(wait=True)

    def _render_on_thread(self, snapshot: _Snapshot) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _close_on_thread(self) -> None:
        """Release thread-bound resources (runs on the render thread)."""


def draw_skeleton_overlay(
    image_rgb: np.ndarray, hands: Sequence[HandMesh], camera: OrbitCamera, options: SceneOptions
) -> None:
    """Draw each hand's 3D skeleton (projected with the viewer camera, always on top) and its label
    onto ``image_rgb`` (``(H, W, 3)`` uint8 RGB, modified in place)."""
    height, width = image_rgb.shape[:2]
    extrinsic, K = camera.extrinsic(), camera.intrinsic(width, height)
    for hand in hands:
        if hand.joints_cam is None:
            continue
        uv, ok = project_points(hand.joints_cam, extrinsic, K)
        if options.show_skeleton:
            pts = np.round(uv * 16).astype(np.int64)
            for a, b in HAND_CONNECTIONS:
                if ok[a] and ok[b]:
                    cv2.line(image_rgb, tuple(pts[a]), tuple(pts[b]), (255, 255, 255), 2, cv2.LINE_AA, shift=4)
            for j in range(len(uv)):
                if ok[j]:
                    colour = (255, 60, 60) if j == 0 else (40, 200, 90)
                    cv2.circle(image_rgb, tuple(pts[j]), 3 * 16, colour, -1, cv2.LINE_AA, shift=4)
        if options.show_labels and hand.label and ok[0]:
            org = (int(uv[0, 0]) + 8, int(uv[0, 1]) + 18)
            cv2.putText(image_rgb, hand.label, org, cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(image_rgb, hand.label, org, cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)


def draw_camera_label(image_rgb: np.ndarray, camera: OrbitCamera) -> None:
    """Write "camera" next to the real camera's centre (the scene origin) on ``image_rgb`` (RGB, in place)."""
    height, width = image_rgb.shape[:2]
    uv, ok = project_points(np.zeros((1, 3)), camera.extrinsic(), camera.intrinsic(width, height))
    if ok[0] and -50 < uv[0, 0] < width and 0 < uv[0, 1] < height + 20:
        org = (min(int(uv[0, 0]) - 25, width - 60), min(int(uv[0, 1]) + 18, height - 6))
        cv2.putText(image_rgb, "camera", org, cv2.FONT_HERSHEY_SIMPLEX, 0.45, (250, 218, 64), 1, cv2.LINE_AA)


class Open3DLegacyRenderer(ThreadedRenderer):
    """:class:`SceneRenderer` on Open3D's legacy ``Visualizer`` with a hidden window.

    Needs an X display (a desktop session or Xvfb); the window is created on the render thread at the
    first render and re-created when the size changes. The viewer camera is set from
    :class:`OrbitCamera` on every frame, so the rendered view and :func:`project_points` agree exactly.

    Raises:
        RendererError: (from :meth:`render`) when the hidden window cannot be created.
    """

    def __init__(
        self,
        *,
        width: int = 480,
        height: int = 480,
        camera: OrbitCamera | None = None,
        ground_y: float = 0.3,
    ) -> None:
        super().__init__(width=width, height=height, camera=camera)
        self._ground_y = float(ground_y)
        self._vis: object | None = None
        self._window_size: tuple[int, int] | None = None
        self._hands_mesh: object | None = None
        self._hands_in_scene = False
        self._frustum_set: object | None = None
        self._seen_hands_version = -1
        self._seen_frustum_version = -1

    def _open_window(self, size: tuple[int, int]) -> None:
        import open3d as o3d

        self._close_on_thread()
        vis = o3d.visualization.Visualizer()
        if not vis.create_window(window_name="hand-scene", width=size[0], height=size[1], visible=False):
            raise RendererError(
                "Open3D could not create its hidden OpenGL window. Run the app in a desktop session or "
                "under Xvfb (`xvfb-run -s '-screen 0 1920x1080x24' python run_demo.py`), and install "
                "libgl1 and libegl1."
            )
        option = vis.get_render_option()
        option.background_color = np.asarray(BACKGROUND_RGB)
        option.mesh_show_back_face = True
        option.light_on = True
        grid_points, grid_lines = ground_grid_lines(self._ground_y)
        grid = o3d.geometry.LineSet(o3d.utility.Vector3dVector(grid_points), o3d.utility.Vector2iVector(grid_lines))
        grid.paint_uniform_color((0.36, 0.38, 0.42))
        vis.add_geometry(grid)
        self._frustum_set = o3d.geometry.LineSet()
        self._hands_mesh = o3d.geometry.TriangleMesh()
        self._vis = vis
        self._window_size = size
        self._hands_in_scene = False
        self._seen_hands_version = -1
        self._seen_frustum_version = -1
        control = vis.get_view_control()
        control.set_constant_z_near(0.01)
        control.set_constant_z_far(100.0)

    def _update_frustum(self, snapshot: _Snapshot) -> None:
        import open3d as o3d

        points, lines = snapshot.frustum
        first = self._seen_frustum_version < 0
        frustum = self._frustum_set
        assert isinstance(frustum, o3d.geometry.LineSet)
        frustum.points = o3d.utility.Vector3dVector(points)
        frustum.lines = o3d.utility.Vector2iVector(lines)
        frustum.paint_uniform_color((0.98, 0.85, 0.25))
        if first:
            self._vis.add_geometry(frustum, reset_bounding_box=False)  # type: ignore[attr-defined]
        else:
            self._vis.update_geometry(frustum)  # type: ignore[attr-defined]
        self._seen_frustum_version = snapshot.frustum_version

    def _update_hands(self, snapshot: _Snapshot) -> None:
        import open3d as o3d

        mesh = self._hands_mesh
        assert isinstance(mesh, o3d.geometry.TriangleMesh)
        hands = snapshot.hands if snapshot.options.show_mesh else ()
        hands = tuple(h for h in hands if len(h.vertices_cam) and len(h.faces))
        if not hands:
            if self._hands_in_scene:
                self._vis.remove_geometry(mesh, reset_bounding_box=False)  # type: ignore[attr-defined]
                self._hands_in_scene = False
            self._seen_hands_version = snapshot.hands_version
            return
        vertices, faces, colours, offset = [], [], [], 0
        for hand in hands:
            v = np.asarray(hand.vertices_cam, dtype=np.float64).reshape(-1, 3)
            vertices.append(v)
            faces.append(np.asarray(hand.faces, dtype=np.int32).reshape(-1, 3) + offset)
            colours.append(np.broadcast_to(np.asarray(hand.colour_rgb, dtype=np.float64), v.shape))
            offset += len(v)
        mesh.vertices = o3d.utility.Vector3dVector(np.concatenate(vertices))
        mesh.triangles = o3d.utility.Vector3iVector(np.concatenate(faces))
        mesh.vertex_colors = o3d.utility.Vector3dVector(np.concatenate(colours))
        mesh.compute_vertex_normals()
        if self._hands_in_scene:
            self._vis.update_geometry(mesh)  # type: ignore[attr-defined]
        else:
            self._vis.add_geometry(mesh, reset_bounding_box=False)  # type: ignore[attr-defined]
            self._hands_in_scene = True
        self._seen_hands_version = snapshot.hands_version

    def _render_on_thread(self, snapshot: _Snapshot) -> np.ndarray:
        import open3d as o3d

        if self._vis is None or self._window_size != snapshot.size:
            self._open_window(snapshot.size)
        vis = self._vis
        assert isinstance(vis, o3d.visualization.Visualizer)
        if snapshot.frustum_version != self._seen_frustum_version:
            self._update_frustum(snapshot)
        self._update_hands(snapshot)
        width, height = snapshot.size
        params = o3d.camera.PinholeCameraParameters()
        params.intrinsic = o3d.camera.PinholeCameraIntrinsic(width, height, snapshot.camera.intrinsic(width, height))
        params.extrinsic = snapshot.camera.extrinsic()
        vis.get_view_control().convert_from_pinhole_camera_parameters(params, allow_arbitrary=True)
        # One render per frame: capture with do_render=True draws the scene itself (a separate
        # update_renderer() call would render it twice).
        buffer = np.asarray(vis.capture_screen_float_buffer(do_render=True))
        image = np.ascontiguousarray((np.clip(buffer, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))
        draw_camera_label(image, snapshot.camera)
        draw_skeleton_overlay(image, snapshot.hands, snapshot.camera, snapshot.options)
        return image

    def _close_on_thread(self) -> None:
        vis, self._vis = self._vis, None
        if vis is not None:
            vis.destroy_window()  # type: ignore[attr-defined]
        self._window_size = None


def _serve_renderer(conn: Connection, ground_y: float, nice: int) -> None:
    """Body of the renderer process: render every snapshot received on ``conn`` until ``None``.

    All Open3D calls happen on this process's main thread. ``nice`` lowers the process's CPU priority
    (POSIX only) so that, on a machine short of cores, inference gets the CPU first and the 3D view
    updates with what is left.
    """
    if nice > 0 and hasattr(os, "nice"):
        os.nice(nice)
    renderer = Open3DLegacyRenderer(ground_y=ground_y)
    try:
        while True:
            snapshot = conn.recv()
            if snapshot is None:
                break
            try:
                conn.send(renderer._render_on_thread(snapshot))
            except RendererError as err:
                conn.send(err)
    except (EOFError, KeyboardInterrupt):
        pass
    finally:
        renderer._close_on_thread()
        conn.close()


class Open3DProcessRenderer(ThreadedRenderer):
    """:class:`Open3DLegacyRenderer` in a child process (the default of the app).

    Open3D's Python bindings hold the GIL while they render (measured here: a 30 ms render stalls
    every other Python thread for 30 ms), which serialises rendering with the inference and drawing
    threads. A child process has its own interpreter: its renders overlap the pipeline on another core.
    The render thread of :class:`ThreadedRenderer` only ships snapshots (about 60 kB per hand) and
    receives images through a pipe, waiting without the GIL. The process runs at a lower CPU priority
    (``nice``, default 10): on a 2-core CPU the pipeline's frame rate comes first, the 3D view takes
    the remaining CPU.

    Raises:
        RendererError: (from :meth:`render`) when the process cannot create its window or dies.
    """

    def __init__(
        self,
        *,
        width: int = 480,
        height: int = 480,
        camera: OrbitCamera | None = None,
        ground_y: float = 0.3,
        nice: int = 10,
        start_timeout_s: float = 60.0,
    ) -> None:
        super().__init__(width=width, height=height, camera=camera)
        context = multiprocessing.get_context("spawn")  # never fork a process that runs Qt and threads
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_serve_renderer, args=(child, float(ground_y), int(nice)), name="open3d-renderer", daemon=True
        )
        self._process.start()
        child.close()
        self._timeout = float(start_timeout_s)

    def _render_on_thread(self, snapshot: _Snapshot) -> np.ndarray:
        try:
            self._conn.send(snapshot)
            if not self._conn.poll(self._timeout):
                raise RendererError(f"the 3D renderer process did not answer within {self._timeout:.0f} s")
            reply = self._conn.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError) as err:
            raise RendererError(
                f"the 3D renderer process stopped (exit code {self._process.exitcode}); run the app in a desktop "
                "session or under Xvfb, with libgl1 and libegl1 installed"
            ) from err
        if isinstance(reply, RendererError):
            raise reply
        return reply

    def _close_on_thread(self) -> None:
        try:
            self._conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self._process.join(5.0)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(2.0)
        self._conn.close()

    @property
    def process(self) -> multiprocessing.process.BaseProcess:
        """The child process (for tests and diagnostics)."""
        return self._process
