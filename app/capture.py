"""Live pose capture: a frame source read on its own thread (drop-oldest), pose extraction and
skeleton drawing on a capture thread; the UI thread only paints the QImage it is handed.

Frame sources come from ``models.sources`` (issue 3) when it is installed, with a small built-in
OpenCV reader as the fallback so the panel works either way.
"""

from __future__ import annotations

import glob
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PySide6.QtCore import QThread, Signal
from PySide6.QtGui import QImage

from app.widgets import to_qimage

PREVIEW_MAX_SIDE = 480  # frames drawn for the live view and kept for review are at most this size


# ------------------------------------------------------------------------------------------------
# Frame sources (Qt-free)


class LatestFrameReader:
    """Read an OpenCV capture on a thread and keep only the newest frames (drop-oldest queue).

    ``target`` is a camera index or a video path. A video file is paced at its own fps when
    ``realtime`` so it stands in for a camera; ``ended`` turns True at its end.
    """

    def __init__(self, target: int | str, realtime: bool = True, queue_size: int = 2) -> None:
        import cv2

        self.target = target
        self.cap = cv2.VideoCapture(target)
        if not self.cap.isOpened():
            what = f"camera {target}" if isinstance(target, int) else f"video {target}"
            raise RuntimeError(f"Cannot open {what}. Is it connected and not used by another program?")
        self.file_fps = float(self.cap.get(cv2.CAP_PROP_FPS) or 0) or 30.0
        self.is_file = not isinstance(target, int)
        self.realtime = realtime
        self._q: deque = deque(maxlen=queue_size)
        self._cond = threading.Condition()
        self._stop = False
        self.ended = False
        self.dropped = 0
        self.fps = 0.0  # measured capture rate
        self._thread = threading.Thread(target=self._loop, name="frame-reader", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        import cv2

        t_prev = None
        period = 1.0 / self.file_fps
        next_t = time.perf_counter()
        while not self._stop:
            ok, bgr = self.cap.read()
            if not ok:
                break
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            now = time.perf_counter()
            if t_prev is not None:
                dt = now - t_prev
                self.fps = 0.9 * self.fps + 0.1 / max(dt, 1e-3) if self.fps else 1 / max(dt, 1e-3)
            t_prev = now
            with self._cond:
                if len(self._q) == self._q.maxlen:
                    self.dropped += 1
                self._q.append(rgb)
                self._cond.notify_all()
            if self.is_file and self.realtime:
                next_t += period
                delay = next_t - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)  # pacing a file like a camera (this is a reader thread)
        with self._cond:
            self.ended = True
            self._cond.notify_all()

    def read(self, timeout: float = 0.5) -> np.ndarray | None:
        """The newest frame (older ones are dropped), or None after ``timeout`` or at the end."""
        with self._cond:
            if not self._q and not self.ended:
                self._cond.wait(timeout)
            if not self._q:
                return None
            frame = self._q.pop()
            self._q.clear()
            return frame

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=5)
        self.cap.release()


def list_cameras() -> list[tuple[int, str]]:
    """(index, name) of the cameras the system lists (names from V4L2 on Linux), without opening them."""
    try:
        from models import sources  # issue 3's enumeration when present

        fn = getattr(sources, "list_cameras", None) or getattr(sources, "enumerate_cameras", None)
        if fn is not None:
            out = []
            for c in fn():
                if isinstance(c, tuple):
                    out.append((int(c[0]), str(c[1])))
                else:
                    out.append((int(getattr(c, "index", 0)), str(getattr(c, "name", c))))
            return out
    except ImportError:
        pass
    cams = []
    for dev in sorted(glob.glob("/dev/video*")):
        try:
            idx = int(dev[len("/dev/video"):])
        except ValueError:
            continue
        name_file = Path(f"/sys/class/video4linux/video{idx}/name")
        name = name_file.read_text().strip() if name_file.exists() else dev
        cams.append((idx, f"{name} ({dev})"))
    return cams


class SourceAdapter:
    """``models.sources`` frame sources (issue 3) behind the small interface the capture thread uses."""

    def __init__(self, source) -> None:
        self.source = source.start()
        self.ended = False

    @property
    def fps(self) -> float:
        return self.source.measured_fps

    def read(self, timeout: float = 0.5) -> np.ndarray | None:
        from models.sources import SourceTimeout

        frame = self.source.latest()  # the newest frame, older ones dropped
        if frame is None:
            try:
                frame = self.source.read(timeout=timeout)
            except SourceTimeout:
                return None
            if frame is None:
                self.ended = True
                return None
        return frame.image

    def close(self) -> None:
        self.source.stop()


def open_source(target: int | str, realtime: bool = True):
    """A frame source for a camera index or a video file path (``models.sources`` when present)."""
    if isinstance(target, str) and not os.path.isfile(target):
        raise RuntimeError(f"{target}: video file not found")
    try:
        from models.sources import CameraSource, VideoFileSource
    except ImportError:
        return LatestFrameReader(target, realtime=realtime)
    src = CameraSource(int(target)) if isinstance(target, int) else VideoFileSource(target, realtime=realtime)
    return SourceAdapter(src)


# ------------------------------------------------------------------------------------------------
# The capture thread


class CaptureThread(QThread):
    """Grab the newest frame, extract the pose, draw the skeleton, hand the picture to the UI.

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
        try:
            src = self._source_factory()
        except Exception as e:
            self.failed.emit(str(e))
            return
        ex = None
        try:
            if self._extractor_factory is not None:
                ex = self._extractor_factory()
            else:
                from models.conditions.pose import PoseExtractor

                ex = PoseExtractor(static_image_mode=False)
            self._loop(src, ex)
        except Exception as e:
            self.failed.emit(f"Pose capture stopped: {e}")
        finally:
            if ex is not None and hasattr(ex, "close"):
                ex.close()
            src.close()

    def _loop(self, src, ex) -> None:
        import cv2

        from models.keypoints import draw_skeleton

        t_prev = None
        while not self._stop.is_set():
            frame = src.read(timeout=0.2)
            if frame is None:
                if getattr(src, "ended", False):
                    self._finish_take()
                    self.ended.emit()
                    return
                continue
            if self.mirror:
                frame = np.ascontiguousarray(frame[:, ::-1])
            kp = ex(frame)
            h, w = frame.shape[:2]
            s = min(1.0, PREVIEW_MAX_SIDE / max(h, w))
            small = cv2.resize(frame, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
            drawn = draw_skeleton(small, kp)
            now = time.perf_counter()
            if t_prev is not None:
                self.fps = 0.8 * self.fps + 0.2 / max(now - t_prev, 1e-3) if self.fps else 1 / max(now - t_prev, 1e-3)
            t_prev = now
            with self._take_lock:
                take = self._take
                if take is not None:
                    take["kp"].append(kp)
                    take["frames"].append(small)
                    done = now >= take["end"]
                else:
                    done = False
            if done:
                self._finish_take()
            if self._painted.is_set():
                self._painted.clear()
                self.frameReady.emit(to_qimage(drawn), kp, self.fps)
            self._aspect = w / h

    def _finish_take(self) -> None:
        with self._take_lock:
            take, self._take = self._take, None
        if take is None or not take["kp"]:
            return
        secs = max(1e-3, time.perf_counter() - take["t0"])
        fps = len(take["kp"]) / secs
        self.takeFinished.emit(np.stack(take["kp"]), take["frames"], fps, self._aspect)
