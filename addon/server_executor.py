"""The TrajMaster team server as an executor (executor.py): takes made on a shared pool of GPUs.

No bpy here (tests/server/test_server_executor.py drives it against a real server on a real Ray
cluster). It speaks to the server through the standard-library client (backend/client), so
Blender needs no backend environment at all when it runs on a server.

How it keeps executor.py's contract without ever blocking Blender's timer:

- `submit()` only records the job and returns a local id. One submitter thread posts the jobs
  to the server in the order they were submitted (a batch keeps its order in the server's
  queue), each with `detach=True`: the job goes on through a dropped connection, a laptop that
  sleeps, a proxy that restarts, however long; the add-on comes back for it. Job files are
  read and sent as JSON; the server validates them (the add-on's own checks ran before).
- Every posted job gets a follower thread that reads the job's events (the client's stream: a
  read that waits longer than the server's heartbeat period times out, so a dead link is seen
  within about half a minute, a refused one at once) and puts them, stamped with the local id,
  on a queue that `poll()` drains. When the connection drops, the follower says so (a `stage`
  `reconnecting`) and tries again with a growing pause, resuming after the last event it saw
  (`seq`): nothing is lost or repeated. A job the server no longer knows ends with `job_lost`;
  one that a server restart lost ends with the server's own `job_lost` error.
- On `result` the follower downloads the take into the request's folder under the request's
  name (`Client.fetch`: whole or absent, the local take rules), then sends a local `result`
  with the local paths, as the local backend does.
- All jobs are handed over at once (`capacity`), so they wait in the server's queue, not the
  add-on's: the server's queue is shared by the team, so only there does a job hold its place
  among the others' jobs, make the autoscaler add replicas, and show in everyone's queue. A
  queued job is cancelled on the server at once (it never starts). The batch's ETA counts the
  team's jobs ahead of this one's (`others()`), over the server's replicas (`parallel`).
- `cancel()` asks the server from a short-lived thread; if the server cannot be told within
  `cancel_grace_s`, the job ends here as cancelled with a sentence saying it may still finish
  there. `stop()` (quitting Blender, another server chosen) cancels on the server every job it
  started, within a few seconds at most: takes nobody will place must not hold GPUs the team
  waits for.

`StatusWatch` keeps a recent copy of the server's status (replicas, queue) for the panel and
the ETA, asking every few seconds only while someone looks.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..backend.client import Client, ServerError, new_request_key
from .executor import TERMINAL, BackendUnavailable, Request
from .executor import event as _event

# Jobs handed to the server at once. All of a batch, in practice: past the server's own limit
# (`--max-jobs`, a 429) a job waits here and is sent again.
SERVER_CAPACITY = 64
# Problems of the connection or of a server being restarted: worth trying again.
TRANSIENT = ("connection_lost", "timeout", "unreachable", "not_a_server", "internal")
# A request that may have reached the server although its answer did not come back.
ANSWER_LOST = ("timeout", "connection_lost")
# Problems of the server as a whole: a job posted after one that met them would meet them too.
SERVER_FAILURES = ("unreachable", "timeout", "unauthorized", "not_a_server", "bad_url", "bad_token_file")
# Pauses between attempts to reach the server again (the last one repeats).
RETRY_S = (1.0, 2.0, 4.0, 8.0, 10.0)
# At quit, how long cancelling the jobs on the server may take in all.
STOP_S = 3.0


def _pause(job: _Remote, attempt: int) -> None:
    """Wait before the next attempt to reach the server (cut short when the job is stopped)."""
    job.stop.wait(RETRY_S[min(attempt, len(RETRY_S) - 1)])


@dataclass
class _Remote:
    """One job as this executor knows it."""

    id: str
    request: Request
    server_id: str | None = None
    position: int | None = None  # in the server's queue when it was posted
    last_seq: int = 0
    cancel_at: float | None = None  # when the user asked for a cancel
    cancel_sent: bool = False  # the server acknowledged it
    lost_since: float | None = None  # the connection is down since then
    fetching: bool = False  # the take is being downloaded: too late to cancel
    last_stage: dict[str, Any] | None = None
    last_progress: dict[str, Any] | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


class StatusWatch:
    """The server's status, asked for every `interval` seconds on a thread of its own while
    someone wants it (the panel is drawn, a job runs), never on Blender's main thread."""

    def __init__(self, client: Client, interval: float = 5.0, linger: float = 30.0):
        self.client = client
        self.interval = interval
        self.linger = linger
        self.status: dict[str, Any] | None = None
        self.error: ServerError | None = None
        self.updated: float | None = None  # time.monotonic() of the last answer (or failure)
        self.version = 0  # grows with every answer, so a reader knows when to redraw
        self._wanted_until = 0.0
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def want(self, now: bool = False) -> None:
        """Keep asking for `linger` seconds more (at once with `now`)."""
        self._wanted_until = max(self._wanted_until, time.monotonic() + self.linger)
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="trajmaster-server-status", daemon=True)
                self._thread.start()
            elif now:
                self._wake.set()

    @property
    def wanted(self) -> bool:
        return time.monotonic() < self._wanted_until

    def stop(self) -> None:
        self._wanted_until = 0.0
        self._wake.set()

    def _run(self) -> None:
        while time.monotonic() < self._wanted_until:
            self._wake.clear()
            try:
                status = self.client.status()
                self.status, self.error = status, None
            except ServerError as exc:
                self.error = exc
            self.updated = time.monotonic()
            self.version += 1
            self._wake.wait(self.interval)

    def replicas(self) -> int:
        """Replicas that take jobs (loading ones soon will); at least 1."""
        replicas = (self.status or {}).get("replicas") or []
        return max(1, sum(r.get("state") in ("idle", "busy", "loading") for r in replicas))


class ServerExecutor:
    """Jobs run on a TrajMaster server (docs/server.md); see the module's docstring."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        token_source: str = "the token",
        cancel_grace_s: float = 10.0,
        status_interval_s: float = 5.0,
        capacity: int = SERVER_CAPACITY,
    ):
        try:
            self.client = Client(url, token, token_source=token_source)
            # For quitting: cancels that must not hold Blender up when the server is gone.
            self._quick = Client(url, token, token_source=token_source, timeout=STOP_S)
        except ServerError as exc:
            raise BackendUnavailable(exc.message) from None
        self.url = self.client.url
        self.capacity = capacity
        self.cancel_grace_s = cancel_grace_s
        self.watch = StatusWatch(self.client, interval=status_interval_s)
        self._jobs: dict[str, _Remote] = {}  # not ended, as poll() has reported them
        self._events: queue.Queue = queue.Queue()
        self._pending: queue.Queue = queue.Queue()  # jobs for the submitter thread
        self._submitter: threading.Thread | None = None
        self._submitter_lock = threading.Lock()
        self._ids = itertools.count(1)

    # --- state ------------------------------------------------------------------------------

    @property
    def parallel(self) -> int:
        """Jobs that run at once: the server's replicas (as last seen)."""
        return self.watch.replicas()

    @property
    def busy(self) -> bool:
        return bool(self._jobs)

    @property
    def job_ids(self) -> list[str]:
        return list(self._jobs)

    def server_ids(self) -> dict[str, str]:
        """Local id -> the server's id, for the jobs posted so far."""
        return {j.id: j.server_id for j in self._jobs.values() if j.server_id}

    def others(self) -> tuple[list[float], int]:
        """The team's load ahead of this executor's jobs, from the last status: the fractions done
        of other clients' running jobs, and how many of their jobs wait ahead of ours."""
        status = self.watch.status or {}
        mine = {j.server_id for j in self._jobs.values() if j.server_id}
        running = [float(r.get("fraction") or 0.0) for r in status.get("running") or [] if r.get("id") not in mine]
        ahead = 0
        for entry in status.get("queue") or []:
            if entry.get("id") in mine:
                break
            ahead += 1
        else:
            ahead = 0  # none of ours is queued: nothing waits ahead of us
        return running, ahead

    # --- submitting ---------------------------------------------------------------------------

    def submit(self, request: Request) -> str:
        job = _Remote(f"server-{os.getpid()}-{next(self._ids)}", request)
        self._jobs[job.id] = job
        self._pending.put(job)
        with self._submitter_lock:
            if self._submitter is None or not self._submitter.is_alive():
                self._submitter = threading.Thread(target=self._submit_all, name="trajmaster-submit", daemon=True)
                self._submitter.start()
        self.watch.want()
        return job.id

    def _submit_all(self) -> None:
        while True:
            try:
                job = self._pending.get(timeout=0.5)
            except queue.Empty:
                with self._submitter_lock:
                    if self._pending.empty():
                        self._submitter = None
                        return
                continue
            failure = self._post(job)
            if failure is not None and failure.code in SERVER_FAILURES:
                # The server itself cannot be used: the jobs waiting to be posted meet the same fate.
                while True:
                    try:
                        waiting = self._pending.get_nowait()
                    except queue.Empty:
                        break
                    self._error(waiting, failure)

    def _post(self, job: _Remote) -> ServerError | None:
        if job.stop.is_set() or job.cancel_at is not None:
            self._emit(job, _event("cancelled", message="Cancelled before it started."))
            return None
        try:
            document = json.loads(Path(job.request.job).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or "not a job file"
            failure = ServerError("bad_job", f"The job file {job.request.job} cannot be read ({reason}).")
            self._error(job, failure)
            return failure
        # One key for every attempt: a POST whose answer was lost (a timeout, a dropped
        # connection) may have queued the job; sent again with the same key it finds that job
        # instead of queueing a second one that nobody would follow (detached, it would run on).
        key = new_request_key()
        attempt = lost = 0
        while True:
            try:
                answer = self.client.submit(document, png=job.request.png, detach=True, request_key=key)
                break
            except ServerError as exc:
                if exc.code in ANSWER_LOST and lost < len(RETRY_S):
                    _pause(job, lost)
                    lost += 1
                    if job.stop.is_set():  # quitting: nobody waits for an answer any more
                        self._emit(job, _event("cancelled", message="Cancelled before it started."))
                        return None
                    continue  # a Cancel meanwhile is sent once the job's id is known (below)
                if exc.code != "queue_full":
                    self._error(job, exc)
                    return exc
            # The server holds as many jobs as it takes (--max-jobs): nothing was queued, so
            # sending it again later is safe; it waits here meanwhile (and cancels at once).
            if attempt == 0:
                self._emit(job, _event("stage", stage="queued", message="The server's queue is full; waiting to send"))
            _pause(job, attempt)
            attempt += 1
            if job.stop.is_set() or job.cancel_at is not None:
                self._emit(job, _event("cancelled", message="Cancelled before it started."))
                return None
        job.position = answer.get("position")
        job.server_id = str(answer["id"])  # before looking at cancel_at: cancel() reads them the other way round
        if job.cancel_at is not None or job.stop.is_set():
            self._send_cancel(job, self._quick if job.stop.is_set() else self.client)
        if not job.stop.is_set():
            threading.Thread(target=self._follow, args=(job,), name=f"trajmaster-{job.id}", daemon=True).start()
        return None

    # --- following ----------------------------------------------------------------------------

    def _follow(self, job: _Remote) -> None:
        attempt = 0  # failed attempts in a row to reach the server
        while not job.stop.is_set():
            if job.cancel_at is not None and not job.cancel_sent:
                self._send_cancel(job)
            try:
                for event in self.client.events(job.server_id, after=job.last_seq, reconnect_s=0):
                    if job.stop.is_set():
                        return
                    if job.lost_since is not None:
                        self._reattached(job)
                        attempt = 0
                    if isinstance(event.get("seq"), int):
                        job.last_seq = event["seq"]
                    kind = event.get("event")
                    if kind == "result":
                        self._fetch(job)
                        return
                    if kind == "stage":
                        job.last_stage = event
                    elif kind == "progress":
                        job.last_progress = event
                    self._emit(job, event)
                    if kind in TERMINAL:
                        return
                # The stream ended without a final event after it: the server's job says how it ended.
                self._ended_quietly(job)
                return
            except ServerError as exc:
                if job.stop.is_set():
                    return
                if exc.code == "unknown_job":
                    self._lost(job)
                    return
                if exc.code not in TRANSIENT:
                    self._error(job, exc)
                    return
                self._disconnected(job, exc)
            _pause(job, attempt)
            attempt += 1

    def _disconnected(self, job: _Remote, problem: ServerError) -> None:
        if job.lost_since is not None:
            return
        job.lost_since = time.monotonic()
        running = job.last_stage is not None and job.last_stage.get("stage") != "queued"
        self._emit(
            job,
            _event(
                "stage",
                stage="reconnecting" if running else "queued",
                message=f"{problem.message.rstrip('.')}; the job goes on there, trying to reach it again",
            ),
        )

    def _reattached(self, job: _Remote) -> None:
        """Back after a lost connection: show where the job stood again before its newer events."""
        job.lost_since = None
        for last in (job.last_stage, job.last_progress):
            if last is not None:
                self._emit(job, {**last, "time": round(time.time(), 3)})

    def _ended_quietly(self, job: _Remote) -> None:
        try:
            info = self.client.job(job.server_id)
        except ServerError as exc:
            if exc.code == "unknown_job":
                self._lost(job)
            else:
                self._error(job, exc)
            return
        if info.get("state") == "done":
            self._fetch(job)
            return
        outcome = info.get("outcome") or {}
        if outcome.get("event") in TERMINAL:
            self._emit(job, outcome)
        else:
            self._lost(job)

    def _fetch(self, job: _Remote) -> None:
        """The job made its take on the server: download it under the reserved name."""
        job.fetching = True
        self._emit(job, _event("stage", stage="downloading", message="Downloading the take from the server"))
        request = job.request
        damaged = attempt = 0
        while not job.stop.is_set():
            try:
                take = self.client.fetch(job.server_id, request.out, request.name, job_file=request.job)
            except ServerError as exc:
                if exc.code == "bad_download" and damaged < 2:
                    damaged += 1
                    continue
                if exc.code not in TRANSIENT:
                    self._error(job, exc)
                    return
                self._disconnected(job, exc)
                _pause(job, attempt)
                attempt += 1
                continue
            job.lost_since = None
            self._emit(job, _event("result", **take, server_job=job.server_id))
            return

    def _lost(self, job: _Remote) -> None:
        name = job.request.name or "this take"
        self._emit(
            job,
            _event(
                "error",
                code="job_lost",
                message=f"The server at {self.url} no longer has the job of {name} (it was restarted without its "
                "jobs, or the job expired), so the take was not made; generate it again.",
            ),
        )

    def _error(self, job: _Remote, problem: ServerError) -> None:
        fields: dict[str, Any] = {"code": problem.code, "message": problem.message}
        if problem.hint:
            fields["hint"] = problem.hint
        self._emit(job, _event("error", **fields))

    def _emit(self, job: _Remote, event: dict[str, Any]) -> None:
        out = {**event, "job": job.id}
        if job.server_id:
            out["server_job"] = job.server_id
        self._events.put(out)

    # --- the main thread ----------------------------------------------------------------------

    def poll(self) -> list[dict[str, Any]]:
        """Every event since the last call; never blocks (the threads did the waiting)."""
        out: list[dict[str, Any]] = []
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                break
            job = self._jobs.get(event.get("job"))
            if job is None:
                continue  # a job that already ended here (cancelled while the server was unreachable)
            out.append(event)
            if event.get("event") in TERMINAL:
                del self._jobs[job.id]
                job.stop.set()
        now = time.monotonic()
        for job in list(self._jobs.values()):
            if job.cancel_at is None or job.fetching or now - job.cancel_at < self.cancel_grace_s:
                continue
            # Asked to stop and no word from the server since: end it here, saying what is known.
            del self._jobs[job.id]
            job.stop.set()
            if job.cancel_sent or job.server_id is None:
                message = "Cancelled; no video was written."
            else:
                message = (
                    f"Cancelled here; the server at {self.url} could not be reached to stop the job, so it may "
                    "still run there (its take will not be fetched)."
                )
            out.append(_event("cancelled", job=job.id, message=message))
        if self._jobs:
            self.watch.want()
        return out

    def cancel(self, job_id: str | None = None) -> bool:
        """Ask a job (None: every job) to stop: the server cancels a queued one at once, a running
        one at its next step. The request goes from a thread; the job ends with its event."""
        jobs = list(self._jobs.values()) if job_id is None else [self._jobs[job_id]] if job_id in self._jobs else []
        for job in jobs:
            if job.cancel_at is None:
                job.cancel_at = time.monotonic()
                if job.server_id is not None:
                    threading.Thread(target=self._send_cancel, args=(job,), daemon=True).start()
        return bool(jobs)

    def _send_cancel(self, job: _Remote, client: Client | None = None) -> None:
        with job.lock:
            if job.cancel_sent or job.server_id is None:
                return
            try:
                (client or self.client).cancel(job.server_id)
                job.cancel_sent = True
            except ServerError as exc:
                job.cancel_sent = exc.code == "unknown_job"  # nothing left to stop there

    def stop(self, timeout: float = STOP_S) -> None:
        """Forget every job, cancelling on the server those it holds (at most `timeout` seconds in
        all, whatever the network does). Idempotent; submit() works again afterwards."""
        jobs = list(self._jobs.values())
        self._jobs.clear()
        while True:
            try:
                self._pending.get_nowait().stop.set()
            except queue.Empty:
                break
        for job in jobs:
            job.stop.set()
        self.watch.stop()
        cancels = [
            threading.Thread(target=self._send_cancel, args=(job, self._quick), daemon=True)
            for job in jobs
            if job.server_id is not None and not job.cancel_sent
        ]
        for thread in cancels:
            thread.start()
        deadline = time.monotonic() + timeout
        for thread in cancels:
            thread.join(max(0.0, deadline - time.monotonic()))


# --- what the server says, in words -----------------------------------------------------------


def replica_label(replica: dict[str, Any]) -> str:
    device = replica.get("device") or {}
    return str(device.get("name") or device.get("type") or replica.get("replica") or "replica")


def describe(url: str, status: dict[str, Any]) -> str:
    """One sentence: what Check Server found on a server that answered and accepted the token."""
    replicas = status.get("replicas") or []
    queued = len(status.get("queue") or [])
    engine = status.get("engine") or "?"
    if replicas:
        listed = "; ".join(f"{replica_label(r)}: {r.get('state', '?')}" for r in replicas)
        pool = f"{len(replicas)} {engine} replica{'s' if len(replicas) != 1 else ''} ({listed})"
    else:
        pool = f"no {engine} replica running yet (it is starting, or scaled down until a job comes)"
    waiting = f"{queued} job{'s' if queued != 1 else ''} queued" if queued else "nothing queued"
    return f"The server at {url} accepted the token: {pool}, {waiting}."
