"""Frame sources: formats, typed errors for bad input, truncated files, frame conversion."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from app import sources
from app.sources import (
    SAMPLE_CLIP_PATH,
    ArraySource,
    CameraOpenError,
    CameraSource,
    EmptyFolderError,
    Frame,
    FrameSource,
    ImageFolderSource,
    SourceNotFoundError,
    VideoFileSource,
    VideoOpenError,
    default_source,
    open_source,
    to_bgr_uint8,
)
from models.paths import SHARED_REAL_DIR


def _write_video(path: Path, n: int, size: tuple[int, int] = (64, 48), fourcc: str = "mp4v") -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10.0, size)
    assert writer.isOpened()
    for i in range(n):
        img = np.zeros((size[1], size[0], 3), np.uint8)
        img[:, : 2 + 2 * i] = (0, 128, 255)
        writer.write(img)
    writer.release()


def test_to_bgr_converts_gray_bgra_uint16_float_and_odd_sizes() -> None:
    gray = np.arange(35, dtype=np.uint8).reshape(5, 7)
    out = to_bgr_uint8(gray)
    assert out.shape == (5, 7, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
    assert np.array_equal(out[..., 0], gray) and np.array_equal(out[..., 2], gray)
    assert to_bgr_uint8(gray[..., None]).shape == (5, 7, 3)
    bgra = np.zeros((3, 3, 4), np.uint8)
    bgra[..., 2] = 200
    assert to_bgr_uint8(bgra)[0, 0].tolist() == [0, 0, 200]
    assert to_bgr_uint8(np.full((2, 2), 65535, np.uint16))[0, 0].tolist() == [255, 255, 255]
    assert to_bgr_uint8(np.full((1, 1, 3), 0.5, np.float32))[0, 0].tolist() == [128, 128, 128]
    assert to_bgr_uint8(np.zeros((1, 1), np.uint8)).shape == (1, 1, 3)
    with pytest.raises(ValueError):
        to_bgr_uint8(np.zeros((0, 4), np.uint8))
    with pytest.raises(ValueError):
        to_bgr_uint8(np.zeros((4, 4, 2), np.uint8))


def test_video_file_source_reads_every_frame_with_times(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    _write_video(path, 12)
    with VideoFileSource(path) as src:
        assert isinstance(src, FrameSource)
        frames = list(src)
    assert len(frames) == 12
    assert [f.index for f in frames] == list(range(12))
    assert frames[3].t == pytest.approx(0.3)
    assert frames[0].bgr.shape == (48, 64, 3) and frames[0].bgr.dtype == np.uint8


def test_video_file_source_loops(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    _write_video(path, 3)
    with VideoFileSource(path, loop=True) as src:
        frames = [src.read() for _ in range(7)]
    assert all(f is not None for f in frames)
    assert [f.index for f in frames] == list(range(7))


def test_missing_and_corrupt_video_raise_typed_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceNotFoundError):
        VideoFileSource(tmp_path / "nope.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(VideoOpenError, match="ffmpeg"):
        VideoFileSource(junk)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoOpenError):
        VideoFileSource(empty)


def test_truncated_avi_yields_the_frames_it_has(tmp_path: Path) -> None:
    full = tmp_path / "full.avi"
    _write_video(full, 20, fourcc="MJPG")
    data = full.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: int(len(data) * 0.8)])  # the AVI header is ~4 kB of padding
    with VideoFileSource(cut) as src:
        frames = list(src)
    assert 5 <= len(frames) < 20
    assert all(f.bgr.shape == (48, 64, 3) for f in frames)


@pytest.mark.real
@pytest.mark.skipif(not (SHARED_REAL_DIR / "open_palm_640x360.mp4").is_file(), reason="../shared/real absent")
def test_truncated_faststart_mp4_yields_the_frames_it_has(tmp_path: Path) -> None:
    data = (SHARED_REAL_DIR / "open_palm_640x360.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])  # its index (moov) is at the front
    with VideoFileSource(cut) as src:
        claimed = src.frame_count
        count = sum(1 for _ in src)
    assert claimed == 202
    assert 40 <= count < 202


def test_mp4_cut_before_its_index_is_a_typed_error(tmp_path: Path) -> None:
    full = tmp_path / "full.mp4"
    _write_video(full, 20)
    data = full.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])  # OpenCV writes the moov index last
    with pytest.raises(VideoOpenError, match="index"):
        VideoFileSource(cut)


def test_image_folder_sorted_gray_and_odd_size(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "b.png"), np.full((5, 3), 77, np.uint8))
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((7, 9, 3), np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "c.jpg").write_bytes(b"broken")
    with ImageFolderSource(tmp_path, fps=5.0) as src:
        frames = list(src)
    assert [f.bgr.shape for f in frames] == [(7, 9, 3), (5, 3, 3)]
    assert frames[1].bgr[0, 0].tolist() == [77, 77, 77]
    assert frames[1].t == pytest.approx(0.2)


def test_empty_or_missing_folder_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(EmptyFolderError):
        ImageFolderSource(tmp_path)
    (tmp_path / "x.png").write_bytes(b"not a png")
    with pytest.raises(EmptyFolderError):
        ImageFolderSource(tmp_path).read()
    with pytest.raises(SourceNotFoundError):
        ImageFolderSource(tmp_path / "missing")


def test_camera_that_does_not_exist_raises_with_advice() -> None:
    with pytest.raises(CameraOpenError, match="--source"):
        open_source("97")


def test_open_source_dispatch(tmp_path: Path) -> None:
    _write_video(tmp_path / "v.mp4", 2)
    assert isinstance(open_source(str(tmp_path / "v.mp4")), VideoFileSource)
    cv2.imwrite(str(tmp_path / "x.png"), np.zeros((4, 4, 3), np.uint8))
    assert isinstance(open_source(tmp_path), ImageFolderSource)
    with pytest.raises(SourceNotFoundError):
        open_source(str(tmp_path / "missing.mp4"))


def test_array_source_and_frame_is_frozen() -> None:
    src = ArraySource([np.zeros((2, 2), np.uint8), np.zeros((3, 3, 3), np.uint8)], fps=10.0)
    frames = list(src)
    assert len(frames) == 2 and frames[0].bgr.shape == (2, 2, 3)
    with pytest.raises(AttributeError):
        frames[0].index = 5  # type: ignore[misc]
    assert isinstance(frames[0], Frame) and frames[1].t == pytest.approx(0.1)


@pytest.mark.skipif(not SAMPLE_CLIP_PATH.is_file(), reason="assets/sample_clip.mp4 not generated yet")
def test_default_source_falls_back_to_the_bundled_clip() -> None:
    try:
        probe = CameraSource(0)
    except CameraOpenError:
        probe = None
    if probe is not None:
        probe.close()
        pytest.skip("a camera is present: the default source is the camera")
    with default_source() as src:
        assert isinstance(src, VideoFileSource) and src.loop
        assert src.path == SAMPLE_CLIP_PATH.resolve()
        frames = [src.read() for _ in range(3)]
    assert all(f is not None and f.bgr.ndim == 3 for f in frames)
    # Headless commands play the clip once (they must end); only --loop or the GUI loops it.
    with open_source(None) as once:
        assert isinstance(once, VideoFileSource) and not once.loop
    with open_source(None, loop=True) as looping:
        assert looping.loop


def test_missing_sample_clip_is_a_typed_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sources, "SAMPLE_CLIP_PATH", tmp_path / "absent.mp4")
    with pytest.raises(SourceNotFoundError, match="make_sample_clip"):
        sources.sample_clip_source()
