"""Speech bank (espeak-ng phoneme events) and phoneme -> mouth parameters."""

from __future__ import annotations

import numpy as np
import pytest

from models.data import visemes
from models.data.speech import Espeak, SpeechBank, build_speech_bank, resample, synthesize


@pytest.fixture(scope="module")
def espeak():
    try:
        return Espeak.get()
    except Exception as e:  # noqa: BLE001 - any load failure means the library is absent
        pytest.skip(f"espeak-ng library not available: {e}")


def test_phoneme_events_cover_the_audio(espeak):
    audio, ph = synthesize("Bob made a pie.", "en-us", 160, 50, 50)
    again, ph2 = synthesize("Bob made a pie.", "en-us", 160, 50, 50)
    assert np.array_equal(audio, again) and ph == ph2  # deterministic
    assert audio.dtype == np.float32 and 0.8 < len(audio) / 16000 < 3.0
    names = [p for p, _, _ in ph]
    assert names[0] == "b" and "m" in names and "p" in names
    starts = [s for _, s, _ in ph]
    assert starts == sorted(starts)
    assert all(e > s for _, s, e in ph) and ph[-1][2] <= len(audio) / 16000 + 1e-3


def test_speech_bank_is_reproducible(espeak, tmp_path):
    a = build_speech_bank(tmp_path / "a", 3, seed=7)
    b = build_speech_bank(tmp_path / "b", 3, seed=7, workers=2)
    for name in ("audio.npy", "bank.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    bank = SpeechBank(tmp_path / "a")
    u = bank[1]
    assert len(bank) == 3 and len(u.phonemes) > 3 and u.audio.dtype == np.float32
    assert a.items == b.items


def test_resample_keeps_a_tone():
    sr_in, sr_out = 22050, 16000
    t = np.arange(sr_in) / sr_in
    y = resample(np.sin(2 * np.pi * 440 * t).astype(np.float32), sr_in, sr_out)
    assert len(y) == sr_out
    ref = np.sin(2 * np.pi * 440 * np.arange(sr_out) / sr_out)
    assert np.abs(y[200:-200] - ref[200:-200]).max() < 0.02


def test_viseme_classes():
    assert visemes.phoneme_visemes("m") == ["bilabial"]
    assert visemes.phoneme_visemes("f") == ["labiodental"]
    assert visemes.phoneme_visemes("uː") == ["rounded"]
    assert visemes.phoneme_visemes("iː") == ["wide"]
    assert visemes.phoneme_visemes("ɑː") == ["open"]
    assert visemes.phoneme_visemes("aɪ") == ["open", "wide"]


def test_mouth_track_closes_on_bilabials_and_opens_on_vowels():
    # "ma-pa-boo" at 25 fps: 0.2 s per phoneme.
    ph = [("m", 0.2, 0.32), ("ɑː", 0.32, 0.6), ("p", 0.6, 0.68), ("ɑː", 0.68, 0.96), ("b", 0.96, 1.04),
          ("uː", 1.04, 1.4)]
    tr = visemes.mouth_track(ph, 25.0, 45)
    assert tr.shape == (45, 4) and tr.dtype == np.float32
    is_open = visemes.mouth_is_open(tr)
    assert not is_open[:3].any()  # silence before speech
    assert not is_open[int(0.26 * 25)] and tr[int(0.26 * 25), 3] > 0.9  # /m/ closes the lips
    assert is_open[int(0.46 * 25)] and tr[int(0.46 * 25), 0] > 0.6  # /ɑ/ opens the jaw
    assert not is_open[int(0.64 * 25)]  # /p/
    assert tr[int(1.25 * 25), 2] > 0.7 and tr[int(1.25 * 25), 1] < 0.35  # /u/ rounds
    assert not is_open[-3:].any()  # silence after
