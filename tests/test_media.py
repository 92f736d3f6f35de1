import numpy as np
import pytest
from PIL import Image

from models import media
from models.media import MediaError


def test_rgba_composited_over_white(tmp_path):
    a = np.zeros((4, 5, 4), np.uint8)
    a[..., 0] = 255
    a[:, :2, 3] = 255  # left opaque red, right transparent
    Image.fromarray(a, "RGBA").save(tmp_path / "a.png")
    img = media.read_image(tmp_path / "a.png")
    assert img.shape == (4, 5, 3) and img.dtype == np.uint8
    assert tuple(img[0, 0]) == (255, 0, 0) and tuple(img[0, 4]) == (255, 255, 255)


def test_grayscale_and_16_bit(tmp_path):
    Image.fromarray(np.full((3, 3), 100, np.uint8), "L").save(tmp_path / "g.png")
    assert tuple(media.read_image(tmp_path / "g.png")[1, 1]) == (100, 100, 100)
    Image.fromarray(np.full((3, 3), 65535, np.uint16)).save(tmp_path / "g16.png")
    g16 = media.read_image(tmp_path / "g16.png")
    assert g16.dtype == np.uint8 and tuple(g16[0, 0]) == (255, 255, 255)
    Image.fromarray(np.full((3, 3), 32768, np.uint16)).save(tmp_path / "h16.png")
    assert abs(int(media.read_image(tmp_path / "h16.png")[0, 0, 0]) - 128) <= 1


def test_exif_rotation_applied(tmp_path):
    a = np.zeros((2, 4, 3), np.uint8)  # wide image
    a[0, 0] = (255, 0, 0)
    im = Image.fromarray(a)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    im.save(tmp_path / "r.jpg", exif=exif, quality=100)
    img = media.read_image(tmp_path / "r.jpg")
    assert img.shape[:2] == (4, 2)  # displayed tall


def test_bad_images(tmp_path):
    with pytest.raises(MediaError, match="not found"):
        media.read_image(tmp_path / "none.png")
    (tmp_path / "t.png").write_text("hello")
    with pytest.raises(MediaError, match="t.png: not an image"):
        media.read_image(tmp_path / "t.png")
    (tmp_path / "e.png").write_bytes(b"")
    with pytest.raises(MediaError, match="empty"):
        media.read_image(tmp_path / "e.png")


def _tone(seconds, sr=16000, f=440.0):
    t = np.arange(int(seconds * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * f * t)).astype(np.float32)


def test_audio_round_trip_and_resample(tmp_path):
    a = _tone(0.5)
    media.write_wav(tmp_path / "a.wav", a)
    b = media.read_audio(tmp_path / "a.wav")
    assert len(b) == len(a) and np.abs(a - b).max() < 1e-3
    media.write_wav(tmp_path / "b.wav", _tone(0.5, 44100), 44100)
    c = media.read_audio(tmp_path / "b.wav")
    assert abs(len(c) - 8000) <= 2


def test_silent_and_bad_audio(tmp_path):
    media.write_wav(tmp_path / "s.wav", np.zeros(8000, np.float32))
    with pytest.raises(MediaError, match="silent"):
        media.read_audio(tmp_path / "s.wav")
    assert len(media.read_audio(tmp_path / "s.wav", allow_silent=True)) == 8000
    (tmp_path / "x.wav").write_bytes(b"RIFF not really a wave file at all" * 10)
    with pytest.raises(MediaError, match="x.wav"):
        media.read_audio(tmp_path / "x.wav")


def test_video_with_audio_written_and_read_back(tmp_path):
    frames = np.zeros((10, 32, 48, 3), np.uint8)
    frames[:, :, :, 1] = np.linspace(0, 255, 10, dtype=np.uint8)[:, None, None]
    media.write_video(tmp_path / "v.mp4", frames, 25, _tone(0.4))
    info, it = media.read_video_frames(tmp_path / "v.mp4")
    got = np.stack(list(it))
    assert (info.width, info.height) == (48, 32) and got.shape == frames.shape
    assert np.abs(got.astype(int) - frames.astype(int)).mean() < 6
    streams = media.probe_streams(tmp_path / "v.mp4")
    assert streams["video"] and streams["audio"] and abs(streams["duration"] - 0.4) < 0.05
    back = media.read_audio(tmp_path / "v.mp4")
    assert abs(len(back) - 6400) < 1100  # AAC priming/padding
