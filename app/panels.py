"""The input panels: reference picture, audio, driving pose."""

from __future__ import annotations

import os

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSlider,
    QVBoxLayout,
)

from app.widgets import ImageView, WaveformView
from app.worker import TaskRunner, user_message
from models.media import DEFAULT_FPS, SAMPLE_RATE

IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.webp *.bmp *.tif *.tiff);;All files (*)"
MEDIA_FILTER = "Audio or video (*.wav *.mp3 *.flac *.ogg *.m4a *.aac *.mp4 *.mov *.mkv *.webm *.avi);;All files (*)"
VIDEO_FILTER = ("Video or pose take (*.mp4 *.mov *.mkv *.webm *.avi *.npy);;Video (*.mp4 *.mov *.mkv *.webm *.avi);;"
                "Pose take, keypoints (T, K, 3) (*.npy);;All files (*)")


def draw_reference_overlay(image: np.ndarray, info) -> np.ndarray:
    """The reference with the detected person's box and skeleton (what the model will animate)."""
    import cv2

    from models.keypoints import draw_skeleton

    h, w = image.shape[:2]
    s = min(1.0, 512 / max(h, w))
    small = cv2.resize(image, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA) if s < 1 else image.copy()
    if info is None or not info.person_found:
        return small
    out = draw_skeleton(small, info.keypoints)
    x0, y0, x1, y1 = info.bbox
    sh, sw = out.shape[:2]
    cv2.rectangle(out, (int(x0 * sw), int(y0 * sh)), (int(x1 * sw), int(y1 * sh)), (255, 210, 60),
                  max(1, sw // 200))
    return out


def _message_box(parent, title: str, text: str) -> None:
    from PySide6.QtWidgets import QMessageBox

    QMessageBox.warning(parent, title, text)


class ReferencePanel(QGroupBox):
    """Open or drop a picture; shows the detected person, framing and face."""

    referenceChanged = Signal()

    def __init__(self, tasks: TaskRunner, parent=None) -> None:
        super().__init__("1  Reference picture", parent)
        self.tasks = tasks
        self.image: np.ndarray | None = None
        self.info = None  # models.conditions.reference.ReferenceInfo
        self.path = ""
        self.view = ImageView("Drop a picture of a person here\nor click Open...", accept_drops=True)
        self.view.setMinimumSize(200, 200)
        self.open_btn = QPushButton("Open...")
        self.info_label = QLabel("")
        self.info_label.setWordWrap(True)
        lay = QVBoxLayout(self)
        lay.addWidget(self.view, 1)
        row = QHBoxLayout()
        row.addWidget(self.open_btn)
        row.addWidget(self.info_label, 1)
        lay.addLayout(row)
        self.open_btn.clicked.connect(self._open)
        self.view.fileDropped.connect(self.load)

    def _open(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open reference picture", "", IMAGE_FILTER)
        if path:
            self.load(path)

    def load(self, path: str) -> None:
        """Read and analyse on the task pool; the panel updates when both are done."""
        self.info_label.setText("Reading and looking for the person...")

        def work():
            from models.conditions.reference import analyze_reference
            from models.media import read_image

            img = read_image(path)
            try:
                info = analyze_reference(img)
                message = info.message
            except Exception as e:  # analysis is advice; the image is still usable
                info, message = None, f"Person detection unavailable ({e}); the whole image is used."
            return img, info, message, draw_reference_overlay(img, info)  # drawn here, off the UI thread

        self.tasks.submit(work, lambda r: self._loaded(path, *r), self._failed)

    def set_image(self, image: np.ndarray, info=None, message: str = "", path: str = "") -> None:
        self._loaded(path, image, info, message)

    def _loaded(self, path: str, img: np.ndarray, info, message: str, overlay: np.ndarray | None = None) -> None:
        self.path, self.image, self.info = path, img, info
        self.view.set_image(overlay if overlay is not None else draw_reference_overlay(img, info))
        h, w = img.shape[:2]
        self.info_label.setText(f"{w}x{h}. {message}")
        self.info_label.setStyleSheet("" if info is None or info.person_found else "color: #d08000")
        self.referenceChanged.emit()

    def _failed(self, exc, _tb) -> None:
        """The old picture goes: what is shown is what would be animated, and that is nothing now."""
        had = self.image is not None
        self.path, self.image, self.info = "", None, None
        self.view.set_image(None)
        self.info_label.setText(f"Could not open that picture: {user_message(exc)} Open another one.")
        self.info_label.setStyleSheet("color: #d08000")
        if had:
            self.referenceChanged.emit()
        _message_box(self, "Cannot use this picture", user_message(exc))


class AudioPanel(QGroupBox):
    """Load a file or record the microphone; waveform with trim handles; playback."""

    audioChanged = Signal()
    recordingChanged = Signal(bool)  # the microphone started (True) or stopped recording

    def __init__(self, tasks: TaskRunner, player, stream_factory=None, audio_status=None, parent=None) -> None:
        super().__init__("2  Audio", parent)
        from app.audio_io import audio_status as probe

        self.tasks = tasks
        self.player = player
        self.stream_factory = stream_factory
        self.audio: np.ndarray | None = None  # 16 kHz mono, untrimmed
        self.path = ""
        self.recorder = None
        self.status = audio_status or probe()
        self.load_btn = QPushButton("Load file...")
        self.rec_btn = QPushButton("Record")
        self.rec_btn.setCheckable(True)
        self.play_btn = QPushButton("Play")
        self.clear_btn = QPushButton("Clear")
        self.device_box = QComboBox()
        for idx, name, rate in self.status.input_devices:
            self.device_box.addItem(f"{name} ({rate:.0f} Hz)", (idx, rate))
        self.meter = QProgressBar()
        self.meter.setRange(0, 100)
        self.meter.setTextVisible(False)
        self.meter.setFixedHeight(8)
        self.wave = WaveformView()
        self.msg = QLabel("")
        self.msg.setWordWrap(True)
        self.rec_note = QLabel("")
        self.rec_note.setWordWrap(True)
        self.rec_note.setStyleSheet("color: #d08000")
        self.rec_note.setVisible(False)
        lay = QVBoxLayout(self)
        row = QHBoxLayout()
        for b in (self.load_btn, self.rec_btn, self.play_btn, self.clear_btn):
            row.addWidget(b)
        row.addWidget(self.device_box, 1)
        lay.addLayout(row)
        lay.addWidget(self.meter)
        lay.addWidget(self.wave)
        lay.addWidget(self.msg)
        lay.addWidget(self.rec_note)
        if stream_factory is None and not self.status.ok:
            self.rec_btn.setEnabled(False)
            self.device_box.setVisible(False)
            self.rec_btn.setToolTip(self.status.message)
            self.rec_note.setText("Recording is off: " + self.status.message)
            self.rec_note.setVisible(True)
        self.timer = QTimer(self)
        self.timer.setInterval(33)
        self.timer.timeout.connect(self._poll)
        self.load_btn.clicked.connect(self._open)
        self.rec_btn.toggled.connect(self._toggle_record)
        self.play_btn.clicked.connect(self._play)
        self.clear_btn.clicked.connect(self.clear)
        self.wave.trimChanged.connect(lambda *_: self.audioChanged.emit())
        self.wave.fileDropped.connect(self.load)

    # -- file ----------------------------------------------------------------------------------------

    def _open(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open audio or video", "", MEDIA_FILTER)
        if path:
            self.load(path)

    def load(self, path: str, trim: tuple[float, float] | None = None) -> None:
        """Decode on the task pool; ``trim`` (start, end seconds) is set once it is loaded."""
        from models.media import read_audio

        self.msg.setText("Decoding audio...")
        self.tasks.submit(lambda: read_audio(path), lambda a: self.set_audio(a, path, trim), self._failed)

    def set_audio(self, audio: np.ndarray | None, path: str = "", trim: tuple[float, float] | None = None) -> None:
        self.audio, self.path = audio, path
        self.wave.set_audio(audio, SAMPLE_RATE)
        if audio is not None and trim:
            self.wave.blockSignals(True)
            self.wave.set_trim(float(trim[0]), float(trim[1]))
            self.wave.blockSignals(False)
        if audio is not None:
            self.msg.setText(f"{path or 'recording'}: {len(audio) / SAMPLE_RATE:.2f} s. Drag the yellow "
                             "handles to trim.")
        else:
            self.msg.setText("")
        self.audioChanged.emit()

    def clear(self) -> None:
        self.set_audio(None)

    def _failed(self, exc, _tb) -> None:
        self.msg.setText("")
        _message_box(self, "Cannot use this audio", user_message(exc))

    def trimmed(self) -> np.ndarray | None:
        """The audio between the trim handles (what generation uses)."""
        if self.audio is None:
            return None
        s, e = self.wave.trim
        return self.audio[int(s * SAMPLE_RATE): int(round(e * SAMPLE_RATE))]

    def trim(self) -> tuple[float, float]:
        return self.wave.trim

    # -- recording -----------------------------------------------------------------------------------

    def _toggle_record(self, on: bool) -> None:
        if on:
            self.start_recording()
        else:
            self.stop_recording()

    def start_recording(self) -> None:
        from app.audio_io import Recorder

        data = self.device_box.currentData()
        device, rate = data if data else (None, 48000.0)
        self.recorder = Recorder(device, rate, self.stream_factory)
        try:
            self.recorder.start()
        except Exception as e:
            self.recorder = None
            self.rec_btn.blockSignals(True)
            self.rec_btn.setChecked(False)
            self.rec_btn.blockSignals(False)
            _message_box(self, "Cannot record", f"The microphone could not be opened: {e}")
            return
        self.rec_btn.setText("Stop")
        self.wave.recording = True
        self.msg.setText(f"Recording at {rate:.0f} Hz...")
        self.timer.start()
        self.recordingChanged.emit(True)

    def _poll(self) -> None:
        rec = self.recorder
        if rec is None:
            return
        self.meter.setValue(int(min(1.0, rec.level) * 100))
        snap = rec.snapshot()
        if len(snap):
            self.wave.set_audio(snap, rec.samplerate)
        self.msg.setText(f"Recording at {rec.samplerate:.0f} Hz: {rec.seconds:.1f} s")

    def stop_recording(self) -> None:
        self.timer.stop()
        rec, self.recorder = self.recorder, None
        self.rec_btn.setText("Re-record")
        self.wave.recording = False
        self.meter.setValue(0)
        if rec is None:
            return
        audio = rec.stop()
        self.recordingChanged.emit(False)
        if len(audio) == 0:
            self.msg.setText("Nothing was recorded.")
            return
        self.set_audio(audio, "")

    def _play(self) -> None:
        a = self.trimmed()
        if a is None or len(a) == 0:
            return
        if not self.player.play(a):
            self.msg.setText(self.player.error)

    def shutdown(self) -> None:
        if self.recorder is not None:
            self.stop_recording()


class PosePanel(QGroupBox):
    """No pose, a webcam, or a video file drives the body; live skeleton, countdown take, review, retarget."""

    poseChanged = Signal()
    modeChanged = Signal(int)
    skeletonShown = Signal(object)  # keypoints (K, 3) of the frame just painted
    cameraChanged = Signal(bool)  # the webcam started (True) or stopped

    NONE, CAMERA, VIDEO = 0, 1, 2

    def __init__(self, tasks: TaskRunner, settings, reference_panel: ReferencePanel, source_factory=None,
                 parent=None) -> None:
        super().__init__("3  Driving pose (optional)", parent)
        self.tasks = tasks
        self.settings = settings
        self.reference = reference_panel
        self.source_factory = source_factory  # tests: a video file standing in for the camera
        self.capture = None
        self.take_kp: np.ndarray | None = None  # (T, K, 3) in the driver frame
        self.take_frames: list[np.ndarray] = []
        self.take_fps = DEFAULT_FPS
        self.take_aspect = 1.0
        self.retargeted: np.ndarray | None = None  # (T, K, 3) in the reference frame
        self.take_in_reference = False  # the take is already in the reference's frame (a pose file)
        self.live_aspect = 4 / 3  # width / height of the camera's frames, from the first one
        self._countdown = 0

        self.mode_group = QButtonGroup(self)
        modes = QHBoxLayout()
        for i, name in enumerate(("None", "Webcam", "File")):
            rb = QRadioButton(name)
            self.mode_group.addButton(rb, i)
            modes.addWidget(rb)
        self.mode_group.button(0).setChecked(True)
        self.camera_box = QComboBox()
        self.refresh_btn = QPushButton("Refresh")
        self.mirror = QCheckBox("Mirror")
        self.mirror.setChecked(bool(settings.get("mirror")))
        self.live_btn = QPushButton("Start camera")
        self.live_btn.setCheckable(True)
        self.take_secs = QDoubleSpinBox()
        self.take_secs.setRange(1, 60)
        self.take_secs.setSuffix(" s")
        self.take_secs.setValue(float(settings.get("take_seconds")))
        self.take_btn = QPushButton("Record take")
        self.video_btn = QPushButton("Open video or pose...")
        self.video_btn.setToolTip("A video of a person (its poses are extracted and retargeted) or a pose take "
                                  "(.npy keypoints in the picture's frame, as the CLI's --pose)")
        self.clear_btn = QPushButton("Clear pose")
        self.live = ImageView("Live view with the detected skeleton")
        self.review = ImageView("The take, with its skeleton")
        self.retarget_view = ImageView("The take on the reference")
        for view in (self.review, self.retarget_view):
            view.setMinimumSize(120, 90)
        self.review_slider = QSlider(Qt.Orientation.Horizontal)
        self.msg = QLabel("No pose: the body moves on its own (audio-driven).")
        self.msg.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setVisible(False)

        # Narrow rows: webcam mode must not widen the left column (it fits a 1280-px screen).
        self.camera_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.camera_box.setMinimumContentsLength(8)
        lay = QVBoxLayout(self)
        lay.addLayout(modes)
        cam_row = QHBoxLayout()
        cam_row.addWidget(self.camera_box, 1)
        cam_row.addWidget(self.refresh_btn)
        lay.addLayout(cam_row)
        cam_row2 = QHBoxLayout()
        cam_row2.addWidget(self.live_btn)
        cam_row2.addWidget(self.mirror)
        cam_row2.addStretch(1)
        lay.addLayout(cam_row2)
        take_row = QHBoxLayout()
        self.take_label = QLabel("Take")
        take_row.addWidget(self.take_label)
        take_row.addWidget(self.take_secs)
        take_row.addWidget(self.take_btn)
        take_row.addStretch(1)
        lay.addLayout(take_row)
        file_row = QHBoxLayout()
        file_row.addWidget(self.video_btn)
        file_row.addWidget(self.clear_btn)
        file_row.addStretch(1)
        lay.addLayout(file_row)
        lay.addWidget(self.live, 2)
        views = QHBoxLayout()
        views.addWidget(self.review)
        views.addWidget(self.retarget_view)
        lay.addLayout(views, 1)
        lay.addWidget(self.review_slider)
        lay.addWidget(self.progress)
        lay.addWidget(self.msg)

        self.mode_group.idToggled.connect(self._mode_changed)
        self.refresh_btn.clicked.connect(self.refresh_cameras)
        self.live_btn.toggled.connect(self._toggle_live)
        self.take_btn.clicked.connect(self.start_countdown)
        self.video_btn.clicked.connect(self._open_video)
        self.clear_btn.clicked.connect(self.clear_take)
        self.review_slider.valueChanged.connect(self._show_review)
        self.mirror.toggled.connect(self._mirror_changed)
        self.reference.referenceChanged.connect(self._update_retarget)
        self.countdown_timer = QTimer(self)
        self.countdown_timer.setInterval(1000)
        self.countdown_timer.timeout.connect(self._tick_countdown)
        self._mode_changed(0, True)

    @property
    def mode(self) -> int:
        return self.mode_group.checkedId()

    def set_mode(self, mode: int) -> None:
        self.mode_group.button(mode).setChecked(True)

    def _mode_changed(self, mode: int, checked: bool) -> None:
        if not checked:
            return
        cam = mode == self.CAMERA
        for wdg in (self.camera_box, self.refresh_btn, self.mirror, self.live_btn, self.take_btn, self.take_secs,
                    self.take_label, self.live):
            wdg.setVisible(cam)
        self.video_btn.setVisible(mode == self.VIDEO)
        for wdg in (self.review, self.retarget_view, self.review_slider, self.clear_btn):
            wdg.setVisible(mode != self.NONE)
        self.review.setVisible(mode != self.NONE and not (self.take_in_reference and not self.take_frames))
        if cam and self.camera_box.count() == 0:
            self.refresh_cameras()
        if not cam:
            self.stop_live()
        if mode == self.NONE:
            self.msg.setText("No pose: the body moves on its own (audio-driven).")
        self.modeChanged.emit(mode)
        self.poseChanged.emit()

    def refresh_cameras(self) -> None:
        from models.sources import list_cameras

        self.camera_box.clear()
        cams = list_cameras()
        for cam in cams:
            self.camera_box.addItem(f"{cam.name} ({cam.device})" if cam.device else cam.name, cam.index)
        has = bool(cams) or self.source_factory is not None
        for b in (self.live_btn, self.take_btn):
            b.setEnabled(has)  # no camera: nothing to count down for
            b.setToolTip("" if has else "No camera found: connect a webcam and press Refresh.")
        if not has:
            self.msg.setText("No camera found. Connect a webcam and press Refresh, or use a file.")
        else:
            self.msg.setText(f"{len(cams) or 1} camera(s). Start the camera, then record a take.")

    # -- live ----------------------------------------------------------------------------------------

    def _toggle_live(self, on: bool) -> None:
        if on:
            self.start_live()
        else:
            self.stop_live()

    def start_live(self) -> None:
        from app.capture import CaptureThread, open_source

        if self.capture is not None:
            return
        factory = self.source_factory
        if factory is None:
            idx = self.camera_box.currentData()
            if idx is None:
                self.live_btn.setChecked(False)
                self.msg.setText("No camera selected. Connect a webcam and press Refresh.")
                return
            factory = lambda: open_source(int(idx))  # noqa: E731
        self.capture = CaptureThread(factory, mirror=self.mirror.isChecked())
        self.capture.frameReady.connect(self._on_frame)
        self.capture.takeFinished.connect(self._on_take)
        self.capture.failed.connect(self._on_capture_failed)
        self.capture.finished.connect(self._on_capture_finished)
        self.capture.start()
        self.live_btn.blockSignals(True)
        self.live_btn.setChecked(True)
        self.live_btn.setText("Stop camera")
        self.live_btn.blockSignals(False)
        self.msg.setText("Starting the camera and the pose tracker...")
        self.cameraChanged.emit(True)

    def stop_live(self) -> None:
        cap, self.capture = self.capture, None
        self.countdown_timer.stop()
        if cap is not None:
            cap.stop()
            cap.deleteLater()
        self.live_btn.blockSignals(True)
        self.live_btn.setChecked(False)
        self.live_btn.setText("Start camera")
        self.live_btn.blockSignals(False)
        if cap is not None:
            self.cameraChanged.emit(False)

    def _on_frame(self, image, kp, fps: float) -> None:
        self.live_aspect = image.width() / max(1, image.height())
        self.live.set_image(image)
        found = bool((kp[:, 2] > 0).any())
        if self._countdown <= 0 and not self.countdown_timer.isActive():
            self.msg.setText(f"Live at {fps:.0f} fps. " + ("Person tracked." if found else "No person in view."))
        if self.capture is not None:
            self.capture.ack()
        self.skeletonShown.emit(kp)

    def _on_capture_failed(self, message: str) -> None:
        self.stop_live()
        self.msg.setText(message)

    def _on_capture_finished(self) -> None:
        if self.capture is not None and not self.capture.isRunning():
            self.stop_live()

    def _mirror_changed(self, on: bool) -> None:
        self.settings.set("mirror", on)
        if self.capture is not None:
            self.capture.mirror = on
        self._update_retarget()

    def start_countdown(self) -> None:
        if self.capture is None:
            self.start_live()
        if self.capture is None:  # no camera could start: say so now, not after a countdown
            return
        self._countdown = int(self.settings.get("countdown"))
        self.msg.setText(f"Recording in {self._countdown}...")
        if self._countdown <= 0:
            self._begin_take()
        else:
            self.countdown_timer.start()

    def _tick_countdown(self) -> None:
        self._countdown -= 1
        if self._countdown > 0:
            self.msg.setText(f"Recording in {self._countdown}...")
            return
        self.countdown_timer.stop()
        self._begin_take()

    def _begin_take(self) -> None:
        if self.capture is None:
            self.msg.setText("The camera is not running.")
            return
        self.settings.set("take_seconds", self.take_secs.value())
        self.capture.begin_take(self.take_secs.value())
        self.msg.setText(f"Recording a {self.take_secs.value():.0f} s take...")

    def _on_take(self, kp, frames, fps: float, aspect: float) -> None:
        self.set_take(kp, frames, fps, aspect, "camera take")

    # -- video file ----------------------------------------------------------------------------------

    def _open_video(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a driving video or a pose take", "", VIDEO_FILTER)
        if path.lower().endswith(".npy"):
            self.load_pose_file(path)
        elif path:
            self.load_video(path)

    def load_pose_file(self, path: str, fps: float = DEFAULT_FPS) -> None:
        """A pose take from a ``(T, K, 3)`` keypoint file in the picture's frame (the CLI's ``--pose``)."""
        from models.commands.generate import load_pose_file
        from models.errors import UserError

        try:
            kp = load_pose_file(path)
        except UserError as e:
            _message_box(self, "Cannot use this pose take", str(e))
            return
        if self.mode != self.VIDEO:
            self.set_mode(self.VIDEO)
        self.set_take(kp, [], fps, self.reference.info.aspect if self.reference.info else 1.0,
                      os.path.basename(path), in_reference=True)

    def load_video(self, path: str) -> None:
        self.progress.setVisible(True)
        self.progress.setRange(0, 0)
        self.msg.setText("Extracting the pose of every frame...")

        def work(report):
            import cv2

            from app.capture import PREVIEW_MAX_SIDE
            from models.conditions.pose import extract_video_poses
            from models.media import read_video_frames

            track = extract_video_poses(path, progress=lambda d, t: report((d, t)) if d % 5 == 0 else None)
            frames = []
            _, it = read_video_frames(path)
            for f in it:
                h, w = f.shape[:2]
                s = min(1.0, PREVIEW_MAX_SIDE / max(h, w))
                frames.append(cv2.resize(f, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA))
                if len(frames) >= track.num_frames:
                    break
            return track, frames

        def progress(v):
            d, t = v
            if t:
                self.progress.setRange(0, t)
                self.progress.setValue(d)

        def done(res):
            track, frames = res
            self.progress.setVisible(False)
            self.set_take(track.keypoints, frames, track.fps, track.aspect, path)

        def failed(exc, _tb):
            self.progress.setVisible(False)
            self.msg.setText("")
            _message_box(self, "Cannot use this video", user_message(exc))

        self.tasks.submit(work, done, failed, progress)

    # -- take, review, retarget ----------------------------------------------------------------------

    def set_take(self, kp: np.ndarray, frames: list[np.ndarray], fps: float, aspect: float, what: str,
                 in_reference: bool = False) -> None:
        """``in_reference``: the keypoints are in the picture's frame already (not retargeted)."""
        self.take_kp, self.take_frames, self.take_fps, self.take_aspect = kp, frames, fps, aspect
        self.take_in_reference = in_reference
        self.review.setVisible(self.mode != self.NONE and bool(frames))  # a pose file has no driver frames
        self.review_slider.setRange(0, len(kp) - 1)
        self.review_slider.setValue(0)
        self.msg.setText(f"{what}: {len(kp)} frames at {fps:.1f} fps ({len(kp) / fps:.1f} s). Scrub to review.")
        self._update_retarget()

    def clear_take(self) -> None:
        self.take_kp, self.take_frames, self.retargeted = None, [], None
        self.take_in_reference = False
        self.review.set_image(None)
        self.retarget_view.set_image(None)
        self.review_slider.setRange(0, 0)
        self.poseChanged.emit()

    def _update_retarget(self) -> None:
        self.retargeted = None
        if self.take_kp is not None and self.take_in_reference:
            self.retargeted = self.take_kp
        elif self.take_kp is not None and self.reference.info is not None:
            from models.conditions.retarget import retarget

            info = self.reference.info
            try:
                self.retargeted = retarget(self.take_kp, info.keypoints, self.take_aspect, info.aspect,
                                           mirror=self.mirror.isChecked() and self.mode == self.CAMERA)
            except Exception as e:
                self.msg.setText(f"Retargeting failed: {e}")
        elif self.take_kp is not None and self.reference.image is None:
            self.msg.setText(self.msg.text() + " Open a reference picture to see the retargeted pose.")
        self._show_review(self.review_slider.value())
        self.poseChanged.emit()

    def _show_review(self, i: int) -> None:
        from models.keypoints import draw_skeleton

        if self.take_kp is None or not len(self.take_kp):
            return
        i = max(0, min(i, len(self.take_kp) - 1))
        if i < len(self.take_frames):
            self.review.set_image(draw_skeleton(self.take_frames[i], self.take_kp[i]))
        if self.retargeted is not None and self.reference.image is not None:
            base = draw_reference_overlay(self.reference.image, None)
            self.retarget_view.set_image(draw_skeleton(base, self.retargeted[i]))

    def pose_for(self, fps: float) -> np.ndarray | None:
        """The retargeted pose resampled to the output fps, or None when no pose drives the body."""
        if self.mode == self.NONE or self.take_kp is None:
            return None
        from models.keypoints import resample_keypoints

        kp = self.retargeted if self.retargeted is not None else self.take_kp
        n = max(1, int(round(len(kp) * fps / self.take_fps)))
        return resample_keypoints(kp, n).astype(np.float32)

    def shutdown(self) -> None:
        self.stop_live()

