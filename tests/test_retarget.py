"""Retargeting on synthetic skeletons: reference lengths kept, driver angles followed, framing."""

from __future__ import annotations

import numpy as np
import pytest

from models import keypoints as kpl
from models.conditions.retarget import BODY_TREE, NECK, RETARGET_TREE, Retargeter, retarget

I = kpl.INDEX

# A standing person facing the camera, as bone vectors in units of frame height (x right, y down).
# The person's left is the image's right.
_BASE_DIRECTIONS = {}
for side, s in (("left", 1.0), ("right", -1.0)):
    _BASE_DIRECTIONS.update({
        (NECK, I[f"{side}_shoulder"]): (s * 0.11, 0.0),
        (I["nose"], I[f"{side}_eye_inner"]): (s * 0.01, -0.02),
        (I[f"{side}_eye_inner"], I[f"{side}_eye"]): (s * 0.012, 0.0),
        (I[f"{side}_eye"], I[f"{side}_eye_outer"]): (s * 0.012, 0.0),
        (I[f"{side}_eye_outer"], I[f"{side}_ear"]): (s * 0.02, 0.01),
        (I["nose"], I[f"mouth_{side}"]): (s * 0.015, 0.03),
        (I[f"{side}_shoulder"], I[f"{side}_elbow"]): (s * 0.03, 0.16),
        (I[f"{side}_elbow"], I[f"{side}_wrist"]): (s * 0.01, 0.15),
        (I[f"{side}_wrist"], I[f"{side}_pinky"]): (s * 0.01, 0.04),
        (I[f"{side}_wrist"], I[f"{side}_index"]): (0.0, 0.045),
        (I[f"{side}_wrist"], I[f"{side}_thumb"]): (-s * 0.01, 0.035),
        (I[f"{side}_shoulder"], I[f"{side}_hip"]): (-s * 0.03, 0.3),
        (I[f"{side}_hip"], I[f"{side}_knee"]): (s * 0.01, 0.24),
        (I[f"{side}_knee"], I[f"{side}_ankle"]): (0.0, 0.23),
        (I[f"{side}_ankle"], I[f"{side}_heel"]): (-s * 0.005, 0.02),
        (I[f"{side}_ankle"], I[f"{side}_foot_index"]): (s * 0.02, 0.04),
    })
_BASE_DIRECTIONS[(NECK, I["nose"])] = (0.0, -0.12)
# Joints that move in the animation: (bone, amplitude in radians, frequency).
_ANIMATED = {
    (I["left_shoulder"], I["left_elbow"]): (1.2, 0.9),
    (I["left_elbow"], I["left_wrist"]): (1.0, 1.3),
    (I["right_shoulder"], I["right_elbow"]): (-0.8, 0.7),
    (I["right_hip"], I["right_knee"]): (0.5, 0.5),
    (NECK, I["nose"]): (0.2, 1.1),
}


def _rot(v, a):
    c, s = np.cos(a), np.sin(a)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


def make_person(
    num_frames: int,
    aspect: float,
    neck=(0.5, 0.3),
    size: float = 1.0,
    limb_scale: dict | None = None,
    animate: bool = True,
    drift: float = 0.0,
):
    """A synthetic skeleton ``(T, K, 3)`` with per-bone length factors, animated joint angles and
    a sideways drift of its neck (in units of frame height per frame)."""
    limb_scale = limb_scale or {}
    kp = np.zeros((num_frames, kpl.NUM_KEYPOINTS, 3), np.float32)
    for t in range(num_frames):
        root = np.array([neck[0] * aspect + drift * t, neck[1]])
        pos = {NECK: root}
        angle_of = {}
        for a, b in BODY_TREE:
            v = np.array(_BASE_DIRECTIONS[(a, b)]) * size * limb_scale.get(b, 1.0)
            ang = 0.0
            if animate and (a, b) in _ANIMATED:
                amp, freq = _ANIMATED[(a, b)]
                ang = amp * np.sin(freq * t * 0.3)
            ang += angle_of.get(a, 0.0)  # children rotate with their parent
            angle_of[b] = ang
            pos[b] = pos[a] + _rot(v, ang)
            kp[t, b] = (pos[b][0] / aspect, pos[b][1], 0.95)
    return kp


def _iso(kp, aspect):
    xy = kp[..., :2].astype(np.float64).copy()
    xy[..., 0] *= aspect
    return xy


def _vec(kp, aspect, a, b):
    xy = _iso(kp, aspect)
    pa = 0.5 * (xy[..., I["left_shoulder"], :] + xy[..., I["right_shoulder"], :]) if a == NECK else xy[..., a, :]
    return xy[..., b, :] - pa


def test_keeps_reference_bone_lengths_and_follows_driver_angles():
    ref_aspect, drv_aspect = 3 / 4, 16 / 9
    reference = make_person(1, ref_aspect, neck=(0.45, 0.22), size=0.8, animate=False)[0]
    long_arms = {I[n]: 1.4 for n in ("left_elbow", "left_wrist", "right_elbow", "right_wrist")}
    short_legs = {I[n]: 0.75 for n in ("left_knee", "left_ankle", "right_knee", "right_ankle")}
    driver = make_person(30, drv_aspect, neck=(0.7, 0.35), size=1.3, limb_scale={**long_arms, **short_legs})
    out = retarget(driver, reference, drv_aspect, ref_aspect)
    assert out.shape == driver.shape and out.dtype == np.float32
    checked = 0
    for a, b in BODY_TREE:
        ref_len = np.linalg.norm(_vec(reference, ref_aspect, a, b))
        out_v = _vec(out, ref_aspect, a, b)
        drv_v = _vec(driver, drv_aspect, a, b)
        out_len = np.linalg.norm(out_v, axis=-1)
        np.testing.assert_allclose(out_len, ref_len, rtol=0.02, err_msg=f"bone {a}->{b}")
        cos = (out_v * drv_v).sum(-1) / (out_len * np.linalg.norm(drv_v, axis=-1))
        assert np.degrees(np.arccos(np.clip(cos, -1, 1))).max() < 1.0, f"bone {a}->{b}"
        checked += 1
    assert checked == len(BODY_TREE)
    # Position and scale of the reference: the neck starts where the reference's is.
    neck0 = 0.5 * (out[0, I["left_shoulder"], :2] + out[0, I["right_shoulder"], :2])
    np.testing.assert_allclose(neck0, (0.45, 0.22), atol=1e-3)


def test_root_motion_is_scaled_to_the_reference():
    ref_aspect = drv_aspect = 1.0
    reference = make_person(1, ref_aspect, neck=(0.3, 0.3), size=0.5, animate=False)[0]
    driver = make_person(10, drv_aspect, neck=(0.2, 0.3), size=1.0, animate=False, drift=0.02)
    out = retarget(driver, reference, drv_aspect, ref_aspect)
    neck = 0.5 * (out[:, I["left_shoulder"], 0] + out[:, I["right_shoulder"], 0])
    # The driver moves 0.02 per frame at twice the reference's size: the reference moves 0.01.
    np.testing.assert_allclose(np.diff(neck), 0.01, atol=1e-4)
    still = retarget(driver, reference, drv_aspect, ref_aspect, follow_translation=False)
    neck = 0.5 * (still[:, I["left_shoulder"], 0] + still[:, I["right_shoulder"], 0])
    np.testing.assert_allclose(neck, 0.3, atol=1e-4)


def test_mirrored_driver():
    reference = make_person(1, 1.0, animate=False)[0]
    driver = make_person(12, 4 / 3)
    plain = retarget(driver, reference, 4 / 3, 1.0)
    mirrored = retarget(kpl.mirror_keypoints(driver), reference, 4 / 3, 1.0, mirror=True)
    np.testing.assert_allclose(plain, mirrored, atol=1e-5)
    # Without undoing the mirror, the person's left arm would follow the driver's right arm.
    wrong = retarget(kpl.mirror_keypoints(driver), reference, 4 / 3, 1.0, mirror=False)
    assert np.abs(wrong[:, I["left_wrist"], :2] - plain[:, I["left_wrist"], :2]).max() > 0.05


def _portrait_of(kp):
    """Zoom a full-body pose into a head-and-shoulders frame: legs and hips fall out of it."""
    out = kp.copy()
    out[..., :2] = (out[..., :2] - np.array([0.5, 0.2])) * 2.5 + np.array([0.5, 0.2])
    off = (out[..., 0] < 0) | (out[..., 0] > 1) | (out[..., 1] < 0) | (out[..., 1] > 1)
    out[..., 2][off] = 0.0
    out[..., :2][off] = 0.0  # absent points without coordinates (synthetic data)
    return out


def test_portrait_reference_driven_by_full_body():
    full = make_person(1, 1.0, neck=(0.5, 0.3), animate=False)[0]
    reference = _portrait_of(full[None])[0]
    assert reference[I["left_hip"], 2] == 0 and reference[I["left_shoulder"], 2] > 0
    driver = make_person(20, 1.0)
    out = retarget(driver, reference, 1.0, 1.0)
    # Shoulders stay in the portrait's place; the legs land far below the frame and are absent.
    np.testing.assert_allclose(out[0, I["left_shoulder"], :2], reference[I["left_shoulder"], :2], atol=1e-3)
    assert (out[:, I["left_ankle"], 2] == 0).all() and (out[:, I["left_ankle"], 1] > 1.25).all()
    # Arms use the driver's proportions at the portrait's scale: upper arm / shoulder width kept.
    ua = np.linalg.norm(_vec(out, 1.0, I["left_shoulder"], I["left_elbow"]), axis=-1)
    sw = np.linalg.norm(_vec(out, 1.0, I["left_shoulder"], I["right_shoulder"]), axis=-1)
    d_ua = np.linalg.norm(_vec(driver, 1.0, I["left_shoulder"], I["left_elbow"]), axis=-1)
    d_sw = np.linalg.norm(_vec(driver, 1.0, I["left_shoulder"], I["right_shoulder"]), axis=-1)
    np.testing.assert_allclose(ua / sw, d_ua / d_sw, rtol=0.02)


def test_full_body_reference_driven_by_half_body_keeps_its_legs():
    reference = make_person(1, 0.6, neck=(0.5, 0.2), size=0.9, animate=False)[0]
    driver = _portrait_of(make_person(15, 1.0, drift=0.0))
    assert (driver[:, I["left_knee"], 2] == 0).all()
    out = retarget(driver, reference, 1.0, 0.6)
    # Legs are the reference's own, hanging from the retargeted hips, fully confident.
    for a, b in ((I["left_hip"], I["left_knee"]), (I["left_knee"], I["left_ankle"])):
        np.testing.assert_allclose(_vec(out, 0.6, a, b), np.broadcast_to(_vec(reference, 0.6, a, b), (15, 2)),
                                   atol=1e-5)
        assert (out[:, b, 2] > 0.9).all()


def test_limbs_leaving_the_frame_and_streaming():
    reference = make_person(1, 1.0, neck=(0.5, 0.15), animate=False)[0]
    driver = make_person(8, 1.0)
    rt = Retargeter(reference, 1.0, 1.0)
    frames = np.stack([rt(driver[i]) for i in range(8)])  # one frame at a time, like a camera
    whole = retarget(driver, reference, 1.0, 1.0)
    np.testing.assert_allclose(frames, whole, atol=1e-5)
    # The reference's ankles are near the bottom; a point further than the margin outside is absent,
    # and coordinates are kept for those inside the margin so partly visible bones still render.
    low = make_person(1, 1.0, neck=(0.5, 0.55), animate=False)[0]
    out = retarget(driver, low, 1.0, 1.0)
    assert (out[:, I["left_ankle"], 1] > 1.0).all()
    assert ((out[:, I["left_ankle"], 1] > 1.25) == (out[:, I["left_ankle"], 2] == 0)).all()


def test_face_follows_the_driver_mouth():
    reference = make_person(1, 1.0, animate=False)[0]
    driver = make_person(6, 1.0, animate=False)
    upper, lower = I["face_lip_upper_inner"], I["face_lip_lower_inner"]
    for t in range(6):
        nose = driver[t, I["nose"], :2]
        driver[t, upper] = (nose[0], nose[1] + 0.03, 1.0)
        driver[t, lower] = (nose[0], nose[1] + 0.03 + 0.004 * t, 1.0)
    reference[upper] = (*(reference[I["nose"], :2] + (0, 0.03)), 1.0)
    reference[lower] = (*(reference[I["nose"], :2] + (0, 0.032)), 1.0)
    out = retarget(driver, reference, 1.0, 1.0)
    opening = out[:, lower, 1] - out[:, upper, 1]
    assert (np.diff(opening) > 0).all() and (out[:, lower, 2] == 1.0).all()


def test_bad_inputs():
    ref = make_person(1, 1.0)[0]
    with pytest.raises(ValueError, match="driver keypoints"):
        retarget(np.zeros((3, 17, 3)), ref, 1.0, 1.0)
    with pytest.raises(ValueError, match="aspect"):
        retarget(make_person(2, 1.0), ref, 0.0, 1.0)
    # A driver with empty frames: those frames come out empty, not frozen.
    drv = make_person(4, 1.0)
    drv[2] = 0.0
    out = retarget(drv, ref, 1.0, 1.0)
    assert (out[2, :, 2] == 0).all() and (out[1, :, 2] > 0).any()
    assert len(RETARGET_TREE) > len(BODY_TREE)


@pytest.mark.parametrize("height,width", [(64, 48), (48, 80)])
def test_retargeted_heatmaps_at_any_aspect(height, width):
    ref_aspect = width / height
    reference = make_person(1, ref_aspect, neck=(0.5, 0.25), size=0.7, animate=False)[0]
    driver = make_person(3, 16 / 9)
    out = retarget(driver, reference, 16 / 9, ref_aspect)
    hm = kpl.render_heatmaps(out, height, width)
    assert hm.shape == (kpl.HEATMAP_CHANNELS, 3, height, width)
    arm = list(kpl.BONE_GROUPS).index("left_arm")
    for t in range(3):
        # The middle of the upper arm lights the left-arm channel at its pixel, in any aspect.
        mid = 0.5 * (out[t, I["left_shoulder"], :2] + out[t, I["left_elbow"], :2])
        x, y = int(mid[0] * width), int(mid[1] * height)
        assert hm[arm, t, y, x] > 0.5
