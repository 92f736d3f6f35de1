"""Screenshots of the main window mid-generation, for the README (run under Xvfb for a real window).

    xvfb-run -s "-screen 0 1600x1000x24" python3 scripts/screenshot.py --moment segment --out docs/screenshot.png
    xvfb-run -s "-screen 0 1600x1000x24" python3 scripts/screenshot.py --moment live --out docs/live_preview.png

The bundled example (toon picture, espeak-ng speech, pose take) with the bundled default model.
``segment``: the first generated segment playing in the preview. ``live``: the instant engine's live
preview while the model renders its first segment.
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
    p.add_argument("--moment", choices=("segment", "live"), default="segment")
    p.add_argument("--out", required=True)
    p.add_argument("--timeout", type=float, default=300.0)
    a = p.parse_args()

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from app.main_window import MainWindow
    from app.settings import AppSettings
    from models.media import read_audio, read_image

    app = QApplication.instance() or QApplication(sys.argv)
    tmp = tempfile.mkdtemp(prefix="omnihuman-shot-")
    s = AppSettings(Path(tmp) / "settings.ini")
    s.set("sessions_dir", str(Path(tmp) / "sessions"))
    w = MainWindow(s, first_run_check=False)
    w.show()
    image = ROOT / "resources/examples/toon.png"
    speech = ROOT / "resources/examples/speech.wav"
    w.reference.set_image(read_image(image), None, "example", str(image))
    w.audio.set_audio(read_audio(speech), str(speech))
    w.controls.apply({"text": "a cartoon character talking, friendly", "max_seconds": 4.0, "steps": 10,
                      "random_seed": False, "seed": 42})
    state = {"shot": False, "ticks": 0}

    def shoot() -> None:
        if state["shot"]:
            return
        state["shot"] = True
        QTimer.singleShot(400, lambda: (w.screen().grabWindow(w.winId()).save(a.out), print(f"wrote {a.out}"),
                                        w.cancel(), QTimer.singleShot(200, app.quit)))

    def poll() -> None:  # on the UI thread, while the run goes on
        if not w.busy:
            return
        if a.moment == "live" and w.preview.label.text().startswith("live "):
            state["ticks"] += 1  # live frames painted for a couple of seconds
        elif a.moment == "segment" and w.preview.frames:
            state["ticks"] += 1  # the first segment playing
        if state["ticks"] > 20:
            shoot()

    timer = QTimer(w)
    timer.timeout.connect(poll)
    timer.start(100)
    QTimer.singleShot(1500, w.generate)
    QTimer.singleShot(int(a.timeout * 1000), app.quit)
    app.exec()
    w.shutdown()
    return 0 if state["shot"] else 1


if __name__ == "__main__":
    sys.exit(main())
