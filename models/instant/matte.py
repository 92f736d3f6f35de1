"""The person's matte: which pixels of the reference are the person, with soft edges.

The segmentation comes from MediaPipe pose with ``enable_segmentation`` (model complexity 1, the one
bundled in the wheel; static image mode, so the same picture always gives the same matte). Its mask
is computed at low resolution and upsampled, so its edge is soft and a few pixels off the true
outline; a guided filter (He, Sun and Tang, 2010) with the picture itself as the guide snaps it to
the image's edges. Selfie segmentation (also in the wheel) is not used: it claims a person in
pictures that have none (a coffee cup), and a picture where pose finds nobody has no skeleton to
drive anyway.

Only the connected pieces of the mask that the skeleton touches are kept: segmentation sometimes
claims a poster or a reflection, and a piece of the "person" that no bone carries would stay behind
while the body moves.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

THRESHOLD = 0.5  # soft matte -> person mask
MIN_AREA = 0.002  # a matte smaller than this fraction of the picture counts as empty


class NoPersonError(ValueError):
    """The picture has no person to animate; ``str(e)`` says so in words for the user."""


@dataclass
class Matte:
    alpha: np.ndarray  # (H, W) float32 in [0, 1], edges refined
    mask: np.ndarray  # (H, W) bool, alpha >= THRESHOLD
    source: str  # which model gave it ("pose"), or "given"
    landmarks: np.ndarray | None = None  # (33, 3) the body landmarks the segmenting pose model found

    @property
    def area(self) -> float:
        """Fraction of the picture that is the person."""
        return float(self.mask.mean())


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """Edge-aware smoothing of ``src (H, W)`` float32 by a grey ``guide (H, W)`` float32 in [0, 1]:
    locally ``src ~ a * guide + b``, so ``src``'s edges move onto the guide's."""
    k = (2 * radius + 1, 2 * radius + 1)

    def box(x):
        return cv2.boxFilter(x, cv2.CV_32F, k, borderType=cv2.BORDER_REFLECT)

    mean_i, mean_p = box(guide), box(src)
    cov = box(guide * src) - mean_i * mean_p
    var = box(guide * guide) - mean_i * mean_i
    a = cov / (var + eps)
    b = mean_p - a * mean_i
    return box(a) * guide + box(b)


def _segment(image: np.ndarray, min_confidence: float) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Raw soft segmentation ``(H, W)`` float32 of an RGB uint8 picture and the 33 body landmarks
    ``(33, 3)`` found with it, or ``(None, None)``."""
    import mediapipe as mp

    with mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1, enable_segmentation=True,
                                min_detection_confidence=min_confidence) as pose:
        res = pose.process(image)
    if res.pose_landmarks is None or res.segmentation_mask is None:
        return None, None
    lms = np.array([(lm.x, lm.y, lm.visibility) for lm in res.pose_landmarks.landmark], np.float32)
    return np.asarray(res.segmentation_mask, np.float32), lms


def refine(image: np.ndarray, soft: np.ndarray, keypoints: np.ndarray | None = None) -> np.ndarray:
    """A soft segmentation ``(H, W)`` -> refined alpha ``(H, W)`` float32: the pieces the skeleton
    touches, holes closed, the edge snapped to the picture's edges and feathered by a pixel or two."""
    h, w = soft.shape
    mask = (soft >= THRESHOLD).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n > 2:
        keep = np.zeros(n, bool)
        if keypoints is not None:
            kp = np.asarray(keypoints)
            ok = (kp[:, 2] >= 0.5) & (kp[:, 0] >= 0) & (kp[:, 0] < 1) & (kp[:, 1] >= 0) & (kp[:, 1] < 1)
            for x, y in kp[ok, :2]:
                keep[labels[int(y * h), int(x * w)]] = True
        keep[0] = False
        if not keep.any():
            keep[1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))] = True
        # Pieces no bone touches go, unless big (a second arm the detector missed).
        big = stats[:, cv2.CC_STAT_AREA] >= 0.25 * stats[1:, cv2.CC_STAT_AREA].max()
        keep |= big
        keep[0] = False
        mask = keep[labels].astype(np.uint8)
        soft = soft * mask
    # Small holes (between fingers, under an arm) are closed: the plate would show through them.
    inv = (1 - mask).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(inv, connectivity=4)
    fill = stats[:, cv2.CC_STAT_AREA] < 0.0005 * h * w
    fill[np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))] = False
    fill[0] = False  # label 0 is the person itself
    soft = np.where(fill[labels], 1.0, soft).astype(np.float32)
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    r = max(2, int(round(0.006 * max(h, w))))
    alpha = guided_filter(grey, soft, r, 1e-3)
    # Feather: a pixel-wide ramp, so the composite edge is never a hard staircase.
    alpha = cv2.GaussianBlur(np.clip(alpha, 0, 1), (3, 3), 0.7)
    return np.clip(alpha, 0, 1).astype(np.float32)


def person_matte(image: np.ndarray, keypoints: np.ndarray | None = None, min_confidence: float = 0.5) -> Matte:
    """The refined matte of the person in an RGB uint8 picture ``(H, W, 3)``.

    ``keypoints`` ``(K, 3)``: the picture's pose, used to keep only the person's pieces and to check
    that the matte covers them. ``min_confidence``: of the person detector. Raises
    ``NoPersonError`` with a message for the user when there is no person or the matte is empty.
    """
    img = np.ascontiguousarray(np.asarray(image)[..., :3])
    soft, landmarks = _segment(img, min_confidence)
    if soft is None:
        raise NoPersonError("no person was found in the reference picture, so there is no body to move")
    matte = matte_from_soft(img, soft, keypoints, "pose")
    matte.landmarks = landmarks
    return matte


def matte_from_soft(image: np.ndarray, soft: np.ndarray, keypoints: np.ndarray | None = None,
                    source: str = "given") -> Matte:
    """``person_matte`` from an already computed soft segmentation (or a drawn mask, in tests)."""
    soft = np.asarray(soft, np.float32)
    if soft.shape != image.shape[:2]:
        raise ValueError(f"matte {soft.shape} does not match the picture {image.shape[:2]}")
    if float((soft >= THRESHOLD).mean()) < MIN_AREA:
        raise NoPersonError("the person's outline could not be separated from the background (the matte is "
                            "empty), so there is no body to move; try a picture where the person stands out")
    alpha = refine(image, soft, keypoints)
    mask = alpha >= THRESHOLD
    if float(mask.mean()) < MIN_AREA:
        raise NoPersonError("the person's outline could not be separated from the background (the matte is "
                            "empty), so there is no body to move; try a picture where the person stands out")
    if keypoints is not None and skeleton_coverage(mask, keypoints) < 0.5:
        raise NoPersonError("no person was found in the reference picture where its pose puts one (the outline "
                            "found does not cover the body's joints), so there is no body to move")
    return Matte(alpha, mask, source)


def skeleton_coverage(mask: np.ndarray, keypoints: np.ndarray) -> float:
    """Fraction of the confident head, shoulder and hip points inside the frame that fall on (or
    within a few pixels of) the mask; 1.0 when there are none to check."""
    h, w = mask.shape
    idx = [0, 11, 12, 23, 24]  # nose, shoulders, hips in the keypoint layout
    kp = np.asarray(keypoints)[idx]
    ok = (kp[:, 2] >= 0.5) & (kp[:, 0] >= 0) & (kp[:, 0] < 1) & (kp[:, 1] >= 0) & (kp[:, 1] < 1)
    if not ok.any():
        return 1.0
    r = max(2, int(0.01 * max(h, w)))
    near = cv2.dilate(mask.astype(np.uint8), np.ones((2 * r + 1, 2 * r + 1), np.uint8))
    return float(np.mean([near[int(y * h), int(x * w)] > 0 for x, y in kp[ok, :2]]))
