"""Construction of the live pipeline from options: backend (torch | onnxruntime) and :class:`HandPipeline`.

The CLI (:mod:`app.cli`), the benchmark (:mod:`app.benchmark_cli`) and the desktop app
(:mod:`app.ui.app`) all build their backend and pipeline here, so a new option is added in one place:

    validate_pipeline_options(args)      # refuse bad values before anything slow starts
    backend = load_backend(args.backend, args.device, args.weights, args.untrained)
    pipeline = build_pipeline(args, backend)     # intrinsics + PipelineOptions from the same args

``args`` is any object with the attributes :func:`app.cli.add_pipeline_arguments` defines
(``backend``, ``device``, ``weights``, ``untrained``, ``intrinsics``, ``hfov``, ``max_hands``, ``cue``,
``smoothing``); missing attributes take the parser's defaults.
"""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.paths import WEIGHTS_DIR

if TYPE_CHECKING:
    from app.backends import MeshBackend
    from app.intrinsics import Intrinsics
    from app.pipeline import HandPipeline, PipelineOptions
    from app.sources import FrameSource

LOG = logging.getLogger("app.construction")

UNTRAINED_CACHE_DIR: Path = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "handmesh"
WEIGHT_SUFFIXES: dict[str, str] = {"onnx": ".onnx", "torch": ".safetensors"}
BACKEND_KINDS: tuple[str, ...] = ("torch", "onnx")
DEVICES: tuple[str, ...] = ("cpu", "cuda")

# Defaults of the pipeline options (the CLI parser uses the same values).
DEFAULT_BACKEND: str = "onnx"
DEFAULT_DEVICE: str = "cpu"
DEFAULT_MAX_HANDS: int = 2
DEFAULT_CUE: str = "fused"
DEFAULT_SMOOTHING: float = 0.5
MAX_HANDS_LIMIT: int = 8


class OptionError(RuntimeError):
    """A user-facing problem with the options (the CLI and the GUI's start print it as one line; the
    running GUI shows it in its error banner)."""


def _opt(args: Any, name: str, default: Any = None) -> Any:
    return getattr(args, name, default)


# ---------------------------------------------------------------------------------------------
# Validation (cheap; runs before sources, models or windows open)


def validate_pipeline_options(args: Any) -> None:
    """Refuse out-of-range pipeline options with one actionable message.

    Raises:
        OptionError: ``--max-hands`` outside 1..8, ``--smoothing`` outside [0, 1], ``--hfov`` outside
            [1, 179], ``--device cuda`` where the backend cannot use a GPU, a ``--weights`` file whose
            suffix does not suit ``--backend``, or a weights path that does not exist.
        app.intrinsics.IntrinsicsFileNotFoundError: the ``--intrinsics`` file does not exist.
    """
    max_hands = _opt(args, "max_hands", DEFAULT_MAX_HANDS)
    if max_hands is not None and not 1 <= int(max_hands) <= MAX_HANDS_LIMIT:
        raise OptionError(f"--max-hands must be between 1 and {MAX_HANDS_LIMIT}, got {max_hands}")
    smoothing = _opt(args, "smoothing", DEFAULT_SMOOTHING)
    if smoothing is not None and not (math.isfinite(float(smoothing)) and 0.0 <= float(smoothing) <= 1.0):
        raise OptionError(f"--smoothing must be in [0, 1] (0 = off), got {smoothing}")
    hfov = _opt(args, "hfov")
    if hfov is not None and not (math.isfinite(float(hfov)) and 1.0 <= float(hfov) <= 179.0):
        raise OptionError(f"--hfov must be a horizontal field of view in [1, 179] degrees, got {hfov}")
    length = _opt(args, "hand_length_cm")
    if length is not None:
        from app.pipeline import HAND_LENGTH_RANGE_CM

        low, high = HAND_LENGTH_RANGE_CM
        if not (math.isfinite(float(length)) and low <= float(length) <= high):
            raise OptionError(f"--hand-length-cm must be between {low:g} and {high:g} (wrist crease to the tip of "
                              f"the middle finger; adults measure about 17-20 cm), got {length}")
    kind = _opt(args, "backend", DEFAULT_BACKEND)
    if kind not in BACKEND_KINDS:
        raise OptionError(f"--backend must be one of {BACKEND_KINDS}, got {kind!r}")
    device = _opt(args, "device", DEFAULT_DEVICE)
    if device not in DEVICES:
        raise OptionError(f"--device must be one of {DEVICES}, got {device!r}")
    check_device(kind, device)
    weights = _opt(args, "weights")
    if weights is not None and _opt(args, "untrained") is None:
        check_weights_suffix(Path(weights), kind)
        if not Path(weights).is_file():
            raise OptionError(f"Weights file not found: {weights}")
    intrinsics = _opt(args, "intrinsics")
    if intrinsics is not None:
        from app.intrinsics import IntrinsicsFileNotFoundError

        if not Path(intrinsics).expanduser().is_file():
            raise IntrinsicsFileNotFoundError(
                f"Intrinsics file not found: {intrinsics}. Create one with `python run_demo.py calibrate ...` or "
                "omit --intrinsics to use an assumed field of view."
            )


def check_weights_suffix(path: Path, kind: str) -> None:
    """Refuse a weights file made for the other backend (``.safetensors`` -> torch, ``.onnx`` -> onnx)."""
    expected = WEIGHT_SUFFIXES[kind]
    suffix = Path(path).suffix.lower()
    if suffix == expected:
        return
    other = next((k for k, s in WEIGHT_SUFFIXES.items() if s == suffix), None)
    hint = (f"it is a {other} file: add --backend {other}" if other is not None
            else f"the {kind} backend reads {expected} files")
    raise OptionError(f"--weights {path} does not suit --backend {kind} ({hint}).")


# ---------------------------------------------------------------------------------------------
# Backend


def default_weights(kind: str) -> Path | None:
    """The shipped model for ``kind`` ('onnx' -> ``weights/*.onnx``, 'torch' -> ``weights/*.safetensors``).

    Prefers a file whose name contains "realtime"; None when nothing is shipped.
    """
    suffix = WEIGHT_SUFFIXES.get(kind, ".safetensors")
    files = sorted(WEIGHTS_DIR.glob(f"*{suffix}"))
    if not files:
        return None
    preferred = [f for f in files if "realtime" in f.name]
    return (preferred or files)[0]


def weights_for_backend(weights: Path | str | None, kind: str) -> Path | None:
    """``weights`` when its suffix suits backend ``kind``, else None (the shipped weights are used).

    The GUI switches backends at run time: a ``--weights x.onnx`` then only applies to the onnx backend.
    """
    if weights is None or Path(weights).suffix.lower() != WEIGHT_SUFFIXES[kind]:
        return None
    return Path(weights)


def untrained_onnx(preset: str) -> Path:
    """Export (once, cached outside the repository) an untrained model of ``preset`` to ONNX."""
    from models.config import get_preset
    from models.export_onnx import export_onnx
    from models.m3dhmr import M3DHMR

    model = M3DHMR.from_config(get_preset(preset))
    path = UNTRAINED_CACHE_DIR / f"untrained_{preset}_{model.asset_sha256[:12]}.onnx"
    if not path.is_file():
        LOG.warning("exporting an untrained %s model to %s (one time, about 30 s)", preset, path)
        noisy = [logging.getLogger(name) for name in ("onnxscript", "onnx_ir", "torch.onnx")]
        levels = [logger.level for logger in noisy]
        for logger in noisy:
            logger.setLevel(logging.WARNING)
        try:
            export_onnx(model, path)
        finally:
            for logger, level in zip(noisy, levels):
                logger.setLevel(level)
    return path


def check_device(kind: str, device: str) -> None:
    """Refuse ``--device cuda`` when the chosen backend cannot run on a GPU here.

    Raises:
        OptionError: torch sees no CUDA device, or onnxruntime offers no CUDA provider.
    """
    if device != "cuda":
        return
    import torch

    if kind == "torch" and not torch.cuda.is_available():
        raise OptionError("--device cuda was requested but torch sees no CUDA device; use --device cpu.")
    if kind == "onnx":
        from app.backends.onnx_backend import cuda_provider_problem

        problem = cuda_provider_problem()
        if problem is not None:
            raise OptionError(f"--device cuda with --backend onnx: {problem}; use --device cpu.")


def load_backend(kind: str, device: str, weights: Path | None, untrained: str | None) -> MeshBackend:
    """Create the mesh backend chosen by the options and log its provider/device.

    Shipped weights (listed in a ``manifest.json`` next to the file) are verified against their sha256.

    Raises:
        OptionError: no weights, wrong suffix, missing file, or an unusable device.
        models.errors.NetworkError: corrupt or foreign weights (see :func:`app.backends.create_backend`).
    """
    from app.backends import create_backend
    from app.backends.torch_backend import TorchBackend

    check_device(kind, device)
    if untrained is not None:
        LOG.warning("using an UNTRAINED %s model: meshes are meaningless, timings are real", untrained)
        if kind == "torch":
            from models.config import get_preset
            from models.m3dhmr import M3DHMR

            backend: MeshBackend = TorchBackend(M3DHMR.from_config(get_preset(untrained)), device=device)
        else:
            backend = create_backend("onnx", untrained_onnx(untrained), device=device)
    else:
        path = weights or default_weights(kind)
        if path is None:
            raise OptionError(
                f"No {kind} weights in {WEIGHTS_DIR}: pass --weights FILE, or --untrained realtime_slim to time an "
                "untrained model."
            )
        check_weights_suffix(Path(path), kind)
        if not Path(path).is_file():
            raise OptionError(f"Weights file not found: {path}")
        backend = create_backend(kind, Path(path), device=device)  # type: ignore[arg-type]
    LOG.info("backend: %s", getattr(backend, "name", type(backend).__name__))
    return backend


def backend_report(backend: Any) -> dict[str, Any]:
    """What really runs: ``{"name", "device", "providers"}`` of a backend (for reports and logs)."""
    info: dict[str, Any] = {"name": str(getattr(backend, "name", type(backend).__name__))}
    device = getattr(backend, "device", None)
    info["device"] = str(getattr(device, "type", device)) if device is not None else None
    providers = getattr(backend, "providers", None)
    if providers is None and hasattr(backend, "session"):
        providers = list(backend.session.get_providers())
    if providers is not None:
        info["providers"] = list(providers)
        if info["device"] is None:
            info["device"] = "cuda" if any(p in ("CUDAExecutionProvider", "TensorrtExecutionProvider")
                                           for p in providers[:1]) else "cpu"
    return info


# ---------------------------------------------------------------------------------------------
# Source and pipeline


def validate_source_options(args: Any) -> None:
    """Refuse an empty ``--source``, ``--width``/``--height`` < 1 and a ``--fps`` that is not a positive number.

    Raises:
        OptionError: with the option's name and value.
    """
    source = _opt(args, "source")
    if source is not None and not str(source).strip():
        raise OptionError("--source is empty; give a camera index (0), a video file, an image folder or 'sample'")
    for name in ("width", "height"):
        value = _opt(args, name)
        if value is not None and int(value) < 1:
            raise OptionError(f"--{name} must be a positive number of pixels, got {value}")
    fps = _opt(args, "fps")
    if fps is not None and not (math.isfinite(float(fps)) and float(fps) > 0.0):
        raise OptionError(f"--fps must be a positive frame rate, got {fps}")


def open_source_option(args: Any) -> FrameSource:
    """The frame source named by ``--source`` (with ``--loop``, ``--width``, ``--height``, ``--fps``).

    Raises:
        app.sources.SourceError: the camera, file or folder cannot be opened.
    """
    from app.sources import open_source

    validate_source_options(args)
    return open_source(_opt(args, "source"), loop=bool(_opt(args, "loop", False)), width=_opt(args, "width"),
                       height=_opt(args, "height"), fps=_opt(args, "fps"))


def load_intrinsics_option(path: Path | str | None) -> Intrinsics | None:
    """The ``--intrinsics`` file loaded (None: the field-of-view default is used)."""
    if path is None:
        return None
    from app.intrinsics import load_intrinsics

    return load_intrinsics(path)


def pipeline_options(args: Any) -> PipelineOptions:
    """:class:`PipelineOptions` from the options (max hands, cue, smoothing strength, field of view, hand
    length, depth ensemble)."""
    from app.intrinsics import DEFAULT_HFOV_DEG
    from app.pipeline import PipelineOptions
    from app.smoothing import SmoothingParams

    hfov = _opt(args, "hfov")
    return PipelineOptions(
        max_hands=int(_opt(args, "max_hands", DEFAULT_MAX_HANDS)),
        cue=str(_opt(args, "cue", DEFAULT_CUE)),
        smoothing=SmoothingParams.from_strength(float(_opt(args, "smoothing", DEFAULT_SMOOTHING))),
        hfov_deg=float(hfov) if hfov is not None else DEFAULT_HFOV_DEG,
        hand_length_cm=_opt(args, "hand_length_cm"),
        depth_ensemble=bool(_opt(args, "depth_ensemble", True)),
    )


def build_pipeline(args: Any, backend: MeshBackend | None = None, *,
                   options: PipelineOptions | None = None, intrinsics: Intrinsics | None = None) -> HandPipeline:
    """HandPipeline from options (backend built from them unless given; intrinsics loaded unless given).

    The options are validated first when the backend is built here (a caller passing ``backend`` has
    validated them already, e.g. the GUI at start).
    """
    from app.pipeline import HandPipeline

    if backend is None:
        validate_pipeline_options(args)
    if intrinsics is None:
        intrinsics = load_intrinsics_option(_opt(args, "intrinsics"))
    if options is None:
        options = pipeline_options(args)
    backend = backend or load_backend(_opt(args, "backend", DEFAULT_BACKEND), _opt(args, "device", DEFAULT_DEVICE),
                                      _opt(args, "weights"), _opt(args, "untrained"))
    return HandPipeline(backend, intrinsics=intrinsics, options=options)


__all__ = [
    "OptionError", "UNTRAINED_CACHE_DIR", "WEIGHT_SUFFIXES", "validate_pipeline_options", "check_weights_suffix",
    "default_weights", "weights_for_backend", "untrained_onnx", "check_device", "load_backend", "backend_report",
    "validate_source_options", "open_source_option", "load_intrinsics_option", "pipeline_options", "build_pipeline",
]
