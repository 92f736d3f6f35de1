"""Motion for toon characters: co-speech movement, idle life, deliberate actions, and retargeting.

A motion is a ``(T, P)`` float32 array of joint parameters (``MOTION_FIELDS``), in character units
(one head height = 1) and radians. The skeleton in ``toon.py`` turns it into keypoints; every field
is relative to its parent so actions, gestures and sway simply add up.

Arm and leg angles are mirrored per side: ``sh`` is the upper arm's angle from hanging straight down,
away from the body (pi/2: out to the side, pi: straight up); ``el`` bends the forearm toward the
body's midline; ``wr`` turns the hand the same way. ``hip``/``knee`` do the same for the legs.
"""

from __future__ import annotations

import numpy as np

from models.media import SAMPLE_RATE

MOTION_FIELDS = (
    "root_x", "root_y", "lean", "body_yaw", "head_yaw", "head_pitch", "head_roll",
    "l_sh", "l_el", "l_wr", "r_sh", "r_el", "r_wr",
    "l_hip", "l_knee", "r_hip", "r_knee",
    "l_curl", "r_curl", "l_point", "r_point", "blink", "gaze_x", "gaze_y",
)
F = {name: i for i, name in enumerate(MOTION_FIELDS)}
ACTIONS = ("wave", "point", "clap", "dance", "turn", "shrug", "arms_up", "idle")
GESTURE_STYLES = ("still", "one_hand", "both_hands", "big")


def rest_motion(num_frames: int) -> np.ndarray:
    """Standing relaxed: arms hanging slightly out, elbows a little bent, eyes open."""
    m = np.zeros((num_frames, len(MOTION_FIELDS)), np.float32)
    m[:, F["l_sh"]] = m[:, F["r_sh"]] = 0.18
    m[:, F["l_el"]] = m[:, F["r_el"]] = 0.25
    m[:, F["l_curl"]] = m[:, F["r_curl"]] = 0.35
    m[:, F["l_hip"]] = m[:, F["r_hip"]] = 0.06
    return m


def _smooth_noise(rng: np.random.Generator, n: int, fps: float, period: float) -> np.ndarray:
    """Band-limited noise in [-1, 1]-ish: random knots every ``period`` seconds, cosine-interpolated."""
    step = max(1, int(period * fps))
    knots = rng.uniform(-1, 1, n // step + 3)
    t = np.arange(n) / step
    i = t.astype(int)
    f = t - i
    w = (1 - np.cos(np.pi * f)) / 2
    return (knots[i] * (1 - w) + knots[i + 1] * w).astype(np.float32)


def frame_energy(audio: np.ndarray | None, num_frames: int, fps: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Loudness per video frame in [0, 1] (log RMS, normalised to the clip's range)."""
    if audio is None or len(audio) == 0:
        return np.zeros(num_frames, np.float32)
    hop = sample_rate / fps
    out = np.zeros(num_frames, np.float32)
    for f in range(num_frames):
        seg = audio[int(f * hop): int((f + 1) * hop)]
        if len(seg):
            out[f] = np.sqrt(np.mean(seg.astype(np.float64) ** 2))
    db = 20 * np.log10(out + 1e-5)
    top = db.max()
    return np.clip((db - (top - 40.0)) / 40.0, 0, 1).astype(np.float32)


def _envelope(events: np.ndarray, num_frames: int, fps: float, attack: float, decay: float) -> np.ndarray:
    """Sum of attack-decay pulses, one per event frame with its amplitude."""
    t = np.arange(num_frames) / fps
    out = np.zeros(num_frames, np.float32)
    for f, amp in events:
        dt = t - f / fps
        rise = np.clip((dt + attack) / attack, 0, 1) * (dt < 0)
        fall = np.exp(-np.maximum(dt, 0) / decay) * (dt >= 0)
        out += amp * (rise + fall).astype(np.float32)
    return out


def life_motion(rng: np.random.Generator, num_frames: int, fps: float) -> np.ndarray:
    """Blinks, gaze shifts, breathing and idle sway, added to any motion."""
    m = np.zeros((num_frames, len(MOTION_FIELDS)), np.float32)
    t = np.arange(num_frames) / fps
    # Blinks: about one every 3 s, 4-6 frames long, closing and opening.
    blink = np.zeros(num_frames, np.float32)
    pos = rng.uniform(0.2, 2.5)
    while pos < t[-1] + 1 if num_frames else False:
        dur = rng.uniform(0.12, 0.24)
        d = np.abs(t - pos - dur / 2) / (dur / 2)
        blink = np.maximum(blink, np.clip(1.6 - 1.6 * d, 0, 1))
        pos += rng.exponential(2.8) + 0.4
    m[:, F["blink"]] = blink
    # Gaze: fixations held 0.4-2 s, quick saccades between them.
    gx, gy = np.zeros(num_frames), np.zeros(num_frames)
    pos, cur = 0.0, (rng.normal(0, 0.3), rng.normal(0, 0.2))
    while pos <= t[-1] if num_frames else False:
        nxt = pos + rng.uniform(0.4, 2.0)
        sel = (t >= pos) & (t < nxt)
        gx[sel], gy[sel] = cur
        cur = (float(np.clip(rng.normal(0, 0.45), -1, 1)), float(np.clip(rng.normal(0, 0.3), -1, 1)))
        if rng.random() < 0.5:
            cur = (0.0, 0.0)  # back to the camera
        pos = nxt
    m[:, F["gaze_x"]], m[:, F["gaze_y"]] = gx, gy
    sway = _smooth_noise(rng, num_frames, fps, 1.8)
    m[:, F["root_x"]] = 0.04 * sway
    m[:, F["lean"]] = 0.03 * _smooth_noise(rng, num_frames, fps, 2.2)
    m[:, F["root_y"]] = 0.012 * np.sin(2 * np.pi * t / rng.uniform(3, 5) + rng.uniform(0, 6))
    m[:, F["head_roll"]] = 0.04 * _smooth_noise(rng, num_frames, fps, 1.5)
    return m


def speech_motion(
    rng: np.random.Generator, audio: np.ndarray | None, num_frames: int, fps: float, style: str | None = None,
) -> np.ndarray:
    """Co-speech head motion and beat gestures driven by the speech's loudness contour.

    Onsets of loud stretches (stressed syllables, phrase starts) become head nods and hand beats;
    louder speech moves more; pauses bring the hands back toward rest. Audio alone thus predicts
    when and how much the character moves.
    """
    style = style or GESTURE_STYLES[int(rng.choice(4, p=[0.2, 0.35, 0.3, 0.15]))]
    m = rest_motion(num_frames)
    e = frame_energy(audio, num_frames, fps)
    smooth = np.convolve(e, np.ones(5) / 5, mode="same")
    rise = np.diff(smooth, prepend=smooth[:1])
    beats = []
    last = -99
    for f in range(1, num_frames - 1):
        if rise[f] > 0.05 and rise[f] >= rise[f - 1] and rise[f] >= rise[f + 1] and f - last > fps * 0.25:
            beats.append((f, float(min(1.0, rise[f] * 5)) * float(rng.uniform(0.6, 1.0))))
            last = f
    beats = np.array(beats, np.float32).reshape(-1, 2)
    nod = _envelope(beats, num_frames, fps, 0.08, 0.22)
    m[:, F["head_pitch"]] += 0.12 * nod
    m[:, F["head_yaw"]] += (0.25 * smooth + 0.05) * _smooth_noise(rng, num_frames, fps, 1.2)
    m[:, F["head_roll"]] += 0.06 * smooth * _smooth_noise(rng, num_frames, fps, 1.0)
    activity = np.convolve(e, np.ones(int(fps)) / int(fps), mode="same")  # speaking vs. pausing
    amp = {"still": 0.1, "one_hand": 0.9, "both_hands": 0.8, "big": 1.0}[style]
    beat = _envelope(beats, num_frames, fps, 0.1, 0.3) * amp
    sides = {"still": ("r",), "one_hand": (("r", "l")[int(rng.integers(2))],), "both_hands": ("l", "r"),
             "big": ("l", "r")}[style]
    open_arms = 0.9 if style == "big" else 0.25
    for s in sides:
        # Speaking raises the forearm in front of the body (elbow bent ~110 degrees, hand at chest
        # height); each beat flicks it up and out a little more; pauses let it sink back.
        raise_ = np.clip(activity * 1.5, 0, 1) * amp
        m[:, F[s + "_el"]] += 1.75 * raise_ + 0.45 * beat
        m[:, F[s + "_sh"]] += open_arms * raise_ + 0.25 * beat
        m[:, F[s + "_wr"]] += -0.3 * raise_ + 0.4 * beat
        m[:, F[s + "_curl"]] = np.clip(0.35 - 0.3 * raise_, 0, 1)
    m[:, F["root_y"]] += 0.02 * beat
    return m


def _phase(num_frames: int, fps: float, start: float, period: float) -> np.ndarray:
    t = np.arange(num_frames) / fps - start
    return np.where(t < 0, 0.0, 2 * np.pi * t / period)


def _ramp(num_frames: int, fps: float, start: float, length: float, rise: float = 0.35) -> np.ndarray:
    """0 before ``start``, eases to 1, holds, eases back to 0 at ``start + length``."""
    t = np.arange(num_frames) / fps - start
    up = np.clip(t / rise, 0, 1)
    down = np.clip((length - t) / rise, 0, 1)
    w = np.minimum(up, down)
    return ((1 - np.cos(np.pi * w)) / 2).astype(np.float32)


def action_motion(name: str, rng: np.random.Generator, num_frames: int, fps: float) -> np.ndarray:
    """One deliberate action, eased in and out within the clip, on top of the rest pose."""
    if name not in ACTIONS:
        raise ValueError(f"unknown action '{name}'; known: {', '.join(ACTIONS)}")
    m = rest_motion(num_frames)
    dur = num_frames / fps
    start = float(rng.uniform(0, min(0.6, dur * 0.15)))
    length = max(0.8, dur - start - float(rng.uniform(0, min(0.6, dur * 0.15))))
    w = _ramp(num_frames, fps, start, length)
    side = ("l", "r")[int(rng.integers(2))]
    other = "r" if side == "l" else "l"
    if name == "wave":
        ph = _phase(num_frames, fps, start, rng.uniform(0.5, 0.8))
        m[:, F[side + "_sh"]] += w * 2.1
        m[:, F[side + "_el"]] += w * (-1.2 + 0.45 * np.sin(ph))
        m[:, F[side + "_curl"]] = m[:, F[side + "_curl"]] * (1 - w)
        m[:, F["head_roll"]] += w * 0.08 * (1 if side == "l" else -1)
    elif name == "point":
        m[:, F[side + "_sh"]] += w * rng.uniform(1.2, 1.8)
        m[:, F[side + "_el"]] += w * -0.2
        m[:, F[side + "_point"]] = w
        m[:, F[side + "_curl"]] = np.maximum(m[:, F[side + "_curl"]], w * 0.9)
        m[:, F["head_yaw"]] += w * 0.35 * (1 if side == "l" else -1)
        m[:, F["gaze_x"]] += w * 0.8 * (1 if side == "l" else -1)
    elif name == "clap":
        ph = _phase(num_frames, fps, start, rng.uniform(0.35, 0.55))
        open_ = 0.5 + 0.5 * np.cos(ph)  # 1 hands apart, 0 together
        for s in ("l", "r"):
            m[:, F[s + "_sh"]] += w * (0.55 + 0.25 * open_)
            m[:, F[s + "_el"]] += w * (1.75 - 0.45 * open_)
            m[:, F[s + "_curl"]] = m[:, F[s + "_curl"]] * (1 - w)
    elif name == "dance":
        period = float(rng.uniform(0.7, 1.1))
        ph = _phase(num_frames, fps, start, period)
        s = np.sin(ph)
        m[:, F["root_x"]] += w * 0.25 * s
        m[:, F["root_y"]] += w * 0.08 * np.abs(np.cos(ph))
        m[:, F["lean"]] += w * 0.12 * s
        m[:, F["l_hip"]] += w * 0.3 * np.maximum(s, 0)
        m[:, F["l_knee"]] += w * 0.6 * np.maximum(s, 0)
        m[:, F["r_hip"]] += w * 0.3 * np.maximum(-s, 0)
        m[:, F["r_knee"]] += w * 0.6 * np.maximum(-s, 0)
        m[:, F["l_sh"]] += w * (1.2 + 0.8 * s)
        m[:, F["r_sh"]] += w * (1.2 - 0.8 * s)
        m[:, F["l_el"]] += w * (-0.6 + 0.5 * np.cos(ph))
        m[:, F["r_el"]] += w * (-0.6 - 0.5 * np.cos(ph))
        m[:, F["head_roll"]] += w * 0.12 * s
    elif name == "turn":
        direction = 1 if rng.random() < 0.5 else -1
        m[:, F["body_yaw"]] += direction * 0.8 * w
        m[:, F["head_yaw"]] += direction * 0.3 * w
    elif name == "shrug":
        ph = _phase(num_frames, fps, start, rng.uniform(1.0, 1.6))
        up = w * (0.5 - 0.5 * np.cos(ph))
        for s in ("l", "r"):
            m[:, F[s + "_sh"]] += up * 0.5
            m[:, F[s + "_el"]] += up * -1.6
            m[:, F[s + "_curl"]] = m[:, F[s + "_curl"]] * (1 - w)
        m[:, F["head_roll"]] += up * 0.15
        m[:, F["root_y"]] += -up * 0.05
    elif name == "arms_up":
        for s in ("l", "r"):
            m[:, F[s + "_sh"]] += w * 2.5
            m[:, F[s + "_el"]] += w * -0.3
        m[:, F["head_pitch"]] += -w * 0.15
    del other
    return m


# ----------------------------------------------------------------------------------------------
# Retargeting poses from real video


def _angle_down(v: np.ndarray) -> np.ndarray:
    """Angle of image vectors ``(..., 2)`` from straight down, positive toward +x."""
    return np.arctan2(v[..., 0], v[..., 1])


def motion_from_keypoints(kp: np.ndarray, rest_fill: np.ndarray | None = None) -> np.ndarray:
    """Joint angles ``(T, P)`` from keypoints ``(T, 95, 3)`` (MediaPipe or any), so a real person's
    movement drives a toon character with its own proportions.

    Missing points (confidence < 0.3) keep the rest pose for the joints they determine. The image
    aspect ratio is not known here, so keypoints should be in square units (x scaled by W/H) if
    the source was not square.
    """
    from models.keypoints import INDEX

    n = kp.shape[0]
    m = rest_motion(n) if rest_fill is None else rest_fill.copy()
    p = kp[..., :2].astype(np.float64)
    ok = kp[..., 2] >= 0.3

    def vec(a: str, b: str):
        return p[:, INDEX[b]] - p[:, INDEX[a]], ok[:, INDEX[a]] & ok[:, INDEX[b]]

    mid_sh = (p[:, INDEX["left_shoulder"]] + p[:, INDEX["right_shoulder"]]) / 2
    mid_hip = (p[:, INDEX["left_hip"]] + p[:, INDEX["right_hip"]]) / 2
    torso_ok = ok[:, INDEX["left_shoulder"]] & ok[:, INDEX["right_shoulder"]]
    hips_ok = ok[:, INDEX["left_hip"]] & ok[:, INDEX["right_hip"]]
    up = mid_hip - mid_sh
    lean = np.where(hips_ok & torso_ok, -_angle_down(up), 0.0)
    m[:, F["lean"]] = lean
    for side, sign in (("left", 1.0), ("right", -1.0)):
        s = side[0]
        upper, ok_u = vec(side + "_shoulder", side + "_elbow")
        fore, ok_f = vec(side + "_elbow", side + "_wrist")
        hand, ok_h = vec(side + "_wrist", side + "_index")
        a_u = _angle_down(upper) - lean
        a_f = _angle_down(fore) - lean
        a_h = _angle_down(hand) - lean
        m[:, F[s + "_sh"]] = np.where(ok_u, sign * a_u, m[:, F[s + "_sh"]])
        m[:, F[s + "_el"]] = np.where(ok_u & ok_f, -sign * _wrap(a_f - a_u), m[:, F[s + "_el"]])
        m[:, F[s + "_wr"]] = np.where(ok_f & ok_h, -sign * _wrap(a_h - a_f), m[:, F[s + "_wr"]])
        thigh, ok_t = vec(side + "_hip", side + "_knee")
        shin, ok_s = vec(side + "_knee", side + "_ankle")
        a_t = _angle_down(thigh) - lean
        m[:, F[s + "_hip"]] = np.where(ok_t, sign * a_t, m[:, F[s + "_hip"]])
        m[:, F[s + "_knee"]] = np.where(ok_t & ok_s, -sign * _wrap(_angle_down(shin) - lean - a_t),
                                       m[:, F[s + "_knee"]])
    # Head: roll from the eyes' line, yaw from where the nose sits between the ears.
    eye_v, ok_e = vec("right_eye", "left_eye")
    m[:, F["head_roll"]] = np.where(ok_e, np.arctan2(eye_v[:, 1], eye_v[:, 0]) - lean, m[:, F["head_roll"]])
    ears_ok = ok[:, INDEX["left_ear"]] & ok[:, INDEX["right_ear"]] & ok[:, INDEX["nose"]]
    el, er = p[:, INDEX["left_ear"], 0], p[:, INDEX["right_ear"], 0]
    rel = (p[:, INDEX["nose"], 0] - (el + er) / 2) / np.maximum(np.abs(el - er), 1e-3)
    m[:, F["head_yaw"]] = np.where(ears_ok, np.clip(rel * 1.6, -0.9, 0.9), m[:, F["head_yaw"]])
    # Root sway: the shoulders' centre relative to its mean, in shoulder widths.
    sw = np.linalg.norm(p[:, INDEX["left_shoulder"]] - p[:, INDEX["right_shoulder"]], axis=-1)
    scale = np.median(sw[torso_ok]) if torso_ok.any() else 1.0
    if torso_ok.any():
        cx = mid_sh[:, 0] - np.median(mid_sh[torso_ok, 0])
        cy = mid_sh[:, 1] - np.median(mid_sh[torso_ok, 1])
        m[:, F["root_x"]] = np.where(torso_ok, cx / max(scale, 1e-3) * 1.2, 0.0)
        m[:, F["root_y"]] = np.where(torso_ok, cy / max(scale, 1e-3) * 1.2, 0.0)
    return m.astype(np.float32)


def _wrap(a: np.ndarray) -> np.ndarray:
    return (a + np.pi) % (2 * np.pi) - np.pi
