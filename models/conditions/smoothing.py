"""Temporal clean-up of keypoint sequences ``(T, K, 3)``: live filtering, offline smoothing, gaps.

* ``OneEuroFilter`` / ``LivePoseSmoother``: causal, for camera input. The One-Euro filter (Casiez
  et al., CHI 2012) is a low-pass filter whose cutoff rises with speed: still poses lose their
  jitter, fast moves keep up (lag well under one frame at 25-30 fps for ordinary motion).
* ``smooth_offline``: zero-phase, confidence-weighted Gaussian over time, for whole videos (no lag
  at all, since it looks both ways).
* ``fill_gaps``: frames without a person are filled by interpolating between the nearest frames
  with one (or holding the nearest one at the ends); short dropouts of single points (a hand lost
  for two frames) are bridged the same way. The caller keeps the ``missing`` mask to mark them.

Coordinates are in the layout's normalised units; filter parameters are in those units per second.
"""

from __future__ import annotations

import math

import numpy as np

from models.keypoints import NUM_BODY
from models.media import DEFAULT_FPS

PRESENT = 0.05  # below this confidence a point is treated as absent


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    # Exponential smoothing factor of a first-order low-pass with this cutoff (Hz) at step dt (s).
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff))
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """Vectorised One-Euro filter over arrays of any fixed shape.

    ``min_cutoff`` (Hz) sets the smoothing of a still signal; ``beta`` how fast the cutoff rises with
    speed (units of the signal per second); ``d_cutoff`` (Hz) smooths the speed estimate.
    ``reset(mask)`` forgets the state of some entries (a point that disappeared).
    """

    def __init__(self, min_cutoff: float = 1.5, beta: float = 8.0, d_cutoff: float = 1.0) -> None:
        self.min_cutoff = float(min_cutoff)
        self.beta = float(beta)
        self.d_cutoff = float(d_cutoff)
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._fresh: np.ndarray | None = None

    def reset(self, mask: np.ndarray | None = None) -> None:
        if mask is None or self._fresh is None:
            self._x = self._dx = self._fresh = None
        else:
            self._fresh |= mask

    def __call__(self, x: np.ndarray, dt: float) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if self._x is None:
            self._x = x.copy()
            self._dx = np.zeros_like(x)
            self._fresh = np.zeros(x.shape, bool)
            return x.copy()
        dt = max(float(dt), 1e-6)
        fresh = self._fresh
        dx = (x - self._x) / dt
        dx = np.where(fresh, 0.0, dx)
        dx_hat = self._dx + _alpha(self.d_cutoff, dt) * (dx - self._dx)
        cutoff = self.min_cutoff + self.beta * np.abs(dx_hat)
        x_hat = self._x + _alpha(cutoff, dt) * (x - self._x)
        x_hat = np.where(fresh, x, x_hat)
        self._x, self._dx = x_hat, np.where(fresh, 0.0, dx_hat)
        self._fresh = np.zeros(x.shape, bool)
        return x_hat.copy()


class LivePoseSmoother:
    """Causal smoothing and short gap holding for live keypoints, one frame ``(K, 3)`` at a time.

    ``__call__(kp, timestamp=None) -> (kp, filled)``: ``filled`` is True when the frame had no person
    and the last pose is held instead (for at most ``max_hold`` seconds, confidence fading linearly
    to zero), so a flicker of the detector does not make the figure vanish.
    """

    def __init__(
        self,
        fps: float = DEFAULT_FPS,
        min_cutoff: float = 1.5,
        beta: float = 8.0,
        d_cutoff: float = 1.0,
        max_hold: float = 0.5,
    ) -> None:
        self.fps = float(fps)
        self.max_hold = float(max_hold)
        self._filter = OneEuroFilter(min_cutoff, beta, d_cutoff)
        self._last: np.ndarray | None = None
        self._last_t: float | None = None
        self._held = 0.0
        self._present: np.ndarray | None = None

    def reset(self) -> None:
        self._filter.reset()
        self._last = self._last_t = self._present = None
        self._held = 0.0

    def __call__(self, kp: np.ndarray, timestamp: float | None = None) -> tuple[np.ndarray, bool]:
        kp = np.asarray(kp, np.float32)
        if timestamp is None:
            timestamp = (self._last_t + 1.0 / self.fps) if self._last_t is not None else 0.0
        dt = (timestamp - self._last_t) if self._last_t is not None else 1.0 / self.fps
        if dt <= 0:
            dt = 1.0 / self.fps
        self._last_t = timestamp
        body_seen = (kp[:NUM_BODY, 2] >= 0.5).sum() >= 4 or (kp[NUM_BODY:, 2] > PRESENT).sum() >= 10
        if not body_seen:
            if self._last is None:
                return kp.copy(), False
            self._held += dt
            fade = 1.0 - self._held / self.max_hold if self.max_hold > 0 else 0.0
            if fade < 1e-6:
                fade = 0.0
            out = self._last.copy()
            out[:, 2] *= fade
            if fade == 0.0:
                self.reset()
            return out, True
        self._held = 0.0
        present = kp[:, 2] > PRESENT
        if self._present is not None:
            # Points that (re)appear start fresh instead of sliding in from where they were last.
            self._filter.reset(np.repeat((present & ~self._present)[:, None], 2, axis=1))
        self._present = present
        xy = self._filter(kp[:, :2], dt)
        out = kp.copy()
        out[:, :2] = np.where(present[:, None], xy, kp[:, :2]).astype(np.float32)
        self._last = out
        return out.copy(), False


def smooth_offline(kp: np.ndarray, fps: float = DEFAULT_FPS, sigma_seconds: float = 0.03) -> np.ndarray:
    """Zero-phase, confidence-weighted Gaussian smoothing in time of ``(T, K, 3)`` keypoints.

    Absent points (confidence below ``PRESENT``) neither move nor pull their neighbours.
    """
    kp = np.asarray(kp, np.float32)
    t = kp.shape[0]
    sigma = sigma_seconds * float(fps)
    if t < 3 or sigma < 0.3:
        return kp.copy()
    radius = max(1, int(math.ceil(3 * sigma)))
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    conf = kp[..., 2]
    w_conf = np.where(conf > PRESENT, conf, 0.0).astype(np.float64)
    num = np.zeros(kp.shape[:2] + (2,), np.float64)
    den = np.zeros(kp.shape[:2], np.float64)
    for off, w in zip(offsets, weights, strict=True):
        src = np.clip(np.arange(t) + off, 0, t - 1)
        wc = w * w_conf[src]
        num += wc[..., None] * kp[src, :, :2]
        den += wc
    out = kp.copy()
    ok = (den > 0) & (conf > PRESENT)
    out[..., :2] = np.where(ok[..., None], num / np.maximum(den, 1e-12)[..., None], kp[..., :2])
    return out.astype(np.float32)


def _interpolate_runs(
    values: np.ndarray, valid: np.ndarray, max_gap: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Fill runs of invalid frames along axis 0 of ``values (T, ...)`` for one point.

    Returns the filled values and the mask of frames filled. Runs at the ends are held from the
    nearest valid frame; runs longer than ``max_gap`` (when given) are left alone.
    """
    t = len(valid)
    out = values.copy()
    filled = np.zeros(t, bool)
    idx = np.flatnonzero(valid)
    if len(idx) == 0:
        return out, filled
    i = 0
    while i < t:
        if valid[i]:
            i += 1
            continue
        j = i
        while j < t and not valid[j]:
            j += 1
        run = j - i
        if max_gap is None or run <= max_gap:
            a = i - 1 if i > 0 else None
            b = j if j < t else None
            for k in range(i, j):
                if a is not None and b is not None:
                    w = (k - a) / (b - a)
                    out[k, :2] = (1 - w) * values[a, :2] + w * values[b, :2]
                    out[k, 2] = min(values[a, 2], values[b, 2])
                else:
                    out[k] = values[a if a is not None else b]
                filled[k] = True
        i = j
    return out, filled


def fill_gaps(kp: np.ndarray, missing: np.ndarray | None = None, max_point_gap: int = 3) -> np.ndarray:
    """Fill frames without a person, and short dropouts of single points, in ``(T, K, 3)``.

    ``missing (T,)`` marks the frames with no person (default: frames where no point is present).
    Every point of a missing frame is interpolated between the nearest frames with a person (held at
    the ends). Inside frames with a person, a point absent for at most ``max_point_gap`` frames is
    interpolated too; longer absences stay absent (a hand that left the picture).
    """
    kp = np.asarray(kp, np.float32)
    t, k, _ = kp.shape
    present = kp[..., 2] > PRESENT
    if missing is None:
        missing = ~present.any(axis=1)
    missing = np.asarray(missing, bool)
    out = kp.copy()
    if missing.all() or t == 0:
        return out
    found = ~missing
    # Whole frames: every point follows the frames with a person (a point absent on one side stays
    # absent through the gap).
    for j in range(k):
        filled_vals, _ = _interpolate_runs(kp[:, j], found, None)
        out[missing, j] = filled_vals[missing]
    # Short dropouts of single points inside frames with a person.
    if max_point_gap > 0:
        for j in range(k):
            valid = present[:, j] | missing  # missing frames were handled above
            if valid.all():
                continue
            vals, _ = _interpolate_runs(out[:, j], valid, max_point_gap)
            # Only bridge gaps with the point present on both sides, not at the ends.
            first, last = np.flatnonzero(present[:, j])[[0, -1]] if present[:, j].any() else (t, -1)
            inner = np.zeros(t, bool)
            inner[first : last + 1] = True
            sel = ~valid & inner
            out[sel, j] = vals[sel]
    return out


def clean_track(kp: np.ndarray, fps: float, missing: np.ndarray | None = None, smooth: bool = True) -> np.ndarray:
    """The clean-up every recorded pose track gets, a video file's and a webcam take's alike: frames
    without a person (``missing``) filled from their neighbours, then zero-phase smoothing in time."""
    kp = fill_gaps(kp, missing)
    return (smooth_offline(kp, fps) if smooth else kp).astype(np.float32)
