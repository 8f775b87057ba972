"""The main window: video panel with the 2D overlay, the 3D panel, controls and the status bar.

The window only draws and forwards requests: frames are read, processed, annotated and recorded by
:class:`app.ui.worker.LiveWorker` on its own threads, and the 3D scene is rendered on the renderer's
own thread. On each ``result_ready`` the window takes the single pending :class:`ProcessedFrame`,
shows it, and hands the hands' meshes to the 3D panel.

Keyboard shortcuts: Ctrl+R record start/stop, Ctrl+S screenshot, Ctrl+E export meshes (PLY),
Home reset the 3D view, Ctrl+Q quit.
"""
from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

from PyQt6.QtCore import QSettings, Qt, pyqtSignal
from PyQt6.QtGui import QAction, QCloseEvent, QKeySequence
from PyQt6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDockWidget,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPushButton,
    QScrollArea,
    QSlider,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app.pipeline import CUES, HAND_LENGTH_RANGE_CM
from app.recording import RecordingError, export_meshes
from app.results import STAGES, FrameResult
from app.smoothing import SmoothingParams
from app.sources import FrameSource, open_source
from app.ui.renderer3d import LEFT_HAND_RGB, RIGHT_HAND_RGB, HandMesh, SceneOptions, SceneRenderer
from app.ui.video_panel import VideoPanel
from app.ui.view3d import View3D
from app.ui.worker import EngineSettings, LiveWorker, ProcessedFrame

LOG = logging.getLogger(__name__)

SourceSpec = str | int
"""A camera index, a video file or an image folder (as :func:`app.sources.open_source` takes it)."""


def hand_meshes(result: FrameResult) -> list[HandMesh]:
    """The 3D panel's meshes for one frame: camera-space vertices, outward faces, colour by handedness."""
    return [
        HandMesh(
            vertices_cam=hand.vertices_cam,
            faces=result.faces_for(hand),
            colour_rgb=RIGHT_HAND_RGB if hand.handedness == "right" else LEFT_HAND_RGB,
            joints_cam=hand.joints_cam,
            label=f"#{hand.track_id} {hand.handedness} {hand.distance_m:.2f} m, {100 * hand.hand_length_m:.1f} cm",
        )
        for hand in result.hands
    ]


def _timestamp() -> str:
    return time.strftime("%Y%m%d_%H%M%S") + f"_{int(time.time() * 1000) % 1000:03d}"


class MainWindow(QMainWindow):
    """The desktop app's window.

    Args:
        worker: the live loop (not yet started; the window starts it and stops it on close).
        renderer: the 3D scene renderer (the 3D panel owns and closes it).
        output_dir: where recordings, screenshots and mesh exports go.
        source: the source to open first (None: none until the user picks one).
        source_opener: opens a spec (default: :func:`app.sources.open_source` with looping files).
        smoothing_strength: initial One Euro strength in [0, 1] for the slider (0: smoothing off).

    Signals:
        frame_displayed: a processed frame was shown (after the labels were updated).
    """

    frame_displayed = pyqtSignal()

    def __init__(
        self,
        worker: LiveWorker,
        renderer: SceneRenderer,
        *,
        output_dir: Path,
        source: SourceSpec | None = None,
        source_opener: Callable[[SourceSpec], FrameSource] | None = None,
        smoothing_strength: float = 0.5,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Hand mesh recovery: M3DHMR + HandDGP")
        self.worker = worker
        self.output_dir = Path(output_dir)
        self._opener = source_opener or (lambda spec: open_source(spec, loop=True))
        self._source_spec: SourceSpec | None = None
        self._recording = False
        self._initial_smoothing = float(smoothing_strength)
        self._scene_K: tuple | None = None
        self.last_frame: ProcessedFrame | None = None
        self.frames_displayed = 0
        self.fps_readouts: list[tuple[float, float]] = []
        """``(perf_counter time, processing FPS shown)`` for every displayed frame (benchmark readout)."""

        self.video = VideoPanel()
        self.view3d = View3D(renderer)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.video)
        splitter.addWidget(self.view3d)
        splitter.setSizes([640, 560])
        self.error_banner = self._build_error_banner()
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.error_banner)
        layout.addWidget(splitter, 1)
        self.setCentralWidget(central)
        self._build_controls()
        self._build_status_bar()
        self._build_shortcuts()

        worker.result_ready.connect(self._on_result_ready)
        worker.error.connect(self.show_error)
        worker.source_opened.connect(self._on_source_opened)
        worker.source_ended.connect(self._on_source_ended)
        worker.engine_ready.connect(self._on_engine_ready)
        worker.recording_changed.connect(self._on_recording_changed)
        self.view3d.set_options(self._scene_options())
        worker.update_settings(self.current_settings())
        worker.start()
        if source is not None:
            self.open_source(source)

    # -- construction -----------------------------------------------------------------------------

    def _build_error_banner(self) -> QFrame:
        banner = QFrame()
        banner.setStyleSheet("QFrame { background: #7a1f1f; border-radius: 4px; } QLabel { color: white; }")
        row = QHBoxLayout(banner)
        row.setContentsMargins(8, 4, 8, 4)
        self.error_label = QLabel()
        self.error_label.setWordWrap(True)
        self.reopen_button = QPushButton("Reopen source")
        self.reopen_button.clicked.connect(self.reopen_source)
        dismiss = QPushButton("Dismiss")
        dismiss.clicked.connect(banner.hide)
        row.addWidget(self.error_label, 1)
        row.addWidget(self.reopen_button)
        row.addWidget(dismiss)
        banner.hide()
        return banner

    def _build_controls(self) -> None:
        panel = QWidget()
        column = QVBoxLayout(panel)

        source_box = QGroupBox("Source")
        form = QFormLayout(source_box)
        self.camera_spin = QSpinBox()
        self.camera_spin.setRange(0, 16)
        open_camera = QPushButton("Open camera")
        open_camera.clicked.connect(lambda: self.open_source(self.camera_spin.value()))
        row = QHBoxLayout()
        row.addWidget(self.camera_spin)
        row.addWidget(open_camera)
        form.addRow("Camera", row)
        open_video = QPushButton("Open video...")
        open_video.clicked.connect(self._choose_video)
        open_folder = QPushButton("Open folder...")
        open_folder.clicked.connect(self._choose_folder)
        row = QHBoxLayout()
        row.addWidget(open_video)
        row.addWidget(open_folder)
        form.addRow(row)
        self.source_label = QLabel("-")
        self.source_label.setWordWrap(True)
        form.addRow("Current", self.source_label)
        column.addWidget(source_box)

        engine_box = QGroupBox("Processing")
        form = QFormLayout(engine_box)
        settings = self.worker.settings
        self.backend_combo = QComboBox()
        self.backend_combo.addItems(["onnx", "torch"])
        self.backend_combo.setCurrentText(settings.backend)
        self.device_combo = QComboBox()
        self.device_combo.addItems(["cpu", "cuda"])
        self.device_combo.setCurrentText(settings.device)
        self.max_hands_spin = QSpinBox()
        self.max_hands_spin.setRange(1, 4)
        self.max_hands_spin.setValue(settings.options.max_hands)
        self.cue_combo = QComboBox()
        self.cue_combo.addItems(list(CUES))
        self.cue_combo.setCurrentText(settings.options.cue)
        self.cue_combo.setToolTip("fused: MediaPipe's 2D and 3D landmarks guide the mesh (default)\n"
                                  "mediapipe: its 2D landmarks only\nnetwork: the image alone (the paper's path)")
        self.ensemble_check = QCheckBox("Depth from all three cues")
        self.ensemble_check.setToolTip("fused cue: also run the mediapipe and network cues on each hand and place the "
                                       "mesh at the mean of the three depths (more accurate, about twice the network "
                                       "time)")
        self.ensemble_check.setChecked(settings.options.depth_ensemble)
        self.ensemble_check.setEnabled(settings.options.cue == "fused")
        remembered = self._stored_hand_length()
        length = settings.options.hand_length_cm if settings.options.hand_length_cm is not None else remembered
        self.hand_length_check = QCheckBox("I know my hand length")
        self.hand_length_check.setToolTip("wrist crease to the tip of the middle finger; fixes the mesh's size and "
                                          "so its distance from the camera (otherwise the network estimates it)")
        self.hand_length_check.setChecked(length is not None)
        self.hand_length_spin = QDoubleSpinBox()
        self.hand_length_spin.setRange(*HAND_LENGTH_RANGE_CM)
        self.hand_length_spin.setSingleStep(0.5)
        self.hand_length_spin.setDecimals(1)
        self.hand_length_spin.setSuffix(" cm")
        self.hand_length_spin.setValue(length if length is not None else 18.5)
        self.hand_length_spin.setEnabled(length is not None)
        self.smoothing_check = QCheckBox("Smoothing (One Euro)")
        self.smoothing_check.setChecked(settings.options.smoothing.enabled and self._initial_smoothing > 0)
        self.smoothing_slider = QSlider(Qt.Orientation.Horizontal)
        self.smoothing_slider.setRange(1, 100)
        strength = self._initial_smoothing if self._initial_smoothing > 0 else 0.5
        self.smoothing_slider.setValue(int(round(100 * min(max(strength, 0.01), 1.0))))
        self.smoothing_slider.setToolTip("smoothing strength (left: light, right: strong)")
        form.addRow("Backend", self.backend_combo)
        form.addRow("Device", self.device_combo)
        form.addRow("Max hands", self.max_hands_spin)
        form.addRow("Cue", self.cue_combo)
        form.addRow(self.ensemble_check)
        form.addRow(self.hand_length_check)
        form.addRow("Hand length", self.hand_length_spin)
        form.addRow(self.smoothing_check)
        form.addRow("Strength", self.smoothing_slider)
        column.addWidget(engine_box)

        view_box = QGroupBox("Display")
        form = QFormLayout(view_box)
        self.mirror_check = QCheckBox("Mirror view (selfie)")
        self.mirror_check.setChecked(settings.draw.mirror_view)
        self.mesh_check = QCheckBox("Show mesh")
        self.mesh_check.setChecked(True)
        self.skeleton_check = QCheckBox("Show skeleton")
        self.skeleton_check.setChecked(True)
        self.labels_check = QCheckBox("Show labels")
        self.labels_check.setChecked(True)
        for check in (self.mirror_check, self.mesh_check, self.skeleton_check, self.labels_check):
            form.addRow(check)
        column.addWidget(view_box)

        output_box = QGroupBox("Output")
        grid = QVBoxLayout(output_box)
        self.record_button = QPushButton("Record (Ctrl+R)")
        self.record_button.setCheckable(True)
        self.record_button.clicked.connect(self.toggle_recording)
        screenshot = QPushButton("Screenshot (Ctrl+S)")
        screenshot.clicked.connect(self.save_screenshot)
        export_row = QHBoxLayout()
        export_ply = QPushButton("Export PLY (Ctrl+E)")
        export_ply.clicked.connect(lambda: self.export_current_meshes("ply"))
        export_obj = QPushButton("Export OBJ")
        export_obj.clicked.connect(lambda: self.export_current_meshes("obj"))
        export_row.addWidget(export_ply)
        export_row.addWidget(export_obj)
        grid.addWidget(self.record_button)
        grid.addWidget(screenshot)
        grid.addLayout(export_row)
        self.output_label = QLabel(f"Saved to {self.output_dir}")
        self.output_label.setWordWrap(True)
        grid.addWidget(self.output_label)
        column.addWidget(output_box)
        column.addStretch(1)

        for combo in (self.backend_combo, self.device_combo, self.cue_combo):
            combo.currentTextChanged.connect(self._settings_changed)
        self.max_hands_spin.valueChanged.connect(self._settings_changed)
        self.cue_combo.currentTextChanged.connect(lambda cue: self.ensemble_check.setEnabled(cue == "fused"))
        self.ensemble_check.toggled.connect(self._settings_changed)
        self.hand_length_spin.valueChanged.connect(self._settings_changed)
        self.hand_length_check.toggled.connect(self.hand_length_spin.setEnabled)
        self.hand_length_check.toggled.connect(self._settings_changed)
        if self.hand_length_check.isChecked() and settings.options.hand_length_cm is None:
            self.worker.update_settings(self.current_settings())  # the length remembered from the last session
        self.smoothing_slider.valueChanged.connect(self._settings_changed)
        for check in (self.smoothing_check, self.mirror_check, self.mesh_check, self.skeleton_check, self.labels_check):
            check.toggled.connect(self._settings_changed)

        self.smoothing_slider.setEnabled(self.smoothing_check.isChecked())
        dock = QDockWidget("Controls")
        dock.setObjectName("controls")
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        scroll = QScrollArea()
        scroll.setWidget(panel)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(panel.sizeHint().width() + 16)
        dock.setWidget(scroll)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, dock)

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.fps_label = QLabel("capture - FPS | processing - FPS")
        self.latency_label = QLabel("latency -")
        self.hands_label = QLabel("hands: -")
        self.backend_label = QLabel("backend: loading...")
        self.intrinsics_label = QLabel("Intrinsics ASSUMED (field-of-view default): distances are approximate")
        self.intrinsics_label.setStyleSheet("QLabel { color: black; background: #f2c94c; padding: 1px 6px; }")
        self.intrinsics_label.hide()
        self.record_label = QLabel("REC")
        self.record_label.setStyleSheet("QLabel { color: white; background: #c0392b; padding: 1px 6px; }")
        self.record_label.hide()
        for widget in (self.fps_label, self.latency_label, self.hands_label, self.backend_label):
            bar.addWidget(widget)
        bar.addPermanentWidget(self.intrinsics_label)
        bar.addPermanentWidget(self.record_label)

    def _build_shortcuts(self) -> None:
        actions = [
            ("Record", "Ctrl+R", lambda: self.toggle_recording(not self._recording)),
            ("Screenshot", "Ctrl+S", self.save_screenshot),
            ("Export meshes", "Ctrl+E", lambda: self.export_current_meshes("ply")),
            ("Reset view", "Home", self.view3d.reset_view),
            ("Quit", "Ctrl+Q", self.close),
        ]
        for name, keys, slot in actions:
            action = QAction(name, self)
            action.setShortcut(QKeySequence(keys))
            action.setShortcutContext(Qt.ShortcutContext.ApplicationShortcut)
            action.triggered.connect(slot)
            self.addAction(action)

    # -- settings ---------------------------------------------------------------------------------

    @staticmethod
    def _settings_store() -> QSettings:
        return QSettings("handmesh", "demo")

    def _stored_hand_length(self) -> float | None:
        """The hand length (cm) remembered from an earlier session, or None."""
        value = self._settings_store().value("hand_length_cm", "")
        try:
            length = float(value) if value not in ("", None) else None
        except (TypeError, ValueError):
            return None
        low, high = HAND_LENGTH_RANGE_CM
        return length if length is not None and low <= length <= high else None

    def _store_hand_length(self, length: float | None) -> None:
        self._settings_store().setValue("hand_length_cm", "" if length is None else f"{length:.1f}")

    def current_settings(self) -> EngineSettings:
        """Engine settings read from the controls."""
        base = self.worker.settings
        strength = self.smoothing_slider.value() / 100.0
        smoothing = SmoothingParams.from_strength(strength) if self.smoothing_check.isChecked() else SmoothingParams(enabled=False)
        length = float(self.hand_length_spin.value()) if self.hand_length_check.isChecked() else None
        options = replace(
            base.options, max_hands=self.max_hands_spin.value(), cue=self.cue_combo.currentText(), smoothing=smoothing,
            hand_length_cm=length, depth_ensemble=self.ensemble_check.isChecked(),
        )
        self._store_hand_length(length)
        draw = replace(
            base.draw,
            mesh=base.draw.mesh if base.draw.mesh != "none" else "shaded",
            skeleton=self.skeleton_check.isChecked(),
            labels=self.labels_check.isChecked(),
            mirror_view=self.mirror_check.isChecked(),
        )
        if not self.mesh_check.isChecked():
            draw = replace(draw, mesh="none")
        return EngineSettings(
            backend=self.backend_combo.currentText(), device=self.device_combo.currentText(), options=options, draw=draw
        )

    def _scene_options(self) -> SceneOptions:
        return SceneOptions(
            show_mesh=self.mesh_check.isChecked(),
            show_skeleton=self.skeleton_check.isChecked(),
            show_labels=self.labels_check.isChecked(),
        )

    def _settings_changed(self) -> None:
        self.smoothing_slider.setEnabled(self.smoothing_check.isChecked())
        settings = self.current_settings()
        if (settings.backend, settings.device) != (self.worker.settings.backend, self.worker.settings.device):
            self.backend_label.setText(f"backend: loading {settings.backend}/{settings.device}...")
        self.worker.update_settings(settings)
        self.view3d.set_options(self._scene_options())

    # -- sources ----------------------------------------------------------------------------------

    def open_source(self, spec: SourceSpec) -> None:
        """Switch to a camera index, video file or image folder (opened on the capture thread)."""
        self._source_spec = spec
        self.video.show_message(f"Opening {spec}...")
        opener = self._opener
        self.worker.set_source(lambda: opener(spec))

    def reopen_source(self) -> None:
        """Open the last source again (after a lost camera or an error)."""
        self.error_banner.hide()
        if self._source_spec is not None:
            self.open_source(self._source_spec)

    def _choose_video(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open video", str(Path.home()), "Videos (*.mp4 *.avi *.mov *.mkv *.webm);;All files (*)")
        if path:
            self.open_source(path)

    def _choose_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open image folder", str(Path.home()))
        if path:
            self.open_source(path)

    def _on_source_opened(self, name: str) -> None:
        self.error_banner.hide()
        self.source_label.setText(name)

    def _on_source_ended(self, name: str) -> None:
        self.statusBar().showMessage(f"End of {name}", 5000)
        self.video.show_message(f"End of {name}. Use 'Reopen source' to play it again.")
        self.error_label.setText(f"The source ended: {name}")
        self.error_banner.show()

    # -- results ----------------------------------------------------------------------------------

    def _on_result_ready(self) -> None:
        item = self.worker.take_result()
        if item is None:
            return
        result = item.result
        self.last_frame = item
        self.video.show_frame(item.annotated_bgr)
        scene_K = (tuple(result.K.ravel().tolist()), tuple(result.image_size))
        if scene_K != self._scene_K:
            self._scene_K = scene_K
            self.view3d.set_camera_intrinsics(result.K, result.image_size)
        self.view3d.set_hands(hand_meshes(result))
        self.fps_label.setText(f"capture {item.capture_fps:5.1f} FPS | processing {item.processing_fps:5.1f} FPS")
        stages = [f"{s} {result.timings_ms[s]:.0f}" for s in STAGES if s in result.timings_ms]
        self.latency_label.setText("ms: " + " ".join(stages) + f" | total {result.total_ms:.0f}")
        cue = result.hands[0].cue if result.hands else self.cue_combo.currentText()
        sizes = ", ".join(f"{100 * h.hand_length_m:.1f} cm" + (" (size depth)" if h.depth_source == "size" else "")
                          for h in result.hands if h.hand_length_m > 0)
        depth = " | depth: mean of 3 cues" if any(h.depth_source == "ensemble" for h in result.hands) else ""
        self.hands_label.setText(f"hands: {len(result.hands)} | cue: {cue}{depth}" + (f" | {sizes}" if sizes else ""))
        self.backend_label.setText(f"backend: {result.backend}")
        self.intrinsics_label.setVisible(result.intrinsics_assumed)
        self.frames_displayed += 1
        self.fps_readouts.append((time.perf_counter(), item.processing_fps))
        self.frame_displayed.emit()

    def _on_engine_ready(self, name: str) -> None:
        self.backend_label.setText(f"backend: {name}")
        if self.error_banner.isVisible() and "backend" in self.error_label.text():
            self.error_banner.hide()

    def show_error(self, message: str) -> None:
        """Show a user-facing error in the banner above the panels (the app keeps running)."""
        LOG.warning("%s", message)
        self.error_label.setText(message)
        self.error_banner.show()

    # -- output -----------------------------------------------------------------------------------

    def toggle_recording(self, start: bool) -> None:
        """Start (annotated MP4 + JSONL in ``output_dir``) or stop recording."""
        if start and not self._recording:
            stem = self.output_dir / f"recording_{_timestamp()}"
            # The recorder creates the folder; an unwritable one comes back as an error banner.
            self.worker.start_recording(stem.with_suffix(".mp4"), stem.with_suffix(".jsonl"))
            self._recording = True
        elif not start and self._recording:
            self.worker.stop_recording()
            self._recording = False
        self.record_button.setChecked(self._recording)
        self.record_label.setVisible(self._recording)

    def _on_recording_changed(self, active: bool, description: str) -> None:
        if active:
            self.output_label.setText(f"Recording to {description}")
        elif description:
            self.output_label.setText(f"Saved {description}")
        if not active and self.worker.recording_request_pending() == "start":
            return  # a new recording is on its way; its own signal will follow
        # Follow the worker: a recording can also end without the button (a write failed, disk full).
        self._recording = bool(active)
        self.record_button.setChecked(self._recording)
        self.record_label.setVisible(self._recording)

    def save_screenshot(self) -> Path:
        """Save the whole window as a PNG in ``output_dir``; returns its path."""
        path = self.output_dir / f"screenshot_{_timestamp()}.png"
        try:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            self.show_error(f"Could not create the folder {self.output_dir} for the screenshot: {err.strerror or err}")
            return path
        if not self.grab().save(str(path)):
            self.show_error(f"Could not write the screenshot {path}")
        else:
            self.output_label.setText(f"Saved {path}")
        return path

    def export_current_meshes(self, fmt: str = "ply") -> Path | None:
        """Write the meshes of the frame on screen as ``.ply`` or ``.obj``; None when there is no hand."""
        item = self.last_frame
        if item is None or not item.result.hands:
            self.statusBar().showMessage("No hand on screen to export", 4000)
            return None
        path = self.output_dir / f"meshes_frame{item.result.index:06d}_{_timestamp()}.{fmt}"
        try:
            written = export_meshes(item.result, path)
        except (RecordingError, OSError) as err:
            self.show_error(f"Mesh export failed: {err}")
            return None
        self.output_label.setText(f"Saved {written}")
        return written

    # -- shutdown ---------------------------------------------------------------------------------

    def closeEvent(self, event: QCloseEvent) -> None:
        """Stop the worker (source, pipeline, recorder) and the renderer before the window goes."""
        self.worker.stop()
        self.view3d.shutdown()
        super().closeEvent(event)
