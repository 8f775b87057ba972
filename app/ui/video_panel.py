"""The video panel: shows the latest annotated frame (BGR numpy image) scaled to fit, aspect kept."""
from __future__ import annotations

import numpy as np
from PyQt6.QtCore import QSize, Qt
from PyQt6.QtGui import QColor, QImage, QPainter
from PyQt6.QtWidgets import QWidget


def bgr_to_qimage(bgr: np.ndarray) -> QImage:
    """A deep-copied ``QImage`` of an ``(H, W, 3)`` uint8 BGR image."""
    image = np.ascontiguousarray(bgr)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 BGR image, got {image.shape} {image.dtype}")
    height, width = image.shape[:2]
    return QImage(image.data, width, height, 3 * width, QImage.Format.Format_BGR888).copy()


class VideoPanel(QWidget):
    """Paints the last frame given to :meth:`show_frame`, or a message when there is none."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumSize(320, 200)
        self._qimage: QImage | None = None
        self._message = "No video yet"
        self.frames_shown = 0

    def show_frame(self, bgr: np.ndarray) -> None:
        """Show an ``(H, W, 3)`` uint8 BGR frame."""
        self._qimage = bgr_to_qimage(bgr)
        self.frames_shown += 1
        self.update()

    def show_message(self, text: str) -> None:
        """Replace the picture by a message (e.g. while a source opens)."""
        self._qimage = None
        self._message = text
        self.update()

    def sizeHint(self) -> QSize:
        return QSize(640, 480)

    def paintEvent(self, event: object) -> None:
        paint_fitted_image(self, self._qimage, self._message, QColor(16, 16, 18))


def paint_fitted_image(widget: QWidget, image: QImage | None, message: str, background: QColor) -> None:
    """Paint ``image`` centred in ``widget`` at the largest size that keeps its aspect ratio, on
    ``background``; without an image, paint ``message`` centred instead."""
    painter = QPainter(widget)
    painter.fillRect(widget.rect(), background)
    if image is not None:
        scaled = image.size().scaled(widget.size(), Qt.AspectRatioMode.KeepAspectRatio)
        x = (widget.width() - scaled.width()) // 2
        y = (widget.height() - scaled.height()) // 2
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        painter.drawImage(widget.rect().adjusted(x, y, -x, -y), image)
    else:
        painter.setPen(QColor(220, 220, 220))
        painter.drawText(widget.rect(), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, message)
    painter.end()
