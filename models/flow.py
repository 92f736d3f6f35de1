"""Flow matching: the path, timestep sampling, the loss, the Euler sampler and guidance.

Path ``x_t = (1 - t) x_0 + t e`` from data (t = 0) to noise (t = 1); the network predicts the
velocity ``e - x_0``. Sampling integrates from t = 1 down to t = 0 on a schedule shifted toward high
noise for long sequences.

Guidance combines three branches computed in one batched forward pass:
``v = u + s_text (c_text - u) + s_audio (c_text_audio - c_text)``, where ``u`` has the reference,
pose and motion frames but neither text nor audio. Both scales can be annealed over the steps.
Free functions throughout; the model is passed as a plain callable.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from models.errors import GenerationCancelled

# -- path and training ------------------------------------------------------------------------


def interpolate(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``x_t = (1 - t) x_0 + t e`` with ``t`` ``(B,)`` broadcast over the other axes."""
    tt = t.view(-1, *([1] * (x0.ndim - 1))).to(x0.dtype)
    return (1 - tt) * x0 + tt * noise


def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    return noise - x0


def shift_for_tokens(num_tokens: int, base_tokens: int = 256, max_tokens: int = 4096,
                     base_shift: float = 1.0, max_shift: float = 3.0) -> float:
    """Timestep shift that grows with the sequence length (more tokens carry more signal at a given
    noise level, so spend more steps at high noise). Linear in the token count, clamped."""
    frac = (num_tokens - base_tokens) / (max_tokens - base_tokens)
    return float(base_shift + (max_shift - base_shift) * min(max(frac, 0.0), 1.0))


def shift_time(t: torch.Tensor | float, shift: float):
    """Map t in [0, 1] to ``shift t / (1 + (shift - 1) t)``: shift > 1 moves toward noise."""
    return shift * t / (1 + (shift - 1) * t)


def sample_timesteps(batch: int, shift: float, mean: float = 0.0, std: float = 1.0,
                     generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """Logit-normal timesteps, shifted by the sequence length: ``(B,)`` in (0, 1)."""
    u = torch.randn(batch, generator=generator, device=device) * std + mean
    return shift_time(torch.sigmoid(u), shift)


def flow_loss(pred: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor,
              weight: torch.Tensor | None = None, weight_map: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared velocity error per sample ``(B,)`` (optionally weighted per sample).

    ``weight_map`` ``(B, F, h, w)`` weights latent positions (shared by the channels): the result is
    the weighted mean, so a map of ones gives the plain loss.
    """
    err = (pred.float() - velocity_target(x0, noise).float()).pow(2)
    if weight_map is None:
        err = err.flatten(1).mean(1)
    else:
        wm = weight_map.float().unsqueeze(1).expand_as(err)
        err = (err * wm).flatten(1).sum(1) / wm.flatten(1).sum(1)
    return err * weight if weight is not None else err


# -- schedules --------------------------------------------------------------------------------


def sampling_schedule(steps: int, shift: float) -> list[float]:
    """``steps + 1`` times from 1 to 0, uniform then shifted."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    return [float(shift_time(1.0 - i / steps, shift)) for i in range(steps + 1)]


ANNEAL_SCHEDULES = ("none", "linear", "cosine")


def annealed_scale(start: float, strength: float, schedule: str, step: int, steps: int) -> float:
    """Guidance scale at sampling step ``step`` of ``steps``.

    The scale moves from ``start`` at the first step to ``end = 1 + (start - 1)(1 - strength)`` at
    the last one (strength 0 keeps it constant, 1 ends with no guidance): linearly, or along a half
    cosine that stays high early, when guidance shapes the motion, and eases off late, when it would
    oversaturate details.
    """
    if schedule not in ANNEAL_SCHEDULES:
        raise ValueError(f"annealing must be one of {ANNEAL_SCHEDULES}, got '{schedule}'")
    if schedule == "none" or steps <= 1:
        return float(start)
    end = 1.0 + (start - 1.0) * (1.0 - min(max(strength, 0.0), 1.0))
    p = step / (steps - 1)
    if schedule == "linear":
        w = 1.0 - p
    else:
        w = 0.5 * (1.0 + math.cos(math.pi * p))
    return float(end + (start - end) * w)


# -- guidance and the sampler -----------------------------------------------------------------


@dataclass(frozen=True)
class Guidance:
    """Guidance settings: start scales for text and audio, and their annealing."""

    text: float = 1.0
    audio: float = 1.0
    anneal: str = "none"
    strength: float = 0.0

    def scales(self, step: int, steps: int) -> tuple[float, float]:
        return (annealed_scale(self.text, self.strength, self.anneal, step, steps),
                annealed_scale(self.audio, self.strength, self.anneal, step, steps))


def combine_guidance(u: torch.Tensor, c_text: torch.Tensor, c_text_audio: torch.Tensor,
                     s_text: float, s_audio: float | torch.Tensor) -> torch.Tensor:
    return u + s_text * (c_text - u) + s_audio * (c_text_audio - c_text)


# A branch is (text on, audio on). The model callable takes (x (n*B, ...), t (n*B,), branches) and
# returns velocities (n*B, ...) for the stacked branches in the given order.
Branch = tuple[bool, bool]
BranchModel = Callable[[torch.Tensor, torch.Tensor, list[Branch]], torch.Tensor]


def guided_velocity(model: BranchModel, x: torch.Tensor, t: torch.Tensor, s_text: float, s_audio: float,
                    has_text: bool, has_audio: bool, audio_map: torch.Tensor | None = None) -> torch.Tensor:
    """Velocity with text and audio guidance, all needed branches in one batched call.

    Branches that would equal another (no text given, audio off, a scale of exactly 1) are not
    computed: with no text ``c_text == u``; with no audio ``c_text_audio == c_text``.
    ``audio_map`` (broadcastable to ``x``, values in [0, 1]) weights the audio guidance per position:
    the scale there is ``1 + (s_audio - 1) * audio_map`` (None: ``s_audio`` everywhere).
    """
    use_text = has_text and s_text != 1.0
    use_audio = has_audio and s_audio != 1.0
    if use_audio and audio_map is not None:
        s_audio = 1.0 + (s_audio - 1.0) * audio_map.to(x.dtype)
    full: Branch = (has_text, has_audio)
    if not use_text and not use_audio:
        return model(x, t, [full])
    if use_text and use_audio:
        branches: list[Branch] = [(False, False), (True, False), (True, True)]
    elif use_text:  # c_text_audio - c_text is computed exactly: audio on in both
        branches = [(False, has_audio), (True, has_audio)]
    else:
        branches = [(has_text, False), (has_text, True)]
    n = len(branches)
    v = model(x.repeat(n, *([1] * (x.ndim - 1))), t.repeat(n), branches).chunk(n)
    if use_text and use_audio:
        return combine_guidance(v[0], v[1], v[2], s_text, s_audio)
    if use_text:
        return v[0] + s_text * (v[1] - v[0])
    return v[0] + s_audio * (v[1] - v[0])


def euler_sample(
    model: BranchModel,
    noise: torch.Tensor,
    steps: int,
    shift: float,
    guidance: Guidance,
    has_text: bool,
    has_audio: bool,
    on_step: Callable[[int, int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    audio_map: torch.Tensor | None = None,
) -> torch.Tensor:
    """Integrate the guided flow from t = 1 (``noise``) to t = 0 with Euler steps.

    ``on_step(i, steps)`` is called after each step; ``should_cancel()`` before each, raising
    ``GenerationCancelled`` when it returns True (so a cancel takes effect within one step). Neither
    forces a device sync: scales are Python floats computed from the step index. ``audio_map``: see
    ``guided_velocity``.
    """
    times = sampling_schedule(steps, shift)
    x = noise
    b = x.shape[0]
    for i in range(steps):
        if should_cancel is not None and should_cancel():
            raise GenerationCancelled(f"cancelled at step {i + 1} of {steps}")
        s_text, s_audio = guidance.scales(i, steps)
        t = torch.full((b,), times[i], device=x.device, dtype=torch.float32)
        v = guided_velocity(model, x, t, s_text, s_audio, has_text, has_audio, audio_map)
        x = x + (times[i + 1] - times[i]) * v
        if on_step is not None:
            on_step(i + 1, steps)
    return x
