"""The body rig: a wrist reaches its target, the background far from the skeleton stays put."""

from __future__ import annotations

import numpy as np

from models import keypoints as kpl


def standing_person(h: int, w: int) -> np.ndarray:
    """A frontal standing skeleton ``(K, 3)`` (image coordinates normalised)."""
    kp = np.zeros((kpl.NUM_KEYPOINTS, 3), np.float32)
    pts = {
        "nose": (0.5, 0.15), "left_eye": (0.52, 0.13), "right_eye": (0.48, 0.13), "left_ear": (0.55, 0.14),
        "right_ear": (0.45, 0.14), "mouth_left": (0.51, 0.18), "mouth_right": (0.49, 0.18),
        "left_shoulder": (0.6, 0.28), "right_shoulder": (0.4, 0.28), "left_elbow": (0.66, 0.42),
        "right_elbow": (0.34, 0.42), "left_wrist": (0.68, 0.55), "right_wrist": (0.32, 0.55),
        "left_hip": (0.56, 0.58), "right_hip": (0.44, 0.58), "left_knee": (0.57, 0.75),
        "right_knee": (0.43, 0.75), "left_ankle": (0.57, 0.92), "right_ankle": (0.43, 0.92),
    }
    for name, (x, y) in pts.items():
        kp[kpl.INDEX[name]] = (x, y, 1.0)
    return kp


def test_wrist_reaches_target_and_background_stays():
    import cv2

    from models.instant.body import BodyRig

    h, w = 320, 256
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (5, 5), 1.5)
    ref = standing_person(h, w)
    rig = BodyRig((h, w), ref)
    tgt = ref.copy()
    lw = kpl.INDEX["left_wrist"]
    # The forearm swings out and up by 70 degrees about the elbow (bone lengths kept, as retargeting does).
    size = np.array([w, h])
    el, wr = ref[kpl.INDEX["left_elbow"], :2] * size, ref[lw, :2] * size
    c, s = np.cos(np.deg2rad(-70)), np.sin(np.deg2rad(-70))
    r = wr - el
    tgt[lw, :2] = (el + np.array([c * r[0] - s * r[1], s * r[0] + c * r[1]])) / size
    mx, my = rig.backward_map(tgt)
    tx, ty = tgt[lw, :2] * size
    src_at_target = np.array([mx[int(round(ty)), int(round(tx))], my[int(round(ty)), int(round(tx))]])
    assert np.linalg.norm(src_at_target - ref[lw, :2] * size) < 3.0
    # A marker at the reference wrist lands at the target wrist.
    marked = img.copy()
    sx, sy = (ref[lw, :2] * size).round().astype(int)
    marked[sy - 2: sy + 3, sx - 2: sx + 3] = (255, 0, 255)
    out = rig.render(marked, tgt)
    magenta = (out[..., 0] > 200) & (out[..., 1] < 60) & (out[..., 2] > 200)
    near = np.hypot(*np.mgrid[0:h, 0:w][::-1] - np.array([tx, ty])[:, None, None]) < 12
    ys, xs = np.nonzero(magenta & near)
    assert len(xs) >= 9
    assert np.hypot(xs.mean() - tx, ys.mean() - ty) < 5.0  # the marker is sheared a little by the turn
    # Far from the skeleton nothing moves: corners and the edges of the frame.
    gy, gx = np.mgrid[0:h, 0:w]
    far = np.zeros((h, w), bool)
    far[:40, :40] = far[:40, -40:] = far[-30:, :30] = far[-30:, -30:] = True
    assert np.abs(mx - gx)[far].max() < 0.5 and np.abs(my - gy)[far].max() < 0.5
    np.testing.assert_array_equal(out[far], marked[far])
    # The other arm and the legs stay (within a pixel).
    rw = kpl.INDEX["right_wrist"]
    rx, ry = (ref[rw, :2] * size).round().astype(int)
    assert abs(mx[ry, rx] - rx) < 1.0 and abs(my[ry, rx] - ry) < 1.0


def test_partial_body_is_reported_and_still_moves():
    from models.instant.body import BodyRig

    ref = standing_person(256, 256)
    for name in ("left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle"):
        ref[kpl.INDEX[name], 2] = 0.0
    rig = BodyRig((256, 256), ref)
    assert rig.usable and "left_ankle" in rig.message
    tgt = ref.copy()
    tgt[kpl.INDEX["left_wrist"], :2] += (0.05, -0.05)
    tgt[kpl.INDEX["left_ankle"]] = (0.6, 0.9, 1.0)  # the driver has legs; the reference does not
    assert rig.backward_map(tgt) is not None
    head_only = np.zeros_like(ref)
    head_only[kpl.INDEX["nose"]] = (0.5, 0.5, 1.0)
    rig2 = BodyRig((256, 256), head_only)
    assert not rig2.usable and "body" in rig2.message
    assert rig2.backward_map(tgt) is None
