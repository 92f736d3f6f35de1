"""Live pose from a camera (or a video standing in for one), on its own thread, Qt-free.

``LivePoseTracker`` pulls the newest frame from a ``FrameSource``, extracts keypoints in tracking
mode, smooths them with the One-Euro filter (holding a lost person briefly, marked ``filled``) and,
given a reference, retargets them onto the reference's body. Results go to an ``on_pose`` callback
(called on the tracker's thread: the app posts them to its UI thread) and to ``latest()``. A source
failure (camera unplugged, file damaged) goes to ``on_error`` and stops the tracker; it never
raises into the caller's thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from models.conditions.pose import PoseExtractor
from models.conditions.retarget import Retargeter
from models.conditions.smoothing import LivePoseSmoother
from models.sources import Frame, FrameSource, SourceTimeout


@dataclass(frozen=True)
class LivePose:
    frame: Frame
    keypoints: np.ndarray  # (K, 3) smoothed, normalised to the camera frame
    retargeted: np.ndarray | None  # (K, 3) on the reference's body, normalised to the reference
    filled: bool  # no person in this frame: the last pose held, fading
    extract_ms: float


class LivePoseTracker:
    def __init__(
        self,
        source: FrameSource,
        reference: np.ndarray | None = None,
        reference_aspect: float | None = None,
        mirror: bool = False,
        on_pose: Callable[[LivePose], None] | None = None,
        on_error: Callable[[Exception], None] | None = None,
        smoother: LivePoseSmoother | None = None,
    ) -> None:
        if reference is not None and not reference_aspect:
            raise ValueError("reference_aspect (width / height of the reference) is needed with a reference")
        self.source = source
        self.reference = reference
        self.reference_aspect = reference_aspect
        self.mirror = bool(mirror)
        self.on_pose = on_pose
        self.on_error = on_error
        self.smoother = smoother or LivePoseSmoother()
        self.error: Exception | None = None
        self.poses = 0
        self._latest: LivePose | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._times: list[float] = []

    def start(self) -> LivePoseTracker:
        if self._thread is None:
            if not self.source.running:
                self.source.start()  # opening errors surface here, in the caller's thread
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="live-pose", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._thread = None
        self.source.stop()

    def __enter__(self) -> LivePoseTracker:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def latest(self) -> LivePose | None:
        with self._lock:
            return self._latest

    @property
    def fps(self) -> float:
        """Poses per second over the last 30."""
        with self._lock:
            t = self._times[-30:]
        return (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0

    def _run(self) -> None:
        retargeter = None
        try:
            with PoseExtractor(static_image_mode=False) as extractor:
                while not self._stop.is_set():
                    try:
                        frame = self.source.read(timeout=0.5)
                    except SourceTimeout:
                        continue
                    if frame is None:  # a video file ended
                        return
                    t0 = time.perf_counter()
                    raw = extractor(frame.image)
                    ms = 1000 * (time.perf_counter() - t0)
                    kp, filled = self.smoother(raw, frame.timestamp)
                    rt = None
                    if self.reference is not None:
                        if retargeter is None:
                            h, w = frame.image.shape[:2]
                            retargeter = Retargeter(self.reference, w / h, self.reference_aspect, self.mirror)
                        rt = retargeter(kp)
                    pose = LivePose(frame, kp, rt, filled, ms)
                    with self._lock:
                        self._latest = pose
                        self.poses += 1
                        self._times.append(time.monotonic())
                        del self._times[:-60]
                    if self.on_pose is not None:
                        self.on_pose(pose)
        except Exception as e:  # reported, never raised into another thread
            self.error = e
            if self.on_error is not None:
                self.on_error(e)
