"""Live pose capture: a ``models.sources`` frame source (camera, or a video standing in for one),
pose extraction, the same smoothing as a video file's poses, and skeleton drawing, on a capture
thread; the UI thread only paints the QImage it is handed.

Each live skeleton is smoothed causally (One-Euro, a lost person held briefly: what the puppet and
the live view show); a recorded take then gets the clean-up a driving video's poses get
(``smoothing.clean_track``: gaps filled, zero-phase smoothing), so a webcam take drives the body as
smoothly as a video file does.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import numpy as np
from PySide6.QtCore import QThread, Signal
from PySide6.QtGui import QImage

from app.widgets import to_qimage

PREVIEW_MAX_SIDE = 480  # frames drawn for the live view and kept for review are at most this size


def open_source(target: int | str, realtime: bool = True):
    """A frame source for a camera index or a video file path (not started: the capture thread starts it)."""
    from models.sources import CameraSource, VideoFileSource

    if isinstance(target, str) and not os.path.isfile(target):
        raise RuntimeError(f"{target}: video file not found")
    return CameraSource(int(target)) if isinstance(target, int) else VideoFileSource(target, realtime=realtime)


class CaptureThread(QThread):
    """Grab the newest frame, extract and smooth the pose, draw the skeleton, hand the picture to the UI.

    A new picture is emitted only after the UI painted the previous one (``ack()``), so a slow UI
    never piles up queued frames. ``begin_take(seconds)`` records keypoints and small frames of
    every processed frame and emits ``takeFinished`` at the end.
    """

    frameReady = Signal(QImage, object, float)  # skeleton drawn over the frame, keypoints (K, 3), fps
    takeFinished = Signal(object, object, float, float)  # keypoints (T, K, 3), frames list, fps, aspect
    failed = Signal(str)
    ended = Signal()

    def __init__(self, source_factory: Callable[[], object], extractor_factory: Callable | None = None,
                 mirror: bool = False, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("pose-capture")
        self._source_factory = source_factory
        self._extractor_factory = extractor_factory
        self.mirror = mirror
        self._stop = threading.Event()
        self._painted = threading.Event()
        self._painted.set()
        self._take_lock = threading.Lock()
        self._take: dict | None = None
        self._aspect = 1.0  # width / height of the frames
        self.fps = 0.0

    def stop(self) -> None:
        self._stop.set()
        self.wait(10000)

    def ack(self) -> None:
        self._painted.set()

    def begin_take(self, seconds: float) -> None:
        with self._take_lock:
            self._take = {"end": time.perf_counter() + seconds, "t0": time.perf_counter(), "kp": [], "frames": []}

    def cancel_take(self) -> None:
        with self._take_lock:
            self._take = None

    def run(self) -> None:
        src = ex = None
        try:
            src = self._source_factory()
            src.start()
            if self._extractor_factory is not None:
                ex = self._extractor_factory()
            else:
                from models.conditions.pose import PoseExtractor

                ex = PoseExtractor(static_image_mode=False)
            self._loop(src, ex)
        except Exception as e:
            self.failed.emit(str(e) if src is None or not src.frames_read else f"Pose capture stopped: {e}")
        finally:
            if ex is not None and hasattr(ex, "close"):
                ex.close()
            if src is not None:
                src.stop()

    def _next_frame(self, src):
        """The newest frame (older ones dropped), None after a short wait, or ``...`` at the end."""
        from models.sources import SourceTimeout

        frame = src.latest()
        if frame is None:
            try:
                frame = src.read(timeout=0.2)
            except SourceTimeout:
                return None
            if frame is None:
                return ...
        return frame

    def _loop(self, src, ex) -> None:
        import cv2

        from models.conditions.smoothing import LivePoseSmoother
        from models.keypoints import draw_skeleton

        smoother = LivePoseSmoother()
        mirrored = self.mirror
        t_prev = None
        while not self._stop.is_set():
            frame = self._next_frame(src)
            if frame is ...:
                self._finish_take()
                self.ended.emit()
                return
            if frame is None:
                continue
            image = frame.image
            if self.mirror != mirrored:  # the mirror flips every point: start the filter afresh
                mirrored = self.mirror
                smoother.reset()
            if self.mirror:
                image = np.ascontiguousarray(image[:, ::-1])
            raw = ex(image)
            kp, _filled = smoother(raw, frame.timestamp)
            h, w = image.shape[:2]
            s = min(1.0, PREVIEW_MAX_SIDE / max(h, w))
            small = cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
            drawn = draw_skeleton(small, kp)
            now = time.perf_counter()
            if t_prev is not None:
                self.fps = 0.8 * self.fps + 0.2 / max(now - t_prev, 1e-3) if self.fps else 1 / max(now - t_prev, 1e-3)
            t_prev = now
            with self._take_lock:
                take = self._take
                if take is not None:
                    take["kp"].append(raw)
                    take["frames"].append(small)
                    done = now >= take["end"]
                else:
                    done = False
            self._aspect = w / h
            if done:
                self._finish_take()
            if self._painted.is_set():
                self._painted.clear()
                self.frameReady.emit(to_qimage(drawn), kp, self.fps)

    def _finish_take(self) -> None:
        from models.conditions.pose import person_present
        from models.conditions.smoothing import clean_track

        with self._take_lock:
            take, self._take = self._take, None
        if take is None or not take["kp"]:
            return
        secs = max(1e-3, time.perf_counter() - take["t0"])
        fps = len(take["kp"]) / secs
        kp = np.stack(take["kp"])
        missing = ~person_present(kp)
        if not missing.all():  # smoothed like a driving video's poses
            kp = clean_track(kp, fps, missing)
        self.takeFinished.emit(kp, take["frames"], fps, self._aspect)
