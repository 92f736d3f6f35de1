"""The reference stacked on every noisy frame's channels (dit.ref_concat), and switching it on in a
trained model (models/training/grow.py)."""

import dataclasses

import pytest
import torch

from models.config import get_preset
from models.dit import Conditions, OmniHumanTransformer
from models.errors import UserError
from models.training.grow import switch_on_state, switchable


def _cfg(on: bool):
    cfg = get_preset("tiny-face")
    return cfg.replace(dit=dataclasses.replace(cfg.dit, ref_concat=on))


def _inputs(cfg, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = cfg.dit.latent_channels
    ref = torch.randn(2, c, 1, 8, 8, generator=g)
    x = torch.randn(2, c, 3, 8, 8, generator=g)
    audio = torch.randn(2, 9, cfg.dit.audio_feature_dim, generator=g)
    return x, ref, audio


def _velocity(model, x, ref, audio):
    prep = model.prepare(Conditions(reference=ref, audio=audio), frames=x.shape[2])
    return model(x, torch.tensor([0.3, 0.7]), prep)


def test_patch_embed_has_reference_columns_that_start_at_zero():
    off, on = OmniHumanTransformer(_cfg(False).dit), OmniHumanTransformer(_cfg(True).dit)
    c, p2 = on.cfg.latent_channels, on.cfg.patch_size ** 2
    assert on.patch_embed.weight.shape[1] == off.patch_embed.weight.shape[1] + c * p2
    assert on.patch_embed.weight[:, -c * p2:].abs().sum() == 0


def test_the_reference_reaches_each_noisy_token_once_its_columns_are_trained():
    torch.manual_seed(0)
    model = OmniHumanTransformer(_cfg(True).dit).eval()
    for m in [model.final, model.final_mod, model.vis_mod]:  # open the adaLN-zero gates
        torch.nn.init.normal_(m.weight, std=0.1)
    x, ref, audio = _inputs(_cfg(True))
    with torch.no_grad():
        base = _velocity(model, x, ref, audio)
        c, p2 = model.cfg.latent_channels, model.cfg.patch_size ** 2
        model.patch_embed.weight[:, -c * p2:].normal_(std=0.5)
        moved = _velocity(model, x, ref, audio)
    assert not torch.allclose(base, moved, atol=1e-4)


def test_switching_on_keeps_the_trained_function():
    torch.manual_seed(1)
    old_cfg, new_cfg = _cfg(False), _cfg(True)
    old = OmniHumanTransformer(old_cfg.dit).eval()
    for prm in old.parameters():  # a "trained" model: nothing at zero
        torch.nn.init.normal_(prm, std=0.05)
    old_state = {f"transformer.{k}": v for k, v in old.state_dict().items()}
    new = OmniHumanTransformer(new_cfg.dit).eval()
    fresh = {f"transformer.{k}": v for k, v in new.state_dict().items()}
    assert switchable(old_cfg, new_cfg) and not switchable(new_cfg, old_cfg)
    state = switch_on_state(old_state, fresh)
    new.load_state_dict({k.removeprefix("transformer."): v for k, v in state.items()})
    x, ref, audio = _inputs(new_cfg)
    with torch.no_grad():
        torch.testing.assert_close(_velocity(new, x, ref, audio), _velocity(old, x, ref, audio))


def test_other_differences_are_not_switchable():
    a, b = _cfg(False), _cfg(True)
    wider = b.replace(dit=dataclasses.replace(b.dit, width=96))
    assert not switchable(a, wider)
    assert not switchable(a, a)
    with pytest.raises(UserError, match="patch_embed"):
        bad = {"transformer.patch_embed.weight": torch.zeros(4, 10)}
        switch_on_state(bad, {"transformer.patch_embed.weight": torch.zeros(5, 12)})


def test_the_residual_flow_round_trips_and_is_off_by_default():
    on = OmniHumanTransformer(get_preset("tiny-face").dit)
    off = OmniHumanTransformer(get_preset("tiny").dit)
    z, ref = torch.randn(1, 4, 3, 8, 8), torch.randn(1, 4, 1, 8, 8)
    assert on.cfg.ref_residual and not off.cfg.ref_residual
    torch.testing.assert_close(on.to_flow(z, ref), z - ref)
    torch.testing.assert_close(on.from_flow(on.to_flow(z, ref), ref), z)
    assert off.to_flow(z, ref) is z and off.from_flow(z, ref) is z


def test_a_model_without_the_residual_can_start_one():
    a = _cfg(True)
    b = a.replace(dit=dataclasses.replace(a.dit, ref_residual=False))
    assert switchable(b, a) and not switchable(a, b)


def test_the_still_reference_is_the_picture_encoded_as_an_unmoving_video():
    from models.model import OmniHuman

    torch.manual_seed(0)
    model = OmniHuman(get_preset("tiny-face")).eval()
    px = torch.rand(1, 3, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        still = model.still_latents(px, 9)
        torch.testing.assert_close(still, model.vae.encode(px.repeat(1, 1, 9, 1, 1)))
        assert still.shape == (1, 4, 3, 8, 8)
        from_latent = model.still_latents(model.vae.encode(px), 9)  # the training cache keeps latents
    assert from_latent.shape == still.shape
    assert model.uses_still and not OmniHuman(get_preset("tiny")).uses_still


def test_the_trainer_remembers_each_cached_windows_still_reference(tmp_path):
    """Trainer._cached_still: the still video of a cached reference latent, computed once per window,
    alone (so it does not depend on the batch it came in), and equal to OmniHuman.still_latents."""
    from models.training.recipe import parse_recipe
    from models.training.trainer import Trainer

    recipe = parse_recipe({"preset": "tiny-face", "stages": [{"name": "a", "kind": "dit", "steps": 1, "lr": 1e-3,
                                                              "batch_size": 2}]}, "test")
    trainer = Trainer(recipe, [], tmp_path, device="cpu", log=lambda s: None)
    g = torch.Generator().manual_seed(0)
    refs = torch.randn(3, 4, 1, 8, 8, generator=g).half()
    calls = []
    real = trainer.model.still_latents
    trainer.model.still_latents = lambda r, n: calls.append(r.shape[0]) or real(r, n)
    first = trainer._cached_still(refs[:2], 9)
    assert calls == [1, 1] and first.shape == (2, 4, 3, 8, 8)
    again = trainer._cached_still(refs[[1, 2, 0]], 9)  # two remembered, one new
    assert calls == [1, 1, 1]
    torch.testing.assert_close(again[0], first[1], rtol=0, atol=0)
    torch.testing.assert_close(again[2], first[0], rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(first, real(refs[:2].float(), 9))
    trainer._cached_still(refs[:1], 5)  # another segment length is another still video
    assert calls == [1, 1, 1, 1]
