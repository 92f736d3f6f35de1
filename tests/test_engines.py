"""The engine interface: the registry, the run writer, the instant engine without the diffusion stack,
and one CLI path for a model trained on wav2vec2 features."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models import media
from models.engines import ENGINES, Callbacks, EngineJob, GenerationResult, GenerationSettings, engine_spec
from models.engines.writer import RunWriter, audio_slice, load_run_frames
from models.errors import UserError

ROOT = Path(__file__).resolve().parent.parent


def test_the_instant_engine_imports_nothing_of_the_diffusion_stack():
    code = ("import sys\n"
            "import models.engines, models.engines.instant, models.instant.engine, models.instant.mouth\n"
            "heavy = [m for m in ('models.dit', 'models.vae', 'models.pipeline', 'models.model', 'models.flow',\n"
            "                     'models.checkpoint', 'models.engines.diffusion') if m in sys.modules]\n"
            "print(heavy)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_registry_names_both_engines_by_key_and_by_name():
    assert set(ENGINES) == {"model", "instant"}
    for spec in ENGINES.values():
        assert engine_spec(spec.key) is engine_spec(spec.name) is spec
    with pytest.raises(UserError, match="unknown engine"):
        engine_spec("warp-drive")


def test_devices_and_precisions_are_checked_once():
    from models.engines.registry import resolve_device, resolve_dtype

    assert resolve_dtype("auto", "cpu") == "float32"
    with pytest.raises(UserError, match="float16 is not supported on the CPU"):
        resolve_dtype("float16", "cpu")
    with pytest.raises(UserError, match="precision must be one of"):
        resolve_dtype("int3", "cpu")
    assert resolve_device("auto") in ("cpu", "cuda")


def _result(n, fps=25.0, cancelled=False):
    return GenerationResult(num_frames=n, fps=fps, height=16, width=16, seed=5, mode="audio",
                            segments_done=1 if n else 0, num_segments=2, cancelled=cancelled)


def test_run_writer_keeps_segments_as_they_come_and_makes_the_take(tmp_path):
    audio = np.zeros(16000, np.float32)
    w = RunWriter(25.0, audio, run_dir=tmp_path / "run", meta={"engine": "test"})
    frames = np.full((9, 16, 16, 3), 100, np.uint8)
    under = w.on_segment(0, frames, 0)
    assert len(under) == round(9 * 16000 / 25) and (tmp_path / "run" / "segment_000.npy").is_file()
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["engine"] == "test" and meta["segments"] == [{"index": 0, "start_frame": 0, "frames": 9}]
    take = w.finish(_result(9, cancelled=True))
    assert take.name == "take.mp4" and media.probe_streams(take)["audio"]
    assert json.loads((tmp_path / "run" / "run.json").read_text())["cancelled"] is True
    assert load_run_frames(tmp_path / "run").shape == (9, 16, 16, 3)
    assert len(audio_slice(audio, 9, 4, 25.0)) == 4 * 640


def test_run_writer_streams_one_mp4(tmp_path):
    w = RunWriter(25.0, None, video=tmp_path / "out.mp4")
    for i in range(2):
        w.on_segment(i, np.zeros((5, 16, 16, 3), np.uint8), 5 * i)
    out = w.finish(_result(10))
    _, frames = media.read_video_frames(out)
    assert sum(1 for _ in frames) == 10 and not (tmp_path / "run.json").exists()


def test_run_writer_streamed_mp4_keeps_its_segments_until_complete(tmp_path):
    w = RunWriter(25.0, None, video=tmp_path / "out.mp4")
    w.on_segment(0, np.zeros((5, 16, 16, 3), np.uint8), 0)
    assert (tmp_path / "out_segments" / "segment_000.mp4").is_file()
    w.finish(_result(5))
    assert not (tmp_path / "out_segments").exists()


def test_run_writer_late_failure_in_a_run_folder_says_where_the_segments_are(tmp_path, monkeypatch):
    w = RunWriter(25.0, None, run_dir=tmp_path / "run")
    w.on_segment(0, np.zeros((5, 16, 16, 3), np.uint8), 0)

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(media, "write_video", full_disk)
    with pytest.raises(UserError) as e:
        w.finish(_result(5))
    msg = str(e.value)
    assert "No space left on device" in msg and f"1 finished segment(s) are kept in {tmp_path / 'run'}" in msg
    assert (tmp_path / "run" / "segment_000.mp4").is_file()


def test_the_diffusion_engine_streams_through_the_interface(tiny_model):
    from models.engines.diffusion import DiffusionEngine

    engine = DiffusionEngine.from_model(tiny_model)
    assert (engine.fps, engine.sample_rate) == (tiny_model.config.cond.fps, tiny_model.config.cond.sample_rate)
    img = np.zeros((64, 64, 3), np.uint8)
    job = EngineJob(img, np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.1, None, "",
                    GenerationSettings(steps=1, seed=1, segment_frames=9))
    assert not engine.prepare(job)  # the model is loaded already
    seen = []
    res = engine.generate(job, Callbacks(on_segment=lambda s, f, start: seen.append(start)))
    assert res.num_frames == 12 and seen == [0, 9]


@pytest.fixture(scope="module")
def wav2vec2_model(tmp_path_factory):
    """A tiny wav2vec2 folder and a tiny OmniHuman whose audio features are that encoder's."""
    transformers = pytest.importorskip("transformers")
    import torch

    from models.checkpoint import save_model
    from models.config import get_preset
    from models.model import OmniHuman

    root = tmp_path_factory.mktemp("w2v")
    cfg = transformers.Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2, vocab_size=10,
    )
    torch.manual_seed(0)
    transformers.Wav2Vec2Model(cfg).save_pretrained(root / "w2v", safe_serialization=True)
    tiny = get_preset("tiny")
    w2v_cfg = dataclasses.replace(tiny, cond=dataclasses.replace(tiny.cond, audio_encoder="wav2vec2"),
                                  dit=dataclasses.replace(tiny.dit, audio_feature_dim=32))
    torch.manual_seed(0)
    folder = save_model(OmniHuman(w2v_cfg), root / "model")
    return root / "w2v", folder


def test_wav2vec2_drives_a_model_trained_on_its_features(wav2vec2_model, tmp_path, capsys):
    from models.cli import main

    w2v, folder = wav2vec2_model
    img, wav = tmp_path / "ref.png", tmp_path / "a.wav"
    media.write_image(img, np.full((48, 48, 3), 128, np.uint8))
    t = np.arange(int(0.4 * 16000)) / 16000
    media.write_wav(wav, (0.4 * np.sin(2 * np.pi * 200 * t)).astype(np.float32))
    base = ["generate", "--image", str(img), "--audio", str(wav), "--steps", "1", "--seed", "0"]
    assert main(base + ["--model", str(folder), "--wav2vec2", str(w2v), "--out", str(tmp_path / "o.mp4")]) == 0
    assert media.probe_streams(tmp_path / "o.mp4")["audio"]
    capsys.readouterr()
    # Without the encoder the model cannot hear; with a mel model the features do not fit: both say so.
    assert main(base + ["--model", str(folder), "--out", str(tmp_path / "x.mp4")]) == 2
    assert "--wav2vec2 DIR" in capsys.readouterr().err
    assert main(base + ["--random-init", "tiny", "--wav2vec2", str(w2v), "--out", str(tmp_path / "y.mp4")]) == 2
    assert "trained on 320" in capsys.readouterr().err
