"""UI-thread responsiveness probe: a fast timer on the UI thread records the gaps between its ticks.

A gap much longer than the interval means the UI thread was busy (or starved) for that long; the
worst gap while generating is what a user feels as a frozen window. The UI thread's own CPU time in
each gap (``time.thread_time``) tells the two apart: a long gap with little CPU time is the OS or
the GIL keeping the thread waiting (an overloaded machine), a long gap full of CPU time is our code
blocking the UI.
"""

from __future__ import annotations

import time

from PySide6.QtCore import QObject, Qt, QTimer


class LatencyProbe(QObject):
    def __init__(self, interval_ms: int = 5, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.interval_ms = interval_ms
        self.timer = QTimer(self)
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self.gaps: list[float] = []
        self.cpu: list[float] = []  # the UI thread's CPU milliseconds within each gap
        self._last: float | None = None
        self._last_cpu = 0.0

    def start(self) -> None:
        self.gaps.clear()
        self.cpu.clear()
        self._last = time.perf_counter()
        self._last_cpu = time.thread_time()
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    def _tick(self) -> None:
        now, cpu = time.perf_counter(), time.thread_time()
        if self._last is not None:
            self.gaps.append((now - self._last) * 1000.0)
            self.cpu.append((cpu - self._last_cpu) * 1000.0)
        self._last, self._last_cpu = now, cpu

    @property
    def worst_ms(self) -> float:
        return max(self.gaps, default=0.0)

    @property
    def worst_busy_ms(self) -> float:
        """The most CPU time the UI thread spent in one gap (its own blocking work)."""
        return max(self.cpu, default=0.0)

    def cpu_in_worst_gap_ms(self) -> float:
        return self.cpu[self.gaps.index(self.worst_ms)] if self.gaps else 0.0

    def percentile_ms(self, q: float) -> float:
        if not self.gaps:
            return 0.0
        s = sorted(self.gaps)
        return s[min(len(s) - 1, int(q / 100 * len(s)))]
