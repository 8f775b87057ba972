"""Recording: annotated video, per-frame JSON Lines, and PLY/OBJ export of a frame's meshes.

Video goes through PyAV (FFmpeg). The default, ``codec="h264"``, is H.264 (libx264, ``tune=zerolatency``:
no look-ahead, every frame leaves the encoder at once) in a *fragmented* MP4
(``movflags=frag_keyframe+empty_moov+default_base_moof``): a key frame is forced every ``fragment_s``
seconds of video time (0.5 s by default), each key frame closes a fragment, and the muxer flushes every
packet to the operating system (``flush_packets=1``). A file cut at any moment (Ctrl-C, SIGTERM,
``kill -9``, a crash, a full disk) therefore plays up to its last complete fragment; nothing is
rewritten at the end, so there is no index to lose. H.264 in MP4 plays in browsers and on phones.
(Data is handed to the operating system, not ``fsync``-ed: it survives the process, not a power cut.)
``codec="mjpg"`` writes Motion-JPEG in ``.avi`` (every frame a key frame, flushed as it is written:
larger files, frame-exact cuts for editing tools). OpenCV's old ``mp4v``/``xvid`` writers are gone
(MPEG-4 part 2 does not play in browsers, and OpenCV's MP4 is unplayable until ``release()`` runs):
asking for them raises :class:`RecordingError` naming the replacements.

Timestamps are real: each frame's presentation time is its source time stamp ``t`` (seconds) minus the
first frame's, so a recording whose frames were skipped (a slow pipeline, the GUI's latest-frame-wins
loop) plays at real speed with a variable frame rate. A clock that goes backwards (the source was
switched) or repeats a stamp continues the video at the nominal ``fps`` instead.

The JSONL file gets one line per video frame, written in step with the video: a line is kept in memory
until its video frame is on disk (for H.264, until the fragment holding it is flushed), then written
whole and flushed. After any interruption the JSONL has as many lines as the video has frames, or up to
one fragment fewer (when the process died between the two writes). A write that fails (disk full, file
size limit, I/O error) truncates both files back to their last common complete point and raises
:class:`RecordingError` naming the cause and what was kept: never a cut JSON line, never a cut fragment.
Without a video path the JSONL is written and flushed line by line.

Frame sizes: H.264 (4:2:0) needs even sizes; an odd width or height is padded by repeating the last
column/row (a 1x1 frame becomes 2x2). A frame whose size differs from the first frame's is scaled to fit
inside the first frame's size, centred on black (letterbox).

JSONL schema (units: metres for camera-space values, pixels for image values, ms for timings)::

    {"index": int, "t": float s, "image_size": [w, h], "K": 3x3, "intrinsics_assumed": bool,
     "timings_ms": {stage: ms}, "backend": str,
     "hands": [{"track_id", "handedness", "detection_score", "confidence", "box_img": [4],
                "translation_cam": [3], "distance_m", "joints_cam": 21x3, "joints_img": 21x2,
                "landmarks_img": 21x2, "cue": "fused"|"mediapipe"|"network", "hand_length_m",
                "depth_source": "dgp"|"ensemble"|"size", ["vertices_cam": Vx3]}]}
"""
from __future__ import annotations

import errno
import json
import logging
import math
import os
import signal
import tempfile
from fractions import Fraction
from pathlib import Path
from types import FrameType
from typing import Any, Iterator

import av
import cv2
import numpy as np

from app.results import FrameResult, HandResult

LOG = logging.getLogger(__name__)

CODEC_SUFFIXES: dict[str, str] = {"h264": ".mp4", "mjpg": ".avi"}
"""Video codecs the recorder writes, with the file suffix each one needs."""
DEFAULT_CODEC = "h264"
REMOVED_CODECS: dict[str, str] = {
    "mp4v": "MPEG-4 part 2 does not play in browsers or on phones",
    "xvid": "MPEG-4 part 2 does not play in browsers or on phones",
}
"""Codecs that earlier versions wrote through OpenCV, with the reason they are no longer offered."""
DEFAULT_FRAGMENT_S = 0.5
"""Seconds of video per MP4 fragment: at most this much video is lost when the process is killed."""

_H264_OPTIONS: dict[str, str] = {"preset": "veryfast", "tune": "zerolatency", "crf": "23", "forced-idr": "1"}
_MJPEG_OPTIONS: dict[str, str] = {"flags": "+qscale", "global_quality": str(3 * 118)}  # JPEG quality ~ -q:v 3
_MP4_MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof"
_ERRNO_CAUSES: dict[int, str] = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EFBIG: "the file size limit was reached",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EIO: "input/output error (a failing or unplugged drive?)",
    errno.ENOENT: "the folder no longer exists",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "the path is a folder",
}


class RecordingError(RuntimeError):
    """The video or JSONL file cannot be written (the message names the cause and what was kept)."""


def describe_os_error(err: BaseException) -> str:
    """A short, user-facing cause of a failed file operation (``"the disk is full"``...)."""
    code = getattr(err, "errno", None)
    if isinstance(code, int) and code in _ERRNO_CAUSES:
        return _ERRNO_CAUSES[code]
    text = getattr(err, "strerror", None)
    return str(text) if text else str(err)


def check_codec(codec: str) -> str:
    """The file suffix ``codec`` writes (``".mp4"`` or ``".avi"``).

    Raises:
        RecordingError: unknown or removed codec (the message names the ones on offer).
    """
    if codec in CODEC_SUFFIXES:
        return CODEC_SUFFIXES[codec]
    offer = "h264 (default, .mp4) or mjpg (.avi)"
    if codec in REMOVED_CODECS:
        raise RecordingError(f"video codec {codec!r} is no longer offered ({REMOVED_CODECS[codec]}); use {offer}")
    raise RecordingError(f"unknown video codec {codec!r}; use {offer}")


def prepare_output_file(path: str | Path, *, what: str, suffix: str | None = None) -> Path:
    """Check that ``path`` can be written, creating its folder when missing; returns it (``~`` expanded).

    Nothing is written to ``path`` itself: a probe file is created and removed in its folder.

    Args:
        path: the output file.
        what: what the file is, for messages (``"video"``, ``"JSONL"``).
        suffix: the lower-case suffix the file must have (None: any).
    Raises:
        RecordingError: wrong or missing suffix, ``path`` is a folder, its folder cannot be created or is
            not writable (read-only, no permission, full), or ``path`` exists and cannot be overwritten.
    """
    file = Path(path).expanduser()
    if file.is_dir():
        raise RecordingError(f"the {what} path {file} is a folder; give a file name inside it")
    if suffix is not None and file.suffix.lower() != suffix:
        found = f"suffix {file.suffix!r}" if file.suffix else "no suffix"
        other = [c for c, s in CODEC_SUFFIXES.items() if s == file.suffix.lower() and s != suffix]
        hint = f", or choose the {other[0]} codec for {file.suffix}" if other else ""
        raise RecordingError(f"the {what} file {file} has {found}; name it {file.with_suffix(suffix).name}{hint}")
    folder = file.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RecordingError(
            f"cannot create the folder {folder} for the {what} file: {describe_os_error(err)}; "
            "choose a writable folder"
        ) from err
    try:
        handle, probe = tempfile.mkstemp(prefix=".write-probe-", dir=folder)
    except OSError as err:
        raise RecordingError(
            f"cannot write the {what} file {file}: the folder {folder} is not writable "
            f"({describe_os_error(err)}); choose a writable folder"
        ) from err
    os.close(handle)
    os.unlink(probe)
    if file.exists() and not os.access(file, os.W_OK):
        raise RecordingError(f"the {what} file {file} exists and is read-only; remove it or choose another name")
    return file


def _round(array: np.ndarray, decimals: int) -> list:
    return np.round(np.asarray(array, np.float64), decimals).tolist()

def hand_to_json(hand: HandResult, *, include_vertices: bool) -> dict[str, Any]:
    """JSON-friendly dict of one hand (camera-space metres to 0.1 mm, pixels to 0.01 px)."""
    data: dict[str, Any] = {
        "track_id": int(hand.track_id),
        "handedness": hand.handedness,
        "detection_score": round(float(hand.detection_score), 4),
        "confidence": round(float(hand.confidence), 4),
        "box_img": _round(hand.box_img, 2),
        "translation_cam": _round(hand.translation_cam, 5),
        "distance_m": round(hand.distance_m, 5),
        "joints_cam": _round(hand.joints_cam, 5),
        "joints_img": _round(hand.joints_img, 2),
        "landmarks_img": _round(hand.landmarks_img, 2),
        "cue": hand.cue,
        "hand_length_m": round(float(hand.hand_length_m), 4),
        "depth_source": hand.depth_source,
    }
    if include_vertices:
        data["vertices_cam"] = _round(hand.vertices_cam, 5)
    return data


def frame_to_json(result: FrameResult, *, include_vertices: bool = False) -> dict[str, Any]:
    """JSON-friendly dict of one frame (see the module docstring for the schema)."""
    return {
        "index": int(result.index),
        "t": round(float(result.t), 6),
        "image_size": [int(result.image_size[0]), int(result.image_size[1])],
        "K": _round(result.K, 6),
        "intrinsics_assumed": bool(result.intrinsics_assumed),
        "timings_ms": {k: round(float(v), 3) for k, v in result.timings_ms.items()},
        "backend": result.backend,
        "hands": [hand_to_json(h, include_vertices=include_vertices) for h in result.hands],
    }


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """All records of a JSON Lines file (raises ``json.JSONDecodeError`` on a broken line)."""
    with Path(path).open("r", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def iter_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """The records of a JSON Lines file one by one (raises ``json.JSONDecodeError`` on a broken line)."""
    with Path(path).open("r", encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def as_bgr_frame(bgr: np.ndarray) -> np.ndarray:
    """``bgr`` as an ``(H, W, 3)`` uint8 array (BGR), or :class:`RecordingError` naming what it is."""
    image = np.asarray(bgr)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or image.size == 0:
        raise RecordingError(f"expected an (H, W, 3) uint8 BGR frame, got shape {image.shape} {image.dtype}")
    return image


def _even_padded(image: np.ndarray) -> np.ndarray:
    """``image`` padded to even width and height by repeating its last column/row (H.264 4:2:0 needs it)."""
    height, width = image.shape[:2]
    if height % 2 == 0 and width % 2 == 0:
        return image
    return np.pad(image, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")


def _letterbox(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` scaled to fit inside ``size = (W, H)`` keeping its aspect ratio, centred on black."""
    width, height = size
    h, w = image.shape[:2]
    scale = min(width / w, height / h)
    new_w, new_h = max(1, min(width, round(w * scale))), max(1, min(height, round(h * scale)))
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    canvas = np.zeros((height, width, 3), np.uint8)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    canvas[top:top + new_h, left:left + new_w] = resized
    return canvas


class VideoRecorder:
    """Writes BGR frames with their time stamps to a crash-safe video file (see the module docstring).

    The file opens on the first frame (its size is known then); the folder is checked at construction.

    Args:
        path: output file: ``.mp4`` for ``h264``, ``.avi`` for ``mjpg``.
        fps: nominal frame rate: used only for frames written without a time stamp and where the source
            clock jumps backwards (a non-positive or non-finite value means 25).
        codec: ``"h264"`` (default) or ``"mjpg"``; ``"mp4v"``/``"xvid"`` are refused with a clear message.
        fragment_s: seconds of video per fragment (H.264): the most video a killed process loses.

    Attributes:
        frames_written: frames accepted so far (after :meth:`close`, or a failure, the frames in the file).
        frames_saved: frames that are on disk and decodable even if the process dies now.
        size: ``(W, H)`` pixels of the first frame (later frames are fitted into it); None before it.

    Raises:
        RecordingError: bad codec or suffix, an unwritable folder (at construction); a frame that is not
            ``(H, W, 3)`` uint8, an encoder that cannot open, or a failed write (in :meth:`write`).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        fps: float = 25.0,
        codec: str = DEFAULT_CODEC,
        fragment_s: float = DEFAULT_FRAGMENT_S,
    ) -> None:
        suffix = check_codec(codec)
        if not (math.isfinite(fragment_s) and fragment_s > 0):
            raise RecordingError(f"fragment_s must be a positive number of seconds, got {fragment_s}")
        self.path = prepare_output_file(path, what="video", suffix=suffix).absolute()
        self.fps = float(fps) if math.isfinite(fps) and fps > 0 else 25.0
        self.codec = codec
        self.fragment_s = float(fragment_s)
        self.frames_written = 0
        self.frames_saved = 0
        self.size: tuple[int, int] | None = None
        self._intra_only = codec == "mjpg"
        self._time_base = Fraction(1, 100) if codec == "mjpg" else Fraction(1, 1000)
        self._container: Any = None
        self._stream: Any = None
        self._packets_muxed = 0
        self._saved_points: list[tuple[int, int]] = [(0, 0)]  # (frames, file bytes) at recent flush points
        self._failure: RecordingError | None = None
        self._t0 = 0.0
        self._last_t = 0.0
        self._last_pts = -1
        self._last_key_pts: int | None = None

    # -- writing ----------------------------------------------------------------------------------

    def write(self, bgr: np.ndarray, t: float | None = None) -> None:
        """Append one ``(H, W, 3)`` uint8 BGR frame shown at time ``t`` (seconds, source clock; None:
        one nominal frame after the previous one)."""
        if self._failure is not None:
            raise RecordingError(f"the recording stopped earlier: {self._failure}")
        image = as_bgr_frame(bgr)
        size = (int(image.shape[1]), int(image.shape[0]))
        if self.size is None:
            self._open(size)
        elif size != self.size:
            image = _letterbox(image, self.size)
        image = np.ascontiguousarray(_even_padded(image))
        pts = self._next_pts(t)
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts = pts
        frame.time_base = self._time_base
        if not self._intra_only and (
            self._last_key_pts is None or (pts - self._last_key_pts) * self._time_base >= self.fragment_s
        ):
            frame.pict_type = av.video.frame.PictureType.I  # closes the fragment before this frame
            self._last_key_pts = pts
        try:
            packets = self._stream.encode(frame)
            self.frames_written += 1
            self._mux(packets)
        except (av.FFmpegError, OSError) as err:
            self._fail(err, "writing")

    def _open(self, size: tuple[int, int]) -> None:
        width, height = size
        padded = (width + width % 2, height + height % 2)
        container = None
        try:
            if self.codec == "h264":
                container = av.open(
                    str(self.path), "w", format="mp4", options={"movflags": _MP4_MOVFLAGS},
                    container_options={"flush_packets": "1"},
                )
                stream = container.add_stream("libx264", options=dict(_H264_OPTIONS))
                stream.pix_fmt = "yuv420p"
            else:
                container = av.open(str(self.path), "w", format="avi", container_options={"flush_packets": "1"})
                stream = container.add_stream("mjpeg", options=dict(_MJPEG_OPTIONS))
                stream.pix_fmt = "yuvj420p"
            stream.width, stream.height = padded
            stream.time_base = self._time_base
            stream.codec_context.time_base = self._time_base
            stream.codec_context.open()  # fail here, with the cause, rather than on the first frame
        except (av.FFmpegError, OSError) as err:
            if container is not None:
                _close_quietly(container)
            self.path.unlink(missing_ok=True)
            raise RecordingError(
                f"cannot open a {self.codec} video writer for {self.path} at {width}x{height}: "
                f"{describe_os_error(err)}"
            ) from err
        self._container, self._stream, self.size = container, stream, size
        LOG.info("recording %s: %s, %dx%d, variable frame rate", self.path, self.codec, *padded)

    def _next_pts(self, t: float | None) -> int:
        """Presentation time of the next frame in ``time_base`` ticks (strictly increasing)."""
        if t is None or not math.isfinite(t):
            t = self._last_t + 1.0 / self.fps if self._last_pts >= 0 else 0.0
        t = float(t)
        if self._last_pts < 0:
            self._t0, pts = t, 0
        else:
            if t < self._last_t:  # the clock went back (another source): continue one nominal frame later
                nominal = max(1, round(1.0 / (self.fps * self._time_base)))
                self._t0 = t - float((self._last_pts + nominal) * self._time_base)
            pts = max(round((t - self._t0) / self._time_base), self._last_pts + 1)
        self._last_t, self._last_pts = t, pts
        return pts

    def _mux(self, packets: list) -> None:
        for packet in packets:
            before = self._packets_muxed
            self._container.mux(packet)
            self._packets_muxed += 1
            # The MP4 muxer writes (and, with flush_packets, flushes) the previous fragment when a key
            # frame arrives; the AVI muxer writes and flushes every packet as it comes.
            if self._intra_only:
                self._mark_saved(self._packets_muxed)
            elif packet.is_keyframe and before > 0:
                self._mark_saved(before)

    @property
    def is_open(self) -> bool:
        """True between the first frame and :meth:`close` (or a failure)."""
        return self._container is not None

    def _mark_saved(self, frames: int) -> None:
        self.frames_saved = frames
        self._saved_points.append((frames, os.path.getsize(self.path)))
        del self._saved_points[:-16]

    # -- ending -----------------------------------------------------------------------------------

    def close(self) -> None:
        """Flush the encoder and finish the file; safe to call twice.

        Raises:
            RecordingError: the last writes failed (the file is cut back to its last complete fragment).
        """
        if self._container is None:
            return
        try:
            self._mux(self._stream.encode(None))
            container, self._container = self._container, None
            container.close()
        except (av.FFmpegError, OSError) as err:
            self._fail(err, "finishing")
        self.frames_saved = self.frames_written

    def cut_back(self, frames: int) -> int:
        """Stop and cut the file back to the last flush point holding at most ``frames`` frames.

        Used when the JSONL beside the video could not be written. Returns the frames the file keeps.
        """
        kept_frames, kept_bytes = max((p for p in self._saved_points if p[0] <= frames), default=(0, 0))
        self._abort(kept_frames, kept_bytes)
        return kept_frames

    def _fail(self, err: BaseException, doing: str) -> None:
        kept_frames, kept_bytes = self._saved_points[-1]
        self._abort(kept_frames, kept_bytes)
        kept = (f"the file keeps its first {kept_frames} frames and plays up to there" if kept_frames
                else "no frame was saved and the file was removed")
        self._failure = RecordingError(
            f"recording stopped while {doing} the video {self.path}: {describe_os_error(err)}; {kept}"
        )
        LOG.info("%s", self._failure)
        raise self._failure from err

    def _abort(self, kept_frames: int, kept_bytes: int) -> None:
        """Close without caring for errors, then cut the file to ``kept_bytes`` (a flush point)."""
        container, self._container = self._container, None
        if container is not None:
            _close_quietly(container)
        try:
            if kept_frames == 0:
                self.path.unlink(missing_ok=True)
            elif self.path.exists() and self.path.stat().st_size > kept_bytes:
                os.truncate(self.path, kept_bytes)
        except OSError as err:  # shrinking needs no space; this would be a vanished or locked file
            LOG.warning("could not cut %s back to its last complete fragment: %s", self.path, err)
        self.frames_written = self.frames_saved = kept_frames
        if self._failure is None:
            self._failure = RecordingError(f"the video {self.path} was stopped after {kept_frames} frames")

    def __enter__(self) -> "VideoRecorder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _close_quietly(container: Any) -> None:
    try:
        container.close()
    except (av.FFmpegError, OSError) as err:
        LOG.debug("closing a failed video container: %s", err)


class JsonlRecorder:
    """One JSON object per frame, written as whole lines (see the module docstring).

    :meth:`write` writes and flushes at once; :meth:`append` + :meth:`commit` hold lines until the caller
    says they may go (the :class:`Recorder` does so when the matching video frames are on disk).

    Attributes:
        records_written: complete lines in the file.
        records_pending: lines held in memory, not yet written.
    """

    def __init__(self, path: str | Path, *, include_vertices: bool = False) -> None:
        self.path = prepare_output_file(path, what="JSONL")
        self.include_vertices = bool(include_vertices)
        self.records_written = 0
        self._pending: list[bytes] = []
        self._offset = 0
        self._failure: RecordingError | None = None
        try:
            self._handle = self.path.open("wb", buffering=0)
        except OSError as err:
            raise RecordingError(f"cannot write the JSONL file {self.path}: {describe_os_error(err)}") from err

    @property
    def records_pending(self) -> int:
        return len(self._pending)

    @property
    def closed(self) -> bool:
        return self._handle.closed

    def append(self, result: FrameResult) -> None:
        """Hold the line of ``result`` until :meth:`commit`."""
        record = frame_to_json(result, include_vertices=self.include_vertices)
        self._pending.append((json.dumps(record, separators=(",", ":")) + "\n").encode("utf-8"))

    def write(self, result: FrameResult) -> None:
        """Write the line of ``result`` now (with any held lines before it) and flush it."""
        self.append(result)
        self.commit()

    def commit(self, count: int | None = None) -> None:
        """Write the first ``count`` held lines (None: all) in one go and flush them.

        Raises:
            RecordingError: the write failed; the file is cut back to its last complete line, held
                lines are dropped and nothing more is written.
        """
        if self._failure is not None:
            raise RecordingError(f"the JSONL recording stopped earlier: {self._failure}")
        count = len(self._pending) if count is None else max(0, min(int(count), len(self._pending)))
        if count == 0:
            return
        data = memoryview(b"".join(self._pending[:count]))
        try:
            done = 0
            while done < len(data):
                written = self._handle.write(data[done:])
                if not written:
                    raise OSError(errno.EIO, "the file accepted no more bytes")
                done += written
        except OSError as err:
            self._pending.clear()
            self._cut_back()
            self._failure = RecordingError(
                f"recording stopped while writing {self.path}: {describe_os_error(err)}; "
                f"the file keeps {self.records_written} complete lines"
            )
            raise self._failure from err
        self._offset += len(data)
        self.records_written += count
        del self._pending[:count]

    def _cut_back(self) -> None:
        try:
            os.ftruncate(self._handle.fileno(), self._offset)
        except OSError as err:
            LOG.warning("could not cut %s back to its last complete line: %s", self.path, err)

    def drop_pending(self) -> None:
        """Forget the held lines (their video frames were not saved)."""
        self._pending.clear()

    def stop(self) -> None:
        """Write nothing more (held lines are dropped); the file keeps its complete lines."""
        self._pending.clear()
        if self._failure is None:
            self._failure = RecordingError(f"{self.path} was stopped after {self.records_written} lines")

    def close(self) -> None:
        """Write the held lines and close the file; safe to call twice.

        Raises:
            RecordingError: the last write failed (the file keeps its complete lines).
        """
        if self._handle.closed:
            return
        try:
            if self._failure is None:
                self.commit()
        finally:
            self._pending.clear()
            self._handle.close()

    def __enter__(self) -> "JsonlRecorder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Recorder:
    """Annotated video and/or JSONL, kept in step (see the module docstring); either path may be None.

    Always close it (``with``). Each :meth:`write` hands the frame to the video and its line to the JSONL;
    JSONL lines are written when their video frames are on disk.

    Raises:
        RecordingError: at construction (bad codec/suffix, unwritable folder) and from :meth:`write` /
            :meth:`close` when a write fails; the message names the cause and what both files keep.
    """

    def __init__(
        self,
        video_path: str | Path | None = None,
        jsonl_path: str | Path | None = None,
        *,
        fps: float = 25.0,
        codec: str = DEFAULT_CODEC,
        include_vertices: bool = False,
        fragment_s: float = DEFAULT_FRAGMENT_S,
    ) -> None:
        self.video = (VideoRecorder(video_path, fps=fps, codec=codec, fragment_s=fragment_s)
                      if video_path is not None else None)
        self.jsonl = JsonlRecorder(jsonl_path, include_vertices=include_vertices) if jsonl_path is not None else None
        self._failure: RecordingError | None = None

    def write(self, result: FrameResult, annotated_bgr: np.ndarray | None = None) -> None:
        """Record one frame: its result (JSONL) and its ``(H, W, 3)`` uint8 BGR annotated image (video),
        shown at ``result.t`` seconds."""
        if self._failure is not None:
            raise RecordingError(f"the recording stopped earlier: {self._failure}")
        if self.video is None:
            if self.jsonl is not None:
                self._guard(self.jsonl.write, result)
            return
        if annotated_bgr is None:
            raise RecordingError("a video path was given: pass the annotated frame to write()")
        annotated_bgr = as_bgr_frame(annotated_bgr)  # a bad frame is refused without stopping the recording
        if self.jsonl is not None:
            self.jsonl.append(result)
        self._guard(self.video.write, annotated_bgr, result.t)
        self._sync()

    def _sync(self) -> None:
        """Write the JSONL lines whose video frames are on disk."""
        if self.jsonl is None or self.video is None:
            return
        self._guard(self.jsonl.commit, self.video.frames_saved - self.jsonl.records_written)

    def _guard(self, call: Any, *args: Any) -> None:
        """Run a write; on failure stop both files at a common complete point and raise one message."""
        try:
            call(*args)
        except RecordingError as err:
            self._stop_both()
            self._failure = RecordingError(f"{err}. {self.kept()}")
            raise self._failure from err

    def _stop_both(self) -> None:
        if self.video is not None and self.jsonl is not None:
            if self.video.frames_saved > self.jsonl.records_written:
                try:  # the video's frames are safe: try to give each its line
                    self.jsonl.commit(self.video.frames_saved - self.jsonl.records_written)
                except RecordingError:
                    pass
            if self.video.frames_saved > self.jsonl.records_written or self.video.is_open:
                self.video.cut_back(self.jsonl.records_written)
            self.jsonl.stop()
        elif self.jsonl is not None:
            self.jsonl.stop()

    def kept(self) -> str:
        """What the files hold now, in words."""
        parts = []
        if self.video is not None:
            parts.append(f"{self.video.frames_written} frames in {self.video.path}")
        if self.jsonl is not None:
            parts.append(f"{self.jsonl.records_written} lines in {self.jsonl.path}")
        return "Kept " + " and ".join(parts) + (", both ending cleanly" if len(parts) == 2 else ", ending cleanly")

    def close(self) -> None:
        """Finish the video, then write the remaining JSONL lines; safe to call twice.

        Raises:
            RecordingError: finishing failed (both files are cut back to a common complete point).
        """
        if self._failure is not None:
            self._close_handles()
            return
        try:
            if self.video is not None:
                self._guard(self.video.close)
            if self.jsonl is not None:
                if self.video is not None:
                    self._sync()  # one line per frame in the file; a line whose frame never got there is dropped
                    self.jsonl.drop_pending()
                self._guard(self.jsonl.close)
        finally:
            self._close_handles()

    def _close_handles(self) -> None:
        if self.jsonl is not None and not self.jsonl.closed:
            self.jsonl.stop()
            self.jsonl.close()
        if self.video is not None and self.video.is_open:
            self.video.cut_back(self.video.frames_saved)

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class GracefulStop:
    """Turns the first Ctrl-C (SIGINT) or SIGTERM into a flag checked between frames.

    The processing loop finishes the frame it is on, so the video and the JSONL end on the same
    frame; a second signal raises ``KeyboardInterrupt`` at once (``finally`` blocks still close the
    files). Use as a context manager in the main thread; previous handlers are restored on exit.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt(f"signal {signum} received twice")
        self.requested = True

    def __enter__(self) -> "GracefulStop":
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()


def export_meshes(result: FrameResult, path: str | Path) -> Path:
    """Write every hand mesh of one frame to a ``.ply`` (ASCII, per-vertex colour) or ``.obj`` file.

    Vertices are camera-space metres (x right, y down, z forward); one object per hand
    (``o hand<track_id>_<handedness>`` in OBJ). Faces keep outward winding (reversed for left hands).

    Raises:
        RecordingError: unsupported suffix, no hand in the frame, or the file cannot be written (the
            message names the cause: read-only folder, disk full...).
    """
    file = Path(path).expanduser()
    suffix = file.suffix.lower()
    if suffix not in (".ply", ".obj"):
        raise RecordingError(f"mesh export supports .ply and .obj, got {suffix!r}")
    if not result.hands:
        raise RecordingError(f"frame {result.index} has no hand to export")
    verts, faces, colours, names, offset = [], [], [], [], 0
    for hand in result.hands:
        v = np.asarray(hand.vertices_cam, np.float64)
        f = np.asarray(result.faces_for(hand), np.int64)
        verts.append(v)
        faces.append(f + offset)
        rgb = (255, 180, 60) if hand.handedness == "right" else (60, 160, 255)
        colours.append(np.tile(rgb, (len(v), 1)))
        names.append((f"hand{hand.track_id}_{hand.handedness}", offset, len(v), f))
        offset += len(v)
    V, F, C = np.concatenate(verts), np.concatenate(faces), np.concatenate(colours)
    lines: list[str] = []
    if suffix == ".ply":
        lines += ["ply", "format ascii 1.0", "comment camera-space metres, x right, y down, z forward",
                  f"element vertex {len(V)}", "property float x", "property float y", "property float z",
                  "property uchar red", "property uchar green", "property uchar blue",
                  f"element face {len(F)}", "property list uchar int vertex_indices", "end_header"]
        lines += [f"{x:.6f} {y:.6f} {z:.6f} {r} {g} {b}" for (x, y, z), (r, g, b) in zip(V, C)]
        lines += [f"3 {a} {b} {c}" for a, b, c in F]
    else:
        lines.append("# camera-space metres, x right, y down, z forward")
        for name, start, count, f in names:
            lines.append(f"o {name}")
            lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in V[start:start + count]]
            lines += [f"f {a + 1 + start} {b + 1 + start} {c + 1 + start}" for a, b, c in f]
    prepare_output_file(file, what="mesh", suffix=suffix)
    try:
        file.write_text("\n".join(lines) + "\n", encoding="ascii")
    except OSError as err:
        file.unlink(missing_ok=True)
        raise RecordingError(f"cannot write the mesh file {file}: {describe_os_error(err)}") from err
    return file
