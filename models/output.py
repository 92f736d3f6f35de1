"""The command line's take writer: one MP4 streamed as segments arrive, no segment lost on failure.

``TakeOutput`` streams every finished segment into the output MP4 (with the whole audio track
muxed in at the end, as ``media.VideoWriter`` does) and, first, saves the same segment as a small
complete MP4 with its own slice of the audio in a folder beside the output
(``<stem>_segments/segment_000.mp4``, ...). When the take completes the folder is removed; when
anything fails later -- the disk fills while writing, ffmpeg dies, the run is interrupted -- the
folder stays and the error names it, so every segment finished before the failure can still be
played or joined. A half-written streamed MP4 has no index and plays nothing, which is why the
segments are kept separately. Memory stays flat: a segment is written and forgotten.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from models.errors import UserError
from models.media import SAMPLE_RATE


def audio_slice(audio: np.ndarray | None, start: int, frames: int, fps: float) -> np.ndarray | None:
    """The 16 kHz samples that play under video frames ``start .. start + frames``."""
    if audio is None:
        return None
    a = int(round(start * SAMPLE_RATE / fps))
    b = int(round((start + frames) * SAMPLE_RATE / fps))
    return audio[a:b]


def segments_dir_for(out: str | os.PathLike) -> Path:
    p = Path(out)
    return p.with_name(p.stem + "_segments")


class TakeOutput:
    """``write(seg, frames, start)`` per finished segment; ``close()`` when the take is done.

    Use as a context manager around the generation: leaving it with an exception keeps the finished
    segments and logs where they are. A failure while writing raises ``UserError`` (exit status 2)
    whose message names the output, the reason and the folder holding the finished segments.
    """

    def __init__(self, path: str | os.PathLike, fps: float, audio: np.ndarray | None = None,
                 log: Callable[..., None] | None = None) -> None:
        self.path = Path(path)
        self.fps = float(fps)
        self.audio = audio if audio is not None and len(audio) else None
        self.log = log or (lambda *a: None)
        self.segments_dir = segments_dir_for(self.path)
        self.kept: list[Path] = []
        self.frames_written = 0
        self._writer = None
        self._failed = False

    # -- writing -----------------------------------------------------------------------------------

    def write(self, seg: int, frames: np.ndarray, start: int) -> None:
        from models import media

        try:
            self.segments_dir.mkdir(parents=True, exist_ok=True)
            part = self.segments_dir / f"segment_{seg:03d}.mp4"
            media.write_video(part, frames, self.fps, audio_slice(self.audio, start, len(frames), self.fps))
            self.kept.append(part)
            if self._writer is None:
                h, w = frames.shape[1:3]
                self._writer = media.VideoWriter(self.path, w, h, self.fps, self.audio)
            self._writer.write(frames)
            self.frames_written += len(frames)
        except (OSError, RuntimeError, ValueError) as e:
            self._fail(e)

    def close(self) -> Path:
        """Finish the MP4 (mux the audio); then the kept segments are no longer needed."""
        if self._writer is not None:
            try:
                self._writer.close()
            except (OSError, RuntimeError, ValueError) as e:
                self._writer = None
                self._fail(e)
            self._writer = None
        for part in self.kept:  # only what this take wrote: the folder may hold someone's files
            part.unlink(missing_ok=True)
        self.kept = []
        try:
            self.segments_dir.rmdir()
        except OSError:
            pass
        return self.path

    def _fail(self, e: BaseException) -> None:
        self._failed = True
        w, self._writer = self._writer, None
        if w is not None:
            try:
                w.close()
            except Exception:  # the stream is already broken; its error is the one reported
                pass
        reason = getattr(e, "strerror", None) or (str(e).strip().splitlines() or [type(e).__name__])[-1]
        raise UserError(f"{self.path}: writing failed ({reason}); {self.where()}") from None

    def where(self) -> str:
        if not self.kept:
            return "no segment had been finished"
        return f"the {len(self.kept)} finished segment(s) are kept in {self.segments_dir}"

    # -- context -----------------------------------------------------------------------------------

    def __enter__(self) -> TakeOutput:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
            return
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:  # failing already: the original error is the one to report
                pass
            self._writer = None
        if not self._failed and self.kept:
            self.log(f"stopped early: {self.where()}")
