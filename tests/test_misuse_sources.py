"""Misuse battery, sources: unusual and broken inputs the headless run must survive or refuse in one line.

These siblings of issue 11 were already handled when the battery was written (the tests guard them):
grayscale, RGBA, 16-bit, 1x1, 1xN and odd-sized images in one folder of mixed sizes; a corrupt video;
a folder whose images cannot be decoded.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from app import cli
from app.recording import read_jsonl

UNTRAINED = ["--backend", "torch", "--untrained", "realtime_slim", "--quiet"]


def test_a_folder_of_odd_images_runs_and_records_every_frame(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    folder.mkdir()
    images = {
        "0_gray.png": rng.integers(0, 255, (120, 160), np.uint8),
        "1_rgba.png": rng.integers(0, 255, (120, 160, 4), np.uint8),
        "2_16bit.png": rng.integers(0, 65535, (120, 160, 3), np.uint16),
        "3_16bit_gray.png": rng.integers(0, 65535, (90, 70), np.uint16),
        "4_one_pixel.png": np.zeros((1, 1, 3), np.uint8),
        "5_one_row.png": np.zeros((1, 500, 3), np.uint8),
        "6_odd.png": np.zeros((3, 7, 3), np.uint8),
    }
    for name, image in images.items():
        assert cv2.imwrite(str(folder / name), image)
    video, jsonl = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    code = cli.main(["record", "--source", str(folder), *UNTRAINED, "--record", str(video), "--jsonl", str(jsonl)])
    assert code == 0, capsys.readouterr().err
    assert len(read_jsonl(jsonl)) == len(images)
    assert video.stat().st_size > 0


@pytest.mark.parametrize("kind", ["corrupt-video", "undecodable-images"])
def test_a_broken_source_is_one_line(kind: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    if kind == "corrupt-video":
        source = tmp_path / "clip.mp4"
        source.write_bytes(os.urandom(5000))
    else:
        source = tmp_path / "images"
        source.mkdir()
        (source / "a.png").write_text("not an image")
    assert cli.main(["record", "--source", str(source), *UNTRAINED]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err
