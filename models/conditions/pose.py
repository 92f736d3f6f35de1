"""Pose extraction from real images and video with MediaPipe (legacy ``mp.solutions`` API).

One MediaPipe Holistic graph per extractor gives, per frame, the 33 body landmarks, both hands
(located from the body's wrists, so "left" is always the person's own left hand) and the 478-point
face mesh with irises, from which the face subset of the project's layout is picked
(``keypoints.FACE_MESH_INDICES``). Only models bundled in the mediapipe wheel are used: pose model
complexity 1, never 0 or 2 (those download their weights on first use).

Output is the project's one layout (``models.keypoints``): ``(K, 3)`` float32 of
``(x, y, confidence)`` per frame, x and y in [0, 1] of the frame. Confidence is MediaPipe's
visibility for body points and 1 for tracked hand and face points; a point further than
``OUT_OF_FRAME_MARGIN`` outside the frame gets confidence 0 (its extrapolated position is kept).
A frame with no person is all zeros.

Speed (2-core CPU, 640x480): about 17 ms per frame in tracking mode with face and hands on every
frame, i.e. ~55 fps, since MediaPipe only re-detects when tracking is lost and the face and hand
models run on crops found from the body. ``benchmarks/pose_fps.py`` measures it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models import keypoints as kpl
from models.errors import UserError
from models.media import DEFAULT_FPS

# A landmark further than this (fraction of the frame) outside the frame is marked absent.
OUT_OF_FRAME_MARGIN = 0.05
# A frame counts as having a person when at least this many body points are confidently visible.
MIN_VISIBLE_BODY_POINTS = 4
VISIBLE = 0.5
# Without a face mesh, a detection must show some body below the head (2 visible points) spanning
# at least this fraction of the frame's shorter side: MediaPipe's body model sometimes "finds" a
# head a few pixels wide in a textured background and then keeps tracking it.
MIN_BODY_EXTENT = 0.08
# After such a phantom, tracking restarts (a fresh graph, ~0.2 s) at most once per this many frames.
RESTART_INTERVAL = 15

# Face-mesh indices of the body layout's head points, used when the body model finds no person but
# the face model finds a face (tight portraits): nose tip, eyes, ears (approximate), mouth corners.
_MESH_FOR_BODY_HEAD = {
    "nose": 1, "left_eye_inner": 362, "left_eye": 473, "left_eye_outer": 263,
    "right_eye_inner": 133, "right_eye": 468, "right_eye_outer": 33, "left_ear": 454,
    "right_ear": 234, "mouth_left": 291, "mouth_right": 61,
}

ProgressFn = Callable[[int, int | None], None]


def _landmarks_array(landmark_list, with_visibility: bool) -> np.ndarray:
    """MediaPipe landmark list -> ``(N, 3)`` of (x, y, conf)."""
    lms = landmark_list.landmark
    out = np.empty((len(lms), 3), np.float32)
    for i, lm in enumerate(lms):
        out[i, 0] = lm.x
        out[i, 1] = lm.y
        out[i, 2] = lm.visibility if with_visibility else 1.0
    np.clip(out[:, 2], 0.0, 1.0, out=out[:, 2])
    return out


def _mark_out_of_frame(points: np.ndarray) -> np.ndarray:
    m = OUT_OF_FRAME_MARGIN
    x, y = points[:, 0], points[:, 1]
    outside = (x < -m) | (x > 1 + m) | (y < -m) | (y > 1 + m)
    points[outside, 2] = 0.0
    return points


def person_present(kp: np.ndarray, min_points: int = MIN_VISIBLE_BODY_POINTS) -> np.ndarray | bool:
    """Whether a frame ``(K, 3)`` (or each frame of ``(T, K, 3)``) holds a person."""
    body = kp[..., : kpl.NUM_BODY, 2]
    n = (body >= VISIBLE).sum(-1)
    face = (kp[..., kpl.FACE_START :, 2] > 0).sum(-1)
    found = (n >= min_points) | (face >= kpl.NUM_FACE // 2)
    return bool(found) if kp.ndim == 2 else found


class PoseExtractor:
    """Per-frame keypoints ``(K, 3)`` from RGB uint8 frames ``(H, W, 3)``.

    ``static_image_mode=True`` treats every call as an unrelated image (the reference picture);
    ``False`` tracks across calls (a video file or a live camera), which is faster and steadier.
    Use as a context manager, or call ``close()``. One extractor must be used from one thread at a
    time; MediaPipe is imported on first use so importing this module is cheap.
    """

    def __init__(
        self,
        static_image_mode: bool = False,
        face: bool = True,
        hands: bool = True,
        min_detection_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
        smooth_landmarks: bool = True,
    ) -> None:
        self.static_image_mode = bool(static_image_mode)
        self.face = bool(face)
        self.hands = bool(hands)
        self.min_detection_confidence = float(min_detection_confidence)
        self.min_tracking_confidence = float(min_tracking_confidence)
        self.smooth_landmarks = bool(smooth_landmarks)
        self._holistic = None
        self._face_mesh = None  # static-image fallback for faces too close for the body model
        self.frames_processed = 0
        self.restarts = 0
        self._last_restart = -RESTART_INTERVAL

    # -- lifecycle -------------------------------------------------------------------------------

    def _graph(self):
        if self._holistic is None:
            import mediapipe as mp

            self._holistic = mp.solutions.holistic.Holistic(
                static_image_mode=self.static_image_mode,
                model_complexity=1,  # the only complexity bundled in the wheel
                smooth_landmarks=self.smooth_landmarks and not self.static_image_mode,
                enable_segmentation=False,
                refine_face_landmarks=self.face,
                min_detection_confidence=self.min_detection_confidence,
                min_tracking_confidence=self.min_tracking_confidence,
            )
        return self._holistic

    def close(self) -> None:
        for g in (self._holistic, self._face_mesh):
            if g is not None:
                g.close()
        self._holistic = None
        self._face_mesh = None

    def __enter__(self) -> PoseExtractor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- per frame -------------------------------------------------------------------------------

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """Keypoints ``(K, 3)`` float32 of one RGB uint8 frame; all zeros when no person is found."""
        frame = _check_frame(frame)
        result = self._graph().process(frame)
        self.frames_processed += 1
        kp = np.zeros((kpl.NUM_KEYPOINTS, 3), np.float32)
        if result.pose_landmarks is not None:
            kp[: kpl.NUM_BODY] = _landmarks_array(result.pose_landmarks, True)
        if self.hands:
            if result.left_hand_landmarks is not None:
                kp[kpl.LEFT_HAND_START : kpl.RIGHT_HAND_START] = _landmarks_array(
                    result.left_hand_landmarks, False
                )
            if result.right_hand_landmarks is not None:
                kp[kpl.RIGHT_HAND_START : kpl.FACE_START] = _landmarks_array(
                    result.right_hand_landmarks, False
                )
        face_mesh = result.face_landmarks
        if self.face and face_mesh is None and self.static_image_mode:
            face_mesh = self._face_only(frame)
            if face_mesh is not None and result.pose_landmarks is None:
                # No body found but a face is: take the head points from the mesh.
                mesh = _landmarks_array(face_mesh, False)
                for name, mi in _MESH_FOR_BODY_HEAD.items():
                    kp[kpl.INDEX[name]] = mesh[mi]
        if self.face and face_mesh is not None:
            mesh = _landmarks_array(face_mesh, False)
            if len(mesh) > max(kpl.FACE_MESH_INDICES):
                kp[kpl.FACE_START :] = mesh[list(kpl.FACE_MESH_INDICES)]
        _mark_out_of_frame(kp)
        if not person_present(kp):
            kp[:] = 0.0
        elif not _plausible(kp, frame.shape[0], frame.shape[1]):
            kp[:] = 0.0
            if not self.static_image_mode and self.frames_processed - self._last_restart >= RESTART_INTERVAL:
                # A phantom being tracked hides a real person who walks in: detect afresh.
                self._holistic.close()
                self._holistic = None
                self._last_restart = self.frames_processed
                self.restarts += 1
        return kp

    def _face_only(self, frame: np.ndarray):
        if self._face_mesh is None:
            import mediapipe as mp

            self._face_mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=True, max_num_faces=1, refine_landmarks=True,
                min_detection_confidence=self.min_detection_confidence,
            )
        res = self._face_mesh.process(frame)
        return res.multi_face_landmarks[0] if res.multi_face_landmarks else None


def _plausible(kp: np.ndarray, height: int, width: int) -> bool:
    """A detection with a face mesh, or with a body that is more than a speck (see MIN_BODY_EXTENT)."""
    if (kp[kpl.FACE_START :, 2] > 0).sum() >= kpl.NUM_FACE // 2:
        return True
    body = kp[: kpl.NUM_BODY]
    vis = body[:, 2] >= VISIBLE
    if vis[11:].sum() < 2:  # 0..10 are the head's points
        return False
    pts = body[vis, :2] * np.array([width, height], np.float32)
    return float(np.ptp(pts, axis=0).max()) >= MIN_BODY_EXTENT * min(height, width)


def _check_frame(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim == 2:
        frame = np.repeat(frame[..., None], 3, axis=2)
    if frame.ndim != 3 or frame.shape[2] not in (3, 4):
        raise ValueError(f"expected an RGB image (H, W, 3), got shape {frame.shape}")
    if frame.shape[2] == 4:
        frame = frame[..., :3]
    if frame.dtype != np.uint8:
        raise ValueError(f"expected a uint8 RGB image, got dtype {frame.dtype}")
    return np.ascontiguousarray(frame)


def extract_image_pose(image_rgb: np.ndarray) -> np.ndarray:
    """Keypoints ``(K, 3)`` of one still image (all zeros when no person is found)."""
    with PoseExtractor(static_image_mode=True) as ex:
        return ex(image_rgb)


# ------------------------------------------------------------------------------------------------
# Video


@dataclass
class PoseTrack:
    """Keypoints of a whole video.

    ``keypoints`` is ``(T, K, 3)``; ``missing`` is ``(T,)`` bool, True where no person was found and
    the keypoints were filled from the neighbouring frames (see ``smoothing.fill_gaps``).
    """

    keypoints: np.ndarray
    fps: float
    width: int
    height: int
    missing: np.ndarray
    source: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.keypoints.shape[0])

    @property
    def aspect(self) -> float:
        """Width / height of the frames the keypoints are normalised to."""
        return self.width / self.height if self.height else 1.0


# The full frames are searched for small people (models.conditions.people) when the landmarker
# finds a person in fewer than this fraction of them.
SMALL_PEOPLE_BELOW = 0.5


def extract_video_poses(
    path: str | os.PathLike,
    progress: ProgressFn | None = None,
    max_frames: int | None = None,
    smooth: bool = True,
    person: int | None = None,
) -> PoseTrack:
    """Keypoints of every frame of a video file, gaps filled and marked.

    The landmarker runs on the full frames first; when it finds a person in fewer than
    ``SMALL_PEOPLE_BELOW`` of them (people too small in a wide shot), the people detector of
    ``models.conditions.people`` finds and tracks them and the landmarker runs on a crop around the
    main one. ``person=N`` (1-based, 1 = the largest and most persistent) goes straight to the
    detector and takes its N-th person. ``meta["person_message"]`` then says who was used.

    ``progress(done, total)`` is called after each frame (``total`` may be None when the container
    does not say; the crop pass counts the frames again). Raises ``UserError`` naming the file when
    no frame holds a person, and ``MediaError`` when the file is not a readable video or is truncated.
    """
    from models.conditions.smoothing import clean_track
    from models.media import read_video_frames

    p = Path(path)
    if person is not None and int(person) < 1:
        raise UserError(f"{p}: person numbers start at 1 (the largest and most persistent), got {person}")
    info, frames = read_video_frames(p)
    total = info.num_frames if max_frames is None else min(max_frames, info.num_frames or max_frames)
    kp = None
    if person is None:
        rows: list[np.ndarray] = []
        with PoseExtractor(static_image_mode=False) as ex:
            for i, frame in enumerate(frames):
                if max_frames is not None and i >= max_frames:
                    break
                rows.append(ex(frame))
                if progress is not None:
                    progress(i + 1, total)
        if not rows:
            raise UserError(f"{p}: the video has no frames")
        kp = np.stack(rows)
    else:
        frames.close()
    meta: dict = {}
    if kp is None or person_present(kp).mean() < SMALL_PEOPLE_BELOW:
        from models.conditions.people import extract_person_poses

        found = extract_person_poses(p, person, progress, max_frames)
        if found is not None:
            small, choice = found
            if kp is None or person_present(small).sum() > person_present(kp).sum():
                kp, meta = small, choice.as_meta()
        if kp is None:
            raise UserError(f"{p}: the people detector found nobody to choose from; leave out the person number")
    missing = ~person_present(kp)
    if missing.all():
        raise UserError(
            f"{p}: no person found in any of its {len(kp)} frames (also none on crops around the people "
            "detected); use a video where one person is visible"
        )
    kp = clean_track(kp, info.fps, missing, smooth=smooth)
    return PoseTrack(kp, info.fps, info.width, info.height, missing, str(p), meta)


# ------------------------------------------------------------------------------------------------
# Files: POSE.npy holds the (T, K, 3) array; POSE.json beside it holds fps, frame size and the
# gap-filled frames, so a plain ``np.load`` still gets the keypoints.


def save_pose_track(track: PoseTrack, path: str | os.PathLike) -> Path:
    p = Path(path)
    if p.suffix.lower() != ".npy":
        raise UserError(f"{p}: pose files are saved as .npy")
    p.parent.mkdir(parents=True, exist_ok=True)
    np.save(p, kpl.validate_keypoints(track.keypoints, str(p)), allow_pickle=False)
    meta = {
        "layout": "omnihuman-keypoints-v1",
        "num_keypoints": kpl.NUM_KEYPOINTS,
        "fps": track.fps,
        "width": track.width,
        "height": track.height,
        "missing_frames": [int(i) for i in np.flatnonzero(track.missing)],
        "source": track.source,
        **track.meta,
    }
    p.with_suffix(".json").write_text(json.dumps(meta, indent=1))
    return p


def load_pose_track(
    path: str | os.PathLike, default_fps: float = DEFAULT_FPS, default_aspect: float = 1.0
) -> PoseTrack:
    """Read a pose ``.npy`` (and its ``.json`` sidecar when present). Raises UserError naming the file."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"{p}: pose file not found")
    try:
        arr = np.load(p, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise UserError(f"{p}: not a pose .npy file ({e})") from None
    try:
        kp = kpl.validate_keypoints(arr, str(p))
    except ValueError as e:
        raise UserError(str(e)) from None
    meta: dict = {}
    side = p.with_suffix(".json")
    if side.exists():
        try:
            meta = json.loads(side.read_text())
        except (ValueError, OSError):
            meta = {}
    fps = float(meta.get("fps") or default_fps)
    width = int(meta.get("width") or round(1000 * default_aspect))
    height = int(meta.get("height") or 1000)
    missing = np.zeros(len(kp), bool)
    for i in meta.get("missing_frames", []):
        if 0 <= int(i) < len(kp):
            missing[int(i)] = True
    extra = {k: v for k, v in meta.items() if k not in {"fps", "width", "height", "missing_frames", "source"}}
    return PoseTrack(kp, fps, width, height, missing, str(meta.get("source", p)), extra)
