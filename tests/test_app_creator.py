"""The app as a creator meets it (issue 21): the engine that works first, full-size takes, a window
that fits a laptop, the length cap said out loud, history that lasts, a live preview that rests.

pytest-qt, offscreen; signal waits only."""

import json

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtWidgets import QAbstractButton, QMessageBox, QScrollArea  # noqa: E402

from app.main_window import FIRST_HINT, MIN_SIZE  # noqa: E402
from app.settings import AppSettings  # noqa: E402
from models.engines.registry import INSTANT_ENGINE, MODEL_ENGINE  # noqa: E402
from models.media import SAMPLE_RATE  # noqa: E402
from tests import test_app_window as base  # noqa: E402
from tests.test_app_window import SPEECH, TOON, close_window, make_window, ready  # noqa: E402

# The window tests' fixtures: a settings file per test, the example's media, a window, no thread left.
settings, example, window, no_thread_left = base.settings, base.example, base.window, base.no_thread_left

INSTANT = INSTANT_ENGINE


def _instant(w, example, seconds: float, **controls):
    """The example picture with the first ``seconds`` of its speech, on the instant engine."""
    img, audio = example
    w.reference.set_image(img, None, "test picture", str(TOON))
    w.audio.set_audio(audio[: int(seconds * SAMPLE_RATE)], str(SPEECH))
    w.controls.apply({"engine": INSTANT, "random_seed": False, "seed": 3, **controls})


def _columns_fit(w):
    """No scroll column is narrower than its content (nothing cut on the right)."""
    for area in w.findChildren(QScrollArea):
        if area.widget() is None or not area.isVisible():
            continue
        need = area.widget().minimumSizeHint().width()
        have = area.viewport().width()
        assert need <= have, f"{area.widget().__class__.__name__} needs {need} px, has {have}"


def _buttons_whole(w):
    """Every visible button lies across the window's width at its full hint width, and the run and export
    buttons (the middle column) are on screen (the side columns may scroll vertically)."""
    rect = w.rect()
    for b in w.findChildren(QAbstractButton):
        if not b.isVisible() or b.window() is not w:
            continue
        geo = b.geometry().translated(b.parentWidget().mapTo(w, b.parentWidget().rect().topLeft()))
        assert geo.left() >= 0 and geo.right() <= rect.right(), f"{b.text()!r} is cut: {geo} not in {rect}"
        assert b.width() >= min(b.minimumSizeHint().width(), b.sizeHint().width()), f"{b.text()!r} is squeezed"
    for b in (w.generate_btn, w.cancel_btn, w.export_btn, w.open_folder_btn):
        assert b.visibleRegion().boundingRect().size() == b.size(), f"{b.text()!r} is not all on screen"


# -- the window fits a laptop --------------------------------------------------------------------------


def test_minimum_size_fits_1280x720_and_nothing_is_cut(qtbot, window, monkeypatch):
    import models.sources

    hint = window.minimumSize()
    assert hint.width() <= MIN_SIZE[0] and hint.height() <= MIN_SIZE[1]
    assert window.minimumSizeHint().width() <= MIN_SIZE[0]
    for engine in (MODEL_ENGINE, INSTANT):
        window.controls.apply({"engine": engine})
        for size in ((1366, 768), (1280, 720)):
            window.resize(*size)
            qtbot.waitUntil(lambda s=size: (window.width(), window.height()) == s, timeout=3000)
            _columns_fit(window)
            _buttons_whole(window)
    # Webcam mode (no camera here) keeps the left column as it was and fits it.
    monkeypatch.setattr(models.sources, "list_cameras", lambda *a, **k: [])
    left = window.left_scroll.width()
    window.pose.set_mode(window.pose.CAMERA)
    qtbot.waitUntil(lambda: window.pose.take_btn.isVisible(), timeout=3000)
    assert window.left_scroll.width() == left
    _columns_fit(window)
    window.pose.set_mode(window.pose.NONE)


def test_record_take_is_disabled_without_a_camera(qtbot, settings, monkeypatch):
    import models.sources

    monkeypatch.setattr(models.sources, "list_cameras", lambda *a, **k: [])
    w = make_window(qtbot, settings, pose_source_factory=None)
    try:
        w.pose.set_mode(w.pose.CAMERA)
        assert not w.pose.take_btn.isEnabled() and not w.pose.live_btn.isEnabled()
        assert "No camera" in w.pose.msg.text()
        w.pose.start_countdown()  # even when called, nothing counts down
        assert not w.pose.countdown_timer.isActive() and w.pose.capture is None
    finally:
        close_window(w)


# -- the engine that works first -------------------------------------------------------------------------


def test_default_engine_is_instant_until_a_model_is_recommended(qtbot, settings, tmp_path):
    from models.checkpoint import save_model
    from models.config import get_preset
    from models.model import OmniHuman

    w = make_window(qtbot, settings)
    try:
        assert w.controls.engine.currentText() == INSTANT and w.controls.engine_auto
        assert w.live_check.isChecked()  # and it animates the picture live
    finally:
        close_window(w)

    folder = save_model(OmniHuman(get_preset("tiny")), tmp_path / "models" / "passes",
                        extra={"recommended": ["full"]})  # passes its bar for full-body pictures
    fresh = AppSettings(tmp_path / "fresh.ini")
    fresh.set("sessions_dir", str(tmp_path / "sessions"))
    fresh.set("model_dirs", [str(folder)])
    w = make_window(qtbot, fresh)
    try:
        c = w.controls
        assert c.engine.currentText() == INSTANT  # no picture yet: its domain is unknown
        c.set_picture_framing("portrait")
        assert c.engine.currentText() == INSTANT
        c.set_picture_framing("full")
        assert c.engine.currentText() == MODEL_ENGINE and c.model_choice().path == str(folder)
        assert w.live_check.isChecked()  # Instant stays the live preview
        # The user's own pick sticks, across pictures and restarts.
        c.engine.setCurrentIndex(c.engine.findText(INSTANT))
        c.engine.activated.emit(c.engine.currentIndex())
        c.set_picture_framing("full")
        assert c.engine.currentText() == INSTANT and not c.engine_auto
        w.save_settings()
        assert fresh.get("engine") == INSTANT
    finally:
        close_window(w)
    data = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**data, "recommended": True}))
    from models.checkpoint import recommended_for

    assert recommended_for(folder, None) and not recommended_for(tmp_path, "full")


def test_size_control_means_what_it_does_per_engine(qtbot, window):
    c = window.controls
    c.apply({"engine": MODEL_ENGINE, "model": "preset:tiny", "area": 0})
    assert c.area.isVisibleTo(c) and not c.instant_area.isVisibleTo(c)
    assert c.area.itemText(0).startswith("the model's own (") and c.generation_settings().area is None
    c.apply({"area": 96 * 96})
    assert c.generation_settings().area == 96 * 96
    from models.instant.engine import MAX_SIDE

    c.apply({"engine": INSTANT})
    assert c.instant_area.isVisibleTo(c) and not c.area.isVisibleTo(c)
    assert f"up to {MAX_SIDE} px" in c.instant_area.currentText() and c.generation_settings().area is None


def test_presets_have_a_default_and_show_the_active_one(qtbot, window):
    c = window.controls
    from models.config import get_preset

    c.apply({"engine": MODEL_ENGINE, "model": "preset:tiny"})
    assert c.active_preset() == "default"  # a fresh pick of a model is its own values
    c.apply({"steps": 13, "cfg_audio": 9.0, "anneal_strength": 0.1, "max_seconds": 2.0, "audio_focus": 0.6,
             "motion_anchor": 0.3, "still_lead": True})
    gs = c.generation_settings()  # the sliders reach the engine
    assert (gs.audio_focus, gs.motion_anchor) == pytest.approx((0.6, 0.3)) and gs.still_lead is True
    assert c.active_preset() == ""
    c.preset_default.click()  # "default": the model's own sampling, its own size, the whole audio
    sc = get_preset("tiny").sampling
    assert (c.steps.value(), c.anneal.currentText(), c.max_seconds.value()) == (sc.steps, sc.anneal, 0.0)
    assert (c.cfg_audio.value(), c.anneal_strength.value()) == pytest.approx((sc.cfg_audio, sc.anneal_strength))
    assert (c.audio_focus.value(), c.motion_anchor.value()) == pytest.approx((sc.audio_focus, sc.motion_anchor))
    assert c.still_lead.isChecked() is sc.still_lead and c.generation_settings().still_lead is sc.still_lead
    assert c.active_preset() == "default" and c.preset_default.isChecked() and "default" in c.preset_label.text()
    c.preset_fast.click()
    assert c.preset_fast.isChecked() and not c.preset_default.isChecked()
    c.steps.setValue(13)
    assert c.active_preset() == "" and not c.preset_fast.isChecked() and "Custom" in c.preset_label.text()


def test_the_example_drives_with_its_pose_take(qtbot, window):
    from tests.test_app_window import ROOT

    window.open_example()
    qtbot.waitUntil(lambda: window.reference.image is not None and window.audio.audio is not None
                    and window.pose.take_kp is not None, timeout=30000)
    pose = np.load(ROOT / "resources/examples/pose.npy")
    assert window.pose.mode == window.pose.VIDEO
    np.testing.assert_allclose(window.pose.pose_for(25.0), pose, atol=1e-6)  # in the picture's frame as it is


# -- the length cap ---------------------------------------------------------------------------------------


def test_a_take_cut_by_the_length_cap_says_so_and_renders_all(qtbot, window, example):
    _instant(window, example, 2.0, max_seconds=1.0)
    assert window.length_note.isVisibleTo(window) and "1.0 s of 2.0 s" in window.length_note.text()
    with qtbot.waitSignal(window.runFinished, timeout=60000) as done:
        assert window.generate()
    assert done.args[0].num_frames == 25
    assert "This take is 1.0 s of 2.0 s" in window.length_note.text() and window.render_all_btn.isVisibleTo(window)
    window.audio.wave.set_trim(0.0, 1.5)  # new inputs: the note speaks of the cap again
    assert "first 1.0 s of 1.5 s" in window.length_note.text() and "Render all 1.5 s" == window.render_all_btn.text()
    window.audio.wave.set_trim(0.0, 2.0)
    with qtbot.waitSignal(window.runFinished, timeout=60000) as done:
        window.render_all_btn.click()
    assert done.args[0].num_frames == 50 and window.controls.max_seconds.value() == 0
    assert not window.length_note.isVisibleTo(window) and not window.render_all_btn.isVisibleTo(window)


# -- history that lasts --------------------------------------------------------------------------------------


def test_history_is_read_back_after_a_restart(qtbot, settings, example):
    w = make_window(qtbot, settings)
    try:
        _instant(w, example, 1.0)
        w.audio.wave.set_trim(0.2, 1.0)
        with qtbot.waitSignal(w.runFinished, timeout=60000):
            assert w.generate()
        assert "Instant" in w.history[0].summary() and "steps" not in w.history[0].summary()
    finally:
        close_window(w)

    again = AppSettings(settings.q.fileName())
    again.set("last_image", "")  # a new window with nothing loaded
    again.set("last_audio", "")
    w2 = make_window(qtbot, again)
    try:
        qtbot.waitUntil(lambda: w2.history_list.count() == 1, timeout=10000)
        rec = w2.history[0]
        text = w2.history_list.item(0).text()
        assert "Instant" in text and "toon.png" in text and "speech.wav" in text and "steps" not in text
        assert rec.thumbnail is not None and rec.num_frames == 20 and w2.side_tabs.tabText(1) == "History (1)"
        assert w2.reference.image is None and w2.audio.audio is None
        w2.controls.apply({"seed": 99})
        with qtbot.waitSignals([w2.reference.referenceChanged, w2.audio.audioChanged], timeout=30000):
            w2.use_run_settings(0)
        qtbot.waitUntil(lambda: w2.audio.audio is not None and w2.reference.image is not None, timeout=10000)
        assert w2.reference.path == str(TOON) and w2.audio.path == str(SPEECH)
        assert w2.audio.trim() == pytest.approx((0.2, 1.0)) and w2.controls.seed.value() == 3
        w2.show_run(0)
        qtbot.waitUntil(lambda: len(w2.preview.frames) == 20, timeout=10000)
    finally:
        close_window(w2)


# -- after a cancel, after a failure ---------------------------------------------------------------------------


def test_progress_bars_reset_after_a_cancel(qtbot, window, example):
    ready(window, example, max_seconds=3.0)
    window.worker.segment.connect(lambda seg, *_: window.cancel() if seg == 0 else None)
    with qtbot.waitSignal(window.runFinished, timeout=60000) as done:
        window.generate()
    assert done.args[0].cancelled
    for bar in (window.step_bar, window.segment_bar):
        assert bar.value() == 0 and "/" not in bar.text(), bar.text()
    assert window.eta_label.text() == ""


def test_a_failed_picture_load_clears_the_old_one(qtbot, window, example, monkeypatch, tmp_path):
    warned = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a: warned.append(a[2]))
    window.reference.set_image(example[0], None, "", str(TOON))
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a picture")
    with qtbot.waitSignal(window.reference.referenceChanged, timeout=10000):
        window.reference.load(str(bad))
    assert window.reference.image is None and not window.reference.view.has_image()
    assert "Could not open" in window.reference.info_label.text() and warned


def test_first_launch_hint_survives_the_system_check(qtbot, window):
    assert window.status_label.text() == FIRST_HINT
    window.show_system_check()
    qtbot.waitUntil(lambda: getattr(window, "syscheck_dialog", None) is not None, timeout=30000)
    assert window.status_label.text() == FIRST_HINT
    window.syscheck_dialog.close()


def test_system_check_reports_the_configured_threads(qtbot):
    import os

    import torch

    from app.jobs import cpu_threads
    from app.syscheck import _torch_rows

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # what a run leaves behind
        row = _torch_rows(0)[0].value
        assert f"{os.cpu_count()} CPU cores" in row and f"uses {cpu_threads(0)} threads" in row
        assert "uses 3 threads (3 set)" in _torch_rows(3)[0].value
    finally:
        torch.set_num_threads(before)


def test_export_opens_in_an_existing_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    s = AppSettings(tmp_path / "s.ini")
    d = s.export_dir
    assert d == tmp_path / "home" / "Videos" / "OmniHuman" and d.is_dir()
    s.set("export_dir", str(tmp_path / "gone"))  # a folder exported to once, deleted since
    assert s.export_dir == d


# -- the live preview rests -----------------------------------------------------------------------------------


def test_live_preview_rests_when_nothing_changes(qtbot, window, example):
    window.live_rest_s = 0.0  # rest at the first loop's end
    window.live_check.setChecked(True)
    _instant(window, example, 0.4)
    qtbot.waitUntil(lambda: window.live.running, timeout=10000)
    qtbot.waitUntil(lambda: not window.live.running, timeout=30000)
    assert "resting" in window.preview.label.text()
    thread_gone = lambda: all(not t.is_alive() for t in window.live._retired)  # noqa: E731
    qtbot.waitUntil(thread_gone, timeout=10000)  # no thread renders while it rests
    window.live_rest_s = 60.0
    window.preview.play_btn.click()  # Play wakes it
    qtbot.waitUntil(lambda: window.live.running, timeout=10000)


def test_cli_seed_default_is_the_apps(qtbot):
    from app.settings import DEFAULTS
    from models.cli import build_parser

    args = build_parser().parse_args(["generate", "--image", "x.png", "--audio", "y.wav"])
    assert args.seed == DEFAULTS["seed"] == 42 and not DEFAULTS["random_seed"]

