"""Blinks and head sway that follow the speech's prosody.

* Blinks: people blink most at the ends of phrases and in pauses, and every 2-6 s otherwise. A blink
  is placed where the speech stops (a pause longer than 0.25 s) and, where none happened for a
  while, at a random moment; each closes in about 80 ms and opens in about 150 ms.
* Head: nods follow stressed syllables (the fast envelope rising above the slow one); roll and turn
  drift slowly while someone speaks and come back to rest in silence, so a silent clip leaves the
  head exactly where the reference has it.

All of it is deterministic for a seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.instant.mouth import SILENCE_RMS, frame_rms
from models.media import SAMPLE_RATE


@dataclass
class SpeechMotion:
    blink: np.ndarray  # (T, 2) left, right in [0, 1]
    head: np.ndarray  # (T, 4) roll (rad), turn (fraction of face width), dx, dy (fractions of face size)


def _smooth(x: np.ndarray, frames: float) -> np.ndarray:
    """Zero-phase exponential smoothing with a time constant in frames."""
    if len(x) == 0 or frames <= 0:
        return x.astype(np.float64)
    a = 1.0 / (1.0 + frames)
    y = np.empty(len(x))
    acc = float(x[0])
    for i, v in enumerate(x):
        acc += a * (v - acc)
        y[i] = acc
    acc = float(y[-1])
    for i in range(len(x) - 1, -1, -1):
        acc += a * (y[i] - acc)
        y[i] = acc
    return y


def blink_profile(fps: float) -> np.ndarray:
    """Eyelid closure over one blink at ``fps``: ~80 ms down, ~40 ms shut, ~150 ms up."""
    t = np.arange(0, 0.28, 1 / fps)
    down, hold = 0.08, 0.04
    return np.clip(np.where(t < down, (t + 1 / fps) / (down + 1 / fps),
                            np.where(t < down + hold, 1.0, 1 - (t - down - hold) / 0.16)), 0, 1)


def blink_times(active: np.ndarray, fps: float, rng: np.random.Generator) -> list[int]:
    """Frames where blinks start: at pause onsets, and to fill long stretches without one."""
    n = len(active)
    starts: list[int] = []
    min_gap = int(1.2 * fps)
    pause = int(0.25 * fps)
    for i in range(1, n - pause):
        if active[i - 1] and not active[i: i + pause].any():
            if not starts or i - starts[-1] >= min_gap:
                if rng.random() < 0.7:
                    starts.append(i)
    out: list[int] = []
    last = -int(rng.uniform(0.5, 2.5) * fps)
    queue = sorted(starts)
    nxt = last + int(rng.uniform(2.0, 5.0) * fps)
    i = 0
    while True:
        cand = queue[i] if i < len(queue) else None
        if cand is not None and cand <= nxt:
            if cand - last >= min_gap:
                out.append(cand)
                last = cand
            i += 1
        else:
            if nxt >= n:
                break
            out.append(nxt)
            last = nxt
        nxt = last + int(rng.uniform(2.0, 5.5) * fps)
        if cand is None and nxt >= n:
            break
    return [t for t in out if 0 <= t < n]


def speech_motion(audio: np.ndarray | None, num_frames: int, fps: float, seed: int = 0,
                  sample_rate: int = SAMPLE_RATE, sway: float = 1.0) -> SpeechMotion:
    rng = np.random.default_rng([seed, 0xB11C])
    blink = np.zeros((num_frames, 2), np.float32)
    head = np.zeros((num_frames, 4), np.float32)
    if num_frames == 0:
        return SpeechMotion(blink, head)
    if audio is not None and len(audio):
        rms = frame_rms(audio, fps, num_frames, sample_rate)
    else:
        rms = np.zeros(num_frames, np.float32)
    active = rms > SILENCE_RMS * 4
    prof = blink_profile(fps)
    for s in blink_times(active, fps, rng):
        seg = prof[: num_frames - s]
        blink[s: s + len(seg), 0] = np.maximum(blink[s: s + len(seg), 0], seg)
    blink[:, 1] = blink[:, 0]
    if not active.any():
        return SpeechMotion(blink, head)
    db = 20 * np.log10(np.maximum(rms, 1e-5))
    db = np.clip((db - db[active].max() + 40) / 40, 0, 1)  # 0 at -40 dB below the loudest frame
    speaking = np.clip(_smooth(active.astype(np.float64), 0.6 * fps), 0, 1)
    speaking = np.clip(speaking * 1.6, 0, 1)
    fast, slow = _smooth(db, 0.06 * fps), _smooth(db, 0.6 * fps)
    stress = np.clip(fast - slow, 0, None)
    nod = _smooth(stress, 0.08 * fps)
    nod = nod / (nod.max() + 1e-6)
    t = np.arange(num_frames) / fps

    def drift(amp: float) -> np.ndarray:
        f = rng.uniform(0.08, 0.35, 3)
        ph = rng.uniform(0, 2 * np.pi, 3)
        w = rng.uniform(0.5, 1.0, 3)
        return amp * (np.sin(2 * np.pi * f[:, None] * t[None] + ph[:, None]) * w[:, None]).sum(0) / w.sum()

    head[:, 0] = sway * speaking * (drift(0.05) + 0.01 * nod)  # roll
    head[:, 1] = sway * speaking * drift(0.04)  # turn
    head[:, 2] = sway * speaking * drift(0.012)  # dx
    head[:, 3] = sway * speaking * (0.012 * nod + drift(0.004))  # dy: nods down on stresses
    return SpeechMotion(blink, head.astype(np.float32))
