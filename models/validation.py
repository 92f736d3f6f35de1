"""One check of everything a generation run is given, before any work starts.

The CLI (``main.py generate``) and the app (``app.jobs.run_job``) call the same functions, so a bad
number gives the same one-line ``UserError`` wherever it came from: the message names the setting
(the CLI's flag, or the app's control) and the range it must lie in. The checks are pure and import
neither torch nor Qt, so they run before the model loads.

- ``validate_settings(settings, names)``: every field of ``models.engines.GenerationSettings`` that is set
  (``None`` means "the preset's default", checked again by the pipeline once it knows the preset).
- ``validate_seconds(seconds, option)``: a duration such as ``--max-seconds``.
- ``validate_image(image, what)``: a reference picture big enough to animate (``MIN_IMAGE_SIDE``).
- ``check_output_path(path, option)``: the output file can be written: its folder exists (or is
  created) and accepts a new file, and the path is not a folder.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.errors import UserError

# Below this many pixels on a side a picture holds no face or body to animate (the smallest preset
# works at 64 px; a 1x1 "image" used to be animated as a flat colour).
MIN_IMAGE_SIDE = 32
MAX_STEPS = 1000
FPS_RANGE = (1.0, 120.0)
MAX_SEGMENT_FRAMES = 1 + 4 * 64
MAX_AREA = 4096 * 4096
MIN_AREA = 16 * 16
ANNEAL_SCHEDULES = ("none", "linear", "cosine")  # models.flow.ANNEAL_SCHEDULES (a test keeps them equal)
MODES = ("auto", "audio", "pose", "combined")  # models.engines.MODES
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv")


@dataclass(frozen=True)
class SettingNames:
    """How each setting is called where the user set it (CLI flags, or the app's controls)."""

    steps: str = "--steps"
    cfg_text: str = "--cfg-text"
    cfg_audio: str = "--cfg-audio"
    anneal: str = "--anneal"
    anneal_strength: str = "--anneal-strength"
    seed: str = "--seed"
    segment_frames: str = "--segment-frames"
    motion_frames: str = "motion frames"
    motion_noise: str = "--motion-noise"
    audio_focus: str = "--audio-focus"
    motion_anchor: str = "--motion-anchor"
    area: str = "--area"
    fps: str = "--fps"
    mode: str = "--mode"
    shift: str = "shift"
    max_frames: str = "--max-seconds"


CLI_NAMES = SettingNames()
APP_NAMES = SettingNames(  # the labels of app/controls.py
    steps="Steps", cfg_text="Text CFG", cfg_audio="Audio CFG", anneal="Annealing",
    anneal_strength="Annealing strength", motion_noise="Motion noise", audio_focus="Focus",
    motion_anchor="Anchor",
    seed="Seed", segment_frames="Segment",
    area="Size (pixel area)",
    fps="Frame rate", mode="Mode", max_frames="Length",
)


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _number(v, name: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise UserError(f"{name} must be a number, got {v!r}")
    x = float(v)
    if not math.isfinite(x):
        raise UserError(f"{name} must be a finite number, got {v}")
    return x


def _int_in(v, name: str, lo: int, hi: int | None = None, what: str = "") -> int:
    if not _is_int(v):
        raise UserError(f"{name} must be a whole number, got {v!r}")
    if v < lo or (hi is not None and v > hi):
        rng = f"at least {lo}" if hi is None else f"between {lo} and {hi}"
        raise UserError(f"{name} must be {rng}{what}, got {v}")
    return int(v)


def _float_in(v, name: str, lo: float, hi: float | None = None, lo_open: bool = False) -> float:
    x = _number(v, name)
    if (x <= lo if lo_open else x < lo) or (hi is not None and x > hi):
        if hi is None:
            rng = f"greater than {lo:g}" if lo_open else f"at least {lo:g}"
        else:
            rng = f"between {lo:g} and {hi:g}"
        raise UserError(f"{name} must be {rng}, got {v}")
    return x


def validate_settings(settings, names: SettingNames = CLI_NAMES):
    """Check every set field of a ``GenerationSettings``; returns it unchanged, or raises UserError."""
    s, n = settings, names
    if s.steps is not None:
        _int_in(s.steps, n.steps, 1, MAX_STEPS)
    if s.cfg_text is not None:
        _float_in(s.cfg_text, n.cfg_text, 0.0)
    if s.cfg_audio is not None:
        _float_in(s.cfg_audio, n.cfg_audio, 0.0)
    if s.anneal is not None and s.anneal not in ANNEAL_SCHEDULES:
        raise UserError(f"{n.anneal} must be one of {', '.join(ANNEAL_SCHEDULES)}, got {s.anneal!r}")
    if s.anneal_strength is not None:
        _float_in(s.anneal_strength, n.anneal_strength, 0.0, 1.0)
    if s.motion_noise is not None:
        _float_in(s.motion_noise, n.motion_noise, 0.0, 1.0)
    if s.audio_focus is not None:
        _float_in(s.audio_focus, n.audio_focus, 0.0, 1.0)
    if s.motion_anchor is not None:
        _float_in(s.motion_anchor, n.motion_anchor, 0.0, 1.0)
    if s.seed is not None:
        _int_in(s.seed, n.seed, 0, 2**63 - 1)
    if s.segment_frames is not None:
        k = _int_in(s.segment_frames, n.segment_frames, 1, MAX_SEGMENT_FRAMES, " (1 + 4k frames: 5, 9, 13, ...)")
        if (k - 1) % 4:
            raise UserError(f"{n.segment_frames} must be 1 + 4k frames (5, 9, 13, ... up to "
                            f"{MAX_SEGMENT_FRAMES}), got {k}")
    if s.motion_frames is not None and s.motion_frames not in (0, 5):
        raise UserError(f"{n.motion_frames} must be 0 or 5, got {s.motion_frames}")
    if s.area is not None:
        _int_in(s.area, n.area, MIN_AREA, MAX_AREA, " pixels")
    if s.fps is not None:
        _float_in(s.fps, n.fps, *FPS_RANGE)
    if s.mode not in MODES:
        raise UserError(f"{n.mode} must be one of {', '.join(MODES)}, got {s.mode!r}")
    if s.shift is not None:
        _float_in(s.shift, n.shift, 0.0, lo_open=True)
    if s.max_frames is not None:
        _int_in(s.max_frames, n.max_frames + " (in frames)", 1)
    return settings


def validate_seconds(seconds, option: str = "--max-seconds") -> float:
    """A duration in seconds: finite and greater than 0."""
    return _float_in(seconds, option, 0.0, lo_open=True)


def validate_image(image: np.ndarray, what: str = "reference image") -> np.ndarray:
    """An RGB picture of at least ``MIN_IMAGE_SIDE`` pixels on each side; returns it unchanged."""
    if image is None or getattr(image, "ndim", 0) != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        raise UserError(f"{what}: expected an RGB image (H, W, 3), got {shape}")
    h, w = image.shape[:2]
    if min(h, w) < MIN_IMAGE_SIDE:
        raise UserError(f"{what}: the image is {w}x{h} pixels; a reference must be at least "
                        f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} pixels")
    return image


def check_output_path(path: str | os.PathLike, option: str = "--out",
                      suffixes: tuple[str, ...] = VIDEO_SUFFIXES) -> Path:
    """The output file ``path`` can be written: checked (its folder created) before any work.

    Refused with UserError naming it: a path that is a folder, a suffix the video writer does not
    know, a folder that cannot be created, or one that does not accept a new file (read-only, /proc,
    no permission). An existing file is only checked for write permission, never touched.
    """
    p = Path(path).expanduser()
    if str(path).strip() == "":
        raise UserError(f"{option}: no output path given")
    if p.is_dir():
        raise UserError(f"{option} {p}: is a folder; give a file name such as {p / 'out.mp4'}")
    if suffixes and p.suffix.lower() not in suffixes:
        raise UserError(f"{option} {p}: the output must end in one of {', '.join(suffixes)}")
    parent = p.parent if str(p.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{option} {p}: cannot create its folder {parent} ({e.strerror or e})") from None
    if not parent.is_dir():
        raise UserError(f"{option} {p}: {parent} is not a folder")
    if p.exists() and not os.access(p, os.W_OK):
        raise UserError(f"{option} {p}: the file exists and cannot be overwritten (no write permission)")
    try:  # the only sure test: create (and remove) a file where the output will go
        fd, probe = tempfile.mkstemp(prefix=".write-check-", dir=parent)
    except OSError as e:
        raise UserError(f"{option} {p}: cannot write in {parent} ({e.strerror or e})") from None
    os.close(fd)
    try:
        os.unlink(probe)
    except OSError:
        pass
    return p
