"""Toon characters: every framing and aspect renders, and the keypoints are what was drawn."""

from __future__ import annotations

import numpy as np
import pytest

from models.config import resolution_for
from models.data import motion as mo
from models.data.synth import SynthConfig, synth_clip
from models.data.toon import ASPECTS, FRAMINGS, STYLES, make_camera, random_character, render_frames, rig
from models.data.visemes import mouth_is_open, mouth_track
from models.keypoints import INDEX, NUM_KEYPOINTS


@pytest.mark.parametrize("framing", FRAMINGS)
def test_every_framing_and_aspect_renders(framing):
    for k, aspect in enumerate(ASPECTS):
        cfg = SynthConfig(area=64 * 64, seed=3, framing=framing, aspect=aspect, style=STYLES[k], mode="action",
                          max_seconds=2.0)
        clip = synth_clip(cfg, k)
        h, w = resolution_for(ASPECTS[aspect], 64 * 64)
        assert clip.frames.shape[1:] == (h, w, 3) and clip.frames.dtype == np.uint8
        assert clip.keypoints.shape == (clip.num_frames, NUM_KEYPOINTS, 3)
        assert clip.frames.std() > 5  # something was drawn
        kp = clip.keypoints
        if clip.pose_ok:
            # The head is in every framing, and every visible point is inside the frame.
            assert (kp[:, INDEX["nose"], 2] > 0).mean() > 0.5
        vis = kp[..., 2] > 0
        assert ((kp[..., :2][vis] >= 0) & (kp[..., :2][vis] <= 1)).all()
        if framing == "full" and clip.pose_ok:
            assert (kp[:, INDEX["left_ankle"], 2] > 0).all()
        if framing in ("portrait", "face"):
            assert (kp[:, INDEX["left_knee"], 2] == 0).all()
        if framing == "face":
            assert (kp[:, INDEX["left_hip"], 2] == 0).all()


def test_face_close_up_draws_the_mouth_half_again_as_wide_as_a_portrait():
    def mouth_width(framing: str, index: int) -> float:
        clip = synth_clip(SynthConfig(seed=4, framing=framing, aspect="1:1", mode="speech", kind="human",
                                      max_seconds=1.0), index)
        kp = clip.keypoints[0]
        return float(np.abs(kp[INDEX["face_lip_corner_left"], 0] - kp[INDEX["face_lip_corner_right"], 0]))

    ratios = [mouth_width("face", i) / mouth_width("portrait", i) for i in range(3)]  # same character each
    assert all(1.4 < r < 2.2 for r in ratios), ratios


def test_framing_mix_draws_only_the_named_framings_at_their_weights():
    cfg = SynthConfig(area=32 * 32, seed=1, framings={"face": 3.0, "half": 1.0}, mode="action", max_seconds=1.0)
    drawn = [synth_clip(cfg, i).meta["framing"] for i in range(40)]
    assert set(drawn) <= {"face", "half"}
    assert 20 <= drawn.count("face") <= 38
    # Without a mix the default draw is unchanged (datasets made before "face" existed stay reproducible).
    old = [synth_clip(SynthConfig(area=32 * 32, seed=1, mode="action", max_seconds=1.0), i).meta["framing"]
           for i in range(12)]
    assert "face" not in old and len(set(old)) > 1


def _portrait(seed: int, mouth: np.ndarray):
    rng = np.random.default_rng(seed)
    ch = random_character(rng, style="flat", kind="human")
    ch.held = None
    n = len(mouth)
    cam = make_camera(ch, "portrait", 256, 256, rng)
    mot = mo.rest_motion(n)
    rg = rig(ch, mot, mouth)
    frames = render_frames(ch, rg, cam, mot)
    kp = cam.to_unit(rg.points)
    return ch, frames, kp


def test_rendered_mouth_opens_exactly_when_the_viseme_track_says():
    ph = [("m", 0.1, 0.2), ("ɑː", 0.2, 0.5), ("p", 0.5, 0.58), ("aɪ", 0.58, 0.9), ("b", 0.9, 1.0),
          ("ɔ", 1.0, 1.3), ("m", 1.3, 1.4)]
    mouth = mouth_track(ph, 25.0, 40)
    is_open = mouth_is_open(mouth)
    assert 5 < is_open.sum() < 35
    ch, frames, kp = _portrait(11, mouth)
    up, lo = kp[:, INDEX["face_lip_upper_inner"]], kp[:, INDEX["face_lip_lower_inner"]]
    gap_px = (lo[:, 1] - up[:, 1]) * 256
    # Keypoints: the inner lips part exactly in the open frames.
    assert (gap_px[is_open] > 0.5).all() and np.allclose(gap_px[~is_open], 0, atol=1e-4)
    # Pixels: between the inner lips is the dark mouth interior when open, lips when closed.
    interior = np.array([70, 20, 30])
    for f in range(len(frames)):
        mid = (up[f] + lo[f]) / 2 * 256
        px = frames[f, int(mid[1]), int(mid[0])].astype(int)
        if is_open[f] and gap_px[f] >= 3:
            assert np.abs(px - interior).max() < 40, (f, px)
        elif not is_open[f]:
            assert np.abs(px - interior).max() > 40, (f, px)


def test_drawn_limbs_sit_on_their_keypoints():
    rng = np.random.default_rng(5)
    ch = random_character(rng, style="flat", kind="human")
    ch.held = None
    ch.background = {**ch.background, "kind": "solid", "c1": (0, 255, 0)}
    n = 10
    mot = mo.action_motion("wave", rng, n, 25.0)
    cam = make_camera(ch, "full", 256, 256, rng)
    rg = rig(ch, mot, np.zeros((n, 4), np.float32))
    frames = render_frames(ch, rg, cam, mot)
    kp = cam.to_unit(rg.points)
    for name in ("left_wrist", "right_wrist", "left_elbow", "right_knee", "nose", "left_shoulder"):
        for f in range(n):
            x, y = (kp[f, INDEX[name]] * 256).astype(int)
            if 0 <= x < 256 and 0 <= y < 256:
                assert tuple(frames[f, y, x]) != (0, 255, 0), (name, f)  # not background


def test_retargeting_round_trip():
    """Angles -> keypoints -> angles gives the same arm pose back (real poses can drive toons)."""
    rng = np.random.default_rng(2)
    ch = random_character(rng, kind="human")
    mot = mo.action_motion("wave", rng, 20, 25.0)
    rg = rig(ch, mot, np.zeros((20, 4), np.float32))
    kp = np.concatenate([rg.points, np.ones((20, NUM_KEYPOINTS, 1))], -1).astype(np.float32)
    back = mo.motion_from_keypoints(kp)
    for name in ("l_sh", "l_el", "r_sh", "r_el"):
        d = np.angle(np.exp(1j * (back[:, mo.F[name]] - mot[:, mo.F[name]])))
        assert np.abs(d).max() < 1e-3, name


def test_framings_option_parses_weights_and_names_what_is_wrong():
    from models.commands.data import parse_framings
    from models.errors import UserError

    assert parse_framings("face=0.5, portrait=0.3,half") == {"face": 0.5, "portrait": 0.3, "half": 1.0}
    for bad, words in (("head=1", "unknown framing 'head'"), ("face=x", "not a number"),
                       ("face=-1", ">= 0"), ("face=0", "add up to 0"), ("face=inf", "finite")):
        with pytest.raises(UserError, match=words):
            parse_framings(bad)
