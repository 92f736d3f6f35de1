"""The vocabulary both engines share (DESIGN section 9): what goes in, how it streams, what comes out.

Nothing here knows either engine, so the instant engine can use it without the diffusion stack.
Driving modes: ``audio`` (audio on, pose off), ``pose`` (pose on, audio off, as the paper
prescribes for pose-driven animation), ``combined``; ``auto`` picks from what was given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from models.errors import UserError

MODES = ("auto", "audio", "pose", "combined")


@dataclass
class GenerationInputs:
    image: np.ndarray  # (H, W, 3) uint8 RGB reference
    audio: np.ndarray | None = None  # mono float32 at the engine's sample rate
    pose: np.ndarray | None = None  # (T, K, 3) keypoints at the output fps, in the reference's frame
    text: str = ""


@dataclass
class GenerationSettings:
    """What a user may choose for a run; None everywhere means "the engine's (the model's) own"."""

    steps: int | None = None
    cfg_text: float | None = None
    cfg_audio: float | None = None
    anneal: str | None = None
    anneal_strength: float | None = None
    seed: int | None = None  # None: a random seed, reported in the result
    segment_frames: int | None = None
    motion_frames: int | None = None
    motion_noise: float | None = None  # 0-1: the motion latents blended toward noise (SamplingConfig.motion_noise)
    audio_focus: float | None = None  # 0-1: audio guidance kept to the mouth (SamplingConfig.audio_focus)
    motion_anchor: float | None = None  # 0-1: motion latents pulled toward the reference (SamplingConfig.motion_anchor)
    still_lead: bool | None = None  # the first segment led by the still reference (SamplingConfig.still_lead)
    area: int | None = None  # pixel area; the aspect ratio comes from the reference
    fps: float | None = None
    mode: str = "auto"
    shift: float | None = None
    max_frames: int | None = None  # cap on the video length (previews)


@dataclass
class Callbacks:
    on_step: Callable[[int, int, int, int], None] | None = None  # (segment, n_segments, step, steps)
    on_segment: Callable[[int, np.ndarray, int], None] | None = None  # (segment, frames (T,H,W,3), start)
    should_cancel: Callable[[], bool] | None = None


@dataclass
class GenerationResult:
    num_frames: int
    fps: float
    height: int
    width: int
    seed: int
    mode: str
    segments_done: int
    num_segments: int
    cancelled: bool = False
    frames: np.ndarray | None = None  # (T, H, W, 3) when keep_frames
    seconds: float = 0.0
    segment_seconds: list[float] = field(default_factory=list)
    # With an audio focus, where the audio guidance acted: "mouth", or "frame (why not the mouth)"; else "".
    audio_region: str = ""


def resolve_mode(mode: str, has_audio: bool, has_pose: bool) -> str:
    if mode not in MODES:
        raise UserError(f"mode must be one of {MODES}, got '{mode}'")
    if mode == "auto":
        mode = "combined" if has_audio and has_pose else "pose" if has_pose else "audio"
    if mode in ("pose", "combined") and not has_pose:
        raise UserError(f"{mode}-driven generation needs a pose sequence")
    if mode in ("audio", "combined") and not has_audio:
        raise UserError(f"{mode}-driven generation needs audio")
    return mode


def check_reference(image: np.ndarray | None) -> None:
    if image is None or image.ndim != 3 or image.shape[2] != 3:
        raise UserError("reference image must be an RGB image")


def video_length(audio: np.ndarray | None, pose: np.ndarray | None, fps: float, sample_rate: int,
                 max_frames: int | None = None) -> int:
    """Frames of the video: as long as the audio (within one frame), else as long as the pose."""
    from models.media import num_video_frames

    if audio is not None and len(audio) > 0:
        total = num_video_frames(len(audio), fps, sample_rate)
    else:
        total = len(pose)
    return min(total, max_frames) if max_frames else total
