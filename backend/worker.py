"""`python -m backend serve`: a long-lived worker that keeps engines loaded between jobs.

Requests arrive as JSON lines on stdin (docs/protocol.md). A reader thread takes them in so
that a `cancel` acts while a job runs; everything else is queued and served in order on the
main thread. End of input means the client (Blender) is gone: the running job is cancelled at
its next step boundary and the worker exits, so it never outlives Blender.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import sys
import threading
from typing import Any

from . import __version__
from .engines import EngineCache
from .errors import EXIT_OK
from .events import EventStream
from .generate import run_job
from .outcome import report_outcome
from .progress import Report
from .prompt_help import commands as prompt_help

_SHUTDOWN = {"op": "shutdown"}
GENERATE_FIELDS = {"op", "id", "job", "out", "name", "png", "engine"}


class _Current:
    """The job being served, so the reader thread can cancel it, and the queued jobs already
    cancelled (a cancel can arrive before its job leaves the queue; dropping it would run a job
    the user stopped)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.id: str | None = None
        self.cancel: threading.Event | None = None
        self.queued: set[str] = set()
        self.cancelled_early: set[str] = set()

    def enqueue(self, job_id: object) -> None:
        if isinstance(job_id, str):
            with self.lock:
                self.queued.add(job_id)

    def start(self, job_id: str, cancel: threading.Event) -> None:
        with self.lock:
            self.queued.discard(job_id)
            self.id, self.cancel = job_id, cancel
            if job_id in self.cancelled_early:
                self.cancelled_early.discard(job_id)
                cancel.set()

    def finish(self) -> None:
        with self.lock:
            self.id, self.cancel = None, None

    def cancel_if(self, job_id: str | None) -> None:
        """Cancel that job, running or queued; None cancels the running job and every queued one."""
        with self.lock:
            if job_id is None:
                self.cancelled_early |= self.queued
            elif job_id in self.queued:
                self.cancelled_early.add(job_id)
            if self.cancel is not None and (job_id is None or job_id == self.id):
                self.cancel.set()


def _read_requests(stream: EventStream, requests: queue.Queue, current: _Current) -> None:
    for raw in sys.stdin:
        line = raw.strip()
        if not line:
            continue
        try:
            request = json.loads(line)
            if not isinstance(request, dict) or not isinstance(request.get("op"), str):
                raise ValueError("a request is a JSON object with an 'op'")
        except ValueError as exc:
            stream.emit("error", code="bad_request", message=f"Ignored a malformed request ({exc}).", exit_code=2)
            continue
        if request["op"] == "cancel":
            current.cancel_if(request.get("id"))
        else:
            if request["op"] == "generate":
                current.enqueue(request.get("id"))
            requests.put(request)
    current.cancel_if(None)
    requests.put(_SHUTDOWN)


def _request_problem(request: dict[str, Any]) -> str | None:
    if request["op"] != "generate":
        return f"unknown op {request['op']!r}; use generate, expand, cancel, ping or shutdown"
    unknown = set(request) - GENERATE_FIELDS
    if unknown:
        return f"unknown fields {sorted(unknown)}"
    for key in ("id", "job", "out"):
        if not isinstance(request.get(key), str) or not request[key]:
            return f"'{key}' must be a non-empty string"
    if "png" in request and not isinstance(request["png"], bool):
        return "'png' must be true or false"
    return None


def serve(args: argparse.Namespace, stream: EventStream) -> int:
    requests: queue.Queue = queue.Queue()
    current = _Current()

    def on_signal(signum: int, frame: object) -> None:
        current.cancel_if(None)
        requests.put(_SHUTDOWN)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    loading_report = Report(stream)
    engines = EngineCache(args, loading_report)
    expander = prompt_help.expander_for(args)  # loads the prompt model at the first expand only
    threading.Thread(target=_read_requests, args=(stream, requests, current), daemon=True).start()
    stream.emit("hello", pid=os.getpid(), version=__version__, engine=None)
    stream.emit("ready")
    try:
        while True:
            request = requests.get()
            op = request["op"]
            if op == "shutdown":
                break
            if op == "ping":
                stream.emit("ready")
                continue
            if op == "expand":
                prompt_help.serve_expand(expander, request, stream)
                stream.emit("ready")
                continue
            problem = _request_problem(request)
            if problem:
                stream.emit(
                    "error",
                    code="bad_request",
                    message=f"Ignored a request: {problem}.",
                    exit_code=2,
                    job=request.get("id"),
                )
                stream.emit("ready")
                continue
            _serve_one(request, args, engines, stream, current)
            stream.emit("ready")
    finally:
        engines.close()
        expander.close()
        stream.emit("bye")
    return EXIT_OK


def _serve_one(
    request: dict[str, Any], args: argparse.Namespace, engines: EngineCache, stream: EventStream, current: _Current
) -> None:
    report = Report(stream, job_id=request["id"])
    current.start(request["id"], report.cancel)
    try:
        result = run_job(
            request["job"],
            request["out"],
            lambda name: engines.get(name, report),
            report,
            name=request.get("name"),
            png=bool(request.get("png", False)),
            engine_name=request.get("engine"),
        )
        report_outcome(report, None, result)
    except Exception as exc:  # every failure becomes this job's event; the worker stays up
        from .errors import UserError
        from .progress import Cancelled

        if not isinstance(exc, (UserError, Cancelled)):
            # An engine that failed mid-job (out of memory, a crash) may hold a broken state:
            # reload it for the next job rather than trusting it.
            engines.drop(request.get("engine") or _job_engine(request["job"]))
        report_outcome(report, exc)
    finally:
        current.finish()


def _job_engine(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return str(json.load(f).get("engine", ""))
    except (OSError, ValueError, AttributeError):
        return ""
