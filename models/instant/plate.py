"""The background plate: the reference with the person taken out and the hole filled in.

When a limb of the puppet moves, the pixels it leaves show the plate, so they look like the wall
behind the person, not like a smear of the limb. The hole is the matte dilated by a few pixels
(the matte's edge carries a fringe of the person's colours). It is filled by Telea's fast-marching
inpainting at reduced resolution (a long side of ``WORK_SIDE``): a hole this size holds no detail to
keep, the fill's cost grows with the hole, and at that scale the fill carries the background's
large structures (a railing, a wall's edge, a wheel) across the hole instead of streaking the
colours of its rim, which is what it does at full resolution; a masked pyramid average
(``push_pull``, used for the torso behind an arm) is smoother but fills a whole person with one
grey.

The result is upsampled and pasted into the hole only; outside it the plate *is* the reference,
pixel for pixel, which keeps the background away from the person unchanged. Everything is a pure
function of the picture and the matte, so the plate is deterministic.
"""

from __future__ import annotations

import cv2
import numpy as np

WORK_SIDE = 128  # long side of the picture the fill is computed at


def hole_mask(mask: np.ndarray, grow: float = 0.012) -> np.ndarray:
    """The person's mask ``(H, W)`` bool dilated by ``grow`` of the picture's long side."""
    h, w = mask.shape
    r = max(2, int(round(grow * max(h, w))))
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    return cv2.dilate(mask.astype(np.uint8), k) > 0


def push_pull(image: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Fill the unknown pixels of ``image (H, W, C)`` float32 from the ``known (H, W)`` bool ones."""
    levels = []
    img, wgt = image * known[..., None], known.astype(np.float32)
    while min(img.shape[:2]) > 2:
        levels.append((img, wgt))
        img = cv2.pyrDown(img)
        wgt = cv2.pyrDown(wgt)
    levels.append((img, wgt))
    # Coarsest: the mean of whatever is known there.
    img, wgt = levels[-1]
    fill = (img.reshape(-1, img.shape[-1]).sum(0) / max(float(wgt.sum()), 1e-6)).astype(np.float32)
    out = np.broadcast_to(fill, img.shape).astype(np.float32)
    for img, wgt in reversed(levels[:-1]):
        up = cv2.pyrUp(out, dstsize=(img.shape[1], img.shape[0]))
        if up.ndim == 2:
            up = up[..., None]
        w = wgt[..., None]
        # Where the level is well known, its own (normalised) colour; where not, the coarser fill.
        own = img / np.maximum(w, 1e-6)
        a = np.clip(w * 1.5, 0, 1)
        out = a * own + (1 - a) * up
    return out


def background_plate(image: np.ndarray, mask: np.ndarray, grow: float = 0.012) -> np.ndarray:
    """The plate ``(H, W, 3)`` uint8 for an RGB uint8 ``image`` and the person's ``mask (H, W)``."""
    h, w = mask.shape
    hole = hole_mask(mask, grow)
    if not hole.any():
        return image.copy()
    s = min(1.0, WORK_SIDE / max(h, w))
    sw, sh = max(8, int(round(w * s))), max(8, int(round(h * s)))
    small = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA)
    small_hole = cv2.resize(hole.astype(np.uint8), (sw, sh), interpolation=cv2.INTER_AREA) > 0
    small_hole = cv2.dilate(small_hole.astype(np.uint8), np.ones((3, 3), np.uint8))
    filled = cv2.inpaint(small, small_hole, 5, cv2.INPAINT_TELEA)
    filled = cv2.GaussianBlur(filled, (3, 3), 0.8)
    big = cv2.resize(filled, (w, h), interpolation=cv2.INTER_CUBIC)
    # Ramp from the picture to the fill over the hole's first pixels: the hole's rim is background
    # (the matte was dilated), so the seam disappears.
    ramp = np.clip(cv2.distanceTransform(hole.astype(np.uint8), cv2.DIST_L2, 3) / 4.0, 0, 1)[..., None]
    plate = image.astype(np.float32) * (1 - ramp) + big.astype(np.float32) * ramp
    return np.clip(plate + 0.5, 0, 255).astype(np.uint8)


def fill_from(image: np.ndarray, hole: np.ndarray, known: np.ndarray) -> np.ndarray:
    """``image`` with the ``hole (H, W)`` pixels filled from the ``known (H, W)`` ones only (e.g. the
    torso's colours behind an arm, never the background's): push-pull over the pair's bounding box
    at reduced resolution, detail-free but seamless. Returns a new ``(H, W, 3)`` uint8 image."""
    out = image.copy()
    ys, xs = np.nonzero(hole | known)
    if len(xs) == 0 or not known.any() or not hole.any():
        return out
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    crop, kn = image[y0:y1, x0:x1], known[y0:y1, x0:x1] & ~hole[y0:y1, x0:x1]
    h, w = kn.shape
    s = min(1.0, 128 / max(h, w))
    sw, sh = max(4, int(round(w * s))), max(4, int(round(h * s)))
    small = cv2.resize(crop, (sw, sh), interpolation=cv2.INTER_AREA).astype(np.float32)
    # A pixel counts as known at the small size only if the whole of it was.
    kn_small = cv2.resize(kn.astype(np.float32), (sw, sh), interpolation=cv2.INTER_AREA) > 0.99
    if not kn_small.any():
        kn_small = cv2.resize(kn.astype(np.float32), (sw, sh), interpolation=cv2.INTER_AREA) > 0.5
    filled = push_pull(small, kn_small)
    big = cv2.resize(np.clip(filled, 0, 255).astype(np.uint8), (w, h), interpolation=cv2.INTER_LINEAR)
    region = out[y0:y1, x0:x1]
    hm = hole[y0:y1, x0:x1]
    region[hm] = big[hm]
    return out
