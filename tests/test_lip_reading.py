"""The lip-reading head on the audio path (DiTConfig.mouth_head, a stage's audio_mouth_weight)."""

import json

import pytest
import torch

from models.errors import UserError
from models.training.recipe import parse_recipe

RECIPE = {
    "preset": "tiny-face", "seed": 0, "num_workers": 0, "log_every": 1, "checkpoint_every": 100,
    "ema_decay": 0.9, "stages": [
        {"name": "audio", "kind": "dit", "steps": 6, "lr": 3e-3, "warmup": 1, "batch_size": 2,
         "keep": {"audio": 1.0, "reference": 1.0}, "cache_windows": 4, "audio_mouth_weight": 1.0}],
}


def test_the_head_reads_per_frame_mouth_parameters_from_the_audio_features():
    from models.checkpoint import random_model

    tr = random_model("tiny-face", seed=0).transformer
    mel = torch.randn(2, 9, tr.cfg.audio_feature_dim)
    out = tr.read_lips(mel)
    assert out.shape == (2, 9, 4)
    # Its parameters are part of the audio path (the audio_lr_mult group trains them).
    assert {id(p) for p in tr.audio_mouth.parameters()} <= {id(p) for p in tr.audio_path_parameters()}
    # A frame's reading depends on its neighbours within +-2 frames only.
    mel2 = mel.clone()
    mel2[:, 8] += 1.0
    diff = (tr.read_lips(mel2) - out).abs().amax((0, 2))
    assert diff[:6].max() == 0 and diff[6:].min() > 0


def test_presets_without_a_head_refuse_the_weight_and_keep_loading():
    from models.checkpoint import random_model

    raw = json.loads(json.dumps(RECIPE))
    raw["preset"] = "tiny"
    with pytest.raises(UserError, match="audio_mouth_weight.*lip-reading head.*'tiny'"):
        parse_recipe(raw, "r.json")
    tr = random_model("tiny", seed=0).transformer
    assert tr.audio_mouth is None and not any("audio_mouth" in k for k in tr.state_dict())
    with pytest.raises(ValueError, match="no lip-reading head"):
        tr.read_lips(torch.zeros(1, 5, tr.cfg.audio_feature_dim))


@pytest.mark.parametrize("kind, value, match", [("dit", -1, "number >= 0"), ("dit", "x", "number >= 0"),
                                                ("vae", 1.0, "dit' stages only")])
def test_bad_weights_are_named(kind, value, match):
    raw = json.loads(json.dumps(RECIPE))
    stage = raw["stages"][0]
    stage["audio_mouth_weight"] = value
    if kind == "vae":
        raw["stages"][0] = {"name": "v", "kind": "vae", "steps": 1, "lr": 1e-3, "batch_size": 1,
                            "audio_mouth_weight": value}
    with pytest.raises(UserError, match=rf"stages\[0\].*audio_mouth_weight.*{match}"):
        parse_recipe(raw, "r.json")


def test_the_lip_loss_trains_the_head_and_resumes_exactly(face_data, tmp_path):
    """With the weight on, the step logs the head's loss, it falls over a few steps on the same cached
    windows, and a stopped run resumes onto the straight run's weights; with it off the head is not
    trained at all."""
    from models.training.trainer import Trainer

    logs: list[str] = []
    r = parse_recipe(RECIPE, "r.json")
    straight = Trainer(r, [str(face_data)], tmp_path / "a", device="cpu", log=logs.append)
    head0 = straight.model.transformer.audio_mouth.weight.detach().clone()
    straight.train()
    lips = [float(line.split(" lips ")[1].split()[0]) for line in logs if " lips " in line]
    assert len(lips) >= 5 and lips[-1] < lips[0]
    assert not torch.equal(head0, straight.model.transformer.audio_mouth.weight)

    cut = Trainer(r, [str(face_data)], tmp_path / "b", device="cpu", log=lambda s: None, max_steps=3)
    cut.train()
    resumed = Trainer(r, [str(face_data)], tmp_path / "b", device="cpu", resume=True, log=lambda s: None)
    resumed.train()
    for k, v in straight.model.transformer.state_dict().items():
        assert torch.equal(v, resumed.model.transformer.state_dict()[k]), k

    off = json.loads(json.dumps(RECIPE))
    off["stages"][0]["audio_mouth_weight"] = 0.0
    plain = Trainer(parse_recipe(off, "r.json"), [str(face_data)], tmp_path / "c", device="cpu", log=lambda s: None)
    w0 = plain.model.transformer.audio_mouth.weight.detach().clone()
    plain.train()
    assert torch.equal(w0, plain.model.transformer.audio_mouth.weight)


def _inputs(tr, b=2, frames=3, seed=0):
    from models.dit import Conditions

    g = torch.Generator().manual_seed(seed)
    c, s = tr.cfg.latent_channels, 8
    x = torch.randn(b, c, frames, s, s, generator=g)
    ref = torch.randn(b, c, 1, s, s, generator=g)
    mel = torch.randn(b, 1 + 4 * (frames - 1), tr.cfg.audio_feature_dim, generator=g)
    return x, torch.full((b,), 0.6), ref, mel, Conditions


def test_per_frame_audio_modulation_starts_at_zero_and_then_hears_the_audio():
    import dataclasses

    from models.checkpoint import random_model
    from models.dit import OmniHumanTransformer

    tr = random_model("tiny-face", seed=0).transformer.eval()
    assert tr.cfg.audio_adaln and tr.audio_mod is not None
    plain = OmniHumanTransformer(dataclasses.replace(tr.cfg, audio_adaln=False)).eval()
    plain.load_state_dict({k: v for k, v in tr.state_dict().items() if not k.startswith("audio_mod.")})
    x, t, ref, mel, Conditions = _inputs(tr)

    def run(model, audio):
        cond = Conditions(reference=ref, audio=audio)
        with torch.no_grad():
            return model(x, t, model.prepare(cond, x.shape[2]))

    # Zero-initialised, so a new network is the same network as without it.
    fresh = OmniHumanTransformer(tr.cfg)
    assert not fresh.audio_mod[1].weight.any() and not fresh.audio_mod[1].bias.any()
    torch.nn.init.zeros_(tr.audio_mod[1].weight)
    torch.nn.init.zeros_(tr.audio_mod[1].bias)
    assert torch.allclose(run(tr, mel), run(plain, mel), atol=1e-6, rtol=0)
    # Once trained (here: random weights) and with the cross-attention silenced, the output still
    # depends on the audio, through the modulation alone.
    for blk in tr.blocks:
        torch.nn.init.zeros_(blk.audio_attn.out.weight)
        torch.nn.init.zeros_(blk.audio_attn.out.bias)
    torch.nn.init.normal_(tr.audio_mod[1].weight, std=0.05)
    other = mel.roll(1, 0)
    assert (run(tr, mel) - run(tr, other)).abs().max() > 1e-3
    assert {id(p) for p in tr.audio_mod.parameters()} <= {id(p) for p in tr.audio_path_parameters()}
