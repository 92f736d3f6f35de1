"""The project's one keypoint layout, and heatmap rendering from it.

Every pose in the project -- MediaPipe extraction, synthetic toon characters, retargeting, the
pose guider's heatmaps -- is a float32 array of shape ``(T, K, 3)`` holding ``(x, y, confidence)``
with x and y in [0, 1] of the frame (x to the right, y down) and confidence in [0, 1]. A point with
confidence 0 is absent.

Layout (K = 95):

* 0..32   MediaPipe Pose's 33 body landmarks, in MediaPipe's order.
* 33..53  21 left-hand landmarks (MediaPipe Hands order), the person's own left hand.
* 54..74  21 right-hand landmarks.
* 75..94  20 face points picked from MediaPipe Face Mesh (468 + 10 iris points): lips, eyelids,
  eye corners and irises. ``FACE_MESH_INDICES`` names the mesh index of each.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

NUM_BODY = 33
NUM_HAND = 21

BODY_NAMES = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
    "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_pinky",
    "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel", "right_heel",
    "left_foot_index", "right_foot_index",
)
HAND_NAMES = (
    "wrist", "thumb_cmc", "thumb_mcp", "thumb_ip", "thumb_tip", "index_mcp", "index_pip", "index_dip",
    "index_tip", "middle_mcp", "middle_pip", "middle_dip", "middle_tip", "ring_mcp", "ring_pip",
    "ring_dip", "ring_tip", "pinky_mcp", "pinky_pip", "pinky_dip", "pinky_tip",
)
# Face subset: (name, MediaPipe Face Mesh index). Lips first (outer then inner), then eyes.
FACE_POINTS = (
    ("lip_corner_left", 291), ("lip_corner_right", 61), ("lip_upper_outer", 0), ("lip_lower_outer", 17),
    ("lip_upper_inner", 13), ("lip_lower_inner", 14), ("lip_upper_left", 267), ("lip_upper_right", 37),
    ("lip_lower_left", 314), ("lip_lower_right", 84),
    ("left_eye_upper_lid", 386), ("left_eye_lower_lid", 374), ("left_eye_outer_corner", 263),
    ("left_eye_inner_corner", 362), ("right_eye_upper_lid", 159), ("right_eye_lower_lid", 145),
    ("right_eye_outer_corner", 33), ("right_eye_inner_corner", 133), ("left_iris", 473),
    ("right_iris", 468),
)
FACE_MESH_INDICES = tuple(i for _, i in FACE_POINTS)
NUM_FACE = len(FACE_POINTS)

BODY_START = 0
LEFT_HAND_START = NUM_BODY
RIGHT_HAND_START = LEFT_HAND_START + NUM_HAND
FACE_START = RIGHT_HAND_START + NUM_HAND
NUM_KEYPOINTS = FACE_START + NUM_FACE

KEYPOINT_NAMES = (
    BODY_NAMES
    + tuple("left_hand_" + n for n in HAND_NAMES)
    + tuple("right_hand_" + n for n in HAND_NAMES)
    + tuple("face_" + n for n, _ in FACE_POINTS)
)
assert len(KEYPOINT_NAMES) == NUM_KEYPOINTS == 95

INDEX = {name: i for i, name in enumerate(KEYPOINT_NAMES)}

# Left/right swap permutation (for mirrored webcam input and augmentation).
def _mirror_permutation() -> tuple[int, ...]:
    perm = []
    for name in KEYPOINT_NAMES:
        if "left" in name:
            other = name.replace("left", "right")
        elif "right" in name:
            other = name.replace("right", "left")
        else:
            other = name
        perm.append(INDEX[other])
    return tuple(perm)


MIRROR_PERMUTATION = _mirror_permutation()

_HAND_BONES = (
    (0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (5, 9), (9, 10), (10, 11),
    (11, 12), (9, 13), (13, 14), (14, 15), (15, 16), (13, 17), (0, 17), (17, 18), (18, 19), (19, 20),
)


def _b(a: str, b: str) -> tuple[int, int]:
    return INDEX[a], INDEX[b]


# Bones grouped into heatmap channels. Each group becomes one channel holding its joints and the
# segments between them, so left and right limbs, hands and lips stay distinguishable while the
# pose guider's input stays small (12 channels instead of 95).
BONE_GROUPS: dict[str, tuple[tuple[int, int], ...]] = {
    "head": (
        _b("nose", "left_eye"), _b("nose", "right_eye"), _b("left_eye", "left_ear"),
        _b("right_eye", "right_ear"), _b("mouth_left", "mouth_right"),
    ),
    "torso": (
        _b("left_shoulder", "right_shoulder"), _b("left_shoulder", "left_hip"),
        _b("right_shoulder", "right_hip"), _b("left_hip", "right_hip"),
    ),
    "left_arm": (_b("left_shoulder", "left_elbow"), _b("left_elbow", "left_wrist")),
    "right_arm": (_b("right_shoulder", "right_elbow"), _b("right_elbow", "right_wrist")),
    "left_leg": (
        _b("left_hip", "left_knee"), _b("left_knee", "left_ankle"), _b("left_ankle", "left_heel"),
        _b("left_heel", "left_foot_index"),
    ),
    "right_leg": (
        _b("right_hip", "right_knee"), _b("right_knee", "right_ankle"), _b("right_ankle", "right_heel"),
        _b("right_heel", "right_foot_index"),
    ),
    "left_hand": tuple((LEFT_HAND_START + a, LEFT_HAND_START + b) for a, b in _HAND_BONES),
    "right_hand": tuple((RIGHT_HAND_START + a, RIGHT_HAND_START + b) for a, b in _HAND_BONES),
    "lips_outer": (
        _b("face_lip_corner_left", "face_lip_upper_left"), _b("face_lip_upper_left", "face_lip_upper_outer"),
        _b("face_lip_upper_outer", "face_lip_upper_right"), _b("face_lip_upper_right", "face_lip_corner_right"),
        _b("face_lip_corner_right", "face_lip_lower_right"), _b("face_lip_lower_right", "face_lip_lower_outer"),
        _b("face_lip_lower_outer", "face_lip_lower_left"), _b("face_lip_lower_left", "face_lip_corner_left"),
    ),
    "lips_inner": (
        _b("face_lip_corner_left", "face_lip_upper_inner"), _b("face_lip_upper_inner", "face_lip_corner_right"),
        _b("face_lip_corner_right", "face_lip_lower_inner"), _b("face_lip_lower_inner", "face_lip_corner_left"),
    ),
    "left_eye": (
        _b("face_left_eye_outer_corner", "face_left_eye_upper_lid"),
        _b("face_left_eye_upper_lid", "face_left_eye_inner_corner"),
        _b("face_left_eye_inner_corner", "face_left_eye_lower_lid"),
        _b("face_left_eye_lower_lid", "face_left_eye_outer_corner"),
        _b("face_left_iris", "face_left_iris"),
    ),
    "right_eye": (
        _b("face_right_eye_outer_corner", "face_right_eye_upper_lid"),
        _b("face_right_eye_upper_lid", "face_right_eye_inner_corner"),
        _b("face_right_eye_inner_corner", "face_right_eye_lower_lid"),
        _b("face_right_eye_lower_lid", "face_right_eye_outer_corner"),
        _b("face_right_iris", "face_right_iris"),
    ),
}
HEATMAP_CHANNELS = len(BONE_GROUPS)
# The lips' channels: left out of the pose maps whenever audio drives the mouth (DESIGN 3.5: a strong
# condition that dictates the mouth would crowd the audio out of the very samples it should learn from).
LIP_CHANNELS = tuple(i for i, name in enumerate(BONE_GROUPS) if name.startswith("lips"))
SKELETON_BONES = tuple(bone for bones in BONE_GROUPS.values() for bone in bones)


def empty_keypoints(num_frames: int) -> np.ndarray:
    """All-absent keypoints, ``(T, K, 3)``."""
    return np.zeros((num_frames, NUM_KEYPOINTS, 3), np.float32)


def validate_keypoints(kp: np.ndarray, what: str = "keypoints") -> np.ndarray:
    """Check layout and value ranges; returns a float32 copy. Raises ValueError naming the problem."""
    kp = np.asarray(kp)
    if kp.ndim == 2:
        kp = kp[None]
    if kp.ndim != 3 or kp.shape[1] != NUM_KEYPOINTS or kp.shape[2] != 3:
        raise ValueError(
            f"{what}: expected shape (T, {NUM_KEYPOINTS}, 3) of (x, y, confidence), got {tuple(kp.shape)}"
        )
    if not np.issubdtype(kp.dtype, np.number):
        raise ValueError(f"{what}: expected numbers, got dtype {kp.dtype}")
    kp = kp.astype(np.float32)
    if not np.isfinite(kp).all():
        raise ValueError(f"{what}: contains NaN or infinite values")
    if len(kp) == 0:
        raise ValueError(f"{what}: has no frames")
    return kp


def mirror_keypoints(kp: np.ndarray) -> np.ndarray:
    """Horizontal flip: x -> 1 - x and left/right names swapped (a mirrored webcam)."""
    out = kp[:, list(MIRROR_PERMUTATION)].copy()
    present = out[..., 2] > 0
    out[..., 0] = np.where(present, 1.0 - out[..., 0], out[..., 0])
    return out


def resample_keypoints(kp: np.ndarray, num_frames: int) -> np.ndarray:
    """Linear resampling in time to ``num_frames`` (used to fit a pose sequence to the audio)."""
    t_src = kp.shape[0]
    if t_src == num_frames:
        return kp.copy()
    if t_src == 1:
        return np.repeat(kp, num_frames, axis=0)
    pos = np.linspace(0, t_src - 1, num_frames)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, t_src - 1)
    w = (pos - lo)[:, None, None].astype(np.float32)
    out = kp[lo] * (1 - w) + kp[hi] * w
    # A point is present only where both neighbours are.
    out[..., 2] = np.minimum(kp[lo, :, 2], kp[hi, :, 2])
    return out.astype(np.float32)


def render_heatmaps(
    keypoints: np.ndarray | torch.Tensor,
    height: int,
    width: int,
    sigma: float = 0.02,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Render keypoints ``(T, K, 3)`` to heatmaps ``(C, T, H, W)`` with ``C = HEATMAP_CHANNELS``.

    Each channel is one bone group: ``max`` over its segments of a Gaussian of the pixel's distance
    to the segment, scaled by the segment's confidence (the lower of its two ends). ``sigma`` is a
    fraction of the frame's shorter side so any aspect ratio renders alike.
    """
    import torch  # only the heatmaps need torch: the layout itself is numpy, and config.py imports it

    dtype = dtype or torch.float32
    kp = torch.as_tensor(keypoints, dtype=torch.float32, device=device)
    if kp.ndim != 3 or kp.shape[1:] != (NUM_KEYPOINTS, 3):
        raise ValueError(f"keypoints: expected (T, {NUM_KEYPOINTS}, 3), got {tuple(kp.shape)}")
    t = kp.shape[0]
    dev = kp.device
    # Pixel centres in pixels.
    ys = (torch.arange(height, device=dev, dtype=torch.float32) + 0.5)
    xs = (torch.arange(width, device=dev, dtype=torch.float32) + 0.5)
    s = sigma * min(height, width)
    scale = torch.tensor([width, height], device=dev, dtype=torch.float32)
    out = torch.zeros(HEATMAP_CHANNELS, t, height, width, device=dev, dtype=torch.float32)
    for c, bones in enumerate(BONE_GROUPS.values()):
        a_idx = torch.tensor([a for a, _ in bones], device=dev)
        b_idx = torch.tensor([b for _, b in bones], device=dev)
        pa = kp[:, a_idx, :2] * scale  # (T, S, 2) pixels
        pb = kp[:, b_idx, :2] * scale
        conf = torch.minimum(kp[:, a_idx, 2], kp[:, b_idx, 2])  # (T, S)
        ab = pb - pa
        ab2 = (ab * ab).sum(-1).clamp_min(1e-6)  # (T, S)
        # Separable form of the projection: u = ((x - ax) abx + (y - ay) aby) / |ab|^2.
        dx = xs.view(1, 1, 1, width) - pa[..., 0, None, None]  # (T, S, 1, W)
        dy = ys.view(1, 1, height, 1) - pa[..., 1, None, None]  # (T, S, H, 1)
        u = ((dx * ab[..., 0, None, None] + dy * ab[..., 1, None, None]) / ab2[..., None, None]).clamp(0, 1)
        ex = dx - u * ab[..., 0, None, None]
        ey = dy - u * ab[..., 1, None, None]
        d2 = ex * ex + ey * ey  # (T, S, H, W)
        g = torch.exp(-d2 / (2 * s * s)) * conf[..., None, None]
        out[c] = g.amax(dim=1)
    return out.to(dtype)


def draw_skeleton(
    image: np.ndarray,
    keypoints: np.ndarray,
    color: tuple[int, int, int] | None = None,
    min_confidence: float = 0.3,
    thickness: int | None = None,
) -> np.ndarray:
    """Draw one frame's keypoints ``(K, 3)`` over an RGB uint8 image; returns a new image."""
    import cv2  # local: opencv is only needed for drawing

    img = np.ascontiguousarray(image.copy())
    h, w = img.shape[:2]
    th = thickness or max(1, round(min(h, w) / 200))
    palette = [
        (255, 255, 255), (255, 200, 0), (0, 200, 255), (255, 80, 80), (80, 255, 80), (80, 80, 255),
        (0, 255, 255), (255, 0, 255), (255, 60, 120), (255, 150, 150), (120, 255, 255), (120, 255, 120),
    ]
    for gi, bones in enumerate(BONE_GROUPS.values()):
        col = color or palette[gi % len(palette)]
        for a, b in bones:
            if keypoints[a, 2] < min_confidence or keypoints[b, 2] < min_confidence:
                continue
            pa = (int(round(keypoints[a, 0] * w)), int(round(keypoints[a, 1] * h)))
            pb = (int(round(keypoints[b, 0] * w)), int(round(keypoints[b, 1] * h)))
            cv2.line(img, pa, pb, col, th, cv2.LINE_AA)
    for k in range(NUM_KEYPOINTS):
        if keypoints[k, 2] >= min_confidence:
            p = (int(round(keypoints[k, 0] * w)), int(round(keypoints[k, 1] * h)))
            cv2.circle(img, p, th + 1, color or (255, 255, 255), -1, cv2.LINE_AA)
    return img


def bone_length(kp: np.ndarray, a: int, b: int) -> np.ndarray:
    """Length of bone (a, b) per frame in normalised units (x and y in [0, 1] of the frame)."""
    return np.hypot(kp[..., a, 0] - kp[..., b, 0], kp[..., a, 1] - kp[..., b, 1])

