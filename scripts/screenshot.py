"""Screenshots of the main window as a new user meets it, for the README (run under Xvfb for a real window).

    xvfb-run -s "-screen 0 1366x768x24" python3 scripts/screenshot.py --moment live --out docs/live_preview.png
    xvfb-run -s "-screen 0 1366x768x24" python3 scripts/screenshot.py --moment take --out docs/screenshot.png

File > Open the example (toon picture, espeak-ng speech, pose take), with a fresh settings file, so
the window shows the defaults a first launch shows. ``live``: the live instant preview animating the
example, before anything is generated. ``take``: Generate with the default engine, the take playing
when it is done. ``segment``: Generate with the OmniHuman model engine, its first segment playing
mid-run. The window is sized to the screen (``--size`` to choose).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--moment", choices=("live", "take", "segment"), default="take")
    p.add_argument("--out", required=True)
    p.add_argument("--size", help="window size WxH (default: the screen's available size)")
    p.add_argument("--timeout", type=float, default=300.0)
    a = p.parse_args()

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from app.controls import ENGINE_WITH_MODEL
    from app.main_window import MainWindow
    from app.settings import AppSettings

    app = QApplication.instance() or QApplication(sys.argv)
    tmp = tempfile.mkdtemp(prefix="omnihuman-shot-")
    s = AppSettings(Path(tmp) / "settings.ini")
    s.set("sessions_dir", str(Path(tmp) / "sessions"))
    w = MainWindow(s, first_run_check=False)
    if a.size:
        width, height = (int(v) for v in a.size.lower().split("x"))
        w.resize(width, height)
    w.show()
    if not a.size:
        w.setGeometry(w.screen().availableGeometry())
    w.open_example()
    if a.moment == "segment":
        w.controls.apply({"engine": ENGINE_WITH_MODEL, "max_seconds": 4.0, "steps": 10})
    state = {"shot": False, "ticks": 0, "started": False}

    def shoot() -> None:
        if state["shot"]:
            return
        state["shot"] = True
        QTimer.singleShot(400, lambda: (w.screen().grabWindow(w.winId()).save(a.out), print(f"wrote {a.out}"),
                                        w.cancel(), QTimer.singleShot(200, app.quit)))

    def poll() -> None:  # on the UI thread
        loaded = w.reference.image is not None and w.audio.audio is not None and w.pose.take_kp is not None
        if not loaded:
            return
        if a.moment == "live":
            if w.preview.label.text().startswith("live "):
                state["ticks"] += 1  # live frames painted for a couple of seconds
            if state["ticks"] > 25:
                shoot()
            return
        if not state["started"]:
            state["started"] = w.generate()
            return
        if a.moment == "segment" and w.busy and w.preview.frames:
            state["ticks"] += 1  # the first segment playing
        elif a.moment == "take" and not w.busy and w.preview.frames:
            state["ticks"] += 1  # the finished take playing
        if state["ticks"] > 20:
            shoot()

    timer = QTimer(w)
    timer.timeout.connect(poll)
    timer.start(100)
    QTimer.singleShot(int(a.timeout * 1000), app.quit)
    app.exec()
    w.shutdown()
    return 0 if state["shot"] else 1


if __name__ == "__main__":
    sys.exit(main())
