"""Cached MediaPipe landmarks: record them on a CPU machine, replay them through the live pipeline elsewhere.

A GPU machine without MediaPipe can still run the real pipeline on a real clip: detection is replaced
by the landmarks MediaPipe found earlier, and everything after it (crops, the network, DGP, smoothing)
runs for real. The report then separates the GPU-side work from the CPU-side detector cost, which the
cache carries as measured on the machine that recorded it.

    # on a machine with MediaPipe (CPU): landmarks + per-frame detector time, and a copy of the clip
    python -m app.landmark_cache record --source ../shared/real/open_palm_640x360.mp4 \\
        --out .gpu_carry/open_palm_640x360.landmarks.jsonl --copy-video
    # anywhere (CUDA or CPU): the pipeline on the clip, one pass per network variant
    python -m app.landmark_cache replay --cache .gpu_carry/open_palm_640x360.landmarks.jsonl \\
        --weights weights/realtime_slim.safetensors --device cuda --variants eager:fp32 eager:bf16 graphs:bf16

Cache file (JSON Lines): a header ``{"format": CACHE_FORMAT, "video", "video_sha256", "frames", "fps",
"image_size", "K", "intrinsics_origin", "detector", "machine", "detect_ms"}``, then one record per frame in
the schema of the recorder's JSONL (``app.recording``): ``{"index", "t" (s), "image_size", "K",
"timings_ms": {"detect": ms}, "hands": [{"handedness", "detection_score", "landmarks_img" (21x2 px),
"landmarks_z" (21), "world_landmarks" (21x3 m), "box_img"}]}``. A recording JSONL written by
``run_demo.py --jsonl`` is read too: it has the 2D landmarks, handedness, scores, ``K`` and the detect
time of the run that wrote it, but no ``landmarks_z``/``world_landmarks`` (3D cues read as zeros,
``LandmarkCache.has_world`` False).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from app.detection import NUM_LANDMARKS, HandDetection, landmarks_box, suppress_duplicates
from app.intrinsics import DEFAULT_HFOV_DEG, Intrinsics
from models.file_hash import sha256_file

CACHE_FORMAT: str = "handmesh-landmark-cache/1"


class LandmarkCacheError(ValueError):
    """A landmark cache (or recording JSONL) is missing, malformed, or does not fit the video."""


@dataclass(frozen=True)
class CachedFrame:
    """One frame's detections. ``K`` ``(3, 3)`` px; ``detect_ms``: detector time when recorded (None if unknown)."""

    index: int
    t: float
    image_size: tuple[int, int]
    K: np.ndarray
    detect_ms: float | None
    hands: tuple[HandDetection, ...]


@dataclass(frozen=True)
class LandmarkCache:
    """A loaded cache: header (empty for a recording JSONL), frames in file order, whether 3D cues exist."""

    path: Path
    header: dict[str, Any]
    frames: tuple[CachedFrame, ...]
    has_world: bool

    def video_path(self) -> Path | None:
        """The clip named by the header (relative names are beside the cache file), or None."""
        name = self.header.get("video")
        if not name:
            return None
        p = Path(name)
        return p if p.is_absolute() else self.path.parent / p

    def detect_ms(self) -> np.ndarray:
        """``(N,)`` recorded detector milliseconds of the frames that have one."""
        return np.array([f.detect_ms for f in self.frames if f.detect_ms is not None], np.float64)


def _percentiles(values: Sequence[float] | np.ndarray) -> dict[str, float]:
    arr = np.asarray(values, np.float64)
    if arr.size == 0:
        return {"p50": float("nan"), "p95": float("nan"), "mean": float("nan"), "n": 0}
    return {"p50": float(np.percentile(arr, 50)), "p95": float(np.percentile(arr, 95)), "mean": float(arr.mean()),
            "n": int(arr.size)}


def _hand_from_json(raw: dict[str, Any], where: str) -> tuple[HandDetection, bool]:
    try:
        lm = np.asarray(raw["landmarks_img"], np.float32).reshape(NUM_LANDMARKS, 2)
        handedness = str(raw["handedness"]).lower()
        score = float(raw.get("detection_score", raw.get("score", 1.0)))
    except (KeyError, ValueError, TypeError) as err:
        raise LandmarkCacheError(f"{where}: a hand lacks 21x2 'landmarks_img' or 'handedness' ({err})") from err
    if handedness not in ("left", "right"):
        raise LandmarkCacheError(f"{where}: handedness must be 'left' or 'right', got {handedness!r}")
    has_world = "world_landmarks" in raw
    z = np.asarray(raw.get("landmarks_z", np.zeros(NUM_LANDMARKS)), np.float32).reshape(NUM_LANDMARKS)
    world = np.asarray(raw.get("world_landmarks", np.zeros((NUM_LANDMARKS, 3))), np.float32).reshape(NUM_LANDMARKS, 3)
    return HandDetection(landmarks_img=lm, landmarks_z=z, world_landmarks=world, handedness=handedness,
                         score=score, box_img=landmarks_box(lm)), has_world


def load_landmark_cache(path: str | Path) -> LandmarkCache:
    """Read a cache written by :func:`record_landmark_cache` or a recording JSONL of ``run_demo.py --jsonl``.

    Raises:
        LandmarkCacheError: missing file, broken JSON, or records without the needed fields.
    """
    path = Path(path)
    if not path.is_file():
        raise LandmarkCacheError(
            f"landmark cache {path} not found; make it on a machine with MediaPipe: "
            f"`python -m app.landmark_cache record --source CLIP --out {path} --copy-video`"
        )
    header: dict[str, Any] = {}
    frames: list[CachedFrame] = []
    world_flags: list[bool] = []
    with path.open("r", encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise LandmarkCacheError(f"{path}:{number}: not JSON ({err})") from err
            if "format" in record:
                if record["format"] != CACHE_FORMAT:
                    raise LandmarkCacheError(f"{path}: unknown cache format {record['format']!r}, expected {CACHE_FORMAT}")
                header = record
                continue
            where = f"{path}:{number}"
            try:
                size = (int(record["image_size"][0]), int(record["image_size"][1]))
                K = np.asarray(record["K"], np.float64).reshape(3, 3)
                index, t = int(record["index"]), float(record["t"])
            except (KeyError, ValueError, TypeError, IndexError) as err:
                raise LandmarkCacheError(f"{where}: a frame record needs index, t, image_size and K ({err})") from err
            hands = []
            for raw in record.get("hands", []):
                hand, has_world = _hand_from_json(raw, where)
                hands.append(hand)
                world_flags.append(has_world)
            detect = record.get("timings_ms", {}).get("detect")
            frames.append(CachedFrame(index=index, t=t, image_size=size, K=K,
                                      detect_ms=float(detect) if detect is not None else None, hands=tuple(hands)))
    if not frames:
        raise LandmarkCacheError(f"{path} holds no frame record")
    return LandmarkCache(path=path, header=header, frames=tuple(frames), has_world=bool(world_flags) and all(world_flags))


class CachedDetector:
    """Stands in for :class:`app.detection.HandDetector`: returns the cached detections of each frame.

    Frames are matched by time stamp (to the millisecond), else by order of the calls.
    """

    def __init__(self, cache: LandmarkCache) -> None:
        self._by_ms = {int(round(f.t * 1000.0)): f for f in cache.frames}
        self._by_order = list(cache.frames)
        self._next = 0

    def detect(self, bgr: np.ndarray, t: float | None = None) -> list[HandDetection]:
        frame = self._by_ms.get(int(round(t * 1000.0))) if t is not None else None
        if frame is None and self._next < len(self._by_order):
            frame = self._by_order[self._next]
        self._next += 1
        # caches recorded before the live detector dropped second readings of a hand get the same treatment
        return suppress_duplicates(list(frame.hands)) if frame is not None else []

    def reset(self) -> None:
        self._next = 0

    def close(self) -> None:
        pass


def _machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text(errors="replace").splitlines() if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "python": platform.python_version(), "host": platform.node(),
            "load_average_1min": round(os.getloadavg()[0], 2)}


def record_landmark_cache(
    source: Path,
    out: Path,
    *,
    max_hands: int = 2,
    hfov_deg: float = DEFAULT_HFOV_DEG,
    intrinsics_file: Path | None = None,
    copy_video: bool = False,
    max_frames: int | None = None,
) -> dict[str, Any]:
    """Run MediaPipe (tracking mode, as the app does) over ``source`` and write the cache to ``out``.

    The detector time of every frame is measured alone (no network running beside it). With
    ``copy_video`` the clip is copied beside the cache, so the folder is all a GPU run needs.
    Returns the header.
    """
    import mediapipe

    from app.detection import HandDetector
    from app.intrinsics import load_intrinsics
    from app.sources import VideoFileSource

    records: list[dict[str, Any]] = []
    times: list[float] = []
    with VideoFileSource(source) as video, HandDetector(max_hands=max_hands, mirrored_input=False) as detector:
        fps = video.fps
        intr: Intrinsics | None = None
        while max_frames is None or len(records) < max_frames:
            frame = video.read()
            if frame is None:
                break
            if intr is None:
                size = (frame.width, frame.height)
                intr = (load_intrinsics(intrinsics_file, size) if intrinsics_file is not None
                        else Intrinsics.from_fov(frame.width, frame.height, hfov_deg))
            t0 = time.perf_counter()
            detections = detector.detect(frame.bgr, frame.t)
            ms = (time.perf_counter() - t0) * 1e3
            times.append(ms)
            records.append({
                "index": frame.index,
                "t": round(frame.t, 6),
                "image_size": [frame.width, frame.height],
                "K": np.round(intr.K, 6).tolist(),
                "timings_ms": {"detect": round(ms, 3)},
                "hands": [{
                    "handedness": d.handedness,
                    "detection_score": round(float(d.score), 4),
                    "landmarks_img": np.round(d.landmarks_img.astype(np.float64), 3).tolist(),
                    "landmarks_z": np.round(d.landmarks_z.astype(np.float64), 3).tolist(),
                    "world_landmarks": np.round(d.world_landmarks.astype(np.float64), 5).tolist(),
                    "box_img": np.round(d.box_img.astype(np.float64), 2).tolist(),
                } for d in detections],
            })
    if not records or intr is None:
        raise LandmarkCacheError(f"{source} gave no frame")
    if intr.has_distortion:
        raise LandmarkCacheError("the cache stores ideal pinhole K only; use intrinsics without lens distortion")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    video_name = str(Path(source).resolve())
    if copy_video:
        target = out.parent / Path(source).name
        if target.resolve() != Path(source).resolve():
            shutil.copyfile(source, target)
        video_name = target.name
    header = {
        "format": CACHE_FORMAT,
        "video": video_name,
        "video_sha256": sha256_file(Path(source)),
        "frames": len(records),
        "fps": fps,
        "image_size": records[0]["image_size"],
        "K": records[0]["K"],
        "intrinsics_origin": intr.origin,
        "detector": f"mediapipe {mediapipe.__version__} HandLandmarker (VIDEO mode), max_hands {max_hands}",
        "machine": _machine(),
        "detect_ms": _percentiles(times),
        "frames_with_hands": sum(1 for r in records if r["hands"]),
        "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    tmp = out.with_suffix(out.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(json.dumps(header, separators=(",", ":")) + "\n")
        for record in records:
            handle.write(json.dumps(record, separators=(",", ":")) + "\n")
    tmp.replace(out)
    return header


# ------------------------------------------------------------------------------------------------ replay


def _decode(video: Path, max_frames: int | None) -> list[tuple[Any, float]]:
    from app.sources import VideoFileSource

    frames = []
    with VideoFileSource(video) as source:
        while max_frames is None or len(frames) < max_frames:
            t0 = time.perf_counter()
            frame = source.read()
            ms = (time.perf_counter() - t0) * 1e3
            if frame is None:
                break
            frames.append((frame, ms))
    return frames


def replay_benchmark(
    cache: LandmarkCache,
    video: Path,
    model: Any,
    device: str,
    variants: Sequence[tuple[str, str]] = (("eager", "fp32"),),
    *,
    warmup_frames: int = 10,
    max_frames: int | None = None,
    compile_backend: str = "inductor",
    cue: str | None = None,
    depth_ensemble: bool = True,
) -> dict[str, Any]:
    """The live pipeline (:class:`app.pipeline.HandPipeline`, MediaPipe replaced by the cached landmarks)
    on the clip, once per (mode, precision) variant; per-stage p50/p95 ms and FPS estimates.

    ``cue``: the app's cue (default: ``fused`` for a fused model when the cache has 3D landmarks, as the app
    runs it, else ``mediapipe``); ``depth_ensemble`` as ``PipelineOptions`` (the app's default: on).

    ``detect`` in the pipeline's timings is the cache replay (lookup, undistortion, tracking), not
    MediaPipe: the detector's cost is the cache's recorded ``detect`` time, reported separately as
    ``cpu_detector_ms`` and combined into the FPS estimates: ``fps_sequential`` = 1000 / (read + detector +
    the rest), ``fps_overlapped`` = 1000 / max(read + detector, the rest) (the app's headless default
    overlaps detection of frame n+1 with the network of frame n).
    """
    from app.backends.torch_backend import TorchBackend
    from app.pipeline import HandPipeline, PipelineOptions

    fused_model = bool(getattr(model.config, "fused_cue", False))
    if cue is None:
        cue = "fused" if fused_model and cache.has_world else "mediapipe"
    if cue == "fused" and not cache.has_world:
        raise LandmarkCacheError(f"{cache.path} holds no 3D landmarks (a recording JSONL?); the fused cue needs "
                                 "a cache written by python -m app.landmark_cache record")
    options = PipelineOptions(max_hands=2, cue=cue, depth_ensemble=depth_ensemble)
    ensemble = cue == "fused" and depth_ensemble and fused_model
    frames = _decode(video, max_frames)
    if len(frames) <= warmup_frames:
        raise LandmarkCacheError(f"{video} gave {len(frames)} frames; need more than the {warmup_frames} warm-up frames")
    first = frames[0][0]
    cached = cache.frames[0]
    if cached.image_size != (first.width, first.height):
        raise LandmarkCacheError(f"cache {cache.path} is for {cached.image_size} frames, the video has {first.width}x{first.height}")
    intrinsics = Intrinsics(K=cached.K, dist=np.zeros(0), size=cached.image_size, assumed=True, origin=f"landmark cache {cache.path.name}")
    hands_per_frame = sorted({len(f.hands) for f in cache.frames} - {0})
    detector_ms = cache.detect_ms()
    detector = _percentiles(detector_ms)
    read = _percentiles([ms for _, ms in frames[warmup_frames:]])
    runs: dict[str, Any] = {}
    for mode, precision in variants:
        key = f"{mode}:{precision}"
        try:
            backend = TorchBackend(model, device, mode, precision, compile_backend)
            backend.prepare(hands_per_frame, ensemble=ensemble)
            pipeline = HandPipeline(backend, intrinsics=intrinsics, options=options,
                                    detector=CachedDetector(cache))  # type: ignore[arg-type]
        except Exception as err:  # one variant failing (e.g. graphs without CUDA) must not stop the others
            runs[key] = {"status": f"failed: {type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}"}
            continue
        stages: dict[str, list[float]] = {}
        totals: list[float] = []
        hands = 0
        depths: list[float] = []
        for i, (frame, _) in enumerate(frames):
            t0 = time.perf_counter()
            result = pipeline.process(frame)
            total = (time.perf_counter() - t0) * 1e3
            if i < warmup_frames:
                continue
            for stage, ms in result.timings_ms.items():
                stages.setdefault(stage, []).append(ms)
            totals.append(total)
            hands += len(result.hands)
            depths += [float(h.translation_cam[2]) for h in result.hands]
        pipeline.close()
        stage_stats = {k: _percentiles(v) for k, v in stages.items()}
        rest = _percentiles(totals)["p50"]
        row: dict[str, Any] = {
            "status": "ok",
            "backend": backend.name,
            "fallback": backend.fallback_reason,
            "prepare_s": {str(b): round(s, 2) for b, s in backend.prepare_s.items()},
            "frames": len(totals),
            "hands_per_frame_mean": hands / max(len(totals), 1),
            "wrist_depth_m_median": float(np.median(depths)) if depths else None,
            "stages_ms": stage_stats,
            "pipeline_without_detector_ms": _percentiles(totals),
            "fps_pipeline_without_detector": 1000.0 / rest if rest > 0 else None,
        }
        if detector["n"]:
            row["fps_sequential"] = 1000.0 / (read["p50"] + detector["p50"] + rest)
            row["fps_overlapped"] = 1000.0 / max(read["p50"] + detector["p50"], rest)
        runs[key] = row
    return {
        "video": str(video),
        "cache": str(cache.path),
        "cache_has_3d_landmarks": cache.has_world,
        "frames_decoded": len(frames),
        "warmup_frames": warmup_frames,
        "cue": cue + (" with the depth ensemble" if ensemble else "") + " (cached MediaPipe landmarks)",
        "read_ms": read,
        "cpu_detector_ms": {**detector, "source": "recorded in the cache", "detector": cache.header.get("detector", "unknown (recording JSONL)"),
                            "machine": cache.header.get("machine", "unknown (recording JSONL)")},
        "variants": runs,
    }


def format_replay(report: dict[str, Any]) -> str:
    """A short text table of :func:`replay_benchmark`'s report."""
    det = report["cpu_detector_ms"]
    lines = [f"real clip {report['video']} ({report['frames_decoded']} frames, cue {report['cue']})",
             f"CPU-side detector (MediaPipe, recorded on {det.get('machine', {}).get('cpu', '?') if isinstance(det.get('machine'), dict) else det.get('machine')}):"
             f" p50 {det['p50']:.2f} ms, p95 {det['p95']:.2f} ms",
             f"{'variant':<16}{'crop':>8}{'network':>9}{'dgp':>7}{'smooth':>8}{'all but det.':>13}{'FPS seq':>9}{'FPS ovl':>9}"]
    for key, row in report["variants"].items():
        if row.get("status") != "ok":
            lines.append(f"{key:<16}{row.get('status')}")
            continue
        st = row["stages_ms"]
        p50 = {name: (f"{st[name]['p50']:.2f}" if name in st else "-") for name in ("crop", "network", "dgp", "smoothing")}
        seq = f"{row['fps_sequential']:.1f}" if "fps_sequential" in row else "-"
        ovl = f"{row['fps_overlapped']:.1f}" if "fps_overlapped" in row else "-"
        lines.append(f"{key:<16}{p50['crop']:>8}{p50['network']:>9}{p50['dgp']:>7}{p50['smoothing']:>8}"
                     f"{row['pipeline_without_detector_ms']['p50']:>13.2f}{seq:>9}{ovl:>9}")
    return "\n".join(lines)


def _parse_variant(text: str) -> tuple[str, str]:
    mode, _, precision = text.partition(":")
    return mode, precision or "fp32"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.landmark_cache", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="run MediaPipe over a clip and write the cache (needs mediapipe)")
    rec.add_argument("--source", type=Path, required=True, help="video file")
    rec.add_argument("--out", type=Path, required=True, help="cache file (.jsonl)")
    rec.add_argument("--copy-video", action="store_true", help="copy the clip beside the cache (to carry both)")
    rec.add_argument("--max-hands", type=int, default=2)
    rec.add_argument("--hfov", type=float, default=DEFAULT_HFOV_DEG, help="horizontal FOV when no --intrinsics")
    rec.add_argument("--intrinsics", type=Path, default=None, help="intrinsics file (app.intrinsics formats)")
    rec.add_argument("--frames", type=int, default=None, help="stop after this many frames")
    rep = sub.add_parser("replay", help="time the pipeline on the clip with the cached landmarks (no mediapipe)")
    rep.add_argument("--cache", type=Path, required=True, help="cache file, or a recording JSONL of run_demo.py --jsonl")
    rep.add_argument("--video", type=Path, default=None, help="the clip (default: the one the cache names)")
    src = rep.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", type=Path, help="checkpoint (models.checkpoint format)")
    src.add_argument("--preset", help="untrained preset (timing only)")
    rep.add_argument("--device", default=None, help="torch device (default cuda when available)")
    rep.add_argument("--variants", nargs="+", default=None,
                     help="mode:precision pairs (models.inference_runners); default eager:fp32 eager:bf16 graphs:bf16 on CUDA, eager:fp32 on CPU")
    rep.add_argument("--warmup", type=int, default=10, help="frames processed before timing")
    rep.add_argument("--frames", type=int, default=None, help="decode at most this many frames")
    rep.add_argument("--compile-backend", default="inductor")
    rep.add_argument("--json", type=Path, default=None, help="write the report here")
    rep.add_argument("--cue", choices=("fused", "mediapipe", "network"), default=None,
                     help="the app's cue (default: fused for a fused model when the cache has 3D landmarks)")
    rep.add_argument("--no-depth-ensemble", action="store_true", help="the fused cue's own DGP depth, one row per hand")
    args = parser.parse_args(argv)
    if args.command == "record":
        header = record_landmark_cache(args.source, args.out, max_hands=args.max_hands, hfov_deg=args.hfov,
                                       intrinsics_file=args.intrinsics, copy_video=args.copy_video, max_frames=args.frames)
        print(f"wrote {args.out}: {header['frames']} frames, {header['frames_with_hands']} with hands, "
              f"detector p50 {header['detect_ms']['p50']:.1f} ms on {header['machine']['cpu']}")
        return 0
    import torch

    cache = load_landmark_cache(args.cache)
    video = args.video or cache.video_path()
    if video is None or not Path(video).is_file():
        raise LandmarkCacheError(f"the clip {video} is missing; pass --video (a recording JSONL names no clip)")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.weights is not None:
        from models.checkpoint import load_checkpoint

        model = load_checkpoint(args.weights)
    else:
        from models.config import get_preset
        from models.m3dhmr import M3DHMR

        torch.manual_seed(0)
        model = M3DHMR.from_config(get_preset(args.preset)).eval()
    default = ["eager:fp32", "eager:bf16", "graphs:bf16"] if device.startswith("cuda") else ["eager:fp32"]
    variants = [_parse_variant(v) for v in (args.variants or default)]
    report = replay_benchmark(cache, Path(video), model, device, variants, warmup_frames=args.warmup,
                              max_frames=args.frames, compile_backend=args.compile_backend, cue=args.cue,
                              depth_ensemble=not args.no_depth_ensemble)
    report["weights"] = str(args.weights or f"untrained {args.preset}")
    report["device"] = device
    if device.startswith("cuda"):
        report["gpu"] = torch.cuda.get_device_name(torch.device(device))
    print(format_replay(report))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
