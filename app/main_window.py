"""The main window: inputs on the left, the live preview in the middle, controls and history on the right."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
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
    QVBoxLayout,
    QWidget,
)

from app.audio_io import Player
from app.controls import ControlsPanel
from app.jobs import ASPECTS, GenerationJob, JobOutcome, crop_to_aspect
from app.live import LiveInputs, LivePreview
from app.panels import AudioPanel, PosePanel, ReferencePanel
from app.settings import AppSettings
from app.widgets import PreviewPlayer, to_qimage
from app.worker import GenerationWorker, TaskRunner, WorkerHost
from models.engines.writer import EXPORT_QUALITY, export_run, new_run_dir
from models.media import DEFAULT_FPS


@dataclass
class RunRecord:
    """One take in the session's history."""

    run_dir: Path
    settings: dict
    seed: int | None = None
    fps: float = DEFAULT_FPS
    audio: np.ndarray | None = None
    thumbnail: np.ndarray | None = None
    segments: int = 0
    status: str = "running"
    extra: dict = field(default_factory=dict)

    def summary(self) -> str:
        s = self.settings
        return (f"seed {self.seed}  steps {s.get('steps')}  aCFG {s.get('cfg_audio')}  tCFG {s.get('cfg_text')}\n"
                f"{s.get('anneal')} {s.get('anneal_strength')}  {self.segments} seg  {self.status}")


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

    def __init__(self, settings: AppSettings | None = None, stream_factory=None, audio_status=None,
                 pose_source_factory=None, engine_factories=None, first_run_check: bool = True) -> None:
        super().__init__()
        self.setWindowTitle("OmniHuman Studio")
        self.settings = settings or AppSettings()
        self.tasks = TaskRunner(self)
        self.player = Player()
        self.history: list[RunRecord] = []
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
        self.step_bar.setFormat("step %v/%m")
        self.segment_bar = QProgressBar()
        self.segment_bar.setFormat("segment %v/%m")
        self.eta_label = QLabel("")
        self.status_label = QLabel("Open a picture and an audio file (or record), then Generate. "
                                   "New here? File > Open the example.")
        self.status_label.setWordWrap(True)
        self.quality = QComboBox()
        self.quality.addItems(list(EXPORT_QUALITY))
        self.quality.setCurrentText(str(self.settings.get("export_quality")))
        self.export_png = QCheckBox("PNG frames")
        self.export_png.setChecked(bool(self.settings.get("export_png")))
        self.export_btn = QPushButton("Export MP4...")
        self.export_btn.setEnabled(False)
        self.open_folder_btn = QPushButton("Open output folder")

        self.history_list = QListWidget()
        self.history_list.setIconSize(QSize(72, 72))
        self.history_list.setMinimumHeight(160)
        self.show_run_btn = QPushButton("Show")
        self.use_settings_btn = QPushButton("Use its settings")
        self.use_settings_btn.setToolTip("Load this take's settings and seed: change one slider, then Generate.")

        # -- layout ----------------------------------------------------------------------------------
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.addWidget(self.reference, 3)
        ll.addWidget(self.audio, 0)
        ll.addWidget(self.pose, 0)
        self.pose.modeChanged.connect(lambda m: ll.setStretchFactor(self.pose, 0 if m == PosePanel.NONE else 2))
        left_scroll = QScrollArea()
        left_scroll.setWidgetResizable(True)
        left_scroll.setWidget(left)
        left_scroll.setMinimumWidth(380)

        mid = QWidget()
        ml = QVBoxLayout(mid)
        ml.addWidget(self.preview, 1)
        live_row = QHBoxLayout()
        live_row.addWidget(self.live_check)
        live_row.addWidget(QLabel("Lips"))
        live_row.addWidget(self.live_lips, 1)
        live_row.addWidget(QLabel("Sway"))
        live_row.addWidget(self.live_sway, 1)
        live_row.addWidget(self.live_sound)
        ml.addLayout(live_row)
        ml.addWidget(self.live_note)
        run_row = QHBoxLayout()
        run_row.addWidget(self.generate_btn, 2)
        run_row.addWidget(self.cancel_btn, 1)
        ml.addLayout(run_row)
        ml.addWidget(self.step_bar)
        ml.addWidget(self.segment_bar)
        ml.addWidget(self.eta_label)
        ml.addWidget(self.status_label)
        exp_row = QHBoxLayout()
        exp_row.addWidget(QLabel("Quality"))
        exp_row.addWidget(self.quality)
        exp_row.addWidget(self.export_png)
        exp_row.addWidget(self.export_btn)
        exp_row.addWidget(self.open_folder_btn)
        ml.addLayout(exp_row)

        right = QWidget()
        rl = QVBoxLayout(right)
        rl.addWidget(self.controls)
        rl.addWidget(QLabel("History (this session)"))
        rl.addWidget(self.history_list, 1)
        hrow = QHBoxLayout()
        hrow.addWidget(self.show_run_btn)
        hrow.addWidget(self.use_settings_btn)
        rl.addLayout(hrow)
        right_scroll = QScrollArea()
        right_scroll.setWidgetResizable(True)
        right_scroll.setWidget(right)
        right_scroll.setMinimumWidth(520)
        right_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        left_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)

        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left_scroll)
        split.addWidget(mid)
        split.addWidget(right_scroll)
        split.setStretchFactor(1, 1)
        split.setSizes([400, 600, 540])
        self.setCentralWidget(split)
        self._build_menu()
        self.resize(1500, 920)

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
        self.preview.play_btn.toggled.connect(lambda on: self._take_shown() if on else None)
        self._restore_inputs()
        if first_run_check and not self.settings.get("system_checked", False):
            QTimer.singleShot(500, self.show_system_check)

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
        """The bundled example: a toon picture and its espeak-ng speech, to try everything at once."""
        root = Path(__file__).resolve().parent.parent / "resources" / "examples"
        image, speech = root / "toon.png", root / "speech.wav"
        if not (image.is_file() and speech.is_file()):
            self._warn("Example missing", f"{root}: the example files are not there (a partial install?).")
            return
        self.reference.load(str(image))
        self.audio.load(str(speech))

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
        rec = RunRecord(job.run_dir, dict(job.ui_settings), job.settings.seed, job.settings.fps, job.audio)
        self.current = rec
        self.preview.clear(job.settings.fps, job.audio)
        self._showing_take = False
        self._update_live(LiveInputs(job.image, job.audio, job.pose, job.settings.fps, job.settings.seed or 0))
        self.step_bar.setRange(0, job.settings.steps)
        self.step_bar.setValue(0)
        self.segment_bar.setRange(0, 1)
        self.segment_bar.setValue(0)
        self.eta_label.setText("")
        self._set_busy(True)
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
        self.generate_btn.setText("Generating..." if busy else "Generate")

    def _on_status(self, text: str) -> None:
        self.status_label.setText(text)

    def _on_progress(self, seg: int, n_seg: int, step: int, steps: int, eta: float) -> None:
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
            rec.status = "cancelled" if out.cancelled else "done"
            rec.extra = {"video": str(out.video_path or ""), "seconds": out.seconds}
            self._add_history(rec)
        self.controls.show_used_seed(out.seed)
        self.eta_label.setText(f"{out.seconds:.1f} s")
        if out.cancelled:
            self.status_label.setText(f"Cancelled: {out.segments_done} of {out.num_segments} segments kept in "
                                      f"{out.run_dir}.")
        else:
            self.status_label.setText(f"Done: {out.num_frames} frames, {out.width}x{out.height}, seed {out.seed}, "
                                      f"{out.seconds:.1f} s. Saved in {out.run_dir}.")
        self.export_btn.setEnabled(out.segments_done > 0)
        self.runFinished.emit(out)

    def _on_failed(self, message: str, details: str, run_dir) -> None:
        self._set_busy(False)
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
        self.live.set_inputs(inputs)
        self.live.start()

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
        """The live loop (re)started: its sound starts with it (the microphone's sound is the room's)."""
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

    def _add_history(self, rec: RunRecord) -> None:
        if rec in self.history:
            return
        self.history.append(rec)
        item = QListWidgetItem(rec.summary())
        if rec.thumbnail is not None:
            item.setIcon(QIcon(QPixmap.fromImage(to_qimage(rec.thumbnail))))
        item.setToolTip(json.dumps(rec.settings, indent=1, default=str))
        self.history_list.addItem(item)
        self.history_list.setCurrentRow(self.history_list.count() - 1)

    def show_run(self, row: int) -> None:
        """Load a take of the history into the preview (read on the task pool)."""
        if not 0 <= row < len(self.history):
            return
        from models.engines.writer import load_run_frames

        rec = self.history[row]

        def done(frames) -> None:
            self._take_shown()
            self.preview.set_frames(frames, rec.fps, rec.audio)
            self.current = rec
            self.export_btn.setEnabled(True)
            self.status_label.setText(f"Showing take {row + 1}: {rec.run_dir}")

        self.tasks.submit(lambda: load_run_frames(rec.run_dir), done,
                          lambda e, _tb: self._warn("Cannot show this take", str(e)))

    def use_run_settings(self, row: int) -> None:
        if not 0 <= row < len(self.history):
            return
        rec = self.history[row]
        values = dict(rec.settings)
        if rec.seed is not None:
            values["seed"] = rec.seed
            values["random_seed"] = False
        self.controls.apply(values)
        self.status_label.setText(f"Settings of take {row + 1} loaded (seed {rec.seed}): change one, then Generate.")

    # -- export ------------------------------------------------------------------------------------------

    def _export_dialog(self) -> None:
        if self.current is None or not self.current.segments:
            self._warn("Nothing to export", "Generate a take first.")
            return
        d = self.settings.export_dir
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

        def done(res):
            self.status_label.setText(f"Exported {res.video}" + (f" and frames in {res.frames_dir}"
                                                                 if res.frames_dir else ""))
            if on_done:
                on_done(res)

        self.tasks.submit(lambda: export_run(rec.run_dir, Path(path), rec.audio, rec.fps, quality, png, meta),
                          done, lambda e, _tb: self._warn("Export failed", str(e)))

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
        self.status_label.setText("Checking the system...")

        def done(rows):
            self.status_label.setText("")
            self.syscheck_dialog = SystemCheckDialog(rows, self)
            self.syscheck_dialog.show()

        self.tasks.submit(lambda: system_checks(self.settings.model_dirs), done,
                          lambda e, _tb: self._warn("System check failed", str(e)))

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
