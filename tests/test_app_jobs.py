"""The app's Qt-free work: one run writes its segments as they come, cancel keeps them, export."""

import json
from pathlib import Path

import numpy as np
import pytest

from app.audio_io import Recorder
from app.jobs import GenerationJob, JobState, run_job
from models.engines import GenerationSettings, ModelChoice
from models.engines.diffusion import DiffusionEngine
from models.engines.writer import export_run, load_run_frames
from models.media import SAMPLE_RATE, read_audio, read_image, resample_audio

ROOT = Path(__file__).resolve().parent.parent
TINY = ModelChoice("tiny", preset="tiny")


@pytest.fixture(scope="module")
def inputs():
    return read_image(ROOT / "resources/examples/toon.png"), read_audio(ROOT / "resources/examples/speech.wav")


def _job(inputs, tmp_path, **kw):
    img, audio = inputs
    gs = GenerationSettings(steps=2, seed=3, segment_frames=9, area=64 * 64, fps=25.0, max_frames=30)
    return GenerationJob(img, audio[: SAMPLE_RATE * 2], None, "", gs, TINY, run_dir=tmp_path / "run", **kw)


def test_run_job_writes_segments_as_they_arrive(inputs, tmp_path):
    engine = DiffusionEngine()
    state = JobState()
    seen = []

    def on_segment(seg, frames, start, audio):
        # the segment is on disk before the UI hears of it
        assert (tmp_path / "run" / f"segment_{seg:03d}.npy").is_file()
        assert audio is not None and len(audio) == round(len(frames) * SAMPLE_RATE / 25)
        seen.append((seg, start, len(frames)))

    state.on_segment = on_segment
    out = run_job(engine, _job(inputs, tmp_path), state)
    assert not out.cancelled and out.segments_done == out.num_segments == len(seen) == 4
    assert [s[1] for s in seen] == [0, 9, 18, 27]
    assert load_run_frames(out.run_dir).shape == (30, out.height, out.width, 3)
    assert out.video_path.is_file() and json.loads((out.run_dir / "run.json").read_text())["seed"] == 3
    # the model stays loaded for the next run with the same model/device/dtype
    model = engine.model
    assert not engine.prepare(_job(inputs, tmp_path), None) and engine.model is model
    assert engine.prepare(_job(inputs, tmp_path, dtype="bfloat16"), None)


def test_cancel_keeps_finished_segments_and_export(inputs, tmp_path):
    state = JobState()
    state.on_segment = lambda seg, *_: state.cancel() if seg == 1 else None
    out = run_job(DiffusionEngine(), _job(inputs, tmp_path), state)
    assert out.cancelled and out.segments_done == 2 and out.num_segments == 4
    res = export_run(out.run_dir, tmp_path / "exp" / "take", inputs[1][: SAMPLE_RATE * 2], 25.0, "small file",
                     png_frames=True, settings={"seed": out.seed})
    assert res.video.suffix == ".mp4" and res.video.stat().st_size > 0
    assert len(list(res.frames_dir.glob("*.png"))) == 18
    assert json.loads(res.settings_json.read_text())["seed"] == 3


def test_recorder_resamples_device_rate_to_16k():
    class FakeStream:
        def __init__(self, device, rate, callback):
            self.callback = callback

        def start(self):
            t = np.arange(4800) / 48000
            for i in range(10):  # 10 blocks of 0.1 s of a 440 Hz tone at 48 kHz
                self.callback((0.5 * np.sin(2 * np.pi * 440 * (t + i * 0.1)))[:, None].astype(np.float32),
                              4800, None, None)

        def stop(self):
            pass

        def close(self):
            pass

    rec = Recorder(None, 48000, FakeStream)
    rec.start()
    assert rec.seconds == pytest.approx(1.0) and rec.level == pytest.approx(0.5, abs=0.01)
    audio = rec.stop()
    assert len(audio) == SAMPLE_RATE and abs(np.abs(audio).max() - 0.5) < 0.02
    assert len(resample_audio(np.zeros(44100, np.float32), 44100)) == SAMPLE_RATE


def test_recorder_grows_past_its_first_buffer_and_snapshots_do_not_change():
    rec = Recorder(None, 100.0, None)  # room for 10 s = 1000 samples at first
    rng = np.random.default_rng(0)
    blocks = [rng.standard_normal(n).astype(np.float32) for n in (300, 900, 5, 1800)]
    snaps = []
    for b in blocks:
        rec._callback(b[:, None], len(b), None, None)
        snaps.append(rec.snapshot())
    whole = np.concatenate(blocks)
    assert np.array_equal(rec.snapshot(), whole) and rec.seconds == pytest.approx(len(whole) / 100)
    for snap, n in zip(snaps, np.cumsum([len(b) for b in blocks]), strict=True):
        assert np.array_equal(snap, whole[:n])  # earlier views still hold what they held
    assert not rec.snapshot().flags.writeable


def test_crop_to_aspect_moves_the_pose_with_the_picture():
    from app.jobs import crop_to_aspect

    img = np.zeros((100, 200, 3), np.uint8)
    pose = np.array([[[0.5, 0.5, 1.0], [0.25, 0.1, 1.0]]], np.float32)
    out, p = crop_to_aspect(img, pose, 1.0)
    assert out.shape == (100, 100, 3)
    np.testing.assert_allclose(p[0, :, :2], [[0.5, 0.5], [0.0, 0.1]], atol=1e-6)
    assert crop_to_aspect(img, pose, None)[0] is img
    assert crop_to_aspect(img, None, 9 / 16)[0].shape == (100, 56, 3)
