"""How long the UI thread is blocked while the app generates: the worst gap between 5 ms timer ticks.

    python benchmarks/ui_latency.py                  # tiny model, 2 s of speech, offscreen
    python benchmarks/ui_latency.py --model toon-s --steps 4 --seconds 1

Runs the real main window (offscreen unless a display is set) on the bundled example picture and
speech, starts a generation, and prints the worst, 99.9th and 99th percentile gaps between the ticks
of a 5 ms timer on the UI thread, with the system load (a shared, overloaded CPU stalls the whole
process and shows up here too), and the UI thread's own CPU time within the gaps (its own work).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny", choices=["tiny", "toon-s"])
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--segment", type=int, default=9)
    ap.add_argument("--no-live", action="store_true", help="turn the live instant preview off (on by default)")
    args = ap.parse_args()
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    from app.main_window import MainWindow
    from app.probe import LatencyProbe
    from app.settings import AppSettings
    from models.media import read_audio, read_image

    with tempfile.TemporaryDirectory() as tmp:
        settings = AppSettings(Path(tmp) / "settings.ini")
        settings.set("sessions_dir", str(Path(tmp) / "sessions"))
        settings.set("live_preview", not args.no_live)
        win = MainWindow(settings, first_run_check=False)
        win.show()
        win.reference.set_image(read_image(ROOT / "resources/examples/toon.png"), None, "", "")
        win.audio.set_audio(read_audio(ROOT / "resources/examples/speech.wav"), "speech.wav")
        win.controls.apply({"model": f"preset:{args.model}", "steps": args.steps, "max_seconds": args.seconds,
                            "segment_frames": args.segment, "area": 64 * 64 if args.model == "tiny" else 128 * 128})
        probe = LatencyProbe(5)
        segments = []
        win.worker.segment.connect(lambda seg, *_: segments.append(time.perf_counter()))
        # Quit from the UI thread once the run is recorded (never connect a worker signal to app.quit).
        poll = QTimer()
        poll.timeout.connect(lambda: app.quit() if not win.busy and win.history else None)
        t0 = time.perf_counter()

        def start() -> None:
            # As a user would: the picture is loaded (and the live preview playing) before Generate.
            if not args.no_live and not win.preview.label.text().startswith("live "):
                QTimer.singleShot(50, start)
                return
            probe.start()
            win.generate()
            poll.start(20)

        QTimer.singleShot(50, start)
        app.exec()
        probe.stop()
        wall = time.perf_counter() - t0
        win.shutdown()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"live instant preview {'off' if args.no_live else 'on'}; "
          f"model {args.model}, {args.steps} steps, {args.seconds:g} s of video, {len(segments)} segments, "
          f"{wall:.1f} s wall, {os.cpu_count()} CPUs, load average {load[0]:.1f}")
    print(f"UI-thread gaps over {len(probe.gaps)} ticks of a {probe.interval_ms} ms timer: "
          f"worst {probe.worst_ms:.1f} ms, p99.9 {probe.percentile_ms(99.9):.1f} ms, "
          f"p99 {probe.percentile_ms(99):.1f} ms")
    print(f"UI thread's own CPU time: {probe.cpu_in_worst_gap_ms():.1f} ms within the worst gap, "
          f"at most {probe.worst_busy_ms:.1f} ms in any gap (the rest of a gap is waiting for a CPU or the GIL)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
