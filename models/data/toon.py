"""Procedural toon characters: seeded appearance, a skeleton in the project's keypoint layout, and a
fast numpy/OpenCV renderer.

Everything is in *character units* (one head height = 1, y down, origin between the hips) until the
camera maps it to the frame. The renderer draws every body part *from the keypoints it reports*
(limbs between joints, lips through the lip points, eyelids through the lid points), so the keypoints
of a clip are exactly what was drawn. Frames are drawn at 2x and area-downsampled (anti-aliasing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from models.data.motion import F
from models.data.visemes import OPEN_THRESHOLD
from models.keypoints import (
    INDEX,
    LEFT_HAND_START,
    NUM_KEYPOINTS,
    RIGHT_HAND_START,
)

FRAMINGS = ("portrait", "half", "full", "face")  # "face": a close-up of the head, the mouth large
ASPECTS = {"1:1": 1.0, "3:4": 3 / 4, "9:16": 9 / 16, "16:9": 16 / 9}
STYLES = ("flat", "outlined", "shaded", "textured")
KINDS = ("human", "cat", "bear", "bunny", "robot", "alien")
HELD = ("microphone", "maracas", "ukulele")
BACKGROUNDS = ("solid", "gradient", "stripes", "dots", "room", "sky", "checker")
HAIR = ("none", "short", "long", "bob", "spiky", "bun", "ponytail", "curly")
FACE_SHAPES = ("oval", "round", "square", "long", "heart")
TOPS = ("tshirt", "longsleeve", "dress", "jacket", "tank")

SKIN_TONES = (
    (255, 224, 196), (241, 194, 167), (224, 172, 128), (198, 134, 94), (161, 102, 69), (120, 74, 50),
    (92, 58, 40), (250, 210, 180),
)
FUR_TONES = (
    (240, 150, 60), (150, 150, 160), (250, 250, 245), (120, 85, 60), (60, 60, 70), (235, 200, 150),
    (255, 190, 210), (130, 200, 120),
)
HAIR_COLORS = (
    (30, 25, 25), (70, 45, 30), (120, 80, 40), (200, 160, 90), (230, 200, 120), (160, 60, 30),
    (200, 200, 205), (90, 60, 140), (230, 90, 150), (40, 120, 200), (60, 160, 90),
)


def _color(rng: np.random.Generator, sat: float = 0.6, val: float = 0.85) -> tuple[int, int, int]:
    h = rng.uniform(0, 180)
    s = np.clip(rng.normal(sat, 0.2), 0.15, 1.0) * 255
    v = np.clip(rng.normal(val, 0.12), 0.3, 1.0) * 255
    hsv = np.array([[[h, s, v]]], np.float32).astype(np.uint8)
    r, g, b = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]
    return int(r), int(g), int(b)


def _shade(c, f: float) -> tuple[int, int, int]:
    return tuple(int(np.clip(v * f, 0, 255)) for v in c)


@dataclass
class Character:
    """Everything that fixes how one character looks (all drawn from one seed)."""

    kind: str
    style: str
    face_shape: str
    head_size: float  # head height in units (1.0 = the unit); toons have big heads
    head_aspect: float  # width / height
    torso_len: float
    shoulder_w: float
    hip_w: float
    upper_arm: float
    fore_arm: float
    hand_len: float
    thigh: float
    shin: float
    limb_w: float
    neck_len: float
    skin: tuple[int, int, int]
    hair: str
    hair_color: tuple[int, int, int]
    top: str
    top_color: tuple[int, int, int]
    bottom_color: tuple[int, int, int]
    shoe_color: tuple[int, int, int]
    eye_size: float
    eye_spacing: float
    iris_color: tuple[int, int, int]
    lip_color: tuple[int, int, int]
    glasses: bool
    blush: bool
    held: str | None
    held_side: str
    held_color: tuple[int, int, int]
    outline: tuple[int, int, int]
    light: tuple[float, float]
    background: dict = field(default_factory=dict)

    @property
    def nonhuman(self) -> bool:
        return self.kind != "human"

    def describe(self) -> dict:
        return {
            "kind": self.kind, "style": self.style, "face_shape": self.face_shape, "hair": self.hair,
            "hair_color": self.hair_color, "top": self.top, "top_color": self.top_color,
            "bottom_color": self.bottom_color, "glasses": self.glasses, "held": self.held,
            "background": self.background.get("kind"), "skin": self.skin,
        }


def random_character(rng: np.random.Generator, style: str | None = None, kind: str | None = None) -> Character:
    kind = kind or KINDS[int(rng.choice(len(KINDS), p=[0.6, 0.1, 0.08, 0.08, 0.08, 0.06]))]
    style = style or STYLES[int(rng.integers(len(STYLES)))]
    if kind == "human":
        skin = SKIN_TONES[int(rng.integers(len(SKIN_TONES)))]
    elif kind == "robot":
        skin = (int(rng.integers(150, 215)),) * 2 + (int(rng.integers(170, 235)),)
    elif kind == "alien":
        skin = _color(rng, 0.5, 0.8)
    else:
        skin = FUR_TONES[int(rng.integers(len(FUR_TONES)))]
    skin = tuple(int(np.clip(c + rng.integers(-8, 9), 0, 255)) for c in skin)
    hair = HAIR[int(rng.integers(len(HAIR)))] if kind == "human" else "none"
    if kind in ("cat", "bear", "bunny") and rng.random() < 0.3:
        hair = "short"
    held = None
    if rng.random() < 0.25:
        held = HELD[int(rng.integers(len(HELD)))]
    bg_kind = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    background = {"kind": bg_kind, "c1": _color(rng, 0.35, 0.85), "c2": _color(rng, 0.45, 0.7),
                  "c3": _color(rng, 0.3, 0.95), "seed": int(rng.integers(1 << 30))}
    lip = _shade(skin, 0.75) if kind != "human" else (
        int(rng.integers(170, 230)), int(rng.integers(70, 120)), int(rng.integers(80, 130)))
    head_size = float(rng.uniform(1.0, 1.35))
    return Character(
        kind=kind, style=style, face_shape=FACE_SHAPES[int(rng.integers(len(FACE_SHAPES)))],
        head_size=head_size, head_aspect=float(rng.uniform(0.78, 1.0)) if kind != "bear" else 1.0,
        torso_len=float(rng.uniform(1.15, 1.5)), shoulder_w=float(rng.uniform(0.95, 1.35)),
        hip_w=float(rng.uniform(0.55, 0.8)), upper_arm=float(rng.uniform(0.75, 0.95)),
        fore_arm=float(rng.uniform(0.65, 0.85)), hand_len=float(rng.uniform(0.3, 0.4)),
        thigh=float(rng.uniform(0.85, 1.1)), shin=float(rng.uniform(0.8, 1.05)),
        limb_w=float(rng.uniform(0.17, 0.26)), neck_len=float(rng.uniform(0.12, 0.25)),
        skin=skin, hair=hair, hair_color=HAIR_COLORS[int(rng.integers(len(HAIR_COLORS)))],
        top=TOPS[int(rng.integers(len(TOPS)))],
        top_color=_color(rng), bottom_color=_color(rng, 0.4, 0.5), shoe_color=_color(rng, 0.3, 0.35),
        eye_size=float(rng.uniform(0.8, 1.35)), eye_spacing=float(rng.uniform(0.36, 0.48)),
        iris_color=_color(rng, 0.6, 0.5), lip_color=lip, glasses=bool(kind == "human" and rng.random() < 0.15),
        blush=bool(rng.random() < 0.3), held=held, held_side=("l", "r")[int(rng.integers(2))],
        held_color=_color(rng, 0.5, 0.6), outline=_shade(_color(rng, 0.3, 0.2), 0.6),
        light=(float(rng.uniform(-1, 1)), -1.0), background=background,
    )


# ----------------------------------------------------------------------------------------------
# Camera


@dataclass(frozen=True)
class Camera:
    """Maps character units to the frame: ``pixel = offset + scale * point``; x, y in [0, 1] of the frame."""

    height: int
    width: int
    scale: float  # pixels per unit
    ox: float
    oy: float
    framing: str

    def to_unit(self, pts: np.ndarray) -> np.ndarray:
        out = np.empty_like(pts)
        out[..., 0] = (self.ox + self.scale * pts[..., 0]) / self.width
        out[..., 1] = (self.oy + self.scale * pts[..., 1]) / self.height
        return out


def head_top(ch: Character) -> float:
    return -(ch.torso_len + ch.neck_len + ch.head_size * 0.95)


def make_camera(ch: Character, framing: str, height: int, width: int, rng: np.random.Generator) -> Camera:
    ears = 0.35 * ch.head_size if ch.kind in ("bunny", "robot", "alien", "cat", "bear") else 0.0  # antennae too
    top = head_top(ch) - 0.25 * ch.head_size - ears
    # The height decides the zoom; the width only has to keep the subject's core in view (arms may
    # leave the frame in wide gestures, shoulders in tight portraits, as in real footage).
    if framing == "portrait":
        bottom = -ch.torso_len + 0.75
        span_w = 1.7 * ch.head_size * ch.head_aspect
    elif framing == "half":
        bottom = 0.3
        span_w = ch.shoulder_w * 1.5
    elif framing == "full":
        bottom = ch.thigh + ch.shin + 0.3
        span_w = ch.shoulder_w * 1.6
    elif framing == "face":  # chin and a little neck: the face fills the frame, the mouth 1.5-1.8x a portrait's
        top = head_top(ch) - 0.08 * ch.head_size - ears
        bottom = -(ch.torso_len + ch.neck_len) + 0.2 * ch.head_size
        span_w = 1.1 * ch.head_size * ch.head_aspect  # ears may leave the frame
    else:
        raise ValueError(f"unknown framing '{framing}'; known: {', '.join(FRAMINGS)}")
    span_h = bottom - top
    zoom = rng.uniform(0.84, 0.96) if framing == "full" else rng.uniform(0.9, 1.05)  # feet stay in
    scale = min(height / span_h, width / span_w) * float(zoom)
    ox = width / 2 + float(rng.uniform(-0.08, 0.08)) * width
    # Head near the top, as people frame talking heads; the rest of the height shows more body.
    oy = float(rng.uniform(0.02, 0.06)) * height - top * scale
    return Camera(height, width, float(scale), ox, float(oy), framing)


# ----------------------------------------------------------------------------------------------
# Skeleton


def _rot(a: np.ndarray) -> np.ndarray:
    """Direction vectors ``(..., 2)`` for angles measured from straight down toward +x."""
    return np.stack([np.sin(a), np.cos(a)], -1)


@dataclass
class Rig:
    """Per-frame geometry in character units: keypoints ``(T, K, 2)``, their visibility, and
    what the renderer needs beyond them."""

    points: np.ndarray  # (T, K, 2)
    visible: np.ndarray  # (T, K) bool: on the visible side of the head / body
    head_c: np.ndarray  # (T, 2)
    head_ang: np.ndarray  # (T,)
    head_r: np.ndarray  # (2,) half width, half height
    head_yaw: np.ndarray  # (T,)
    body_yaw: np.ndarray  # (T,)
    neck: np.ndarray  # (T, 2) base of the neck
    gap: np.ndarray  # (T,) drawn mouth opening (0 when closed)
    blink: np.ndarray  # (T,)


_FINGERS = ((1, 2, 3, 4), (5, 6, 7, 8), (9, 10, 11, 12), (13, 14, 15, 16), (17, 18, 19, 20))


def _hand(wrist, direction, thumb_side, length, curl, point) -> np.ndarray:
    """21 hand points ``(T, 21, 2)`` from the wrist, the hand's direction and its thumb side."""
    t = wrist.shape[0]
    out = np.zeros((t, 21, 2))
    out[:, 0] = wrist
    palm = 0.45 * length
    spread = 0.22 * length
    for fi, chain in enumerate(_FINGERS):
        if fi == 0:  # thumb: from the palm's thumb side, angled out
            base = wrist + thumb_side * spread * 0.5 + direction * palm * 0.15
            d = direction * 0.6 + thumb_side * 0.8
            d /= np.linalg.norm(d, axis=-1, keepdims=True)
            seg = 0.2 * length * (1 - 0.4 * curl[:, None])
        else:
            off = (0.75 - (fi - 1) * 0.5) * spread
            base = wrist + direction * palm + thumb_side * off
            c = curl if fi != 1 else curl * (1 - point)
            seg = (0.55 * length / 3) * (1 - 0.72 * c[:, None])
            bend = (0.5 * c)[:, None]
            d = direction * (1 - bend) - thumb_side * bend * 0.3 * (fi - 2.5) / 2.5
            d /= np.linalg.norm(d, axis=-1, keepdims=True)
        p = base
        out[:, chain[0]] = p
        for j in chain[1:]:
            p = p + d * seg
            out[:, j] = p
    return out


def rig(ch: Character, motion: np.ndarray, mouth: np.ndarray) -> Rig:
    """Forward kinematics: motion ``(T, P)`` and mouth ``(T, 4)`` -> all 95 points in character units."""
    m = motion.astype(np.float64)
    t = m.shape[0]
    pts = np.zeros((t, NUM_KEYPOINTS, 2))
    vis = np.ones((t, NUM_KEYPOINTS), bool)
    root = np.stack([m[:, F["root_x"]], m[:, F["root_y"]]], -1)
    lean = m[:, F["lean"]]
    yaw = np.clip(m[:, F["body_yaw"]], -1.2, 1.2)
    cy = np.cos(yaw)
    up = -_rot(lean)  # unit vector from hips to shoulders
    across = np.stack([np.cos(lean), -np.sin(lean)], -1)  # toward the person's left (+x when upright)
    sh_c = root + up * ch.torso_len
    # Turning: widths foreshorten, the near side slides toward the viewer.
    sh_half = (ch.shoulder_w / 2) * (0.35 + 0.65 * np.abs(cy))
    hip_half = (ch.hip_w / 2) * (0.45 + 0.55 * np.abs(cy))
    shift = 0.12 * np.sin(yaw)
    for side, sign in (("left", 1.0), ("right", -1.0)):
        pts[:, INDEX[side + "_shoulder"]] = sh_c + across * (sign * sh_half + shift)[:, None]
        pts[:, INDEX[side + "_hip"]] = root + across * (sign * hip_half + shift)[:, None]
    hand_pts = {}
    for side, sign in (("left", 1.0), ("right", -1.0)):
        s = side[0]
        upper = lean + sign * m[:, F[s + "_sh"]]
        fore = upper - sign * m[:, F[s + "_el"]]
        hand = fore - sign * m[:, F[s + "_wr"]]
        shp = pts[:, INDEX[side + "_shoulder"]]
        elb = shp + _rot(upper) * ch.upper_arm
        wri = elb + _rot(fore) * ch.fore_arm
        pts[:, INDEX[side + "_elbow"]] = elb
        pts[:, INDEX[side + "_wrist"]] = wri
        hd = _rot(hand)
        thumb = np.stack([-hd[:, 1], hd[:, 0]], -1) * (-sign)  # toward the midline when hanging
        hp = _hand(wri, hd, thumb, ch.hand_len, np.clip(m[:, F[s + "_curl"]], 0, 1),
                   np.clip(m[:, F[s + "_point"]], 0, 1))
        start = LEFT_HAND_START if side == "left" else RIGHT_HAND_START
        pts[:, start:start + 21] = hp
        hand_pts[side] = hp
        pts[:, INDEX[side + "_pinky"]] = hp[:, 17]
        pts[:, INDEX[side + "_index"]] = hp[:, 5]
        pts[:, INDEX[side + "_thumb"]] = hp[:, 3]
        thigh = lean * 0.3 + sign * m[:, F[s + "_hip"]]
        shin = thigh - sign * m[:, F[s + "_knee"]] * -1
        hipp = pts[:, INDEX[side + "_hip"]]
        knee = hipp + _rot(thigh) * ch.thigh
        ankle = knee + _rot(shin) * ch.shin
        pts[:, INDEX[side + "_knee"]] = knee
        pts[:, INDEX[side + "_ankle"]] = ankle
        pts[:, INDEX[side + "_heel"]] = ankle + np.array([0.0, 0.08]) - across * sign * 0.02
        pts[:, INDEX[side + "_foot_index"]] = ankle + np.array([0.0, 0.12]) + across * sign * 0.22
    # Head.
    neck = sh_c
    head_ang = lean + m[:, F["head_roll"]]
    hr = np.array([ch.head_size * 0.5 * ch.head_aspect, ch.head_size * 0.5])
    neck_top = neck + up * ch.neck_len
    head_c = neck_top - _rot(head_ang) * hr[1] * 0.85
    hyaw = np.clip(m[:, F["head_yaw"]] + 0.6 * yaw, -1.2, 1.2)
    pitch = m[:, F["head_pitch"]]
    cos_a, sin_a = np.cos(head_ang), np.sin(head_ang)

    def face(phi, v):
        """Face-surface point at longitude ``phi`` (radians, + toward the person's left) and height
        ``v`` (in half head heights, + down) -> (T, 2), and whether it faces the camera."""
        phi = np.broadcast_to(np.asarray(phi, np.float64), (t,))
        v = np.broadcast_to(np.asarray(v, np.float64), (t,))
        lon = phi + hyaw
        u = np.sin(lon) * hr[0]
        vv = (v + pitch * 0.7 * np.cos(phi)) * hr[1]
        x = u * cos_a + vv * sin_a
        y = -u * sin_a + vv * cos_a
        return head_c + np.stack([x, y], -1), np.cos(lon) > 0.05

    es = ch.eye_spacing
    blink = np.clip(m[:, F["blink"]], 0, 1)
    gx, gy = np.clip(m[:, F["gaze_x"]], -1, 1), np.clip(m[:, F["gaze_y"]], -1, 1)
    ew = 0.17 * ch.eye_size  # eye half width in longitude
    eh = 0.13 * ch.eye_size * (0.9 if ch.kind != "robot" else 0.8)
    ev = -0.02
    for side, sign in (("left", 1.0), ("right", -1.0)):
        ec = sign * es
        outer, vo = face(ec + sign * ew, ev)
        inner, vi = face(ec - sign * ew, ev)
        upper_lid, vu = face(ec, ev - eh + 1.3 * eh * blink)
        lower_lid, _ = face(ec, ev + eh * 0.75)
        iris, viris = face(ec + gx * ew * 0.45, ev + gy * eh * 0.35)
        centre, _ = face(ec, ev)
        pts[:, INDEX[f"face_{side}_eye_outer_corner"]] = outer
        pts[:, INDEX[f"face_{side}_eye_inner_corner"]] = inner
        pts[:, INDEX[f"face_{side}_eye_upper_lid"]] = upper_lid
        pts[:, INDEX[f"face_{side}_eye_lower_lid"]] = lower_lid
        pts[:, INDEX[f"face_{side}_iris"]] = iris
        pts[:, INDEX[side + "_eye"]] = centre
        pts[:, INDEX[side + "_eye_inner"]] = inner
        pts[:, INDEX[side + "_eye_outer"]] = outer
        for name, v in ((f"face_{side}_eye_outer_corner", vo), (f"face_{side}_eye_inner_corner", vi),
                        (f"face_{side}_eye_upper_lid", vu), (f"face_{side}_eye_lower_lid", vu),
                        (side + "_eye", vu), (side + "_eye_inner", vi), (side + "_eye_outer", vo)):
            vis[:, INDEX[name]] = v
        # The iris disappears with the lids closed.
        vis[:, INDEX[f"face_{side}_iris"]] = viris & (blink < 0.6)
        vis[:, INDEX[f"face_{side}_iris"]] &= vu
        ear, vear = face(sign * 1.45, 0.0)
        pts[:, INDEX[side + "_ear"]] = ear
        vis[:, INDEX[side + "_ear"]] = vear
    nose, vn = face(0.0, 0.3)
    pts[:, INDEX["nose"]] = nose
    vis[:, INDEX["nose"]] = vn
    # Mouth from the viseme parameters.
    jaw, width, rnd, clo = (mouth[:, i].astype(np.float64) for i in range(4))
    gap = jaw * (1 - clo)
    gap = np.where(gap > OPEN_THRESHOLD, gap, 0.0)
    mv = 0.52 + 0.06 * jaw
    half_w = np.clip(0.26 + 0.22 * (width - 0.5) - 0.1 * rnd, 0.1, 0.45)
    open_h = gap * (0.42 + 0.25 * rnd)
    lip_t = 0.07 * (1 + 0.6 * rnd)
    u_in, l_in = mv - open_h / 2, mv + open_h / 2
    u_out, l_out = u_in - lip_t, l_in + lip_t * 1.2
    lip_pts = {
        "lip_corner_left": (half_w, mv), "lip_corner_right": (-half_w, mv),
        "lip_upper_outer": (0.0, u_out), "lip_lower_outer": (0.0, l_out),
        "lip_upper_inner": (0.0, u_in), "lip_lower_inner": (0.0, l_in),
        "lip_upper_left": (half_w * 0.5, u_out + lip_t * 0.15),
        "lip_upper_right": (-half_w * 0.5, u_out + lip_t * 0.15),
        "lip_lower_left": (half_w * 0.55, l_out - lip_t * 0.2),
        "lip_lower_right": (-half_w * 0.55, l_out - lip_t * 0.2),
    }
    for name, (phi, v) in lip_pts.items():
        p, vv = face(phi, v)
        pts[:, INDEX["face_" + name]] = p
        vis[:, INDEX["face_" + name]] = vv
    pts[:, INDEX["mouth_left"]] = pts[:, INDEX["face_lip_corner_left"]]
    pts[:, INDEX["mouth_right"]] = pts[:, INDEX["face_lip_corner_right"]]
    vis[:, INDEX["mouth_left"]] = vis[:, INDEX["face_lip_corner_left"]]
    vis[:, INDEX["mouth_right"]] = vis[:, INDEX["face_lip_corner_right"]]
    return Rig(pts, vis, head_c, head_ang, hr, hyaw, yaw, neck, gap, blink)


# ----------------------------------------------------------------------------------------------
# Drawing


SS = 2  # supersampling factor
_SHIFT = 3  # fixed-point bits for sub-pixel coordinates
_ONE = 1 << _SHIFT


class Painter:
    """Draws filled shapes with the character's style (outline, cel shading) on an RGB canvas."""

    def __init__(self, canvas: np.ndarray, style: str, outline: tuple, unit_px: float, light) -> None:
        self.img = canvas
        self.style = style
        self.outline = outline
        self.ow = max(1, int(round(0.035 * unit_px))) if style in ("outlined", "textured") else 0
        lx, ly = light
        n = math.hypot(lx, ly)
        self.light = (lx / n, ly / n)

    @staticmethod
    def _fx(p) -> np.ndarray:
        return np.round(np.asarray(p, np.float64) * _ONE).astype(np.int32)

    def poly(self, pts, color, shade: bool = True) -> None:
        p = self._fx(pts).reshape(-1, 1, 2)
        if self.ow:
            cv2.polylines(self.img, [p], True, self.outline, self.ow * 2, cv2.LINE_8, _SHIFT)
        if self.style == "shaded" and shade:
            cv2.fillPoly(self.img, [p], _shade(color, 0.78), cv2.LINE_8, _SHIFT)
            c = np.asarray(pts, np.float64).mean(0)
            size = np.ptp(np.asarray(pts, np.float64), axis=0).max()
            q = c + (np.asarray(pts) - c) * 0.86 + np.array(self.light) * size * 0.07
            cv2.fillPoly(self.img, [self._fx(q).reshape(-1, 1, 2)], color, cv2.LINE_8, _SHIFT)
        else:
            cv2.fillPoly(self.img, [p], color, cv2.LINE_8, _SHIFT)

    def ellipse(self, c, axes, angle_deg, color, shade: bool = True) -> None:
        ax = (max(1, int(round(axes[0] * _ONE))), max(1, int(round(axes[1] * _ONE))))
        cc = tuple(int(v) for v in self._fx(c))
        if self.ow:
            cv2.ellipse(self.img, cc, ax, angle_deg, 0, 360, self.outline, self.ow * 2, cv2.LINE_8, _SHIFT)
        if self.style == "shaded" and shade:
            cv2.ellipse(self.img, cc, ax, angle_deg, 0, 360, _shade(color, 0.78), -1, cv2.LINE_8, _SHIFT)
            off = np.array(self.light) * max(axes) * 0.12
            c2 = tuple(int(v) for v in self._fx(np.asarray(c) + off))
            ax2 = (max(1, int(ax[0] * 0.86)), max(1, int(ax[1] * 0.86)))
            cv2.ellipse(self.img, c2, ax2, angle_deg, 0, 360, color, -1, cv2.LINE_8, _SHIFT)
        else:
            cv2.ellipse(self.img, cc, ax, angle_deg, 0, 360, color, -1, cv2.LINE_8, _SHIFT)

    def limb(self, a, b, width_px, color, shade: bool = True) -> None:
        w = max(1, int(round(width_px)))
        pa, pb = tuple(int(v) for v in self._fx(a)), tuple(int(v) for v in self._fx(b))
        if self.ow:
            cv2.line(self.img, pa, pb, self.outline, w + 2 * self.ow, cv2.LINE_8, _SHIFT)
        if self.style == "shaded" and shade and w > 3:
            cv2.line(self.img, pa, pb, _shade(color, 0.78), w, cv2.LINE_8, _SHIFT)
            off = np.array(self.light) * w * 0.18
            pa2 = tuple(int(v) for v in self._fx(np.asarray(a) + off))
            pb2 = tuple(int(v) for v in self._fx(np.asarray(b) + off))
            cv2.line(self.img, pa2, pb2, color, max(1, int(w * 0.6)), cv2.LINE_8, _SHIFT)
        else:
            cv2.line(self.img, pa, pb, color, w, cv2.LINE_8, _SHIFT)

    def line(self, a, b, width_px, color) -> None:
        pa, pb = tuple(int(v) for v in self._fx(a)), tuple(int(v) for v in self._fx(b))
        cv2.line(self.img, pa, pb, color, max(1, int(round(width_px))), cv2.LINE_8, _SHIFT)

    def dot(self, c, r, color) -> None:
        cv2.circle(self.img, tuple(int(v) for v in self._fx(c)), max(1, int(round(r * _ONE))), color, -1,
                   cv2.LINE_8, _SHIFT)


def render_background(spec: dict, height: int, width: int) -> np.ndarray:
    """The static backdrop ``(H, W, 3)`` uint8 for one clip (drawn once, copied per frame)."""
    rng = np.random.default_rng(spec["seed"])
    c1, c2, c3 = (np.array(spec[k], np.float32) for k in ("c1", "c2", "c3"))
    kind = spec["kind"]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    yy /= height
    xx /= width
    img = np.empty((height, width, 3), np.float32)
    img[:] = c1
    if kind == "gradient":
        img = c1 * (1 - yy[..., None]) + c2 * yy[..., None]
    elif kind == "stripes":
        ang = rng.uniform(0, np.pi)
        period = rng.uniform(0.08, 0.2)
        phase = (xx * np.cos(ang) + yy * np.sin(ang)) / period
        img = np.where(((phase % 1) < 0.5)[..., None], c1, c3 * 0.5 + c1 * 0.5)
    elif kind == "dots":
        period = rng.uniform(0.06, 0.12)
        d = np.hypot((xx % period) / period - 0.5, (yy * height / width % period) / period - 0.5)
        img = np.where((d < 0.22)[..., None], c3, c1)
    elif kind == "room":
        floor = rng.uniform(0.6, 0.8)
        img = np.where((yy > floor)[..., None], c2, c1)
        wx, wy = rng.uniform(0.05, 0.6), rng.uniform(0.08, 0.3)
        win = (xx > wx) & (xx < wx + 0.3) & (yy > wy) & (yy < wy + 0.25)
        img = np.where(win[..., None], np.array([190, 225, 250], np.float32), img)
        frame = win ^ ((xx > wx + 0.01) & (xx < wx + 0.29) & (yy > wy + 0.01) & (yy < wy + 0.24))
        img = np.where(frame[..., None], c2 * 0.6, img)
    elif kind == "sky":
        sky = np.array([120, 180, 240], np.float32) * (1 - yy[..., None] * 0.4) + 60 * yy[..., None]
        hill = yy > 0.7 + 0.08 * np.sin(xx * rng.uniform(4, 9) + rng.uniform(0, 6))
        img = np.where(hill[..., None], np.array([90, 170, 90], np.float32), sky)
        for _ in range(3):
            cx, cy_, r = rng.uniform(0, 1), rng.uniform(0.05, 0.4), rng.uniform(0.05, 0.1)
            cloud = np.hypot((xx - cx) * width / height, (yy - cy_) * 1.8) < r
            img = np.where(cloud[..., None], np.array([250, 250, 250], np.float32), img)
    elif kind == "checker":
        period = rng.uniform(0.1, 0.25)
        chk = ((xx * width / height / period).astype(int) + (yy / period).astype(int)) % 2 == 0
        img = np.where(chk[..., None], c1, c1 * 0.85 + c3 * 0.15)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A multiplicative paper/canvas texture ``(H, W, 1)`` float32 for the textured style."""
    kind = int(rng.integers(3))
    noise = rng.normal(0, 1, (height // 2 + 1, width // 2 + 1)).astype(np.float32)
    noise = cv2.resize(cv2.GaussianBlur(noise, (0, 0), 0.8), (width, height), interpolation=cv2.INTER_LINEAR)
    tex = 1.0 + 0.06 * noise
    if kind == 1:  # hatching
        yy, xx = np.mgrid[0:height, 0:width]
        tex *= 1.0 - 0.07 * (((xx + yy) % 4) < 1)
    elif kind == 2:  # canvas weave
        yy, xx = np.mgrid[0:height, 0:width]
        tex *= 1.0 - 0.04 * ((xx % 3 == 0) | (yy % 3 == 0))
    return tex[..., None].astype(np.float32)


def _curve(a, m, b, n: int = 7) -> np.ndarray:
    """Quadratic curve through ``a``, ``m`` (at its middle) and ``b``: ``(n, 2)``."""
    ctrl = 2 * np.asarray(m) - (np.asarray(a) + np.asarray(b)) / 2
    s = np.linspace(0, 1, n)[:, None]
    return (1 - s) ** 2 * a + 2 * s * (1 - s) * ctrl + s ** 2 * b


def render_frames(
    ch: Character,
    rg: Rig,
    cam: Camera,
    motion: np.ndarray,
    background: np.ndarray | None = None,
    texture: np.ndarray | None = None,
    occluder: np.ndarray | None = None,
) -> np.ndarray:
    """Draw every frame of a rig: ``(T, H, W, 3)`` uint8. ``occluder``: optional ``(T, 4, 2)`` polygons
    in [0, 1] frame units drawn in front of the character."""
    h, w = cam.height, cam.width
    if background is None:
        background = render_background(ch.background, h * SS, w * SS)
    elif background.shape[:2] != (h * SS, w * SS):
        background = cv2.resize(background, (w * SS, h * SS), interpolation=cv2.INTER_LINEAR)
    s = cam.scale * SS
    px = np.empty_like(rg.points)
    px[..., 0] = (cam.ox + cam.scale * rg.points[..., 0]) * SS
    px[..., 1] = (cam.oy + cam.scale * rg.points[..., 1]) * SS
    head_c = np.stack([(cam.ox + cam.scale * rg.head_c[:, 0]) * SS, (cam.oy + cam.scale * rg.head_c[:, 1]) * SS], -1)
    neck = np.stack([(cam.ox + cam.scale * rg.neck[:, 0]) * SS, (cam.oy + cam.scale * rg.neck[:, 1]) * SS], -1)
    hr = rg.head_r * s
    frames = np.empty((len(px), h, w, 3), np.uint8)
    canvas = np.empty_like(background)
    for f in range(len(px)):
        canvas[:] = background
        p = Painter(canvas, ch.style, ch.outline, s, ch.light)
        _draw_character(p, ch, px[f], head_c[f], neck[f], hr, float(rg.head_ang[f]), float(rg.head_yaw[f]),
                        float(rg.body_yaw[f]), float(rg.gap[f]), float(rg.blink[f]), s, motion[f])
        if occluder is not None:
            q = occluder[f] * np.array([w * SS, h * SS])
            p.style = "flat"
            p.ow = 0
            p.poly(q, (110, 90, 70))
            p.poly(q[[0, 1]].tolist() + [q[1] + (q[2] - q[1]) * 0.15, q[0] + (q[3] - q[0]) * 0.15], (80, 140, 70))
        small = cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA)
        if texture is not None:
            small = np.clip(small.astype(np.float32) * texture, 0, 255).astype(np.uint8)
        frames[f] = small
    return frames


def _draw_character(p: Painter, ch: Character, k: np.ndarray, hc, neck, hr, ang, yaw, body_yaw, gap, blink,
                    s: float, mot: np.ndarray) -> None:
    I = INDEX  # noqa: N806
    lw = ch.limb_w * s
    skin = ch.skin
    top = ch.top_color
    sleeve_long = ch.top in ("longsleeve", "jacket")
    # Which side is nearer the viewer when turned: draw the far side first.
    far, near = (("left", "right") if body_yaw < 0 else ("right", "left"))
    far_behind = abs(body_yaw) > 0.4
    # Legs.
    for side in (far, near):
        hip, knee, ank = k[I[side + "_hip"]], k[I[side + "_knee"]], k[I[side + "_ankle"]]
        leg_col = ch.bottom_color
        p.limb(hip, knee, lw * 1.25, leg_col)
        p.limb(knee, ank, lw * 1.1, leg_col if ch.top != "dress" else skin)
        p.limb(k[I[side + "_heel"]], k[I[side + "_foot_index"]], lw * 0.9, ch.shoe_color)
    if far_behind:
        _draw_arm(p, ch, k, far, lw, sleeve_long)
    # Torso.
    ls, rs, lh, rh = k[I["left_shoulder"]], k[I["right_shoulder"]], k[I["left_hip"]], k[I["right_hip"]]
    sh_out = (ls - rs) * 0.08
    hip_out = (lh - rh) * 0.12
    if ch.top == "dress":
        kn = (k[I["left_knee"]] + k[I["right_knee"]]) / 2
        hem = (lh - rh) * 0.9
        torso = [ls + sh_out, rs - sh_out, rh - hip_out, kn * 0.8 + rh * 0.2 - hem * 0.6,
                 kn * 0.8 + lh * 0.2 + hem * 0.6, lh + hip_out]
    else:
        p.poly([lh + hip_out, rh - hip_out, rh - hip_out + (rh - k[I["right_shoulder"]]) * 0.15,
                lh + hip_out + (lh - k[I["left_shoulder"]]) * 0.15], ch.bottom_color)
        torso = [ls + sh_out, rs - sh_out, rh - hip_out, lh + hip_out]
    # Neck under the collar.
    p.limb(neck, hc, lw * 1.0, _shade(skin, 0.92))
    p.poly(torso, top)
    if ch.top == "jacket":
        mid_top, mid_bot = (ls + rs) / 2, (lh + rh) / 2
        p.poly([mid_top + (ls - rs) * 0.08, mid_top - (ls - rs) * 0.08, mid_bot - (lh - rh) * 0.1,
                mid_bot + (lh - rh) * 0.1], _shade(top, 0.55) if sum(top) > 300 else (235, 235, 235), shade=False)
    elif ch.top == "tank":
        p.poly([ls + (rs - ls) * 0.1, ls + (rs - ls) * 0.25, ls + (rs - ls) * 0.2 + (lh - ls) * 0.05],
               skin, shade=False)
    # Held ukulele sits against the torso, below the arms.
    if ch.held == "ukulele":
        _draw_ukulele(p, ch, k, lw)
    # Head.
    _draw_head(p, ch, k, hc, hr, ang, yaw, gap, blink, s)
    for side in ((near,) if far_behind else (far, near)):
        _draw_arm(p, ch, k, side, lw, sleeve_long)
    if ch.held in ("microphone", "maracas"):
        sides = ("left", "right") if ch.held == "maracas" else ({"l": "left", "r": "right"}[ch.held_side],)
        for side in sides:
            _draw_handheld(p, ch, k, side, lw)


def _draw_arm(p: Painter, ch: Character, k, side: str, lw: float, sleeve_long: bool) -> None:
    I = INDEX  # noqa: N806
    sh, el, wr = k[I[side + "_shoulder"]], k[I[side + "_elbow"]], k[I[side + "_wrist"]]
    upper_col = ch.top_color if ch.top not in ("tank",) else ch.skin
    p.limb(sh, el, lw, upper_col)
    p.limb(el, wr, lw * 0.9, ch.top_color if sleeve_long else ch.skin)
    if ch.top == "tshirt":
        p.limb(sh, sh + (el - sh) * 0.5, lw * 1.15, ch.top_color)
    start = LEFT_HAND_START if side == "left" else RIGHT_HAND_START
    hand = k[start:start + 21]
    palm = np.array([hand[0], hand[5], hand[9], hand[13], hand[17]])
    fw = lw * 0.32
    col = ch.skin if ch.kind != "robot" else _shade(ch.skin, 0.8)
    p.poly(palm[[0, 1, 2, 3, 4]], col, shade=False)
    for chain in _FINGERS:
        pts = hand[list(chain)]
        for a, b in zip(pts[:-1], pts[1:], strict=True):
            p.limb(a, b, fw, col, shade=False)
    p.ellipse(palm.mean(0), (lw * 0.42, lw * 0.42), 0, col)


def _draw_handheld(p: Painter, ch: Character, k, side: str, lw: float) -> None:
    start = LEFT_HAND_START if side == "left" else RIGHT_HAND_START
    hand = k[start:start + 21]
    centre = (hand[0] + hand[9]) / 2
    axis = hand[5] - hand[17]  # across the knuckles, toward the thumb side
    axis = axis / (np.linalg.norm(axis) + 1e-6)
    if ch.held == "microphone":
        # A singer's microphone points from the fist toward the mouth.
        mouth = (k[INDEX["face_lip_corner_left"]] + k[INDEX["face_lip_corner_right"]]) / 2
        axis = mouth - centre
        axis = axis / (np.linalg.norm(axis) + 1e-6)
        tip = centre + axis * lw * 2.6
        p.limb(centre - axis * lw * 0.8, tip, lw * 0.45, (40, 40, 45))
        p.ellipse(tip + axis * lw * 0.35, (lw * 0.55, lw * 0.55), 0, (150, 150, 160))
    else:
        tip = centre + axis * lw * 1.8
        p.limb(centre - axis * lw * 0.3, tip, lw * 0.3, (120, 80, 40))
        ang = math.degrees(math.atan2(axis[1], axis[0]))
        p.ellipse(tip + axis * lw * 0.6, (lw * 0.8, lw * 0.6), ang, ch.held_color)


def _draw_ukulele(p: Painter, ch: Character, k, lw: float) -> None:
    I = INDEX  # noqa: N806
    lwr, rwr = k[I["left_wrist"]], k[I["right_wrist"]]
    body = rwr + (lwr - rwr) * 0.12
    neck_dir = lwr - body
    ang = math.degrees(math.atan2(neck_dir[1], neck_dir[0]))
    p.limb(body, lwr + neck_dir * 0.15, lw * 0.35, (90, 55, 25))
    p.ellipse(body, (lw * 1.5, lw * 1.15), ang, ch.held_color)
    p.ellipse(body + neck_dir * 0.05, (lw * 0.35, lw * 0.35), 0, (40, 25, 10), shade=False)


def _draw_head(p: Painter, ch: Character, k, hc, hr, ang, yaw, gap, blink, s) -> None:
    I = INDEX  # noqa: N806
    deg = -math.degrees(ang)
    ca, sa = math.cos(ang), math.sin(ang)

    def local(u, v):
        """Head-local offset (u across, v down, in pixels) -> frame pixels."""
        return np.array([hc[0] + u * ca + v * sa, hc[1] - u * sa + v * ca])

    skin = ch.skin
    hx, hy = hr
    hair = ch.hair_color
    # Behind the head: long hair, ears of animals, antennae.
    if ch.hair in ("long", "ponytail"):
        if ch.hair == "long":
            p.poly([local(-hx * 1.08, -hy * 0.2), local(hx * 1.08, -hy * 0.2), local(hx * 1.15, hy * 1.3),
                    local(-hx * 1.15, hy * 1.3)], hair)
        else:
            p.ellipse(local(-hx * 0.9 * math.copysign(1, yaw + 1e-3), hy * 0.1), (hx * 0.35, hy * 0.7), deg, hair)
    if ch.hair == "bun":
        p.ellipse(local(0, -hy * 1.05), (hx * 0.38, hy * 0.3), deg, hair)
    if ch.kind == "cat":
        for sgn in (-1, 1):
            p.poly([local(sgn * hx * 0.9, -hy * 0.35), local(sgn * hx * 0.75, -hy * 1.35),
                    local(sgn * hx * 0.2, -hy * 0.85)], skin)
    elif ch.kind == "bear":
        for sgn in (-1, 1):
            p.ellipse(local(sgn * hx * 0.72, -hy * 0.8), (hx * 0.3, hx * 0.3), deg, skin)
    elif ch.kind == "bunny":
        for sgn in (-1, 1):
            p.ellipse(local(sgn * hx * 0.35, -hy * 1.45), (hx * 0.2, hy * 0.7), deg + sgn * 8, skin)
            p.ellipse(local(sgn * hx * 0.35, -hy * 1.45), (hx * 0.09, hy * 0.5), deg + sgn * 8,
                      (255, 190, 200), shade=False)
    elif ch.kind in ("robot", "alien"):
        for sgn in ((0,) if ch.kind == "robot" else (-1, 1)):
            base = local(sgn * hx * 0.4, -hy * 0.9)
            tip = local(sgn * hx * 0.6, -hy * 1.5)
            p.line(base, tip, max(1, s * 0.03), (80, 80, 90))
            p.dot(tip, s * 0.06, (230, 60, 60) if ch.kind == "robot" else (250, 240, 90))
    # Human ears on the sides (hidden when turned away).
    if ch.kind in ("human", "alien"):
        for side in ("left", "right"):
            if (yaw > -0.9 if side == "left" else yaw < 0.9):
                e = k[I[side + "_ear"]]
                p.ellipse(e, (hx * 0.16, hy * 0.2), deg, _shade(skin, 0.95))
    # Face shape.
    fs = ch.face_shape if ch.kind in ("human", "alien") else "round"
    if ch.kind == "robot":
        p.poly([local(-hx, -hy), local(hx, -hy), local(hx, hy * 0.95), local(-hx, hy * 0.95)], skin)
    elif fs == "square":
        p.poly([local(-hx, -hy * 0.8), local(-hx * 0.8, -hy), local(hx * 0.8, -hy), local(hx, -hy * 0.8),
                local(hx * 0.95, hy * 0.6), local(hx * 0.6, hy), local(-hx * 0.6, hy), local(-hx * 0.95, hy * 0.6)],
               skin)
    elif fs == "heart":
        p.ellipse(local(0, -hy * 0.15), (hx, hy * 0.85), deg, skin)
        p.poly([local(-hx * 0.93, -hy * 0.1), local(hx * 0.93, -hy * 0.1), local(0, hy)], skin, shade=False)
    elif fs == "long":
        p.ellipse(hc, (hx * 0.92, hy), deg, skin)
    elif fs == "round":
        p.ellipse(hc, (hx * 1.02, hy * 0.97), deg, skin)
    else:
        p.ellipse(hc, (hx, hy), deg, skin)
    # Muzzle for animals.
    if ch.kind in ("cat", "bear", "bunny"):
        p.ellipse(local(yaw * hx * 0.5, hy * 0.45), (hx * 0.42, hy * 0.3), deg, _shade(skin, 1.12), shade=False)
    # Eyes.
    for side in ("left", "right"):
        up, lo = k[I[f"face_{side}_eye_upper_lid"]], k[I[f"face_{side}_eye_lower_lid"]]
        out, inn = k[I[f"face_{side}_eye_outer_corner"]], k[I[f"face_{side}_eye_inner_corner"]]
        if (side == "left" and yaw < -0.95) or (side == "right" and yaw > 0.95):
            continue
        c = (out + inn) / 2
        half_w = np.linalg.norm(out - inn) / 2
        if half_w < 0.5:
            continue
        open_h = float(np.dot(lo - up, np.array([sa, ca])))
        if ch.kind == "robot":
            if open_h > 1.0:
                p.poly([out + (up - c) * 0.9, inn + (up - c) * 0.9, inn + (lo - c), out + (lo - c)], (40, 230, 255),
                       shade=False)
            else:
                p.line(out, inn, max(1, s * 0.025), (40, 200, 230))
            continue
        if open_h > max(1.0, 0.12 * half_w):
            ctr = (up + lo) / 2
            p.ellipse(ctr, (half_w, open_h / 2), deg, (250, 250, 250), shade=False)
            iris = k[I[f"face_{side}_iris"]]
            r = min(half_w * 0.55, open_h * 0.5)
            p.dot(iris, r, ch.iris_color)
            p.dot(iris, r * 0.5, (20, 20, 25))
            p.dot(iris + np.array([-r * 0.3, -r * 0.3]), max(0.6, r * 0.2), (255, 255, 255))
            lid = _curve(out, up - (lo - up) * 0.1, inn)
            cv2.polylines(p.img, [p._fx(lid).reshape(-1, 1, 2)], False, (30, 25, 25), max(1, int(s * 0.025)),
                          cv2.LINE_8, _SHIFT)
        else:
            lid = _curve(out, lo + (up - lo) * 0.3, inn)
            cv2.polylines(p.img, [p._fx(lid).reshape(-1, 1, 2)], False, (30, 25, 25), max(1, int(s * 0.025)),
                          cv2.LINE_8, _SHIFT)
        # Eyebrow.
        if ch.kind in ("human", "alien"):
            b0 = out + (up - c) * 1.9 + (out - c) * 0.1
            b1 = inn + (up - c) * 1.7
            p.line(b0, b1, max(1, s * 0.03), _shade(ch.hair_color, 0.8))
    if ch.glasses:
        for side in ("left", "right"):
            e = (k[I[f"face_{side}_eye_outer_corner"]] + k[I[f"face_{side}_eye_inner_corner"]]) / 2
            r = np.linalg.norm(k[I[f"face_{side}_eye_outer_corner"]] - k[I[f"face_{side}_eye_inner_corner"]]) * 0.8
            cv2.circle(p.img, tuple(int(v) for v in p._fx(e)), int(r * _ONE), (30, 30, 30), max(1, int(s * 0.02)),
                       cv2.LINE_8, _SHIFT)
    # Nose.
    nose = k[I["nose"]]
    if ch.kind in ("cat", "bear", "bunny"):
        p.ellipse(nose, (hx * 0.1, hy * 0.06), deg, (60, 40, 40), shade=False)
    elif ch.kind == "human":
        p.line(nose - np.array([sa, ca]) * hy * 0.12, nose, max(1, s * 0.02), _shade(skin, 0.7))
    if ch.blush:
        for side in ("left", "right"):
            e = k[I[f"face_{side}_eye_lower_lid"]]
            p.ellipse(e + np.array([sa, ca]) * hy * 0.25, (hx * 0.13, hy * 0.07), deg, (250, 150, 150), shade=False)
    # Mouth: outer lips through the lip points, the opening between the inner points.
    lips = {n: k[I["face_" + n]] for n in ("lip_corner_left", "lip_corner_right", "lip_upper_outer",
                                          "lip_lower_outer", "lip_upper_inner", "lip_lower_inner",
                                          "lip_upper_left", "lip_upper_right", "lip_lower_left", "lip_lower_right")}
    cl, cr = lips["lip_corner_left"], lips["lip_corner_right"]
    upper = np.concatenate([_curve(cl, lips["lip_upper_left"], lips["lip_upper_outer"], 4),
                            _curve(lips["lip_upper_outer"], lips["lip_upper_right"], cr, 4)[1:]])
    lower = np.concatenate([_curve(cr, lips["lip_lower_right"], lips["lip_lower_outer"], 4),
                            _curve(lips["lip_lower_outer"], lips["lip_lower_left"], cl, 4)[1:]])
    lip_col = ch.lip_color
    p.poly(np.concatenate([upper, lower]), lip_col, shade=False)
    if gap > 0:
        inner_u = _curve(cl, lips["lip_upper_inner"], cr, 7)
        inner_l = _curve(cr, lips["lip_lower_inner"], cl, 7)
        p.poly(np.concatenate([inner_u, inner_l]), (70, 20, 30), shade=False)
        # Teeth under the upper lip, tongue at the bottom.
        depth = lips["lip_lower_inner"] - lips["lip_upper_inner"]
        tu = _curve(cl + depth * 0.1, lips["lip_upper_inner"] + depth * 0.28, cr + depth * 0.1, 7)
        p.poly(np.concatenate([_curve(cl, lips["lip_upper_inner"], cr, 7), tu[::-1]]), (245, 245, 240), shade=False)
        tongue_c = lips["lip_lower_inner"] - depth * 0.22
        p.ellipse(tongue_c, (np.linalg.norm(cl - cr) * 0.22, max(0.5, np.linalg.norm(depth) * 0.18)), deg,
                  (210, 90, 100), shade=False)
    else:
        p.line(cl, cr, max(1, s * 0.018), _shade(lip_col, 0.55))
    # Hair on top (after the face).
    _draw_hair_front(p, ch, local, hx, hy, deg, yaw)


def _draw_hair_front(p: Painter, ch: Character, local, hx, hy, deg, yaw) -> None:
    hair = ch.hair_color
    kind = ch.hair
    if kind == "none":
        return
    shift = -yaw * hx * 0.15
    if kind in ("short", "long", "bob", "ponytail", "bun"):
        pts = [local(-hx * 1.04, hy * (0.15 if kind == "bob" else -0.25)), local(-hx * 0.95, -hy * 0.8),
               local(-hx * 0.5, -hy * 1.08), local(hx * 0.5, -hy * 1.08), local(hx * 0.95, -hy * 0.8),
               local(hx * 1.04, hy * (0.15 if kind == "bob" else -0.25)), local(hx * 0.8, -hy * 0.45),
               local(shift + hx * 0.2, -hy * 0.62), local(shift - hx * 0.3, -hy * 0.5), local(-hx * 0.8, -hy * 0.4)]
        p.poly(pts, hair)
    elif kind == "spiky":
        pts = [local(-hx * 1.0, -hy * 0.3)]
        for i in range(7):
            u = -hx + (i + 0.5) * 2 * hx / 7
            pts.append(local(u * 1.1, -hy * (1.35 if i % 2 == 0 else 0.95)))
        pts += [local(hx * 1.0, -hy * 0.3), local(hx * 0.6, -hy * 0.55), local(-hx * 0.6, -hy * 0.55)]
        p.poly(pts, hair)
    elif kind == "curly":
        for i in range(9):
            a = math.pi * (0.1 + 0.8 * i / 8)
            p.ellipse(local(-math.cos(a) * hx * 0.95, -math.sin(a) * hy * 0.9), (hx * 0.28, hx * 0.28), deg, hair)
