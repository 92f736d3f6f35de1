"""``main.py train-mouth`` end to end at a tiny size: bank, augmentation, training, export, reload."""

from __future__ import annotations

import json

import numpy as np


def test_augment_keeps_timings_on_the_new_clock():
    from models.instant.train_mouth import augment

    rng = np.random.default_rng(0)
    audio = np.zeros(16000, np.float32)
    audio[8000:8800] = 0.5
    out, ph, dry = augment(audio, [("a", 0.5, 0.55)], rng)
    assert len(out) == len(dry) and np.isfinite(out).all() and np.abs(out).max() <= 0.9 + 1e-6
    # The burst sits where the shifted phoneme says it does.
    loud = np.flatnonzero(np.abs(dry) > 0.25) / 16000
    assert abs(loud[0] - ph[0][1]) < 0.01


def test_train_mouth_command_writes_a_loadable_model(tmp_path):
    from models.cli import main
    from models.instant.mouth import MouthPredictor, load_mouth_model

    out = tmp_path / "mouth"
    code = main(["train-mouth", "--out", str(out), "--count", "3", "--steps", "3", "--copies", "1"])
    assert code == 0
    info = json.loads((out / "config.json").read_text())
    assert info["training"]["steps"] == 3 and "val_clean" in info["metrics"]
    assert "Validation" in (out / "MODEL_CARD.md").read_text()
    pred = MouthPredictor(load_mouth_model(out))
    assert pred(np.zeros(8000, np.float32), 12).shape == (12, 4)
