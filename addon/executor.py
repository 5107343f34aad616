"""Where a take is made, seen from the add-on's job queue: the contract every executor keeps.

No bpy here. Today the one executor is the local backend process (supervisor.Supervisor: the
`python -m backend serve` worker in the UI, one `generate` process per job in background
Blender); a TrajMaster server client (issue 11's HTTP API) is the next one. The job queue
(job_queue.py) hands requests over and follows their events by id, whatever the executor is.

The contract:
- `submit(request)` starts or queues one job and returns its id (raises BackendUnavailable when
  the executor cannot run anything, Busy when it takes no more jobs now);
- `poll()` never blocks and returns every event since the last call, each one a protocol event
  (docs/protocol.md) carrying `"job": id`; every job ends with exactly one `result`, `error` or
  `cancelled`; a `result` names files in the request's `out` folder (a remote executor fetches
  them there first, under the request's name, whole or not at all);
- `cancel(id)` asks one job to stop (`cancel()` all of them): a running job at its next step
  boundary, a queued one without running;
- `capacity` is how many jobs are worth handing over at once (the rest wait in the add-on's
  queue, where cancelling them is instant): 1 for one process per job, 2 for the local worker
  (the next job starts without waiting for Blender's timer), the replicas' queue for a server;
- `parallel` is how many of them run at the same time (the ETA of a batch): 1 locally;
- `stop()` ends everything (unregister, quit, another backend chosen).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

from ..backend.events import PROTOCOL

TERMINAL = ("result", "error", "cancelled")


class BackendUnavailable(RuntimeError):
    """The executor cannot run anything (missing interpreter, unreachable server)."""


class Busy(RuntimeError):
    """The executor takes no more jobs now."""


@dataclass
class Request:
    """One generation, as the backend's `generate` takes it: the job file, the take folder and
    the take's name (reserved by the add-on, so the backend never picks another)."""

    job: str
    out: str
    name: str | None = None
    png: bool = False
    engine: str | None = None

    def cli_args(self) -> list[str]:
        args = ["generate", self.job, "--out", self.out]
        if self.name:
            args += ["--name", self.name]
        if self.png:
            args.append("--png")
        if self.engine:
            args += ["--engine", self.engine]
        return args

    def worker_line(self, job_id: str) -> dict[str, Any]:
        line: dict[str, Any] = {"op": "generate", "id": job_id, "job": self.job, "out": self.out, "png": self.png}
        if self.name:
            line["name"] = self.name
        if self.engine:
            line["engine"] = self.engine
        return line


class Executor(Protocol):
    capacity: int
    parallel: int

    @property
    def busy(self) -> bool: ...

    def submit(self, request: Request) -> str: ...

    def poll(self) -> list[dict[str, Any]]: ...

    def cancel(self, job_id: str | None = None) -> bool: ...

    def stop(self) -> None: ...


def terminal_event(events: list[dict[str, Any]], job_id: str | None = None) -> dict[str, Any] | None:
    """The event that ended a job (the job `job_id`, or any), if it is among `events`."""
    return next(
        (e for e in reversed(events) if e.get("event") in TERMINAL and (job_id is None or e.get("job") == job_id)),
        None,
    )


def event(kind: str, **fields: Any) -> dict[str, Any]:
    """An event made up on the add-on's side (a crash noticed, a job cancelled before it ran),
    in the same form as the backend's."""
    return {"event": kind, "protocol": PROTOCOL, "time": round(time.time(), 3), **fields}
