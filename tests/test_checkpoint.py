import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from models.checkpoint import CheckpointError, list_models, load_model, random_model, save_model


def test_round_trip_bit_exact(tmp_path):
    m = random_model("tiny", seed=3)
    save_model(m, tmp_path / "m", card="# tiny\n")
    m2 = load_model(tmp_path / "m")
    s1, s2 = m.state_dict(), m2.state_dict()
    assert s1.keys() == s2.keys()
    for k in s1:
        assert torch.equal(s1[k], s2[k]), k
    assert m2.config == m.config
    assert (tmp_path / "m" / "MODEL_CARD.md").read_text() == "# tiny\n"
    assert [e.name for e in list_models([tmp_path]) if not e.bundled] == ["m"]


def test_bf16_checkpoint_loads(tmp_path):
    m = random_model("tiny", seed=3)
    save_model(m, tmp_path / "m", dtype=torch.bfloat16)
    m2 = load_model(tmp_path / "m")
    w = m.transformer.patch_embed.weight
    assert torch.equal(m2.transformer.patch_embed.weight, w.to(torch.bfloat16).float())


def test_missing_unexpected_and_misshaped_keys_named(tmp_path):
    m = random_model("tiny")
    save_model(m, tmp_path / "m")
    path = tmp_path / "m" / "model.safetensors"
    state = load_file(str(path))
    del state["transformer.final.weight"]
    state["transformer.bogus"] = torch.zeros(1)
    state["vae.latent_std"] = torch.ones(7)
    save_file(state, str(path))
    with pytest.raises(CheckpointError) as e:
        load_model(tmp_path / "m")
    msg = str(e.value)
    assert "transformer.final.weight" in msg and "transformer.bogus" in msg and "vae.latent_std" in msg
    assert "missing" in msg and "unexpected" in msg and "mis-shaped" in msg


def test_config_of_another_preset_fails(tmp_path):
    m = random_model("tiny")
    save_model(m, tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["model"]["dit"]["width"] = 96
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="mis-shaped"):
        load_model(tmp_path / "m")


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "nope")
    (tmp_path / "d").mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        load_model(tmp_path / "d")
    (tmp_path / "d" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="unreadable config"):
        load_model(tmp_path / "d")
    m = random_model("tiny")
    save_model(m, tmp_path / "p")
    (tmp_path / "p" / "model.safetensors").write_bytes(b"\x80\x04garbage pickle-like bytes")
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        load_model(tmp_path / "p")


def test_a_model_notice_reaches_the_listing(tmp_path):
    import json

    from models.checkpoint import list_models, read_notice, save_model
    from models.config import get_preset
    from models.model import OmniHuman

    folder = save_model(OmniHuman(get_preset("tiny")), tmp_path / "m")
    assert read_notice(folder) == ""
    raw = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**raw, "notice": "a placeholder"}))
    entry = [e for e in list_models([tmp_path]) if e.path == folder][0]
    assert entry.notice == "a placeholder"
    (folder / "config.json").write_text("{broken")
    assert read_notice(folder) == ""
