"""Poses of small people in wide shots: detect, track, crop, run the landmarker, map back.

MediaPipe's landmarker looks for a person over the whole frame at its own input size (256 px), so a
pedestrian 60-90 px tall in a 768x576 street scene is a few pixels to it and nobody is found. This
module finds the people first with a detector that ships inside OpenCV (the HOG + linear SVM people
detector, ``cv2.HOGDescriptor_getDefaultPeopleDetector``: no download), follows them across the
video, and runs the landmarker on an upscaled crop around the chosen one:

1. **Detect** every ``detect_every`` frames (about 3 times a second) on the frame upscaled by
   ``HOG_UPSCALE``: the detector's window is 64x128 px, so people down to ~55 px tall are found
   (about 0.25 s of CPU per 768x576 frame; a 4-s shot is detected on 14 of its frames).
2. **Track**: detections are linked frame to frame by overlap and distance (a person may be missed
   for a couple of detection frames); each track's box is interpolated for every frame in between.
3. **Choose**: tracks are ranked by the sum of their box heights over the detection frames, i.e.
   largest and most persistent first. Person 1 is the main one; ``person=N`` picks the N-th.
4. **Crop**: a square of ``CROP_SCALE`` x the box height around the box centre (it may reach past
   the frame's edge: filled with black), resized to ``CROP_SIZE`` px, goes to a tracking-mode
   ``PoseExtractor``; its landmarks, in [0, 1] of the crop, are mapped back to [0, 1] of the frame.

``extract_person_poses`` is what ``pose.extract_video_poses`` calls when the landmarker finds
(almost) nobody in the full frames, or when a person is chosen explicitly; the returned
``PersonChoice`` says which person was used and how many there were, for the CLI and the app.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HOG_UPSCALE = 1.75  # detector window 128 px high -> people from ~55 px tall (the box holds ~0.75 person)
HOG_SCALE_STEP = 1.1  # pyramid step of detectMultiScale
HOG_MIN_SIZE = (144, 80)  # (h, w): the detector window (128, 64) and a margin
HOG_MIN_SCORE = 0.3  # SVM margin below which a detection is dropped
DETECTIONS_PER_SECOND = 3.0
CROP_SCALE = 1.4  # crop side / detector box height
CROP_SIZE = 256  # px, the landmarker's own input size
MAX_MISSED = 2  # detection frames a track may go unmatched before it ends
LINK_DISTANCE = 0.8  # centres closer than this x box height (or boxes overlapping) are the same person
PERSON_IN_BOX = 0.8  # the person's height / the detector box's height (the box has a margin)

ProgressFn = Callable[[int, int | None], None]


@dataclass(frozen=True)
class Box:
    """A detection in full-frame pixels: centre, width and height, detector score."""

    cx: float
    cy: float
    w: float
    h: float
    score: float = 1.0

    def iou(self, o: Box) -> float:
        ix = max(0.0, min(self.cx + self.w / 2, o.cx + o.w / 2) - max(self.cx - self.w / 2, o.cx - o.w / 2))
        iy = max(0.0, min(self.cy + self.h / 2, o.cy + o.h / 2) - max(self.cy - self.h / 2, o.cy - o.h / 2))
        inter = ix * iy
        return inter / max(self.w * self.h + o.w * o.h - inter, 1e-9)


@dataclass
class PersonTrack:
    """One person followed over the detection frames: ``boxes[frame_index] = Box``."""

    boxes: dict[int, Box] = field(default_factory=dict)
    missed: int = 0

    @property
    def last(self) -> tuple[int, Box]:
        i = max(self.boxes)
        return i, self.boxes[i]

    @property
    def weight(self) -> float:
        """Largest and most persistent: the sum of the box heights over the frames it was seen in."""
        return float(sum(b.h for b in self.boxes.values()))

    @property
    def height(self) -> float:
        return float(np.median([b.h for b in self.boxes.values()]))

    def box_at(self, frame: int) -> Box:
        """The box at any frame: linear between detections, held before the first and after the last."""
        keys = sorted(self.boxes)
        if frame <= keys[0]:
            return self.boxes[keys[0]]
        if frame >= keys[-1]:
            return self.boxes[keys[-1]]
        j = int(np.searchsorted(keys, frame))
        a, b = keys[j - 1], keys[j]
        ba, bb = self.boxes[a], self.boxes[b]
        t = (frame - a) / (b - a)
        lerp = lambda u, v: (1 - t) * u + t * v  # noqa: E731
        return Box(lerp(ba.cx, bb.cx), lerp(ba.cy, bb.cy), lerp(ba.w, bb.w), lerp(ba.h, bb.h), min(ba.score, bb.score))


@dataclass(frozen=True)
class PersonChoice:
    """Which person's poses were extracted: ``index`` (1 = the main one) of ``count`` people."""

    index: int
    count: int
    height_px: float  # the person's median height in the full frame (from the detector's boxes)
    centre: tuple[float, float]  # median box centre, in [0, 1] of the frame
    frames_found: int = 0  # frames where the landmarker found the person in the crop

    @property
    def message(self) -> str:
        where = "left" if self.centre[0] < 0.4 else "right" if self.centre[0] > 0.6 else "centre"
        main = "the largest and most persistent" if self.index == 1 else "chosen with --person"
        others = f"; --person 1..{self.count} picks another" if self.count > 1 else ""
        return (f"small people: person {self.index} of {self.count} ({main}, about {self.height_px:.0f} px tall, "
                f"{where} of the frame), landmarks found in {self.frames_found} frames on a crop around "
                f"them{others}")

    def as_meta(self) -> dict:
        return {"person": self.index, "people": self.count, "person_height_px": round(self.height_px, 1),
                "person_centre": [round(c, 4) for c in self.centre], "person_message": self.message}


# ------------------------------------------------------------------------------------------------
# Detection and tracking


class PeopleDetector:
    """OpenCV's HOG people detector on an upscaled frame; boxes in the frame's own pixels."""

    def __init__(self, upscale: float = HOG_UPSCALE, min_score: float = HOG_MIN_SCORE) -> None:
        import cv2

        self.upscale = float(upscale)
        self.min_score = float(min_score)
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    def __call__(self, frame: np.ndarray) -> list[Box]:
        import cv2

        s = self.upscale
        big = frame if s == 1 else cv2.resize(frame, None, fx=s, fy=s, interpolation=cv2.INTER_LINEAR)
        gray = cv2.cvtColor(big, cv2.COLOR_RGB2GRAY)
        # OpenCV crashes (segfault) on an image smaller than the 64x128 window: pad bottom and right.
        pad_h, pad_w = max(0, HOG_MIN_SIZE[0] - gray.shape[0]), max(0, HOG_MIN_SIZE[1] - gray.shape[1])
        if pad_h or pad_w:
            gray = cv2.copyMakeBorder(gray, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=0)
        rects, weights = self._hog.detectMultiScale(gray, winStride=(8, 8), padding=(8, 8), scale=HOG_SCALE_STEP)
        out = []
        for (x, y, w, h), score in zip(np.reshape(rects, (-1, 4)), np.ravel(weights), strict=True):
            if score >= self.min_score:
                out.append(Box((x + w / 2) / s, (y + h / 2) / s, w / s, h / s, float(score)))
        return _suppress(out)


def _suppress(boxes: list[Box], iou: float = 0.4) -> list[Box]:
    """Non-maximum suppression: of overlapping boxes keep the best scored."""
    kept: list[Box] = []
    for b in sorted(boxes, key=lambda b: -b.score):
        if all(b.iou(k) < iou for k in kept):
            kept.append(b)
    return kept


def link_tracks(detections: dict[int, list[Box]], max_missed: int = MAX_MISSED) -> list[PersonTrack]:
    """Greedy frame-to-frame association of ``{frame: boxes}`` into tracks, best first."""
    active: list[PersonTrack] = []
    done: list[PersonTrack] = []
    for frame in sorted(detections):
        boxes = list(detections[frame])
        pairs = []
        for ti, tr in enumerate(active):
            _, lb = tr.last
            for bi, b in enumerate(boxes):
                dist = np.hypot(b.cx - lb.cx, b.cy - lb.cy) / max(lb.h, 1e-6)
                similar = 0.5 < b.h / max(lb.h, 1e-6) < 2.0
                if similar and (b.iou(lb) > 0.2 or dist < LINK_DISTANCE * (1 + tr.missed)):
                    pairs.append((dist - b.iou(lb), ti, bi))
        used_t, used_b = set(), set()
        for _, ti, bi in sorted(pairs):
            if ti not in used_t and bi not in used_b:
                active[ti].boxes[frame] = boxes[bi]
                active[ti].missed = 0
                used_t.add(ti)
                used_b.add(bi)
        still = []
        for ti, tr in enumerate(active):
            if ti not in used_t:
                tr.missed += 1
            (done if tr.missed > max_missed else still).append(tr)
        active = still + [PersonTrack({frame: b}) for bi, b in enumerate(boxes) if bi not in used_b]
    tracks = done + active
    if any(len(t.boxes) > 1 for t in tracks):  # a box seen once is most often a false detection
        tracks = [t for t in tracks if len(t.boxes) > 1]
    return sorted(tracks, key=lambda t: -t.weight)


# ------------------------------------------------------------------------------------------------
# Crop and map back


def crop_window(box: Box, scale: float = CROP_SCALE) -> tuple[float, float, float]:
    """``(x0, y0, side)`` in full-frame pixels of the square crop around ``box``."""
    side = max(box.h * scale, box.w * scale, 32.0)
    return box.cx - side / 2, box.cy - side / 2, side


def crop_frame(frame: np.ndarray, window: tuple[float, float, float], size: int = CROP_SIZE) -> np.ndarray:
    """The square ``window`` of ``frame`` resized to ``size`` x ``size`` (black past the frame's edge)."""
    import cv2

    x0, y0, side = window
    k = size / side
    m = np.array([[k, 0, -x0 * k], [0, k, -y0 * k]], np.float64)
    return cv2.warpAffine(frame, m, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT)


def map_to_frame(kp: np.ndarray, window: tuple[float, float, float], width: int, height: int) -> np.ndarray:
    """Keypoints ``(K, 3)`` in [0, 1] of the crop -> [0, 1] of the full frame. Absent points (all
    zeros) stay zeros; a point that lands outside the frame keeps its position and loses its confidence."""
    from models.conditions.pose import _mark_out_of_frame

    x0, y0, side = window
    out = kp.copy()
    present = np.any(kp != 0, axis=1)
    out[present, 0] = (x0 + kp[present, 0] * side) / width
    out[present, 1] = (y0 + kp[present, 1] * side) / height
    return _mark_out_of_frame(out) if present.any() else out


# ------------------------------------------------------------------------------------------------
# A whole video


def detect_video_people(path: str | os.PathLike, max_frames: int | None = None,
                        detect_every: int | None = None) -> tuple[list[PersonTrack], int, object]:
    """Tracks of the people in a video (best first), the number of frames read, and the video info."""
    from models.media import read_video_frames

    info, frames = read_video_frames(Path(path))
    every = detect_every or max(1, int(round(info.fps / DETECTIONS_PER_SECOND)))
    detector = PeopleDetector()
    detections: dict[int, list[Box]] = {}
    n = 0
    last = None
    try:
        for i, frame in enumerate(frames):
            if max_frames is not None and i >= max_frames:
                break
            n = i + 1
            last = frame
            if i % every == 0:
                detections[i] = detector(frame)
    finally:
        frames.close()
    if n and (n - 1) not in detections and last is not None:
        detections[n - 1] = detector(last)
    return link_tracks(detections), n, info


def extract_person_poses(
    path: str | os.PathLike,
    person: int | None = None,
    progress: ProgressFn | None = None,
    max_frames: int | None = None,
) -> tuple[np.ndarray, PersonChoice] | None:
    """Keypoints ``(T, K, 3)`` in the full frame's [0, 1] of one detected person, and who it was.

    ``person``: 1-based rank (1 = largest and most persistent, the default). Returns None when the
    detector finds nobody; raises UserError when ``person`` is beyond the people found.
    """
    from models import keypoints as kpl
    from models.conditions.pose import PoseExtractor, person_present
    from models.errors import UserError
    from models.media import read_video_frames

    p = Path(path)
    tracks, n, info = detect_video_people(p, max_frames)
    if not tracks:
        return None
    index = 1 if person is None else int(person)
    if not 1 <= index <= len(tracks):
        raise UserError(f"{p}: person {index} was asked for, but the people detector found {len(tracks)} "
                        f"(1 is the largest and most persistent); choose 1 to {len(tracks)}")
    track = tracks[index - 1]
    rows = np.zeros((n, kpl.NUM_KEYPOINTS, 3), np.float32)
    _, frames = read_video_frames(p)
    try:
        with PoseExtractor(static_image_mode=False) as ex:
            for i, frame in enumerate(frames):
                if i >= n:
                    break
                window = crop_window(track.box_at(i))
                kp = ex(crop_frame(frame, window))
                if person_present(kp):
                    rows[i] = map_to_frame(kp, window, info.width, info.height)
                if progress is not None:
                    progress(i + 1, n)
    finally:
        frames.close()
    centres = np.array([(b.cx / info.width, b.cy / info.height) for b in track.boxes.values()])
    found = int(person_present(rows).sum())
    centre = tuple(float(c) for c in np.median(centres, axis=0))
    choice = PersonChoice(index, len(tracks), track.height * PERSON_IN_BOX, centre, found)
    return rows, choice
