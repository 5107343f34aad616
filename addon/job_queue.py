"""The add-on's queue of takes to make: hand them to an executor, follow each one's events by id.

No bpy here (tests/test_job_queue.py drives it with the real supervisor and stand-in backends).
The runner (runner.py) adds jobs whose take names it has already reserved (their job files are
written), calls poll() from its timer and places each take as its `result` arrives. Jobs wait
here until the executor has room (`executor.capacity`): cancelling one that waits here is
instant and certain, and a server executor, whose capacity is its replicas' queue, gets them all
at once and runs them in parallel (executor.py).

A batch is every job added since the queue was last empty: its progress is jobs done out of
jobs queued, with an ETA from the per-job times so far and the running jobs' own ETAs.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any

from .executor import TERMINAL, BackendUnavailable, Busy, Executor, Request
from .executor import event as _event

QUEUED, RUNNING, CANCELLING = "queued", "running", "cancelling"
DONE, FAILED, CANCELLED = "done", "failed", "cancelled"
ENDED = (DONE, FAILED, CANCELLED)
# Codes of a backend process that failed as a whole (supervisor.py), or of a server that cannot be
# used (server_executor.py): the jobs still waiting would meet the same fate, so they are not started.
PROCESS_FAILURES = (
    "backend_crashed",
    "backend_garbage",
    "backend_silent",
    "unreachable",
    "unauthorized",
    "not_a_server",
    "bad_url",
    "bad_token_file",
)


@dataclass
class QueuedJob:
    """One take in the queue: what to run, and where it stands."""

    request: Request
    label: str = ""  # what the panel calls it (the take's name, and what differs in a set)
    data: Any = None  # the runner's own record (shot, job, blend file); opaque here
    key: int = 0  # the queue's own id, for the panel's per-job Cancel
    state: str = QUEUED
    executor_id: str | None = None
    handed_at: float | None = None  # given to the executor (on a worker, it may still wait there)
    started_at: float | None = None  # its first event: it runs
    ended_at: float | None = None
    stage: str = ""
    message: str = ""
    step: int = 0
    total: int = 0
    fraction: float = 0.0
    eta_s: float | None = None
    end: dict[str, Any] | None = None  # the event that ended it

    @property
    def name(self) -> str:
        return self.request.name or ""

    @property
    def ended(self) -> bool:
        return self.state in ENDED


@dataclass
class Progress:
    done: int  # jobs that ended (placed, failed or cancelled)
    total: int  # jobs in the batch
    succeeded: int
    failed: int
    cancelled: int
    eta_s: float | None  # until the last job ends; None until something can be estimated
    current: QueuedJob | None  # the running job the panel follows (the oldest one)


@dataclass
class JobQueue:
    executor: Executor | None = None
    jobs: list[QueuedJob] = field(default_factory=list)
    _keys: Any = field(default_factory=lambda: itertools.count(1))
    # Wall time of jobs that ran to a result in this batch, in order (the ETA's per-job estimate).
    durations: list[float] = field(default_factory=list)

    # --- state ---------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return any(not job.ended for job in self.jobs)

    def active(self) -> list[QueuedJob]:
        return [job for job in self.jobs if not job.ended]

    def get(self, key: int) -> QueuedJob | None:
        return next((job for job in self.jobs if job.key == key), None)

    # --- adding and handing over ---------------------------------------------------------------

    def add(self, jobs: list[QueuedJob]) -> list[QueuedJob]:
        """Queue `jobs` (in this order); a queue whose jobs have all ended starts a new batch."""
        if not self.busy:
            self.jobs.clear()
            self.durations.clear()
        for job in jobs:
            job.key = next(self._keys)
            job.state = QUEUED
            self.jobs.append(job)
        return jobs

    def _handed(self) -> int:
        return sum(job.state in (RUNNING, CANCELLING) for job in self.jobs)

    def pump(self) -> list[tuple[QueuedJob, dict[str, Any]]]:
        """Hand waiting jobs to the executor while it has room. A job it cannot take at all
        (BackendUnavailable) fails, and so does every job waiting after it (same cause)."""
        out: list[tuple[QueuedJob, dict[str, Any]]] = []
        if self.executor is None:
            return out
        for job in self.jobs:
            if job.state != QUEUED:
                continue
            if self._handed() >= max(1, self.executor.capacity):
                break
            try:
                job.executor_id = self.executor.submit(job.request)
            except Busy:
                break
            except BackendUnavailable as exc:
                failure = {"code": "backend_unavailable", "message": str(exc)}
                for waiting in [j for j in self.jobs if j.state == QUEUED]:
                    out.append((waiting, self._end(waiting, _event("error", **failure))))
                break
            job.state = RUNNING
            job.handed_at = time.monotonic()
        return out

    # --- following -----------------------------------------------------------------------------

    def poll(self) -> list[tuple[QueuedJob, dict[str, Any]]]:
        """Hand over what fits, then every event since the last call, with its job; never
        blocks. The next job is handed over in the same call its predecessor ended in."""
        out = self.pump()
        if self.executor is None:
            return out
        by_id = {job.executor_id: job for job in self.jobs if job.executor_id is not None and not job.ended}
        for event in self.executor.poll():
            job = by_id.get(event.get("job"))
            if job is None:
                continue  # a job this queue no longer follows
            out.append((job, event))
            self._follow(job, event)
            if job.ended and event.get("event") == "error" and event.get("code") in PROCESS_FAILURES:
                out.extend(self._stop_waiting(f"Not run: {event.get('message', 'the backend stopped')}"))
        out.extend(self.pump())
        return out

    def _follow(self, job: QueuedJob, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if job.started_at is None and not _waiting(event):
            job.started_at = time.monotonic()
        if kind == "stage":
            job.stage, job.message = str(event.get("stage", "")), str(event.get("message", ""))
            job.step = job.total = 0
            job.fraction, job.eta_s = 0.0, None
        elif kind == "progress":
            job.stage = str(event.get("stage", job.stage))
            job.step, job.total = int(event.get("step", 0)), int(event.get("total", 0))
            job.fraction = float(event.get("fraction", 0.0))
            eta = event.get("eta_s")
            job.eta_s = float(eta) if isinstance(eta, (int, float)) else None
        elif kind == "heartbeat":
            job.stage = str(event.get("stage", job.stage))
        elif kind in TERMINAL:
            self._end(job, event)

    def _end(self, job: QueuedJob, event: dict[str, Any]) -> dict[str, Any]:
        kind = event.get("event")
        job.state = {"result": DONE, "error": FAILED}.get(str(kind), CANCELLED)
        job.ended_at = time.monotonic()
        job.end = event
        job.eta_s = None
        if kind == "result" and job.started_at is not None:
            self.durations.append(job.ended_at - job.started_at)
        return event

    def _stop_waiting(self, message: str) -> list[tuple[QueuedJob, dict[str, Any]]]:
        return [(job, self._end(job, _event("cancelled", message=message))) for job in self.jobs if job.state == QUEUED]

    # --- cancelling ----------------------------------------------------------------------------

    def cancel(self, key: int | None = None) -> list[tuple[QueuedJob, dict[str, Any]]]:
        """Cancel one job (None: every job). A waiting job ends at once (its event is returned);
        a handed-over one is asked to stop and ends with the executor's event."""
        out: list[tuple[QueuedJob, dict[str, Any]]] = []
        for job in self.jobs:
            if key is not None and job.key != key:
                continue
            if job.state == QUEUED:
                out.append((job, self._end(job, _event("cancelled", message="Cancelled before it started."))))
            elif job.state == RUNNING and self.executor is not None:
                job.state = CANCELLING
                self.executor.cancel(job.executor_id)
        return out

    # --- progress ------------------------------------------------------------------------------

    def progress(self) -> Progress:
        states = [job.state for job in self.jobs]
        running = [job for job in self.jobs if job.state in (RUNNING, CANCELLING)]
        current = next((job for job in running if job.started_at is not None), running[0] if running else None)
        return Progress(
            done=sum(s in ENDED for s in states),
            total=len(self.jobs),
            succeeded=states.count(DONE),
            failed=states.count(FAILED),
            cancelled=states.count(CANCELLED),
            eta_s=self.eta(),
            current=current,
        )

    def eta(self, now: float | None = None) -> float | None:
        now = time.monotonic() if now is None else now
        started = [
            (now - job.started_at, job.eta_s)
            for job in self.jobs
            if job.state == RUNNING and job.started_at is not None
        ]
        waiting = sum(job.state == QUEUED or (job.state == RUNNING and job.started_at is None) for job in self.jobs)
        parallel = self.executor.parallel if self.executor is not None else 1
        # A shared server also runs other people's jobs, some of them ahead of ours (server_executor.py).
        others = getattr(self.executor, "others", None)
        load = others() if others is not None and waiting else None
        return batch_eta(self.durations, started, waiting, parallel, load)


def _waiting(event: dict[str, Any]) -> bool:
    """An event of a job still waiting in a server's queue (it has not started to run)."""
    return event.get("event") in ("stage", "heartbeat") and event.get("stage") == "queued"


def batch_eta(
    durations: list[float],
    running: list[tuple[float, float | None]],
    waiting: int,
    parallel: int = 1,
    others: tuple[list[float], int] | None = None,
) -> float | None:
    """Seconds until the last job of a batch ends.

    `durations`: wall times of the jobs that ended with a take, in order; `running`: (seconds
    since it started, its own ETA or None) for each running job; `waiting`: jobs not started;
    `parallel`: how many run at once; `others`: on a shared server, the fractions done of other
    people's running jobs and how many of their jobs wait ahead of ours (each as long as ours).
    A job's expected time is the last one's (the engine is warm by then: a batch's first job
    also pays for loading the model), else what a running job's progress implies (elapsed + its
    ETA). None when nothing is known yet.
    """
    per_job: float | None = durations[-1] if durations else None
    if per_job is None:
        implied = [elapsed + eta for elapsed, eta in running if eta is not None]
        per_job = max(implied) if implied else None
    if per_job is None:
        return None if (running or waiting) else 0.0
    # One lane per job running at once: each running job's time left (ours, then the team's), then
    # every waiting job (the team's ahead of ours first) goes to the lane that frees first.
    # A lane is [seconds until it is free, whether one of ours ends there]: the batch ends when
    # the last of ours does, not when someone else's job does.
    lanes = [[eta if eta is not None else max(0.0, per_job - elapsed), True] for elapsed, eta in running]
    foreign, ahead = others if others is not None and waiting else ([], 0)
    lanes += [[per_job * max(0.0, 1.0 - fraction), False] for fraction in foreign]
    lanes += [[0.0, False] for _ in range(max(0, parallel - len(lanes)))]
    for k in range(ahead + waiting):
        lane = min(lanes, key=lambda lane: lane[0])
        lane[0] += per_job
        lane[1] = lane[1] or k >= ahead
    return max((t for t, ours in lanes if ours), default=0.0)
