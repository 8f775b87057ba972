"""Misuse battery: bad command lines are refused in one line, before any source opens or model loads.

In-process calls of the CLI's ``main`` (and of the GUI's ``run_gui``) with ``capsys``. ``forbid_run``
fails a test when a source is opened, so "refused before the run starts" is checked, not assumed.
Each test is one case of issue 11 (or a sibling found with it) and failed on the code before the fix.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from app import cli
from tests.misuse_support import forbid_run, readonly_dir

RECORD = ["record", "--source", "sample", "--quiet"]


def _refused(capsys: pytest.CaptureFixture, argv: list[str], *needles: str) -> str:
    """Run the CLI; assert exit 2 with one ``error:`` line containing every needle; return stderr."""
    code = cli.main(argv)
    captured = capsys.readouterr()
    assert code == 2, captured
    lines = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return captured.out


@pytest.mark.parametrize("frames", ["0", "-5"])
def test_frames_zero_or_negative_is_refused_and_no_video_is_claimed(
        frames: str, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_run(monkeypatch)
    video = tmp_path / "out.mp4"
    out = _refused(capsys, RECORD + ["--frames", frames, "--record", str(video)], "--frames")
    assert "video:" not in out and not video.exists()


def test_max_hands_zero_is_refused(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_run(monkeypatch)
    _refused(capsys, RECORD + ["--max-hands", "0"], "--max-hands")


@pytest.mark.parametrize("value", ["-0.1", "1.5", "nan"])
def test_smoothing_out_of_range_is_refused(value: str, capsys: pytest.CaptureFixture,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_run(monkeypatch)
    _refused(capsys, RECORD + ["--smoothing", value], "--smoothing")


@pytest.mark.parametrize("value", ["0", "-10", "180", "400"])
def test_hfov_out_of_range_is_refused(value: str, capsys: pytest.CaptureFixture,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_run(monkeypatch)
    _refused(capsys, RECORD + ["--hfov", value], "--hfov")


@pytest.mark.parametrize("option,value", [("--width", "0"), ("--height", "-1"), ("--fps", "0")])
def test_non_positive_camera_settings_are_refused(option: str, value: str, capsys: pytest.CaptureFixture,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_run(monkeypatch)
    _refused(capsys, RECORD + [option, value], option)


def test_an_empty_source_is_refused(capsys: pytest.CaptureFixture) -> None:
    _refused(capsys, ["record", "--source", "", "--quiet"], "--source is empty")


@pytest.mark.parametrize("name", ["out", "out.mkv", "out.avi"])
def test_record_without_or_with_a_wrong_suffix_is_refused_before_the_run(
        name: str, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_run(monkeypatch)
    _refused(capsys, RECORD + ["--record", str(tmp_path / name)], ".mp4")
    assert not (tmp_path / name).exists()


def test_export_mesh_stl_is_refused_before_the_run(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_run(monkeypatch)
    _refused(capsys, RECORD + ["--export-mesh", str(tmp_path / "x.stl")], ".ply")


def test_export_mesh_into_a_read_only_folder_is_refused_before_the_run(
        tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = readonly_dir(tmp_path)
    forbid_run(monkeypatch)
    _refused(capsys, RECORD + ["--export-mesh", str(folder / "hands.ply")], str(folder))


def test_export_frame_needs_export_mesh(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_run(monkeypatch)
    _refused(capsys, RECORD + ["--export-frame", "3"], "--export-mesh")


def test_record_and_jsonl_into_the_same_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_run(monkeypatch)
    same = tmp_path / "out.mp4"
    _refused(capsys, RECORD + ["--record", str(same), "--jsonl", str(same)], "different files")


def test_benchmark_json_into_a_read_only_folder_is_refused_before_the_run(
        tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = readonly_dir(tmp_path)
    forbid_run(monkeypatch)
    _refused(capsys, ["benchmark", "--source", "sample", "--frames", "2", "--warmup", "0",
                      "--json", str(folder / "bench.json")], str(folder))


def test_benchmark_out_of_range_options_are_refused_before_the_run(capsys: pytest.CaptureFixture,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_run(monkeypatch)
    _refused(capsys, ["benchmark", "--source", "sample", "--max-hands", "0"], "--max-hands")


def test_calibrate_with_a_wrong_output_suffix_is_refused_before_the_run(
        tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_run(monkeypatch)
    _refused(capsys, ["calibrate", "--source", "sample", "--out", str(tmp_path / "cam.txt")], ".yaml")


def test_calibrate_with_a_non_positive_square_is_refused_before_the_run(
        tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_run(monkeypatch)
    _refused(capsys, ["calibrate", "--source", "sample", "--square", "0", "--out", str(tmp_path / "cam.yaml")],
             "--square")


def test_ctrl_c_while_the_model_loads_exits_130_without_a_traceback(
        capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted_load(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_pipeline", interrupted_load)
    code = cli.main(RECORD + ["--frames", "1"])
    err = capsys.readouterr().err
    assert code == 130 and "interrupted" in err and "Traceback" not in err


def _gui_args(**overrides: object) -> argparse.Namespace:
    from app.ui.app import add_gui_arguments

    parser = argparse.ArgumentParser()
    cli.add_run_arguments(parser)
    add_gui_arguments(parser)
    args = parser.parse_args(["--benchmark-gui", "0.5", "--renderer", "thread"])  # ends by itself if it opens
    for key, value in overrides.items():
        setattr(args, key, value)
    return args


@pytest.mark.parametrize("overrides,needle", [({"max_hands": 0}, "--max-hands"), ({"smoothing": 3.0}, "--smoothing"),
                                              ({"window_size": "0x0"}, "--window-size")])
def test_gui_refuses_bad_options_before_the_window_opens(overrides: dict, needle: str, capsys: pytest.CaptureFixture,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from app.ui.app import run_gui

    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    assert run_gui(_gui_args(**overrides)) == 2
    assert needle in capsys.readouterr().err
