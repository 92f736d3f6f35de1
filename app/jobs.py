"""The app's runs, free of Qt: one generation job, its progress state, and its run folder.

Following the Orange3 pattern, ``run_job(engine, job, state)`` is a plain function: the Qt worker
(``app.worker``) calls it on its thread and turns the ``JobState`` callbacks into signals, and tests
call it directly. The engines, their registry and the run writer are the model library's
(``models.engines``); this module adds what only the app has: the UI's settings saved beside each
run, the ETA, the CPU thread budget and the aspect-ratio crop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.engines.base import EngineJob
from models.engines.registry import MODEL_ENGINE
from models.errors import UserError

# ------------------------------------------------------------------------------------------------
# Aspect ratio

ASPECTS: dict[str, float | None] = {"from picture": None, "1:1": 1.0, "3:4": 3 / 4, "9:16": 9 / 16,
                                    "4:3": 4 / 3, "16:9": 16 / 9}


def crop_to_aspect(image: np.ndarray, pose: np.ndarray | None, aspect: float | None):
    """Centre-crop the reference to ``aspect`` (width / height) and move the pose into the crop.

    Returns ``(image, pose)``; keypoints are ``(T, K, 3)`` normalised to the image, so they are
    rescaled to the cropped frame (points that fall outside keep their coordinates, clipped later).
    """
    if aspect is None:
        return image, pose
    h, w = image.shape[:2]
    if abs(w / h - aspect) < 1e-3:
        return image, pose
    if w / h > aspect:  # too wide: crop the sides
        cw, ch = max(1, round(h * aspect)), h
    else:
        cw, ch = w, max(1, round(w / aspect))
    x0, y0 = (w - cw) // 2, (h - ch) // 2
    out = np.ascontiguousarray(image[y0:y0 + ch, x0:x0 + cw])
    if pose is not None:
        pose = pose.copy()
        pose[..., 0] = (pose[..., 0] * w - x0) / cw
        pose[..., 1] = (pose[..., 1] * h - y0) / ch
    return out, pose


# ------------------------------------------------------------------------------------------------
# One run


@dataclass
class GenerationJob(EngineJob):
    """An engine job plus what the app adds: which engine, CPU threads, the run folder, the UI's settings."""

    engine: str = MODEL_ENGINE
    cpu_threads: int = 0  # torch intra-op threads on the CPU; 0: all cores but one
    run_dir: Path | None = None  # where segments are written while generating
    ui_settings: dict = field(default_factory=dict)  # the app's settings, saved beside the run


@dataclass
class JobOutcome:
    run_dir: Path
    video_path: Path | None
    seed: int
    fps: float
    width: int
    height: int
    num_frames: int
    segments_done: int
    num_segments: int
    cancelled: bool
    seconds: float
    error: str = ""


class JobState:
    """Cancel flag and progress sinks for one run (callbacks are called on the worker thread)."""

    def __init__(self) -> None:
        self.cancel_event = threading.Event()
        self.on_step: Callable[[int, int, int, int, float], None] | None = None  # seg, n, step, steps, eta
        self.on_segment: Callable[[int, np.ndarray, int, np.ndarray | None], None] | None = None
        self.on_status: Callable[[str], None] | None = None

    def cancel(self) -> None:
        self.cancel_event.set()

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()


class Eta:
    """Seconds left from the measured time per sampling step (decode time folded in per segment)."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.last = self.t0
        self.per_step: float | None = None

    def update(self, seg: int, n_seg: int, step: int, steps: int) -> float:
        now = time.perf_counter()
        done = seg * steps + step
        if done > 0:
            self.per_step = (now - self.t0) / done
        self.last = now
        left = n_seg * steps - done
        return float("nan") if self.per_step is None else left * self.per_step


def cpu_threads(requested: int) -> int:
    """Threads for CPU generation: ``requested``, or all cores but one (kept for the UI thread; on a
    busy machine more threads than free cores makes each step several times slower, not faster)."""
    import os

    return requested if requested > 0 else max(1, (os.cpu_count() or 2) - 1)


def run_job(engine, job: GenerationJob, state: JobState) -> JobOutcome:
    """Load (if needed) and run one generation; the run writer keeps each finished segment in
    ``job.run_dir`` before the UI hears of it.

    Raises UserError / MediaError / CheckpointError / RuntimeError (out of memory) to the caller,
    which shows the message; the segments written before the failure stay on disk.
    """
    from models.engines import Callbacks
    from models.engines.writer import RunWriter
    from models.validation import APP_NAMES, validate_image, validate_settings

    validate_settings(job.settings, APP_NAMES)  # the CLI's checks, before the model loads
    validate_image(job.image)
    if job.run_dir is None:
        raise UserError("no output folder for this run")
    run_dir = Path(job.run_dir)
    governor = None
    if job.device == "cpu":
        import torch

        if job.cpu_threads > 0:
            torch.set_num_threads(job.cpu_threads)
        else:  # auto: the preview and the UI keep a core, the generator takes the free rest
            from models.threads import ThreadGovernor

            governor = ThreadGovernor(reserve=1)
    engine.prepare(job, state.on_status)
    if governor is not None:
        governor.apply()
    if state.on_status:
        state.on_status("Generating...")
    fps = job.settings.fps or engine.fps
    eta = Eta()
    meta = {"settings": job.ui_settings, "model": job.model.label if job.model else "", "device": job.device,
            "dtype": job.dtype, "engine": job.engine, "text": job.text}
    writer = RunWriter(fps, job.audio, run_dir=run_dir, meta=meta, sample_rate=engine.sample_rate)

    def on_step(seg: int, n_seg: int, step: int, steps: int) -> None:
        if governor is not None:
            governor.tick()
        if state.on_step:
            state.on_step(seg, n_seg, step, steps, eta.update(seg, n_seg, step, steps))

    def on_segment(seg: int, frames: np.ndarray, start: int) -> None:
        audio = writer.on_segment(seg, frames, start)
        if state.on_segment:
            state.on_segment(seg, frames, start, audio)

    cb = Callbacks(on_step=on_step, on_segment=on_segment, should_cancel=lambda: state.cancelled)
    if job.device == "cpu":
        from models.threads import PreviewShare

        with PreviewShare():  # the live preview's OpenCV stays on its one core
            result = engine.generate(job, cb)
    else:
        result = engine.generate(job, cb)
    video = writer.finish(result)
    return JobOutcome(run_dir, video, result.seed, result.fps, result.width, result.height,
                      result.num_frames, result.segments_done, result.num_segments, result.cancelled, result.seconds)
