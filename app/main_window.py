"""The main window: inputs on the left, the live preview in the middle, settings and history on the right.

It fits a 1280x720 screen: each column scrolls vertically instead of widening, rows wrap, and the
right column is two tabs (settings, history).
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import QSize, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QAction, QDesktopServices, QIcon, QKeySequence, QPixmap
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSlider,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.audio_io import Player
from app.controls import ControlsPanel
from app.history import RunRecord, record_audio, scan_runs
from app.jobs import ASPECTS, GenerationJob, JobOutcome, crop_to_aspect
from app.live import LiveInputs, LivePreview
from app.panels import AudioPanel, PosePanel, ReferencePanel
from app.settings import AppSettings
from app.widgets import PreviewPlayer, to_qimage
from app.worker import GenerationWorker, TaskRunner, WorkerHost
from models.engines.writer import EXPORT_QUALITY, export_run, new_run_dir
from models.media import SAMPLE_RATE

EXAMPLES = Path(__file__).resolve().parent.parent / "resources" / "examples"
FIRST_HINT = ("Open a picture and an audio file (or record), then Generate. New here? File > Open the example.")
MIN_SIZE = (1280, 720)  # the window fits a laptop screen; tests hold it to this
LIVE_REST_S = 15.0  # the live preview rests at the end of a loop once it has played this long unchanged


def _vscroll(widget: QWidget) -> QScrollArea:
    """A column that scrolls vertically and never widens beyond its content's minimum width."""
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setWidget(widget)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    area.setFrameShape(QScrollArea.Shape.NoFrame)
    return area


def _fit_width(area: QScrollArea) -> None:
    """The scroll area is at least as wide as its content's minimum (plus the vertical scroll bar)."""
    bar = area.verticalScrollBar().sizeHint().width()
    area.setMinimumWidth(area.widget().minimumSizeHint().width() + bar + 2 * area.frameWidth())


def format_eta(seconds: float) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "estimating..."
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d} left" if seconds >= 60 else f"{seconds} s left"


class MainWindow(QMainWindow):
    # Emitted on the UI thread once a run's outcome is handled (history, status, buttons up to date).
    # Listen here rather than to the worker's own signals, which reach other threads' listeners first.
    runFinished = Signal(object)  # JobOutcome
    runFailed = Signal(str)  # message
    historyRestored = Signal(int)  # takes read back from the sessions folder

    def __init__(self, settings: AppSettings | None = None, stream_factory=None, audio_status=None,
                 pose_source_factory=None, engine_factories=None, first_run_check: bool = True) -> None:
        super().__init__()
        self.setWindowTitle("OmniHuman Studio")
        self.settings = settings or AppSettings()
        self.tasks = TaskRunner(self)
        self.player = Player()
        self.history: list[RunRecord] = []
        self._restored: list[RunRecord] = []  # the history's records read from earlier sessions
        self.current: RunRecord | None = None
        self.busy = False
        self._closed = False

        # -- panels ----------------------------------------------------------------------------------
        self.reference = ReferencePanel(self.tasks)
        self.audio = AudioPanel(self.tasks, self.player, stream_factory, audio_status)
        self.pose = PosePanel(self.tasks, self.settings, self.reference, pose_source_factory)
        self.controls = ControlsPanel(self.settings)
        self.preview = PreviewPlayer(self.player)

        # -- worker ----------------------------------------------------------------------------------
        self.worker = GenerationWorker(engine_factories)
        self.host = WorkerHost(self.worker, self)
        self.worker.status.connect(self._on_status)
        self.worker.progress.connect(self._on_progress)
        self.worker.segment.connect(self._on_segment)
        self.worker.finished.connect(self._on_finished)
        self.worker.failed.connect(self._on_failed)

        # -- live preview (the instant engine, on its own thread) -------------------------------------
        self.live = LivePreview(self)
        self._showing_take = False  # a generated take is in the preview: live frames stay off it
        self.live_check = QCheckBox("Live instant preview")
        self.live_check.setToolTip(
            "The instant engine animates the picture with the current audio and pose, and follows "
            "the webcam when it is on, in real time, while the model renders; the model's segments replace it "
            "as they arrive.")
        self.live_check.setChecked(bool(self.settings.get("live_preview")))
        self.live_lips = self._percent_slider("live_lips", "How much the lips move (100%: as predicted)")
        self.live_sway = self._percent_slider("live_sway", "How much the head sways with the speech")
        self.live_sound = QCheckBox("Sound")
        self.live_sound.setToolTip("Play the audio with the live preview, in step with its loop")
        self.live_sound.setChecked(bool(self.settings.get("live_sound")))
        self._live_audio = None  # the audio the live preview animates (its sound)
        self._live_sound_on = False  # the player is playing the live preview's sound
        self.live_note = QLabel("")
        self.live_note.setWordWrap(True)
        self.live_note.setStyleSheet("color: #707070")
        self.live.frameReady.connect(self._on_live_frame)
        self.live.message.connect(self.live_note.setText)
        self.live.loopStarted.connect(self._on_live_loop)
        self.live.set_mouth_scale(self.live_lips.value() / 100)
        self.live.set_sway(self.live_sway.value() / 100)

        self.generate_btn = QPushButton("Generate")
        self.generate_btn.setDefault(True)
        self.generate_btn.setMinimumHeight(36)
        self.generate_btn.setStyleSheet("font-weight: bold")
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.step_bar = QProgressBar()
        self.segment_bar = QProgressBar()
        self._reset_progress()
        self.eta_label = QLabel("")
        self.status_label = QLabel(FIRST_HINT)
        self.status_label.setWordWrap(True)
        # The length cap, said before a run and after a take it cut, with one click to render it all.
        self.length_note = QLabel("")
        self.length_note.setWordWrap(True)
        self.length_note.setStyleSheet("color: #d08000")
        self.render_all_btn = QPushButton("Render all")
        self.render_all_btn.setToolTip("Set Length to the whole audio and generate again")
        self.length_note.setVisible(False)
        self.render_all_btn.setVisible(False)
        self.quality = QComboBox()
        self.quality.addItems(list(EXPORT_QUALITY))
        self.quality.setCurrentText(str(self.settings.get("export_quality")))
        self.export_png = QCheckBox("PNG frames")
        self.export_png.setChecked(bool(self.settings.get("export_png")))
        self.export_btn = QPushButton("Export MP4...")
        self.export_btn.setEnabled(False)
        self.open_folder_btn = QPushButton("Open output folder")

        self.history_list = QListWidget()
        self.history_list.setIconSize(QSize(64, 64))
        self.history_list.setWordWrap(True)
        self.history_list.setMinimumHeight(120)
        self.show_run_btn = QPushButton("Show")
        self.use_settings_btn = QPushButton("Use its settings")
        self.use_settings_btn.setToolTip("Load this take's picture, audio, settings and seed: change one, "
                                         "then Generate.")

        # -- layout ----------------------------------------------------------------------------------
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.addWidget(self.reference, 3)
        ll.addWidget(self.audio, 0)
        ll.addWidget(self.pose, 0)
        self.pose.modeChanged.connect(lambda m: ll.setStretchFactor(self.pose, 0 if m == PosePanel.NONE else 2))
        self.left_scroll = _vscroll(left)

        mid = QWidget()
        ml = QVBoxLayout(mid)
        ml.addWidget(self.preview, 1)
        live_row = QHBoxLayout()
        live_row.addWidget(self.live_check)
        live_row.addStretch(1)
        live_row.addWidget(self.live_sound)
        ml.addLayout(live_row)
        slider_row = QHBoxLayout()
        slider_row.addWidget(QLabel("Lips"))
        slider_row.addWidget(self.live_lips, 1)
        slider_row.addWidget(QLabel("Sway"))
        slider_row.addWidget(self.live_sway, 1)
        ml.addLayout(slider_row)
        ml.addWidget(self.live_note)
        run_row = QHBoxLayout()
        run_row.addWidget(self.generate_btn, 2)
        run_row.addWidget(self.cancel_btn, 1)
        ml.addLayout(run_row)
        bars = QHBoxLayout()
        bars.addWidget(self.step_bar, 1)
        bars.addWidget(self.segment_bar, 1)
        bars.addWidget(self.eta_label)
        ml.addLayout(bars)
        length_row = QHBoxLayout()
        length_row.addWidget(self.length_note, 1)
        length_row.addWidget(self.render_all_btn)
        ml.addLayout(length_row)
        ml.addWidget(self.status_label)
        exp_row = QHBoxLayout()
        exp_row.addWidget(QLabel("Quality"))
        exp_row.addWidget(self.quality)
        exp_row.addWidget(self.export_png)
        exp_row.addStretch(1)
        ml.addLayout(exp_row)
        exp_row2 = QHBoxLayout()
        exp_row2.addWidget(self.export_btn)
        exp_row2.addWidget(self.open_folder_btn)
        ml.addLayout(exp_row2)
        self.mid_scroll = _vscroll(mid)

        self.settings_scroll = _vscroll(self.controls)
        hist = QWidget()
        hl = QVBoxLayout(hist)
        self.history_note = QLabel("")
        self.history_note.setWordWrap(True)
        self.history_note.setStyleSheet("color: #707070")
        hl.addWidget(self.history_note)
        hl.addWidget(self.history_list, 1)
        hrow = QHBoxLayout()
        hrow.addWidget(self.show_run_btn)
        hrow.addWidget(self.use_settings_btn)
        hl.addLayout(hrow)
        self.side_tabs = QTabWidget()
        self.side_tabs.addTab(self.settings_scroll, "Settings")
        self.side_tabs.addTab(hist, "History")

        split = QSplitter(Qt.Orientation.Horizontal)
        split.setChildrenCollapsible(False)
        split.addWidget(self.left_scroll)
        split.addWidget(self.mid_scroll)
        split.addWidget(self.side_tabs)
        split.setStretchFactor(1, 1)
        self.splitter = split
        self.setCentralWidget(split)
        self._build_menu()
        for area in (self.left_scroll, self.mid_scroll, self.settings_scroll):
            _fit_width(area)
        split.setSizes([340, 620, 400])
        self._fit_screen()

        # -- wiring ----------------------------------------------------------------------------------
        self.generate_btn.clicked.connect(self.generate)
        self.cancel_btn.clicked.connect(self.cancel)
        self.export_btn.clicked.connect(self._export_dialog)
        self.open_folder_btn.clicked.connect(self.open_output_folder)
        self.show_run_btn.clicked.connect(lambda: self.show_run(self.history_list.currentRow()))
        self.use_settings_btn.clicked.connect(lambda: self.use_run_settings(self.history_list.currentRow()))
        self.history_list.itemDoubleClicked.connect(lambda _i: self.show_run(self.history_list.currentRow()))
        self.live_check.toggled.connect(self._live_toggled)
        self.live_lips.valueChanged.connect(lambda v: self.live.set_mouth_scale(v / 100))
        self.live_sway.valueChanged.connect(lambda v: self.live.set_sway(v / 100))
        self.live_sound.toggled.connect(lambda on: None if on else self._stop_live_sound())
        for sig in (self.reference.referenceChanged, self.audio.audioChanged, self.pose.poseChanged):
            sig.connect(self._inputs_changed)
        self.controls.aspect.currentTextChanged.connect(self._inputs_changed)
        self.pose.skeletonShown.connect(self._on_live_skeleton)
        self.pose.cameraChanged.connect(self._on_camera_changed)
        self.audio.recordingChanged.connect(self._on_recording_changed)
        self._mic_timer = QTimer(self)
        self._mic_timer.setInterval(33)
        self._mic_timer.timeout.connect(self._feed_mic)
        self._mic_pos = 0
        self.preview.play_btn.toggled.connect(self._play_toggled)
        self.render_all_btn.clicked.connect(self.render_all)
        for sig in (self.audio.audioChanged, self.pose.poseChanged, self.controls.changed):
            sig.connect(self._update_length_note)
        self.reference.referenceChanged.connect(self._picture_changed)
        self.history_list.currentRowChanged.connect(lambda _r: self._history_buttons())
        self._live_since = time.monotonic()  # when the live preview's inputs last changed
        self._live_loops = 0  # loop starts since then
        self.live_rest_s = LIVE_REST_S
        self._history_buttons()
        self._restore_inputs()
        self.restore_history()
        if first_run_check and not self.settings.get("system_checked", False):
            QTimer.singleShot(500, self.show_system_check)

    def _fit_screen(self) -> None:
        """At most MIN_SIZE as the minimum, and a first size that fits the screen it opens on."""
        self.setMinimumSize(min(self.minimumSizeHint().width(), MIN_SIZE[0]),
                            min(self.minimumSizeHint().height(), MIN_SIZE[1]))
        screen = self.screen() or QApplication.primaryScreen()
        avail = screen.availableGeometry().size() if screen is not None else QSize(1500, 920)
        self.resize(max(self.minimumWidth(), min(1500, avail.width())),
                    max(self.minimumHeight(), min(920, avail.height())))

    # -- menu --------------------------------------------------------------------------------------------

    def _build_menu(self) -> None:
        mb = self.menuBar()
        f = mb.addMenu("&File")
        for text, slot, key in (
            ("Open picture...", self.reference._open, QKeySequence.StandardKey.Open),
            ("Open audio...", self.audio._open, None),
            ("Open driving video...", lambda: (self.pose.set_mode(PosePanel.VIDEO), self.pose._open_video()), None),
            ("Open the example (toon and speech)", self.open_example, None),
            ("Export MP4...", self._export_dialog, QKeySequence("Ctrl+E")),
            ("Open output folder", self.open_output_folder, None),
            ("Set sessions folder...", self._choose_sessions_dir, None),
            ("Quit", self.close, QKeySequence.StandardKey.Quit),
        ):
            a = QAction(text, self)
            if key is not None:
                a.setShortcut(key)
            a.triggered.connect(slot)
            f.addAction(a)
        t = mb.addMenu("&Tools")
        a = QAction("System check...", self)
        a.triggered.connect(self.show_system_check)
        t.addAction(a)
        a = QAction("Rescan models", self)
        a.triggered.connect(self.controls.refresh_models)
        t.addAction(a)
        g = QAction("Generate", self)
        g.setShortcut(QKeySequence("Ctrl+Return"))
        g.triggered.connect(self.generate)
        self.addAction(g)
        c = QAction("Cancel", self)
        c.setShortcut(QKeySequence("Escape"))
        c.triggered.connect(self.cancel)
        self.addAction(c)

    def open_example(self) -> None:
        """The bundled example, as the CLI's: a toon picture, its espeak-ng speech and its pose take."""
        image, speech, pose = EXAMPLES / "toon.png", EXAMPLES / "speech.wav", EXAMPLES / "pose.npy"
        if not (image.is_file() and speech.is_file()):
            self._warn("Example missing", f"{EXAMPLES}: the example files are not there (a partial install?).")
            return
        self.reference.load(str(image))
        self.audio.load(str(speech))
        if pose.is_file():
            self.pose.load_pose_file(str(pose))

    # -- inputs remembered between runs ------------------------------------------------------------------

    def _restore_inputs(self) -> None:
        img = self.settings.get("last_image", "")
        if img and Path(img).is_file():
            self.reference.load(img)
        aud = self.settings.get("last_audio", "")
        if aud and Path(aud).is_file():
            self.audio.load(aud)

    # -- generation --------------------------------------------------------------------------------------

    def build_job(self) -> GenerationJob | None:
        """The job of the current inputs and controls, or None after telling the user what is missing."""
        if self.reference.image is None:
            self._warn("Nothing to animate", "Open or drop a reference picture first.")
            return None
        audio = self.audio.trimmed()
        fps = self.controls.output_fps()
        pose = self.pose.pose_for(fps)
        if (audio is None or len(audio) == 0) and pose is None:
            self._warn("Nothing drives the animation",
                       "Load or record audio, or record a pose take / open a driving video.")
            return None
        gs = self.controls.generation_settings(fps)
        values = self.controls.values()
        values["trim"] = list(self.audio.trim())
        values["audio_file"] = self.audio.path
        values["image_file"] = self.reference.path
        image, pose = crop_to_aspect(self.reference.image, pose, ASPECTS.get(values["aspect"]))
        return GenerationJob(image=image, audio=audio, pose=pose, text=values["text"],
                             settings=gs, model=self.controls.model_choice(), device=values["device"],
                             dtype=values["dtype"], engine=values["engine"], cpu_threads=values["cpu_threads"],
                             ui_settings=values)

    def length_cut(self) -> tuple[float, float] | None:
        """(rendered, audio) seconds when the Length cap cuts the audio, else None."""
        audio = self.audio.trimmed()
        cap = self.controls.max_seconds.value()
        if audio is None or not len(audio) or cap <= 0:
            return None
        total = len(audio) / SAMPLE_RATE
        return (cap, total) if cap < total - 0.5 / self.controls.output_fps() else None

    def _update_length_note(self, *_args) -> None:
        cut = self.length_cut()
        take = self._cut_take()
        if take is not None:
            got, total = take
            self.length_note.setText(f"This take is {got:.1f} s of {total:.1f} s of audio (the Length cap).")
        elif cut is not None:
            self.length_note.setText(f"Length cap: renders the first {cut[0]:.1f} s of {cut[1]:.1f} s of audio.")
        self.length_note.setVisible(take is not None or cut is not None)
        self.render_all_btn.setVisible(take is not None or cut is not None)
        total = (take or cut or (0, 0))[1]
        self.render_all_btn.setText(f"Render all {total:.1f} s")
        self.render_all_btn.setEnabled(not self.busy)

    def _cut_take(self) -> tuple[float, float] | None:
        """(take, audio) seconds when the take shown is shorter than its audio, else None."""
        rec = self.current
        if (rec is None or not self._showing_take or rec.status == "running" or rec.audio is None
                or not rec.num_frames):
            return None  # no take in the preview (the inputs changed since): the cap itself is said
        got, total = rec.num_frames / rec.fps, len(rec.audio) / SAMPLE_RATE
        return (got, total) if got < total - 1.0 / rec.fps else None

    def render_all(self) -> bool:
        """One click: no Length cap, and generate the whole audio."""
        self.controls.apply({"max_seconds": 0.0})
        self._update_length_note()
        return self.generate()

    def generate(self) -> bool:
        if self.busy:
            return False
        job = self.build_job()
        if job is None:
            return False
        self.save_settings()
        try:
            job.run_dir = new_run_dir(self.settings.sessions_dir)
        except OSError as e:
            self._warn("Cannot write the session folder", f"{self.settings.sessions_dir}: {e}")
            return False
        rec = RunRecord(job.run_dir, dict(job.ui_settings), job.settings.seed, job.settings.fps, job.audio,
                        model_label=job.model.label if job.model is not None else "")
        self.current = rec
        self.preview.clear(job.settings.fps, job.audio)
        self._showing_take = False
        self._update_live(LiveInputs(job.image, job.audio, job.pose, job.settings.fps, job.settings.seed or 0))
        self._reset_progress()
        self.eta_label.setText("")
        self._set_busy(True)
        self._update_length_note()
        self.worker.request.emit(job)
        return True

    def cancel(self) -> None:
        if self.busy:
            self.worker.cancel()
            self.status_label.setText("Cancelling after the current step...")

    def _set_busy(self, busy: bool) -> None:
        self.busy = busy
        self.generate_btn.setEnabled(not busy)
        self.cancel_btn.setEnabled(busy)
        self.render_all_btn.setEnabled(not busy)
        self.generate_btn.setText("Generating..." if busy else "Generate")

    def _reset_progress(self) -> None:
        """Empty bars (before a run, and after one that was cancelled or failed)."""
        for bar, what in ((self.step_bar, "step"), (self.segment_bar, "segment")):
            bar.setRange(0, 1)
            bar.setValue(0)
            bar.setFormat(what)

    def _on_status(self, text: str) -> None:
        self.status_label.setText(text)

    def _on_progress(self, seg: int, n_seg: int, step: int, steps: int, eta: float) -> None:
        if not self.busy:
            return  # a step reported after the run ended (cancel): the bars stay reset
        self.step_bar.setFormat("step %v/%m")
        self.step_bar.setRange(0, steps)
        self.step_bar.setValue(step)
        self.segment_bar.setRange(0, n_seg)
        self.segment_bar.setValue(seg)
        self.segment_bar.setFormat(f"segment {seg + 1}/{n_seg}")
        self.eta_label.setText(format_eta(eta))

    def _on_segment(self, seg: int, frames: np.ndarray, start: int, _audio) -> None:
        self._take_shown()
        self.preview.add_segment(frames, start)
        self.segment_bar.setValue(seg + 1)
        self.segment_bar.setFormat(f"{seg + 1}/{self.segment_bar.maximum()} segments done")
        rec = self.current
        if rec is not None:
            rec.segments = seg + 1
            if rec.thumbnail is None:
                rec.thumbnail = frames[0]
        self.export_btn.setEnabled(True)
        self.status_label.setText(f"Segment {seg + 1} done ({len(self.preview.frames)} frames so far).")

    def _on_finished(self, out: JobOutcome) -> None:
        self._set_busy(False)
        rec = self.current
        if rec is not None:
            rec.seed, rec.fps, rec.segments = out.seed, out.fps, out.segments_done
            rec.num_frames, rec.size = out.num_frames, (out.width, out.height)
            rec.status = "cancelled" if out.cancelled else "done"
            rec.extra = {"video": str(out.video_path or ""), "seconds": out.seconds}
            self._add_history(rec)
        self.controls.show_used_seed(out.seed)
        self.eta_label.setText(f"{out.seconds:.1f} s")
        if out.cancelled:
            self._reset_progress()
            self.eta_label.setText("")
            self.status_label.setText(f"Cancelled: {out.segments_done} of {out.num_segments} segments kept in "
                                      f"{out.run_dir}.")
        else:
            self.status_label.setText(f"Done: {out.num_frames} frames, {out.width}x{out.height}, seed {out.seed}, "
                                      f"{out.seconds:.1f} s. Saved in {out.run_dir}.")
        self.export_btn.setEnabled(out.segments_done > 0)
        self._update_length_note()
        self.runFinished.emit(out)

    def _on_failed(self, message: str, details: str, run_dir) -> None:
        self._set_busy(False)
        self._reset_progress()
        self.eta_label.setText("")
        rec = self.current
        kept = ""
        if rec is not None and rec.segments:
            rec.status = "failed"
            self._add_history(rec)
            kept = f"\n\n{rec.segments} finished segment(s) are kept in {run_dir}."
        self.status_label.setText("Failed: " + message.splitlines()[0])
        box = QMessageBox(QMessageBox.Icon.Critical, "Generation failed", message + kept,
                          QMessageBox.StandardButton.Ok, self)
        box.setDetailedText(details)
        self.runFailed.emit(message)
        box.exec()

    # -- live preview ------------------------------------------------------------------------------------

    def _percent_slider(self, key: str, tip: str) -> QSlider:
        s = QSlider(Qt.Orientation.Horizontal)
        s.setRange(0, 200)
        s.setValue(int(self.settings.get(key)))
        s.setToolTip(tip + " (0-200%)")
        return s

    def live_inputs(self) -> LiveInputs | None:
        """The current inputs as the live preview animates them (no warnings: it is a preview)."""
        if self.reference.image is None:
            return None
        audio = self.audio.trimmed()
        fps = self.controls.output_fps()
        pose = self.pose.pose_for(fps)
        image, pose = crop_to_aspect(self.reference.image, pose, ASPECTS.get(self.controls.aspect.currentText()))
        return LiveInputs(image, audio if audio is not None and len(audio) else None, pose, fps,
                          int(self.controls.seed.value()))

    def _update_live(self, inputs: LiveInputs | None = None) -> None:
        """Start, feed or stop the live thread: it runs while wanted and nothing generated is shown."""
        inputs = inputs or self.live_inputs()
        wanted = self.live_check.isChecked() and inputs is not None and not self._showing_take and not self._closed
        if not wanted:
            self.live.stop(wait=False)
            self._stop_live_sound()
            return
        self._live_audio = inputs.audio
        self._live_since, self._live_loops = time.monotonic(), 0
        self.live.set_inputs(inputs)
        self.live.start()

    def _live_must_follow(self) -> bool:
        """The webcam or the microphone drives the live preview: it never rests then."""
        return self.pose.capture is not None or self.audio.recorder is not None

    def _rest_live(self) -> None:
        """Nothing changed for a while: the live thread ends (no CPU) and the last frame stays."""
        self.live.stop(wait=False)
        self._stop_live_sound()
        self.preview.label.setText("live preview resting")
        self.live_note.setText("The live preview rests when nothing changes: press Play or change an input "
                               "to watch it again.")

    def _play_toggled(self, on: bool) -> None:
        if not on:
            return
        if self.preview.frames:
            self._take_shown()
        elif self.live_check.isChecked() and not self.live.running:
            self._showing_take = False
            self._update_live()  # Play with no take: the live preview wakes up

    def _picture_changed(self) -> None:
        info = self.reference.info
        self.controls.set_picture_framing(info.framing if info is not None and info.person_found else None)

    def _inputs_changed(self, *_args) -> None:
        if self.busy:
            return  # the run keeps animating the inputs it was started with
        self._showing_take = False
        self._update_live()

    def _live_toggled(self, on: bool) -> None:
        if on:
            self.preview.stop()
            self._showing_take = False
        else:
            self.live_note.setText("")
        self._update_live()

    def _take_shown(self) -> None:
        """A generated take goes into the preview: the live frames step aside."""
        self._showing_take = True
        self.live.stop(wait=False)
        self._stop_live_sound()

    def _on_live_frame(self, image, i: int, n: int) -> None:
        if self.live.running and not self._showing_take:
            self.preview.view.set_image(image)
            self.preview.label.setText(f"live {i + 1}/{n} (instant engine)")
        self.live.ack()

    def _on_live_loop(self, offset: float) -> None:
        """The live loop (re)started: its sound starts with it (the microphone's sound is the room's).
        At a loop's end after ``live_rest_s`` without a change it rests instead."""
        self._live_loops += 1
        if (self._live_loops > 1 and time.monotonic() - self._live_since >= self.live_rest_s
                and self.live.running and not self._live_must_follow()):
            self._rest_live()
            return
        if not (self.live_sound.isChecked() and self.live.running and not self._showing_take):
            return
        if self._live_audio is None or self.audio.recorder is not None:
            self._stop_live_sound()
            return
        self._live_sound_on = self.player.play(self._live_audio, offset, retry=False)
        if not self._live_sound_on and self.player.error:
            self.live_note.setText("Live preview without sound: " + self.player.error)

    def _stop_live_sound(self) -> None:
        if self._live_sound_on:
            self.player.stop()
            self._live_sound_on = False

    def _on_recording_changed(self, on: bool) -> None:
        """While the microphone records, it drives the live preview's lips: speak and see."""
        rec = self.audio.recorder
        if on and rec is not None and not self.busy:
            self._stop_live_sound()
            self._showing_take = False
            self._update_live()
            self.live.set_mic(rec.samplerate)
            self._mic_pos = 0
            self._mic_timer.start()
        else:
            self._mic_timer.stop()
            self.live.set_mic(None)

    def _feed_mic(self) -> None:
        rec = self.audio.recorder
        if rec is None:
            return
        snap = rec.snapshot()  # the take so far, at the device rate (joined blocks: cheap)
        if len(snap) > self._mic_pos:
            self.live.push_mic(snap[self._mic_pos:])
            self._mic_pos = len(snap)

    def _on_camera_changed(self, on: bool) -> None:
        """The webcam puppet: with the camera on, the live preview follows its skeleton."""
        if not on:
            self.live.set_live_pose(None)
        elif not self.busy:
            self._showing_take = False
            self._update_live()

    def _on_live_skeleton(self, kp) -> None:
        if self.live.running:
            camera = self.pose.capture is not None
            self.live.set_live_pose(kp if camera else None, self.pose.live_aspect,
                                    self.pose.mirror.isChecked())

    # -- history -----------------------------------------------------------------------------------------

    def restore_history(self) -> None:
        """The takes of earlier sessions, read from the sessions folder on the task pool."""
        root = self.settings.sessions_dir
        self.history_note.setText(f"Reading the takes in {root}...")

        def done(records) -> None:
            known = {r.run_dir for r in self.history}
            if self.current is not None:
                known.add(self.current.run_dir)  # a run under way is this session's, not a restored one
            for rec in records:
                if rec.run_dir not in known:
                    self._add_history(rec, restored=True)
            self.history_note.setText(f"Takes in {root}" if self.history else f"No takes yet in {root}.")
            self.historyRestored.emit(len(records))

        self.tasks.submit(lambda: scan_runs(root), done,
                          lambda e, _tb: self.history_note.setText(f"Cannot read the takes in {root}: {e}"))

    def _add_history(self, rec: RunRecord, restored: bool = False) -> None:
        if rec in self.history:
            return
        # Restored takes (oldest first) go before this session's, which are newer; a new one goes last.
        pos = len(self._restored) if restored else len(self.history)
        if restored:
            self._restored.append(rec)
        self.history.insert(pos, rec)
        item = QListWidgetItem(rec.summary())
        if rec.thumbnail is not None:
            item.setIcon(QIcon(QPixmap.fromImage(to_qimage(rec.thumbnail))))
        item.setToolTip(f"{rec.run_dir}\n" + json.dumps(rec.settings, indent=1, default=str))
        self.history_list.insertItem(pos, item)
        if not restored:
            self.history_list.setCurrentRow(pos)
        self.side_tabs.setTabText(1, f"History ({len(self.history)})")
        self._history_buttons()

    def _history_buttons(self) -> None:
        ok = 0 <= self.history_list.currentRow() < len(self.history)
        self.show_run_btn.setEnabled(ok)
        self.use_settings_btn.setEnabled(ok)

    def show_run(self, row: int) -> None:
        """Load a take of the history into the preview (frames and sound read on the task pool)."""
        if not 0 <= row < len(self.history):
            return
        from models.engines.writer import load_run_frames

        rec = self.history[row]

        def work():
            return load_run_frames(rec.run_dir), record_audio(rec)

        def done(res) -> None:
            frames, audio = res
            rec.audio = audio
            rec.num_frames = rec.num_frames or len(frames)
            self._take_shown()
            self.preview.set_frames(frames, rec.fps, audio)
            self.current = rec
            self.export_btn.setEnabled(True)
            self.status_label.setText(f"Showing take {row + 1} ({rec.inputs()}): {rec.run_dir}")
            self._update_length_note()

        self.tasks.submit(work, done, lambda e, _tb: self._warn("Cannot show this take", str(e)))

    def use_run_settings(self, row: int) -> None:
        """Back to a take: its settings and seed, and its picture and audio (with their trim)."""
        if not 0 <= row < len(self.history):
            return
        rec = self.history[row]
        values = dict(rec.settings)
        if rec.seed is not None:
            values["seed"] = rec.seed
            values["random_seed"] = False
        self.controls.apply(values)
        missing = []
        image = values.get("image_file") or ""
        if image and image != self.reference.path:
            if Path(image).is_file():
                self.reference.load(image)
            else:
                missing.append(image)
        audio = values.get("audio_file") or ""
        trim = values.get("trim")
        if audio and Path(audio).is_file():
            if audio != self.audio.path:
                self.audio.load(audio, trim)
            elif trim:
                self.audio.wave.set_trim(*trim)
        elif audio:
            missing.append(audio)
        text = f"Take {row + 1} loaded ({rec.inputs()}, seed {rec.seed}): change one setting, then Generate."
        if not audio and self.audio.audio is not None:
            text += " Its audio was a recording: the current audio stays."
        if missing:
            text += " Not found: " + ", ".join(missing) + "."
        self.status_label.setText(text)

    # -- export ------------------------------------------------------------------------------------------

    def _export_dialog(self) -> None:
        if self.current is None or not self.current.segments:
            self._warn("Nothing to export", "Generate a take first.")
            return
        d = self.settings.export_dir  # always an existing folder (~/Videos/OmniHuman, else home)
        default = str(d / f"{self.current.run_dir.name}.mp4")
        path, _ = QFileDialog.getSaveFileName(self, "Export video", default, "MP4 video (*.mp4)")
        if path:
            self.export(path)

    def export(self, path: str, on_done=None) -> None:
        rec = self.current
        quality, png = self.quality.currentText(), self.export_png.isChecked()
        self.settings.set("export_quality", quality)
        self.settings.set("export_png", png)
        self.settings.set("export_dir", str(Path(path).parent))
        meta = {"settings": rec.settings, "seed": rec.seed, "run_dir": str(rec.run_dir)}
        self.status_label.setText("Exporting...")

        def work():
            return export_run(rec.run_dir, Path(path), record_audio(rec), rec.fps, quality, png, meta)

        def done(res):
            self.status_label.setText(f"Exported {res.video}" + (f" and frames in {res.frames_dir}"
                                                                 if res.frames_dir else ""))
            if on_done:
                on_done(res)

        self.tasks.submit(work, done, lambda e, _tb: self._warn("Export failed", str(e)))

    def open_output_folder(self) -> None:
        d = self.current.run_dir if self.current is not None else self.settings.sessions_dir
        d.mkdir(parents=True, exist_ok=True)
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(str(d))):
            self.status_label.setText(f"No file manager to open; the takes are in {d}")

    def _choose_sessions_dir(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Folder for generated takes", str(self.settings.sessions_dir))
        if d:
            self.settings.set("sessions_dir", d)

    # -- system check ------------------------------------------------------------------------------------

    def show_system_check(self) -> None:
        from app.syscheck import SystemCheckDialog, system_checks

        self.settings.set("system_checked", True)
        before = self.status_label.text()
        checking = "Checking the system..."
        self.status_label.setText(checking)

        def restore() -> None:  # the hint (or whatever was said) comes back unless something newer replaced it
            if self.status_label.text() == checking:
                self.status_label.setText(before)

        def done(rows):
            restore()
            self.syscheck_dialog = SystemCheckDialog(rows, self)
            self.syscheck_dialog.show()

        def failed(e, _tb):
            restore()
            self._warn("System check failed", str(e))

        threads = self.controls.cpu_threads.value()
        self.tasks.submit(lambda: system_checks(self.settings.model_dirs, threads), done, failed)

    # -- misc --------------------------------------------------------------------------------------------

    def _warn(self, title: str, text: str) -> None:
        QMessageBox.warning(self, title, text)

    def save_settings(self) -> None:
        self.controls.save(self.settings)
        self.settings.set("live_preview", self.live_check.isChecked())
        self.settings.set("live_lips", self.live_lips.value())
        self.settings.set("live_sway", self.live_sway.value())
        self.settings.set("live_sound", self.live_sound.isChecked())
        if self.reference.path:
            self.settings.set("last_image", self.reference.path)
        if self.audio.path:
            self.settings.set("last_audio", self.audio.path)
        self.settings.set("export_quality", self.quality.currentText())
        self.settings.set("export_png", self.export_png.isChecked())

    def shutdown(self) -> None:
        """Save, stop every thread (generation, capture, tasks) and wait for them."""
        if self._closed:
            return
        self._closed = True
        self.save_settings()
        self.settings.sync()
        self._mic_timer.stop()
        self.live.stop()
        self._stop_live_sound()
        self.preview.stop()
        self.audio.shutdown()
        self.pose.shutdown()
        self.host.stop()
        self.tasks.shutdown()

    def closeEvent(self, ev) -> None:  # noqa: N802
        self.shutdown()
        super().closeEvent(ev)


def run_app(argv: list[str] | None = None) -> int:
    app = QApplication.instance() or QApplication(argv if argv is not None else sys.argv)
    app.setOrganizationName("OmniHuman")
    app.setApplicationName("OmniHuman Studio")
    win = MainWindow()
    win.show()
    return app.exec()
