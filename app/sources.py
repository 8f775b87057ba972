"""Frame sources behind one interface: camera, video file, image folder, in-memory frames.

Every source yields :class:`Frame` objects whose image is a C-contiguous ``uint8`` array of shape
``(H, W, 3)`` in **BGR** order (OpenCV's convention), whatever the input was: grayscale, BGRA and
16-bit images are converted on the way in. ``Frame.t`` is in seconds (capture time for a camera,
presentation time for a file), ``Frame.index`` counts frames from 0.

``read()`` returns ``None`` at the end of a finite source; iterating a source yields frames until
then. Sources are context managers and release the device or file on ``close()``.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol, Sequence, runtime_checkable

import cv2
import numpy as np

from models.paths import ASSETS_DIR

LOG = logging.getLogger(__name__)

SAMPLE_CLIP_PATH: Path = ASSETS_DIR / "sample_clip.mp4"
IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)


class SourceError(RuntimeError):
    """Base class of every error raised by a frame source."""


class SourceNotFoundError(SourceError, FileNotFoundError):
    """A video file or image folder does not exist."""


class CameraOpenError(SourceError):
    """A camera could not be opened."""


class CameraLostError(SourceError):
    """An opened camera stopped delivering frames (unplugged, taken by another program)."""


class VideoOpenError(SourceError):
    """A video file exists but cannot be decoded (corrupt, truncated index, unsupported codec)."""


class EmptyFolderError(SourceError):
    """An image folder holds no readable image."""


@dataclass(frozen=True)
class Frame:
    """One video frame.

    Attributes:
        bgr: ``(H, W, 3)`` uint8, BGR colour order, C-contiguous.
        t: time stamp in seconds (monotonic for cameras, presentation time for files).
        index: 0-based frame counter within the source.
    """

    bgr: np.ndarray
    t: float
    index: int

    @property
    def width(self) -> int:
        return int(self.bgr.shape[1])

    @property
    def height(self) -> int:
        return int(self.bgr.shape[0])


def to_bgr_uint8(image: np.ndarray) -> np.ndarray:
    """Convert any OpenCV-style image to a contiguous ``(H, W, 3)`` uint8 BGR array.

    Accepts ``(H, W)`` or ``(H, W, 1)`` grayscale, ``(H, W, 3)`` BGR, ``(H, W, 4)`` BGRA; uint8,
    uint16 (scaled by 1/257) or float in [0, 1]. Odd sizes (including 1x1) are kept as they are.

    Raises:
        ValueError: for an empty image or an unsupported shape/dtype.
    """
    arr = np.asarray(image)
    if arr.size == 0 or arr.ndim not in (2, 3):
        raise ValueError(f"expected an (H, W) or (H, W, C) image, got shape {arr.shape}")
    if arr.dtype == np.uint16:
        arr = (arr.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.floating):
        arr = (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    elif arr.dtype != np.uint8:
        raise ValueError(f"unsupported image dtype {arr.dtype}; use uint8, uint16 or float in [0, 1]")
    if arr.ndim == 2 or arr.shape[2] == 1:
        arr = cv2.cvtColor(arr.reshape(arr.shape[0], arr.shape[1]), cv2.COLOR_GRAY2BGR)
    elif arr.shape[2] == 4:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2BGR)
    elif arr.shape[2] != 3:
        raise ValueError(f"unsupported channel count {arr.shape[2]}; expected 1, 3 or 4")
    return np.ascontiguousarray(arr)


@runtime_checkable
class FrameSource(Protocol):
    """What the pipeline, the recorder and the UI need from a source of frames."""

    name: str
    is_live: bool

    @property
    def fps(self) -> float:
        """Nominal frames per second (requested/reported by the device or file; > 0)."""

    def read(self) -> Frame | None:
        """Next frame, or ``None`` when a finite source is exhausted."""

    def close(self) -> None:
        """Release the device or file. Safe to call twice."""

    def __iter__(self) -> Iterator[Frame]: ...

    def __enter__(self) -> "FrameSource": ...

    def __exit__(self, *exc: object) -> None: ...


class _SourceBase:
    """Iteration and context-manager plumbing shared by the concrete sources."""

    name: str = "source"
    is_live: bool = False

    def read(self) -> Frame | None:  # pragma: no cover - overridden
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __iter__(self) -> Iterator[Frame]:
        while True:
            frame = self.read()
            if frame is None:
                return
            yield frame

    def __enter__(self) -> "_SourceBase":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class CameraSource(_SourceBase):
    """A live camera through OpenCV's ``VideoCapture``.

    Args:
        index: device index (0 = first camera).
        width, height: requested resolution in pixels (the driver may pick the closest it supports;
            the delivered size is in ``Frame.bgr.shape``).
        fps: requested frame rate.
        read_retries: consecutive failed grabs tolerated before :class:`CameraLostError`.

    Raises:
        CameraOpenError: when the device cannot be opened or delivers no first frame.
    """

    is_live = True

    def __init__(
        self,
        index: int = 0,
        *,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        read_retries: int = 10,
    ) -> None:
        self.index = int(index)
        self.name = f"camera:{self.index}"
        self._read_retries = int(read_retries)
        self._cap = cv2.VideoCapture(self.index)
        if not self._cap.isOpened():
            self._cap.release()
            raise CameraOpenError(
                f"Camera {self.index} could not be opened. Check that a camera is connected and that "
                f"no other program is using it, that this user may access /dev/video{self.index} "
                "(Linux: add yourself to the 'video' group), or try another index "
                "(--source 1) or a video file (--source clip.mp4)."
            )
        if width is not None:
            self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, float(width))
        if height is not None:
            self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, float(height))
        if fps is not None:
            self._cap.set(cv2.CAP_PROP_FPS, float(fps))
        reported = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self._fps = reported if reported > 0 else float(fps or 30.0)
        self._t0 = time.monotonic()
        self._count = 0
        self._pending: Frame | None = self._grab()
        if self._pending is None:
            self._cap.release()
            raise CameraOpenError(
                f"Camera {self.index} opened but delivered no frame. It may be in use by another "
                "program, or the requested resolution/fps is unsupported: try without --width/--height/--fps."
            )

    @property
    def fps(self) -> float:
        return self._fps

    def _grab(self) -> Frame | None:
        for _ in range(max(1, self._read_retries)):
            ok, image = self._cap.read()
            if ok and image is not None and image.size > 0:
                frame = Frame(bgr=to_bgr_uint8(image), t=time.monotonic() - self._t0, index=self._count)
                self._count += 1
                return frame
        return None

    def read(self) -> Frame:
        """Next frame. Raises :class:`CameraLostError` when the camera stops delivering."""
        if self._pending is not None:
            frame, self._pending = self._pending, None
            return frame
        if not self._cap.isOpened():
            raise CameraLostError(f"Camera {self.index} is closed; reopen it with CameraSource({self.index}).")
        frame = self._grab()
        if frame is None:
            raise CameraLostError(
                f"Camera {self.index} stopped delivering frames (unplugged or taken by another program); "
                "reopen it or choose another source."
            )
        return frame

    def close(self) -> None:
        self._cap.release()


class VideoFileSource(_SourceBase):
    """Frames of a video file decoded by OpenCV (FFmpeg).

    A truncated file yields the frames it still holds and then ends. ``frame_count`` is the count
    the container claims, which may exceed what a truncated file delivers.

    Args:
        path: video file.
        loop: restart at the first frame at the end (for the demo's sample clip).

    Raises:
        SourceNotFoundError: the file does not exist.
        VideoOpenError: the file cannot be decoded (corrupt, an MP4 cut before its index, or a codec
            FFmpeg lacks).
    """

    def __init__(self, path: str | Path, *, loop: bool = False) -> None:
        self.path = Path(path).expanduser().resolve()
        self.name = str(self.path)
        self.loop = bool(loop)
        if not self.path.is_file():
            raise SourceNotFoundError(f"Video file not found: {self.path}")
        self._cap = self._open()
        reported = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self._fps = reported if 0.0 < reported < 1000.0 else 25.0
        self.frame_count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self._index = 0
        self._pos = 0
        self._pending: np.ndarray | None = self._decode_first()

    def _open(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            cap.release()
            raise VideoOpenError(
                f"Cannot decode video {self.path}: the file is corrupt, was cut before its index was "
                "written (an MP4 recording that was killed), or uses a codec this OpenCV/FFmpeg lacks. "
                "Re-encode it, e.g. `ffmpeg -i in.mp4 -c:v libx264 -movflags +faststart out.mp4`."
            )
        return cap

    def _decode_first(self) -> np.ndarray:
        ok, image = self._cap.read()
        if not ok or image is None or image.size == 0:
            self._cap.release()
            raise VideoOpenError(
                f"Video {self.path} opened but holds no decodable frame (corrupt or empty); "
                "re-encode it or pick another file."
            )
        return image

    @property
    def fps(self) -> float:
        return self._fps

    def read(self) -> Frame | None:
        if self._pending is not None:
            image, self._pending = self._pending, None
        else:
            ok, image = self._cap.read()
            if not ok or image is None:
                if not self.loop or self._pos == 0:
                    return None
                self._cap.release()
                self._cap = self._open()
                self._pos = 0
                ok, image = self._cap.read()
                if not ok or image is None:
                    return None
        frame = Frame(bgr=to_bgr_uint8(image), t=self._index / self._fps, index=self._index)
        self._index += 1
        self._pos += 1
        return frame

    def close(self) -> None:
        self._cap.release()


class ImageFolderSource(_SourceBase):
    """The images of a folder in file-name order, as a video at ``fps``.

    Files with an image suffix that OpenCV cannot decode are skipped with a warning.

    Raises:
        SourceNotFoundError: the folder does not exist.
        EmptyFolderError: it contains no file with an image suffix.
    """

    def __init__(self, path: str | Path, *, fps: float = 10.0, loop: bool = False) -> None:
        self.path = Path(path).expanduser().resolve()
        self.name = str(self.path)
        self.loop = bool(loop)
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self._fps = float(fps)
        if not self.path.is_dir():
            raise SourceNotFoundError(f"Image folder not found: {self.path}")
        self.files: tuple[Path, ...] = tuple(
            sorted(p for p in self.path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        )
        if not self.files:
            raise EmptyFolderError(
                f"No images in {self.path} (looked for {', '.join(sorted(IMAGE_SUFFIXES))}); "
                "point --source at a folder of images, a video file or a camera index."
            )
        self._cursor = 0
        self._index = 0
        self._delivered_any = False

    @property
    def fps(self) -> float:
        return self._fps

    def read(self) -> Frame | None:
        while True:
            if self._cursor >= len(self.files):
                if not (self.loop and self._delivered_any):
                    if not self._delivered_any:
                        raise EmptyFolderError(f"None of the {len(self.files)} images in {self.path} could be decoded.")
                    return None
                self._cursor = 0
            file = self.files[self._cursor]
            self._cursor += 1
            image = cv2.imread(str(file), cv2.IMREAD_UNCHANGED)
            if image is None or image.size == 0:
                LOG.warning("skipping unreadable image %s", file)
                continue
            frame = Frame(bgr=to_bgr_uint8(image), t=self._index / self._fps, index=self._index)
            self._index += 1
            self._delivered_any = True
            return frame

    def close(self) -> None:
        self._cursor = len(self.files)
        self.loop = False


class ArraySource(_SourceBase):
    """In-memory images (any form :func:`to_bgr_uint8` accepts) as a finite source; for tests and tools."""

    def __init__(self, images: Sequence[np.ndarray], *, fps: float = 25.0, name: str = "arrays") -> None:
        self._images = list(images)
        self._fps = float(fps)
        self.name = name
        self._index = 0

    @property
    def fps(self) -> float:
        return self._fps

    def read(self) -> Frame | None:
        if self._index >= len(self._images):
            return None
        frame = Frame(bgr=to_bgr_uint8(self._images[self._index]), t=self._index / self._fps, index=self._index)
        self._index += 1
        return frame

    def close(self) -> None:
        self._index = len(self._images)


def sample_clip_source(*, loop: bool = True) -> VideoFileSource:
    """The project's bundled clip ``assets/sample_clip.mp4``.

    Raises:
        SourceNotFoundError: when the asset is missing (regenerate it with
            ``python -m training.make_sample_clip``).
    """
    if not SAMPLE_CLIP_PATH.is_file():
        raise SourceNotFoundError(
            f"The bundled sample clip is missing ({SAMPLE_CLIP_PATH}); regenerate it with "
            "`python -m training.make_sample_clip` or pass --source."
        )
    return VideoFileSource(SAMPLE_CLIP_PATH, loop=loop)


def default_source(
    *,
    camera_index: int = 0,
    width: int | None = None,
    height: int | None = None,
    fps: float | None = None,
    loop: bool = True,
) -> FrameSource:
    """The first camera when one opens, else the bundled sample clip (looping when ``loop``)."""
    try:
        return CameraSource(camera_index, width=width, height=height, fps=fps)
    except CameraOpenError as err:
        LOG.info("no camera (%s); using the bundled sample clip", err)
    return sample_clip_source(loop=loop)


def open_source(
    spec: str | int | Path | None,
    *,
    loop: bool = False,
    width: int | None = None,
    height: int | None = None,
    fps: float | None = None,
    folder_fps: float = 10.0,
) -> FrameSource:
    """Open a source from a command-line style spec.

    ``None`` or ``"default"``: :func:`default_source` (its clip loops only when ``loop``); ``"sample"``: the bundled clip; an integer or a
    string of digits: camera index; an existing folder: :class:`ImageFolderSource`; anything else: a
    video file (:class:`SourceNotFoundError` when it does not exist).
    """
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "default"):
        return default_source(width=width, height=height, fps=fps, loop=loop)
    if isinstance(spec, int):
        return CameraSource(spec, width=width, height=height, fps=fps)
    text = str(spec).strip()
    if text.lower() == "sample":
        return sample_clip_source(loop=loop)
    if text.isdigit():
        return CameraSource(int(text), width=width, height=height, fps=fps)
    path = Path(text).expanduser()
    if path.is_dir():
        return ImageFolderSource(path, fps=folder_fps, loop=loop)
    return VideoFileSource(path, loop=loop)
