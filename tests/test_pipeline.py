import numpy as np
import pytest
import torch

from models.engines import Callbacks, GenerationInputs, GenerationSettings
from models.errors import UserError
from models.keypoints import NUM_KEYPOINTS
from models.pipeline import generate, plan_segments


@pytest.fixture
def image(rng):
    return (rng.random((48, 64, 3)) * 255).astype(np.uint8)


def speech_like(seconds, rng):
    n = int(seconds * 16000)
    t = np.arange(n) / 16000
    return (0.3 * np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def test_plan_segments():
    assert plan_segments(9, 9) == [(0, 9)]
    assert plan_segments(20, 9) == [(0, 9), (9, 9), (18, 5)]
    assert plan_segments(1, 9) == [(0, 1)]
    for n in range(1, 60):
        plan = plan_segments(n, 9)
        assert all((length - 1) % 4 == 0 for _, length in plan)
        assert plan[-1][0] + plan[-1][1] >= n > plan[-1][0]
        assert plan[-1][0] + plan[-1][1] - n <= 3


def test_length_matches_audio_and_segments_stream_in_order(tiny_model, image, rng):
    audio = speech_like(1.0, rng)  # 25 frames
    events = []
    cb = Callbacks(on_step=lambda s, n, i, k: events.append(("step", s, i)),
                   on_segment=lambda s, f, start: events.append(("seg", s, start, f.shape)))
    res = generate(tiny_model, GenerationInputs(image, audio), GenerationSettings(steps=2, seed=1), cb)
    assert res.num_frames == 25 and res.frames.shape[0] == 25
    assert res.frames.dtype == np.uint8 and res.frames.shape[1:3] == (res.height, res.width)
    segs = [e for e in events if e[0] == "seg"]
    assert [s[2] for s in segs] == [0, 9, 18]
    assert [s[3][0] for s in segs] == [9, 9, 7]  # last segment of 9 frames truncated to the audio
    # steps of segment k all come before segment k is delivered
    order = [(e[0], e[1]) for e in events]
    assert order.index(("seg", 0)) > order.index(("step", 0)) and order.index(("step", 1)) > order.index(("seg", 0))


def _spy_motion(model, monkeypatch) -> list:
    """The motion latents of every ``prepare`` call (None where absent), in call order."""
    seen = []
    real_prepare = model.transformer.prepare

    def spy(cond, frames):
        seen.append(None if cond.motion is None else cond.motion.clone())
        return real_prepare(cond, frames)

    monkeypatch.setattr(model.transformer, "prepare", spy)
    return seen


def test_motion_frames_hand_over(tiny_model, image, rng, monkeypatch):
    """Segment k > 0 is conditioned on the VAE encoding of the last 5 frames of segment k - 1."""
    seen = _spy_motion(tiny_model, monkeypatch)
    decoded = []
    real_decode = tiny_model.vae.decode

    def decode_spy(z, *a, **k):
        out = real_decode(z, *a, **k)
        decoded.append(out.clone())
        return out

    monkeypatch.setattr(tiny_model.vae, "decode", decode_spy)
    generate(tiny_model, GenerationInputs(image, speech_like(0.72, rng)), GenerationSettings(steps=1, seed=3))
    full_calls = seen[0::2]  # prepare is called for the full and the null conditions per segment
    assert full_calls[0] is None
    assert full_calls[1].shape[2] == 2  # 5 frames -> 2 latent frames
    expected = tiny_model.vae.encode(decoded[0][:, :, -5:])
    assert torch.allclose(full_calls[1], expected, atol=1e-5)


def test_deterministic_with_seed_and_seed_reported(tiny_model, image, rng):
    audio = speech_like(0.4, rng)
    a = generate(tiny_model, GenerationInputs(image, audio), GenerationSettings(steps=2, seed=7))
    b = generate(tiny_model, GenerationInputs(image, audio), GenerationSettings(steps=2, seed=7))
    assert a.seed == 7 and np.array_equal(a.frames, b.frames)
    c = generate(tiny_model, GenerationInputs(image, audio), GenerationSettings(steps=2))
    assert isinstance(c.seed, int)


def test_cancel_keeps_finished_segments(tiny_model, image, rng):
    state = {"segments": 0, "steps_after": 0}

    def on_segment(s, frames, start):
        state["segments"] += 1

    def on_step(s, n, i, k):
        if state["segments"] >= 1:
            state["steps_after"] += 1

    cb = Callbacks(on_step=on_step, on_segment=on_segment, should_cancel=lambda: state["segments"] >= 1)
    res = generate(tiny_model, GenerationInputs(image, speech_like(1.0, rng)), GenerationSettings(steps=3, seed=0), cb)
    assert res.cancelled and res.segments_done == 1 and res.frames.shape[0] == 9
    assert state["steps_after"] == 0  # stopped before the next step


def test_modes(tiny_model, image, rng):
    pose = np.zeros((13, NUM_KEYPOINTS, 3), np.float32)
    pose[:, :, :2] = rng.random((13, NUM_KEYPOINTS, 2))
    pose[:, :, 2] = 1
    audio = speech_like(0.52, rng)
    r = generate(tiny_model, GenerationInputs(image, pose=pose), GenerationSettings(steps=1, seed=0))
    assert r.mode == "pose" and r.num_frames == 13
    r = generate(tiny_model, GenerationInputs(image, audio, pose=pose), GenerationSettings(steps=1, seed=0))
    assert r.mode == "combined"
    r = generate(tiny_model, GenerationInputs(image, audio, pose=pose),
                 GenerationSettings(steps=1, seed=0, mode="pose"))
    assert r.mode == "pose" and r.num_frames == 13
    with pytest.raises(UserError, match="pose"):
        generate(tiny_model, GenerationInputs(image, audio), GenerationSettings(steps=1, mode="pose"))


def test_bad_settings(tiny_model, image, rng):
    audio = speech_like(0.2, rng)
    with pytest.raises(UserError, match="1 \\+ 4k"):
        generate(tiny_model, GenerationInputs(image, audio), GenerationSettings(segment_frames=8))
    with pytest.raises(UserError, match="annealing"):
        generate(tiny_model, GenerationInputs(image, audio), GenerationSettings(anneal="fast"))


def test_motion_noise_blends_the_handed_over_frames_toward_noise(tiny_model, image, rng, monkeypatch):
    """SamplingConfig.motion_noise (or the setting): segment k > 0 is led by its motion latents blended
    this far toward seeded noise, as training corrupts them; 0 hands them over clean."""
    seen = _spy_motion(tiny_model, monkeypatch)
    audio = speech_like(0.72, rng)
    runs = {}
    for level in (0.0, 0.5, 0.5):
        seen.clear()
        res = generate(tiny_model, GenerationInputs(image, audio),
                       GenerationSettings(steps=1, seed=3, motion_noise=level))
        runs.setdefault(level, []).append((seen[2].clone(), res.frames))
    clean, noisy = runs[0.0][0][0], runs[0.5][0][0]
    # The first segment is the same: the motion of segment 2 differs by the noise alone.
    assert np.array_equal(runs[0.0][0][1][:9], runs[0.5][0][1][:9])
    diff = noisy - 0.5 * clean
    assert not torch.allclose(noisy, clean, atol=1e-3)
    assert 0.3 < float(diff.std() / 0.5) < 2.0  # the rest is the noise at weight 0.5, unit variance
    # Seeded: the same level gives the same frames.
    assert torch.equal(runs[0.5][0][0], runs[0.5][1][0])
    assert np.array_equal(runs[0.5][0][1], runs[0.5][1][1])


def test_motion_anchor_pulls_the_handed_over_frames_toward_the_reference(tiny_model, image, rng, monkeypatch):
    """SamplingConfig.motion_anchor (or the setting): segment k > 0 is led by its motion latents pulled
    this far toward the reference's still video of the motion frames' length; 1 is the reference itself."""
    from models.pipeline import prepare_reference

    seen = _spy_motion(tiny_model, monkeypatch)
    audio = speech_like(0.72, rng)
    motion = {}
    for level in (0.0, 0.5, 1.0):
        seen.clear()
        generate(tiny_model, GenerationInputs(image, audio),
                 GenerationSettings(steps=1, seed=3, motion_noise=0.0, motion_anchor=level))
        motion[level] = seen[2].clone()  # segment 1, its full branch
    res = generate(tiny_model, GenerationInputs(image, audio), GenerationSettings(steps=1, seed=3))
    with torch.no_grad():
        ref = prepare_reference(image, res.height, res.width).to(next(tiny_model.transformer.parameters()).dtype)
        still = tiny_model.still_latents(ref, 5)
    assert torch.allclose(motion[1.0], still, atol=1e-5)
    assert torch.allclose(motion[0.5], 0.5 * (motion[0.0] + still), atol=1e-5)
    assert not torch.allclose(motion[0.0], still, atol=1e-3)


def test_still_lead_leads_the_first_segment_with_the_reference_standing_still(tiny_model, image, rng, monkeypatch):
    """SamplingConfig.still_lead: the first segment, which has no previous frames, is led by the
    reference's still video of the motion frames' length; off, it has no motion frames."""
    import dataclasses

    from models.pipeline import prepare_reference

    seen = _spy_motion(tiny_model, monkeypatch)
    audio = speech_like(0.72, rng)
    settings = GenerationSettings(steps=1, seed=3, motion_noise=0.0)
    generate(tiny_model, GenerationInputs(image, audio), settings)
    assert seen[0] is None and seen[1] is None  # both branches of segment 0
    seen.clear()
    cfg = tiny_model.config
    monkeypatch.setattr(tiny_model, "config", dataclasses.replace(
        cfg, sampling=dataclasses.replace(cfg.sampling, still_lead=True)))
    res = generate(tiny_model, GenerationInputs(image, audio), settings)
    with torch.no_grad():
        ref = prepare_reference(image, res.height, res.width).to(next(tiny_model.transformer.parameters()).dtype)
        still = tiny_model.still_latents(ref, 5)
    assert torch.allclose(seen[0], still, atol=1e-5) and torch.allclose(seen[1], still, atol=1e-5)
    assert not torch.allclose(seen[2], still, atol=1e-3)  # later segments: the previous frames
    # The setting overrides the model's default, both ways.
    seen.clear()
    generate(tiny_model, GenerationInputs(image, audio), dataclasses.replace(settings, still_lead=False))
    assert seen[0] is None
    monkeypatch.setattr(tiny_model, "config", cfg)
    seen.clear()
    again = generate(tiny_model, GenerationInputs(image, audio), dataclasses.replace(settings, still_lead=True))
    assert torch.allclose(seen[0], still, atol=1e-5) and np.array_equal(again.frames, res.frames)


def test_motion_anchor_outside_0_1_is_refused(tiny_model, image, rng):
    with pytest.raises(UserError, match="motion anchor must be between 0 and 1"):
        generate(tiny_model, GenerationInputs(image, speech_like(0.2, rng)), GenerationSettings(motion_anchor=-0.1))


def test_motion_noise_outside_0_1_is_refused(tiny_model, image, rng):
    with pytest.raises(UserError, match="motion noise must be between 0 and 1"):
        generate(tiny_model, GenerationInputs(image, speech_like(0.2, rng)), GenerationSettings(motion_noise=1.5))
