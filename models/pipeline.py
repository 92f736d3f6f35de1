"""Segment-by-segment generation of any length, with motion frames, streaming and cancel.

``generate(model, inputs, settings, callbacks)`` is the diffusion engine's work
(``models.engines.diffusion`` puts it behind the engine interface the app, the CLI and the eval use).
The video is cut into segments of ``1 + 4k`` frames; segment k > 0 is conditioned on the last
``motion_frames`` (5) decoded frames of segment k - 1, re-encoded by the VAE as 2 clean latent
frames. Each segment is decoded and handed to ``callbacks.on_segment`` as soon as it is ready, so a
caller can show and save it before the next one starts; a cancel is checked before every sampling
step.

Driving modes: ``audio`` (audio on, pose off), ``pose`` (pose on, audio off, as the paper
prescribes for pose-driven animation), ``combined``. ``auto`` picks from what was given.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable

import numpy as np
import torch

from models.conditions.audio import make_audio_encoder
from models.conditions.text import tokenize
from models.config import latent_frames
from models.dit import Conditions, PreparedConditions
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
from models.flow import ANNEAL_SCHEDULES, Guidance, euler_sample, interpolate, shift_for_tokens
from models.keypoints import LIP_CHANNELS, render_heatmaps, validate_keypoints
from models.model import OmniHuman


def plan_segments(num_frames: int, segment_frames: int) -> list[tuple[int, int]]:
    """(start, length) of each segment; every length is 1 + 4k and the last is the shortest such
    length that covers the remaining frames (it may run past the end by up to 3 frames)."""
    latent_frames(segment_frames)  # validates 1 + 4k
    out, start = [], 0
    while start < num_frames:
        rem = num_frames - start
        length = segment_frames if rem >= segment_frames else 1 + 4 * ((max(rem, 1) - 1 + 3) // 4)
        out.append((start, length))
        start += length
    return out


def prepare_reference(image: np.ndarray, height: int, width: int) -> torch.Tensor:
    """RGB uint8 ``(H0, W0, 3)`` -> ``(1, 3, 1, H, W)`` in [-1, 1], resized to the target size."""
    import cv2

    interp = cv2.INTER_AREA if image.shape[0] > height else cv2.INTER_CUBIC
    img = cv2.resize(image, (width, height), interpolation=interp)
    x = torch.from_numpy(img).float().div(127.5).sub(1.0)
    return x.permute(2, 0, 1)[None, :, None]


def mouth_region(image: np.ndarray, height: int, width: int) -> tuple[np.ndarray | None, str]:
    """Where the reference's mouth is, as weights ``(height, width)`` in [0, 1] over a grid laid on
    the picture (1 at the lips and jaw, falling to 0 a mouth's width away), and a word on it: the
    face mesh's lips (MediaPipe, imported lazily) place it; without MediaPipe or a face, None and why."""
    try:
        from models.instant.face import detect_face_mesh

        mesh = detect_face_mesh(image)
    except ImportError as e:
        return None, f"frame (MediaPipe is not available: {e})"
    if mesh is None:
        return None, "frame (no face found on the reference)"
    h0, w0 = image.shape[:2]
    lips = mesh[[61, 291, 0, 17, 13, 14]]  # corners, outer middle top and bottom, inner middle
    centre = lips.mean(0)
    span = max(float(np.linalg.norm(mesh[291] - mesh[61])), 1.0)  # the mouth's width, in pixels
    yy, xx = np.mgrid[0:height, 0:width]
    px, py = (xx + 0.5) * w0 / width, (yy + 0.5) * h0 / height
    # An ellipse a mouth's width across, lowered a little to take in the chin; flat top, soft edge.
    d = ((px - centre[0]) / span) ** 2 + ((py - centre[1] - 0.2 * span) / (0.9 * span)) ** 2
    return np.exp(-0.5 * d**2).astype(np.float32), "mouth"


def to_uint8(video: torch.Tensor) -> np.ndarray:
    """``(1, 3, T, H, W)`` in [-1, 1] -> ``(T, H, W, 3)`` uint8."""
    v = video[0].float().clamp(-1, 1).add(1).mul(127.5).round().byte()
    return v.permute(1, 2, 3, 0).cpu().numpy()


def branch_model(model: OmniHuman, full: PreparedConditions, null: PreparedConditions):
    """A callable for the sampler: stacks the prepared conditions of the requested branches."""

    def select(branch: tuple[bool, bool]) -> PreparedConditions:
        text_on, audio_on = branch
        valid = None
        if full.text is not None:
            valid = full.text_valid & torch.tensor(text_on, device=full.text_valid.device)
        return PreparedConditions(full.reference, full.motion, full.text, valid,
                                  full.audio if audio_on else null.audio, full.pose, full.still)

    def cat(items: list[PreparedConditions]) -> PreparedConditions:
        def c(name):
            vals = [getattr(p, name) for p in items]
            return None if vals[0] is None else torch.cat(vals, dim=0)

        return PreparedConditions(*(c(n) for n in ("reference", "motion", "text", "text_valid", "audio", "pose",
                                                                 "still")))

    def run(x: torch.Tensor, t: torch.Tensor, branches: list[tuple[bool, bool]]) -> torch.Tensor:
        cond = cat([select(b) for b in branches])
        return model.transformer(x, t, cond)

    return run


@torch.no_grad()
def generate(
    model: OmniHuman,
    inputs: GenerationInputs,
    settings: GenerationSettings | None = None,
    callbacks: Callbacks | None = None,
    keep_frames: bool = True,
    audio_features: Callable | None = None,
) -> GenerationResult:
    """Generate a video for ``inputs``; see the module docstring."""
    settings = settings or GenerationSettings()
    cb = callbacks or Callbacks()
    cfg = model.config
    sc = cfg.sampling
    steps = settings.steps or sc.steps
    seg_len = settings.segment_frames or sc.segment_frames
    motion_len = sc.motion_frames if settings.motion_frames is None else settings.motion_frames
    fps = settings.fps or cfg.cond.fps
    guidance = Guidance(
        text=sc.cfg_text if settings.cfg_text is None else settings.cfg_text,
        audio=sc.cfg_audio if settings.cfg_audio is None else settings.cfg_audio,
        anneal=settings.anneal or sc.anneal,
        strength=sc.anneal_strength if settings.anneal_strength is None else settings.anneal_strength,
    )
    if guidance.anneal not in ANNEAL_SCHEDULES:
        raise UserError(f"annealing must be one of {ANNEAL_SCHEDULES}, got '{guidance.anneal}'")
    if steps < 1:
        raise UserError(f"steps must be at least 1, got {steps}")
    try:
        latent_frames(seg_len)
    except ValueError as e:
        raise UserError(f"segment length: {e}") from None
    if motion_len not in (0, 5):
        raise UserError("motion frames must be 5 (2 latent frames) or 0")
    motion_noise = sc.motion_noise if settings.motion_noise is None else settings.motion_noise
    if not 0.0 <= motion_noise <= 1.0:
        raise UserError(f"motion noise must be between 0 and 1, got {motion_noise}")
    audio_focus = sc.audio_focus if settings.audio_focus is None else settings.audio_focus
    if not 0.0 <= audio_focus <= 1.0:
        raise UserError(f"audio focus must be between 0 and 1, got {audio_focus}")
    motion_anchor = sc.motion_anchor if settings.motion_anchor is None else settings.motion_anchor
    if not 0.0 <= motion_anchor <= 1.0:
        raise UserError(f"motion anchor must be between 0 and 1, got {motion_anchor}")
    still_lead = sc.still_lead if settings.still_lead is None else bool(settings.still_lead)
    check_reference(inputs.image)

    has_audio = inputs.audio is not None and len(inputs.audio) > 0
    pose = validate_keypoints(inputs.pose, "pose") if inputs.pose is not None else None
    mode = resolve_mode(settings.mode, has_audio, pose is not None)
    use_audio = mode in ("audio", "combined")
    use_pose = mode in ("pose", "combined")

    total = video_length(inputs.audio, pose, fps, cfg.cond.sample_rate, settings.max_frames)

    h0, w0 = inputs.image.shape[:2]
    height, width = cfg.resolution_for(w0 / h0, settings.area)
    seed = settings.seed if settings.seed is not None else random.randrange(2**31)
    device = model.device
    dtype = next(model.transformer.parameters()).dtype

    # Conditions that span the whole video, computed once.
    feats = None
    if use_audio:
        if audio_features is None:  # the model's own encoder (log-mel), at this run's frame rate
            enc_cfg = cfg.cond if abs(fps - cfg.cond.fps) < 1e-6 else dataclasses.replace(cfg.cond, fps=fps)
            audio_features = make_audio_encoder(enc_cfg)
        feats = audio_features(inputs.audio, total).to(device)  # (T, F)
        if feats.shape[1] != cfg.dit.audio_feature_dim:
            raise UserError(f"the audio encoder gives {feats.shape[1]} features per frame, but this model was "
                            f"trained on {cfg.dit.audio_feature_dim} ({cfg.cond.audio_encoder} features)")
    if use_pose and len(pose) < total:  # hold the last pose
        pose = np.concatenate([pose, np.repeat(pose[-1:], total - len(pose), axis=0)])

    text_tokens = text_mask = None
    if inputs.text.strip():
        text_tokens, text_mask = tokenize([inputs.text], cfg.dit.text_max_len)
        text_tokens, text_mask = text_tokens.to(device), text_mask.to(device)

    ref_pixels = prepare_reference(inputs.image, height, width).to(device, dtype)
    ref_latent = model.vae.encode(ref_pixels)
    h, w = ref_latent.shape[-2:]
    audio_map, region = None, ""  # the region is named only when a focus was asked for
    if use_audio and audio_focus > 0 and guidance.audio != 1.0:
        weights, region = mouth_region(inputs.image, h, w)
        if weights is not None:  # outside the mouth, audio_focus of the guidance is taken away
            weights = weights + (1.0 - audio_focus) * (1.0 - weights)
            audio_map = torch.from_numpy(weights).to(device, dtype)[None, None, None]  # (1, 1, 1, h, w)
    stills: dict[int, torch.Tensor] = {}  # the reference as a still video, per segment length

    segments = plan_segments(total, seg_len)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    result = GenerationResult(num_frames=total, fps=fps, height=height, width=width, seed=seed, mode=mode,
                              segments_done=0, num_segments=len(segments), audio_region=region)
    kept: list[np.ndarray] = []
    prev_tail: torch.Tensor | None = None  # last motion frames, (1, 3, 5, H, W) in [-1, 1]
    t_start = time.perf_counter()
    sigma = cfg.cond.heatmap_sigma

    for si, (start, length) in enumerate(segments):
        t_seg = time.perf_counter()
        n_lat = latent_frames(length)
        seg_feats = None
        if feats is not None:
            seg_feats = feats[start : start + length]
            if len(seg_feats) < length:  # past the end of the audio: silence
                pad = feats.new_full((length - len(seg_feats), feats.shape[1]), float(feats.min()))
                seg_feats = torch.cat([seg_feats, pad])
            seg_feats = seg_feats[None]
        seg_pose = None
        if use_pose:
            kp = pose[start : start + length]
            if len(kp) < length:
                kp = np.concatenate([kp, np.repeat(kp[-1:], length - len(kp), axis=0)])
            seg_pose = render_heatmaps(kp, height, width, sigma=sigma, device=device, dtype=dtype)[None]
            if use_audio:  # the audio draws the mouth (as in training): no lip contours in the pose maps
                seg_pose[:, list(LIP_CHANNELS)] = 0.0

        motion = None
        if prev_tail is not None and motion_len:
            motion = model.vae.encode(prev_tail)  # (1, C, 2, h, w)
            # Pulled toward the reference standing still, coded as the tail was.
            if motion_anchor > 0:
                n_tail = prev_tail.shape[2]
                if n_tail not in stills:
                    stills[n_tail] = model.still_latents(ref_pixels, n_tail)
                anchor = stills[n_tail]
                motion = anchor + (1.0 - motion_anchor) * (motion - anchor)
        elif still_lead and motion_len:  # the first segment: led by the reference standing still
            if motion_len not in stills:
                stills[motion_len] = model.still_latents(ref_pixels, motion_len)
            motion = stills[motion_len]
        if motion is not None and motion_noise > 0:  # as in training (noisy_motion): not ground truth
            eps = torch.randn(motion.shape, generator=gen).to(motion.device, motion.dtype)
            motion = interpolate(motion, eps, torch.full((1,), motion_noise, device=motion.device))

        still = None
        if model.uses_still:
            if length not in stills:
                stills[length] = model.still_latents(ref_pixels, length)
            still = stills[length]
        cond = Conditions(reference=ref_latent, motion=motion, text_tokens=text_tokens, text_mask=text_mask,
                          audio=seg_feats, pose=seg_pose, still=still)
        full = model.transformer.prepare(cond, n_lat)
        null = model.transformer.prepare(Conditions(reference=ref_latent, motion=motion, still=still), n_lat)
        runner = branch_model(model, full, null)

        noise = torch.randn((1, cfg.dit.latent_channels, n_lat, h, w), generator=gen).to(device, dtype)
        p = cfg.dit.patch_size
        n_tokens = (n_lat + 1 + (2 if motion is not None else 0)) * (h // p) * (w // p)
        shift = settings.shift or sc.shift or shift_for_tokens(n_tokens)

        def on_step(i: int, n: int, _si=si) -> None:
            if cb.on_step:
                cb.on_step(_si, len(segments), i, n)

        try:
            latents = euler_sample(runner, noise, steps, shift, guidance, has_text=text_tokens is not None,
                                   has_audio=use_audio, on_step=on_step, should_cancel=cb.should_cancel,
                                   audio_map=audio_map)
        except GenerationCancelled:
            result.cancelled = True
            break
        latents = model.transformer.from_flow(latents, still if still is not None else ref_latent)
        video = model.vae.decode(latents.to(dtype))  # (1, 3, length, H, W)
        if motion_len:
            prev_tail = video[:, :, -motion_len:] if video.shape[2] >= motion_len else None
        frames = to_uint8(video)[: max(0, min(length, total - start))]
        result.segments_done += 1
        result.segment_seconds.append(time.perf_counter() - t_seg)
        if keep_frames:
            kept.append(frames)
        if cb.on_segment:
            cb.on_segment(si, frames, start)

    result.seconds = time.perf_counter() - t_start
    if keep_frames:
        result.frames = np.concatenate(kept) if kept else np.zeros((0, height, width, 3), np.uint8)
    return result
