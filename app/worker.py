"""Background work for the UI: the long-lived generation worker and a small task runner.

Both follow the superqt/napari pattern: the work catches every exception and reports it as a
signal, cancellation is a flag the work checks, and results reach the UI thread through queued
signals only (the Anki pattern: one place posts results back).
"""

from __future__ import annotations

import traceback
from collections.abc import Callable

from PySide6.QtCore import QObject, QRunnable, QThread, QThreadPool, Signal, Slot

from app.jobs import GenerationJob, JobState, run_job
from models.engines.registry import ENGINES


def user_message(exc: BaseException) -> str:
    """What to tell the user about ``exc``: our own errors as they are, out-of-memory with a way out."""
    from models.errors import UserError
    from models.media import MediaError

    text = str(exc) or type(exc).__name__
    if isinstance(exc, UserError | MediaError):
        return text
    low = text.lower()
    if isinstance(exc, MemoryError) or "out of memory" in low:
        return ("Out of memory. Lower the resolution or the segment length, choose bfloat16 precision, "
                "or close other programs using the GPU. Finished segments are kept.\n\n" + text)
    return f"Generation failed: {type(exc).__name__}: {text}"


class GenerationWorker(QObject):
    """Lives on its own QThread for the whole session and keeps the engines (and their models) loaded.

    ``request`` (a queued signal from the UI) starts a run; ``cancel()`` may be called from any
    thread and stops the run before its next sampling step.
    """

    status = Signal(str)
    progress = Signal(int, int, int, int, float)  # segment, n_segments, step, steps, eta seconds
    segment = Signal(int, object, int, object)  # segment, frames (T, H, W, 3) uint8, start frame, audio
    finished = Signal(object)  # JobOutcome
    failed = Signal(str, str, object)  # message, traceback, run_dir (finished segments stay there)
    busy_changed = Signal(bool)
    request = Signal(object)  # GenerationJob; emitted by the UI, runs on the worker thread

    def __init__(self, engine_factories: dict[str, Callable] | None = None) -> None:
        super().__init__()
        self._factories = dict(engine_factories or {spec.name: spec.factory for spec in ENGINES.values()})
        self._engines: dict[str, object] = {}
        self._state: JobState | None = None
        self.request.connect(self._run)

    def cancel(self) -> None:
        state = self._state
        if state is not None:
            state.cancel()

    def engine(self, name: str):
        if name not in self._engines:
            if name not in self._factories:
                from models.errors import UserError

                raise UserError(f"unknown engine '{name}'")
            self._engines[name] = self._factories[name]()
        return self._engines[name]

    @Slot(object)
    def _run(self, job: GenerationJob) -> None:
        state = JobState()
        state.on_status = self.status.emit
        state.on_step = self.progress.emit
        state.on_segment = self.segment.emit
        self._state = state
        self.busy_changed.emit(True)
        try:
            outcome = run_job(self.engine(job.engine), job, state)
        except BaseException as e:  # every failure becomes a message; the thread lives on
            self.failed.emit(user_message(e), traceback.format_exc(), job.run_dir)
        else:
            self.finished.emit(outcome)
        finally:
            self._state = None
            self.busy_changed.emit(False)

    @Slot()
    def release(self) -> None:
        for e in self._engines.values():
            e.release()
        self._engines.clear()


class WorkerHost(QObject):
    """Owns the generation worker's thread: start once, stop (cancel + quit + wait) on close."""

    def __init__(self, worker: GenerationWorker, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.worker = worker
        self.thread = QThread()
        self.thread.setObjectName("generation-worker")
        worker.moveToThread(self.thread)
        self.thread.start()

    def stop(self, timeout_ms: int = 30000) -> bool:
        if not self.thread.isRunning():
            return True
        self.worker.cancel()
        self.thread.quit()
        return self.thread.wait(timeout_ms)


# ------------------------------------------------------------------------------------------------
# Short tasks (analyse an image, decode audio, extract a video's poses, system check, export)


class _Signals(QObject):
    done = Signal(int, object, object, str)  # task id, result, exception, traceback
    progress = Signal(int, object)


class _Runnable(QRunnable):
    def __init__(self, tid: int, fn: Callable, signals: _Signals, with_progress: bool) -> None:
        super().__init__()
        self.tid, self.fn, self.signals, self.with_progress = tid, fn, signals, with_progress
        self.setAutoDelete(True)

    def run(self) -> None:
        try:
            if self.with_progress:
                res = self.fn(lambda value: self.signals.progress.emit(self.tid, value))
            else:
                res = self.fn()
        except BaseException as e:
            self.signals.done.emit(self.tid, None, e, traceback.format_exc())
        else:
            self.signals.done.emit(self.tid, res, None, "")


class TaskRunner(QObject):
    """Run short functions on a private thread pool; callbacks run on the UI thread."""

    def __init__(self, parent: QObject | None = None, max_threads: int = 2) -> None:
        super().__init__(parent)
        self.pool = QThreadPool()
        self.pool.setMaxThreadCount(max_threads)
        self._signals = _Signals()
        self._signals.done.connect(self._done)
        self._signals.progress.connect(self._progress)
        self._next = 0
        self._callbacks: dict[int, tuple] = {}

    def submit(self, fn: Callable, on_done: Callable | None = None, on_error: Callable | None = None,
               on_progress: Callable | None = None) -> int:
        """``fn()`` (or ``fn(report)`` when ``on_progress`` is given) on the pool."""
        self._next += 1
        tid = self._next
        self._callbacks[tid] = (on_done, on_error, on_progress)
        self.pool.start(_Runnable(tid, fn, self._signals, on_progress is not None))
        return tid

    def pending(self) -> int:
        return len(self._callbacks)

    @Slot(int, object)
    def _progress(self, tid: int, value) -> None:
        cbs = self._callbacks.get(tid)
        if cbs and cbs[2]:
            cbs[2](value)

    @Slot(int, object, object, str)
    def _done(self, tid: int, result, exc, tb: str) -> None:
        on_done, on_error, _ = self._callbacks.pop(tid, (None, None, None))
        if exc is not None:
            if on_error:
                on_error(exc, tb)
        elif on_done:
            on_done(result)

    def shutdown(self, timeout_ms: int = 30000) -> bool:
        self.pool.clear()
        ok = self.pool.waitForDone(timeout_ms)
        self._callbacks.clear()
        return ok
