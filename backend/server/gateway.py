"""The gateway: the server's HTTP front (a Ray Serve ingress deployment, one replica).

It owns the job book and hands each accepted job to the model deployment through a Ray Serve
handle as a streaming request: Ray queues the requests and routes each to a free replica (one
job per replica at a time); the gateway only follows each job's stream, numbers its events,
stores its take and answers clients. Faults it handles:

- a replica that dies mid-job (its process killed, its node lost, its GPU failed): the job runs
  again on another replica, at most twice, with a `warning` (code `replica_lost`) saying so;
  the take's files are kept only from the attempt that finished, so a client gets it once;
- a job nobody follows: cancelled after the grace period unless it was submitted with `detach`;
- a restart of the server: see book.py (unfinished jobs become `job_lost` errors).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from .. import __version__
from ..events import PROTOCOL
from . import API_VERSION, api
from .book import JobBook, JobRecord
from .settings import ServerConfig

log = logging.getLogger("ray.serve")

MAX_RERUNS = 2
SWEEP_EVERY_S = 600.0
CANCELLED_MESSAGE = "Cancelled; no video was written."


class Gateway:
    """The service behind the HTTP routes (api.py); deployed by app.py."""

    async def __init__(self, model: Any, config: dict[str, Any]):
        self.config = ServerConfig.from_dict(config)
        self.model = model
        self.token_sha256 = self.config.token_sha256
        self.max_request_bytes = self.config.max_request_bytes
        self.book = JobBook(Path(self.config.state_dir) / "jobs", self.config.keep_hours, on_event=self._wake)
        self.replicas: dict[str, dict[str, Any]] = {}
        self._streams: dict[str, Any] = {}
        self._drivers: dict[str, asyncio.Task] = {}
        self._wakers: dict[str, asyncio.Event] = {}
        self._watchers: dict[str, int] = {}
        self._grace: dict[str, asyncio.TimerHandle] = {}
        self._cancel_message: dict[str, str] = {}
        lost = self.book.load()
        if lost:
            log.warning("%d job(s) were unfinished when the server stopped; reported as lost.", len(lost))
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    def __serve_build_asgi_app__(self) -> Any:
        return api.create_app(self)

    # ------------------------------------------------------------ replicas tell us their state

    def replica_report(self, info: dict[str, Any]) -> None:
        self.replicas[info["replica"]] = {**info, "seen": time.time()}

    def _live_replicas(self) -> list[dict[str, Any]]:
        horizon = time.time() - 4 * self.config.replica_report_s
        for key in [k for k, r in self.replicas.items() if r["seen"] < horizon]:
            del self.replicas[key]
        return sorted(self.replicas.values(), key=lambda r: (r["node"], r["replica"]))

    # ------------------------------------------------------------ the routes' service

    def submit(
        self, job: dict[str, Any], *, png: bool, detach: bool, request_key: str | None = None
    ) -> tuple[JobRecord, bool]:
        """The job's record, and whether it is new (False: the same client sent it before with
        the same Idempotency-Key, and its first answer was lost on the way)."""
        if request_key is not None:
            earlier = self.book.by_request_key(request_key)
            if earlier is not None:
                same = earlier.job is None or (earlier.job, earlier.png, earlier.detach) == (job, png, detach)
                if not same:
                    raise api.ApiError(
                        422,
                        "key_reused",
                        "This Idempotency-Key was already used for another job; send each job with its own key.",
                    )
                return earlier, False
        if job["engine"] != self.config.engine:
            raise api.ApiError(
                422,
                "unsupported",
                f"This server runs the {self.config.engine} engine; the job asks for {job['engine']}.",
                f"Set the job's engine to {self.config.engine}, or send it to a server that runs {job['engine']}.",
            )
        if len(self.book.active()) >= self.config.max_jobs:
            raise api.ApiError(
                429,
                "queue_full",
                f"The server already has {self.config.max_jobs} jobs waiting or running; "
                "try again when some have finished.",
            )
        record = self.book.new(job, engine=self.config.engine, png=png, detach=detach, request_key=request_key)
        position = self.book.position(record)
        ahead = position - 1
        message = f"Waiting for a free replica ({ahead} job{'s' if ahead != 1 else ''} ahead)"
        self.book.emit(record, "stage", stage="queued", message=message)
        log.info("Job %s (%s) queued at position %d.", record.id, record.shot, position)
        self._watch(record, 0)
        self._drivers[record.id] = asyncio.get_running_loop().create_task(self._drive(record))
        return record, True

    def record(self, job_id: str) -> JobRecord:
        record = self.book.get(job_id)
        if record is None:
            raise api.ApiError(
                404,
                "unknown_job",
                f"There is no job {job_id} on this server; it may have expired "
                f"({self.config.keep_hours:g} hours after it finished) or been forgotten.",
            )
        return record

    def summary(self, record: JobRecord) -> dict[str, Any]:
        return {**record.summary(), "position": self.book.position(record)}

    def jobs(self) -> list[dict[str, Any]]:
        return [self.summary(r) for r in sorted(self.book.jobs.values(), key=lambda r: r.created)]

    def status(self) -> dict[str, Any]:
        c = self.config
        return {
            "api": API_VERSION,
            "version": __version__,
            "engine": c.engine,
            "scaling": c.scaling(),
            "replicas": self._live_replicas(),
            "queue": [
                {"id": r.id, "shot": r.shot, "position": i + 1, "created": r.created, "attempts": r.attempts}
                for i, r in enumerate(self.book.queued())
            ],
            "running": [
                {
                    "id": r.id,
                    "shot": r.shot,
                    "replica": (r.replica or {}).get("replica"),
                    "stage": r.stage,
                    "fraction": r.fraction,
                    "started": r.started,
                }
                for r in self.book.active()
                if r.state == "running"
            ],
            "limits": {
                "max_request_bytes": c.max_request_bytes,
                "max_jobs": c.max_jobs,
                "disconnect_grace_s": c.disconnect_grace_s,
                "keep_hours": c.keep_hours,
            },
        }

    async def follow(self, record: JobRecord, after: int) -> AsyncIterator[bytes]:
        self._watch(record, +1)
        try:
            sent = after
            while True:
                if sent < len(record.events):
                    # All the events waiting go in one write (one message through Serve's proxy).
                    lines = [json.dumps(e) + "\n" for e in record.events[sent:]]
                    sent += len(lines)
                    yield "".join(lines).encode("utf-8")
                if record.finished_state and sent >= len(record.events):
                    return
                waker = self._wakers.setdefault(record.id, asyncio.Event())
                try:
                    await asyncio.wait_for(waker.wait(), timeout=self.config.stream_heartbeat_s)
                except TimeoutError:
                    beat = {"event": "heartbeat", "protocol": PROTOCOL, "time": round(time.time(), 3)}
                    beat.update(job=record.id, stage=record.stage or record.state)
                    yield (json.dumps(beat) + "\n").encode("utf-8")
        finally:
            self._watch(record, -1)

    def cancel(self, record: JobRecord, message: str = CANCELLED_MESSAGE) -> None:
        if record.finished_state:
            return
        self._cancel_message.setdefault(record.id, message)
        stream = self._streams.get(record.id)
        if stream is not None:
            stream.cancel()  # Ray cancels the request: queued, it never starts; running, it stops at a step
        else:
            driver = self._drivers.get(record.id)
            if driver is not None:
                driver.cancel()
        # Over for its clients now: nothing the replica sends after this is kept.
        self._end_cancelled(record)

    async def forget(self, record: JobRecord) -> None:
        self.cancel(record)
        driver = self._drivers.get(record.id)
        if driver is not None:
            await asyncio.wait([driver], timeout=30)
        self._wake(record)
        self.book.forget(record)
        for table in (self._wakers, self._watchers, self._cancel_message):
            table.pop(record.id, None)

    def file(self, record: JobRecord, role: str) -> tuple[str, dict[str, Any]]:
        if record.state != "done" or not record.files:
            raise api.ApiError(409, "not_finished", f"Job {record.id} has no take ({record.state}).")
        info = record.files.get(role)
        if info is None:
            raise api.ApiError(404, "not_found", f"Job {record.id} has no {role} file (PNG frames only with png).")
        return str(self.book.files_dir(record) / info["name"]), info

    # ------------------------------------------------------------ following a job

    def _wake(self, record: JobRecord) -> None:
        waker = self._wakers.pop(record.id, None)
        if waker is not None:
            waker.set()

    def _watch(self, record: JobRecord, change: int) -> None:
        """Count the clients following a job; when none has for the grace period, cancel it
        (unless it was submitted with detach)."""
        count = self._watchers[record.id] = max(self._watchers.get(record.id, 0) + change, 0)
        timer = self._grace.pop(record.id, None)
        if timer is not None:
            timer.cancel()
        if count == 0 and not record.detach and not record.finished_state:
            grace = self.config.disconnect_grace_s
            self._grace[record.id] = asyncio.get_running_loop().call_later(grace, self._unwatched, record)

    def _unwatched(self, record: JobRecord) -> None:
        self._grace.pop(record.id, None)
        if self._watchers.get(record.id, 0) == 0 and not record.finished_state:
            grace = self.config.disconnect_grace_s
            log.info("Job %s: no client for %g s; cancelling it.", record.id, grace)
            self.cancel(
                record,
                f"Cancelled: no client followed this job for {grace:g} s (submit with detach to keep a job "
                "running without one); no video was written.",
            )

    def _end_cancelled(self, record: JobRecord) -> None:
        message = self._cancel_message.get(record.id, CANCELLED_MESSAGE)
        self.book.finish(record, "cancelled", "cancelled", message=message)
        log.info("Job %s cancelled.", record.id)

    async def _drive(self, record: JobRecord) -> None:
        from ray.exceptions import RayActorError
        from ray.serve.exceptions import RequestCancelledError

        request = {"id": record.id, "job": record.job, "png": record.png}
        try:
            while not record.finished_state:
                record.attempts += 1
                request["attempt"] = record.attempts
                stream = self.model.options(stream=True).run.remote(request)
                self._streams[record.id] = stream
                try:
                    lost = await self._follow_attempt(record, stream)
                except RayActorError as exc:
                    lost = _why_lost(exc)
                except RequestCancelledError:
                    if record.id in self._cancel_message:
                        raise
                    lost = "Ray cancelled its request"  # not asked for here: the replica is going away
                finally:
                    self._streams.pop(record.id, None)
                    shutil.rmtree(self.book.staging_dir(record), ignore_errors=True)
                if lost is None:
                    if not record.finished_state:
                        self.book.finish(
                            record,
                            "failed",
                            "error",
                            code="internal",
                            message="The replica ended the job without an outcome; see the server's log.",
                            exit_code=1,
                        )
                    return
                self._replica_lost(record, lost)
        except (RequestCancelledError, asyncio.CancelledError):
            if record.id not in self._cancel_message:
                raise  # the server is stopping: the job stays unfinished in the book (lost at the next start)
            self._end_cancelled(record)
        except Exception as exc:
            log.exception("Job %s failed in the gateway", record.id)
            self.book.finish(
                record,
                "failed",
                "error",
                code="internal",
                message=f"The server failed while running this job ({type(exc).__name__}); its log has the details.",
                exit_code=1,
            )
        finally:
            self._drivers.pop(record.id, None)
            self._wake(record)

    def _replica_lost(self, record: JobRecord, why: str) -> None:
        replica = (record.replica or {}).get("replica")
        self.replicas.pop(replica, None)
        log.warning("Job %s: replica %s lost (%s) on attempt %d.", record.id, replica, why, record.attempts)
        if record.attempts > MAX_RERUNS:
            self.book.finish(
                record,
                "failed",
                "error",
                code="replica_lost",
                message=f"The replica running this job stopped {record.attempts} times ({why}); it was not finished.",
                hint="Ask the server's administrator to look at the replicas (python -m backend server-status).",
                exit_code=1,
            )
            return
        record.state, record.replica = "queued", None
        self.book.emit(
            record,
            "warning",
            code="replica_lost",
            message=f"The replica running this job stopped ({why}); running it again on another one "
            f"(attempt {record.attempts + 1} of {MAX_RERUNS + 1}).",
        )

    async def _follow_attempt(self, record: JobRecord, stream: Any) -> str | None:
        """Relay one attempt. Returns None when the job ended (its final event is in the book), or
        why the replica was lost (the job can run again)."""
        staging = self.book.staging_dir(record)
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        received: dict[str, dict[str, Any]] = {}
        digests: dict[str, Any] = {}  # each file's SHA-256 so far, taken as its chunks arrive
        async for message in stream:
            kind = message["kind"]
            if kind == "started":
                # Not saved here: after a restart a running job is lost as a queued one is.
                record.state, record.started, record.replica = "running", time.time(), message["replica"]
                replica = message["replica"]
                device = replica["device"].get("name") or replica["device"].get("type")
                where = f"replica {replica['replica']}, {replica['node']}"
                self.book.emit(record, "log", message=f"Running on {device} ({where})", replica=replica)
            elif kind == "events":
                for event in message["events"]:
                    self._relay(record, dict(event))
            elif kind == "file":
                _receive_chunk(staging, message, received, digests)
            elif kind == "result":
                self._publish(record, staging, received, message["result"])
            elif kind == "failed":
                return message["message"]
        return None

    def _relay(self, record: JobRecord, event: dict[str, Any]) -> None:
        """One of the replica's events into the job's log (its final error/cancelled ends the job)."""
        name = event.pop("event")
        for key in ("protocol", "time", "job"):
            event.pop(key, None)
        if name == "error":
            self.book.finish(record, "failed", "error", **event)
        elif name == "cancelled":
            self.book.finish(record, "cancelled", "cancelled", **event)
        else:
            self.book.emit(record, name, **event)

    def _publish(
        self, record: JobRecord, staging: Path, received: dict[str, dict[str, Any]], result: dict[str, Any]
    ) -> None:
        if record.finished_state:  # cancelled while its files were on the way
            return
        files = self.book.files_dir(record)
        shutil.rmtree(files, ignore_errors=True)
        os.replace(staging, files)
        record.files = received
        names = {"video": received["video"]["name"], "sidecar": received["sidecar"]["name"]}
        png = received.get("png", {}).get("name")
        replica = {k: (record.replica or {}).get(k) for k in ("replica", "node", "device")}
        self.book.finish(
            record,
            "done",
            "result",
            name="take",
            **names,
            png_dir=png,
            files=received,
            shot=record.shot,
            attempts=record.attempts,
            replica=replica,
            **result,
        )
        log.info("Job %s done (%s s on the replica).", record.id, result.get("seconds"))

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_EVERY_S)
            for job_id in self.book.sweep():
                for table in (self._wakers, self._watchers, self._cancel_message):
                    table.pop(job_id, None)


def _receive_chunk(
    staging: Path, message: dict[str, Any], received: dict[str, dict[str, Any]], digests: dict[str, Any]
) -> None:
    """Append one chunk of a take's file; with its last chunk, check the whole file against the
    size and SHA-256 the replica announced (hashed here as it arrives: no second pass)."""
    role = message["role"]
    # Names come from the replica (ours), but are still taken as plain file names only.
    name = Path(message["name"]).name
    path = staging / name
    mode = "ab" if message["offset"] else "wb"
    with open(path, mode) as f:
        if f.tell() != message["offset"]:
            raise RuntimeError(f"the {role} file arrived out of order")
        f.write(message["data"])
        size = f.tell()
    if not message["offset"]:
        digests[role] = hashlib.sha256()
    digest = digests[role]
    digest.update(message["data"])
    if message["sha256"] is not None:
        if digest.hexdigest() != message["sha256"] or size != message["size"]:
            raise RuntimeError(f"the {role} file arrived damaged")
        received[role] = {"name": name, "bytes": message["size"], "sha256": message["sha256"]}


def _why_lost(exc: BaseException) -> str:
    text = str(exc)
    if "OOM" in text or "out of memory" in text.lower():
        return "its process ran out of memory and was killed"
    if "node" in text.lower() and "died" in text.lower():
        return "its machine left the cluster"
    return "its process died"
