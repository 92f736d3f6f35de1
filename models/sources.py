"""Live frame sources (Qt-free): cameras and video files behind one interface.

A source opens its device in a background thread, reads frames there and hands them over through a
small drop-oldest queue, so a slow consumer (pose extraction, the UI) always gets the newest frame
and never makes the device back up. Every blocking call has a timeout: a missing camera, a busy
camera, a camera that stops sending, a truncated or unreadable video all end in a
``FrameSourceError`` whose message names the camera or file and says what to do, never a hang.

    with CameraSource(0) as cam:          # or VideoFileSource("clip.mp4")
        while True:
            frame = cam.read(timeout=1.0)  # Frame(image RGB uint8 (H, W, 3), index, timestamp)
            if frame is None:              # a video file ended
                break
            ...
        print(cam.measured_fps)

Frames are RGB uint8. ``mirror=True`` flips them horizontally (the selfie view users expect); pose
retargeting then needs ``mirror=True`` too.
"""

from __future__ import annotations

import glob
import os
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.errors import UserError
from models.media import DEFAULT_FPS


class FrameSourceError(UserError):
    """A camera or video that cannot deliver frames; the message names it and the problem."""


class SourceTimeout(FrameSourceError):
    """No frame arrived within the timeout of one ``read``; the source may still recover."""


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # (H, W, 3) RGB uint8
    index: int  # frames delivered by the device so far, 0-based (gaps mean frames were dropped)
    timestamp: float  # seconds: capture time (monotonic) for cameras, position in the file for videos


@dataclass(frozen=True)
class CameraInfo:
    index: int
    name: str
    device: str = ""


# ------------------------------------------------------------------------------------------------
# Base: the background reader, the drop-oldest queue and the fps meter


class FrameSource:
    """Base class: subclasses implement ``_open()`` and ``_read_one() -> (image, timestamp) | None``
    (None = end of stream), both called on the reader thread, and ``_close()``."""

    name = "source"

    def __init__(self, queue_size: int = 2, drop_oldest: bool = True, open_timeout: float = 5.0,
                 stall_timeout: float = 3.0) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self.queue_size = int(queue_size)
        self.drop_oldest = bool(drop_oldest)
        self.open_timeout = float(open_timeout)
        self.stall_timeout = float(stall_timeout)
        self.width = 0
        self.height = 0
        self.nominal_fps: float | None = None
        self.frames_read = 0
        self.frames_dropped = 0
        self._queue: deque[Frame] = deque()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._opened = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: FrameSourceError | None = None
        self._ended = False
        self._last_frame_time: float | None = None
        self._times: deque[float] = deque(maxlen=30)

    # -- to implement ------------------------------------------------------------------------------

    def _open(self) -> None:
        raise NotImplementedError

    def _read_one(self) -> tuple[np.ndarray, float] | None:
        raise NotImplementedError

    def _close(self) -> None:
        pass

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> FrameSource:
        """Open the device and start reading; raises FrameSourceError if it cannot be opened in time."""
        if self._thread is not None:
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"frames:{self.name}", daemon=True)
        self._thread.start()
        if not self._opened.wait(self.open_timeout):
            self._stop.set()
            raise FrameSourceError(
                f"{self.name}: did not open within {self.open_timeout:g} s (is it in use by another program?)"
            )
        with self._cond:
            if self._error is not None and self.frames_read == 0 and not self._queue:
                err = self._error
                self.stop()
                raise err
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Stop reading and release the device. A reader stuck inside a driver call is abandoned
        (it is a daemon thread) rather than waited for forever."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)
        self._thread = None

    close = stop

    def __enter__(self) -> FrameSource:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __iter__(self) -> Iterator[Frame]:
        while True:
            frame = self.read()
            if frame is None:
                return
            yield frame

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def measured_fps(self) -> float:
        """Frames per second the device actually delivers (over the last 30 frames)."""
        with self._cond:
            times = list(self._times)
        if len(times) < 2 or times[-1] <= times[0]:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])

    # -- consumer side -----------------------------------------------------------------------------

    def read(self, timeout: float | None = 1.0) -> Frame | None:
        """The oldest queued frame (the newest, when the consumer is slow); ``None`` at the end of a
        video. Raises ``SourceTimeout`` when nothing came within ``timeout`` seconds, and
        ``FrameSourceError`` when the source failed (the camera stopped, the file is damaged)."""
        if self._thread is None and not self._queue and not self._ended and self._error is None:
            raise FrameSourceError(f"{self.name}: not started (call start() or use it in a with block)")
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if self._queue:
                    frame = self._queue.popleft()
                    self._cond.notify_all()
                    return frame
                if self._error is not None:
                    raise self._error
                if self._ended:
                    return None
                now = time.monotonic()
                # A device that stopped sending without saying so (a camera unplugged mid-stream).
                if (self.stall_timeout > 0 and self._last_frame_time is not None
                        and now - self._last_frame_time > self.stall_timeout):
                    self._error = FrameSourceError(
                        f"{self.name}: stopped sending frames (nothing for {self.stall_timeout:g} s); "
                        f"check the cable or whether another program took it"
                    )
                    self._stop.set()
                    raise self._error
                if deadline is not None and now >= deadline:
                    raise SourceTimeout(f"{self.name}: no frame within {timeout:g} s")
                waits = [0.1]
                if deadline is not None:
                    waits.append(deadline - now)
                self._cond.wait(max(0.0, min(waits)))

    def latest(self) -> Frame | None:
        """The newest queued frame, discarding older ones, without waiting (None if none yet)."""
        with self._cond:
            if self._error is not None and not self._queue:
                raise self._error
            if not self._queue:
                return None
            frame = self._queue.pop()
            self.frames_dropped += len(self._queue)
            self._queue.clear()
            self._cond.notify_all()
            return frame

    # -- reader thread -----------------------------------------------------------------------------

    def _fail(self, err: FrameSourceError) -> None:
        with self._cond:
            if self._error is None:
                self._error = err
            self._cond.notify_all()

    def _run(self) -> None:
        try:
            try:
                self._open()
            except FrameSourceError as e:
                self._fail(e)
                return
            except Exception as e:  # a driver or decoder failing in an unexpected way
                self._fail(FrameSourceError(f"{self.name}: could not be opened ({e})"))
                return
            finally:
                self._opened.set()
            index = 0
            while not self._stop.is_set():
                try:
                    got = self._read_one()
                except FrameSourceError as e:
                    self._fail(e)
                    return
                except Exception as e:
                    self._fail(FrameSourceError(f"{self.name}: reading failed ({e})"))
                    return
                if got is None:
                    with self._cond:
                        self._ended = True
                        self._cond.notify_all()
                    return
                image, ts = got
                frame = Frame(image, index, ts)
                index += 1
                with self._cond:
                    if not self.drop_oldest:
                        while len(self._queue) >= self.queue_size and not self._stop.is_set():
                            self._cond.wait(0.1)
                    while len(self._queue) >= self.queue_size:
                        self._queue.popleft()
                        self.frames_dropped += 1
                    self._queue.append(frame)
                    self.frames_read += 1
                    now = time.monotonic()
                    self._last_frame_time = now
                    self._times.append(now)
                    self._cond.notify_all()
        finally:
            try:
                self._close()
            except Exception:
                pass


# ------------------------------------------------------------------------------------------------
# Cameras


def _linux_camera_nodes() -> list[tuple[int, str, str]]:
    out = []
    for dev in sorted(glob.glob("/dev/video*")):
        m = re.fullmatch(r"/dev/video(\d+)", dev)
        if not m:
            continue
        idx = int(m.group(1))
        name = f"camera {idx}"
        try:
            name = Path(f"/sys/class/video4linux/video{idx}/name").read_text().strip() or name
        except OSError:
            pass
        out.append((idx, name, dev))
    return out


def list_cameras(probe: bool = False, max_index: int = 8, timeout: float = 3.0) -> list[CameraInfo]:
    """Cameras on this machine. On Linux the video device nodes are listed without opening them
    (``probe=True`` keeps only those that really deliver a frame); elsewhere indices
    ``0..max_index-1`` are probed. An empty list means no camera."""
    if sys.platform.startswith("linux"):
        found = [CameraInfo(i, n, d) for i, n, d in _linux_camera_nodes()]
        if not probe:
            return found
        candidates = found
    else:
        candidates = [CameraInfo(i, f"camera {i}") for i in range(max_index)]
    ok = []
    for cam in candidates:
        src = CameraSource(cam.index, open_timeout=timeout, stall_timeout=timeout)
        try:
            src.start()
            src.read(timeout=timeout)
            ok.append(cam)
        except FrameSourceError:
            pass
        finally:
            src.stop()
    return ok


CaptureFactory = Callable[[int], object]


def _default_capture(index: int):
    import cv2

    return cv2.VideoCapture(index)


class CameraSource(FrameSource):
    """Frames from camera ``index`` (OpenCV), read on a background thread.

    ``width``/``height``/``fps`` are requests; the camera may choose others (``self.width``,
    ``self.height`` and ``measured_fps`` say what it does). ``capture_factory(index)`` returns an
    object with OpenCV's ``VideoCapture`` interface (tests pass fakes).
    """

    def __init__(
        self,
        index: int = 0,
        width: int = 640,
        height: int = 480,
        fps: float = 30.0,
        mirror: bool = False,
        queue_size: int = 2,
        open_timeout: float = 5.0,
        stall_timeout: float = 3.0,
        capture_factory: CaptureFactory | None = None,
    ) -> None:
        super().__init__(queue_size, True, open_timeout, stall_timeout)
        self.index = int(index)
        self.name = f"camera {self.index}"
        self.requested = (int(width), int(height), float(fps))
        self.mirror = bool(mirror)
        self._factory = capture_factory or _default_capture
        self._cap = None

    def _open(self) -> None:
        if self._factory is _default_capture and sys.platform.startswith("linux"):
            nodes = {i: d for i, _, d in _linux_camera_nodes()}
            if self.index not in nodes:
                have = ", ".join(str(i) for i in sorted(nodes)) or "none"
                raise FrameSourceError(
                    f"{self.name}: no such camera (cameras found: {have}); connect one or pick another"
                )
            if not os.access(nodes[self.index], os.R_OK | os.W_OK):
                raise FrameSourceError(
                    f"{self.name}: {nodes[self.index]} is not accessible to this user (add it to the 'video' group)"
                )
        cap = self._factory(self.index)
        self._cap = cap
        if cap is None or not cap.isOpened():
            raise FrameSourceError(
                f"{self.name}: could not be opened; it may be in use by another program, or not exist"
            )
        try:
            import cv2

            w, h, fps = self.requested
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, w)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, h)
            cap.set(cv2.CAP_PROP_FPS, fps)
            self.nominal_fps = float(cap.get(cv2.CAP_PROP_FPS) or 0) or None
        except Exception:
            pass
        # A busy camera often opens but never delivers: the first frame must come.
        ok, img = cap.read()
        if not ok or img is None:
            raise FrameSourceError(
                f"{self.name}: opened but sends no picture; it is probably in use by another program"
            )
        self._first = img
        self.height, self.width = img.shape[:2]

    def _convert(self, img: np.ndarray) -> np.ndarray:
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        rgb = img[..., 2::-1] if img.shape[2] >= 3 else img  # OpenCV gives BGR(A)
        if self.mirror:
            rgb = rgb[:, ::-1]
        return np.ascontiguousarray(rgb, dtype=np.uint8)

    def _read_one(self) -> tuple[np.ndarray, float] | None:
        first = getattr(self, "_first", None)
        if first is not None:
            self._first = None
            return self._convert(first), time.monotonic()
        ok, img = self._cap.read()
        if not ok or img is None:
            raise FrameSourceError(
                f"{self.name}: stopped sending frames (was it unplugged or taken by another program?)"
            )
        return self._convert(img), time.monotonic()

    def _close(self) -> None:
        if self._cap is not None:
            try:
                self._cap.release()
            finally:
                self._cap = None


# ------------------------------------------------------------------------------------------------
# Video files


class VideoFileSource(FrameSource):
    """Frames of a video file with the camera interface (a camera stand-in, the app's video input).

    ``realtime=True`` paces frames at the video's fps, like a camera, dropping the oldest when the
    consumer is slower; ``realtime=False`` delivers as fast as decoding goes and, unless
    ``drop_oldest``, waits for the consumer so no frame is lost. ``loop`` restarts at the end.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        realtime: bool = True,
        loop: bool = False,
        mirror: bool = False,
        queue_size: int = 2,
        drop_oldest: bool | None = None,
        open_timeout: float = 10.0,
        stall_timeout: float = 5.0,
    ) -> None:
        super().__init__(queue_size, realtime if drop_oldest is None else drop_oldest, open_timeout, stall_timeout)
        self.path = Path(path)
        self.name = str(self.path)
        self.realtime = bool(realtime)
        self.loop = bool(loop)
        self.mirror = bool(mirror)
        self._frames: Iterator[np.ndarray] | None = None
        self._pos = 0
        self._t0 = 0.0
        self._loop_offset = 0

    def _open_frames(self) -> None:
        from models.media import MediaError, read_video_frames

        try:
            info, frames = read_video_frames(self.path)
        except MediaError as e:
            raise FrameSourceError(str(e)) from None
        self.width, self.height = info.width, info.height
        self.nominal_fps = info.fps
        self._frames = frames

    def _open(self) -> None:
        self._open_frames()
        self._t0 = time.monotonic()

    def _read_one(self) -> tuple[np.ndarray, float] | None:
        from models.media import MediaError

        assert self._frames is not None
        try:
            img = next(self._frames, None)
        except MediaError as e:
            raise FrameSourceError(str(e)) from None
        if img is None:
            if not self.loop or self._pos == self._loop_offset:
                return None
            self._loop_offset = self._pos
            self._open_frames()
            return self._read_one()
        fps = self.nominal_fps or DEFAULT_FPS
        ts = self._pos / fps
        self._pos += 1
        if self.realtime:
            # Pace like a camera: wait (interruptibly) until this frame's time has come.
            delay = self._t0 + ts - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
        if self.mirror:
            img = img[:, ::-1]
        return np.ascontiguousarray(img), ts

    def _close(self) -> None:
        if self._frames is not None:
            close = getattr(self._frames, "close", None)
            if close is not None:
                close()
            self._frames = None
