"""RenderService: what to render, in which order, and where the audio goes (cache, takes).

Jobs are frozen snapshots (`RenderJob`): line id and revision, the full `SynthesisRequest` (text,
voice content hash, emotion, budget, fit mode, seed) and the cache key that binds it to the model
identity. A job never looks at the live project again, so it can cross threads.

Priority (highest first): the lines a person asked for (newest request first); lines in the
visible range or within ``near_seconds`` of the playhead (nearest first, lines ahead of the
playhead before lines behind it); then everything else in time order. A newer revision of a line
replaces its queued job and sets the stop flag of its running job (the engine then raises
`RenderCancelled` within one step).

Threading: the service is thread-agnostic and guards its queue with a lock.

- Single thread (the CLI): ``service.render_pending(synthesizer)`` renders everything and applies
  the takes to the project.
- Editor: the GUI thread owns the project. It creates the service (which subscribes to project
  events and builds jobs there), calls `request`/`set_focus`, and applies results with
  `apply`. The long-lived worker thread loops ``outcome = service.run_next(synth,
  on_progress=..., apply=False)`` and sends each `JobOutcome` to the GUI thread through a queued
  signal; `apply` drops outcomes whose revision went stale. `wait_for_work` blocks the worker
  until a job arrives. Cancellation flags are `threading.Event`s set directly from the GUI thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any, Protocol

import numpy as np

from dubstudio.core.errors import DubStudioError, RenderCancelled, RenderError
from dubstudio.core.model import (
    EmotionSpec,
    LineChanged,
    LinesInserted,
    LinesRemoved,
    Project,
    ProjectChanged,
    ProjectEvent,
    VoiceProfilesChanged,
)
from dubstudio.engine.api import SynthesisRequest, SynthesisResult
from dubstudio.services.cache import CacheEntry, RenderCache
from dubstudio.services.requests import (
    RequestOptions,
    VoiceRefCache,
    derived_seed,
    request_for_line,
)
from dubstudio.services.takes import add_take, find_take, make_take

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[float, str], None]
StopCallback = Callable[[], bool]


class Synthesizer(Protocol):
    """What the service needs from `dubstudio.engine.pipeline.Synthesizer`."""

    @property
    def identity(self) -> str:
        """Content hash of the loaded model bundle."""

    def synthesize(
        self,
        request: SynthesisRequest,
        *,
        on_progress: ProgressCallback | None = None,
        should_stop: StopCallback | None = None,
    ) -> SynthesisResult:
        """Render one request."""


@dataclass(frozen=True)
class RenderJob:
    """A frozen snapshot of one line to render.

    Attributes:
        line_id: The line.
        revision: The line's revision when the job was made.
        request: Everything the engine needs.
        cache_key: Content key (request identity + model identity).
        emotion: The line's emotion spec (stored on the take).
        start_frame: Where the line starts (priority only).
        start_seconds: Same in seconds (priority only).
        voice_key: Voice content hash (jobs of one voice batch together).
        explicit: Asked for by a person (top priority).
        sequence: Order of creation (newer explicit requests win).
    """

    line_id: str
    revision: int
    request: SynthesisRequest
    cache_key: str
    emotion: EmotionSpec
    start_frame: int
    start_seconds: float
    voice_key: str
    explicit: bool = False
    sequence: int = 0

    @property
    def budget_samples(self) -> int | None:
        """The sample budget (None for natural length)."""
        return self.request.target_samples

    @property
    def expected_seconds(self) -> float:
        """Audio seconds the job produces (estimated from the text when natural)."""
        if self.request.target_samples is not None:
            return self.request.target_samples / self.request.sample_rate
        return max(0.5, len(self.request.text) / 15.0)


@dataclass(frozen=True)
class JobOutcome:
    """The result of running one job.

    Attributes:
        job: The job.
        status: ``"rendered"``, ``"cached"``, ``"cancelled"`` or ``"failed"``.
        n_samples: Samples of the audio (0 unless rendered/cached).
        sha256: Hash of the cached audio file (the take hash).
        meta: Engine numbers (tokens, mel frames, stage seconds).
        error: Message for ``failed``.
    """

    job: RenderJob
    status: str
    n_samples: int = 0
    sha256: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    error: str = ""


@dataclass
class RenderProgress:
    """Overall progress since the last `reset_progress`.

    Attributes:
        lines_total: Jobs planned.
        lines_done: Jobs finished (rendered, cached or failed).
        cache_hits: Jobs served from the cache.
        failed: Jobs that failed.
        audio_seconds_total: Audio seconds planned.
        audio_seconds_done: Audio seconds finished.
        render_seconds: Wall time spent in the engine.
        current_fraction: Progress of the running job (0..1).
    """

    lines_total: int = 0
    lines_done: int = 0
    cache_hits: int = 0
    failed: int = 0
    audio_seconds_total: float = 0.0
    audio_seconds_done: float = 0.0
    rendered_audio_seconds: float = 0.0
    render_seconds: float = 0.0
    current_fraction: float = 0.0

    @property
    def eta_seconds(self) -> float | None:
        """Estimated seconds left, from the engine's speed so far (None before any render)."""
        if self.rendered_audio_seconds <= 0:
            return None
        speed = self.render_seconds / self.rendered_audio_seconds
        left = max(0.0, self.audio_seconds_total - self.audio_seconds_done)
        return left * speed

    @property
    def fraction(self) -> float:
        """Overall fraction of planned audio seconds done."""
        if self.audio_seconds_total <= 0:
            return 1.0 if self.lines_done >= self.lines_total else 0.0
        return min(1.0, self.audio_seconds_done / self.audio_seconds_total)


JobListener = Callable[[str, RenderJob, RenderProgress], None]


class RenderService:
    """The render queue of one project, with its cache.

    Args:
        project: The project (read on the thread that calls `plan`, `request` and `apply`).
        cache: Where audio is stored.
        model_identity: `Synthesizer.identity` of the model that will render.
        options: Settings that are not per line (default voice, emotion override, steps).
        near_seconds: Lines this close to the playhead are rendered before the rest.
        batch_size: Most lines of one voice given to ``synthesize_batch`` at once.
        listener: Called as ``listener(event, job, progress)`` with event ``"started"``,
            ``"progress"``, ``"finished"``, ``"cached"``, ``"cancelled"``, ``"failed"``,
            ``"superseded"``; keep it cheap (it runs on the rendering thread).
        watch: Subscribe to the project's events and re-plan changed lines automatically.
    """

    def __init__(
        self,
        project: Project,
        cache: RenderCache,
        *,
        model_identity: str,
        options: RequestOptions | None = None,
        near_seconds: float = 30.0,
        batch_size: int = 1,
        listener: JobListener | None = None,
        watch: bool = True,
    ) -> None:
        self.project = project
        self.cache = cache
        self.model_identity = model_identity
        self.options = options or RequestOptions()
        self.near_seconds = near_seconds
        self.batch_size = max(1, batch_size)
        self.listener = listener
        self.progress = RenderProgress()
        #: Line id -> message for lines that cannot be rendered (no voice, no text...).
        self.problems: dict[str, str] = {}
        self._refs = VoiceRefCache()
        self._lock = threading.Condition()
        self._pending: dict[str, RenderJob] = {}
        self._running: dict[str, tuple[RenderJob, threading.Event]] = {}
        self._sequence = 0
        self._playhead_s: float | None = None
        self._visible: tuple[float, float] | None = None
        self._latest_revision: dict[str, int] = {}
        self._protected_keys: set[str] = set()
        self._refresh_protected()
        self._unsubscribe: Callable[[], None] | None = (
            project.subscribe(self._on_project_event) if watch else None
        )

    def close(self) -> None:
        """Stop watching the project and cancel running jobs."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.cancel_all()

    # -- planning (project thread) -------------------------------------------------------------

    def job_for_line(
        self, line_id: str, *, seed: int | None = None, explicit: bool = False
    ) -> RenderJob:
        """A frozen job for the line as it is now.

        Args:
            line_id: The line.
            seed: Seed of the take; default: the line's seed, else its selected take's, else one
                derived from its id.
            explicit: Top priority.

        Raises:
            ValidationError: The line cannot be rendered (no text, no voice).
        """
        line = self.project.line(line_id)
        if seed is None:
            active = line.active_take
            seed = (
                line.seed
                if line.seed is not None
                else (active.seed if active is not None else derived_seed(line.id))
            )
        request = request_for_line(
            self.project, line, seed=seed, options=self.options, refs=self._refs
        )
        self._sequence += 1
        return RenderJob(
            line_id=line.id,
            revision=line.revision,
            request=request,
            cache_key=request.cache_key(self.model_identity),
            emotion=self.options.emotion_override or line.emotion,
            start_frame=line.start_frame,
            start_seconds=float(Fraction(line.start_frame) / self.project.fps),
            voice_key=request.voice.content_hash,
            explicit=explicit,
            sequence=self._sequence,
        )

    def is_current(self, line_id: str) -> bool:
        """Whether the line's selected take matches the line as it is now and is in the cache."""
        line = self.project.line(line_id)
        active = line.active_take
        if active is None or not line.speech_text:
            return active is not None
        if (
            line.seed is not None
            and line.seed != active.seed
            and active.line_revision != line.revision
        ):
            # The line's seed was set after this take: the seed the person chose wins. (A take
            # asked for with another seed at this very revision, a "new take", stays selected.)
            return False
        try:
            job = self.job_for_line(line_id, seed=active.seed)
        except DubStudioError:
            return False
        return job.cache_key == active.cache_key and job.cache_key in self.cache

    def plan(self, line_ids: Iterable[str] | None = None) -> int:
        """Queue every line (or those given) whose selected take is missing or out of date.

        Lines already current are left alone; lines whose audio is in the cache are served from
        it without the engine when the job runs. Lines without text are skipped; lines that
        cannot be rendered are listed in `problems`.

        Returns:
            Number of jobs queued.
        """
        ids = [line.id for line in self.project.lines] if line_ids is None else list(line_ids)
        queued = 0
        for line_id in ids:
            if not self.project.has_line(line_id):
                continue
            line = self.project.line(line_id)
            if not line.speech_text:
                self._drop(line_id)
                continue
            if self.is_current(line_id):
                self._drop(line_id)
                continue
            queued += self._enqueue(line_id, explicit=False)
        if line_ids is None:
            self._refresh_protected()
        else:
            # Cheap incremental update (an edit re-plans one line); stale extra keys only
            # protect a little more than needed until the next full plan.
            keys = {
                take.cache_key
                for line_id in ids
                if self.project.has_line(line_id)
                and (take := self.project.line(line_id).active_take) is not None
            }
            with self._lock:
                self._protected_keys |= keys
        return queued

    def request(self, line_ids: Sequence[str], *, new_take: bool = False) -> int:
        """A person asked for these lines: queue them ahead of everything.

        Args:
            line_ids: The lines, most important first.
            new_take: Render another take with a fresh seed even if the line is current.

        Returns:
            Number of jobs queued.
        """
        queued = 0
        for line_id in reversed(list(line_ids)):
            seed = None
            if new_take:
                line = self.project.line(line_id)
                used = {t.seed for t in line.takes}
                seed = derived_seed(f"{line.id}/{len(line.takes)}")
                while seed in used:
                    seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
            queued += self._enqueue(line_id, explicit=True, seed=seed)
        return queued

    def _enqueue(self, line_id: str, *, explicit: bool, seed: int | None = None) -> int:
        try:
            job = self.job_for_line(line_id, seed=seed, explicit=explicit)
        except DubStudioError as exc:
            self.problems[line_id] = str(exc)
            self._drop(line_id)
            return 0
        self.problems.pop(line_id, None)
        with self._lock:
            self._latest_revision[line_id] = job.revision
            old = self._pending.get(line_id)
            if old is not None:
                self.progress.lines_total -= 1
                self.progress.audio_seconds_total -= old.expected_seconds
                if old.explicit and not explicit:
                    job = _with_priority(job, explicit=True, sequence=old.sequence)
            running = self._running.get(line_id)
            if running is not None and running[0].cache_key != job.cache_key:
                running[1].set()  # superseded: the engine stops within one step
            self._pending[line_id] = job
            self.progress.lines_total += 1
            self.progress.audio_seconds_total += job.expected_seconds
            self._lock.notify_all()
        return 1

    def _drop(self, line_id: str) -> None:
        with self._lock:
            old = self._pending.pop(line_id, None)
            if old is not None:
                self.progress.lines_total -= 1
                self.progress.audio_seconds_total -= old.expected_seconds
            running = self._running.get(line_id)
            if running is not None:
                running[1].set()

    def _on_project_event(self, event: ProjectEvent) -> None:
        if isinstance(event, LineChanged):
            if "revision" in event.fields and self.project.has_line(event.line_id):
                self._latest_revision[event.line_id] = self.project.line(event.line_id).revision
                self.plan([event.line_id])
        elif isinstance(event, LinesInserted):
            lines = self.project.lines
            self.plan([lines[i].id for i in event.indices if i < len(lines)])
        elif isinstance(event, LinesRemoved):
            for line_id in event.ids:
                self._drop(line_id)
                self._latest_revision.pop(line_id, None)
        elif isinstance(event, VoiceProfilesChanged):
            pass  # affected lines get their own LineChanged with a new revision
        elif isinstance(event, ProjectChanged) and {"fps", "sample_rate"} & event.fields:
            self.plan()

    def set_focus(
        self, playhead_seconds: float | None, visible: tuple[float, float] | None = None
    ) -> None:
        """Where the person is looking: lines near here render first."""
        with self._lock:
            self._playhead_s = playhead_seconds
            self._visible = visible

    def cancel_all(self) -> None:
        """Empty the queue and stop running jobs."""
        with self._lock:
            self._pending.clear()
            for _, flag in self._running.values():
                flag.set()
            self._lock.notify_all()

    def pending(self) -> list[RenderJob]:
        """Queued jobs in the order they would run."""
        with self._lock:
            return sorted(self._pending.values(), key=self._priority)

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)

    def reset_progress(self) -> None:
        """Start counting progress afresh (queued jobs stay counted)."""
        with self._lock:
            pending = list(self._pending.values())
            self.progress = RenderProgress(
                lines_total=len(pending),
                audio_seconds_total=sum(j.expected_seconds for j in pending),
            )

    # -- running (any thread) ------------------------------------------------------------------

    def _priority(self, job: RenderJob) -> tuple[int, float, float]:
        if job.explicit:
            return (0, -job.sequence, 0.0)
        start = job.start_seconds
        near = False
        distance = 0.0
        if self._visible is not None and self._visible[0] <= start <= self._visible[1]:
            near = True
        if self._playhead_s is not None:
            delta = start - self._playhead_s
            # Playback moves forward: what comes next matters more than what was just heard.
            distance = delta if delta >= 0 else -2.0 * delta
            near = near or abs(delta) <= self.near_seconds
        if near:
            return (1, distance, start)
        return (2, start, 0.0)

    def next_batch(self) -> list[RenderJob]:
        """Take the most urgent job, plus up to ``batch_size - 1`` queued jobs of its voice."""
        with self._lock:
            if not self._pending:
                return []
            ordered = sorted(self._pending.values(), key=self._priority)
            first = ordered[0]
            batch = [first]
            for job in ordered[1:]:
                if len(batch) >= self.batch_size:
                    break
                if (
                    job.voice_key == first.voice_key
                    and job.request.duration_mode == first.request.duration_mode
                ):
                    batch.append(job)
            for job in batch:
                del self._pending[job.line_id]
                self._running[job.line_id] = (job, threading.Event())
            return batch

    def wait_for_work(self, timeout: float | None = None) -> bool:
        """Block until a job is queued (or ``timeout`` seconds pass); True when there is one."""
        with self._lock:
            return self._lock.wait_for(lambda: bool(self._pending), timeout)

    def run_next(
        self,
        synthesizer: Synthesizer,
        *,
        on_progress: ProgressCallback | None = None,
        should_stop: StopCallback | None = None,
        apply: bool = True,
    ) -> list[JobOutcome]:
        """Run the most urgent batch: serve it from the cache or render it, store the audio.

        Args:
            synthesizer: The engine.
            on_progress: ``(fraction, stage)`` of the current job.
            should_stop: Global stop (Ctrl-C, quitting); polled by the engine.
            apply: Attach the takes to the project now (only on the project's thread).

        Returns:
            One outcome per job (empty when nothing was queued).
        """
        batch = self.next_batch()
        outcomes: list[JobOutcome] = []
        misses: list[RenderJob] = []
        for job in batch:
            hit = self._serve_from_cache(job)
            if hit is None:
                misses.append(job)
            else:
                outcomes.append(hit)
                if apply:
                    self.apply(hit)
        if len(misses) > 1 and hasattr(synthesizer, "synthesize_batch"):
            if should_stop is not None and should_stop():
                for rest in misses:
                    self._requeue(rest)
                return outcomes
            for outcome in self._run_batch(misses, synthesizer, on_progress, should_stop):
                outcomes.append(outcome)
                if apply:
                    self.apply(outcome)
            return outcomes
        for index, job in enumerate(misses):
            if should_stop is not None and should_stop():
                # Put the rest back: a stop keeps everything for the next run.
                for rest in misses[index:]:
                    self._requeue(rest)
                break
            with self._lock:
                flag = self._running[job.line_id][1]
            outcome = self._run_job(job, synthesizer, flag, on_progress, should_stop)
            outcomes.append(outcome)
            if apply:
                self.apply(outcome)
        return outcomes

    def _requeue(self, job: RenderJob) -> None:
        with self._lock:
            self._running.pop(job.line_id, None)
            self._pending.setdefault(job.line_id, job)

    def _notify(self, event: str, job: RenderJob) -> None:
        if self.listener is not None:
            try:
                self.listener(event, job, self.progress)
            except Exception:  # a broken listener must not kill the worker
                logger.exception("Render listener failed on %s", event)

    def _serve_from_cache(self, job: RenderJob) -> JobOutcome | None:
        """The job's audio from the cache (or adapted from a neighbour budget), else None."""
        entry = self.cache.get(job.cache_key)
        if entry is None:
            entry = self._adapt_neighbour(job)
        if entry is None:
            return None
        outcome = JobOutcome(job, "cached", entry.samples, entry.sha256, entry.meta)
        self._finish(job, outcome, rendered_seconds=0.0, wall=0.0)
        self._notify("cached", job)
        return outcome

    def _adapt_neighbour(self, job: RenderJob) -> CacheEntry | None:
        """Re-use a take whose budget differs by one sample (a cue moved at 29.97 fps).

        At frame rates whose frames are not a whole number of samples, moving a cue can change
        its slot by one sample. The take rendered for the old slot is then padded with one
        silent sample or loses its last one, instead of a full re-render.
        """
        request = job.request
        target = request.target_samples
        if target is None:
            return None
        for delta in (-1, 1):
            if target + delta <= request.lead_in_samples + request.lead_out_samples:
                continue
            neighbour = replace(request, target_samples=target + delta)
            entry = self.cache.get(neighbour.cache_key(self.model_identity))
            if entry is None:
                continue
            audio = np.zeros(target, dtype=np.float32)
            source = entry.audio()
            n = min(target, len(source))
            audio[:n] = source[:n]
            meta = dict(entry.meta)
            meta["adapted_from"] = entry.key
            meta["request"] = request.identity()
            return self.cache.put(
                job.cache_key, audio, entry.sample_rate, meta, protect=self._protected()
            )
        return None

    def _store(self, job: RenderJob, result: SynthesisResult, wall: float) -> JobOutcome:
        if (
            job.request.target_samples is not None
            and len(result.audio) != job.request.target_samples
        ):
            raise RenderError(
                f"The engine returned {len(result.audio)} samples for a budget of "
                f"{job.request.target_samples}."
            )
        meta = {
            "line_id": job.line_id,
            "request": job.request.identity(),
            "model_identity": self.model_identity,
            "tokens": result.tokens,
            "mel_frames": result.mel_frames,
            "natural_tokens": result.natural_tokens,
            "stage_seconds": dict(result.stage_seconds),
        }
        entry = self.cache.put(
            job.cache_key, result.audio, result.sample_rate, meta, protect=self._protected()
        )
        outcome = JobOutcome(job, "rendered", entry.samples, entry.sha256, meta)
        self._finish(job, outcome, rendered_seconds=entry.duration_s, wall=wall)
        self._notify("finished", job)
        return outcome

    def _cancelled(
        self, job: RenderJob, flag: threading.Event, should_stop: StopCallback | None
    ) -> JobOutcome:
        with self._lock:
            self._running.pop(job.line_id, None)
            superseded = flag.is_set() and not (should_stop is not None and should_stop())
            if superseded:
                self.progress.lines_total -= 1
                self.progress.audio_seconds_total -= job.expected_seconds
            else:
                self._pending.setdefault(job.line_id, job)  # keep it for the next run
        self._notify("superseded" if superseded else "cancelled", job)
        return JobOutcome(job, "cancelled")

    def _failed(self, job: RenderJob, exc: Exception) -> JobOutcome:
        message = str(exc) if isinstance(exc, DubStudioError) else f"{type(exc).__name__}: {exc}"
        logger.error("Line %s failed to render: %s", job.line_id, message)
        outcome = JobOutcome(job, "failed", error=message)
        self._finish(job, outcome, rendered_seconds=0.0, wall=0.0)
        self._notify("failed", job)
        return outcome

    def _progress_callback(
        self, jobs: Sequence[RenderJob], on_progress: ProgressCallback | None
    ) -> ProgressCallback:
        def progress(fraction: float, stage: str) -> None:
            self.progress.current_fraction = fraction
            if on_progress is not None:
                on_progress(fraction, stage)
            for job in jobs:
                self._notify("progress", job)

        return progress

    def _run_job(
        self,
        job: RenderJob,
        synthesizer: Synthesizer,
        flag: threading.Event,
        on_progress: ProgressCallback | None,
        should_stop: StopCallback | None,
    ) -> JobOutcome:
        self._notify("started", job)

        def stop() -> bool:
            return flag.is_set() or (should_stop is not None and should_stop())

        try:
            began = time.perf_counter()
            result = synthesizer.synthesize(
                job.request,
                on_progress=self._progress_callback([job], on_progress),
                should_stop=stop,
            )
            return self._store(job, result, time.perf_counter() - began)
        except RenderCancelled:
            return self._cancelled(job, flag, should_stop)
        except Exception as exc:  # the worker never dies: a failed line is reported
            return self._failed(job, exc)

    def _run_batch(
        self,
        jobs: list[RenderJob],
        synthesizer: Synthesizer,
        on_progress: ProgressCallback | None,
        should_stop: StopCallback | None,
    ) -> list[JobOutcome]:
        """Render several jobs of one voice in one engine call.

        The batch stops when every job in it was superseded (or on the global stop); a job
        superseded while its batch-mates continue is rendered anyway and its result dropped as
        stale by `apply` (its audio is still cached under its own key).
        """
        with self._lock:
            flags = [self._running[job.line_id][1] for job in jobs]
        for job in jobs:
            self._notify("started", job)

        def stop() -> bool:
            return all(f.is_set() for f in flags) or (should_stop is not None and should_stop())

        try:
            began = time.perf_counter()
            results = synthesizer.synthesize_batch(  # type: ignore[attr-defined]
                [job.request for job in jobs],
                on_progress=self._progress_callback(jobs, on_progress),
                should_stop=stop,
            )
            wall = (time.perf_counter() - began) / len(jobs)
        except RenderCancelled:
            return [self._cancelled(j, f, should_stop) for j, f in zip(jobs, flags, strict=True)]
        except Exception as exc:
            return [self._failed(job, exc) for job in jobs]
        outcomes = []
        for job, result in zip(jobs, results, strict=True):
            try:
                outcomes.append(self._store(job, result, wall))
            except Exception as exc:
                outcomes.append(self._failed(job, exc))
        return outcomes

    def _finish(
        self, job: RenderJob, outcome: JobOutcome, *, rendered_seconds: float, wall: float
    ) -> None:
        with self._lock:
            self._running.pop(job.line_id, None)
            self.progress.lines_done += 1
            self.progress.current_fraction = 0.0
            self.progress.audio_seconds_done += job.expected_seconds
            if outcome.status == "cached":
                self.progress.cache_hits += 1
            elif outcome.status == "failed":
                self.progress.failed += 1
                self.problems[job.line_id] = outcome.error
            else:
                self.progress.rendered_audio_seconds += rendered_seconds
                self.progress.render_seconds += wall

    def _protected(self) -> set[str]:
        # Selected takes of the project must survive eviction. The set is refreshed on the
        # project's thread (`plan`, `apply`), so the rendering thread never walks the project.
        with self._lock:
            return set(self._protected_keys)

    def _refresh_protected(self) -> None:
        keys = {take.cache_key for line in self.project.lines if (take := line.active_take)}
        with self._lock:
            self._protected_keys = keys

    # -- results (project thread) --------------------------------------------------------------

    def apply(self, outcome: JobOutcome) -> bool:
        """Attach a finished job's take to its line, unless the line changed meanwhile.

        Returns:
            True when the take was applied; False for stale, cancelled or failed outcomes.
        """
        job = outcome.job
        if outcome.status not in ("rendered", "cached"):
            return False
        if not self.project.has_line(job.line_id):
            return False
        line = self.project.line(job.line_id)
        if line.revision != job.revision:
            logger.debug("Dropping stale take of line %s (revision %d)", job.line_id, job.revision)
            return False
        existing = find_take(line, job.cache_key)
        take = existing or make_take(
            cache_key=job.cache_key,
            sample_rate=job.request.sample_rate,
            n_samples=outcome.n_samples,
            seed=job.request.seed,
            emotion=job.emotion,
            budget_samples=job.budget_samples,
            model_identity=self.model_identity,
            text=job.request.text,
            line_revision=job.revision,
        )
        add_take(self.project, job.line_id, take)
        with self._lock:
            self._protected_keys.add(job.cache_key)
        return True

    def render_pending(
        self,
        synthesizer: Synthesizer,
        *,
        on_progress: ProgressCallback | None = None,
        should_stop: StopCallback | None = None,
    ) -> RenderProgress:
        """Render every queued job on this thread, applying takes as they finish (CLI use).

        Returns:
            The progress counters at the end. Stops early (keeping the rest queued) when
            ``should_stop`` says so.
        """
        while len(self):
            if should_stop is not None and should_stop():
                break
            outcomes = self.run_next(
                synthesizer, on_progress=on_progress, should_stop=should_stop, apply=True
            )
            if not outcomes and len(self):
                break  # stopped before the first job of the batch
        return self.progress


def _with_priority(job: RenderJob, *, explicit: bool, sequence: int) -> RenderJob:
    return replace(job, explicit=explicit, sequence=sequence)
