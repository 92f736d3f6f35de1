"""Small reusable widgets: image view with drop, waveform with trim handles, preview player, slider+box."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPainterPath, QPen, QPixmap
from PySide6.QtWidgets import (
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSlider,
    QWidget,
)

from models.media import DEFAULT_FPS, SAMPLE_RATE


def to_qimage(rgb: np.ndarray) -> QImage:
    """RGB uint8 ``(H, W, 3)`` -> an owning QImage (the copy detaches it from the numpy buffer)."""
    a = np.ascontiguousarray(rgb[..., :3], dtype=np.uint8)
    h, w = a.shape[:2]
    return QImage(a.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


class _FileDrop:
    """Drop one local file on the widget: it emits ``fileDropped(path)`` (the class defines the signal)."""

    def dragEnterEvent(self, ev) -> None:
        if ev.mimeData().hasUrls():
            ev.acceptProposedAction()

    def dropEvent(self, ev) -> None:
        urls = ev.mimeData().urls()
        if urls and urls[0].isLocalFile():
            self.fileDropped.emit(urls[0].toLocalFile())
            ev.acceptProposedAction()


class ImageView(_FileDrop, QWidget):
    """Paints one image scaled to fit, with a placeholder text; emits ``fileDropped`` on drops."""

    fileDropped = Signal(str)

    def __init__(self, placeholder: str = "", accept_drops: bool = False, parent=None) -> None:
        super().__init__(parent)
        self.placeholder = placeholder
        self._pix: QPixmap | None = None
        self.setMinimumSize(160, 120)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setAcceptDrops(accept_drops)

    def set_image(self, image: np.ndarray | QImage | None) -> None:
        if image is None:
            self._pix = None
        else:
            self._pix = QPixmap.fromImage(image if isinstance(image, QImage) else to_qimage(image))
        self.update()

    def has_image(self) -> bool:
        return self._pix is not None

    def paintEvent(self, _ev) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(32, 33, 36))
        if self._pix is None or self._pix.isNull():
            p.setPen(QColor(170, 170, 170))
            p.drawText(self.rect().adjusted(8, 8, -8, -8), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                       self.placeholder)
            return
        pw, ph = self._pix.width(), self._pix.height()
        s = min(self.width() / pw, self.height() / ph)
        w, h = pw * s, ph * s
        target = QRectF((self.width() - w) / 2, (self.height() - h) / 2, w, h)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        p.drawPixmap(target, self._pix, QRectF(self._pix.rect()))


class WaveformView(_FileDrop, QWidget):
    """Min/max envelope of mono audio; drag the two handles to trim start and end."""

    trimChanged = Signal(float, float)  # start, end in seconds
    fileDropped = Signal(str)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setAcceptDrops(True)
        self.setMinimumHeight(70)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self._env: np.ndarray | None = None
        self.rate = float(SAMPLE_RATE)
        self.duration = 0.0
        self.trim = (0.0, 0.0)
        self.cursor: float | None = None
        self.recording = False
        self._drag: int | None = None

    def set_audio(self, audio: np.ndarray | None, rate: float = SAMPLE_RATE, keep_trim: bool = False) -> None:
        if audio is None or len(audio) == 0:
            self._env, self.duration = None, 0.0
            self.trim = (0.0, 0.0)
            self.update()
            return
        self.rate = float(rate)
        self.duration = len(audio) / self.rate
        cols = 600
        n = len(audio)
        edges = np.linspace(0, n, min(cols, n) + 1).astype(int)
        mx = np.maximum.reduceat(audio, edges[:-1])
        mn = np.minimum.reduceat(audio, edges[:-1])
        self._env = np.stack([mn, mx], 1)
        if not keep_trim:
            self.trim = (0.0, self.duration)
        self.update()

    def set_trim(self, start: float, end: float) -> None:
        start = max(0.0, min(start, self.duration))
        end = max(start, min(end, self.duration))
        self.trim = (start, end)
        self.update()
        self.trimChanged.emit(start, end)

    def has_audio(self) -> bool:
        return self._env is not None

    def _x(self, t: float) -> float:
        return t / self.duration * self.width() if self.duration else 0.0

    def paintEvent(self, _ev) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(24, 26, 30))
        h = self.height()
        if self._env is None:
            p.setPen(QColor(150, 150, 150))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "no audio: drop or load a file, or record")
            return
        env = self._env
        w = self.width()
        xs = np.linspace(0, w, len(env))
        path = QPainterPath()
        path.moveTo(0, h / 2)
        for x, v in zip(xs, env[:, 1], strict=True):
            path.lineTo(float(x), float(h / 2 - v * h / 2))
        for x, v in zip(xs[::-1], env[::-1, 0], strict=True):
            path.lineTo(float(x), float(h / 2 - v * h / 2))
        p.fillPath(path, QColor(230, 80, 80) if self.recording else QColor(90, 170, 250))
        a, b = (self._x(t) for t in self.trim)
        shade = QColor(0, 0, 0, 150)
        p.fillRect(QRectF(0, 0, a, h), shade)
        p.fillRect(QRectF(b, 0, w - b, h), shade)
        p.setPen(QPen(QColor(255, 210, 60), 2))
        p.drawLine(QPointF(a, 0), QPointF(a, h))
        p.drawLine(QPointF(b, 0), QPointF(b, h))
        if self.cursor is not None:
            p.setPen(QPen(QColor(255, 255, 255), 1))
            x = self._x(self.cursor)
            p.drawLine(QPointF(x, 0), QPointF(x, h))
        p.setPen(QColor(220, 220, 220))
        p.drawText(4, 14, f"{self.duration:.2f} s  (trim {self.trim[0]:.2f}-{self.trim[1]:.2f} s)")

    def mousePressEvent(self, ev) -> None:
        if not self.duration:
            return
        x = ev.position().x()
        a, b = (self._x(t) for t in self.trim)
        self._drag = 0 if abs(x - a) <= abs(x - b) else 1
        self.mouseMoveEvent(ev)

    def mouseMoveEvent(self, ev) -> None:
        if self._drag is None or not self.duration:
            return
        t = max(0.0, min(self.duration, ev.position().x() / max(1, self.width()) * self.duration))
        s, e = self.trim
        if self._drag == 0:
            self.set_trim(min(t, e - 0.05), e)
        else:
            self.set_trim(s, max(t, s + 0.05))

    def mouseReleaseEvent(self, _ev) -> None:
        self._drag = None


class SliderBox(QWidget):
    """A slider and a numeric box that edit one float together."""

    valueChanged = Signal(float)

    def __init__(self, lo: float, hi: float, step: float, decimals: int = 2, parent=None) -> None:
        super().__init__(parent)
        self._scale = 1 / step
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(round(lo * self._scale), round(hi * self._scale))
        self.box = QDoubleSpinBox()
        self.box.setRange(lo, hi)
        self.box.setSingleStep(step)
        self.box.setDecimals(decimals)
        self.box.setFixedWidth(70)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.slider, 1)
        lay.addWidget(self.box)
        self.slider.valueChanged.connect(lambda v: self.box.setValue(v / self._scale))
        self.box.valueChanged.connect(self._box_changed)

    def _box_changed(self, v: float) -> None:
        self.slider.blockSignals(True)
        self.slider.setValue(round(v * self._scale))
        self.slider.blockSignals(False)
        self.valueChanged.emit(v)

    def value(self) -> float:
        return self.box.value()

    def setValue(self, v: float) -> None:  # noqa: N802 (Qt naming)
        self.box.setValue(float(v))


class PreviewPlayer(QWidget):
    """Frames arrive segment by segment; shows the newest at once and plays the whole take at its fps."""

    def __init__(self, player=None, parent=None) -> None:
        super().__init__(parent)
        self.view = ImageView("The generated video appears here, segment by segment, as it is made.")
        self.view.setMinimumSize(320, 240)
        self.play_btn = QPushButton("Play")
        self.play_btn.setCheckable(True)
        from PySide6.QtWidgets import QCheckBox

        self.autoplay = QCheckBox("Play segments as they arrive")
        self.autoplay.setChecked(True)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.label = QLabel("no video yet")
        self.sound_note = QLabel("")
        self.sound_note.setStyleSheet("color: #d08000")
        self.sound_note.setWordWrap(True)
        self.sound_note.setVisible(False)
        row = QHBoxLayout()
        row.addWidget(self.play_btn)
        row.addWidget(self.slider, 1)
        row2 = QHBoxLayout()  # two rows, so the middle column stays narrow
        row2.addWidget(self.label, 1)
        row2.addWidget(self.autoplay)
        from PySide6.QtWidgets import QVBoxLayout

        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.view, 1)
        lay.addLayout(row)
        lay.addLayout(row2)
        lay.addWidget(self.sound_note)
        self.frames: list[np.ndarray] = []
        self.audio: np.ndarray | None = None
        self.fps = DEFAULT_FPS
        self.segment_starts: list[int] = []
        self.audio_player = player
        self.timer = QTimer(self)
        self.timer.timeout.connect(self._tick)
        self.play_btn.toggled.connect(self._toggle)
        self.slider.valueChanged.connect(self.show_frame)

    def clear(self, fps: float = DEFAULT_FPS, audio: np.ndarray | None = None) -> None:
        self.stop()
        self.frames, self.segment_starts = [], []
        self.fps, self.audio = fps, audio
        self.slider.setRange(0, 0)
        self.view.set_image(None)
        self.label.setText("no video yet")

    def add_segment(self, frames: np.ndarray, start: int, live: bool = True) -> None:
        """Append a decoded segment and show it at once: played with its audio when ``autoplay`` is
        on, else its first frame; a segment that arrives while playing just extends the video."""
        self.segment_starts.append(start)
        self.frames.extend(frames)
        self.slider.blockSignals(True)
        self.slider.setRange(0, len(self.frames) - 1)
        self.slider.blockSignals(False)
        if not self.timer.isActive():
            self.slider.setValue(start)
            self.show_frame(start)
            if live and self.autoplay.isChecked():
                self.play_btn.blockSignals(True)
                self.play_btn.setChecked(True)
                self.play_btn.blockSignals(False)
                self._start(True, retry_sound=False)

    def set_frames(self, frames: np.ndarray, fps: float, audio: np.ndarray | None) -> None:
        self.clear(fps, audio)
        self.add_segment(frames, 0, live=False)

    def show_frame(self, i: int) -> None:
        if not self.frames:
            return
        i = max(0, min(i, len(self.frames) - 1))
        self.view.set_image(self.frames[i])
        self.label.setText(f"frame {i + 1}/{len(self.frames)}  {i / self.fps:.2f} s  seg {len(self.segment_starts)}")

    def _toggle(self, on: bool) -> None:
        self._start(on, retry_sound=True)

    def _start(self, on: bool, retry_sound: bool) -> None:
        if on and self.frames:
            if self.slider.value() >= len(self.frames) - 1:
                self.slider.setValue(0)
            self.play_btn.setText("Pause")
            self.timer.start(max(1, int(1000 / self.fps)))
            if self.audio is not None and self.audio_player is not None:
                ok = self.audio_player.play(self.audio, self.slider.value() / self.fps, retry=retry_sound)
                self.sound_note.setText("" if ok else "Playing without sound: " + self.audio_player.error)
                self.sound_note.setVisible(not ok)
        else:
            self.stop()

    def _tick(self) -> None:
        i = self.slider.value() + 1
        if i >= len(self.frames):
            self.stop()
            return
        self.slider.setValue(i)

    def stop(self) -> None:
        was_playing = self.timer.isActive()
        self.timer.stop()
        if was_playing and self.audio_player is not None:
            self.audio_player.stop()
        self.play_btn.blockSignals(True)
        self.play_btn.setChecked(False)
        self.play_btn.setText("Play")
        self.play_btn.blockSignals(False)
