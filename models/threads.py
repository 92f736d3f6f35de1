"""Torch's CPU threads when generation shares the machine with other work.

The problem (issue 20): torch starts one OpenMP thread per core, and every operator splits its
work evenly between them and waits at a barrier for the slowest. When another process keeps one of
two cores busy, the thread that shares that core gets a time slice only every few milliseconds, so
each of the thousands of small parallel regions of a sampling step waits for it: a segment took 12x
longer (1.8 s alone, 21.4 s beside one busy loop), where its fair share would be 2x.

The policy, in three parts:

1. **Threads = free cores.** ``ThreadGovernor`` measures how many cores *other* processes keep busy
   -- all cores' busy time from ``/proc/stat`` minus this process's own CPU time (``os.times``)
   over the last interval -- and gives torch the cores that are left:
   ``max(1, cores - reserve - round(other))``, where a competitor counts as a core from
   ``OTHER_CORE_AT`` of one. It is re-evaluated at most once per ``interval`` seconds from the
   sampler's step callback, so a browser or a second job that starts or stops mid-run is followed
   within a step or two. ``reserve`` keeps cores for work inside this process: the app keeps one
   for its UI and live preview (the preview renders on a thread of its own; the generator gets
   the rest). Without ``/proc/stat`` (macOS, Windows) it falls back to ``cores - reserve``.
2. **Spinning waits stay.** OpenMP's passive wait (``OMP_WAIT_POLICY=PASSIVE``) was measured
   and not adopted: on the 2-core CPU (toon-s, 2 segments, ``benchmarks/threads.py``) it made a
   segment 1.5x slower alone (3.4-3.7 s against 2.4 s) for no gain beside a busy core once the
   governor has taken the busy core's thread away (governor with spinning waits: 2.36 s alone,
   4.64 s busy, 1.97x; default: 2.43 s alone, 15.7 s busy, 6.5x). The benchmark still offers it
   (``passive-all``, ``governor-passive``) for other machines.
3. **One inter-op thread.** Generation runs one operator at a time; extra inter-op threads only
   add idle threads to the pool.

``benchmarks/threads.py`` measures a segment alone and beside a busy core for each of these
choices (and torch's default), so the policy can be checked on any machine.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

OTHER_CORE_AT = 0.4  # other processes' load (in cores) from which a core counts as taken
INTERVAL = 1.0  # seconds between re-evaluations
MIN_WINDOW = 0.2  # seconds: a shorter measurement window is too coarse (10 ms ticks)


def available_cores() -> int:
    """Cores this process may run on (the affinity mask: containers and ``taskset`` limit it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def threads_for(cores: int, other_load: float | None, reserve: int = 0) -> int:
    """Torch threads for ``cores`` cores of which other processes keep ``other_load`` busy."""
    free = cores - max(0, reserve)
    if other_load is not None and other_load > 0:
        free -= int(other_load + (1.0 - OTHER_CORE_AT))
    return max(1, free)


class CpuLoadMeter:
    """How many cores other processes kept busy since the previous ``sample()`` (None: unknown)."""

    def __init__(self, stat_path: str = "/proc/stat", own_cpu: Callable[[], float] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stat_path = stat_path
        # This process and its finished children (the per-segment ffmpeg encoders) are not "other".
        self.own_cpu = own_cpu or (lambda: sum(os.times()[:4]))
        self.clock = clock
        try:
            self.tick = float(os.sysconf("SC_CLK_TCK"))
        except (AttributeError, ValueError, OSError):
            self.tick = 100.0
        self._last = self._read()

    def _busy_seconds(self) -> float | None:
        try:
            with open(self.stat_path) as f:
                parts = f.readline().split()
        except OSError:
            return None
        if not parts or parts[0] != "cpu":
            return None
        v = [float(x) for x in parts[1:9]]  # user nice system idle iowait irq softirq steal
        v += [0.0] * (8 - len(v))
        return (v[0] + v[1] + v[2] + v[5] + v[6]) / self.tick

    def _read(self) -> tuple[float, float | None, float]:
        return self.clock(), self._busy_seconds(), self.own_cpu()

    def window(self) -> float:
        return self.clock() - self._last[0]

    def sample(self) -> float | None:
        now = self._read()
        (t0, b0, o0), (t1, b1, o1) = self._last, now
        self._last = now
        if b0 is None or b1 is None or t1 - t0 <= 0:
            return None
        return max(0.0, ((b1 - b0) - (o1 - o0)) / (t1 - t0))


@dataclass
class ThreadGovernor:
    """Keeps torch's intra-op threads at the free cores (see the module docstring).

    Create it early (the window before the first decision then covers model loading), call
    ``apply()`` before generating and ``tick()`` from the step callback. ``history`` holds
    ``(seconds since start, other processes' load, threads)`` per decision.
    """

    reserve: int = 0
    interval: float = INTERVAL
    cores: int = field(default_factory=available_cores)
    meter: CpuLoadMeter | None = None
    set_threads: Callable[[int], None] | None = None
    log: Callable[[str], None] | None = None
    threads: int = 0
    history: list[tuple[float, float | None, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.meter = self.meter or CpuLoadMeter()
        self._t0 = self.meter.clock()
        self._last_decision = -float("inf")

    def _set(self, n: int) -> None:
        if self.set_threads is not None:
            self.set_threads(n)
            return
        import torch

        torch.set_num_threads(n)

    def apply(self) -> int:
        """Decide now (from the load seen since the governor was made) and set the threads; waits
        for the rest of ``MIN_WINDOW`` (0.2 s at most, once) when the governor is younger than that."""
        left = MIN_WINDOW - self.meter.window()
        if left > 0:
            time.sleep(left)
        return self._decide(self.meter.sample(), first=True)

    def tick(self) -> int:
        """Re-decide when ``interval`` seconds have passed; cheap otherwise (one clock read)."""
        if self.meter.window() < self.interval:
            return self.threads
        return self._decide(self.meter.sample())

    def _decide(self, other: float | None, first: bool = False) -> int:
        n = threads_for(self.cores, other, self.reserve)
        now = self.meter.clock() - self._t0
        self.history.append((now, other, n))
        if n != self.threads:
            self._set(n)
            if self.log is not None and (first or self.threads):
                load = "" if other is None else f"; other processes use {other:.1f} of them"
                self.log(f"cpu: {n} thread{'s' if n > 1 else ''} for {self.cores} core{'s' if self.cores > 1 else ''}"
                         f"{load}")
            self.threads = n
        return n


def single_interop_thread() -> bool:
    """One inter-op thread (best effort: torch allows it only before any inter-op work)."""
    import torch

    try:
        if torch.get_num_interop_threads() != 1:
            torch.set_num_interop_threads(1)
        return True
    except RuntimeError:
        return False


class PreviewShare:
    """While the app generates on the CPU beside its live preview: OpenCV (the preview's warps) on
    one thread, so the preview stays on the core the governor leaves it; restored on exit."""

    def __enter__(self) -> PreviewShare:
        import cv2

        self._cv2 = cv2.getNumThreads()
        cv2.setNumThreads(1)
        return self

    def __exit__(self, *exc) -> None:
        import cv2

        cv2.setNumThreads(self._cv2)


def cpu_has_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX). Without it, bf16
    autocast is emulated: measured 35x slower than float32 for face-s's VAE step on an AVX2 EPYC
    (17.6 s against 0.5 s). Where the flags cannot be read, assume it does not."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False
