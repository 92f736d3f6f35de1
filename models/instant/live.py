"""The live session (Qt-free): the instant engine animating the current inputs in real time.

What the app's live preview shows, without any thread or widget, so it is tested on its own:

    session = LiveSession()
    message = session.set_inputs(image, audio, pose)   # the picture's analysis (~1 s) happens here
    session.push_pose(keypoints, driver_aspect, mirror)  # the newest webcam skeleton (or None)
    session.start_mic(48000.0); session.push_mic(samples)  # the microphone drives the lips
    frame, i = session.frame(t)                         # the frame for t seconds into the loop

The loop is the audio's length (or the pose take's, or ``IDLE_SECONDS`` of blinks and breathing);
a pose take is fitted to it and smoothed like a driving video's (``driving_pose``). A live skeleton
is retargeted onto the reference's body and replaces the take's pose while it is given. The
microphone's lips trail it by ``MIC_LATENCY_FRAMES``. ``set_inputs`` keeps the engine when only the
audio or the pose changed (the picture's analysis is the slow part).
"""

from __future__ import annotations

import numpy as np

from models.data.visemes import REST
from models.engines.types import video_length
from models.instant.engine import InstantEngine, InstantTrack, driving_pose
from models.media import DEFAULT_FPS

LIVE_MAX_SIDE = 640  # the live view's long side: real time first
IDLE_SECONDS = 4.0  # the loop length when nothing but the picture is given (blinks and breathing)
MIC_LATENCY_FRAMES = 3  # the lips trail the microphone by 3 frames (120 ms at 25 fps): quick, nearly exact


def live_size(h: int, w: int) -> tuple[int, int]:
    s = min(1.0, LIVE_MAX_SIDE / max(h, w))
    return max(2, int(round(h * s / 2)) * 2), max(2, int(round(w * s / 2)) * 2)


def same_picture(a: np.ndarray | None, b: np.ndarray) -> bool:
    """Same pixels (a crop or copy of the same picture keeps the engine: its face mesh costs ~1 s)."""
    return a is b or (a is not None and a.shape == b.shape and np.array_equal(a, b))


class LiveSession:
    """One reference animated live; not thread safe (the app drives it from its render thread)."""

    def __init__(self, engine_factory=None) -> None:
        self._make_engine = engine_factory or (lambda img: InstantEngine(img, live_size(*img.shape[:2])))
        self.engine: InstantEngine | None = None
        self._image: np.ndarray | None = None
        self._audio = None
        self._take_pose = None  # (T, K, 3) as given
        self.pose: np.ndarray | None = None  # the take fitted to the loop and smoothed
        self.track: InstantTrack | None = None
        self.fps = DEFAULT_FPS  # until inputs come: then theirs, or the engine's own
        self.seed = 0
        self.sway = 1.0
        self.mouth_scale = 1.0
        self._retargeter = None
        self.live_pose: np.ndarray | None = None  # (K, 3) retargeted webcam skeleton
        self._mic = None  # LiveMouth while the microphone drives the lips
        self._mic_rate: float | None = None
        self._mic_row: np.ndarray | None = None

    # -- inputs --------------------------------------------------------------------------------------

    def set_inputs(self, image: np.ndarray, audio: np.ndarray | None = None, pose: np.ndarray | None = None,
                   fps: float | None = None, seed: int = 0) -> str | None:
        """New inputs; returns the engine's message when the picture is new (None when kept).

        Raises ``UserError`` when the picture cannot be used (then no engine is held)."""
        message = None
        if self.engine is None or not same_picture(self._image, image):
            self.engine = None
            self._image = image
            self._retargeter = None
            self.live_pose = None
            self.engine = self._make_engine(image)
            message = self.engine.message
        self._audio, self._take_pose = audio, pose
        self.fps = float(fps or self.engine.fps)
        self.seed = int(seed)
        self._retrack()
        return message

    def set_sway(self, sway: float) -> None:
        self.sway = float(sway)
        if self.engine is not None:
            self._retrack()

    def set_mouth_scale(self, scale: float) -> None:
        self.mouth_scale = float(scale)

    def _retrack(self) -> None:
        eng = self.engine
        pose = self._take_pose
        if pose is not None and (len(pose) == 0 or not eng.body.usable):
            pose = None
        if self._audio is not None and len(self._audio):
            n = video_length(self._audio, None, self.fps, eng.sample_rate)
        elif pose is not None:
            n = len(pose)
        else:
            n = int(round(IDLE_SECONDS * self.fps))
        n = max(1, n)
        self.pose = driving_pose(pose, n, self.fps) if pose is not None else None
        self.track = eng.audio_track(self._audio, n, self.fps, seed=self.seed,
                                     sway=self.sway * (0.4 if self.pose is not None else 1.0))

    @property
    def num_frames(self) -> int:
        return 0 if self.track is None else len(self.track.mouth)

    # -- live drivers ----------------------------------------------------------------------------------

    def push_pose(self, keypoints: np.ndarray | None, driver_aspect: float = 4 / 3, mirror: bool = False) -> None:
        """The newest webcam skeleton ``(K, 3)`` in the driver's frame (None: follow the take again)."""
        if keypoints is None or self.engine is None or not self.engine.body.usable:
            self.live_pose = None
            if keypoints is None:
                self._retargeter = None
            return
        from models.conditions.retarget import Retargeter

        r = self._retargeter
        if r is None or r.mirror != mirror or r.driver_aspect != driver_aspect:
            eng = self.engine
            r = self._retargeter = Retargeter(eng.reference_keypoints, driver_aspect, eng.width / eng.height,
                                              mirror=mirror)
        kp = np.asarray(keypoints, np.float32)
        self.live_pose = r(kp) if (kp[:, 2] > 0).any() else None

    def start_mic(self, rate: float) -> None:
        from models.instant.mouth import LiveMouth

        self._mic_rate = float(rate)
        self._mic = LiveMouth(latency_frames=MIC_LATENCY_FRAMES)
        self._mic_row = None

    def stop_mic(self) -> None:
        self._mic = self._mic_rate = self._mic_row = None

    @property
    def mic_on(self) -> bool:
        return self._mic is not None

    def push_mic(self, samples: np.ndarray) -> None:
        """New microphone samples (mono, at the rate given to ``start_mic``)."""
        if self._mic is None or self.engine is None or not len(samples):
            return
        from models.media import resample_audio

        rows = self._mic.push(resample_audio(np.asarray(samples, np.float32).ravel(), self._mic_rate,
                                             target=self.engine.sample_rate))
        if len(rows):
            self._mic_row = rows[-1]

    # -- frames ------------------------------------------------------------------------------------------

    def index(self, t: float) -> int:
        return int(t * self.fps) % max(1, self.num_frames)

    def frame(self, t: float) -> tuple[np.ndarray, int]:
        """The frame ``(H, W, 3)`` uint8 for ``t`` seconds into the (looping) track, and its index."""
        eng, track = self.engine, self.track
        i = self.index(t)
        body = self.live_pose if self.live_pose is not None else (self.pose[i] if self.pose is not None else None)
        if self._mic is not None:
            rest = np.asarray(REST, np.float32)
            row = self._mic_row
            mouth = rest if row is None else np.clip(rest + (row - rest) * self.mouth_scale, 0, 1)
            return eng.render(mouth, body, tuple(track.blink[i]), None), i
        return eng.render_track(track, i, body, mouth_scale=self.mouth_scale), i
