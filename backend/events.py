"""The progress protocol: JSON lines from the backend to whoever started it.

Every line is one JSON object with "event" (its kind), "protocol" (this version) and "time"
(Unix seconds). The add-on's supervisor, the CLI's own tests and any farm read only this; the
vocabulary lives here and in docs/protocol.md.

Kinds:
  hello      {pid, engine?, version}                     the process is up
  stage      {stage, message}                            validating, loading, encoding, sampling, decoding, writing;
                                                         queued (team server)
  progress   {step, total, fraction, eta_s, stage}       per step / per frame
  heartbeat  {stage}                                     the process is alive (long stages)
  warning    {code, message, entity?, slots?}            a pose check finding or a soft problem (memory_fallback;
                                                         speed_fallback with option; replica_lost from the team server)
  result     {video, sidecar, png_dir?, frames, fps, seconds, files?}
  error      {code, message, hint?, exit_code}          one clear sentence, never a traceback (job_lost and
                                                         replica_lost from the team server)
  cancelled  {message}
  ready      {}                                          worker: waiting for the next job
  bye        {}                                          worker: exiting
  log        {message, replica?}                         informational

Over the team server's HTTP stream (docs/server.md) every event also has `job` and `seq` (its
number in the job's log, from 1), so a client can resume after the last one it saw.

The stream is protected from stray prints: install() moves the process's real stdout to a
private descriptor for events and points descriptor 1 at stderr, so a library that prints (in
Python or in C) cannot corrupt the protocol.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import IO, Any

PROTOCOL = 1
KINDS = ("hello", "stage", "progress", "heartbeat", "warning", "result", "error", "cancelled", "ready", "bye", "log")


class EventStream:
    """Writes events as JSON lines to one file object; thread safe (heartbeats come from a thread)."""

    def __init__(self, out: IO[str]):
        self._out = out
        self._lock = threading.Lock()

    def emit(self, kind: str, **fields: Any) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown event kind {kind!r}")
        line = json.dumps(
            {"event": kind, "protocol": PROTOCOL, "time": round(time.time(), 3), **fields},
            default=_jsonable,
            allow_nan=False,
        )
        with self._lock:
            try:
                self._out.write(line + "\n")
                self._out.flush()
            except (BrokenPipeError, ValueError):
                pass  # the reader went away; the work itself decides whether to go on

    def emit_last(self, kind: str, **fields: Any) -> None:
        """The last event before the process exits at once (os._exit): does not wait more than a
        second for a writer that holds the lock (it may be the thread being abandoned)."""
        line = json.dumps({"event": kind, "protocol": PROTOCOL, "time": round(time.time(), 3), **fields}, default=str)
        locked = self._lock.acquire(timeout=1.0)
        try:
            self._out.write(line + "\n")
            self._out.flush()
        except (OSError, ValueError):
            pass
        finally:
            if locked:
                self._lock.release()

    def write_raw(self, text: str) -> None:
        """A whole document instead of events (doctor/bench with --json)."""
        with self._lock:
            self._out.write(text)
            self._out.flush()


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "__fspath__"):
        return os.fspath(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def install() -> EventStream:
    """Take over stdout for events (see module doc) and return the stream."""
    sys.stdout.flush()
    private = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace", closefd=True)
    return EventStream(os.fdopen(private, "w", buffering=1, encoding="utf-8", closefd=True))


# An event line is a few hundred bytes; a longer one is not an event (and is not parsed).
MAX_EVENT_CHARS = 1 << 20


def parse_line(line: str | bytes) -> dict[str, Any] | None:
    """A line read from a backend -> event dict, or None for anything that is not an event.

    Never raises, whatever the line holds (not UTF-8, nested too deeply, numbers with thousands
    of digits): the add-on's supervisor reads every line a backend prints through this."""
    if isinstance(line, bytes):
        line = line.decode("utf-8", "replace")
    if not isinstance(line, str):
        return None
    line = line.strip()
    if not line.startswith("{") or len(line) > MAX_EVENT_CHARS:
        return None
    try:
        event = json.loads(line)
    except (ValueError, RecursionError):  # JSONDecodeError, the int digit limit, deep nesting
        return None
    if not isinstance(event, dict) or not isinstance(event.get("event"), str) or event["event"] not in KINDS:
        return None
    return event


class Heartbeat:
    """Emits a heartbeat every `interval` seconds while a long stage runs (model loading)."""

    def __init__(self, stream: EventStream, stage: str, interval: float = 5.0):
        self._stream, self._stage, self._interval = stream, stage, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._stream.emit("heartbeat", stage=self._stage)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)


class Eta:
    """Remaining-time estimate from the steps done so far (the first step is not counted: it pays
    for warm-up and compilation)."""

    def __init__(self, total: int):
        self.total = total
        self._t0: float | None = None
        self._done0 = 0

    def update(self, done: int) -> float | None:
        now = time.monotonic()
        if self._t0 is None:
            self._t0, self._done0 = now, done
            return None
        rate = (now - self._t0) / max(done - self._done0, 1)
        return round(rate * (self.total - done), 1)
