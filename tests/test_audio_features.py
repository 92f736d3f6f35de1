import json

import numpy as np
import pytest
import torch

from models.conditions.audio import MelFeatures, Wav2Vec2Features
from models.conditions.text import tokenize
from models.config import get_preset
from models.errors import UserError


def test_mel_shape_and_alignment():
    cond = get_preset("tiny").cond
    mel = MelFeatures(cond)
    n = 16000
    audio = np.zeros(n, np.float32)
    audio[640 * 10 : 640 * 11] = np.sin(np.arange(640) * 0.3)  # a burst in video frame 10 only
    f = mel(audio)
    assert f.shape == (25, 4 * cond.n_mels)
    energy = f.mean(1)
    assert int(energy.argmax()) == 10
    assert energy[10] > energy[5] + 1 and energy[13] < energy[10] - 1  # local in time
    assert mel(audio, num_frames=30).shape[0] == 30  # padded to the asked length


def test_mel_other_fps():
    cond = get_preset("tiny").cond
    f = MelFeatures(cond.__class__(**{**cond.__dict__, "fps": 20.0}))(np.zeros(16000, np.float32))
    assert f.shape[0] == 20


def test_wav2vec2_local_folder(tmp_path):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2, vocab_size=10,
    )
    torch.manual_seed(0)
    transformers.Wav2Vec2Model(cfg).save_pretrained(tmp_path / "w2v", safe_serialization=True)
    enc = Wav2Vec2Features(tmp_path / "w2v", fps=25)
    audio = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    f = enc(audio)
    assert f.shape == (25, 32) and torch.isfinite(f).all()
    assert f.std() > 0


def test_wav2vec2_bad_folders(tmp_path):
    with pytest.raises(UserError, match="no config.json"):
        Wav2Vec2Features(tmp_path, fps=25)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(UserError, match="not a wav2vec2"):
        Wav2Vec2Features(tmp_path, fps=25)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "wav2vec2"}))
    with pytest.raises(UserError, match="no weights"):
        Wav2Vec2Features(tmp_path, fps=25)


def test_tokenizer():
    tok, mask = tokenize(["hé", ""], max_len=16)
    assert tok.shape == (2, 5)  # BOS + 3 UTF-8 bytes + EOS
    assert mask[0].all() and not mask[1].any()
    long, _ = tokenize(["x" * 100], max_len=16)
    assert long.shape[1] == 16
