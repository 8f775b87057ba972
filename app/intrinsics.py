"""Camera intrinsics: loading (OpenCV YAML/XML or JSON), a field-of-view default, scaling, undistortion.

Conventions: ``K`` is the 3x3 pinhole matrix in pixels for an image of ``size = (width, height)``;
``dist`` holds OpenCV's distortion coefficients ``(k1, k2, p1, p2[, k3[, k4, k5, k6[, s1..s4[, tx, ty]]]])``
(empty when the lens is treated as distortion-free). Pixel centres are at integer coordinates.

File formats written by :func:`save_intrinsics` and read by :func:`load_intrinsics`:

- YAML/XML via ``cv2.FileStorage``: ``camera_matrix`` (3x3 matrix), ``distortion_coefficients``
  (1xN), ``image_width``, ``image_height`` (the names OpenCV's calibration sample writes; ``K``/``D``
  are accepted as aliases).
- JSON: ``{"K": [[...], [...], [...]], "dist": [...], "image_size": [width, height]}``
  (``camera_matrix``/``distortion_coefficients``/``image_width``/``image_height`` also accepted).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

DEFAULT_HFOV_DEG: float = 60.0
"""Horizontal field of view assumed when no intrinsics are given (typical laptop/USB webcam)."""

_VALID_DIST_LENGTHS: frozenset[int] = frozenset({0, 4, 5, 8, 12, 14})
ASPECT_TOLERANCE: float = 0.01
"""Relative difference of width/height ratios still treated as the same aspect (rounding of resized frames)."""


class IntrinsicsError(ValueError):
    """Base class for bad intrinsics input."""


class IntrinsicsFileNotFoundError(IntrinsicsError, FileNotFoundError):
    """The intrinsics file does not exist."""


class IntrinsicsFormatError(IntrinsicsError):
    """The intrinsics file exists but does not hold a valid camera matrix/distortion."""


class IntrinsicsSizeMismatchError(IntrinsicsError):
    """The intrinsics describe an image of another aspect ratio than the frames (not a plain resize)."""


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics with optional lens distortion.

    Attributes:
        K: ``(3, 3)`` float64, pixels.
        dist: ``(n,)`` float64, n in {0, 4, 5, 8, 12, 14}; all-zero is treated as no distortion.
        size: ``(width, height)`` in pixels of the image ``K`` describes.
        assumed: True when ``K`` is a field-of-view guess rather than a calibration (the UI warns).
        origin: human-readable provenance (file path or "assumed 60.0 deg horizontal FOV").
    """

    K: np.ndarray
    dist: np.ndarray
    size: tuple[int, int]
    assumed: bool
    origin: str = ""

    def __post_init__(self) -> None:
        K = np.asarray(self.K, dtype=np.float64)
        dist = np.asarray(self.dist, dtype=np.float64).reshape(-1)
        _validate(K, dist, self.size, self.origin or "intrinsics")
        K.setflags(write=False)
        dist.setflags(write=False)
        object.__setattr__(self, "K", K)
        object.__setattr__(self, "dist", dist)
        object.__setattr__(self, "size", (int(self.size[0]), int(self.size[1])))

    @classmethod
    def from_fov(cls, width: int, height: int, hfov_deg: float = DEFAULT_HFOV_DEG) -> "Intrinsics":
        """Square-pixel intrinsics with the principal point at the image centre, marked ``assumed``."""
        if not 1.0 <= hfov_deg <= 179.0:
            raise IntrinsicsError(f"horizontal field of view must be in [1, 179] degrees, got {hfov_deg}")
        if width < 1 or height < 1:
            raise IntrinsicsError(f"image size must be positive, got {width}x{height}")
        f = 0.5 * width / math.tan(math.radians(hfov_deg) / 2.0)
        K = np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])
        return cls(K=K, dist=np.zeros(0), size=(width, height), assumed=True,
                   origin=f"assumed {hfov_deg:.1f} deg horizontal FOV")

    @property
    def has_distortion(self) -> bool:
        return bool(self.dist.size and np.any(self.dist != 0.0))

    @property
    def hfov_deg(self) -> float:
        """Horizontal field of view in degrees."""
        return math.degrees(2.0 * math.atan(0.5 * self.size[0] / self.K[0, 0]))

    def scaled_to(self, width: int, height: int) -> "Intrinsics":
        """Intrinsics for the same camera delivering ``width x height`` (resized, not cropped).

        fx and cx scale with the width ratio, fy and cy with the height ratio (pixel centres kept at
        integer coordinates). Distortion coefficients are resolution independent and kept.

        Raises:
            IntrinsicsSizeMismatchError: the aspect ratio differs (by more than :data:`ASPECT_TOLERANCE`):
                the frames are cropped or come from another camera mode, and a rescale would invent
                non-square pixels and wrong depths.
        """
        if (width, height) == self.size:
            return self
        if width < 1 or height < 1:
            raise IntrinsicsError(f"image size must be positive, got {width}x{height}")
        file_aspect = self.size[0] / self.size[1]
        frame_aspect = width / height
        if abs(frame_aspect / file_aspect - 1.0) > ASPECT_TOLERANCE:
            raise IntrinsicsSizeMismatchError(
                f"{self.origin or 'the intrinsics'} describe {self.size[0]}x{self.size[1]} images (aspect "
                f"{file_aspect:.3f}) but the frames are {width}x{height} (aspect {frame_aspect:.3f}). A different "
                "aspect ratio means a cropped image or another camera mode; rescaling would give wrong depths. "
                "Calibrate at this resolution (`python run_demo.py calibrate --source ... --out cam.yaml`), pass "
                "the intrinsics of this mode, or omit --intrinsics to use an assumed field of view."
            )
        sx = width / self.size[0]
        sy = height / self.size[1]
        K = self.K.copy()
        K[0, 0] *= sx
        K[0, 1] *= sx
        K[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
        K[1, 1] *= sy
        K[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
        return Intrinsics(K=K, dist=self.dist, size=(width, height), assumed=self.assumed, origin=self.origin)

    def undistort_points(self, points_img: np.ndarray) -> np.ndarray:
        """Remove lens distortion from pixel coordinates.

        Args:
            points_img: ``(..., 2)`` distorted pixel coordinates.
        Returns:
            ``(..., 2)`` float32 pixel coordinates of the ideal pinhole camera ``K`` (unchanged when
            there is no distortion).
        """
        pts = np.asarray(points_img, dtype=np.float64)
        if not self.has_distortion or pts.size == 0:
            return pts.astype(np.float32)
        flat = pts.reshape(-1, 1, 2)
        out = cv2.undistortPointsIter(
            flat, self.K, self.dist, None, self.K,
            (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 40, 1e-6),
        )
        return out.reshape(pts.shape).astype(np.float32)

    def project(self, points_cam: np.ndarray) -> np.ndarray:
        """Project camera-space points (metres) to pixels, applying distortion when present.

        Args:
            points_cam: ``(..., 3)`` points in the camera frame with z > 0.
        Returns:
            ``(..., 2)`` float32 pixel coordinates.
        """
        pts = np.asarray(points_cam, dtype=np.float64)
        if pts.size == 0:
            return np.zeros(pts.shape[:-1] + (2,), dtype=np.float32)
        if not self.has_distortion:
            z = np.maximum(pts[..., 2:3], 1e-9)
            uvw = pts @ self.K.T
            return (uvw[..., :2] / z).astype(np.float32)
        out, _ = cv2.projectPoints(pts.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), self.K, self.dist)
        return out.reshape(pts.shape[:-1] + (2,)).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dictionary in the format :func:`load_intrinsics` reads."""
        return {
            "K": self.K.tolist(),
            "dist": self.dist.tolist(),
            "image_size": list(self.size),
            "assumed": self.assumed,
        }


def _validate(K: np.ndarray, dist: np.ndarray, size: tuple[int, int], where: str) -> None:
    if K.shape != (3, 3) or not np.all(np.isfinite(K)):
        raise IntrinsicsFormatError(f"{where}: camera matrix must be a finite 3x3 matrix, got shape {K.shape}")
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise IntrinsicsFormatError(f"{where}: focal lengths must be positive, got fx={K[0, 0]}, fy={K[1, 1]}")
    if not np.allclose(K[2], [0.0, 0.0, 1.0]) or K[1, 0] != 0.0:
        raise IntrinsicsFormatError(f"{where}: camera matrix must be upper triangular with last row [0, 0, 1]")
    if dist.size not in _VALID_DIST_LENGTHS or not np.all(np.isfinite(dist)):
        raise IntrinsicsFormatError(
            f"{where}: distortion must hold 0, 4, 5, 8, 12 or 14 finite coefficients, got {dist.size}"
        )
    if len(size) != 2 or int(size[0]) < 1 or int(size[1]) < 1:
        raise IntrinsicsFormatError(f"{where}: image size must be two positive integers, got {size}")


def _pick(mapping: dict[str, Any], names: tuple[str, ...]) -> Any:
    for name in names:
        if name in mapping and mapping[name] is not None:
            return mapping[name]
    return None


def _load_json(path: Path) -> tuple[np.ndarray, np.ndarray, tuple[int, int] | None]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise IntrinsicsFormatError(f"{path}: not valid JSON ({err}).") from err
    if not isinstance(data, dict):
        raise IntrinsicsFormatError(f"{path}: expected a JSON object with 'K', 'dist' and 'image_size'.")
    K = _pick(data, ("K", "camera_matrix"))
    if K is None:
        raise IntrinsicsFormatError(f"{path}: no 'K' (or 'camera_matrix') entry.")
    dist = _pick(data, ("dist", "distortion_coefficients", "D"))
    size = _pick(data, ("image_size",))
    if size is None and "image_width" in data and "image_height" in data:
        size = (data["image_width"], data["image_height"])
    try:
        K_arr = np.asarray(K, dtype=np.float64)
        dist_arr = np.asarray(dist if dist is not None else [], dtype=np.float64).reshape(-1)
    except (TypeError, ValueError, IndexError) as err:
        raise IntrinsicsFormatError(f"{path}: malformed K or dist ({err}).") from err
    size_t = _parse_image_size(size, path) if size is not None else None
    return K_arr, dist_arr, size_t


def _parse_pixel_count(value: Any) -> int:
    """A positive whole number of pixels from a JSON int, an integral float or a digit string."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a pixel count")
    if isinstance(value, str):
        text = value.strip()
        if not text.isdigit():
            raise ValueError(f"{value!r} is not a pixel count")
        count = int(text)
    elif isinstance(value, (int, np.integer)):
        count = int(value)
    elif isinstance(value, (float, np.floating)) and float(value).is_integer():
        count = int(value)
    else:
        raise ValueError(f"{value!r} is not a pixel count")
    if count < 1:
        raise ValueError(f"{value!r} is not a positive pixel count")
    return count


def _parse_image_size(size: Any, path: Path) -> tuple[int, int]:
    """``image_size`` as ``[width, height]``, ``{"width": w, "height": h}`` or a ``"640x360"`` string.

    A string is never indexed character by character (``"640x360"[0]`` is ``"6"``).
    """
    try:
        if isinstance(size, str):
            parts = size.lower().replace("*", "x").replace("×", "x").split("x")
            if len(parts) != 2:
                raise ValueError(f"{size!r} does not look like WIDTHxHEIGHT")
            width, height = parts
        elif isinstance(size, dict):
            width, height = size["width"], size["height"]
        elif isinstance(size, (list, tuple)) and len(size) == 2:
            width, height = size
        else:
            raise ValueError(f"{size!r} is not [width, height]")
        return _parse_pixel_count(width), _parse_pixel_count(height)
    except (KeyError, TypeError, ValueError) as err:
        raise IntrinsicsFormatError(
            f"{path}: malformed image_size ({err}); write it as [width, height], e.g. [640, 360]."
        ) from err


def _load_filestorage(path: Path) -> tuple[np.ndarray, np.ndarray, tuple[int, int] | None]:
    try:
        fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
    except (cv2.error, SystemError) as err:  # OpenCV's parser surfaces as SystemError from Python
        raise IntrinsicsFormatError(f"{path}: OpenCV cannot parse it as YAML/XML ({err}).") from err
    try:
        if not fs.isOpened():
            raise IntrinsicsFormatError(f"{path}: OpenCV cannot parse it as YAML/XML.")
        K = None
        for name in ("camera_matrix", "K", "cameraMatrix"):
            node = fs.getNode(name)
            if not node.empty():
                K = node.mat()
                break
        if K is None:
            raise IntrinsicsFormatError(f"{path}: no 'camera_matrix' (or 'K') node.")
        dist = np.zeros(0)
        for name in ("distortion_coefficients", "dist", "D", "distCoeffs"):
            node = fs.getNode(name)
            if not node.empty():
                mat = node.mat()
                dist = mat if mat is not None else np.zeros(0)
                break
        w_node, h_node = fs.getNode("image_width"), fs.getNode("image_height")
        size = None
        if not w_node.empty() and not h_node.empty():
            size = (int(w_node.real()), int(h_node.real()))
    finally:
        fs.release()
    if K is None:
        raise IntrinsicsFormatError(f"{path}: 'camera_matrix' is not a matrix.")
    return np.asarray(K, dtype=np.float64), np.asarray(dist, dtype=np.float64).reshape(-1), size


def load_intrinsics(path: str | Path, image_size: tuple[int, int] | None = None) -> Intrinsics:
    """Read intrinsics from an OpenCV YAML/XML or a JSON file.

    Args:
        path: ``.yaml``/``.yml``/``.xml`` (cv2.FileStorage) or ``.json``.
        image_size: ``(width, height)`` to assume when the file does not say which resolution ``K``
            belongs to; required in that case.

    Raises:
        IntrinsicsFileNotFoundError: the file does not exist.
        IntrinsicsFormatError: unreadable, missing fields, or invalid values.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise IntrinsicsFileNotFoundError(
            f"Intrinsics file not found: {file}. Create one with `python run_demo.py calibrate ...` or "
            "omit --intrinsics to use an assumed field of view."
        )
    suffix = file.suffix.lower()
    if suffix == ".json":
        K, dist, size = _load_json(file)
    elif suffix in (".yaml", ".yml", ".xml"):
        K, dist, size = _load_filestorage(file)
    else:
        raise IntrinsicsFormatError(f"{file}: unsupported suffix {suffix!r}; use .yaml, .yml, .xml or .json.")
    if size is None:
        if image_size is None:
            raise IntrinsicsFormatError(
                f"{file}: the file does not state the image size K belongs to; add image_width/image_height "
                "(YAML) or image_size (JSON)."
            )
        size = (int(image_size[0]), int(image_size[1]))
    intrinsics = Intrinsics(K=K, dist=dist, size=size, assumed=False, origin=str(file))
    cx, cy = intrinsics.K[0, 2], intrinsics.K[1, 2]
    if not (-0.5 <= cx <= size[0] - 0.5 and -0.5 <= cy <= size[1] - 0.5):
        raise IntrinsicsFormatError(
            f"{file}: the principal point ({cx:.1f}, {cy:.1f}) lies outside the {size[0]}x{size[1]} image the file "
            "states; the stated image size belongs to another resolution than K (fix image_size or recalibrate)."
        )
    return intrinsics


def save_intrinsics(intrinsics: Intrinsics, path: str | Path, *, rms_px: float | None = None) -> Path:
    """Write ``intrinsics`` as OpenCV YAML/XML (by suffix) or JSON; returns the path written."""
    file = Path(path).expanduser()
    file.parent.mkdir(parents=True, exist_ok=True)
    suffix = file.suffix.lower()
    if suffix == ".json":
        data = intrinsics.to_dict()
        if rms_px is not None:
            data["rms_reprojection_error_px"] = float(rms_px)
        file.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        return file
    if suffix not in (".yaml", ".yml", ".xml"):
        raise IntrinsicsFormatError(f"{file}: unsupported suffix {suffix!r}; use .yaml, .yml, .xml or .json.")
    fs = cv2.FileStorage(str(file), cv2.FILE_STORAGE_WRITE)
    try:
        fs.write("image_width", int(intrinsics.size[0]))
        fs.write("image_height", int(intrinsics.size[1]))
        fs.write("camera_matrix", np.asarray(intrinsics.K, dtype=np.float64))
        fs.write("distortion_coefficients", np.asarray(intrinsics.dist, dtype=np.float64).reshape(1, -1)
                 if intrinsics.dist.size else np.zeros((1, 5)))
        if rms_px is not None:
            fs.write("avg_reprojection_error", float(rms_px))
    finally:
        fs.release()
    return file


def resolve_intrinsics(
    path: str | Path | None, width: int, height: int, *, hfov_deg: float = DEFAULT_HFOV_DEG
) -> Intrinsics:
    """Intrinsics for a ``width x height`` frame: from ``path`` when given (scaled), else the FOV default."""
    if path is None:
        return Intrinsics.from_fov(width, height, hfov_deg)
    return load_intrinsics(path, image_size=(width, height)).scaled_to(width, height)
