"""The instant engine: the reference itself, warped along MediaPipe landmarks, in real time on a CPU.

Two entry points, with the engine interface's types (``models.engines.types``; the adapter that puts
this engine beside the model engine is ``models.engines.instant``):

* ``generate_instant(inputs, settings, callbacks, keep_frames) -> GenerationResult``: a whole video
  from ``GenerationInputs``, streamed in chunks through ``callbacks.on_segment`` and stopped by
  ``callbacks.should_cancel`` (checked every frame).
* ``InstantEngine(reference).render(mouth, pose_kp=None, blink=..., head=...) -> frame``: one frame
  for the app's live preview (sliders, webcam puppet); everything heavy happens in the constructor.

Per frame: mouth parameters (from the audio by the regressor, or from sliders), blinks and head
sway -> the face rig's mesh warp of the reference; with a pose, the body puppet
(``models.instant.puppet``: matte, background plate, skinned part meshes) cut from that frame.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from models.data.visemes import REST
from models.engines.types import (
    Callbacks,
    GenerationInputs,
    GenerationResult,
    GenerationSettings,
    check_reference,
    resolve_mode,
    video_length,
)
from models.errors import GenerationCancelled, UserError
from models.instant.face import FaceRig, HeadMotion, NoFaceError

MAX_SIDE = 1024  # frames larger than this are scaled down (real time matters more than pixels)
CHUNK_FRAMES = 25  # frames per on_segment call


@dataclass
class InstantTrack:
    """Everything the audio decides, per frame."""

    mouth: np.ndarray  # (T, 4)
    blink: np.ndarray  # (T, 2)
    head: np.ndarray  # (T, 4) roll, turn, dx, dy (see models.instant.motion)


def output_size(h: int, w: int, area: int | None = None) -> tuple[int, int]:
    """Frame size for a reference of ``h x w``: its own size (or ``area`` pixels), at most
    ``MAX_SIDE`` on the long side, even sides (H.264)."""
    s = 1.0
    if area:
        s = np.sqrt(area / (h * w))
    s = min(s, MAX_SIDE / max(h, w))
    return max(2, int(round(h * s / 2)) * 2), max(2, int(round(w * s / 2)) * 2)


class InstantEngine:
    """A reference prepared for instant animation. Build once (about a second), render many times.

    ``face_found`` says whether the face rig exists; ``message`` explains what works and what does
    not, in words for the user. ``render`` is not thread safe; use one engine per thread.
    """

    def __init__(self, reference: np.ndarray, size: tuple[int, int] | None = None,
                 reference_kp: np.ndarray | None = None, mouth_model=None) -> None:
        import cv2

        img = np.asarray(reference)
        if img.ndim != 3 or img.shape[2] < 3 or img.dtype != np.uint8:
            raise UserError("reference image must be an RGB uint8 image")
        img = np.ascontiguousarray(img[..., :3])
        h, w = size or output_size(*img.shape[:2])
        if (h, w) != img.shape[:2]:
            interp = cv2.INTER_AREA if h < img.shape[0] else cv2.INTER_CUBIC
            img = cv2.resize(img, (w, h), interpolation=interp)
        self.image = img
        self.height, self.width = h, w
        self._mouth_model = mouth_model
        self._predictor = None
        self._body = None
        self._reference_kp = reference_kp
        self._reference_info = None
        self.face: FaceRig | None = None
        try:
            self.face = FaceRig.build(img)
        except NoFaceError:
            # A small face (full-body photo): look again around the head the pose detector finds.
            if self.reference_info.person_found:
                try:
                    self.face = FaceRig.build(img, self.reference_keypoints)
                except NoFaceError:
                    pass
        if self.face is not None:
            self.message = "Face found: the mouth, eyes and head follow the audio."
            if self.face.approximate:
                self.message = ("The face is too small or turned for the face mesh; an approximate mesh fitted to "
                                "the body pose's eyes, nose and mouth follows the audio (lip motion is rough).")
            elif self.face.W < 12:
                self.message += f" The face is small ({self.face.W:.0f} px mouth), so lip motion is subtle."
        else:
            self.message = ("No face found in the reference image, so nothing can follow the audio: "
                            "choose a photo with a clearly visible, roughly frontal face.")
        self._frame = img.copy()

    @property
    def fps(self) -> float:
        """Frames per second of the mouth regressor's training: the engine's own rate."""
        return self.units[0]

    @property
    def sample_rate(self) -> int:
        return self.units[1]

    @property
    def units(self) -> tuple[float, int]:
        if self._mouth_model is not None:
            return float(self._mouth_model.cfg.fps), int(self._mouth_model.cfg.sample_rate)
        from models.instant.mouth import native_units

        return native_units()

    @property
    def face_found(self) -> bool:
        return self.face is not None

    # ------------------------------------------------------------------------------------------
    @property
    def reference_info(self):
        """``ReferenceInfo`` of the reference (person found, framing, keypoints), on first use."""
        if self._reference_info is None:
            from models.conditions.reference import analyze_reference

            self._reference_info = analyze_reference(self.image)
        return self._reference_info

    @property
    def reference_keypoints(self) -> np.ndarray:
        """The reference's pose ``(K, 3)``, detected on first use (or given to the constructor)."""
        if self._reference_kp is None:
            self._reference_kp = self.reference_info.keypoints
        return self._reference_kp

    @property
    def body(self):
        if self._body is None:
            from models.instant.puppet import Puppet

            self._body = Puppet(self.image, self.reference_keypoints)
            # The puppet may have found the body that the holistic graph missed: retarget onto it.
            self._reference_kp = self._body.ref_kp
        return self._body

    def audio_track(self, audio: np.ndarray | None, num_frames: int, fps: float | None = None, seed: int = 0,
                    sway: float = 1.0) -> InstantTrack:
        """Mouth, blinks and head motion for ``num_frames`` frames of ``audio`` (mono, at ``sample_rate``);
        ``fps``: the video's (None: the engine's own, ``self.fps``)."""
        from models.instant.motion import speech_motion
        from models.instant.mouth import MouthPredictor
        from models.media import normalize_loudness

        fps = fps or self.fps
        if audio is None or len(audio) == 0:
            mouth = np.tile(np.array(REST, np.float32), (num_frames, 1))
        else:
            if self._predictor is None:
                self._predictor = MouthPredictor(self._mouth_model)
            mouth = self._predictor(normalize_loudness(np.asarray(audio, np.float32)), num_frames, fps)
        motion = speech_motion(audio, num_frames, fps, seed=seed, sample_rate=self.sample_rate, sway=sway)
        return InstantTrack(mouth, motion.blink, motion.head)

    def render_track(self, track: InstantTrack, i: int, pose_kp: np.ndarray | None = None,
                     mouth_scale: float = 1.0) -> np.ndarray:
        """Frame ``i`` of an ``audio_track`` (the preview of a file while the model renders);
        ``mouth_scale`` exaggerates (> 1) or calms (< 1) the lips around the rest pose."""
        i = int(np.clip(i, 0, len(track.mouth) - 1))
        mouth = np.asarray(REST) + (track.mouth[i] - np.asarray(REST)) * mouth_scale
        return self.render(np.clip(mouth, 0, 1), pose_kp, tuple(track.blink[i]), track.head[i])

    def head_motion(self, head: np.ndarray | None) -> HeadMotion | None:
        """``(roll, turn, dx, dy)`` with dx, dy in fractions of the face size -> pixels."""
        if head is None or self.face is None:
            return None
        s = self.face.face_size
        return HeadMotion(float(head[0]), float(head[1]), float(head[2]) * s, float(head[3]) * s)

    def render(self, mouth: np.ndarray | None = None, pose_kp: np.ndarray | None = None,
               blink: tuple[float, float] | float = 0.0, head: np.ndarray | HeadMotion | None = None) -> np.ndarray:
        """One frame ``(H, W, 3)`` uint8 (a new array).

        ``mouth``: ``(4,)`` jaw_open, lip_width, rounding, closure (None: rest). ``pose_kp``:
        ``(K, 3)`` in the reference's frame (retargeted), or None for the reference's own pose.
        ``blink``: one value for both eyes or (left, right). ``head``: ``(roll, turn, dx, dy)`` as
        from ``audio_track``, or a ``HeadMotion`` in pixels.
        """
        if np.isscalar(blink):
            blink = (float(blink), float(blink))
        if self.face is not None:
            m = np.asarray(REST if mouth is None else mouth, np.float64)
            hm = head if isinstance(head, HeadMotion) or head is None else self.head_motion(np.asarray(head))
            frame = self.face.render(m, blink, hm, out=self._frame)
        else:
            frame = self._frame
            frame[:] = self.image
        if pose_kp is not None:
            frame = self.body.render(frame, pose_kp)
        return frame.copy()


# ----------------------------------------------------------------------------------------------
# Whole videos


def driving_pose(pose: np.ndarray, total: int, fps: float) -> np.ndarray:
    """A pose track fitted to ``total`` frames (the last pose held, as the model engine does) and
    lightly smoothed in time: detector jitter would make the warped body shimmer."""
    from models.conditions.smoothing import smooth_offline

    if len(pose) < total:
        pose = np.concatenate([pose, np.repeat(pose[-1:], total - len(pose), axis=0)])
    return smooth_offline(pose[:total], fps=fps, sigma_seconds=0.04)


def generate_instant(inputs: GenerationInputs, settings: GenerationSettings | None = None,
                     callbacks: Callbacks | None = None, keep_frames: bool = True,
                     engine: InstantEngine | None = None) -> GenerationResult:
    """A video for ``inputs`` by the instant engine; same contract as ``models.pipeline.generate``.

    ``settings``: ``fps``, ``seed``, ``mode``, ``max_frames`` and ``area`` apply; the diffusion
    settings (steps, guidance, segments) do not. Chunks of ``CHUNK_FRAMES`` frames go to
    ``on_segment(chunk, frames, start)``; ``on_step(chunk, n_chunks, 1, 1)`` reports progress.
    Raises ``UserError`` when the audio would drive a face that the reference does not have.
    """
    from models.keypoints import validate_keypoints

    settings = settings or GenerationSettings()
    cb = callbacks or Callbacks()
    t0 = time.perf_counter()
    check_reference(inputs.image)
    has_audio = inputs.audio is not None and len(inputs.audio) > 0
    pose = validate_keypoints(inputs.pose, "pose") if inputs.pose is not None else None
    mode = resolve_mode(settings.mode, has_audio, pose is not None)
    use_audio, use_pose = mode in ("audio", "combined"), mode in ("pose", "combined")
    seed = settings.seed if settings.seed is not None else int(np.random.default_rng().integers(2**31))

    h0, w0 = inputs.image.shape[:2]
    size = output_size(h0, w0, settings.area)
    eng = engine or InstantEngine(inputs.image, size)
    fps = float(settings.fps or eng.fps)
    if use_audio and not eng.face_found:
        if use_pose:
            pass  # the body still follows the pose; the audio is only muxed into the video
        else:
            raise UserError("audio-only animation needs a face, and none was found in the reference image. "
                            "Choose a photo with a clearly visible face, or drive the body with a pose.")
    total = video_length(inputs.audio, pose, fps, eng.sample_rate, settings.max_frames)
    if use_pose:
        pose = driving_pose(pose, total, fps)
        if not eng.body.usable:
            raise UserError(eng.body.message + "; the pose cannot drive this reference")
    track = eng.audio_track(inputs.audio if use_audio else None, total, fps, seed=seed,
                            sway=0.4 if use_pose else 1.0)

    n_chunks = max(1, -(-total // CHUNK_FRAMES))
    result = GenerationResult(num_frames=0, fps=fps, height=eng.height, width=eng.width, seed=seed, mode=mode,
                              segments_done=0, num_segments=n_chunks)
    kept = []
    buf = np.empty((CHUNK_FRAMES, eng.height, eng.width, 3), np.uint8)
    try:
        for ci in range(n_chunks):
            t_chunk = time.perf_counter()
            start = ci * CHUNK_FRAMES
            n = min(CHUNK_FRAMES, total - start)
            for k in range(n):
                if cb.should_cancel and cb.should_cancel():
                    raise GenerationCancelled()
                i = start + k
                buf[k] = eng.render(track.mouth[i], pose[i] if use_pose else None, tuple(track.blink[i]),
                                    track.head[i])
            frames = buf[:n].copy()
            result.num_frames += n
            result.segments_done += 1
            result.segment_seconds.append(time.perf_counter() - t_chunk)
            if keep_frames:
                kept.append(frames)
            if cb.on_step:
                cb.on_step(ci, n_chunks, 1, 1)
            if cb.on_segment:
                cb.on_segment(ci, frames, start)
    except GenerationCancelled:
        result.cancelled = True
    result.seconds = time.perf_counter() - t0
    if keep_frames:
        result.frames = np.concatenate(kept) if kept else np.zeros((0, eng.height, eng.width, 3), np.uint8)
    return result
