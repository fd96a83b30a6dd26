"""The engine worker: one long-lived QThread that owns the Synthesizer and renders queued jobs.

Threading model (STYLE.md, napari-style):

- The GUI thread owns the project and the `RenderService`; the service builds frozen
  `RenderJob` snapshots (line id, revision, `SynthesisRequest`, cache key) in the GUI thread and
  keeps them in its locked priority queue (selected lines, then near the playhead, then the rest).
- The worker thread loops: wait for work, ``service.run_next(..., apply=False)``, and send each
  `JobOutcome` back through a queued signal. The GUI thread applies it with `service.apply`,
  which drops outcomes whose revision went stale.
- The Synthesizer is created lazily, inside the worker thread, by the factory it was given; it is
  loaded once and kept.
- Cancellation is a `threading.Event` set directly from the GUI thread; the engine polls it
  through ``should_stop`` once per decoding/Euler step and raises `RenderCancelled`.
- Progress goes out through a plain callback, throttled, as a queued signal.
- Every error is caught and reported (`job_failed` with a short message and the traceback); the
  worker keeps running.
- On quit: cancel, quit the thread's event loop, wait.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from PySide6 import QtCore

from dubstudio.core.errors import DubStudioError

logger = logging.getLogger(__name__)

# Progress signals are sent at most this often (seconds): the engine reports every step.
_PROGRESS_INTERVAL_S = 0.05

#: How long the worker blocks waiting for work before checking for tasks and quit (seconds).
_POLL_S = 0.05


@dataclass(frozen=True)
class TaskJob:
    """Other engine work (voice analysis, text-to-emotion): ``func(synthesizer)`` in the thread.

    Attributes:
        name: Echoed with the result.
        func: Called in the worker thread with the loaded synthesizer (None when
            ``needs_model`` is False); returns the payload.
        needs_model: Whether the synthesizer must be loaded first.
    """

    name: str
    func: Callable[[Any], Any]
    needs_model: bool = True


SynthesizerFactory = Callable[[], Any]


class EngineWorker(QtCore.QObject):
    """Runs the render service's jobs and engine tasks on its own thread.

    Args:
        synthesizer_factory: Builds the Synthesizer; called once, lazily, inside the thread.

    Signals:
        model_loading(): the synthesizer is being built.
        model_loaded(str): it is ready; the argument describes model and device.
        model_failed(str, str): it could not be built (message, details).
        job_event(str, object): the service's ``started`` / ``cached`` / ``superseded`` /
            ``cancelled`` / ``failed`` / ``finished`` event and its `RenderJob`.
        job_progress(object, float, str): job, fraction, stage (throttled).
        outcome_ready(object): a `JobOutcome` to apply in the GUI thread.
        task_finished(str, object): a `TaskJob` name and its payload (or the exception).
        idle(): the queue ran empty.
    """

    model_loading = QtCore.Signal()
    model_loaded = QtCore.Signal(str)
    model_failed = QtCore.Signal(str, str)
    job_event = QtCore.Signal(str, object)
    job_progress = QtCore.Signal(object, float, str)
    outcome_ready = QtCore.Signal(object)
    task_finished = QtCore.Signal(str, object)
    idle = QtCore.Signal()

    def __init__(self, synthesizer_factory: SynthesizerFactory) -> None:
        super().__init__()
        self._factory = synthesizer_factory
        self.synthesizer: Any = None
        self._service_lock = threading.Lock()
        self._service: Any = None
        self._tasks: list[TaskJob] = []
        #: Set from the GUI thread to end the loop (on quit).
        self.quit_event = threading.Event()
        #: Set from the GUI thread to stop everything now (the "Stop" button); cleared on the
        #: next request.
        self.stop_event = threading.Event()
        #: Set after every outcome is emitted (lets tests wait without spinning the event loop).
        self.outcome_emitted = threading.Event()
        self._last_progress = 0.0
        self._was_busy = False
        self._current_job: Any = None

    # -- GUI thread -----------------------------------------------------------------------------

    def set_service(self, service: Any) -> None:
        """Render from ``service`` from now on (None: nothing to render)."""
        with self._service_lock:
            self._service = service
        if service is not None:
            service.listener = self._on_service_event

    def add_task(self, task: TaskJob) -> None:
        """Run ``task`` before the next render."""
        with self._service_lock:
            self._tasks.append(task)

    # -- worker thread ---------------------------------------------------------------------------

    @QtCore.Slot()
    def run(self) -> None:
        """The worker loop (runs in the worker thread until `quit_event` is set)."""
        while not self.quit_event.is_set():
            with self._service_lock:
                task = self._tasks.pop(0) if self._tasks else None
                service = self._service
            if task is not None:
                self._run_task(task)
                continue
            if service is None or not service.wait_for_work(_POLL_S):
                if self._was_busy:
                    self._was_busy = False
                    self.idle.emit()
                if service is None:
                    self.quit_event.wait(_POLL_S)
                continue
            self._was_busy = True
            synth = self._ensure_model()
            if synth is None:
                service.cancel_all()
                continue
            try:
                outcomes = service.run_next(
                    synth,
                    on_progress=self._progress,
                    should_stop=self.should_stop,
                    apply=False,
                )
            except Exception:  # run_next reports per-job errors itself; this is a bug guard
                logger.exception("render loop error")
                self.job_event.emit("failed", None)
                continue
            for outcome in outcomes:
                self.outcome_ready.emit(outcome)
                self.outcome_emitted.set()

    def should_stop(self) -> bool:
        """Whether the engine should stop now (the Stop button or quitting); any thread."""
        return self.stop_event.is_set() or self.quit_event.is_set()

    def _on_service_event(self, event: str, job: Any, _progress: Any) -> None:
        if event == "progress":
            return  # sent, throttled, by _progress
        if event == "started":
            self._current_job = job
        self.job_event.emit(event, job)

    def _progress(self, fraction: float, stage: str) -> None:
        now = time.monotonic()
        if now - self._last_progress >= _PROGRESS_INTERVAL_S or fraction >= 1.0:
            self._last_progress = now
            self.job_progress.emit(self._current_job, float(fraction), stage)

    def _ensure_model(self) -> Any:
        if self.synthesizer is None:
            self.model_loading.emit()
            started = time.perf_counter()
            #: The thread the model was built on (tests check it is not the GUI thread).
            self.model_thread_id = threading.get_ident()
            try:
                self.synthesizer = self._factory()
            except Exception as exc:
                message = str(exc) if isinstance(exc, DubStudioError) else repr(exc)
                logger.error("model could not be loaded: %s", message)
                self.model_failed.emit(message, traceback.format_exc())
                return None
            logger.info("model loaded in %.1f s", time.perf_counter() - started)
            self.model_loaded.emit(describe_synthesizer(self.synthesizer))
        return self.synthesizer

    def _run_task(self, task: TaskJob) -> None:
        try:
            synth = self._ensure_model() if task.needs_model else None
            if task.needs_model and synth is None:
                raise DubStudioError("The model is not loaded; see the status bar.")
            payload = task.func(synth)
        except Exception as exc:  # reported, never fatal
            logger.warning("task %s failed: %s", task.name, exc)
            payload = exc
        self.task_finished.emit(task.name, payload)


def describe_synthesizer(synth: Any) -> str:
    """``"<bundle name> on <device>"`` for the status bar."""
    bundle = getattr(synth, "bundle", None)
    name = getattr(bundle, "name", type(synth).__name__)
    device = getattr(synth, "device", "cpu")
    return f"{name} on {device}"


class EngineThread(QtCore.QObject):
    """Owns the long-lived QThread and the `EngineWorker` on it; the GUI talks to this object."""

    #: Every engine thread ever started (weakly); tests check none is left running.
    instances: ClassVar[weakref.WeakSet[EngineThread]] = weakref.WeakSet()

    def __init__(
        self, synthesizer_factory: SynthesizerFactory, parent: QtCore.QObject | None = None
    ) -> None:
        super().__init__(parent)
        self.qthread = QtCore.QThread()
        self.qthread.setObjectName("dubstudio-engine")
        self.worker = EngineWorker(synthesizer_factory)
        self.worker.moveToThread(self.qthread)
        self.qthread.started.connect(self.worker.run)
        self.qthread.start()
        EngineThread.instances.add(self)

    def stop_all(self, service: Any) -> None:
        """Empty the queue and stop the running job (returns at once; the engine stops within
        one step)."""
        if service is not None:
            service.cancel_all()

    def shutdown(self, timeout_ms: int = 60000) -> bool:
        """Cancel, quit and wait for the thread; returns whether it stopped."""
        self.worker.quit_event.set()
        self.worker.stop_event.set()
        with self.worker._service_lock:
            service = self.worker._service
        if service is not None:
            service.cancel_all()
        self.qthread.quit()
        stopped = bool(self.qthread.wait(timeout_ms))
        if not stopped:
            logger.error("the engine thread did not stop within %d ms", timeout_ms)
        return stopped
