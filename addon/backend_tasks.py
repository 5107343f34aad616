"""The add-on's other requests to the backend (prompt help, contact sheets), and following one.

No bpy here (tests/test_backend_tasks.py). Takes go through the job queue (executor.Request);
these two are single answers the add-on waits for on its own:

- `ExpandRequest`: prompt help. On the local worker (the `expand` op), so the prompt model is
  loaded once and stays loaded, or as the one-shot `python -m backend expand` in background
  Blender. The worker serves requests in order, so an expansion waits for a take that is
  running; the caller offers the offline fallback instead then (addon/prompt_help.py).
- `ContactSheetRequest`: `python -m backend contact-sheet`, always a one-shot process in the
  local backend Python: it reads the takes' files, which are in this computer's take folder
  whatever made them (a server's takes are fetched there).

Both have the two shapes supervisor.Supervisor sends (cli_args for a one-shot process,
worker_line for the worker). A one-shot supervisor for them gets no engine arguments (a request
carries its own flags). A `Task` submits one request and follows its events by id: on the
shared worker it claims them (Supervisor.claim), so the job queue's poll() never sees them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .executor import TERMINAL
from .executor import event as _event
from .supervisor import ONESHOT, Supervisor


@dataclass
class ExpandRequest:
    """One prompt expansion: `seed` is the candidate number (Retry asks for the next one)."""

    text: str
    kind: str = "entity"
    seed: int = 0
    weights: str | None = None  # one-shot only: the worker was started with its own --weights

    def cli_args(self) -> list[str]:
        args = ["expand", "--kind", self.kind, "--seed", str(self.seed)]
        if self.weights:
            args += ["--weights", self.weights]
        return [*args, "--", self.text]  # "--": a description may start with a dash

    def worker_line(self, job_id: str) -> dict[str, Any]:
        return {"op": "expand", "id": job_id, "text": self.text, "kind": self.kind, "seed": self.seed}


@dataclass
class ContactSheetRequest:
    """The takes' videos side by side in one video at `out` (which must not exist)."""

    takes: list[str]
    out: str
    labels: list[str] = field(default_factory=list)

    def cli_args(self) -> list[str]:
        args = ["contact-sheet", *self.takes, "--out", self.out]
        if self.labels:
            args += ["--labels", *self.labels]
        return args

    def worker_line(self, job_id: str) -> dict[str, Any]:
        raise ValueError("a contact sheet is made by a one-shot process, not by the worker")


def oneshot(python: str, cwd: Any, env: dict[str, str] | None = None) -> Supervisor:
    """A supervisor for one helper command at a time, in the backend Python `python`."""
    return Supervisor(python, cwd, mode=ONESHOT, env=env)


class Task:
    """One request, submitted at once and followed to its end by poll() (never blocks) or wait().

    `own`: the supervisor exists for this task only and is stopped when it ends (a one-shot
    process); otherwise it is the shared worker, which keeps running. The stage, message and
    step/total follow the progress events; `end` is the event that ended it (`result`, `error`,
    `cancelled`, or an `error` made up here when the backend forgot the request: a worker
    restarted for other settings answers nothing about the requests of the one before).
    """

    def __init__(self, supervisor: Supervisor, request: Any, *, own: bool = False):
        self.supervisor = supervisor
        self.request = request
        self.own = own
        self.id = supervisor.submit(request)  # raises BackendUnavailable, Busy
        supervisor.claim(self.id)
        self.started = time.monotonic()
        self.stage = ""
        self.message = ""
        self.step = 0
        self.total = 0
        self.end: dict[str, Any] | None = None

    @property
    def done(self) -> bool:
        return self.end is not None

    @property
    def result(self) -> dict[str, Any] | None:
        return self.end if self.end is not None and self.end.get("event") == "result" else None

    @property
    def failure(self) -> str:
        """The one sentence that says why it gave no result ("" while running or after a result)."""
        if self.end is None or self.result is not None:
            return ""
        text = str(self.end.get("message") or "The backend gave no answer.")
        hint = self.end.get("hint")
        return text + (f" {hint}" if hint and hint not in text else "")

    def poll(self) -> bool:
        """Take the events since the last call; True when something changed."""
        if self.end is not None:
            return False
        events = self.supervisor.poll_job(self.id)
        for event in events:
            kind = event.get("event")
            if kind == "stage":
                self.stage, self.message = str(event.get("stage", "")), str(event.get("message", ""))
                self.step = self.total = 0
            elif kind == "progress":
                self.step, self.total = int(event.get("step", 0)), int(event.get("total", 0))
            elif kind in TERMINAL:
                self._finish(event)
                return True
        if self.end is None and self.id not in self.supervisor.job_ids:
            self._finish(
                _event(
                    "error",
                    job=self.id,
                    code="backend_lost",
                    message="The backend was restarted before it answered; try again.",
                )
            )
            return True
        return bool(events)

    def _finish(self, event: dict[str, Any]) -> None:
        self.end = event
        if self.own:
            self.supervisor.stop(timeout=1.0)

    def cancel(self) -> None:
        """Ask it to stop (a one-shot process gets SIGINT and answers `cancelled`); on the shared
        worker an expansion cannot be stopped, so it is only forgotten."""
        if self.end is not None:
            return
        if self.own:
            self.supervisor.cancel(self.id)
        else:
            self._finish(_event("cancelled", job=self.id, message="Stopped waiting for the backend."))

    def abandon(self) -> None:
        """Stop following it at once: a one-shot process is ended (it leaves nothing partial), an
        answer of the shared worker is dropped when it comes."""
        if self.end is None:
            self._finish(_event("cancelled", job=self.id, message="Stopped waiting for the backend."))
        elif self.own:
            self.supervisor.stop(timeout=1.0)

    def wait(self, timeout: float | None = None, interval: float = 0.02) -> dict[str, Any]:
        """Block until it ends (background Blender, tests); returns the ending event. Past
        `timeout` it is cancelled (a one-shot process gets a few seconds to say so)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.end is None:
            self.poll()
            if self.end is not None:
                break
            now = time.monotonic()
            if deadline is not None and now > deadline:
                self.cancel()
                deadline = None
                give_up = now + 5.0
            elif deadline is None and timeout is not None and now > give_up:
                self._finish(
                    _event("error", job=self.id, code="timeout", message="The backend did not answer in time.")
                )
            time.sleep(interval)
        return self.end
