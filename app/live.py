"""The live preview: a thin thread over the Qt-free live session (``models.instant.live``).

It shows the current inputs at once -- the picture with the trimmed audio's mouth track, blinks and
head sway, and the pose take if there is one, looped -- while the diffusion model renders, and it
follows the webcam's skeleton live (the puppet). The lip and sway sliders act on the next frame.

Threading: one Python thread drives the session and converts each frame to a ``QImage``; the UI
thread only paints. A frame is rendered only after the previous one was painted (``ack``), so a
busy UI never builds a queue; the frame index follows the wall clock, so playback keeps time when
frames are dropped. While the user records, the microphone drives the lips frame by frame.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QObject, Signal

from app.widgets import to_qimage


@dataclass(frozen=True)
class LiveInputs:
    """What the live preview animates. ``pose``: ``(T, K, 3)`` in the reference frame (retargeted);
    ``fps``: None for the instant engine's own."""

    image: np.ndarray
    audio: np.ndarray | None = None
    pose: np.ndarray | None = None
    fps: float | None = None
    seed: int = 0


class LivePreview(QObject):
    """Renders the instant engine at the output fps on a thread of its own while ``running``."""

    frameReady = Signal(object, int, int)  # QImage, frame index, frames in the loop
    loopStarted = Signal(float)  # the track's loop (re)starts at this many seconds: start its sound there
    message = Signal(str)  # what the engine can and cannot do with this picture, or why it stopped

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stop: threading.Event | None = None  # the running thread's own stop flag
        self._retired: list[threading.Thread] = []  # stopped threads that may still finish a frame
        self._inputs: LiveInputs | None = None
        self._inputs_version = 0
        self._mouth_scale = 1.0
        self._sway = 1.0
        self._sway_version = 0
        self._live_pose: tuple[np.ndarray, float, bool] | None = None  # keypoints, driver aspect, mirror
        self._live_version = 0
        self._acked = True
        self._mic_rate: float | None = None  # the microphone drives the lips while set
        self._mic_version = 0
        self._mic_blocks: list[np.ndarray] = []

    # -- controls (UI thread) ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def set_inputs(self, inputs: LiveInputs | None) -> None:
        """New picture, audio or pose: the engine is rebuilt (the picture) or the track recomputed."""
        with self._cond:
            self._inputs = inputs
            self._inputs_version += 1
            self._cond.notify_all()

    def set_mouth_scale(self, scale: float) -> None:
        with self._cond:
            self._mouth_scale = float(scale)

    def set_sway(self, sway: float) -> None:
        with self._cond:
            self._sway = float(sway)
            self._sway_version += 1
            self._cond.notify_all()

    def set_live_pose(self, keypoints: np.ndarray | None, driver_aspect: float = 4 / 3, mirror: bool = False) -> None:
        """The newest webcam skeleton ``(K, 3)`` (driver frame), or None to follow the take again."""
        with self._cond:
            self._live_pose = None if keypoints is None else (np.array(keypoints, np.float32), driver_aspect, mirror)
            self._live_version += 1

    def set_mic(self, rate: float | None) -> None:
        """The microphone at ``rate`` Hz drives the lips (``push_mic``), or None: the audio track does."""
        with self._cond:
            self._mic_rate = None if rate is None else float(rate)
            self._mic_version += 1
            self._mic_blocks = []

    def push_mic(self, samples: np.ndarray) -> None:
        """New microphone samples (mono, at the rate given to ``set_mic``); any thread."""
        if len(samples):
            with self._cond:
                if self._mic_rate is not None:
                    self._mic_blocks.append(np.asarray(samples, np.float32).ravel())

    def ack(self) -> None:
        """The UI painted the last frame: the next one may be rendered."""
        with self._cond:
            self._acked = True
            self._cond.notify_all()

    def start(self) -> None:
        if self.running:
            return
        self._acked = True
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(self._stop,), name="instant-live", daemon=True)
        self._thread.start()

    def stop(self, wait: bool = True) -> None:
        """Stop rendering. ``wait``: also wait for every render thread to end (at most one frame's work,
        or the picture's analysis if one is under way); the UI passes False and never waits."""
        t, ev = self._thread, self._stop
        self._thread = self._stop = None
        if t is not None:
            with self._cond:
                ev.set()
                self._cond.notify_all()
            self._retired.append(t)
        self._retired = [r for r in self._retired if r.is_alive()]
        if wait:
            for r in self._retired:
                r.join()
            self._retired = []

    # -- the render thread ------------------------------------------------------------------------------

    def _run(self, stop: threading.Event) -> None:
        try:
            self._loop(stop)
        except Exception as e:  # never take the app down from this thread
            self.message.emit(f"Live preview stopped: {type(e).__name__}: {e}")

    def _loop(self, stop: threading.Event) -> None:
        from models.errors import UserError
        from models.instant.live import LiveSession

        session = LiveSession()
        seen_inputs = seen_sway = seen_live = seen_mic = -1
        t0 = time.perf_counter()
        last_i = -1
        failed_version = -1  # inputs whose picture the engine could not use: wait for new ones

        def ready() -> bool:
            waiting = self._inputs is None or self._inputs_version == failed_version
            return stop.is_set() or (self._acked and not waiting)

        while True:
            with self._cond:
                self._cond.wait_for(ready)
                if stop.is_set():
                    return
                inputs, version = self._inputs, self._inputs_version
                session.mouth_scale = self._mouth_scale
                sway, sway_version = self._sway, self._sway_version
                live, live_version = self._live_pose, self._live_version
                mic_rate, mic_version = self._mic_rate, self._mic_version
                mic_blocks, self._mic_blocks = self._mic_blocks, []
                self._acked = False
            if version != seen_inputs or sway_version != seen_sway:
                session.sway = sway
                try:
                    message = session.set_inputs(inputs.image, inputs.audio, inputs.pose, inputs.fps, inputs.seed)
                except UserError as e:
                    message, session.engine = str(e), None
                if message:
                    self.message.emit(message)
                if session.engine is None:
                    with self._cond:
                        failed_version = version
                        self._acked = True
                    continue
                if version != seen_inputs:
                    t0 = time.perf_counter()
                    last_i = -1
                    seen_live = -1  # a new picture: retarget the live skeleton again
                seen_inputs, seen_sway = version, sway_version
            if live_version != seen_live:
                seen_live = live_version
                session.push_pose(*(live if live is not None else (None,)))
            if mic_version != seen_mic:
                seen_mic = mic_version
                session.start_mic(mic_rate) if mic_rate is not None else session.stop_mic()
            if mic_blocks:
                session.push_mic(np.concatenate(mic_blocks))
            n = session.num_frames
            frame, i = session.frame(time.perf_counter() - t0)
            if not session.mic_on and (last_i < 0 or i < last_i):
                self.loopStarted.emit(i / session.fps)  # the start, or the loop wrapped round
            last_i = i
            if stop.is_set():
                return
            self.frameReady.emit(to_qimage(frame), i, n)
            # Keep the output's frame rate: no faster than fps even when the UI acks at once.
            fps = session.fps
            wait = t0 + (int((time.perf_counter() - t0) * fps) + 1) / fps - time.perf_counter()
            if wait > 0:
                with self._cond:
                    self._cond.wait_for(stop.is_set, timeout=wait)
