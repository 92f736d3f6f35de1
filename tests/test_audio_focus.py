"""Audio guidance kept to the mouth (SamplingConfig.audio_focus): the mouth found on the reference,
the per-position scale in the sampler, and the pipeline's choice and fallback."""

import numpy as np
import pytest
import torch

from models.engines import GenerationInputs, GenerationSettings
from models.errors import UserError
from models.flow import guided_velocity
from models.media import read_image
from models.pipeline import generate, mouth_region
from tests.test_pipeline import speech_like

FACE = "resources/examples/face.png"


def test_the_mouth_region_sits_on_the_lips_of_the_example():
    pytest.importorskip("mediapipe")
    img = read_image(FACE)  # 272 x 368, lips near (151, 199), eyes near y = 165
    weights, region = mouth_region(img, 28, 20)
    assert region == "mouth" and weights.shape == (28, 20) and weights.dtype == np.float32
    assert 0.0 <= weights.min() and weights.max() <= 1.0
    y, x = np.unravel_index(np.argmax(weights), weights.shape)
    assert abs((x + 0.5) / 20 - 151 / 272) < 0.1 and abs((y + 0.5) / 28 - 199 / 368) < 0.1
    assert weights[int(165 / 368 * 28) - 2, :].max() < 0.2  # the eyes' row is left alone
    assert weights[0, 0] < 1e-3 and weights[-1, -1] < 1e-3


def test_without_a_face_the_whole_frame_is_guided():
    weights, region = mouth_region(np.full((64, 48, 3), 128, np.uint8), 16, 12)
    assert weights is None and region.startswith("frame") and "no face" in region


def test_the_map_scales_the_audio_guidance_per_position():
    x = torch.zeros(1, 2, 1, 2, 2)
    cond, uncond = torch.ones_like(x), torch.zeros_like(x)

    def model(xx, t, branches):
        return torch.cat([cond if audio else uncond for _, audio in branches])

    amap = torch.tensor([[1.0, 0.0], [0.5, 1.0]])[None, None, None]
    v = guided_velocity(model, x, torch.zeros(1), 1.0, 5.0, False, True, amap)
    assert torch.allclose(v[0, 0, 0], torch.tensor([[5.0, 1.0], [3.0, 5.0]]))
    assert torch.equal(guided_velocity(model, x, torch.zeros(1), 1.0, 5.0, False, True), torch.full_like(x, 5.0))


def _spy_maps(monkeypatch) -> list:
    import models.pipeline as pl

    seen, real = [], pl.euler_sample

    def spy(*a, **k):
        seen.append(k.get("audio_map"))
        return real(*a, **k)

    monkeypatch.setattr(pl, "euler_sample", spy)
    return seen


def test_generation_keeps_the_guidance_to_the_mouth_when_asked(tiny_model, rng, monkeypatch):
    pytest.importorskip("mediapipe")
    seen = _spy_maps(monkeypatch)
    img, audio = read_image(FACE), speech_like(0.4, rng)
    res = generate(tiny_model, GenerationInputs(img, audio), GenerationSettings(steps=1, seed=0, audio_focus=0.75,
                                                                                cfg_audio=3.0))
    assert res.audio_region == "mouth" and seen and all(m is seen[0] for m in seen)
    m = seen[0]
    h, w = res.height // tiny_model.config.vae.spatial_factor, res.width // tiny_model.config.vae.spatial_factor
    assert m.shape == (1, 1, 1, h, w)
    assert float(m.min()) == pytest.approx(0.25, abs=1e-3) and float(m.max()) > 0.9  # a quarter kept outside
    seen.clear()
    res = generate(tiny_model, GenerationInputs(img, audio), GenerationSettings(steps=1, seed=0, audio_focus=0.0,
                                                                                cfg_audio=3.0))
    assert res.audio_region == "" and all(m is None for m in seen)  # no focus asked, none to report


def test_a_picture_without_a_face_falls_back_to_the_whole_frame(tiny_model, rng, monkeypatch):
    seen = _spy_maps(monkeypatch)
    img = (rng.random((48, 64, 3)) * 255).astype(np.uint8)
    res = generate(tiny_model, GenerationInputs(img, speech_like(0.2, rng)),
                   GenerationSettings(steps=1, seed=0, audio_focus=1.0, cfg_audio=3.0))
    assert res.audio_region.startswith("frame (") and all(m is None for m in seen)
    assert res.frames.shape[0] == res.num_frames  # the take is made all the same


def test_audio_focus_outside_0_1_is_refused(tiny_model, rng):
    with pytest.raises(UserError, match="audio focus must be between 0 and 1"):
        generate(tiny_model, GenerationInputs(read_image(FACE), speech_like(0.2, rng)),
                 GenerationSettings(audio_focus=1.2))
