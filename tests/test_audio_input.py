"""Audio input: every container and codec decodes to the same samples, loudness, silence, long files."""

from __future__ import annotations

import subprocess
import tracemalloc

import numpy as np
import pytest

from models import media
from models.media import MediaError

SR = 16000


def _speechlike(seconds: float, sr: int, lead: float = 0.0, trail: float = 0.0, level: float = 0.3) -> np.ndarray:
    """A deterministic voiced signal: a 140 Hz harmonic series under a syllable-rate envelope,
    with exact leading and trailing silence."""
    t = np.arange(int(seconds * sr)) / sr
    f0 = 140 * (1 + 0.1 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voice = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t)
    x = level * voice * envelope / 2.0
    return np.concatenate([np.zeros(int(lead * sr)), x, np.zeros(int(trail * sr))]).astype(np.float32)


def _ffmpeg(*args: str) -> None:
    proc = subprocess.run([media.ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-y", *args],
                          capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """The same 2 s of sound as 44.1 kHz stereo float WAV, the master every format is made from."""
    d = tmp_path_factory.mktemp("audio")
    mono = _speechlike(2.0, 44100, lead=0.3, trail=0.2)
    stereo = np.stack([mono, 0.8 * mono], axis=1)
    raw = d / "master.f32"
    raw.write_bytes(stereo.astype("<f4").tobytes())
    master = d / "master.wav"
    _ffmpeg("-f", "f32le", "-ar", "44100", "-ac", "2", "-i", str(raw), "-c:a", "pcm_f32le", str(master))
    return d, master


FORMATS = {
    # name: (file name, ffmpeg output options)
    "wav_s16_48k": ("a.wav", ["-ar", "48000", "-c:a", "pcm_s16le"]),
    "wav_22k_mono": ("b.wav", ["-ar", "22050", "-ac", "1", "-c:a", "pcm_s16le"]),
    "flac": ("c.flac", ["-c:a", "flac"]),
    "mp3": ("d.mp3", ["-c:a", "libmp3lame", "-b:a", "192k"]),
    "m4a_aac": ("e.m4a", ["-c:a", "aac", "-b:a", "192k"]),
    "ogg_opus": ("f.ogg", ["-c:a", "libopus", "-b:a", "128k"]),
    "surround_5_1": ("g.wav", ["-af", "pan=5.1|FL=c0|FR=c1|FC=0.5*c0+0.5*c1|LFE=0*c0|BL=c0|BR=c1",
                               "-c:a", "pcm_s16le"]),
    "video_track": ("h.mp4", ["-f", "lavfi", "-i", "color=c=gray:s=64x48:r=25:d=2.5", "-map", "1:v",
                              "-map", "0:a", "-c:v", "libx264", "-c:a", "aac", "-b:a", "192k", "-shortest"]),
}


def _aligned_snr(x: np.ndarray, ref: np.ndarray, max_shift: int = 160) -> tuple[float, int]:
    """Best SNR (dB) of ``x`` against ``ref`` over shifts up to ``max_shift`` samples, after a
    least-squares gain (a downmix scales channels differently per format)."""
    n = min(len(x), len(ref)) - 2 * max_shift
    r = ref[max_shift : max_shift + n]
    best = (-np.inf, 0)
    for s in range(-max_shift, max_shift + 1, 2):
        seg = x[max_shift + s : max_shift + s + n]
        g = float(seg @ r) / float(r @ r)
        err = seg - g * r
        snr = 10 * np.log10(float(r @ r) * g * g / max(float(err @ err), 1e-12))
        if snr > best[0]:
            best = (snr, s)
    return best


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_format_decodes_to_the_same_samples(source, fmt):
    d, master = source
    name, opts = FORMATS[fmt]
    path = d / name
    _ffmpeg("-i", str(master), *opts, str(path))
    ref = media.read_audio(master)
    got = media.read_audio(path)
    # Same timing: lengths within one video frame (40 ms), leading silence kept (not trimmed).
    assert abs(len(got) - len(ref)) <= 640, (len(got), len(ref))
    lead_ref, _ = media.silence_bounds(ref)
    lead_got, _ = media.silence_bounds(got)
    assert abs(lead_got - lead_ref) <= 0.04 and lead_ref == pytest.approx(0.3, abs=0.03)
    snr, shift = _aligned_snr(got, ref)
    lossless = fmt.startswith("wav") or fmt in ("flac", "surround_5_1")
    assert snr > (40 if lossless else 15), (fmt, snr)
    assert abs(shift) <= (2 if lossless else 80), (fmt, shift)  # 5 ms at most for lossy codecs


def test_loudness_normalisation_and_silence_report(tmp_path):
    quiet = _speechlike(3.0, SR, lead=1.0, trail=0.6, level=0.01)
    loud = quiet * 30
    lq, ll = media.loudness_dbfs(quiet), media.loudness_dbfs(loud)
    assert ll - lq == pytest.approx(20 * np.log10(30), abs=0.1)
    # Gating: leading and trailing silence do not lower the measured loudness.
    core = _speechlike(3.0, SR, level=0.01)
    assert media.loudness_dbfs(core) == pytest.approx(lq, abs=0.3)
    for x in (quiet, loud):
        y = media.normalize_loudness(x)
        assert media.loudness_dbfs(y) == pytest.approx(media.LOUDNESS_TARGET_DBFS, abs=0.2)
        assert len(y) == len(x)
        assert np.all(y[: SR // 2] == 0)  # silence stays silence, where it was
    # A peak that would clip caps the gain instead of distorting.
    spiky = quiet.copy()
    spiky[SR * 2] = 0.5
    y = media.normalize_loudness(spiky)
    assert np.max(np.abs(y)) <= 0.98 + 1e-6
    stats = media.describe_audio(quiet)
    assert stats.leading_silence == pytest.approx(1.0, abs=0.03)
    assert stats.trailing_silence == pytest.approx(0.6, abs=0.03)
    assert not stats.silent and "silence kept" in stats.message
    # The file path: read_audio(normalize=True) and the same numbers from a streamed measurement.
    media.write_wav(tmp_path / "q.wav", quiet)
    y = media.read_audio(tmp_path / "q.wav", normalize=True)
    assert media.loudness_dbfs(y) == pytest.approx(media.LOUDNESS_TARGET_DBFS, abs=0.3)
    m = media.measure_audio(tmp_path / "q.wav", chunk_seconds=0.7)
    assert m.loudness_dbfs == pytest.approx(lq, abs=0.2)
    assert m.leading_silence == pytest.approx(1.0, abs=0.03) and m.trailing_silence == pytest.approx(0.6, abs=0.03)


def test_all_silent_input_is_reported(tmp_path):
    hiss = np.random.default_rng(0).normal(0, 1e-4, SR * 2).astype(np.float32)  # -80 dBFS noise
    media.write_wav(tmp_path / "room.wav", hiss)
    with pytest.raises(MediaError, match=r"room.wav: audio is silent throughout \(2.0 s"):
        media.read_audio(tmp_path / "room.wav")
    a = media.read_audio(tmp_path / "room.wav", allow_silent=True, normalize=True)
    assert np.max(np.abs(a)) < 1e-3  # silence is not boosted into noise
    stats = media.describe_audio(a)
    assert stats.silent and stats.message.startswith("audio is silent throughout")
    assert media.measure_audio(tmp_path / "room.wav").silent


def test_bad_audio_files(tmp_path):
    (tmp_path / "notes.mp3").write_text("these are my notes\n" * 20)
    with pytest.raises(MediaError, match="notes.mp3: not an audio or video file"):
        media.read_audio(tmp_path / "notes.mp3")
    with pytest.raises(MediaError, match="notes.mp3: not an audio or video file"):
        list(media.iter_audio_chunks(tmp_path / "notes.mp3"))
    with pytest.raises(MediaError, match="missing.wav: file not found"):
        media.read_audio(tmp_path / "missing.wav")
    frames = np.zeros((5, 16, 16, 3), np.uint8)
    media.write_video(tmp_path / "mute.mp4", frames, 25)
    with pytest.raises(MediaError, match="mute.mp4: has no audio track"):
        media.read_audio(tmp_path / "mute.mp4")


def test_long_audio_in_chunks_with_bounded_memory(tmp_path):
    # An hour of 8 kHz FLAC made by ffmpeg itself (fast): 230 MB once decoded at 16 kHz float32.
    path = tmp_path / "long.flac"
    _ffmpeg("-f", "lavfi", "-i", "sine=frequency=220:sample_rate=8000:duration=3600", "-c:a", "flac", str(path))
    tracemalloc.start()
    try:
        total = 0
        longest = 0
        first = None
        for chunk in media.iter_audio_chunks(path, chunk_seconds=30.0):
            total += len(chunk)
            longest = max(longest, len(chunk))
            if first is None:
                first = chunk[:1600].copy()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == pytest.approx(3600 * SR, abs=SR // 100)
    assert longest == 30 * SR
    assert peak < 12 * 1024 * 1024, peak  # a couple of 2 MB chunks, never the whole file
    # Chunks join seamlessly: the start equals a plain decode of the start.
    t = np.arange(1600) / SR
    np.testing.assert_allclose(first[16:], 0.125 * np.sin(2 * np.pi * 220 * t[16:]), atol=2e-3)
    # An early stop kills the decoder instead of waiting for it.
    it = media.iter_audio_chunks(path, chunk_seconds=1.0)
    next(it)
    it.close()


def test_chunked_normalisation_matches_whole_file(tmp_path):
    x = _speechlike(4.0, SR, lead=0.5, level=0.02)
    media.write_wav(tmp_path / "s.wav", x)
    whole = media.read_audio(tmp_path / "s.wav", normalize=True)
    chunks = np.concatenate(list(media.iter_audio_chunks(tmp_path / "s.wav", chunk_seconds=0.3, normalize=True)))
    assert len(chunks) == len(whole)
    np.testing.assert_allclose(chunks, whole, atol=1e-4)
