"""`python -m backend serve`: a long-lived worker that keeps engines loaded between jobs.

Requests arrive as JSON lines on stdin (docs/protocol.md). A reader thread takes them in so
that a `cancel` acts while a job runs; everything else is queued and served in order on the
main thread.

The worker never goes deaf: every line is answered (a malformed one with exactly one
`bad_request`, whatever its bytes), and it exits when it can no longer be reached:
- end of input (the client closed the pipe, or Blender died): the running job is cancelled at
  its next step boundary and the worker exits; should the job not stop within EXIT_GRACE_S,
  the worker exits anyway (a take is whole or absent whatever stops the process: takes.py);
- the parent process died but the pipe stays open (another process inherited its end): the
  worker notices it was reparented and does the same;
- the reader thread fails for any reason (stdin unreadable): an `error` event, `bye`, exit 1.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import queue
import sys
import threading
import time
from typing import Any

from . import __version__, interrupts
from .engines import ENGINE_NAMES, EngineCache
from .errors import EXIT_CANCELLED, EXIT_INTERNAL, EXIT_OK, UserError, clip
from .events import EventStream
from .generate import run_job
from .outcome import report_outcome
from .progress import Cancelled, Report
from .prompt_help import commands as prompt_help

GENERATE_FIELDS = {"op", "id", "job", "out", "name", "png", "engine"}
# A request is a few hundred bytes; a longer line is refused (and not kept in memory).
MAX_REQUEST_BYTES = 1 << 20
MAX_ID_CHARS = 200
# After end of input, how long the running job has to stop before the worker exits anyway.
EXIT_GRACE_S = 3.0
# How often the worker checks that its parent is still alive.
PARENT_POLL_S = 0.5


class _Stop:
    """Queued to end the main loop: `code` is the exit status, `message` an error event to send."""

    def __init__(self, code: int = EXIT_OK, message: str | None = None):
        self.code = code
        self.message = message


class _Current:
    """The job being served, so the reader thread can cancel it, and the queued jobs already
    cancelled (a cancel can arrive before its job leaves the queue; dropping it would run a job
    the user stopped). Queued jobs are known by a ticket, not their id: two jobs may share an id,
    and nothing about one job is ever left behind to affect a later one."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.id: str | None = None
        self.cancel: threading.Event | None = None
        self.queued: dict[int, str] = {}
        self.cancelled_early: set[int] = set()
        self._tickets = itertools.count()

    def enqueue(self, job_id: str) -> int:
        with self.lock:
            ticket = next(self._tickets)
            self.queued[ticket] = job_id
            return ticket

    def start(self, ticket: int, job_id: str, cancel: threading.Event) -> None:
        with self.lock:
            self.queued.pop(ticket, None)
            self.id, self.cancel = job_id, cancel
            if ticket in self.cancelled_early:
                self.cancelled_early.discard(ticket)
                cancel.set()

    def finish(self) -> None:
        with self.lock:
            self.id, self.cancel = None, None

    def cancel_if(self, job_id: str | None) -> None:
        """Cancel that job, running or queued; None cancels the running job and every queued one."""
        with self.lock:
            self.cancelled_early |= {t for t, i in self.queued.items() if job_id is None or i == job_id}
            if self.cancel is not None and (job_id is None or job_id == self.id):
                self.cancel.set()


def _text_problem(request: dict[str, Any], key: str, required: bool) -> str | None:
    value = request.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        return f"'{key}' must be a non-empty string"
    if "\0" in value:
        return f"'{key}' must not contain NUL characters"
    return None


def request_problem(request: dict[str, Any]) -> str | None:
    """What is wrong with a request (None: it can be served); every field is checked before use."""
    op = request["op"]
    if op in ("ping", "shutdown"):
        return None
    if op == "cancel":
        if request.get("id") is not None and not isinstance(request["id"], str):
            return "'id' of a cancel must be a string"
        return None
    if op == "expand":
        problem = prompt_help.request_problem(request)
        return clip(problem) if problem else None
    if op != "generate":
        return f"unknown op {clip(repr(op))}; use generate, expand, cancel, ping or shutdown"
    unknown = sorted(set(request) - GENERATE_FIELDS)
    if unknown:
        return f"unknown fields {', '.join(clip(repr(k), 40) for k in unknown[:5])}"
    for key, required in (("id", True), ("job", True), ("out", True), ("name", False)):
        problem = _text_problem(request, key, required)
        if problem:
            return problem
    if len(request["id"]) > MAX_ID_CHARS:
        return f"'id' must be at most {MAX_ID_CHARS} characters"
    if "png" in request and not isinstance(request["png"], bool):
        return "'png' must be true or false"
    engine = request.get("engine")
    if engine is not None and engine not in ENGINE_NAMES:
        return f"'engine' must be one of {', '.join(ENGINE_NAMES)}"
    return None


class _Reader:
    """Reads stdin as bytes, one request a line; answers what cannot be served at once."""

    def __init__(self, stream: EventStream, requests: queue.Queue, current: _Current):
        self.stream, self.requests, self.current = stream, requests, current

    def run(self) -> None:
        try:
            # Its own reader on a copy of descriptor 0: sys.stdin's buffer, blocked in a read by
            # this daemon thread, would abort the interpreter's shutdown (its lock is held).
            with open(os.dup(sys.stdin.fileno()), "rb", closefd=True) as stdin:
                self._read(stdin)
        except BaseException as exc:  # nothing may leave the worker deaf: stop it instead
            self.current.cancel_if(None)
            self.requests.put(
                _Stop(
                    EXIT_INTERNAL, f"The worker can no longer read requests ({type(exc).__name__}: {clip(repr(exc))})."
                )
            )
            return
        gone("end of input", self.current, self.requests, self.stream)

    def _read(self, stdin: Any) -> None:
        while True:
            raw = stdin.readline(MAX_REQUEST_BYTES + 1)
            if not raw:
                return
            if len(raw) > MAX_REQUEST_BYTES and not raw.endswith(b"\n"):
                while raw and not raw.endswith(b"\n"):  # skip the rest of the line
                    raw = stdin.readline(MAX_REQUEST_BYTES)
                self._bad(f"the line is longer than {MAX_REQUEST_BYTES} bytes")
                continue
            try:
                self._take(raw)
            except Exception as exc:  # a bug here must cost one line, not the worker
                self._bad(f"it could not be read ({type(exc).__name__})")

    def _take(self, raw: bytes) -> None:
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            self._bad("it is not UTF-8 text")
            return
        if not line:
            return
        try:
            request = json.loads(line)
        except RecursionError:
            self._bad("it is nested too deeply")
            return
        except ValueError as exc:
            self._bad(clip(str(exc), 120))
            return
        if not isinstance(request, dict) or not isinstance(request.get("op"), str):
            self._bad("a request is a JSON object with an 'op'")
            return
        problem = request_problem(request)
        if problem:
            job_id = request.get("id") if request["op"] in ("generate", "expand") else None
            valid_id = isinstance(job_id, str) and 0 < len(job_id) <= MAX_ID_CHARS
            self._bad(problem, job=job_id if valid_id else None, prefix="Ignored a request")
            return
        if request["op"] == "cancel":
            self.current.cancel_if(request.get("id"))
            return
        if request["op"] == "generate":
            request["_ticket"] = self.current.enqueue(request["id"])
        self.requests.put(request)

    def _bad(self, problem: str, job: str | None = None, prefix: str = "Ignored a malformed request") -> None:
        fields: dict[str, Any] = {"job": job} if job is not None else {}
        self.stream.emit("error", code="bad_request", message=f"{prefix}: {problem}.", exit_code=2, **fields)


def gone(why: str, current: _Current, requests: queue.Queue, stream: EventStream) -> None:
    """The client can no longer be reached: stop the running job and every queued one, and exit;
    if the job does not stop within EXIT_GRACE_S, exit anyway."""
    current.cancel_if(None)
    requests.put(_Stop(EXIT_OK))

    def force() -> None:
        time.sleep(EXIT_GRACE_S)
        stream.emit_last("bye", reason=why)
        os._exit(EXIT_CANCELLED)

    threading.Thread(target=force, daemon=True).start()


def _watch_parent(parent: int, current: _Current, requests: queue.Queue, stream: EventStream) -> None:
    """A worker whose parent died is reparented (to init or a subreaper); the pipe's end of input
    may never come when another process inherited it, so the parent is watched too."""
    while True:
        time.sleep(PARENT_POLL_S)
        if os.getppid() != parent:
            gone("the parent process exited", current, requests, stream)
            return


def serve(args: argparse.Namespace, stream: EventStream) -> int:
    requests: queue.Queue = queue.Queue()
    current = _Current()

    def on_signal() -> None:
        current.cancel_if(None)
        requests.put(_Stop(EXIT_OK))

    interrupts.on_signal(on_signal)
    # The parent as it was when the process started (or now, when serve runs in-process).
    parent = interrupts.parent_pid or os.getppid()
    loading_report = Report(stream)
    engines = EngineCache(args, loading_report)
    expander = prompt_help.expander_for(args)  # loads the prompt model at the first expand only
    stream.emit("hello", pid=os.getpid(), version=__version__, engine=None)
    stream.emit("ready")
    threading.Thread(target=_Reader(stream, requests, current).run, daemon=True, name="requests").start()
    if os.name == "posix":
        threading.Thread(target=_watch_parent, args=(parent, current, requests, stream), daemon=True).start()
    code = EXIT_OK
    try:
        while True:
            request = requests.get()
            if isinstance(request, _Stop):
                if request.message:
                    stream.emit("error", code="internal", message=request.message, exit_code=request.code)
                code = request.code
                break
            if request["op"] == "shutdown":
                break
            if request["op"] == "expand":
                prompt_help.serve_expand(expander, request, stream)
                stream.emit("ready")
                continue
            if request["op"] == "ping":
                stream.emit("ready")
                continue
            _serve_one(request, args, engines, stream, current)
            stream.emit("ready")
    finally:
        engines.close()
        expander.close()
        stream.emit("bye")
    return code


def _serve_one(
    request: dict[str, Any], args: argparse.Namespace, engines: EngineCache, stream: EventStream, current: _Current
) -> None:
    report = Report(stream, job_id=request["id"])
    current.start(request["_ticket"], request["id"], report.cancel)
    used: list[str] = []

    def get_engine(name: str) -> Any:
        used.append(name)
        return engines.get(name, report)

    try:
        result = run_job(
            request["job"],
            request["out"],
            get_engine,
            report,
            name=request.get("name"),
            png=bool(request.get("png", False)),
            engine_name=request.get("engine"),
        )
        report_outcome(report, None, result)
    except Exception as exc:  # every failure becomes this job's event; the worker stays up
        if not isinstance(exc, (UserError, Cancelled)):
            # An engine that failed mid-job (out of memory, a crash) may hold a broken state:
            # reload it for the next job rather than trusting it.
            for name in used:
                engines.drop(name)
        report_outcome(report, exc)
    finally:
        current.finish()
    sys.stderr.flush()
