"""Real videos -> the project's dataset format (``main.py prepare-data``).

Per video: poses with the project's extractor (``conditions.pose.extract_video_poses``, the same one
the app uses), frames resampled to the model fps (nearest source frame, keypoints taken from the
same frames), one static crop to the nearest aspect bucket (1:1, 3:4, 9:16, 16:9) centred on the
person and resized to the preset's area, 16 kHz mono audio (silence when the file has none), the
caption from ``NAME.txt`` beside ``NAME.mp4`` when present, and two quality flags:

* ``pose_ok``: a person is found in at least 90 % of the frames and the head and both shoulders
  are visible (confidence >= 0.5, inside the crop) in at least 80 %;
* ``lipsync_ok``: the clip has audible sound, the lips are tracked in at least 80 % of the frames,
  and the lips' opening follows the audio loudness: their correlation peaks within +-2 frames
  (80 ms) of zero lag with a value of at least ``SYNC_MIN_CORRELATION``. Without a learned sync
  model this catches dubbed, shifted and voice-over footage; the measurements go into the clip's
  ``meta`` so a stricter filter can be applied later.

Long videos are cut into clips of at most ``max_seconds``. A video that cannot be read (corrupt,
truncated, no person in it) is reported and skipped; the run goes on.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from models.config import resolution_for
from models.data.format import Clip, DatasetWriter, audio_samples
from models.data.toon import ASPECTS
from models.errors import UserError
from models.keypoints import INDEX
from models.media import DEFAULT_FPS, SAMPLE_RATE, MediaError, read_audio, read_video_frames

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg")
SYNC_MIN_CORRELATION = 0.2
SYNC_MAX_LAG = 2
DEFAULT_CAPTION = "A real video of a person."


@dataclass
class PrepareReport:
    clips: int = 0
    videos_ok: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)


def nearest_bucket(aspect: float) -> str:
    """The aspect bucket (``ASPECTS`` name) closest to ``aspect = width / height`` in log ratio."""
    return min(ASPECTS, key=lambda k: abs(np.log(ASPECTS[k] / aspect)))


def crop_box(kp: np.ndarray, width: int, height: int, aspect: float) -> tuple[int, int, int, int]:
    """Largest ``aspect`` box ``(x0, y0, w, h)`` in the frame, centred on the person's median position."""
    if width / height > aspect:
        ch, cw = height, int(round(height * aspect))
    else:
        cw, ch = width, int(round(width / aspect))
    vis = kp[..., 2] >= 0.5
    if vis.any():
        cx = float(np.median(kp[..., 0][vis])) * width
        cy = float(np.median(kp[..., 1][vis])) * height
    else:
        cx, cy = width / 2, height / 2
    x0 = int(np.clip(round(cx - cw / 2), 0, width - cw))
    y0 = int(np.clip(round(cy - ch / 2), 0, height - ch))
    return x0, y0, cw, ch


def crop_keypoints(kp: np.ndarray, box: tuple[int, int, int, int], width: int, height: int) -> np.ndarray:
    x0, y0, cw, ch = box
    out = kp.copy()
    out[..., 0] = (kp[..., 0] * width - x0) / cw
    out[..., 1] = (kp[..., 1] * height - y0) / ch
    outside = (out[..., 0] < 0) | (out[..., 0] > 1) | (out[..., 1] < 0) | (out[..., 1] > 1)
    out[..., 2] = np.where(outside, 0.0, out[..., 2])
    return out.astype(np.float32)


def lip_opening(kp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inner-lip opening per frame relative to the mouth's width, and where the lips are tracked."""
    up, lo = kp[:, INDEX["face_lip_upper_inner"]], kp[:, INDEX["face_lip_lower_inner"]]
    cl, cr = kp[:, INDEX["face_lip_corner_left"]], kp[:, INDEX["face_lip_corner_right"]]
    width = np.linalg.norm(cl[:, :2] - cr[:, :2], axis=-1)
    opening = np.linalg.norm(up[:, :2] - lo[:, :2], axis=-1) / np.maximum(width, 1e-4)
    tracked = (up[:, 2] > 0) & (lo[:, 2] > 0) & (cl[:, 2] > 0) & (cr[:, 2] > 0)
    return opening, tracked


def sync_measure(opening: np.ndarray, audio: np.ndarray, fps: float, sample_rate: int = SAMPLE_RATE,
                 max_lag: int = 8) -> tuple[int, float]:
    """Lag (frames, + = audio late) and value of the peak correlation between lip opening and
    audio loudness."""
    n = len(opening)
    hop = sample_rate / fps
    energy = np.array([np.sqrt(np.mean(audio[int(i * hop): int((i + 1) * hop)].astype(np.float64) ** 2) + 1e-12)
                       for i in range(n)])
    loud = np.log(energy + 1e-4)
    a = (opening - opening.mean()) / (opening.std() + 1e-8)
    b = (loud - loud.mean()) / (loud.std() + 1e-8)
    best = (0, -1.0)
    for lag in range(-max_lag, max_lag + 1):
        if lag >= 0:
            x, y = a[: n - lag], b[lag:]
        else:
            x, y = a[-lag:], b[: n + lag]
        if len(x) < 10:
            continue
        c = float(np.mean(x * y))
        if c > best[1]:
            best = (lag, c)
    return best


def quality_flags(kp: np.ndarray, missing: np.ndarray, audio: np.ndarray | None, fps: float) -> tuple[bool, bool, dict]:
    core = kp[:, [INDEX["nose"], INDEX["left_shoulder"], INDEX["right_shoulder"]], 2] >= 0.5
    present = float((~missing).mean()) if len(missing) else 0.0
    # Gap-filled frames (no person found) borrow their neighbours' points: they never count as seen.
    core_ratio = float((core.all(-1) & ~missing).mean())
    pose_ok = present >= 0.9 and core_ratio >= 0.8
    opening, tracked = lip_opening(kp)
    tracked = tracked & ~missing
    lips_ratio = float(tracked.mean())
    info = {"person_ratio": round(present, 3), "core_visible_ratio": round(core_ratio, 3),
            "lips_tracked_ratio": round(lips_ratio, 3)}
    lipsync_ok = False
    if audio is not None and float(np.abs(audio).max(initial=0.0)) > 1e-3 and lips_ratio >= 0.8:
        lag, corr = sync_measure(opening, audio, fps)
        info.update({"sync_lag_frames": lag, "sync_correlation": round(corr, 3)})
        lipsync_ok = abs(lag) <= SYNC_MAX_LAG and corr >= SYNC_MIN_CORRELATION
    else:
        info["sync_lag_frames"] = None
    return pose_ok, lipsync_ok, info


def _caption_for(path: Path) -> str:
    side = path.with_suffix(".txt")
    if side.exists():
        text = side.read_text(encoding="utf-8", errors="replace").strip()
        if text:
            return " ".join(text.split())
    return DEFAULT_CAPTION


def prepare_video(path: str | os.PathLike, area: int, fps: float = DEFAULT_FPS, max_seconds: float = 20.0,
                  sample_rate: int = SAMPLE_RATE) -> Iterator[Clip]:
    """One real video -> clips in the dataset format, yielded as each is complete (memory stays
    bounded by one clip for long videos). Raises MediaError / UserError when unusable."""
    from models.conditions.pose import extract_video_poses

    p = Path(path)
    track = extract_video_poses(p)  # reads the whole file: a damaged video fails here, before any clip
    info, frames_it = read_video_frames(p)
    src_fps = info.fps or track.fps
    # Resample: target frame k shows the source frame nearest to time k / fps.
    n_src = track.num_frames
    n_dst = max(1, int(np.floor(n_src / src_fps * fps + 1e-6)))
    src_idx = np.minimum(np.round(np.arange(n_dst) * src_fps / fps).astype(np.int64), n_src - 1)
    bucket = nearest_bucket(info.width / info.height)
    aspect = ASPECTS[bucket]
    out_h, out_w = resolution_for(aspect, area)
    kp_src = track.keypoints[src_idx]
    box = crop_box(kp_src, info.width, info.height, aspect)
    x0, y0, cw, ch = box
    kp = crop_keypoints(kp_src, box, info.width, info.height)
    missing = track.missing[src_idx]
    try:
        audio = read_audio(p, sample_rate, allow_silent=True)
        has_audio = True
    except MediaError as e:
        if "no audio track" not in str(e):
            raise
        audio, has_audio = np.zeros(0, np.float32), False
    total = audio_samples(n_dst, fps, sample_rate)
    full_audio = np.zeros(total, np.float32)
    full_audio[: min(total, len(audio))] = audio[:total]
    caption = _caption_for(p)
    per = max(1, int(round(max_seconds * fps)))
    ranges = []
    for start in range(0, n_dst, per):
        end = min(n_dst, start + per)
        if end - start < max(5, int(fps)) and start > 0:
            break  # a tail shorter than a second is dropped
        ranges.append((start, end))

    def make_clip(c: int, start: int, end: int, frames: np.ndarray) -> Clip:
        a0, a1 = audio_samples(start, fps, sample_rate), audio_samples(end, fps, sample_rate)
        seg_audio = full_audio[a0:a1]
        pose_ok, lipsync_ok, qinfo = quality_flags(kp[start:end], missing[start:end],
                                                   seg_audio if has_audio else None, fps)
        meta = {"source_file": p.name, "source_fps": src_fps, "source_size": [info.width, info.height],
                "crop": list(box), "bucket": bucket, "start_s": start / fps, "has_audio": has_audio,
                "quality": qinfo}
        return Clip(f"real-{p.stem}-{c:03d}", frames, seg_audio, kp[start:end], caption, fps,
                    lipsync_ok, pose_ok, None, "real", meta, sample_rate)

    # Stream the frames once; each output frame k takes source frame src_idx[k].
    c = 0
    buf = np.zeros((ranges[0][1] - ranges[0][0], out_h, out_w, 3), np.uint8)
    k = 0  # next output frame
    last = None
    for i, frame in enumerate(frames_it):
        while k < n_dst and src_idx[k] == i:
            crop = frame[y0: y0 + ch, x0: x0 + cw]
            last = cv2.resize(crop, (out_w, out_h), interpolation=cv2.INTER_AREA)
            start, end = ranges[c]
            buf[k - start] = last
            k += 1
            if k == end:
                yield make_clip(c, start, end, buf)
                c += 1
                if c == len(ranges):
                    break
                buf = np.zeros((ranges[c][1] - ranges[c][0], out_h, out_w, 3), np.uint8)
        if c == len(ranges) or k >= n_dst:
            frames_it.close()
            break
    if c < len(ranges):
        # The decoder gave fewer frames than the pose pass: repeat the last one to the end.
        if last is None:
            raise MediaError(f"{p}: no frames could be decoded")
        while c < len(ranges):
            start, end = ranges[c]
            buf[k - start:] = last
            yield make_clip(c, start, end, buf)
            c += 1
            if c < len(ranges):
                k = ranges[c][0]
                buf = np.zeros((ranges[c][1] - ranges[c][0], out_h, out_w, 3), np.uint8)


def list_videos(folder: str | os.PathLike) -> list[Path]:
    d = Path(folder)
    if not d.is_dir():
        raise UserError(f"{d}: not a folder")
    return sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)


def prepare_videos(
    video_dir: str | os.PathLike, out: str | os.PathLike, area: int, fps: float = DEFAULT_FPS,
    max_seconds: float = 20.0, progress: Callable[[int, int], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> PrepareReport:
    """Every video in ``video_dir`` -> one dataset in ``out``. Unusable videos are skipped and listed."""
    videos = list_videos(video_dir)
    if not videos:
        raise UserError(f"{video_dir}: no video files ({', '.join(VIDEO_EXTENSIONS)})")
    report = PrepareReport()
    with DatasetWriter(out, fps, meta={"kind": "real", "area": area}) as w:
        for i, v in enumerate(videos):
            kept = 0
            try:
                for clip in prepare_video(v, area, fps, max_seconds):
                    w.add(clip)
                    kept += 1
            except (MediaError, UserError, ValueError, OSError, RuntimeError) as e:
                msg = str(e) + (f" ({kept} clips before the error were kept)" if kept else "")
                report.skipped.append((str(v), msg))
                if log:
                    log(f"skipping {v}: {msg}")
            else:
                report.videos_ok += 1
            report.clips += kept
            if progress:
                progress(i + 1, len(videos))
    return report
