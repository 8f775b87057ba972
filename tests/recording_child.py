"""A process that records synthetic frames until told to stop, for the crash tests of
tests/test_misuse_recording.py (the tests kill it, signal it, or let it run into a file size limit).

    python -m tests.recording_child VIDEO JSONL [--mode plain|graceful] [--fsize BYTES] [--noise] [--codec C] ...

Frames: ``(H, W, 3)`` uint8 BGR, a bar moving with the frame index (``--noise``: random pixels, so the
files grow fast). Time stamps are those of a 25 fps source where every third frame was skipped:
``t = index * 0.04`` s for indices not divisible by 3 (a variable frame rate, as in the GUI).
``--mode graceful`` stops between two frames on SIGINT/SIGTERM (:class:`app.recording.GracefulStop`,
as the headless CLI does) and exits 130; ``plain`` keeps Python's default handlers. A
:class:`RecordingError` prints ``error: ...`` on stderr and exits 2.
"""
from __future__ import annotations

import argparse
import resource
import sys
import time

import numpy as np

from app.recording import GracefulStop, Recorder, RecordingError
from app.results import FrameResult


def frame_times(count: int | None = None):
    """``(index, t)`` of the recorded frames: a 25 fps clock with every third frame skipped."""
    index = 0
    produced = 0
    while count is None or produced < count:
        if index % 3 != 0:
            yield index, index * 0.04
            produced += 1
        index += 1


def synthetic_result(index: int, t: float, size: tuple[int, int]) -> FrameResult:
    """A hand-less :class:`FrameResult` of a ``size = (W, H)`` frame."""
    width, height = size
    K = np.array([[500.0, 0.0, width / 2.0], [0.0, 500.0, height / 2.0], [0.0, 0.0, 1.0]])
    return FrameResult(index=index, t=t, image_size=size, K=K, dist=np.zeros(0), intrinsics_assumed=True,
                       hands=(), faces_right=np.zeros((0, 3), np.int64), timings_ms={"detect": 1.0},
                       backend="synthetic")


def synthetic_image(index: int, size: tuple[int, int], rng: np.random.Generator | None) -> np.ndarray:
    """``(H, W, 3)`` uint8 BGR: grey with a bar at a position given by ``index`` (or random pixels)."""
    width, height = size
    if rng is not None:
        return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    image = np.full((height, width, 3), 70, np.uint8)
    x = (index * 7) % max(1, width - 8)
    image[:, x:x + 8] = (0, 200, 255)
    return image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("video")
    parser.add_argument("jsonl")
    parser.add_argument("--mode", choices=("plain", "graceful"), default="plain")
    parser.add_argument("--frames", type=int, default=None, help="stop after this many frames (default: never)")
    parser.add_argument("--fsize", type=int, default=None, help="RLIMIT_FSIZE in bytes (writes beyond it fail)")
    parser.add_argument("--noise", action="store_true")
    parser.add_argument("--size", default="160x120")
    parser.add_argument("--codec", default="h264")
    parser.add_argument("--pace", type=float, default=0.01, help="seconds to sleep per frame")
    args = parser.parse_args(argv)
    size = tuple(int(v) for v in args.size.split("x"))
    if args.fsize is not None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (args.fsize, resource.RLIM_INFINITY))
    rng = np.random.default_rng(0) if args.noise else None
    stop = GracefulStop() if args.mode == "graceful" else None
    try:
        if stop is not None:
            stop.__enter__()
        with Recorder(args.video, args.jsonl, fps=25.0, codec=args.codec) as recorder:
            print("recording", flush=True)
            for index, t in frame_times(args.frames):
                recorder.write(synthetic_result(index, t, size), synthetic_image(index, size, rng))
                if stop is not None and stop.requested:
                    return 130
                time.sleep(args.pace)
    except RecordingError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 2
    finally:
        if stop is not None:
            stop.__exit__(None, None, None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
