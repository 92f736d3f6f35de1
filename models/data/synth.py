"""The synthetic toon world: one seeded clip at a time, and the ``synth`` dataset builder.

Every clip is a pure function of ``(seed, index)`` (and the speech bank, when one is given), so a
dataset can be built by many processes, in any order, and still be byte-identical.

A clip is one of:

* **speech** (most): a line from the speech bank (spoken, sung or chanted), lips from its phoneme
  timings, head motion and gestures from its loudness contour, blinks and idle sway;
* **action**: a deliberate action (wave, point, clap, dance, turn, shrug, arms up, idle), with or
  without speech at the same time;
* **driven**: the movement of a real person (poses from a prepared real-video dataset), retargeted
  to the character, with or without speech.

Quality failures are injected at fixed rates and flagged: lip-sync (the audio is shifted by 0.3-1 s or
replaced by another line) and pose visibility (a foreground object hides part of the body, or the
camera cuts the character off). The keypoints stay truthful: hidden points get confidence 0.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.config import resolution_for
from models.data import motion as mo
from models.data.captions import make_caption
from models.data.format import Clip, DatasetWriter, EncodedClip, audio_samples, encode_clip
from models.data.speech import SAMPLE_RATE, SpeechBank, Utterance, random_utterance
from models.data.toon import (
    ASPECTS,
    FRAMINGS,
    Camera,
    make_camera,
    make_texture,
    random_character,
    render_background,
    render_frames,
    rig,
)
from models.data.visemes import mouth_track, rest_track
from models.keypoints import FACE_START, INDEX, LEFT_HAND_START, RIGHT_HAND_START
from models.media import DEFAULT_FPS

LIPSYNC_FAIL_RATE = 0.12
POSE_FAIL_RATE = 0.10
MAX_SECONDS = 8.0
MIN_SECONDS = 2.0


@dataclass(frozen=True)
class SynthConfig:
    area: int = 128 * 128
    fps: float = DEFAULT_FPS
    seed: int = 0
    min_seconds: float = MIN_SECONDS
    max_seconds: float = MAX_SECONDS
    lipsync_fail_rate: float = LIPSYNC_FAIL_RATE
    pose_fail_rate: float = POSE_FAIL_RATE
    bank: str | None = None  # speech bank folder; None synthesises each line on the fly
    drive: str | None = None  # prepared real dataset whose poses can drive characters
    drive_rate: float = 0.2
    # Fix choices (tests, previews): framing, aspect ("3:4"), style, kind, mode, action.
    framing: str | None = None
    # Draw the framing with these weights ({"face": 0.5, "portrait": 0.5}); None: the default mix
    # (portrait 0.4, half 0.35, full 0.25), which the datasets made before "face" existed used.
    framings: dict[str, float] | None = None
    aspect: str | None = None
    style: str | None = None
    kind: str | None = None
    mode: str | None = None
    action: str | None = None


_BANKS: dict[str, SpeechBank] = {}
_DRIVERS: dict[str, object] = {}


def _utterance(cfg: SynthConfig, rng: np.random.Generator) -> Utterance:
    if cfg.bank:
        bank = _BANKS.get(cfg.bank) or _BANKS.setdefault(cfg.bank, SpeechBank(cfg.bank))
        return bank[int(rng.integers(len(bank)))]
    return random_utterance(rng)


def _driver_motion(cfg: SynthConfig, rng: np.random.Generator, num_frames: int) -> np.ndarray | None:
    """Joint angles from a random window of a real clip's keypoints, or None if none is usable."""
    from models.data.format import ClipStore

    store = _DRIVERS.get(cfg.drive) or _DRIVERS.setdefault(cfg.drive, ClipStore(cfg.drive))
    usable = [i for i, r in enumerate(store.records) if r["pose_ok"]]
    if not usable:
        return None
    i = usable[int(rng.integers(len(usable)))]
    rec = store.records[i]
    d = store.read(i, frames=False)
    kp = d["keypoints"].copy()
    kp[..., 0] *= rec["width"] / rec["height"]  # square units for angles
    start = int(rng.integers(0, max(1, len(kp) - num_frames + 1)))
    kp = kp[start: start + num_frames]
    if len(kp) < num_frames:  # loop a short source
        reps = int(np.ceil(num_frames / len(kp)))
        kp = np.concatenate([kp, kp[::-1]] * reps)[:num_frames]
    return mo.motion_from_keypoints(kp)


def _occluder(rng: np.random.Generator, num_frames: int) -> np.ndarray:
    """A foreground box ``(T, 4, 2)`` in frame units covering 35-60 % of the width, sliding a bit."""
    w = rng.uniform(0.35, 0.6)
    top = rng.uniform(0.25, 0.6)
    from_left = rng.random() < 0.5
    x0 = 0.0 if from_left else 1.0 - w
    drift = rng.uniform(-0.1, 0.1) * np.linspace(0, 1, num_frames)
    boxes = np.zeros((num_frames, 4, 2), np.float32)
    for f in range(num_frames):
        a = x0 + drift[f] - (0.05 if from_left else -0.05)
        boxes[f] = [[a, top], [a + w + 0.05, top], [a + w + 0.05, 1.05], [a, 1.05]]
    return boxes


def _inside_boxes(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Whether each point ``(T, K, 2)`` lies in its frame's axis-aligned box ``(T, 4, 2)``."""
    lo = boxes.min(1)[:, None]
    hi = boxes.max(1)[:, None]
    return ((points >= lo) & (points <= hi)).all(-1)


_ARM_POINTS = {
    side: [INDEX[f"{side}_{j}"] for j in ("elbow", "wrist", "pinky", "index", "thumb")]
    + list(range(LEFT_HAND_START if side == "left" else RIGHT_HAND_START,
                 (LEFT_HAND_START if side == "left" else RIGHT_HAND_START) + 21))
    for side in ("left", "right")
}


def _hidden_behind_torso(kp: np.ndarray, body_yaw: np.ndarray) -> np.ndarray:
    """``(T, K)`` True for far-side arm points the torso hides when the body is turned (the
    renderer draws that arm behind the torso when ``|body_yaw| > 0.4``)."""
    import cv2

    hidden = np.zeros(kp.shape[:2], bool)
    for f in np.flatnonzero(np.abs(body_yaw) > 0.4):
        far = "left" if body_yaw[f] < 0 else "right"
        ls, rs = kp[f, INDEX["left_shoulder"], :2], kp[f, INDEX["right_shoulder"], :2]
        lh, rh = kp[f, INDEX["left_hip"], :2], kp[f, INDEX["right_hip"], :2]
        poly = np.array([ls + (ls - rs) * 0.08, rs - (ls - rs) * 0.08, rh - (lh - rh) * 0.12, lh + (lh - rh) * 0.12],
                        np.float32)
        for k in _ARM_POINTS[far]:
            x, y = float(kp[f, k, 0]), float(kp[f, k, 1])
            hidden[f, k] = cv2.pointPolygonTest(poly, (x, y), False) > 0
    return hidden


def synth_clip(cfg: SynthConfig, index: int) -> Clip:
    """Render clip ``index`` of the dataset that ``cfg.seed`` defines."""
    rng = np.random.default_rng([cfg.seed, index, 0xC11F])
    fps = cfg.fps
    ch = random_character(rng, style=cfg.style, kind=cfg.kind)
    if cfg.framing:
        framing = cfg.framing
    elif cfg.framings:
        names = list(cfg.framings)
        w = np.array([cfg.framings[k] for k in names], np.float64)
        framing = names[int(rng.choice(len(names), p=w / w.sum()))]
    else:
        framing = FRAMINGS[int(rng.choice(3, p=[0.4, 0.35, 0.25]))]
    aspect_name = cfg.aspect or list(ASPECTS)[int(rng.choice(4, p=[0.3, 0.25, 0.25, 0.2]))]
    height, width = resolution_for(ASPECTS[aspect_name], cfg.area)
    mode = cfg.mode or ("speech", "action", "driven")[int(rng.choice(3, p=[0.65, 0.25, 0.10]))]
    if mode == "driven" and not cfg.drive:
        mode = "action"
    speaking = mode == "speech" or rng.random() < 0.4
    if ch.held == "ukulele" and mode != "speech":
        ch.held = "microphone"  # strumming would freeze the arms an action needs

    # Sound and lips.
    utt = _utterance(cfg, rng) if speaking else None
    lead = float(rng.uniform(0.1, 0.6))
    if utt is not None:
        seconds = lead + utt.duration + float(rng.uniform(0.2, 0.8))
    else:
        seconds = float(rng.uniform(cfg.min_seconds, 5.0))
    seconds = float(np.clip(seconds, cfg.min_seconds, cfg.max_seconds))
    n = max(1, int(round(seconds * fps)))
    n_audio = audio_samples(n, fps, SAMPLE_RATE)
    audio = np.zeros(n_audio, np.float32)
    if utt is not None:
        a0 = int(lead * SAMPLE_RATE)
        seg = utt.audio[: max(0, n_audio - a0)]
        audio[a0: a0 + len(seg)] = seg
        mouth = mouth_track(utt.phonemes, fps, n, audio=utt.audio, time_offset=lead)
    else:
        mouth = rest_track(n)

    # Movement.
    action = None
    gesture = None
    if mode == "speech":
        gesture = mo.GESTURE_STYLES[int(rng.choice(4, p=[0.2, 0.35, 0.3, 0.15]))]
        mot = mo.speech_motion(rng, audio, n, fps, gesture)
    elif mode == "action":
        action = cfg.action or mo.ACTIONS[int(rng.integers(len(mo.ACTIONS)))]
        mot = mo.action_motion(action, rng, n, fps)
        if utt is not None:  # talking while acting: add the head's speech motion
            sm = mo.speech_motion(rng, audio, n, fps, "still")
            for name in ("head_pitch", "head_yaw", "head_roll"):
                mot[:, mo.F[name]] += sm[:, mo.F[name]]
    else:
        mot = _driver_motion(cfg, rng, n)
        if mot is None:
            mode, action = "action", "idle"
            mot = mo.action_motion("idle", rng, n, fps)
    mot = mot + mo.life_motion(rng, n, fps)
    if ch.held == "ukulele":  # strumming pose overrides the arms
        t = np.arange(n) / fps
        mot[:, mo.F["l_sh"]], mot[:, mo.F["l_el"]], mot[:, mo.F["l_wr"]] = 0.55, -1.0, 0.2
        mot[:, mo.F["r_sh"]], mot[:, mo.F["r_el"]] = 0.2, 1.45
        mot[:, mo.F["r_wr"]] = 0.3 * np.sin(2 * np.pi * t * rng.uniform(2, 4))
    elif ch.held:
        mot[:, mo.F["l_curl"]] = np.maximum(mot[:, mo.F["l_curl"]], 0.8 if ch.held_side == "l" else 0)
        mot[:, mo.F["r_curl"]] = np.maximum(mot[:, mo.F["r_curl"]], 0.8 if ch.held_side == "r" else 0)

    # Camera, quality failures.
    cam = make_camera(ch, framing, height, width, rng)
    lipsync_ok, pose_ok, failure = True, True, None
    if utt is not None and rng.random() < cfg.lipsync_fail_rate:
        lipsync_ok = False
        if rng.random() < 0.5:
            shift = int(rng.uniform(0.3, 1.0) * SAMPLE_RATE) * (1 if rng.random() < 0.5 else -1)
            audio = np.roll(audio, shift)
            failure = f"audio shifted {shift / SAMPLE_RATE:+.2f} s"
        else:
            other = random_utterance(np.random.default_rng([cfg.seed, index, 0x5A9])) if not cfg.bank else \
                _utterance(cfg, np.random.default_rng([cfg.seed, index, 0x5A9]))
            audio = np.zeros(n_audio, np.float32)
            seg = other.audio[:n_audio]
            audio[: len(seg)] = seg
            failure = "audio swapped with another line"
    occluder = None
    if rng.random() < cfg.pose_fail_rate:
        pose_ok = False
        if rng.random() < 0.5:
            occluder = _occluder(rng, n)
            failure = (failure + "; " if failure else "") + "body occluded"
        else:
            # Camera pushed in and off-centre: head or limbs leave the frame.
            z = float(rng.uniform(1.3, 1.8))
            cx, cy = cam.width / 2, cam.height * 0.3  # zoom about the upper body, then slide sideways
            slide = float(rng.choice([-1, 1])) * cam.width * float(rng.uniform(0.15, 0.3))
            cam = Camera(cam.height, cam.width, cam.scale * z, cx + (cam.ox - cx) * z + slide,
                         cy + (cam.oy - cy) * z, cam.framing)
            failure = (failure + "; " if failure else "") + "character cut off by the frame"

    rg = rig(ch, mot, mouth)
    kp = np.zeros((n, rg.points.shape[1], 3), np.float32)
    kp[..., :2] = cam.to_unit(rg.points)
    inside = (kp[..., 0] >= 0) & (kp[..., 0] <= 1) & (kp[..., 1] >= 0) & (kp[..., 1] <= 1)
    visible = rg.visible & inside
    if occluder is not None:
        visible &= ~_inside_boxes(kp[..., :2], occluder)
    visible &= ~_hidden_behind_torso(kp, rg.body_yaw)
    kp[..., 2] = visible.astype(np.float32)
    # Lip sync cannot be checked on lips that are out of view: a real filter rejects such clips too.
    lips_seen = kp[:, FACE_START: FACE_START + 10, 2].min(1) > 0
    if lipsync_ok and utt is not None and lips_seen.mean() < 0.8:
        lipsync_ok = False
        failure = (failure + "; " if failure else "") + "lips not visible"
    bg = render_background(ch.background, height * 2, width * 2)
    texture = make_texture(rng, height, width) if ch.style == "textured" else None
    frames = render_frames(ch, rg, cam, mot, bg, texture, occluder)

    caption = make_caption(rng, ch.describe(), framing, action, utt.style if utt else None,
                           utt.language if utt else None, gesture, driven_by_video=mode == "driven")
    meta = {
        "seed": cfg.seed, "index": index, "mode": mode, "action": action, "gesture": gesture,
        "framing": framing, "aspect": aspect_name, "character": ch.describe(), "failure": failure,
        "speech": None if utt is None else {
            "text": utt.text, "voice": utt.voice, "language": utt.language, "style": utt.style,
            "rate": utt.rate, "pitch": utt.pitch, "start_s": lead,
        },
    }
    return Clip(f"synth-{cfg.seed}-{index:07d}", frames, audio, kp, caption, fps, lipsync_ok, pose_ok,
                mouth, "synthetic", meta)


def _encode_one(args: tuple[SynthConfig, int]) -> EncodedClip:
    cfg, index = args
    return encode_clip(synth_clip(cfg, index))


def iter_encoded(cfg: SynthConfig, indices: range, workers: int) -> Iterator[EncodedClip]:
    if workers <= 1:
        for i in indices:
            yield _encode_one((cfg, i))
        return
    import multiprocessing as mp

    ctx = mp.get_context("fork" if hasattr(os, "fork") else "spawn")
    with ctx.Pool(workers) as pool:
        yield from pool.imap(_encode_one, [(cfg, i) for i in indices], chunksize=2)


def build_synthetic_dataset(
    out: str | os.PathLike, clips: int, cfg: SynthConfig, workers: int = 1,
    progress: Callable[[int, int], None] | None = None, shard_bytes: int | None = None,
) -> Path:
    """Render ``clips`` clips into a dataset folder; returns the index path."""
    meta = {"kind": "synthetic", "seed": cfg.seed, "area": cfg.area, "speech_bank": cfg.bank,
            "framings": cfg.framings}
    kw = {"shard_bytes": shard_bytes} if shard_bytes else {}
    with DatasetWriter(out, cfg.fps, SAMPLE_RATE, meta=meta, **kw) as w:
        for k, enc in enumerate(iter_encoded(cfg, range(clips), workers)):
            w.add(enc)
            if progress:
                progress(k + 1, clips)
    return Path(out) / "index.json"
