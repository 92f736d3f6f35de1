"""Every setting and the output path checked before any work; a late write failure keeps the segments."""

import errno
import math
from pathlib import Path

import numpy as np
import pytest

from models import media
from models.cli import main
from models.engines import GenerationSettings
from models.errors import UserError
from models.validation import (
    APP_NAMES,
    MIN_IMAGE_SIDE,
    check_output_path,
    validate_image,
    validate_seconds,
    validate_settings,
)

BAD_SETTINGS = [
    ({"steps": 0}, "--steps", "between 1 and"),
    ({"steps": 2.5}, "--steps", "whole number"),
    ({"cfg_audio": math.nan}, "--cfg-audio", "finite"),
    ({"cfg_audio": -1.0}, "--cfg-audio", "at least 0"),
    ({"cfg_text": math.inf}, "--cfg-text", "finite"),
    ({"anneal": "cubic"}, "--anneal", "none, linear, cosine"),
    ({"anneal_strength": 1.5}, "--anneal-strength", "between 0 and 1"),
    ({"anneal_strength": -0.1}, "--anneal-strength", "between 0 and 1"),
    ({"fps": 0.0}, "--fps", "between 1 and 120"),
    ({"fps": 1000.0}, "--fps", "between 1 and 120"),
    ({"fps": math.nan}, "--fps", "finite"),
    ({"segment_frames": 8}, "--segment-frames", "1 + 4k"),
    ({"segment_frames": 0}, "--segment-frames", "1 + 4k"),
    ({"seed": -1}, "--seed", "between 0 and"),
    ({"area": 3}, "--area", "between"),
    ({"mode": "dance"}, "--mode", "auto, audio, pose, combined"),
    ({"max_frames": 0}, "--max-seconds", "at least 1"),
    ({"motion_frames": 3}, "motion frames", "0 or 5"),
    ({"motion_noise": 1.2}, "--motion-noise", "between 0 and 1"),
    ({"motion_noise": math.nan}, "--motion-noise", "finite"),
    ({"audio_focus": 1.5}, "--audio-focus", "between 0 and 1"),
    ({"audio_focus": -0.2}, "--audio-focus", "between 0 and 1"),
    ({"motion_anchor": 2.0}, "--motion-anchor", "between 0 and 1"),
]


@pytest.mark.parametrize("field,option,rng", BAD_SETTINGS, ids=[f"{next(iter(b[0]))}={next(iter(b[0].values()))}"
                                                                  for b in BAD_SETTINGS])
def test_each_bad_setting_names_its_option_and_range(field, option, rng):
    with pytest.raises(UserError) as e:
        validate_settings(GenerationSettings(**field))
    msg = str(e.value)
    assert msg.startswith(option) and rng in msg and "\n" not in msg


def test_good_settings_pass_and_app_names():
    ok = GenerationSettings(steps=1, cfg_text=0.0, cfg_audio=7.5, anneal="cosine", anneal_strength=1.0, seed=0,
                            segment_frames=1, area=64 * 64, fps=25.0, max_frames=1)
    assert validate_settings(ok) is ok
    validate_settings(GenerationSettings())  # None: the preset's defaults
    with pytest.raises(UserError, match="^Audio CFG must be a finite"):
        validate_settings(GenerationSettings(cfg_audio=math.nan), APP_NAMES)


def test_anneal_and_modes_match_the_sampler_and_engines():
    from models import engines, flow, validation

    assert validation.ANNEAL_SCHEDULES == flow.ANNEAL_SCHEDULES and validation.MODES == engines.MODES


def test_seconds_and_image_size():
    for bad in (0, -1, math.nan, math.inf):
        with pytest.raises(UserError, match="--max-seconds"):
            validate_seconds(bad)
    assert validate_seconds(0.5) == 0.5
    with pytest.raises(UserError, match=r"ref.png: the image is 1x1 pixels.*at least 32x32"):
        validate_image(np.zeros((1, 1, 3), np.uint8), "ref.png")
    with pytest.raises(UserError, match="40x20 pixels"):
        validate_image(np.zeros((20, 40, 3), np.uint8))
    validate_image(np.zeros((MIN_IMAGE_SIDE, MIN_IMAGE_SIDE, 3), np.uint8))


def test_output_path_checks(tmp_path):
    assert check_output_path(tmp_path / "new" / "deeper" / "o.mp4").parent.is_dir()  # the folder is created
    with pytest.raises(UserError, match="is a folder"):
        check_output_path(tmp_path)
    with pytest.raises(UserError, match="must end in one of .mp4"):
        check_output_path(tmp_path / "o.txt")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UserError, match="cannot create its folder"):
        check_output_path(tmp_path / "afile" / "o.mp4")
    if Path("/proc/self").is_dir():
        with pytest.raises(UserError, match="/proc/o.mp4: cannot write in /proc"):
            check_output_path("/proc/o.mp4")
    assert not list(tmp_path.glob(".write-check-*"))  # the probe file is removed


# ------------------------------------------------------------------------------------------------
# The CLI: exit 2 and one line, before the model loads


@pytest.fixture
def inputs(tmp_path):
    rng = np.random.default_rng(0)
    img = tmp_path / "ref.png"
    media.write_image(img, (rng.random((40, 56, 3)) * 255).astype(np.uint8))
    media.write_image(tmp_path / "dot.png", np.full((1, 1, 3), 200, np.uint8))
    wav = tmp_path / "a.wav"
    t = np.arange(int(0.6 * 16000)) / 16000
    media.write_wav(wav, (0.4 * np.sin(2 * np.pi * 200 * t)).astype(np.float32))
    return tmp_path, img, wav


@pytest.fixture
def no_model(monkeypatch):
    """Fails the test if the command gets as far as preparing an engine (loading the model)."""
    from models.engines.diffusion import DiffusionEngine
    from models.engines.instant import InstantAdapter

    def refuse(self, job, status=None):
        raise AssertionError("the model was loaded before the bad input was refused")

    monkeypatch.setattr(DiffusionEngine, "prepare", refuse)
    monkeypatch.setattr(InstantAdapter, "prepare", refuse)


def _run(args, capsys):
    code = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


def test_cli_refuses_bad_settings_and_paths_before_the_model(inputs, capsys, no_model):
    d, img, wav = inputs
    base = ["generate", "--image", str(img), "--audio", str(wav), "--random-init", "tiny"]
    out = ["--out", str(d / "o.mp4")]
    cases = [
        (["--steps", "0"] + out, "--steps must be between 1 and 1000, got 0"),
        (["--cfg-audio", "nan"] + out, "--cfg-audio must be a finite number"),
        (["--fps", "0"] + out, "--fps must be between 1 and 120, got 0"),
        (["--anneal-strength", "3"] + out, "--anneal-strength must be between 0 and 1"),
        (["--segment-frames", "10"] + out, "--segment-frames must be 1 + 4k"),
        (["--max-seconds", "0"] + out, "--max-seconds must be greater than 0"),
        (["--out", "/proc/o.mp4"], "/proc/o.mp4: cannot write in /proc"),
        (["--out", str(d)], "is a folder"),
        (["--out", str(d / "o.avi2")], "must end in one of"),
        (["--person", "2"] + out, "--person N needs --pose-video"),
    ]
    for extra, expected in cases:
        code, err = _run(base + extra, capsys)
        assert code == 2, (extra, err)
        assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], (expected, err)
    instant = ["generate", "--image", str(img), "--audio", str(wav), "--engine", "instant"]
    for extra, expected in [(["--fps", "nan"] + out, "--fps must be a finite number"),
                            (["--out", "/proc/o.mp4"], "/proc/o.mp4: cannot write in /proc")]:
        code, err = _run(instant + extra, capsys)
        assert code == 2 and len(err) == 1 and expected in err[0], (extra, err)
    code, err = _run(["generate", "--image", str(d / "dot.png"), "--audio", str(wav), "--out", str(d / "o.mp4")],
                     capsys)
    assert code == 2 and "dot.png: the image is 1x1 pixels" in err[-1]
    assert not (d / "o.mp4").exists()


def test_a_late_write_failure_keeps_the_finished_segments(inputs, capsys, monkeypatch):
    d, img, wav = inputs
    calls = {"n": 0}
    real_write = media.VideoWriter.write

    out = d / "take.mp4"

    def write(self, frames):
        if self.path == out:
            calls["n"] += 1
            if calls["n"] == 3:  # the disk fills while the third segment goes into the take
                raise OSError(errno.ENOSPC, "No space left on device")
        real_write(self, frames)

    monkeypatch.setattr(media.VideoWriter, "write", write)
    code, err = _run(["generate", "--image", str(img), "--audio", str(wav), "--random-init", "tiny", "--steps", "1",
                      "--segment-frames", "5", "--out", str(out)], capsys)
    kept = d / "take_segments"
    assert code == 2 and "No space left on device" in err[-1] and str(kept) in err[-1], err
    parts = sorted(kept.glob("segment_*.mp4"))
    assert [p.name for p in parts] == ["segment_000.mp4", "segment_001.mp4", "segment_002.mp4"]
    for p in parts:
        _, frames = media.read_video_frames(p)
        assert sum(1 for _ in frames) == 5
    assert media.probe_streams(parts[0])["audio"]


def test_a_finished_take_removes_its_segment_folder(inputs, capsys):
    d, img, wav = inputs
    out = d / "ok.mp4"
    assert main(["generate", "--image", str(img), "--audio", str(wav), "--random-init", "tiny", "--steps", "1",
                 "--segment-frames", "9", "--out", str(out)]) == 0
    assert out.is_file() and not (d / "ok_segments").exists()
    (d / "ok_segments").mkdir()
    (d / "ok_segments" / "mine.txt").write_text("a file of the user's")
    assert main(["generate", "--image", str(img), "--audio", str(wav), "--random-init", "tiny", "--steps", "1",
                 "--out", str(out)]) == 0
    assert [f.name for f in (d / "ok_segments").iterdir()] == ["mine.txt"]


def test_the_app_job_uses_the_same_checks_before_loading(tmp_path):
    from app.jobs import GenerationJob, JobState, run_job
    from models.engines import ModelChoice

    class Engine:
        model = None

        def prepare(self, job, status):
            raise AssertionError("loaded before the settings were checked")

    img = np.zeros((64, 64, 3), np.uint8)
    job = GenerationJob(img, np.zeros(16000, np.float32), None, "", GenerationSettings(steps=0),
                        ModelChoice("tiny", preset="tiny"), run_dir=tmp_path / "run")
    with pytest.raises(UserError, match="^Steps must be between 1"):
        run_job(Engine(), job, JobState())
    job.settings = GenerationSettings()
    job.image = np.zeros((8, 300, 3), np.uint8)
    with pytest.raises(UserError, match="300x8 pixels"):
        run_job(Engine(), job, JobState())


def test_extract_pose_checks_its_outputs_before_reading_the_video(tmp_path, capsys):
    video = tmp_path / "missing.mp4"  # never opened: the outputs are refused first
    for extra, expected in [(["--out", "/proc/p.npy"], "/proc/p.npy: cannot write in /proc"),
                            (["--out", str(tmp_path / "p.npy"), "--preview", str(tmp_path)], "is a folder"),
                            (["--out", str(tmp_path / "p.npy"), "--person", "0"], "--person must be at least 1")]:
        code, err = _run(["extract-pose", str(video)] + extra, capsys)
        assert code == 2 and expected in err[-1], (extra, err)
