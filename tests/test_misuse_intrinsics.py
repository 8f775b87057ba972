"""Misuse battery: intrinsics files that would silently give wrong depths, and missing/invalid files.

Each test is one case of issue 11 (or a sibling) and failed on the code before the fix: a 640x480
file on 640x360 frames was rescaled to non-square pixels, ``"image_size": "640x360"`` was read
character by character, and the GUI died with a traceback on a missing file.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from app import cli
from app.intrinsics import Intrinsics, IntrinsicsFormatError, load_intrinsics

K_640x480 = [[500.0, 0.0, 319.5], [0.0, 500.0, 239.5], [0.0, 0.0, 1.0]]
K_640x360 = [[500.0, 0.0, 319.5], [0.0, 500.0, 179.5], [0.0, 0.0, 1.0]]


def _json(tmp_path: Path, name: str, **data: object) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_image_size_written_as_a_string_is_parsed_not_read_per_character(tmp_path: Path) -> None:
    intr = load_intrinsics(_json(tmp_path, "cam.json", K=K_640x360, dist=[], image_size="640x360"))
    assert intr.size == (640, 360)
    np.testing.assert_allclose(intr.scaled_to(640, 360).K, K_640x360)


@pytest.mark.parametrize("size", ["640", "640x", "640x360x3", [True, 360], [640.5, 360]])
def test_a_malformed_image_size_is_refused(tmp_path: Path, size: object) -> None:
    with pytest.raises(IntrinsicsFormatError, match="image_size"):
        load_intrinsics(_json(tmp_path, "cam.json", K=K_640x360, dist=[], image_size=size))


def test_intrinsics_of_another_aspect_ratio_are_refused() -> None:
    from app.intrinsics import IntrinsicsSizeMismatchError

    intr = Intrinsics(K=np.array(K_640x480), dist=np.zeros(0), size=(640, 480), assumed=False, origin="cam.yaml")
    with pytest.raises(IntrinsicsSizeMismatchError, match="640x360"):
        intr.scaled_to(640, 360)


def test_the_same_aspect_ratio_at_another_resolution_is_still_scaled() -> None:
    """Positive control of the test above: a plain resize keeps working."""
    intr = Intrinsics(K=np.array(K_640x360), dist=np.zeros(0), size=(640, 360), assumed=False)
    scaled = intr.scaled_to(1280, 720)
    assert scaled.K[0, 0] == pytest.approx(1000.0) and scaled.K[1, 1] == pytest.approx(1000.0)
    assert intr.scaled_to(854, 480).K[0, 0] == pytest.approx(500.0 * 854 / 640)  # rounding of a 16:9 resize


def test_the_cli_refuses_intrinsics_of_another_aspect_ratio_in_one_line(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture) -> None:
    from app.sources import SAMPLE_CLIP_PATH, VideoFileSource

    with VideoFileSource(SAMPLE_CLIP_PATH) as clip:
        first = clip.read()
    assert first is not None
    w, h = first.width, first.height
    other = (w, int(round(w * 3 / 4))) if abs(w / h - 4 / 3) > 0.05 else (w, int(round(w * 9 / 16)))
    K = [[500.0, 0.0, (other[0] - 1) / 2], [0.0, 500.0, (other[1] - 1) / 2], [0.0, 0.0, 1.0]]
    path = _json(tmp_path, "cam.json", K=K, dist=[], image_size=list(other))
    code = cli.main(["record", "--source", "sample", "--backend", "torch", "--untrained", "realtime_slim",
                     "--intrinsics", str(path), "--frames", "2", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "aspect" in err and "Traceback" not in err


def test_a_principal_point_outside_the_stated_image_is_refused(tmp_path: Path) -> None:
    K_1920x1080 = [[1500.0, 0.0, 959.5], [0.0, 1500.0, 539.5], [0.0, 0.0, 1.0]]
    mislabelled = _json(tmp_path, "cam.json", K=K_1920x1080, dist=[], image_size=[640, 360])
    with pytest.raises(IntrinsicsFormatError, match="principal point"):
        load_intrinsics(mislabelled)


def _gui_args(intrinsics: Path) -> argparse.Namespace:
    from app.ui.app import add_gui_arguments

    parser = argparse.ArgumentParser()
    cli.add_run_arguments(parser)
    add_gui_arguments(parser)
    return parser.parse_args(["--intrinsics", str(intrinsics), "--benchmark-gui", "0.5", "--renderer", "thread"])


def test_the_gui_with_a_missing_intrinsics_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from app.ui.app import run_gui

    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    assert run_gui(_gui_args(tmp_path / "missing.yaml")) == 2
    err = capsys.readouterr().err
    assert "Intrinsics file not found" in err and "Traceback" not in err


def test_the_gui_with_an_invalid_intrinsics_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from app.ui.app import run_gui

    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    bad = tmp_path / "cam.json"
    bad.write_text("{ not json")
    assert run_gui(_gui_args(bad)) == 2
    assert "not valid JSON" in capsys.readouterr().err

