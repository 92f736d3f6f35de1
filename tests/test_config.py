import json

import pytest

from models.config import PRESETS, ModelConfig, get_preset, latent_frames, resolution_for


def test_presets_exist():
    for name in ("tiny", "toon-s", "base", "large"):
        assert get_preset(name).name == name


def test_unknown_preset_named():
    with pytest.raises(KeyError, match="nope"):
        get_preset("nope")


@pytest.mark.parametrize("name", list(PRESETS))
def test_config_json_round_trip(name):
    cfg = PRESETS[name]
    again = ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg


def test_config_missing_field_is_named():
    d = PRESETS["tiny"].to_dict()
    del d["dit"]["width"]
    with pytest.raises(ValueError, match="width"):
        ModelConfig.from_dict(d)


@pytest.mark.parametrize("aspect", [1.0, 3 / 4, 9 / 16, 16 / 9, 2.35])
def test_resolution_multiples_of_16(aspect):
    h, w = resolution_for(aspect, 128 * 128)
    assert h % 16 == 0 and w % 16 == 0
    assert abs(w / h - aspect) / aspect < 0.2
    assert 0.7 < h * w / (128 * 128) < 1.3


def test_latent_frames():
    assert latent_frames(1) == 1
    assert latent_frames(25) == 7
    with pytest.raises(ValueError):
        latent_frames(24)


def test_preset_sizes_match_their_names():
    """base is about 1B parameters, large about 8B (counted on the meta device)."""
    import torch

    from models.model import OmniHuman

    def params(name):
        with torch.device("meta"):
            return OmniHuman(PRESETS[name]).num_parameters()["total"]

    assert 0.8e9 < params("base") < 1.5e9
    assert 6e9 < params("large") < 10e9
    assert 10e6 < params("toon-s") < 40e6
