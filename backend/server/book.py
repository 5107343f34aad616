"""The gateway's job book: every job the server accepted, its numbered events and its files.

One folder per job under the server's state folder, named by the job's server-generated id:

    jobs/{id}/record.json   what the job is and where it stands (rewritten atomically)
    jobs/{id}/job.json      the job as the client sent it (after validation)
    jobs/{id}/events.jsonl  its events, one JSON object a line, each with a sequence number `seq`
    jobs/{id}/files/        the finished take (video, sidecar, optional PNG zip)

Events are numbered from 1 so that a client that lost its connection asks for the events after
the last one it saw (`GET /v1/jobs/{id}/events?after=N`). The book survives a server restart: a
job that was queued or running when the server stopped cannot be finished any more (its replica
is gone), so loading the book turns it into an `error` event with code `job_lost`; nothing the
server accepted disappears silently. Finished jobs are kept `keep_hours` after they end.

Used from the gateway's event loop only (one thread); no Ray and no HTTP here.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import job as jobfile
from ..events import KINDS, PROTOCOL

log = logging.getLogger("ray.serve")

ACTIVE = ("queued", "running")
FINISHED = ("done", "failed", "cancelled", "lost")
FINAL_EVENTS = ("result", "error", "cancelled")
JOB_ID = re.compile(r"[0-9a-f]{32}")
LOST_MESSAGE = "The server restarted while this job was waiting or running, so it was not finished; submit it again."


@dataclass
class JobRecord:
    id: str
    state: str
    shot: str
    engine: str
    png: bool = False
    detach: bool = False
    created: float = 0.0
    started: float | None = None
    finished: float | None = None
    attempts: int = 0
    replica: dict[str, Any] | None = None
    stage: str | None = None
    fraction: float | None = None
    files: dict[str, Any] | None = None
    outcome: dict[str, Any] | None = None
    # The submitting client's Idempotency-Key: a POST sent again with it (its answer was lost)
    # finds this job instead of queueing a second one. Saved, but not shown to other clients.
    request_key: str | None = None
    # Not saved in record.json (events live in events.jsonl; the job in job.json).
    events: list[dict[str, Any]] = field(default_factory=list, repr=False)
    job: dict[str, Any] | None = field(default=None, repr=False)

    _UNSAVED = ("events", "job")

    @property
    def finished_state(self) -> bool:
        return self.state in FINISHED

    def summary(self) -> dict[str, Any]:
        """What `GET /v1/jobs/{id}` answers."""
        data = {k: v for k, v in asdict(self).items() if k not in self._UNSAVED and k != "request_key"}
        data["last_seq"] = len(self.events)
        return data


class JobBook:
    def __init__(self, folder: str | Path, keep_hours: float, on_event: Callable[[JobRecord], None] | None = None):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.keep_s = keep_hours * 3600.0
        self.jobs: dict[str, JobRecord] = {}
        self._logs: dict[str, Any] = {}  # the open events.jsonl of each job still writing events
        self._on_event = on_event

    # ------------------------------------------------------------ where things are

    def job_dir(self, record: JobRecord) -> Path:
        return self.folder / record.id

    def files_dir(self, record: JobRecord) -> Path:
        return self.job_dir(record) / "files"

    def staging_dir(self, record: JobRecord) -> Path:
        """Where an attempt's files arrive; renamed to files/ only when the take is complete."""
        return self.job_dir(record) / f"attempt-{record.attempts}"

    def get(self, job_id: str) -> JobRecord | None:
        # The id is only ever a dictionary key here; it never becomes a path unless it is one of ours.
        return self.jobs.get(job_id) if isinstance(job_id, str) else None

    # ------------------------------------------------------------ changes

    def new(
        self, job: dict[str, Any], *, engine: str, png: bool, detach: bool, request_key: str | None = None
    ) -> JobRecord:
        job_id = secrets.token_hex(16)
        record = JobRecord(
            id=job_id,
            state="queued",
            shot=str(job["shot"]["scene_name"]),
            engine=engine,
            png=png,
            detach=detach,
            created=time.time(),
            request_key=request_key,
            job=job,
        )
        self.job_dir(record).mkdir()
        # For the administrator's eyes only (a lost job is not run again), so not fsync'ed.
        tmp = self.job_dir(record) / ".job.json.part"
        tmp.write_text(json.dumps(job, allow_nan=False), encoding="utf-8")
        os.replace(tmp, self.job_dir(record) / "job.json")
        self.jobs[job_id] = record
        self.save(record)
        return record

    def by_request_key(self, key: str) -> JobRecord | None:
        """The job a client submitted with this Idempotency-Key, while the server holds it."""
        return next((r for r in self.jobs.values() if r.request_key == key), None)

    def save(self, record: JobRecord) -> None:
        data = {k: v for k, v in asdict(record).items() if k not in JobRecord._UNSAVED}
        jobfile.write_atomic(self.job_dir(record) / "record.json", json.dumps(data, indent=1) + "\n", overwrite=True)

    def emit(self, record: JobRecord, kind: str, **fields: Any) -> dict[str, Any] | None:
        """Append one event to the job's log (numbered) and wake whoever follows it. A job's log
        ends with its final event: what a replica still says after a cancel is dropped."""
        if kind not in KINDS:
            raise ValueError(f"unknown event kind {kind!r}")
        if record.finished_state:
            return None
        fields.pop("seq", None)
        event = {"event": kind, "protocol": PROTOCOL, "time": round(time.time(), 3), **fields}
        event["job"] = record.id
        event["seq"] = len(record.events) + 1
        line = json.dumps(event, allow_nan=False)
        record.events.append(event)
        if kind == "stage":
            record.stage, record.fraction = event.get("stage"), None
        elif kind == "progress":
            record.fraction = event.get("fraction")
        log_file = self._logs.get(record.id)
        if log_file is None:
            log_file = self._logs[record.id] = open(self.job_dir(record) / "events.jsonl", "a", encoding="utf-8")
        log_file.write(line + "\n")
        log_file.flush()
        if self._on_event is not None:
            self._on_event(record)
        return event

    def finish(self, record: JobRecord, state: str, kind: str, **fields: Any) -> dict[str, Any]:
        """End a job with its final event (result, error or cancelled); later calls change nothing."""
        if record.finished_state:
            return record.events[-1]
        event = self.emit(record, kind, **fields)
        record.state, record.finished = state, time.time()
        self._close_log(record)
        record.outcome = {k: v for k, v in event.items() if k not in ("protocol", "job")}
        self.save(record)
        return event

    def _close_log(self, record: JobRecord) -> None:
        log_file = self._logs.pop(record.id, None)
        if log_file is not None:
            log_file.close()

    def forget(self, record: JobRecord) -> None:
        self._close_log(record)
        self.jobs.pop(record.id, None)
        shutil.rmtree(self.job_dir(record), ignore_errors=True)

    # ------------------------------------------------------------ restart and retention

    def load(self) -> list[JobRecord]:
        """Read the book a previous run left; returns the jobs it had to report as lost."""
        lost = []
        for entry in sorted(self.folder.iterdir()):
            if not (entry.is_dir() and JOB_ID.fullmatch(entry.name)):
                continue
            record = self._read(entry)
            if record is None:
                log.warning("Removing the unreadable job folder %s", entry)
                shutil.rmtree(entry, ignore_errors=True)
                continue
            self.jobs[record.id] = record
            for stale in entry.glob("attempt-*"):
                shutil.rmtree(stale, ignore_errors=True)
            if record.state in ACTIVE:
                self.finish(record, "lost", "error", code="job_lost", message=LOST_MESSAGE, exit_code=1)
                lost.append(record)
        self.sweep()
        return lost

    def _read(self, entry: Path) -> JobRecord | None:
        try:
            data = json.loads((entry / "record.json").read_text(encoding="utf-8"))
            record = JobRecord(**{k: v for k, v in data.items() if k in JobRecord.__dataclass_fields__})
        except (OSError, ValueError, TypeError):
            return None
        if record.id != entry.name:
            return None
        events_path = entry / "events.jsonl"
        if events_path.exists():
            for line in events_path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    event = json.loads(line)
                except ValueError:
                    break  # a line cut short by a crash: the events before it are whole
                if not isinstance(event, dict) or event.get("seq") != len(record.events) + 1:
                    break
                record.events.append(event)
        return record

    def sweep(self, now: float | None = None) -> list[str]:
        """Forget finished jobs older than the retention time (their events and files go too)."""
        now = time.time() if now is None else now
        expired = [r for r in self.jobs.values() if r.finished_state and (r.finished or 0) + self.keep_s < now]
        for record in expired:
            self.forget(record)
        return [r.id for r in expired]

    # ------------------------------------------------------------ views

    def active(self) -> list[JobRecord]:
        return sorted((r for r in self.jobs.values() if r.state in ACTIVE), key=lambda r: r.created)

    def queued(self) -> list[JobRecord]:
        return [r for r in self.active() if r.state == "queued"]

    def position(self, record: JobRecord) -> int | None:
        """1 for the next job to start, None once it runs (Ray's queue is first come, first served)."""
        queued = self.queued()
        return queued.index(record) + 1 if record in queued else None
