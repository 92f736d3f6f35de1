"""The desktop app, driven offscreen with pytest-qt: signal waits only, no sleeps, no thread left behind."""

import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl  # noqa: E402
from PySide6.QtGui import QDropEvent  # noqa: E402
from PySide6.QtWidgets import QMessageBox  # noqa: E402

from app.audio_io import AudioStatus  # noqa: E402
from app.main_window import MainWindow  # noqa: E402
from app.settings import AppSettings  # noqa: E402
from models.config import get_preset  # noqa: E402
from models.engines.diffusion import DiffusionEngine  # noqa: E402
from models.media import SAMPLE_RATE, read_audio, read_image  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TOON = ROOT / "resources/examples/toon.png"
SPEECH = ROOT / "resources/examples/speech.wav"
FAST = {"engine": "OmniHuman model", "model": "preset:tiny", "area": 64 * 64, "segment_frames": 9, "steps": 2,
        "max_seconds": 1.0, "random_seed": False, "seed": 7, "device": "cpu", "dtype": "float32"}


class FakeMic:
    """Stands in for sounddevice.InputStream: the test pushes blocks through the callback."""

    instances: list = []

    def __init__(self, device, samplerate, callback):
        self.samplerate, self.callback, self.started, self.closed = samplerate, callback, False, False
        FakeMic.instances.append(self)

    def start(self):
        self.started = True

    def stop(self):
        self.started = False

    def close(self):
        self.closed = True

    def push(self, seconds: float, amp: float = 0.4):
        n = int(seconds * self.samplerate)
        t = np.arange(n) / self.samplerate
        self.callback((amp * np.sin(2 * np.pi * 220 * t))[:, None].astype(np.float32), n, None, None)


@pytest.fixture(scope="module")
def example():
    return read_image(TOON), read_audio(SPEECH)


@pytest.fixture
def settings(tmp_path):
    s = AppSettings(tmp_path / "settings.ini")
    s.set("sessions_dir", str(tmp_path / "sessions"))
    s.set("countdown", 0)
    return s


def _threads():
    return {t for t in threading.enumerate() if t.name in ("frame-reader",)}


@pytest.fixture(autouse=True)
def no_thread_left():
    """Every Python thread a test starts (frame readers, sources) is gone when it ends."""
    before = set(threading.enumerate())
    yield
    left = [t for t in threading.enumerate() if t not in before and t.is_alive()
            and not isinstance(t, threading._DummyThread)]
    assert not left, f"threads left running: {[t.name for t in left]}"


def make_window(qtbot, settings, **kw):
    kw.setdefault("stream_factory", FakeMic)
    kw.setdefault("audio_status", AudioStatus(True, "fake", [(0, "Fake mic", 48000.0)], False))
    w = MainWindow(settings, first_run_check=False, **kw)
    qtbot.addWidget(w)
    w.show()
    return w


def close_window(w):
    w.shutdown()
    assert not w.host.thread.isRunning(), "the generation thread is still running"
    assert w.pose.capture is None and w.tasks.pool.activeThreadCount() == 0
    assert not _threads(), "a frame reader thread is still running"


@pytest.fixture
def window(qtbot, settings):
    w = make_window(qtbot, settings)
    yield w
    close_window(w)


def ready(w, example, **controls):
    img, audio = example
    w.reference.set_image(img, None, "test picture", str(TOON))
    w.audio.set_audio(audio, str(SPEECH))
    w.controls.apply({**FAST, **controls})


def test_drop_image_and_load_audio(qtbot, window):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(TOON))])
    view = window.reference.view
    ev = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                    Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(window.reference.referenceChanged, timeout=30000):
        view.dropEvent(ev)  # what Qt calls when a file is dropped on the picture
    h, w = read_image(TOON).shape[:2]
    assert window.reference.image.shape == (h, w, 3) and view.has_image()
    assert window.reference.info is not None and window.reference.info_label.text().startswith(f"{w}x{h}")
    with qtbot.waitSignal(window.audio.audioChanged, timeout=10000):
        window.audio.load(str(SPEECH))
    assert len(window.audio.audio) == len(read_audio(SPEECH))
    window.audio.wave.set_trim(1.0, 3.0)
    assert len(window.audio.trimmed()) == 2 * SAMPLE_RATE


def test_fake_microphone_records_into_waveform(qtbot, window):
    panel = window.audio
    FakeMic.instances.clear()
    panel.rec_btn.click()
    mic = FakeMic.instances[-1]
    assert mic.started and mic.samplerate == 48000.0 and panel.wave.recording
    mic.push(0.5)
    qtbot.waitUntil(lambda: panel.wave.has_audio() and panel.wave.duration == pytest.approx(0.5), timeout=3000)
    qtbot.waitUntil(lambda: panel.meter.value() == 40, timeout=3000)
    mic.push(0.5)
    qtbot.waitUntil(lambda: panel.wave.duration == pytest.approx(1.0), timeout=3000)
    with qtbot.waitSignal(panel.audioChanged):
        panel.rec_btn.click()  # stop
    assert mic.closed and len(panel.audio) == SAMPLE_RATE and panel.rec_btn.text() == "Re-record"


def test_no_microphone_disables_recording(qtbot, settings):
    w = make_window(qtbot, settings, stream_factory=None,
                    audio_status=AudioStatus(False, "No microphone (audio input device) found.", []))
    try:
        assert not w.audio.rec_btn.isEnabled() and "No microphone" in w.audio.rec_note.text()
        assert w.audio.load_btn.isEnabled()
    finally:
        close_window(w)


def test_video_file_stands_in_for_camera(qtbot, settings):
    from app.capture import open_source
    from tests.media_assets import carphone_path

    video = str(carphone_path())
    w = make_window(qtbot, settings, pose_source_factory=lambda: open_source(video, realtime=True))
    try:
        w.reference.set_image(read_image(TOON), None, "", "")
        w.pose.set_mode(w.pose.CAMERA)
        with qtbot.waitSignal(w.pose.skeletonShown, timeout=30000,
                              check_params_cb=lambda kp: bool((kp[:, 2] > 0.5).sum() >= 4)) as blocker:
            w.pose.live_btn.click()
        assert blocker.args[0].shape[1] == 3 and w.pose.live.has_image()
        w.pose.take_secs.setValue(1.0)
        with qtbot.waitSignal(w.pose.capture.takeFinished, timeout=30000):
            w.pose.take_btn.click()
        assert w.pose.take_kp is not None and len(w.pose.take_kp) >= 2 and w.pose.review.has_image()
        pose = w.pose.pose_for(25.0)
        assert pose.ndim == 3 and pose.shape[2] == 3
    finally:
        close_window(w)


def _record(w):
    events = []
    w.worker.progress.connect(lambda seg, n, step, steps, eta: events.append(("step", seg, step)))
    w.worker.segment.connect(lambda seg, frames, start, audio: events.append(("segment", seg, len(frames))))
    w.worker.finished.connect(lambda out: events.append(("done", out)))
    return events


def test_generate_streams_steps_segments_then_file(qtbot, window, example):
    from app.probe import LatencyProbe

    ready(window, example)
    events = _record(window)
    probe = LatencyProbe(5)
    probe.start()
    with qtbot.waitSignal(window.runFinished, timeout=60000) as done:
        assert window.generate()
    probe.stop()
    out = done.args[0]
    # The worker's signals reach each receiver as its own queued event: the window's runFinished can
    # end the wait before this test's own slot for the same signal has run.
    qtbot.waitUntil(lambda: bool(events) and events[-1][0] == "done", timeout=5000)
    kinds = [e[0] for e in events]
    assert kinds[0] == "step" and kinds[-1] == "done"
    segs = [e for e in events if e[0] == "segment"]
    assert [s[1] for s in segs] == list(range(out.num_segments)) == [0, 1, 2]
    for s in segs[1:]:  # every segment's steps come before it is shown, and after the previous one
        i = events.index(s)
        assert events[i - 1][0] == "step" and events[i - 1][1] == s[1]
    assert out.video_path.is_file() and len(window.preview.frames) == 25
    assert window.preview.view.has_image() and window.controls.used_seed.text() == "seed used: 7"
    assert window.history_list.count() == 1 and window.history[0].thumbnail is not None
    # The UI thread only paints: it never spends 50 ms of its own CPU time between two 5 ms ticks. The
    # wall-clock gaps (p99 and worst) are reported, and measured by benchmarks/ui_latency.py; on a
    # shared 2-core CPU the OS can make the whole process wait (p99 18-32 ms here, now and then over
    # 50 ms), so only a gross stall (synchronous loading or decoding) fails on them here.
    print(f"UI gaps: worst {probe.worst_ms:.1f} ms (own CPU {probe.cpu_in_worst_gap_ms():.1f} ms), "
          f"p99 {probe.percentile_ms(99):.1f} ms, most own CPU in a gap {probe.worst_busy_ms:.1f} ms")
    assert probe.worst_busy_ms < 50, f"the UI thread worked {probe.worst_busy_ms:.0f} ms without a break"
    assert probe.worst_ms < 1500, f"UI thread blocked {probe.worst_ms:.0f} ms"

    # export with audio, PNG frames and settings JSON
    window.export_png.setChecked(True)
    got = []
    window.export(str(window.settings.sessions_dir.parent / "out" / "take.mp4"), got.append)
    qtbot.waitUntil(lambda: bool(got), timeout=30000)
    assert got[0].video.is_file() and got[0].settings_json.is_file() and len(list(got[0].frames_dir.iterdir())) == 25

    # history: back to the take's settings, change one slider, run again
    window.controls.apply({"seed": 1, "cfg_audio": 2.0})
    window.use_run_settings(0)
    tiny = get_preset("tiny").sampling  # the first take sampled with the model's own guidance
    assert window.controls.seed.value() == 7 and window.controls.cfg_audio.value() == pytest.approx(tiny.cfg_audio)
    window.controls.cfg_audio.setValue(6.0)
    with qtbot.waitSignal(window.runFinished, timeout=60000):
        window.generate()
    assert window.history_list.count() == 2 and window.history[1].settings["cfg_audio"] == 6.0
    assert window.history[1].seed == 7
    window.preview.clear()
    window.show_run(0)  # back to the first take, read from its session folder
    qtbot.waitUntil(lambda: len(window.preview.frames) == 25 and window.current is window.history[0], timeout=10000)


def test_cancel_mid_run_keeps_finished_segments(qtbot, window, example):
    ready(window, example, max_seconds=3.0)
    window.worker.segment.connect(lambda seg, *_: window.cancel() if seg == 0 else None)
    with qtbot.waitSignal(window.runFinished, timeout=60000) as done:
        window.generate()
    out = done.args[0]
    assert out.cancelled and out.segments_done == 1 < out.num_segments
    assert (out.run_dir / "segment_000.npy").is_file() and not (out.run_dir / "segment_001.npy").exists()
    assert out.video_path.is_file() and len(window.preview.frames) == 9
    assert window.generate_btn.isEnabled() and window.history[0].status == "cancelled"


class FailingEngine(DiffusionEngine):
    """Fails with an out-of-memory error after its first segment, once."""

    fail = True

    def generate(self, job, callbacks=None, keep_frames=False):
        inner = callbacks.on_segment

        def on_segment(seg, frames, start):
            inner(seg, frames, start)
            if FailingEngine.fail and seg == 1:
                FailingEngine.fail = False
                raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

        callbacks.on_segment = on_segment
        return super().generate(job, callbacks, keep_frames)


def test_worker_error_shows_message_and_ui_stays_usable(qtbot, settings, example, monkeypatch):
    shown = []
    monkeypatch.setattr(QMessageBox, "exec", lambda self: shown.append(self.text()) or 0)
    FailingEngine.fail = True
    w = make_window(qtbot, settings, engine_factories={"OmniHuman model": FailingEngine})
    try:
        ready(w, example)
        with qtbot.waitSignal(w.runFailed, timeout=60000):
            w.generate()
        qtbot.waitUntil(lambda: bool(shown))
        assert "Out of memory" in shown[0] and "2 finished segment(s) are kept" in shown[0]
        assert w.generate_btn.isEnabled() and w.history[0].status == "failed"
        assert len(list(w.history[0].run_dir.glob("segment_*.npy"))) == 2
        with qtbot.waitSignal(w.runFinished, timeout=60000) as done:
            assert w.generate()
        assert not done.args[0].cancelled and len(shown) == 1
    finally:
        close_window(w)


def test_missing_input_is_explained(qtbot, window, monkeypatch):
    warned = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a: warned.append(a[2]))
    assert not window.generate()
    assert "reference picture" in warned[0]


def test_settings_persist_across_restart(qtbot, settings):
    w = make_window(qtbot, settings)
    w.controls.apply({"cfg_audio": 6.5, "steps": 7, "anneal": "linear", "model": "preset:tiny", "seed": 1234,
                      "text": "a toon waving", "area": 96 * 96, "aspect": "9:16"})
    w.quality.setCurrentText("small file")
    close_window(w)
    again = AppSettings(settings.q.fileName())
    w2 = make_window(qtbot, again)
    try:
        v = w2.controls.values()
        assert (v["cfg_audio"], v["steps"], v["anneal"], v["model"], v["seed"], v["text"], v["area"]) == (
            6.5, 7, "linear", "preset:tiny", 1234, "a toon waving", 96 * 96)
        assert w2.quality.currentText() == "small file" and v["aspect"] == "9:16"
    finally:
        close_window(w2)


def test_presets_and_system_check(qtbot, window):
    window.controls.preset_fast.click()
    assert window.controls.steps.value() == 8
    window.controls.preset_quality.click()
    assert window.controls.steps.value() == 30
    window.show_system_check()
    qtbot.waitUntil(lambda: getattr(window, "syscheck_dialog", None) is not None, timeout=30000)
    names = [window.syscheck_dialog.table.item(i, 1).text() for i in range(window.syscheck_dialog.table.rowCount())]
    assert "PyTorch" in names and "ffmpeg" in names and "Models" in names
    window.syscheck_dialog.close()


def test_frames_are_uint8_rgb(example):
    from app.widgets import to_qimage

    img = to_qimage(example[0])
    assert (img.height(), img.width()) == example[0].shape[:2]
    assert np.asarray(example[0]).dtype == np.uint8


def test_playback_without_sound_device_says_so(qtbot, window, example):
    class NoSound:
        error = ""

        def play(self, audio, start, retry=True):
            self.error = "cannot play audio here (no audio output device)."
            return False

        def stop(self):
            pass

    window.preview.audio_player = NoSound()
    window.preview.set_frames(np.zeros((5, 16, 16, 3), np.uint8), 25.0, example[1])
    window.preview.play_btn.click()
    assert "no audio output device" in window.preview.sound_note.text() and window.preview.timer.isActive()
    qtbot.waitUntil(lambda: not window.preview.timer.isActive(), timeout=3000)  # plays to the end, silently
    assert window.preview.slider.value() == 4


def test_instant_engine_through_the_same_worker(qtbot, window, example):
    from models.engines.instant import InstantAdapter

    ready(window, example, engine=InstantAdapter.name)
    c = window.controls
    assert not c.steps.isVisibleTo(c) and not c.cfg_audio.isVisibleTo(c) and not c.area.isVisibleTo(c)
    assert c.instant_area.isVisibleTo(c) and "picture's own" in c.instant_area.currentText()
    segs = []
    window.worker.segment.connect(lambda seg, frames, start, audio: segs.append(start))
    with qtbot.waitSignal(window.runFinished, timeout=60000) as done:
        assert window.generate()
    out = done.args[0]
    assert not out.cancelled and out.segments_done == len(segs) >= 1 and out.video_path.is_file()
    assert len(window.preview.frames) == 25 and window.history[0].settings["engine"] == InstantAdapter.name
    h, w = example[0].shape[:2]
    assert (out.height, out.width) == (h, w)  # the picture's own size (under the engine's cap)


def test_a_model_notice_shows_under_the_model_picker(qtbot, settings, tmp_path):
    import json

    from models.checkpoint import save_model
    from models.config import get_preset
    from models.model import OmniHuman

    folder = save_model(OmniHuman(get_preset("tiny")), tmp_path / "models" / "placeholder")
    raw = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**raw, "notice": "A placeholder: use the Instant engine."}))
    settings.set("model_dirs", [str(tmp_path / "models")])
    w = make_window(qtbot, settings)
    try:
        w.controls.apply({"model": f"path:{folder}", "engine": "OmniHuman model"})
        assert w.controls.model_note.text() == "A placeholder: use the Instant engine."
        w.controls.apply({"model": "preset:tiny"})
        assert "Untrained" in w.controls.model_note.text()
    finally:
        close_window(w)


def test_sampling_defaults_and_fps_come_from_the_selected_model(qtbot, settings):
    w = make_window(qtbot, settings)
    try:
        for preset in ("tiny", "toon-s", "tiny"):
            w.controls.apply({"model": f"preset:{preset}"})
            sc = get_preset(preset).sampling
            c = w.controls
            assert (c.steps.value(), c.anneal.currentText()) == (sc.steps, sc.anneal)
            assert (c.cfg_audio.value(), c.anneal_strength.value()) == pytest.approx((sc.cfg_audio, sc.anneal_strength))
            assert c.output_fps() == get_preset(preset).cond.fps
        w.controls.apply({"model": "preset:toon-s", "steps": 3})  # a value given with the model wins
        assert w.controls.steps.value() == 3
    finally:
        close_window(w)
