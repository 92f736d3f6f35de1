"""Live One-Euro smoothing, offline smoothing and gap filling on synthetic keypoint sequences."""

from __future__ import annotations

import numpy as np

from models import keypoints as kpl
from models.conditions.smoothing import LivePoseSmoother, OneEuroFilter, fill_gaps, smooth_offline

FPS = 25.0
T = 250


def _clean_track() -> np.ndarray:
    """(T,) positions: still for 2 s, a 1 Hz swing of 0.15 frame heights for 6 s, still again."""
    t = np.arange(T) / FPS
    return 0.5 + 0.15 * np.sin(2 * np.pi * t) * ((t > 2) & (t < 8))


def _sequence(noise: float = 0.005, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Clean and noisy ``(T, K, 3)``: every point follows the track at its own offset."""
    rng = np.random.default_rng(seed)
    offsets = rng.uniform(-0.2, 0.2, (kpl.NUM_KEYPOINTS, 2))
    clean = np.zeros((T, kpl.NUM_KEYPOINTS, 3), np.float32)
    clean[..., 0] = _clean_track()[:, None] + offsets[None, :, 0]
    clean[..., 1] = 0.5 + offsets[None, :, 1]
    clean[..., 2] = 0.9
    noisy = clean.copy()
    noisy[..., :2] += rng.normal(0, noise, noisy[..., :2].shape).astype(np.float32)
    return clean, noisy


def _lag_frames(smoothed: np.ndarray, clean: np.ndarray) -> float:
    """The delay (frames, 0.05 steps) that best aligns ``smoothed`` with ``clean`` (both (T,))."""
    frames = np.arange(len(clean))
    errs = []
    shifts = np.arange(-2.0, 4.0001, 0.05)
    for s in shifts:
        shifted = np.interp(frames - s, frames, clean)
        errs.append(np.mean((smoothed[10:-10] - shifted[10:-10]) ** 2))
    return float(shifts[int(np.argmin(errs))])


def _still(mask_t: np.ndarray) -> np.ndarray:
    t = np.arange(T) / FPS
    return mask_t & ((t < 2) | (t > 8.5))


def test_live_smoother_reduces_jitter_within_one_frame_of_lag():
    clean, noisy = _sequence()
    sm = LivePoseSmoother(fps=FPS)
    out = np.stack([sm(noisy[i], timestamp=i / FPS)[0] for i in range(T)])
    x_clean, x_noisy, x_out = clean[..., 0], noisy[..., 0], out[..., 0]
    still = _still(np.ones(T, bool))
    jitter_in = np.std(np.diff(x_noisy[still], axis=0))
    jitter_out = np.std(np.diff(x_out[still], axis=0))
    assert jitter_out < jitter_in / 3
    lags = [_lag_frames(x_out[:, k], x_clean[:, k]) for k in range(0, kpl.NUM_KEYPOINTS, 7)]
    assert max(lags) <= 1.0, lags
    # While moving fast the cutoff rises (that is the point of One-Euro), yet the frame-to-frame
    # jitter of the error (its second difference: a lag is smooth, noise is not) stays below the
    # input's.
    t = np.arange(T) / FPS
    moving = (t > 2.5) & (t < 7.5)
    err_in = np.diff(x_noisy[moving] - x_clean[moving], n=2, axis=0)
    err_out = np.diff(x_out[moving] - x_clean[moving], n=2, axis=0)
    assert np.std(err_out) < 0.8 * np.std(err_in)
    # Confidence passes through untouched.
    np.testing.assert_array_equal(out[..., 2], noisy[..., 2])


def test_one_euro_filter_is_exact_on_a_constant_and_uses_timestamps():
    f = OneEuroFilter()
    for _ in range(5):
        y = f(np.array([0.3, 0.7]), 0.04)
    np.testing.assert_allclose(y, [0.3, 0.7])
    # A longer time step lets the filter move further toward a new value.
    a, b = OneEuroFilter(), OneEuroFilter()
    a(np.zeros(1), 0.04)
    b(np.zeros(1), 0.04)
    assert a(np.ones(1), 0.2)[0] > b(np.ones(1), 0.02)[0]


def test_live_smoother_new_points_do_not_slide_in():
    _, noisy = _sequence()
    frames = noisy[:10].copy()
    frames[:5, 40, 2] = 0.0  # a hand point appears at frame 5 ...
    frames[5:, 40, :2] = (0.9, 0.1)  # ... far from where its coordinates were
    sm = LivePoseSmoother(fps=FPS)
    out = [sm(f)[0] for f in frames]
    np.testing.assert_allclose(out[5][40, :2], (0.9, 0.1), atol=1e-6)


def test_live_smoother_holds_a_lost_person_briefly_and_marks_it():
    _, noisy = _sequence()
    sm = LivePoseSmoother(fps=FPS, max_hold=0.2)  # 5 frames
    for i in range(10):
        kp, filled = sm(noisy[i])
        assert not filled
    empty = np.zeros_like(noisy[0])
    confs = []
    for _ in range(5):
        kp, filled = sm(empty)
        assert filled
        confs.append(kp[:, 2].max())
    assert confs[0] > 0.5 and all(a >= b for a, b in zip(confs, confs[1:], strict=False))
    assert confs[-1] == 0.0
    kp, filled = sm(empty)  # after the hold: nothing, and nothing held
    assert not filled
    np.testing.assert_allclose(kp, empty)


def test_offline_smoothing_has_no_lag():
    clean, noisy = _sequence()
    out = smooth_offline(noisy, FPS, sigma_seconds=0.04)
    still = _still(np.ones(T, bool))
    assert np.std(np.diff(out[still, :, 0], axis=0)) < np.std(np.diff(noisy[still, :, 0], axis=0)) / 1.5
    for k in (0, 30, 80):
        assert abs(_lag_frames(out[:, k, 0], clean[:, k, 0])) <= 0.1
    # Absent points neither move nor pull.
    noisy[:, 3, 2] = 0.0
    out = smooth_offline(noisy, FPS)
    np.testing.assert_array_equal(out[:, 3], noisy[:, 3])


def test_fill_gaps_interpolates_missing_frames_and_short_dropouts():
    clean, _ = _sequence(noise=0.0)
    kp = clean[:40].copy()
    missing = np.zeros(40, bool)
    missing[10:15] = True
    missing[:2] = True
    holed = kp.copy()
    holed[missing] = 0.0
    out = fill_gaps(holed, missing)
    # Linear in between (the track is smooth, so close to the truth), held at the start.
    np.testing.assert_allclose(out[11:14, :, :2], kp[11:14, :, :2], atol=0.02)
    np.testing.assert_allclose(out[0], holed[2])
    assert (out[missing, :, 2] > 0).all()
    # A single point lost for 2 frames is bridged; one lost for 10 frames is left absent.
    holed = kp.copy()
    holed[20:22, 50, 2] = 0.0
    holed[25:35, 60, 2] = 0.0
    out = fill_gaps(holed, np.zeros(40, bool), max_point_gap=3)
    assert (out[20:22, 50, 2] > 0).all()
    np.testing.assert_allclose(out[20:22, 50, :2], kp[20:22, 50, :2], atol=0.01)
    assert (out[25:35, 60, 2] == 0).all()
    # Missing frames default to frames where nothing is present; an all-missing input is returned.
    holed = kp.copy()
    holed[5] = 0.0
    assert (fill_gaps(holed)[5, :, 2] > 0).all()
    np.testing.assert_array_equal(fill_gaps(np.zeros((3, kpl.NUM_KEYPOINTS, 3))), 0.0)
