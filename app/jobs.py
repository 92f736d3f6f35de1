"""The app's heavy work, free of Qt: model choice and loading, one generation run, export.

Following the Orange3 pattern, ``run_job(engine, job, state)`` is a plain function: the Qt worker
(``app.worker``) calls it on its thread and turns the ``JobState`` callbacks into signals, and tests
call it directly. Every finished segment is written to the run's folder as soon as it is decoded
(raw frames ``.npy`` for lossless export plus an ``.mp4`` with its audio), so a crash or a failure
later in the run loses nothing already generated.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.errors import UserError
from models.media import SAMPLE_RATE

UNTRAINED_PRESETS = {
    "toon-s": "untrained toon-s (random weights, pipeline check)",
    "tiny": "tiny (random weights, test size, seconds per run)",
}
DTYPES = ("float32", "bfloat16", "float16")


# ------------------------------------------------------------------------------------------------
# Models


@dataclass(frozen=True)
class ModelChoice:
    """A trained model folder (``path``) or an untrained preset (``preset``, random weights)."""

    label: str
    path: str = ""
    preset: str = ""
    bundled: bool = False
    description: str = ""
    notice: str = ""  # shown under the model picker (e.g. a placeholder model says what it can't do)

    @property
    def key(self) -> str:
        return f"path:{self.path}" if self.path else f"preset:{self.preset}"

    @property
    def trained(self) -> bool:
        return bool(self.path)


def model_choices(extra_dirs: list[str] = ()) -> list[ModelChoice]:
    """Trained models (bundled, then the user's folders), then the untrained fallbacks."""
    from models.checkpoint import list_models

    out = []
    try:
        entries = list_models([d for d in extra_dirs if d])
    except OSError:
        entries = []
    for e in entries:
        where = "bundled" if e.bundled else str(e.path.parent)
        out.append(ModelChoice(f"{e.name} ({where})", path=str(e.path), bundled=e.bundled, description=e.description,
                               notice=e.notice))
    for preset, label in UNTRAINED_PRESETS.items():
        out.append(ModelChoice(label, preset=preset, description="untrained: the output is noise-like"))
    return out


def available_devices() -> list[str]:
    import torch

    devs = ["cpu"]
    if torch.cuda.is_available():
        devs += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devs.append("mps")
    return devs


def torch_dtype(name: str):
    import torch

    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]
    except KeyError:
        raise UserError(f"precision must be one of {DTYPES}, got '{name}'") from None


def load_model(choice: ModelChoice, device: str, dtype: str):
    """Load a model for ``choice`` on ``device`` in ``dtype``; UserError with an actionable message."""
    import torch

    from models.checkpoint import load_model as load_folder
    from models.checkpoint import random_model

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("CUDA was chosen but no CUDA GPU is available to PyTorch; choose the CPU device")
    if dtype == "float16" and device == "cpu":
        raise UserError("float16 is not supported on the CPU; choose float32 or bfloat16")
    td = torch_dtype(dtype)
    if choice.path:
        model = load_folder(choice.path, device=device, dtype=td)
    else:
        model = random_model(choice.preset, seed=0, device=device).to(td)
    return model


# ------------------------------------------------------------------------------------------------
# Engines: the same inputs, callbacks and writer for every engine (DESIGN.md section 9).


class ModelEngine:
    """The OmniHuman model engine. Keeps one model loaded; reloads only when model/device/dtype change."""

    name = "OmniHuman model"

    def __init__(self, loader: Callable = load_model) -> None:
        self._loader = loader
        self._key: tuple | None = None
        self.model = None

    def prepare(self, job: GenerationJob, status: Callable[[str], None] | None = None) -> bool:
        """Load the model the job asks for unless it is loaded already; True when it (re)loaded."""
        key = (job.model.key, job.device, job.dtype)
        if self._key == key and self.model is not None:
            return False
        if status:
            status(f"Loading {job.model.label} on {job.device} ({job.dtype})...")
        self.model = None  # free the old one first: two big models may not fit together
        self._key = None
        self.model = self._loader(job.model, job.device, job.dtype)
        self._key = key
        return True

    def generate(self, job: GenerationJob, callbacks):
        from models.pipeline import GenerationInputs, generate

        inputs = GenerationInputs(image=job.image, audio=job.audio, pose=job.pose, text=job.text)
        return generate(self.model, inputs, job.settings, callbacks, keep_frames=False)

    def release(self) -> None:
        self.model = None
        self._key = None


class InstantEngineRunner:
    """The instant engine (issue 7): warps the reference itself, in real time on a CPU. Same inputs,
    callbacks and writer as the model engine; the diffusion settings do not apply."""

    name = "Instant (photo warp)"

    def __init__(self) -> None:
        self._key = None
        self.engine = None
        self.model = None  # no network to load

    def prepare(self, job: GenerationJob, status: Callable[[str], None] | None = None) -> bool:
        from models.instant.engine import InstantEngine, output_size

        key = (hash(job.image.tobytes()), job.image.shape, job.settings.area)
        if key == self._key and self.engine is not None:
            return False
        if status:
            status("Fitting the face and body of the picture...")
        h0, w0 = job.image.shape[:2]
        self.engine = InstantEngine(job.image, output_size(h0, w0, job.settings.area))
        self._key = key
        return True

    def generate(self, job: GenerationJob, callbacks):
        from models.instant.engine import generate_instant
        from models.pipeline import GenerationInputs

        inputs = GenerationInputs(image=job.image, audio=job.audio, pose=job.pose, text=job.text)
        return generate_instant(inputs, job.settings, callbacks, keep_frames=False, engine=self.engine)

    def release(self) -> None:
        self.engine = None
        self._key = None


def _engines() -> dict[str, Callable[[], object]]:
    out: dict[str, Callable[[], object]] = {ModelEngine.name: ModelEngine}
    try:
        import models.instant.engine  # noqa: F401  (present once issue 7 landed)
    except ImportError:
        return out
    out[InstantEngineRunner.name] = InstantEngineRunner
    return out


ENGINES: dict[str, Callable[[], object]] = _engines()


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
class GenerationJob:
    image: np.ndarray  # (H, W, 3) uint8
    audio: np.ndarray | None  # mono float32 at 16 kHz, already trimmed
    pose: np.ndarray | None  # (T, K, 3) in the reference's frame, or None
    text: str
    settings: object  # models.pipeline.GenerationSettings
    model: ModelChoice
    device: str = "cpu"
    dtype: str = "float32"
    engine: str = ModelEngine.name
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


def audio_slice(audio: np.ndarray | None, start: int, frames: int, fps: float) -> np.ndarray | None:
    """The 16 kHz samples that play under video frames ``start .. start + frames``."""
    if audio is None:
        return None
    a = int(round(start * SAMPLE_RATE / fps))
    b = int(round((start + frames) * SAMPLE_RATE / fps))
    return audio[a:b]


def segment_paths(run_dir: Path) -> list[Path]:
    return sorted(run_dir.glob("segment_*.npy"))


def load_run_frames(run_dir: Path) -> np.ndarray:
    """All finished segments of a run folder as ``(T, H, W, 3)`` uint8 (what survived a crash too)."""
    parts = [np.load(p) for p in segment_paths(run_dir)]
    if not parts:
        raise UserError(f"{run_dir}: no finished segments in this run")
    return np.concatenate(parts)


def new_run_dir(root: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    root.mkdir(parents=True, exist_ok=True)
    for i in range(1000):
        d = root / (f"run-{stamp}" + (f"-{i}" if i else ""))
        if not d.exists():
            d.mkdir()
            return d
    raise UserError(f"{root}: cannot create a run folder")


def cpu_threads(requested: int) -> int:
    """Threads for CPU generation: ``requested``, or all cores but one (kept for the UI thread; on a
    busy machine more threads than free cores makes each step several times slower, not faster)."""
    import os

    return requested if requested > 0 else max(1, (os.cpu_count() or 2) - 1)


def run_job(engine, job: GenerationJob, state: JobState) -> JobOutcome:
    """Load (if needed) and run one generation; write each finished segment to ``job.run_dir``.

    Raises UserError / MediaError / CheckpointError / RuntimeError (out of memory) to the caller,
    which shows the message; the segments written before the failure stay on disk.
    """
    from models.media import write_video
    from models.pipeline import Callbacks
    from models.validation import APP_NAMES, validate_image, validate_settings

    validate_settings(job.settings, APP_NAMES)  # the CLI's checks, before the model loads
    validate_image(job.image)
    if job.run_dir is None:
        raise UserError("no output folder for this run")
    run_dir = Path(job.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
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
    fps = job.settings.fps or (engine.model.config.cond.fps if engine.model is not None else 25.0)
    eta = Eta()
    meta = {"settings": job.ui_settings, "model": job.model.label, "device": job.device, "dtype": job.dtype,
            "engine": job.engine, "text": job.text, "segments": []}

    def on_step(seg: int, n_seg: int, step: int, steps: int) -> None:
        if governor is not None:
            governor.tick()
        if state.on_step:
            state.on_step(seg, n_seg, step, steps, eta.update(seg, n_seg, step, steps))

    def on_segment(seg: int, frames: np.ndarray, start: int) -> None:
        np.save(run_dir / f"segment_{seg:03d}.npy", frames)
        audio = audio_slice(job.audio, start, len(frames), fps)
        write_video(run_dir / f"segment_{seg:03d}.mp4", frames, fps, audio)
        meta["segments"].append({"index": seg, "start_frame": start, "frames": len(frames)})
        (run_dir / "run.json").write_text(json.dumps(meta, indent=1))
        if state.on_segment:
            state.on_segment(seg, frames, start, audio)

    cb = Callbacks(on_step=on_step, on_segment=on_segment, should_cancel=lambda: state.cancelled)
    (run_dir / "run.json").write_text(json.dumps(meta, indent=1))
    if job.device == "cpu":
        from models.threads import PreviewShare

        with PreviewShare():  # the live preview's OpenCV stays on its one core
            result = engine.generate(job, cb)
    else:
        result = engine.generate(job, cb)
    meta.update(seed=result.seed, fps=result.fps, width=result.width, height=result.height,
                num_frames=result.num_frames, cancelled=result.cancelled, seconds=result.seconds)
    (run_dir / "run.json").write_text(json.dumps(meta, indent=1))
    video = None
    if result.segments_done:
        frames = load_run_frames(run_dir)
        video = write_video(run_dir / "take.mp4", frames, result.fps, audio_slice(job.audio, 0, len(frames), fps))
    return JobOutcome(run_dir, video, result.seed, result.fps, result.width, result.height,
                      result.num_frames, result.segments_done, result.num_segments, result.cancelled, result.seconds)


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
               png_frames: bool = False, settings: dict | None = None) -> ExportResult:
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
    res.video = write_video(out_path, frames, fps, audio_slice(audio, 0, len(frames), fps),
                            quality=EXPORT_QUALITY[quality])
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

