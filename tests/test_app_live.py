"""The live preview: the instant engine on its own thread, then inside the main window."""

import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")
pytest.importorskip("mediapipe")

from app.audio_io import AudioStatus  # noqa: E402
from app.live import LiveInputs, LivePreview  # noqa: E402
from app.main_window import MainWindow  # noqa: E402
from app.settings import AppSettings  # noqa: E402
from models.instant.live import live_size  # noqa: E402
from models.media import SAMPLE_RATE, num_video_frames, read_audio, read_image  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TOON = ROOT / "resources/examples/toon.png"
SPEECH = ROOT / "resources/examples/speech.wav"


@pytest.fixture(scope="module")
def example():
    return read_image(TOON), read_audio(SPEECH)


def _to_array(img) -> np.ndarray:
    img = img.convertToFormat(img.Format.Format_RGB888)
    h, w, bpl = img.height(), img.width(), img.bytesPerLine()
    return np.frombuffer(img.constBits(), np.uint8).reshape(h, bpl)[:, : 3 * w].reshape(h, w, 3).copy()


class Frames:
    """Collects live frames (on the render thread) and acknowledges each, as the UI does."""

    def __init__(self, live: LivePreview) -> None:
        self.items: list[tuple[np.ndarray, int, int]] = []
        self.lock = threading.Lock()
        self.live = live
        live.frameReady.connect(self.on_frame)

    def on_frame(self, image, i, n) -> None:
        with self.lock:
            self.items.append((_to_array(image), i, n))
        self.live.ack()

    def count(self) -> int:
        with self.lock:
            return len(self.items)


def new_window(qtbot, tmp_path, **kw):
    """A main window with its own settings file and, unless given, no microphone."""

    s = AppSettings(tmp_path / "settings.ini")
    s.set("sessions_dir", str(tmp_path / "sessions"))
    kw.setdefault("audio_status", AudioStatus(False, "none", [], False))
    w = MainWindow(s, first_run_check=False, **kw)
    qtbot.addWidget(w)
    return w, s


def test_live_preview_animates_the_inputs_in_time_then_stops(qtbot, example):
    img, audio = example
    live = LivePreview()
    frames = Frames(live)
    with qtbot.waitSignal(live.message, timeout=30000) as said:
        live.set_inputs(LiveInputs(img, audio, None, 25.0, seed=3))
        live.start()
    assert "face" in said.args[0].lower()
    qtbot.waitUntil(lambda: frames.count() >= 8, timeout=30000)
    live.stop()
    assert not live.running and not any(t.name == "instant-live" for t in threading.enumerate())
    n_total = num_video_frames(len(audio), 25.0, SAMPLE_RATE)
    h, w = live_size(*img.shape[:2])
    arr, _, n = frames.items[-1]
    assert n == n_total and arr.shape == (h, w, 3)
    idx = [i for _, i, _ in frames.items]
    assert idx == sorted(idx) and len(set(idx)) == len(idx)  # the clock moves forward, one frame at a time


def test_lip_slider_zero_keeps_the_mouth_at_rest_and_a_live_pose_moves_the_arms(qtbot, example):
    from models.instant.engine import InstantEngine

    img, audio = example
    live = LivePreview()
    frames = Frames(live)
    live.set_mouth_scale(0.0)
    live.set_sway(0.0)
    live.set_inputs(LiveInputs(img, audio, None, 25.0, seed=3))
    live.start()
    try:
        qtbot.waitUntil(lambda: frames.count() >= 3, timeout=30000)
        # Lips at 0% and no sway: every frame is the engine's rest frame, apart from blinks (eyes only).
        h, w = live_size(*img.shape[:2])
        rest = InstantEngine(img, (h, w)).render(None)
        lower = slice(int(0.55 * h), h)
        for arr, _, _ in frames.items[:3]:
            assert np.abs(arr[lower].astype(int) - rest[lower]).max() <= 2
        # The webcam skeleton: the reference's own pose (as the body puppet rigs it) with both wrists raised.
        kp = InstantEngine(img, (h, w)).body.ref_kp.copy()
        for wrist, elbow in ((15, 13), (16, 14)):
            kp[wrist, 1] = kp[elbow, 1] - 0.15
        seen = frames.count()
        live.set_live_pose(kp, img.shape[1] / img.shape[0], mirror=False)
        qtbot.waitUntil(lambda: frames.count() >= seen + 3, timeout=30000)
        moved = frames.items[-1][0]
        assert np.abs(moved[lower].astype(int) - rest[lower]).mean() > 2.0
        live.set_live_pose(None)
        seen = frames.count()
        qtbot.waitUntil(lambda: frames.count() >= seen + 3, timeout=30000)
        assert np.abs(frames.items[-1][0][lower].astype(int) - rest[lower]).max() <= 2
    finally:
        live.stop()


def test_a_picture_the_engine_cannot_use_is_explained_and_new_inputs_recover(qtbot, example):
    img, audio = example
    live = LivePreview()
    frames = Frames(live)
    live.start()
    try:
        with qtbot.waitSignal(live.message, timeout=30000) as said:
            live.set_inputs(LiveInputs(np.zeros((64, 64), np.uint8), audio))  # not an RGB picture
        assert "RGB" in said.args[0] and live.running and frames.count() == 0
        with qtbot.waitSignal(live.message, timeout=30000) as said:
            live.set_inputs(LiveInputs(np.full((96, 96, 3), 200, np.uint8), audio))  # nobody in it
        assert "No face found" in said.args[0]
        qtbot.waitUntil(lambda: frames.count() >= 1, timeout=30000)  # the still picture, and why
        live.set_inputs(LiveInputs(img, None))  # the picture alone: an idle loop of blinks
        qtbot.waitUntil(lambda: frames.count() >= 2, timeout=30000)
        assert frames.items[-1][2] == 100
    finally:
        live.stop()


def test_main_window_shows_live_frames_until_the_first_segment(qtbot, tmp_path, example):

    w, s = new_window(qtbot, tmp_path)
    try:
        img, audio = example
        assert w.live_check.isChecked()  # on by default
        w.reference.set_image(img, None, "test picture", str(TOON))
        w.audio.set_audio(audio, str(SPEECH))
        qtbot.waitUntil(lambda: w.preview.label.text().startswith("live "), timeout=30000)
        assert w.live.running and w.preview.view.has_image()
        w.controls.apply({"model": "preset:tiny", "area": 64 * 64, "segment_frames": 9, "steps": 2,
                          "max_seconds": 1.0, "random_seed": False, "seed": 7, "device": "cpu"})
        with qtbot.waitSignal(w.runFinished, timeout=60000):
            assert w.generate()
        assert not w.live.running and not w.preview.label.text().startswith("live ")  # the take replaced it
        w.live_check.setChecked(False)
        w.live_check.setChecked(True)  # back to live on demand
        qtbot.waitUntil(lambda: w.preview.label.text().startswith("live "), timeout=30000)
        w.live_lips.setValue(150)
        w.save_settings()
        assert s.get("live_lips") == 150
    finally:
        w.shutdown()
    assert not w.live.running


def test_the_microphone_drives_the_lips_frame_by_frame(qtbot, example):
    from models.instant.engine import InstantEngine
    from models.media import resample_audio

    img, audio = example
    h, w = live_size(*img.shape[:2])
    eng = InstantEngine(img, (h, w))
    rest = eng.render(None).astype(int)
    mouth = np.abs(eng.render(np.array([0.9, 0.5, 0.2, 0.0])).astype(int) - rest).max(-1) > 20  # the lips' area
    assert mouth.sum() > 20

    def lips_moved(arr) -> float:
        return float(np.abs(arr.astype(int) - rest)[mouth].mean())

    live = LivePreview()
    frames = Frames(live)
    live.set_inputs(LiveInputs(img, None, None, 25.0, seed=1))
    live.set_mic(48000.0)
    live.start()
    try:
        mic = resample_audio(audio[: 3 * SAMPLE_RATE], SAMPLE_RATE, target=48000)
        moved = []
        for k in range(0, len(mic), 4800):  # 0.1 s blocks, as a sound card delivers them
            seen = frames.count()
            live.push_mic(mic[k : k + 4800])
            qtbot.waitUntil(lambda s=seen: frames.count() > s, timeout=10000)
            moved.append(lips_moved(frames.items[-1][0]))
        assert max(moved) > 15, moved  # the lips opened with the speech
        for _ in range(10):  # then 1 s of silence: back to rest
            seen = frames.count()
            live.push_mic(np.zeros(4800, np.float32))
            qtbot.waitUntil(lambda s=seen: frames.count() > s, timeout=10000)
        assert lips_moved(frames.items[-1][0]) < 2
    finally:
        live.stop()


def test_recording_in_the_audio_panel_feeds_the_live_lips(qtbot, tmp_path, example):
    from tests.test_app_window import FakeMic

    w, _ = new_window(qtbot, tmp_path, stream_factory=FakeMic,
                      audio_status=AudioStatus(True, "fake", [(0, "Fake mic", 48000.0)], False))
    pushed = []
    real_push = w.live.push_mic
    w.live.push_mic = lambda samples: (pushed.append(len(samples)), real_push(samples))
    try:
        img, _ = example
        w.reference.set_image(img, None, "test picture", str(TOON))
        w.audio.rec_btn.click()
        assert w.audio.recorder is not None and w.live.running and w.live._mic_rate == 48000.0
        FakeMic.instances[-1].push(0.3)
        qtbot.waitUntil(lambda: sum(pushed) == int(0.3 * 48000), timeout=5000)
        w.audio.rec_btn.click()  # stop: the take becomes the audio, the lips follow the track again
        assert w.live._mic_rate is None and not w._mic_timer.isActive()
    finally:
        w.shutdown()


def test_open_the_example_loads_picture_and_speech_and_the_live_preview_starts(qtbot, tmp_path):

    w, s = new_window(qtbot, tmp_path)
    try:
        assert "File > Open the example" in w.status_label.text()
        w.open_example()
        qtbot.waitUntil(lambda: w.reference.image is not None and w.audio.audio is not None, timeout=30000)
        qtbot.waitUntil(lambda: w.preview.label.text().startswith("live "), timeout=30000)
        assert w.reference.path.endswith("toon.png") and w.audio.path.endswith("speech.wav")
    finally:
        w.shutdown()


def test_the_ui_never_waits_for_the_render_thread(qtbot, example):
    img, audio = example
    live = LivePreview()
    frames = Frames(live)
    live.set_inputs(LiveInputs(img, audio))
    live.start()  # the thread is analysing the picture (face mesh) now
    live.stop(wait=False)  # returns at once; the thread ends after its current work
    assert not live.running
    live.start()  # a new thread takes over at once
    assert live.running
    qtbot.waitUntil(lambda: frames.count() >= 2, timeout=30000)
    live.stop()  # shutdown: waits for every render thread, retired ones included
    assert not any(t.name == "instant-live" for t in threading.enumerate())


def test_the_webcam_drives_the_live_preview_puppet(qtbot, tmp_path, example):
    """A real video stands in for the camera: its skeleton reaches the live preview, retargeted."""
    from app.capture import open_source
    from tests.media_assets import carphone_path

    video = str(carphone_path())
    w, _ = new_window(qtbot, tmp_path, pose_source_factory=lambda: open_source(video, realtime=True))
    poses = []
    real = w.live.set_live_pose
    w.live.set_live_pose = lambda kp, *a, **k: (poses.append(kp), real(kp, *a, **k))
    try:
        img, _ = example
        w.reference.set_image(img, None, "test picture", str(TOON))
        w.pose.set_mode(w.pose.CAMERA)
        w.pose.live_btn.click()
        qtbot.waitUntil(lambda: sum(p is not None and (p[:, 2] > 0.5).sum() >= 4 for p in poses) >= 3, timeout=30000)
        assert w.live.running and w.pose.live_aspect == pytest.approx(176 / 144, rel=0.02)
        qtbot.waitUntil(lambda: w.preview.label.text().startswith("live "), timeout=30000)
        w.pose.live_btn.click()  # camera off: the puppet lets go
        assert poses[-1] is None
    finally:
        w.shutdown()


def test_live_sound_starts_with_the_loop_and_stops_for_a_take(qtbot, tmp_path, example):

    class FakePlayer:
        error = ""

        def __init__(self):
            self.calls = []

        def play(self, audio, start=0.0, retry=True):
            self.calls.append(("play", len(audio), round(start, 2)))
            return True

        def stop(self):
            self.calls.append(("stop",))

    w, s = new_window(qtbot, tmp_path)
    fake = FakePlayer()
    w.player = fake
    try:
        img, audio = example
        assert not w.live_sound.isChecked()  # off by default: the app never starts talking on its own
        w.live_sound.setChecked(True)
        w.audio.set_audio(audio[:16000], str(SPEECH))  # 1 s: the loop wraps quickly
        w.reference.set_image(img, None, "test picture", str(TOON))
        qtbot.waitUntil(lambda: sum(c[0] == "play" for c in fake.calls) >= 2, timeout=30000)
        plays = [c for c in fake.calls if c[0] == "play"]
        assert all(c[1] == 16000 for c in plays) and plays[1][2] < 0.5  # from (near) the top at each wrap
        w.live_sound.setChecked(False)
        assert fake.calls[-1] == ("stop",)
        n = len(fake.calls)
        w.live_sound.setChecked(True)
        qtbot.waitUntil(lambda: any(c[0] == "play" for c in fake.calls[n:]), timeout=30000)
        w._take_shown()  # a generated take takes the preview (and the sound)
        assert fake.calls[-1] == ("stop",) and not w.live.running
    finally:
        w.shutdown()
