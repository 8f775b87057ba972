"""The real desktop entry point (:func:`app.ui.app.run_gui`) with a fake pipeline and a blank 3D
renderer, for the signal tests of tests/test_misuse_recording.py (Qt on the offscreen platform).

    python -m tests.gui_signal_child OUTPUT_DIR --source CLIP [--record] [--load-s S] [--delay-s S]

``--record`` presses Record (as Ctrl+R would) once the first frame is shown; ``--load-s`` makes the
pipeline take that long to build (a model loading), printing ``loading`` when it starts. Prints
``recording`` once recording runs. The exit code is run_gui's.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402

import app.ui.app as gui_app  # noqa: E402
import app.ui.renderer3d as renderer3d  # noqa: E402
from app.launcher import build_parser  # noqa: E402
from tests.gui_support import FakePipeline, hand_template  # noqa: E402


class BlankRenderer(renderer3d.ThreadedRenderer):
    """A 3D renderer that draws nothing (no Open3D, no X display)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__()

    def _render_on_thread(self, snapshot) -> np.ndarray:
        return np.zeros((snapshot.size[1], snapshot.size[0], 3), np.uint8)


def main() -> int:
    ours = argparse.ArgumentParser()
    ours.add_argument("output_dir")
    ours.add_argument("--source", required=True)
    ours.add_argument("--record", action="store_true")
    ours.add_argument("--load-s", type=float, default=0.0)
    ours.add_argument("--delay-s", type=float, default=0.03)
    mine, _ = ours.parse_known_args()
    hand_template()

    def fake_factory_maker(args):
        def factory(settings):
            if mine.load_s:
                print("loading", flush=True)
                time.sleep(mine.load_s)
            return FakePipeline(delay_s=mine.delay_s)

        return factory

    gui_app.make_pipeline_factory = fake_factory_maker
    renderer3d.Open3DProcessRenderer = BlankRenderer  # run_gui imports it from the module when it runs
    renderer3d.Open3DLegacyRenderer = BlankRenderer
    if mine.record:
        from PyQt6.QtCore import QTimer
        from PyQt6.QtWidgets import QApplication

        from app.ui.main_window import MainWindow

        app = QApplication.instance() or QApplication(sys.argv[:1])

        def press_record() -> None:
            windows = [w for w in app.topLevelWidgets() if isinstance(w, MainWindow)]
            if not windows or windows[0].frames_displayed < 1:
                QTimer.singleShot(50, press_record)
                return
            windows[0].toggle_recording(True)
            print("recording", flush=True)

        QTimer.singleShot(50, press_record)
    args = build_parser().parse_args(["--source", mine.source, "--output-dir", mine.output_dir,
                                      "--window-size", "640x360"])
    return gui_app.run_gui(args)


if __name__ == "__main__":
    raise SystemExit(main())
