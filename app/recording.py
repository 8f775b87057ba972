"""Recording: annotated video, per-frame JSON Lines, and PLY/OBJ export of a frame's meshes.

The JSONL file gets one object per processed frame, written and flushed immediately, so an
interrupted run leaves a valid file (every line complete). The video goes through OpenCV's
``VideoWriter``; MP4 containers are only finalised by ``release()``, which :class:`Recorder.close`
always runs (use it as a context manager; :class:`GracefulStop` makes Ctrl-C/SIGTERM stop the loop
between two frames). A process killed with SIGKILL cannot finalise an MP4: choose ``codec="mjpg"``
with an ``.avi`` file when that matters (AVI stays readable without its index).

JSONL schema (units: metres for camera-space values, pixels for image values, ms for timings)::

    {"index": int, "t": float s, "image_size": [w, h], "K": 3x3, "intrinsics_assumed": bool,
     "timings_ms": {stage: ms}, "backend": str,
     "hands": [{"track_id", "handedness", "detection_score", "confidence", "box_img": [4],
                "translation_cam": [3], "distance_m", "joints_cam": 21x3, "joints_img": 21x2,
                "landmarks_img": 21x2, ["vertices_cam": Vx3]}]}
"""
from __future__ import annotations

import json
import logging
import signal
from pathlib import Path
from types import FrameType
from typing import Any, Iterator

import cv2
import numpy as np

from app.results import FrameResult, HandResult

LOG = logging.getLogger(__name__)

CODECS: dict[str, tuple[str, ...]] = {
    "mp4v": ("mp4v",),
    "h264": ("avc1", "H264", "X264"),
    "mjpg": ("MJPG",),
    "xvid": ("XVID",),
}


class RecordingError(RuntimeError):
    """The video or JSONL file cannot be written."""


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
    with Path(path).open("r", encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


class VideoRecorder:
    """Writes BGR frames to a video file; the writer opens on the first frame (size known then).

    Args:
        path: output file (``.mp4`` for mp4v/h264, ``.avi`` for mjpg/xvid).
        fps: frame rate stored in the file.
        codec: ``"mp4v"`` (default; always available in opencv-python wheels), ``"h264"`` (only when the
            OpenCV build has an H.264 encoder; otherwise :class:`RecordingError`), ``"mjpg"``, ``"xvid"``.
    """

    def __init__(self, path: str | Path, *, fps: float = 25.0, codec: str = "mp4v") -> None:
        if codec not in CODECS:
            raise RecordingError(f"unknown codec {codec!r}; choose one of {sorted(CODECS)}")
        if not fps > 0:
            raise RecordingError(f"fps must be positive, got {fps}")
        self.path = Path(path).expanduser()
        self.fps = float(fps)
        self.codec = codec
        self.frames_written = 0
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        if not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def _open(self, width: int, height: int) -> cv2.VideoWriter:
        for fourcc in CODECS[self.codec]:
            writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*fourcc), self.fps, (width, height))
            if writer.isOpened():
                LOG.info("recording %s with fourcc %s at %.1f fps", self.path, fourcc, self.fps)
                return writer
            writer.release()
        advice = (
            "this OpenCV build has no H.264 encoder; use --codec mp4v (default) and convert afterwards with "
            "`ffmpeg -i in.mp4 -c:v libx264 out.mp4`"
            if self.codec == "h264"
            else "check that the folder is writable and the suffix suits the codec (.mp4 for mp4v, .avi for mjpg/xvid)"
        )
        raise RecordingError(f"cannot open a {self.codec} video writer for {self.path}: {advice}.")

    def write(self, bgr: np.ndarray) -> None:
        """Append one ``(H, W, 3)`` uint8 BGR frame (all frames must have the first frame's size)."""
        image = np.asarray(bgr)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise RecordingError(f"expected an (H, W, 3) uint8 BGR frame, got {image.shape} {image.dtype}")
        size = (int(image.shape[1]), int(image.shape[0]))
        if self._writer is None:
            self._writer = self._open(*size)
            self._size = size
        elif size != self._size:
            image = cv2.resize(image, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(np.ascontiguousarray(image))
        self.frames_written += 1

    def close(self) -> None:
        """Finalise the file (writes the MP4 index). Safe to call twice."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def __enter__(self) -> "VideoRecorder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class JsonlRecorder:
    """Appends one JSON object per frame and flushes it, so the file is valid at any moment."""

    def __init__(self, path: str | Path, *, include_vertices: bool = False) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.include_vertices = bool(include_vertices)
        self.records_written = 0
        try:
            self._handle = self.path.open("w", encoding="utf-8")
        except OSError as err:
            raise RecordingError(f"cannot write {self.path}: {err}") from err

    def write(self, result: FrameResult) -> None:
        line = json.dumps(frame_to_json(result, include_vertices=self.include_vertices), separators=(",", ":"))
        self._handle.write(line + "\n")
        self._handle.flush()
        self.records_written += 1

    def close(self) -> None:
        if not self._handle.closed:
            self._handle.close()

    def __enter__(self) -> "JsonlRecorder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Recorder:
    """Annotated video and/or JSONL together; either path may be None. Always close it (``with``)."""

    def __init__(
        self,
        video_path: str | Path | None = None,
        jsonl_path: str | Path | None = None,
        *,
        fps: float = 25.0,
        codec: str = "mp4v",
        include_vertices: bool = False,
    ) -> None:
        self.video = VideoRecorder(video_path, fps=fps, codec=codec) if video_path is not None else None
        self.jsonl = JsonlRecorder(jsonl_path, include_vertices=include_vertices) if jsonl_path is not None else None

    def write(self, result: FrameResult, annotated_bgr: np.ndarray | None = None) -> None:
        if self.jsonl is not None:
            self.jsonl.write(result)
        if self.video is not None:
            if annotated_bgr is None:
                raise RecordingError("a video path was given: pass the annotated frame to write()")
            self.video.write(annotated_bgr)

    def close(self) -> None:
        if self.video is not None:
            self.video.close()
        if self.jsonl is not None:
            self.jsonl.close()

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
        RecordingError: unsupported suffix or no hand in the frame.
    """
    file = Path(path).expanduser()
    suffix = file.suffix.lower()
    if suffix not in (".ply", ".obj"):
        raise RecordingError(f"mesh export supports .ply and .obj, got {suffix!r}")
    if not result.hands:
        raise RecordingError(f"frame {result.index} has no hand to export")
    file.parent.mkdir(parents=True, exist_ok=True)
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
    file.write_text("\n".join(lines) + "\n", encoding="ascii")
    return file
