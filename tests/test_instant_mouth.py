"""The audio-to-mouth regressor: silence, bilabials, sync with real speech, the shipped weights."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from models.data.visemes import REST, mouth_gap
from models.media import SAMPLE_RATE

ROOT = Path(__file__).resolve().parents[1]


def real_speech() -> tuple[np.ndarray, str]:
    """Real human speech that ships in a package (gradio's media assets, a recorded voice), else
    the project's espeak example (synthetic: the best available without that package)."""
    from models.media import read_audio

    spec = importlib.util.find_spec("gradio")
    if spec is not None and spec.submodule_search_locations:
        p = Path(list(spec.submodule_search_locations)[0]) / "media_assets" / "audio" / "cate_blanch.mp3"
        if p.exists():
            return read_audio(p), "real"
    return read_audio(ROOT / "resources" / "examples" / "speech.wav"), "synthetic"


@pytest.fixture(scope="module")
def predictor():
    from models.instant.mouth import MouthPredictor

    return MouthPredictor()


def test_shipped_model_is_small_and_loads():
    from models.instant.mouth import BUNDLED_DIR, load_mouth_model

    w = BUNDLED_DIR / "mouth.safetensors"
    assert w.stat().st_size + (BUNDLED_DIR / "config.json").stat().st_size < 2 * 1024 * 1024
    assert (BUNDLED_DIR / "MODEL_CARD.md").is_file()
    model = load_mouth_model()
    assert sum(p.numel() for p in model.parameters()) < 1_000_000


def test_silence_keeps_mouth_closed(predictor):
    rng = np.random.default_rng(0)
    for audio in (np.zeros(16000, np.float32), (rng.standard_normal(16000) * 1e-4).astype(np.float32)):
        out = predictor(audio, 25)
        assert out.shape == (25, 4)
        np.testing.assert_array_equal(out, np.tile(np.array(REST, np.float32), (25, 1)))


def test_bilabials_close_the_lips(predictor):
    from models.data.speech import synthesize
    from models.data.visemes import phoneme_visemes

    audio, phonemes = synthesize("Bob bought a map, mom made apple pie.", "en-us", rate=150)
    n = int(round(len(audio) / 16000 * 25))
    out = predictor(audio, n)
    closures, gaps = [], []
    for ipa, s, e in phonemes:
        if phoneme_visemes(ipa) == ["bilabial"]:
            f0, f1 = int(s * 25), max(int(s * 25) + 1, int(np.ceil(e * 25)))
            window = out[max(f0 - 1, 0): f1 + 1]
            closures.append(window[:, 3].max())
            gaps.append(mouth_gap(window).min())
    assert len(closures) >= 6
    assert np.mean(np.array(closures) > 0.5) >= 0.75, closures
    assert np.mean(np.array(gaps) < 0.06) >= 0.75, gaps


def _lag_correlation(a: np.ndarray, b: np.ndarray, max_lag: int) -> dict[int, float]:
    out = {}
    for lag in range(-max_lag, max_lag + 1):
        if lag >= 0:
            x, y = a[lag:], b[: len(b) - lag]
        else:
            x, y = a[:lag], b[-lag:]
        out[lag] = float(np.corrcoef(x, y)[0, 1])
    return out


def test_mouth_opening_follows_real_speech_at_zero_lag(predictor):
    from models.instant.mouth import frame_rms
    from models.media import normalize_loudness

    audio, kind = real_speech()
    audio = normalize_loudness(audio)
    n = int(len(audio) / 16000 * 25)
    gap = mouth_gap(predictor(audio, n))
    env = np.log10(frame_rms(audio, 25, n, SAMPLE_RATE) + 1e-4)  # speech envelope per frame (log energy)
    corr = _lag_correlation(gap, env, 6)
    best = max(corr, key=corr.get)
    assert best == 0, (kind, corr)
    assert corr[0] > 0.4, (kind, corr)


def test_live_microphone_path_matches_the_offline_track(predictor):
    from models.instant.mouth import LiveMouth
    from models.media import read_audio

    audio = read_audio(ROOT / "resources" / "examples" / "speech.wav")[: 16000 * 2]
    offline = predictor(audio, 50)
    live = LiveMouth(predictor)
    rows = np.concatenate([live.push(audio[i: i + 512]) for i in range(0, len(audio), 512)])
    assert len(rows) == 50 - live.latency
    np.testing.assert_allclose(rows, offline[: len(rows)], atol=0.01)
