"""The 3D panel: shows the image a :class:`~app.ui.renderer3d.SceneRenderer` renders, and turns mouse
input into view changes.

Mouse: left drag orbits, right or middle drag (or Shift + left drag) pans, the wheel zooms, a double
click or the reset button restores the default view. Rendering is asynchronous: a request while a
render is in flight only marks the view dirty, so at most one render is queued and the GUI thread
never waits for OpenGL.
"""
from __future__ import annotations

import logging
from concurrent.futures import Future
from typing import Sequence

import numpy as np
from PyQt6.QtCore import QPointF, QSize, Qt, QTimer, pyqtSignal
from PyQt6.QtGui import QColor, QImage, QMouseEvent, QResizeEvent, QWheelEvent
from PyQt6.QtWidgets import QToolButton, QWidget

from app.ui.renderer3d import HandMesh, RendererError, SceneOptions, SceneRenderer
from app.ui.video_panel import paint_fitted_image

LOG = logging.getLogger(__name__)

MAX_RENDER_SIDE = 560
"""Largest rendered side, pixels: bigger panels show the image scaled up (keeps a render near 15 ms on a 2-core CPU with Mesa llvmpipe)."""


class View3D(QWidget):
    """Qt widget showing the 3D scene.

    Args:
        renderer: the scene renderer (owned by the widget: closed by :meth:`shutdown`).

    Signals:
        rendered: a new image is shown (``frames_rendered`` went up).
    """

    rendered = pyqtSignal()
    _render_done = pyqtSignal(object)

    def __init__(self, renderer: SceneRenderer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.renderer = renderer
        self.setMinimumSize(240, 200)
        self.setMouseTracking(False)
        self.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self._image: np.ndarray | None = None
        self._qimage: QImage | None = None
        self._message = "3D view: waiting for the first frame"
        self._in_flight = False
        self._dirty = False
        self._closed = False
        self._drag_pos: QPointF | None = None
        self._drag_mode = ""
        self.frames_rendered = 0
        self._render_done.connect(self._on_render_done)
        self._resize_timer = QTimer(self)
        self._resize_timer.setSingleShot(True)
        self._resize_timer.setInterval(150)
        self._resize_timer.timeout.connect(self._apply_size)
        self.reset_button = QToolButton(self)
        self.reset_button.setText("Reset view")
        self.reset_button.setToolTip("Back to the default view (Home)")
        self.reset_button.clicked.connect(self.reset_view)

    # -- scene ------------------------------------------------------------------------------------

    @property
    def image(self) -> np.ndarray | None:
        """The last rendered ``(H, W, 3)`` uint8 RGB image (None before the first render)."""
        return self._image

    def is_idle(self) -> bool:
        """True when no render or resize is pending and the image shown matches the panel's size."""
        if self._in_flight or self._dirty or self._resize_timer.isActive() or self._image is None:
            return False
        return (self._image.shape[1], self._image.shape[0]) == self._target_size()

    def set_hands(self, hands: Sequence[HandMesh]) -> None:
        self.renderer.set_hands(hands)
        self.request_render()

    def set_camera_intrinsics(self, K: np.ndarray | None, image_size: tuple[int, int] | None) -> None:
        self.renderer.set_camera_intrinsics(K, image_size)
        self.request_render()

    def set_options(self, options: SceneOptions) -> None:
        self.renderer.set_options(options)
        self.request_render()

    def reset_view(self) -> None:
        self.renderer.reset_view()
        self.request_render()

    def orbit(self, dx: float, dy: float) -> None:
        self.renderer.orbit(dx, dy)
        self.request_render()

    def pan(self, dx: float, dy: float) -> None:
        self.renderer.pan(dx, dy)
        self.request_render()

    def zoom(self, steps: float) -> None:
        self.renderer.zoom(steps)
        self.request_render()

    # -- rendering --------------------------------------------------------------------------------

    def request_render(self) -> None:
        """Render soon; coalesces requests made while a render is in flight."""
        if self._closed:
            return
        if self._in_flight:
            self._dirty = True
            return
        try:
            future = self.renderer.submit_render()
        except RendererError as err:
            self._show_message(str(err))
            return
        self._in_flight = True
        self._dirty = False
        future.add_done_callback(self._render_done.emit)

    def _on_render_done(self, future: Future) -> None:
        self._in_flight = False
        if self._closed:
            return
        error = future.exception()
        if error is not None:
            LOG.error("3D render failed: %s", error)
            self._show_message(f"3D view unavailable: {error}")
            return
        image = np.ascontiguousarray(future.result())
        self._image = image
        height, width = image.shape[:2]
        self._qimage = QImage(image.data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()
        self.frames_rendered += 1
        self.update()
        self.rendered.emit()
        if self._dirty:
            self.request_render()

    def _show_message(self, text: str) -> None:
        self._message = text
        self._qimage = None
        self.update()

    def _target_size(self) -> tuple[int, int]:
        width, height = max(self.width(), 16), max(self.height(), 16)
        scale = min(1.0, MAX_RENDER_SIDE / max(width, height))
        return max(16, int(width * scale)), max(16, int(height * scale))

    def _apply_size(self) -> None:
        if self._closed:
            return
        size = self._target_size()
        if size != tuple(getattr(self.renderer, "size", (0, 0))):
            self.renderer.resize(*size)
            self.request_render()

    def shutdown(self) -> None:
        """Stop rendering and close the renderer (its thread and window)."""
        self._closed = True
        self._resize_timer.stop()
        self.renderer.close()

    # -- Qt events --------------------------------------------------------------------------------

    def sizeHint(self) -> QSize:
        return QSize(560, 480)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        hint = self.reset_button.sizeHint()
        self.reset_button.setGeometry(self.width() - hint.width() - 6, 6, hint.width(), hint.height())
        self._resize_timer.start()

    def paintEvent(self, event: object) -> None:
        paint_fitted_image(self, self._qimage, self._message, QColor(33, 36, 41))

    def mousePressEvent(self, event: QMouseEvent) -> None:
        button = event.button()
        shift = bool(event.modifiers() & Qt.KeyboardModifier.ShiftModifier)
        if button == Qt.MouseButton.LeftButton:
            self._drag_mode = "pan" if shift else "orbit"
        elif button in (Qt.MouseButton.RightButton, Qt.MouseButton.MiddleButton):
            self._drag_mode = "pan"
        else:
            return
        self._drag_pos = event.position()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._drag_pos is None:
            return
        pos = event.position()
        scale = self._render_scale()
        dx, dy = (pos.x() - self._drag_pos.x()) * scale, (pos.y() - self._drag_pos.y()) * scale
        self._drag_pos = pos
        if self._drag_mode == "orbit":
            self.orbit(dx, dy)
        else:
            self.pan(dx, dy)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        self._drag_pos = None
        self._drag_mode = ""

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        self.reset_view()

    def wheelEvent(self, event: QWheelEvent) -> None:
        self.zoom(event.angleDelta().y() / 120.0)

    def _render_scale(self) -> float:
        """Rendered pixels per widget pixel (drags reach the renderer in rendered pixels)."""
        if self._image is None:
            return 1.0
        height, width = self._image.shape[:2]
        shown = min(self.width() / width, self.height() / height)
        return 1.0 / shown if shown > 0 else 1.0
