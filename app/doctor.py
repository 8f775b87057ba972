"""Pre-flight doctor: checks everything the demo needs and prints a table with a fix per failure.

Each check yields a :class:`Check` with a status:

* ``ok``    - present and working;
* ``warn``  - the demo still runs, with less (no CUDA, no camera: the bundled clip is used, ...);
* ``fail``  - the demo cannot run until the printed fix is applied.

``python run_demo.py doctor`` exits 0 only when no check failed. Slow or crash-prone probes (a GL
context, a Qt platform plugin, cameras) run in child processes with short timeouts so the doctor
itself never hangs or aborts.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Literal

from models.paths import REPO_ROOT, WEIGHTS_DIR

Status = Literal["ok", "warn", "fail"]

REQUIREMENTS_FILE: Path = REPO_ROOT / "requirements.txt"
WEIGHTS_MANIFEST: Path = WEIGHTS_DIR / "manifest.json"
MEDIAPIPE_HAND_MODELS: tuple[str, ...] = (
    "modules/palm_detection/palm_detection_full.tflite",
    "modules/hand_landmark/hand_landmark_full.tflite",
)
REQUIRED_PYTHON: tuple[int, int] = (3, 11)
MIN_FREE_DISK_GIB: float = 1.0
PROBE_TIMEOUT_S: float = 20.0
CAMERA_TIMEOUT_S: float = 4.0
SETUP_HINT = "run `make demo` (or `make test`) from the repository root to install the pinned requirements"


@dataclass(frozen=True)
class Check:
    """One line of the doctor's table."""

    name: str
    status: Status
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class Requirement:
    """A pinned requirement from requirements.txt (``name==version``)."""

    name: str
    version: str | None


def parse_requirements(path: Path) -> list[Requirement]:
    """Read ``name==version`` lines (comments, options and markers ignored) from a requirements file.

    Raises:
        FileNotFoundError: when the file does not exist.
    """
    requirements: list[Requirement] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        match = re.match(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*(?:==\s*([^\s,]+))?", line)
        if match:
            requirements.append(Requirement(match.group(1), match.group(2)))
    return requirements


def _run_probe(code: str, env: dict[str, str] | None = None, timeout: float = PROBE_TIMEOUT_S) -> tuple[bool, str]:
    """Run ``code`` in a child Python; return (succeeded, last line of output or the reason it failed)."""
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
            cwd=REPO_ROOT,
        )
    except subprocess.TimeoutExpired:
        return False, f"timed out after {timeout:.0f} s"
    lines = (proc.stdout.strip() or proc.stderr.strip() or f"exit code {proc.returncode}").splitlines()
    return proc.returncode == 0, lines[-1] if lines else ""


def check_python() -> Check:
    found = sys.version_info[:2]
    detail = f"{platform.python_implementation()} {platform.python_version()}"
    if found == REQUIRED_PYTHON:
        return Check("python", "ok", detail)
    return Check("python", "fail", detail, f"use Python {REQUIRED_PYTHON[0]}.{REQUIRED_PYTHON[1]} (delete .venv and rerun make)")


def check_packages(requirements: Iterable[Requirement]) -> list[Check]:
    """One check per pinned requirement: missing fails, a different version warns."""
    checks = []
    for req in requirements:
        name = f"package {req.name}"
        try:
            installed = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            pin = f"{req.name}=={req.version}" if req.version else req.name
            checks.append(Check(name, "fail", "not installed", f"{SETUP_HINT}, or `pip install {pin}`"))
            continue
        if req.version and installed.split("+", 1)[0] != req.version.split("+", 1)[0]:
            checks.append(Check(name, "warn", f"{installed} (pinned {req.version})", f"`pip install {req.name}=={req.version}`"))
        else:
            checks.append(Check(name, "ok", installed))
    return checks


def check_torch() -> Check:
    if importlib.util.find_spec("torch") is None:
        return Check("torch device", "fail", "torch not importable", SETUP_HINT)
    import torch

    if torch.cuda.is_available():
        return Check("torch device", "ok", f"CUDA {torch.version.cuda}: {torch.cuda.get_device_name(0)}")
    return Check("torch device", "warn", f"CPU only (torch {torch.__version__}, {torch.get_num_threads()} threads)",
                 "for GPU speed install the CUDA build of torch 2.13.0 and an NVIDIA driver")


def check_onnxruntime() -> Check:
    if importlib.util.find_spec("onnxruntime") is None:
        return Check("onnxruntime providers", "fail", "onnxruntime not importable", SETUP_HINT)
    import onnxruntime

    providers = onnxruntime.get_available_providers()
    if "CPUExecutionProvider" not in providers:
        return Check("onnxruntime providers", "fail", ", ".join(providers), "reinstall onnxruntime-gpu")
    detail = ", ".join(providers)
    if "CUDAExecutionProvider" in providers and not _nvidia_gpu_present():
        detail += " (no NVIDIA GPU found: CPU provider will be used)"
    return Check("onnxruntime providers", "ok", detail)


def _nvidia_gpu_present() -> bool:
    return Path("/dev/nvidia0").exists() or shutil.which("nvidia-smi") is not None


def check_mediapipe_models() -> Check:
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        return Check("mediapipe hand models", "fail", "mediapipe not installed", SETUP_HINT)
    root = Path(list(spec.submodule_search_locations)[0])
    missing = [rel for rel in MEDIAPIPE_HAND_MODELS if not (root / rel).is_file()]
    if missing:
        return Check("mediapipe hand models", "fail", "missing " + ", ".join(missing),
                     "install mediapipe==0.10.21, the last release that bundles its hand models")
    return Check("mediapipe hand models", "ok", f"palm detector + landmark model in {root}")


def _display_available() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def check_open3d() -> Check:
    if importlib.util.find_spec("open3d") is None:
        return Check("open3d", "fail", "open3d not importable", SETUP_HINT)
    ok, detail = _run_probe("import open3d; print(open3d.__version__)")
    if not ok:
        return Check("open3d", "fail", detail, "install the system libraries (libusb-1.0-0 libgl1 libegl1): `make demo` as root")
    version = detail
    if not _display_available():
        if shutil.which("Xvfb"):
            return Check("open3d", "warn", f"{version}; no display (DISPLAY unset), Xvfb is installed",
                         "run on a desktop session, or use --no-gui --record for headless output")
        return Check("open3d", "fail", f"{version}; no display and no Xvfb",
                     "run on a desktop session or `apt-get install xvfb`")
    gl_ok, gl_detail = _run_probe(
        "import open3d as o3d; v = o3d.visualization.Visualizer(); "
        "ok = v.create_window(visible=False, width=64, height=64); v.destroy_window(); "
        "print('GL context ok' if ok else 'create_window failed'); raise SystemExit(0 if ok else 1)"
    )
    if gl_ok:
        return Check("open3d", "ok", f"{version}; {gl_detail} on {os.environ.get('DISPLAY', 'wayland')}")
    return Check("open3d", "fail", f"{version}; {gl_detail}", "install libgl1-mesa-dri libegl1 (software GL) or a GPU driver")


def check_qt() -> Check:
    if importlib.util.find_spec("PyQt6") is None:
        return Check("qt platform", "fail", "PyQt6 not importable", SETUP_HINT)
    platform_name = os.environ.get("QT_QPA_PLATFORM") or ("xcb" if _display_available() else "offscreen")
    ok, detail = _run_probe(
        "from PyQt6.QtWidgets import QApplication; app = QApplication([]); print(app.platformName())",
        env={"QT_QPA_PLATFORM": platform_name},
    )
    if ok and platform_name == "offscreen":
        return Check("qt platform", "warn", "offscreen only (no display)", "run on a desktop session to see the window")
    if ok:
        return Check("qt platform", "ok", f"plugin '{detail}'")
    return Check("qt platform", "fail", f"'{platform_name}': {detail}",
                 "install Qt's xcb libraries (libxkbcommon-x11-0 libxcb-cursor0 ...): `make demo` as root")


def check_cameras(indices: Iterable[int] = range(4)) -> Check:
    """Try to open cameras 0..3 in child processes, each with a short timeout (never blocks the doctor)."""
    indices = list(indices)
    if sys.platform.startswith("linux"):
        candidates = [i for i in indices if Path(f"/dev/video{i}").exists()]
    else:
        candidates = indices
    opened = []
    for index in candidates:
        ok, _ = _run_probe(
            f"import cv2; c = cv2.VideoCapture({index}); ok = c.isOpened() and c.read()[0]; c.release(); "
            "raise SystemExit(0 if ok else 1)",
            timeout=CAMERA_TIMEOUT_S,
        )
        if ok:
            opened.append(index)
    if opened:
        return Check("cameras", "ok", "opened index " + ", ".join(map(str, opened)))
    return Check("cameras", "warn", "no camera opened (indices 0-3)",
                 "plug in a webcam; the demo falls back to the bundled sample clip")


def check_disk(path: Path = REPO_ROOT) -> Check:
    free_gib = shutil.disk_usage(path).free / 2**30
    if free_gib < MIN_FREE_DISK_GIB:
        return Check("free disk", "warn", f"{free_gib:.1f} GiB free", "free some space: recordings need room")
    return Check("free disk", "ok", f"{free_gib:.1f} GiB free")


def check_weights(manifest_path: Path = WEIGHTS_MANIFEST) -> Check:
    """Verify every file the weights manifest lists against its sha256.

    Malformed entries (no ``path``, no ``sha256``) and paths leaving the manifest's folder
    (``../../etc/passwd``) fail the check; such paths are never opened or hashed.
    """
    from models.weights_manifest import ManifestError, check_entry, load_manifest

    if not manifest_path.is_file():
        where = manifest_path.relative_to(REPO_ROOT) if manifest_path.is_relative_to(REPO_ROOT) else manifest_path
        return Check("weights", "warn", f"no manifest at {where} (no shipped weights yet)",
                     "train with `python -m training.train` or check out a release that ships weights")
    try:
        manifest = load_manifest(manifest_path)
    except ManifestError as exc:
        return Check("weights", "fail", f"unreadable manifest: {exc}", "restore weights/manifest.json from git")
    problems = list(manifest.problems)
    for entry in manifest.entries:
        problem = check_entry(manifest, entry)
        if problem is not None:
            problems.append(problem)
    if problems:
        return Check("weights", "fail", "; ".join(problems), "restore the weights with `git checkout -- weights/`")
    return Check("weights", "ok", f"{len(manifest.entries)} file(s) match the manifest")


def check_hand_asset() -> Check:
    """Load the hand asset the network and viewer need, which verifies its content hash."""
    from models.hand.asset import HandAssetError, load_hand_asset

    try:
        asset = load_hand_asset()
    except HandAssetError as exc:
        return Check("hand asset", "fail", str(exc), "restore assets/ with `git checkout -- assets/` or run `python -m models.hand.build`")
    return Check("hand asset", "ok", f"{asset.version}, {asset.template_vertices.shape[0]} vertices, sha256 {asset.sha256[:12]}")


def check_skin_bounds(path: Path | None = None) -> Check:
    """Load the skin-thickness clamp's bounds (``assets/skin_thickness_bounds.json``), which the shipped
    fused network needs in torch (its ONNX export carries them as constants)."""
    import numpy as np

    from models.errors import TopologyError
    from models.hand.asset import HandAssetError, load_hand_asset
    from models.skin_thickness import BOUNDS_PATH, load_thickness_bounds

    where = BOUNDS_PATH if path is None else path
    try:
        bounds = load_thickness_bounds(where, num_vertices=len(load_hand_asset().template_vertices))
    except (TopologyError, HandAssetError) as exc:
        return Check("skin bounds", "fail", str(exc),
                     "restore assets/ with `git checkout -- assets/` or run `python -m training.skin_bounds`")
    return Check("skin bounds", "ok", f"{bounds.size} bounds, median {1000 * float(np.median(bounds)):.1f} mm")


def run_checks(requirements_file: Path = REQUIREMENTS_FILE, probe_cameras: bool = True) -> list[Check]:
    """Run every check, in the order they are printed."""
    checks = [check_python()]
    try:
        checks += check_packages(parse_requirements(requirements_file))
    except FileNotFoundError:
        checks.append(Check("requirements", "fail", f"{requirements_file} not found", "run from a full checkout"))
    steps: list[Callable[[], Check]] = [check_torch, check_onnxruntime, check_mediapipe_models, check_open3d, check_qt]
    if probe_cameras:
        steps.append(check_cameras)
    steps += [check_disk, check_hand_asset, check_skin_bounds, check_weights]
    checks += [step() for step in steps]
    return checks


def format_table(checks: list[Check]) -> str:
    """Render the checks as a fixed-width text table (fix column only where something is wrong)."""
    marks = {"ok": "OK", "warn": "WARN", "fail": "FAIL"}
    name_w = max(len(c.name) for c in checks)
    detail_w = min(90, max(len(c.detail) for c in checks))
    lines = [f"{'check':<{name_w}}  {'status':<6}  {'detail':<{detail_w}}  fix", "-" * (name_w + detail_w + 20)]
    for c in checks:
        detail = c.detail if len(c.detail) <= detail_w else c.detail[: detail_w - 3] + "..."
        lines.append(f"{c.name:<{name_w}}  {marks[c.status]:<6}  {detail:<{detail_w}}  {c.fix if c.status != 'ok' else ''}".rstrip())
    failed = sum(c.status == "fail" for c in checks)
    warned = sum(c.status == "warn" for c in checks)
    lines.append("")
    lines.append(f"{failed} failed, {warned} warnings: " + ("the demo cannot run yet." if failed else "ready to run the demo."))
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON instead of the table")
    parser.add_argument("--requirements", type=Path, default=REQUIREMENTS_FILE,
                        help="requirements file whose pinned packages are checked (default: requirements.txt)")
    parser.add_argument("--no-cameras", action="store_true", help="skip probing cameras 0-3")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``run_demo.py doctor``; returns the process exit code (0 = ready)."""
    checks = run_checks(args.requirements, probe_cameras=not args.no_cameras)
    ready = not any(c.status == "fail" for c in checks)
    if args.json:
        print(json.dumps({"ready": ready, "checks": [asdict(c) for c in checks]}, indent=2))
    else:
        print(format_table(checks))
    return 0 if ready else 1
