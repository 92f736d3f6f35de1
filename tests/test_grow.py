"""Growing a trained model's latent (models/training/grow.py): same behaviour at the start, then trainable."""

import dataclasses
import json

import pytest
import torch

from models.config import PRESETS, get_preset
from models.errors import UserError
from models.training.grow import grow_latent_state, growable
from tests.conftest import randomize_


def _wide(channels: int = 6):
    tiny = get_preset("tiny")
    return dataclasses.replace(tiny, name="tiny-wide",
                               vae=dataclasses.replace(tiny.vae, latent_channels=channels),
                               dit=dataclasses.replace(tiny.dit, latent_channels=channels))


@pytest.fixture
def grown():
    from models.model import OmniHuman

    torch.manual_seed(0)
    old = OmniHuman(get_preset("tiny")).eval()
    randomize_(old, seed=1)  # every path active, the zero-initialised output layers included
    old.vae.latent_mean.normal_()
    old.vae.latent_std.uniform_(0.5, 2.0)
    new = OmniHuman(_wide()).eval()
    new.load_state_dict(grow_latent_state(old.state_dict(), old.config, new.config, new.state_dict()))
    return old, new


def test_growable_only_by_more_latent_channels():
    tiny = get_preset("tiny")
    assert growable(tiny, _wide())
    assert not growable(_wide(), tiny)  # shrinking
    assert not growable(tiny, tiny)
    other = dataclasses.replace(_wide(), dit=dataclasses.replace(_wide().dit, depth=3))
    assert not growable(tiny, other)
    half = dataclasses.replace(tiny, vae=dataclasses.replace(tiny.vae, latent_channels=6))  # VAE only
    assert not growable(tiny, half)
    with pytest.raises(UserError, match="cannot grow"):
        grow_latent_state({}, tiny, get_preset("toon-s"), {})


@torch.no_grad()
def test_grown_vae_keeps_the_old_channels_and_ignores_the_new(grown):
    old, new = grown
    x = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    zo, zn = old.vae.encode(x), new.vae.encode(x)
    assert zn.shape[1] == 6
    assert torch.allclose(zn[:, :4], zo, atol=1e-5)
    assert zn[:, 4:].abs().max() > 0  # the new channels carry something for the decoder to learn from
    padded = torch.cat([zo, torch.randn_like(zn[:, 4:])], 1)  # whatever the new channels hold
    assert torch.allclose(new.vae.decode(padded), old.vae.decode(zo), atol=1e-5)


@torch.no_grad()
def test_grown_transformer_keeps_the_old_velocity_and_starts_the_new_at_zero(grown):
    from models.conditions.text import tokenize
    from models.dit import Conditions

    old, new = grown
    b, frames, h, w = 2, 2, 4, 4
    tv = 1 + 4 * (frames - 1)
    cfg = old.config.dit
    tok, mask = tokenize(["a toon waves", ""], cfg.text_max_len)

    def cond(ref, motion):
        return Conditions(reference=ref, motion=motion, text_tokens=tok, text_mask=mask,
                          audio=audio, pose=pose)

    audio = torch.randn(b, tv, cfg.audio_feature_dim)
    pose = torch.rand(b, cfg.pose_in_channels, tv, 8 * h, 8 * w)
    ref, motion, x = torch.randn(b, 4, 1, h, w), torch.randn(b, 4, 2, h, w), torch.randn(b, 4, frames, h, w)
    extra = lambda t: torch.randn(t.shape[0], 2, *t.shape[2:])  # noqa: E731 - new channels hold anything
    t = torch.tensor([0.3, 0.8])
    vo = old.transformer(x, t, old.transformer.prepare(cond(ref, motion), frames))
    cn = cond(torch.cat([ref, extra(ref)], 1), torch.cat([motion, extra(motion)], 1))
    vn = new.transformer(torch.cat([x, extra(x)], 1), t, new.transformer.prepare(cn, frames))
    assert torch.allclose(vn[:, :4], vo, atol=1e-4)
    assert torch.equal(vn[:, 4:], torch.zeros_like(vn[:, 4:]))


def test_init_grows_a_model_with_fewer_latent_channels(dataset, tmp_path, tiny_model, monkeypatch):
    from models.checkpoint import save_model
    from models.training.recipe import parse_recipe
    from models.training.trainer import Trainer

    monkeypatch.setitem(PRESETS, "tiny-wide", _wide())
    save_model(tiny_model, tmp_path / "model")
    raw = json.loads(open("resources/recipes/tiny-test.json").read())
    raw["preset"] = "tiny-wide"
    logs = []
    t = Trainer(parse_recipe(raw, "r.json"), [str(dataset)], tmp_path / "run", device="cpu", log=logs.append,
                init=tmp_path / "model")
    assert any("grew the latent" in s and "4 to 6" in s for s in logs)
    assert t.model.vae.decoder.conv_in.conv.weight.shape[1] == 6
    assert torch.equal(t.model.transformer.time_mlp[0].weight, tiny_model.transformer.time_mlp[0].weight.float())
    t.max_steps = 2
    t.train()  # the grown model trains
    assert t.step == 2
