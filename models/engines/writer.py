"""The run writer (Qt-free): what every engine's frames become on disk, for the app, the CLI and the eval.

A run streams segments; ``RunWriter`` keeps each as soon as it arrives, so a crash or a failure
later in the run loses nothing already generated:

* with a run folder: ``segment_NNN.npy`` (raw frames, for lossless export), ``segment_NNN.mp4``
  (with the audio under it) and ``run.json`` (settings, then the result), and at the end
  ``take.mp4`` made of every finished segment;
* with a ``video`` path: one MP4 with the audio, written frame by frame (bounded memory), and
  first each segment as a small complete MP4 with its own slice of the audio in a folder beside it
  (``<stem>_segments/segment_000.mp4``, ...). A half-written streamed MP4 has no index and plays
  nothing, so when the take completes only the segment files this run wrote are removed (and the
  folder, if that leaves it empty); when it fails they stay.

A failure while writing -- the disk fills, ffmpeg dies -- raises ``UserError`` (exit status 2 on
the command line, a message in the app) naming the output, the reason and where the finished
segments are kept (``where()`` says the same after any other failure).

``export_run`` turns a run folder into a user's MP4 (optionally PNG frames and the settings).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.errors import UserError
from models.media import SAMPLE_RATE


def audio_slice(audio: np.ndarray | None, start: int, frames: int, fps: float,
                sample_rate: int = SAMPLE_RATE) -> np.ndarray | None:
    """The samples that play under video frames ``start .. start + frames``."""
    if audio is None:
        return None
    a = int(round(start * sample_rate / fps))
    b = int(round((start + frames) * sample_rate / fps))
    return audio[a:b]


def segment_paths(run_dir: Path) -> list[Path]:
    return sorted(Path(run_dir).glob("segment_*.npy"))


def load_run_frames(run_dir: Path) -> np.ndarray:
    """All finished segments of a run folder as ``(T, H, W, 3)`` uint8 (what survived a crash too)."""
    parts = [np.load(p) for p in segment_paths(run_dir)]
    if not parts:
        raise UserError(f"{run_dir}: no finished segments in this run")
    return np.concatenate(parts)


def new_run_dir(root: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(1000):
        d = root / (f"run-{stamp}" + (f"-{i}" if i else ""))
        if not d.exists():
            d.mkdir()
            return d
    raise UserError(f"{root}: cannot create a run folder")


def segments_dir_for(video: str | Path) -> Path:
    """Where a ``video`` run keeps its finished segments until the take is complete."""
    p = Path(video)
    return p.with_name(p.stem + "_segments")


WRITE_ERRORS = (OSError, RuntimeError, ValueError)  # what a full disk or a dying ffmpeg raises


class RunWriter:
    """Keeps a run's segments as they arrive (see the module docstring).

    ``audio`` is the whole run's track; each segment gets the slice under its frames. ``meta`` goes
    into ``run.json`` (with ``segments`` and, after ``finish``, the result). Use ``on_segment`` as
    (or inside) ``Callbacks.on_segment``; call ``finish(result)`` at the end, or ``close()`` on a
    failure (the streamed MP4 then holds the frames written so far, and the finished segments stay
    where ``where()`` says).
    """

    def __init__(self, fps: float, audio: np.ndarray | None = None, run_dir: Path | None = None,
                 video: Path | None = None, meta: dict | None = None, sample_rate: int = SAMPLE_RATE) -> None:
        self.fps = float(fps)
        self.audio = audio
        self.sample_rate = int(sample_rate)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.video = Path(video) if video is not None else None
        # A run folder keeps its segments anyway; a lone video keeps them beside it until it is complete.
        self.segments_dir = segments_dir_for(self.video) if self.video is not None and self.run_dir is None \
            else None
        self.kept: list[Path] = []  # segment MP4s in ``segments_dir`` written by this run
        self.failed = False
        self.meta = {**(meta or {}), "segments": []}
        self._stream = None  # media.VideoWriter of ``video``
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._write_meta()

    def _write_meta(self) -> None:
        if self.run_dir is not None:
            (self.run_dir / "run.json").write_text(json.dumps(self.meta, indent=1, default=str))

    def on_segment(self, seg: int, frames: np.ndarray, start: int) -> np.ndarray | None:
        """Keep one finished segment; returns the audio under it."""
        from models.media import VideoWriter, write_video

        audio = audio_slice(self.audio, start, len(frames), self.fps, self.sample_rate)
        try:
            if self.run_dir is not None:
                np.save(self.run_dir / f"segment_{seg:03d}.npy", frames)
                write_video(self.run_dir / f"segment_{seg:03d}.mp4", frames, self.fps, audio, self.sample_rate)
                self.meta["segments"].append({"index": seg, "start_frame": start, "frames": len(frames)})
                self._write_meta()
            if self.segments_dir is not None:
                self.segments_dir.mkdir(parents=True, exist_ok=True)
                part = self.segments_dir / f"segment_{seg:03d}.mp4"
                write_video(part, frames, self.fps, audio, self.sample_rate)
                self.kept.append(part)
            if self.video is not None:
                if self._stream is None:
                    h, w = frames.shape[1:3]
                    self._stream = VideoWriter(self.video, w, h, self.fps, self.audio, self.sample_rate)
                self._stream.write(frames)
        except WRITE_ERRORS as e:
            self._fail(e)
        return audio

    def finish(self, result) -> Path | None:
        """Record the result; the finished video (``video``, or the run folder's ``take.mp4``) or None."""
        from models.media import write_video

        self.meta.update(seed=result.seed, fps=result.fps, width=result.width, height=result.height,
                         num_frames=result.num_frames, cancelled=result.cancelled, seconds=result.seconds,
                         mode=result.mode)
        out = None
        try:
            self._write_meta()
            if self._stream is not None:
                stream, self._stream = self._stream, None
                out = stream.close()
            elif self.run_dir is not None and result.segments_done:
                frames = load_run_frames(self.run_dir)
                out = write_video(self.run_dir / "take.mp4", frames, result.fps,
                                  audio_slice(self.audio, 0, len(frames), self.fps, self.sample_rate),
                                  self.sample_rate)
        except WRITE_ERRORS as e:
            self._fail(e)
        self._remove_kept()
        return out

    def close(self) -> Path | None:
        """After a failure: end the streamed MP4 (what it holds so far); the finished segments stay."""
        stream, self._stream = self._stream, None
        if stream is None:
            return None
        try:
            return stream.close()
        except Exception:  # failing already: the original error is the one to report
            return None

    def where(self) -> str:
        """Where the finished segments are (for a message after a failure)."""
        if self.segments_dir is not None:
            n, where = len(self.kept), self.segments_dir
        elif self.run_dir is not None:
            n, where = len(self.meta["segments"]), self.run_dir
        else:
            return "the finished segments were not kept"
        if not n:
            return "no segment had been finished"
        return f"the {n} finished segment(s) are kept in {where}"

    def _remove_kept(self) -> None:
        for part in self.kept:  # only what this run wrote: the folder may hold someone's files
            part.unlink(missing_ok=True)
        self.kept = []
        if self.segments_dir is not None:
            try:
                self.segments_dir.rmdir()
            except OSError:
                pass

    def _fail(self, e: BaseException) -> None:
        self.failed = True
        self.close()
        target = self.video or self.run_dir
        reason = getattr(e, "strerror", None) or (str(e).strip().splitlines() or [type(e).__name__])[-1]
        raise UserError(f"{target}: writing failed ({reason}); {self.where()}") from None


# ------------------------------------------------------------------------------------------------
# Export

EXPORT_QUALITY = {"high": 9, "medium": 7, "small file": 4}


@dataclass
class ExportResult:
    video: Path | None = None
    frames_dir: Path | None = None
    settings_json: Path | None = None
    files: list[Path] = field(default_factory=list)


def export_run(run_dir: Path, out_path: Path, audio: np.ndarray | None, fps: float, quality: str = "high",
               png_frames: bool = False, settings: dict | None = None,
               sample_rate: int = SAMPLE_RATE) -> ExportResult:
    """MP4 with audio at ``out_path``, optionally PNG frames in ``<name>_frames/``, and the settings
    as ``<name>.json`` beside it."""
    from models.media import write_image, write_video

    if quality not in EXPORT_QUALITY:
        raise UserError(f"quality must be one of {list(EXPORT_QUALITY)}")
    frames = load_run_frames(Path(run_dir))
    out_path = Path(out_path)
    if out_path.suffix.lower() != ".mp4":
        out_path = out_path.with_suffix(".mp4")
    res = ExportResult()
    res.video = write_video(out_path, frames, fps, audio_slice(audio, 0, len(frames), fps, sample_rate),
                            sample_rate, quality=EXPORT_QUALITY[quality])
    res.files.append(res.video)
    if png_frames:
        d = out_path.with_name(out_path.stem + "_frames")
        d.mkdir(parents=True, exist_ok=True)
        for i, f in enumerate(frames):
            write_image(d / f"frame_{i:05d}.png", f)
        res.frames_dir = d
        res.files.append(d)
    meta = {"video": out_path.name, "frames": len(frames), "fps": fps, **(settings or {})}
    res.settings_json = out_path.with_suffix(".json")
    res.settings_json.write_text(json.dumps(meta, indent=1, default=str))
    res.files.append(res.settings_json)
    return res
