"""Packaging jobs: uploads wait in a queue and one worker thread packages them, one at a time.

`JobManager.submit` records a queued `Job` for a staged upload; the worker calls the packager
(`origin.packager.package`, injectable) with a progress callback, then records `succeeded` or `failed`
with the reason, and deletes the staged upload either way. The packager publishes atomically, so a
failed job leaves nothing half-published. Jobs live in memory: a restart forgets them.
"""

from __future__ import annotations

import enum
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from origin.errors import OriginError

__all__ = ["Job", "JobManager", "JobState", "PackageFn", "QueueFull"]

log = logging.getLogger("origin.jobs")

PackageFn = Callable[..., Any]  # origin.packager.package's signature (input_path, *, video_id, store, ...)
_MAX_KEPT_JOBS = 1000  # finished jobs remembered for GET /jobs/{id}; the oldest are forgotten first


class QueueFull(OriginError):
    """Raised when too many jobs are already waiting; the client should retry later."""


class JobState(enum.StrEnum):
    """Where a job is in its life: queued -> running -> succeeded | failed."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """A snapshot of one packaging job (replaced, never mutated, as it progresses)."""

    id: str
    video_id: str
    state: JobState
    staged: Path
    segment_seconds: int
    ladder: Any = None  # an origin.ladder.Ladder, or None for the default ladder
    source_name: str = "the upload"  # the client's file name, shown in error reasons instead of `staged`
    progress: float = 0.0
    error: str | None = None
    created: float = 0.0
    started: float | None = None
    finished: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON body of `GET /jobs/{id}` (never exposes the staging path)."""
        return {
            "job": self.id,
            "video_id": self.video_id,
            "state": self.state.value,
            "progress": round(self.progress, 4),
            "error": self.error,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
            "url": f"/jobs/{self.id}",
            "manifest": f"/videos/{self.video_id}/manifest.mpd" if self.state is JobState.SUCCEEDED else None,
        }


def _default_package_fn() -> PackageFn:
    from origin.packager import package  # imported lazily: the serving side does not need it to start

    return package


def _fraction(progress: Any) -> float | None:
    """Read a fraction from whatever the packager reports (a PackagingProgress or a bare number)."""
    value = getattr(progress, "fraction", progress)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return min(1.0, max(0.0, float(value)))
    return None


def _reason(exc: BaseException, job: Job) -> str:
    """The error message with the staging path replaced by the client's file name."""
    text = str(exc)
    for spelling in (repr(str(job.staged)), str(job.staged), repr(job.staged.name), job.staged.name):
        text = text.replace(spelling, job.source_name)
    return text


class JobManager:
    """Holds every job and runs them on one background worker thread."""

    def __init__(
        self,
        store: Path,
        *,
        package_fn: PackageFn | None = None,
        max_queued: int = 8,
        on_finished: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._package_fn = package_fn
        self._max_queued = max_queued
        self._on_finished = on_finished
        self._clock = clock
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._closed = False

    def get(self, job_id: str) -> Job | None:
        """The current snapshot of a job, or None if unknown."""
        with self._lock:
            return self._jobs.get(job_id)

    def counts(self) -> Mapping[str, int]:
        """Number of jobs per state (for metrics and /healthz)."""
        with self._lock:
            counts = dict.fromkeys((s.value for s in JobState), 0)
            for job in self._jobs.values():
                counts[job.state.value] += 1
            return counts

    def has_room(self) -> bool:
        """True when one more job may be queued."""
        return self.counts()[JobState.QUEUED.value] < self._max_queued

    def submit(
        self,
        *,
        job_id: str,
        video_id: str,
        staged: Path,
        segment_seconds: int,
        ladder: Any,
        source_name: str | None = None,
    ) -> Job:
        """Queue a staged upload for packaging; raise QueueFull when the queue is full."""
        job = Job(
            id=job_id,
            video_id=video_id,
            state=JobState.QUEUED,
            staged=staged,
            segment_seconds=segment_seconds,
            ladder=ladder,
            created=self._clock(),
            source_name=repr(source_name) if source_name else "the upload",
        )
        with self._lock:
            if self._closed:
                raise QueueFull("the server is shutting down; retry on the restarted origin")
            queued = sum(1 for j in self._jobs.values() if j.state is JobState.QUEUED)
            if queued >= self._max_queued:
                raise QueueFull(f"{queued} jobs are already waiting; retry when one has finished")
            self._jobs[job_id] = job
            self._forget_old_locked()
            self._ensure_worker_locked()
        self._queue.put(job_id)
        return job

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker after its current job (waits up to `timeout` seconds)."""
        with self._lock:
            self._closed = True
            worker = self._worker
        self._queue.put(None)
        if worker is not None:
            worker.join(timeout)

    def _ensure_worker_locked(self) -> None:
        if self._worker is None:
            self._worker = threading.Thread(target=self._run, name="origin-packager", daemon=True)
            self._worker.start()

    def _forget_old_locked(self) -> None:
        finished = [j for j in self._jobs.values() if j.state in (JobState.SUCCEEDED, JobState.FAILED)]
        for job in sorted(finished, key=lambda j: j.created)[: max(0, len(self._jobs) - _MAX_KEPT_JOBS)]:
            del self._jobs[job.id]

    def _update(self, job_id: str, **changes: Any) -> Job:
        with self._lock:
            job = replace(self._jobs[job_id], **changes)
            self._jobs[job_id] = job
            return job

    def _run(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None:
                return
            with self._lock:
                closed = self._closed
            if closed:
                self._finish(job_id, JobState.FAILED, "the server shut down before this job ran")
                continue
            self._run_one(job_id)

    def _run_one(self, job_id: str) -> None:
        job = self._update(job_id, state=JobState.RUNNING, started=self._clock())

        def on_progress(progress: Any) -> None:
            fraction = _fraction(progress)
            if fraction is not None:
                self._update(job_id, progress=fraction)

        try:
            package = self._package_fn or _default_package_fn()
            package(
                job.staged,
                video_id=job.video_id,
                store=self._store,
                segment_seconds=job.segment_seconds,
                ladder=job.ladder,
                progress=on_progress,
            )
        except OriginError as exc:
            self._finish(job_id, JobState.FAILED, _reason(exc, job))
        except Exception as exc:  # a bug, not bad input: keep the worker alive and say what happened
            log.exception("packaging job %s crashed", job_id)
            self._finish(job_id, JobState.FAILED, f"internal error: {type(exc).__name__}: {exc}")
        else:
            self._finish(job_id, JobState.SUCCEEDED, None)

    def _finish(self, job_id: str, state: JobState, error: str | None) -> None:
        job = self.get(job_id)
        if job is not None:
            try:
                job.staged.unlink(missing_ok=True)
            except OSError as exc:
                log.warning("cannot delete the staged upload of job %s: %s", job_id, exc.strerror)
        changes: dict[str, Any] = {"state": state, "error": error, "finished": self._clock()}
        if state is JobState.SUCCEEDED:
            changes["progress"] = 1.0
        self._update(job_id, **changes)
        log.info(
            "job %s (%s) %s%s",
            job_id,
            job.video_id if job else "?",
            state.value,
            f": {error}" if error else "",
        )
        if self._on_finished is not None:
            self._on_finished(state.value)
