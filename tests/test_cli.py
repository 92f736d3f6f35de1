import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models import media
from models.cli import main
from models.keypoints import NUM_KEYPOINTS

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def inputs(tmp_path):
    rng = np.random.default_rng(0)
    img = tmp_path / "ref.png"
    media.write_image(img, (rng.random((40, 56, 3)) * 255).astype(np.uint8))
    wav = tmp_path / "a.wav"
    t = np.arange(int(0.6 * 16000)) / 16000
    media.write_wav(wav, (0.4 * np.sin(2 * np.pi * 200 * t)).astype(np.float32))
    pose = np.zeros((15, NUM_KEYPOINTS, 3), np.float32)
    pose[..., :2] = rng.random((15, NUM_KEYPOINTS, 2))
    pose[..., 2] = 1
    np.save(tmp_path / "pose.npy", pose)
    return tmp_path, img, wav


def test_generate_end_to_end_subprocess(inputs):
    d, img, wav = inputs
    out = d / "out.mp4"
    proc = subprocess.run(
        [sys.executable, "main.py", "generate", "--image", str(img), "--audio", str(wav), "--random-init", "tiny",
         "--steps", "2", "--seed", "1", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "segment 1" in proc.stderr and "seed 1" in proc.stderr
    s = media.probe_streams(out)
    assert s["video"] and s["audio"]
    info, frames = media.read_video_frames(out)
    n = sum(1 for _ in frames)
    assert n == 15  # 0.6 s at 25 fps: as long as the audio within one frame


def test_generate_pose_only_and_combined(inputs, capsys):
    d, img, wav = inputs
    assert main(["generate", "--image", str(img), "--pose", str(d / "pose.npy"), "--random-init", "tiny",
                 "--steps", "1", "--out", str(d / "p.mp4")]) == 0
    assert "mode pose" in capsys.readouterr().err
    assert not media.probe_streams(d / "p.mp4")["audio"]
    assert main(["generate", "--image", str(img), "--audio", str(wav), "--pose", str(d / "pose.npy"),
                 "--random-init", "tiny", "--steps", "1", "--out", str(d / "c.mp4")]) == 0
    assert "mode combined" in capsys.readouterr().err


def _bad(args, capsys):
    code = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    return code, err[-1] if err else ""


def test_bad_inputs_exit_2_with_one_line(inputs, capsys):
    d, img, wav = inputs
    (d / "notimage.png").write_text("plain text")
    (d / "notaudio.wav").write_text("plain text, not audio")
    media.write_wav(d / "silent.wav", np.zeros(8000, np.float32))
    (d / "empty.wav").write_bytes(b"")
    (d / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    np.save(d / "wrongshape.npy", np.zeros((5, 7, 3), np.float32))
    base = ["generate", "--random-init", "tiny", "--steps", "1", "--out", str(d / "o.mp4")]
    cases = [
        (["--image", str(d / "missing.png"), "--audio", str(wav)], "missing.png: file not found"),
        (["--image", str(d / "notimage.png"), "--audio", str(wav)], "notimage.png: not an image"),
        (["--image", str(img), "--audio", str(d / "missing.wav")], "missing.wav: file not found"),
        (["--image", str(img), "--audio", str(d / "notaudio.wav")], "notaudio.wav"),
        (["--image", str(img), "--audio", str(d / "silent.wav")], "silent.wav: audio is silent"),
        (["--image", str(img), "--audio", str(d / "empty.wav")], "empty.wav: file is empty"),
        (["--image", str(img), "--audio", str(img)], "ref.png"),
        (["--image", str(img), "--pose", str(d / "bad.npy")], "bad.npy: not a readable .npy"),
        (["--image", str(img), "--pose", str(d / "wrongshape.npy")], "wrongshape.npy: expected shape"),
        (["--image", str(img), "--pose", str(d / "nope.npy")], "nope.npy: file not found"),
        (["--image", str(img)], "give --audio"),
    ]
    for extra, expected in cases:
        code, line = _bad(base + extra, capsys)
        assert code == 2, (extra, line)
        assert line.startswith("error: ") and expected in line, (expected, line)
    assert not (d / "o.mp4").exists()


def test_bad_model_folder(inputs, capsys):
    d, img, wav = inputs
    code, line = _bad(["generate", "--image", str(img), "--audio", str(wav), "--model", str(d / "nomodel"),
                       "--out", str(d / "o.mp4")], capsys)
    assert code == 2 and "nomodel" in line


def test_info_prints_every_preset(capsys):
    assert main(["info", "--preset", "tiny", "--preset", "toon-s"]) == 0
    out = capsys.readouterr().out
    assert "tiny" in out and "toon-s" in out and "FLOP" in out


def test_still_lead_flag_reaches_the_settings():
    from models.cli import build_parser
    from models.commands.generate import settings_from_args

    base = ["generate", "--image", "a.png", "--audio", "a.wav", "--out", "o.mp4"]
    for extra, want in (([], None), (["--still-lead"], True), (["--no-still-lead"], False)):
        args = build_parser().parse_args(base + extra)
        assert settings_from_args(args, 25.0).still_lead is want
