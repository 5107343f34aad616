"""The backend process, seen from Blender: start it, feed it one job, read its events, stop it.

No bpy here (state is passed in), so this is tested without Blender (tests/test_supervisor.py).
The process is `python -m backend serve` (the worker, kept alive between jobs so the model loads
once) or, for background Blender, one `python -m backend generate` per job. Arguments are a list
and never go through a shell; the prompts travel inside the job file.

Reading is non-blocking for the caller: one thread per pipe feeds a queue (stdout) or a bounded
tail (stderr), and poll() only drains what has arrived. That keeps Blender's timer tick to
microseconds however slowly or badly the backend behaves. Blender's own extension manager
(bl_extension_utils.CommandBatch) follows the same shape.
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import queue
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..backend import events as protocol
from . import env_setup

WORKER = "worker"
ONESHOT = "oneshot"

TERMINAL = ("result", "error", "cancelled")
# About the process, not a job: the supervisor consumes these itself.
PROCESS_EVENTS = ("hello", "ready", "bye")

# Lines of stderr kept for error messages; the backend's full log is not needed here.
STDERR_TAIL = 200
# Non-event lines on stdout tolerated before the process is declared not to be our backend.
GARBAGE_LIMIT = 50


class BackendUnavailable(RuntimeError):
    """The backend cannot be started at all (missing interpreter, not executable)."""


class Busy(RuntimeError):
    """A job is already running; one at a time."""


@dataclass
class Request:
    """One generation, as the backend's `generate` takes it."""

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


@dataclass
class _Process:
    popen: subprocess.Popen
    lines: queue.Queue
    stderr: collections.deque
    stderr_lock: threading.Lock
    threads: list[threading.Thread]
    started: float
    hello: bool = False
    eof: bool = False
    garbage: list[str] = field(default_factory=list)
    garbage_count: int = 0


def _read_stdout(stream: Any, lines: queue.Queue) -> None:
    try:
        for raw in iter(stream.readline, b""):
            lines.put(raw.decode("utf-8", errors="replace"))
    except (OSError, ValueError):
        pass
    finally:
        lines.put(None)  # end of output


def _read_stderr(stream: Any, tail: collections.deque, lock: threading.Lock) -> None:
    try:
        for raw in iter(stream.readline, b""):
            with lock:
                tail.append(raw.decode("utf-8", errors="replace").rstrip())
    except (OSError, ValueError):
        pass


class Supervisor:
    """Owns at most one backend process and at most one job in it.

    poll() returns the job's events in protocol form (dicts with "event"), plus events it makes
    up itself when the backend fails to say how the job ended: an `error` with code
    `backend_crashed`, `backend_garbage` or `backend_silent`, or a `cancelled` after a kill.
    """

    def __init__(
        self,
        python: str,
        cwd: str | os.PathLike[str],
        *,
        mode: str = WORKER,
        env: dict[str, str] | None = None,
        cancel_grace_s: float = 10.0,
        hello_timeout_s: float = 60.0,
        engine_args: list[str] | tuple[str, ...] = (),
    ):
        if mode not in (WORKER, ONESHOT):
            raise ValueError(f"mode must be {WORKER!r} or {ONESHOT!r}")
        self.python = python
        self.cwd = Path(cwd)
        self.mode = mode
        self.env = env
        self.cancel_grace_s = cancel_grace_s
        self.hello_timeout_s = hello_timeout_s
        # Engine options from the preferences (--weights DIR, --memory MODE), given to `serve` and
        # to every `generate`: they are per process, not per job, so changing them means a new
        # Supervisor (runner._supervisor_for compares them).
        self.engine_args = tuple(engine_args)
        self._proc: _Process | None = None
        self._job_id: str | None = None
        self._cancel_deadline: float | None = None
        self._ids = itertools.count(1)

    # --- state ------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self._job_id is not None

    @property
    def job_id(self) -> str | None:
        return self._job_id

    @property
    def running(self) -> bool:
        """A backend process exists and has not exited."""
        return self._proc is not None and self._proc.popen.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.popen.pid if self._proc is not None else None

    def stderr_tail(self, lines: int = 20) -> list[str]:
        if self._proc is None:
            return []
        with self._proc.stderr_lock:
            return list(self._proc.stderr)[-lines:]

    # --- process ----------------------------------------------------------------------------

    def _spawn(self, args: list[str]) -> _Process:
        # The worker gets the same clean environment as Set Up Backend's own checks, so a backend
        # that passed Check Backend starts the same way here. User site-packages stay on: an
        # existing interpreter the user chose may rely on them.
        env = env_setup.python_env(self.env)
        kwargs: dict[str, Any] = {}
        if os.name == "nt":
            kwargs["creationflags"] = subprocess.CREATE_NO_WINDOW
        try:
            popen = subprocess.Popen(
                [self.python, "-m", "backend", *args],
                cwd=self.cwd,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                **kwargs,
            )
        except FileNotFoundError:
            raise BackendUnavailable(
                f"The backend Python {self.python} does not exist; set the backend Python in the add-on's "
                "preferences or the TRAJMASTER_PYTHON environment variable."
            ) from None
        except PermissionError:
            raise BackendUnavailable(
                f"The backend Python {self.python} cannot be run (permission denied); point the add-on's "
                "preferences or TRAJMASTER_PYTHON at a Python interpreter."
            ) from None
        except OSError as exc:
            raise BackendUnavailable(
                f"The backend Python {self.python} cannot be started ({exc.strerror or exc}); "
                "check the add-on's preferences or TRAJMASTER_PYTHON."
            ) from None
        lines: queue.Queue = queue.Queue()
        tail: collections.deque = collections.deque(maxlen=STDERR_TAIL)
        lock = threading.Lock()
        threads = [
            threading.Thread(target=_read_stdout, args=(popen.stdout, lines), daemon=True),
            threading.Thread(target=_read_stderr, args=(popen.stderr, tail, lock), daemon=True),
        ]
        for t in threads:
            t.start()
        return _Process(popen, lines, tail, lock, threads, time.monotonic())

    def _send(self, message: dict[str, Any]) -> bool:
        proc = self._proc
        if proc is None or proc.popen.stdin is None:
            return False
        try:
            proc.popen.stdin.write((json.dumps(message) + "\n").encode("utf-8"))
            proc.popen.stdin.flush()
            return True
        except (BrokenPipeError, OSError, ValueError):
            return False  # it died; poll() reports how

    def start(self) -> None:
        """Start the worker now (otherwise the first submit() does)."""
        if self.mode != WORKER:
            raise ValueError("only the worker is started ahead of a job")
        if not self.running:
            self._reap()
            self._proc = self._spawn(["serve", *self.engine_args])

    def submit(self, request: Request) -> str:
        """Start a job; returns its id. Raises Busy or BackendUnavailable."""
        if self.busy:
            raise Busy("A generation is already running; wait for it to finish or cancel it.")
        job_id = f"job-{os.getpid()}-{next(self._ids)}"
        if self.mode == WORKER:
            self.start()
            self._job_id = job_id
            self._send(request.worker_line(job_id))
        else:
            self._reap()
            self._proc = self._spawn([*request.cli_args(), *self.engine_args])
            self._job_id = job_id
        self._cancel_deadline = None
        return job_id

    def cancel(self) -> bool:
        """Ask the running job to stop at its next step; it is killed if it has not after the
        grace period. Returns False when there was nothing to cancel."""
        if not self.busy or self._proc is None:
            return False
        if self._cancel_deadline is None:
            self._cancel_deadline = time.monotonic() + self.cancel_grace_s
            if self.mode == WORKER:
                self._send({"op": "cancel", "id": self._job_id})
            else:
                self._interrupt()
        return True

    def _interrupt(self) -> None:
        try:
            if os.name == "nt":
                self._proc.popen.terminate()
            else:
                self._proc.popen.send_signal(signal.SIGINT)
        except OSError:
            pass

    def stop(self, timeout: float = 3.0) -> None:
        """End the backend process (shutdown request, then terminate, then kill). Idempotent."""
        proc = self._proc
        if proc is None:
            return
        if proc.popen.poll() is None:
            if self.mode == WORKER:
                self._send({"op": "shutdown"})
            try:
                if proc.popen.stdin:
                    proc.popen.stdin.close()  # end of input: the worker exits even if it missed the request
            except OSError:
                pass
            if self.mode == ONESHOT:
                self._interrupt()
            _wait_or_kill(proc.popen, timeout)
        self._reap()
        self._job_id = None
        self._cancel_deadline = None

    def _reap(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.popen.poll() is None:
            _wait_or_kill(proc.popen, 0.0)
        for stream in (proc.popen.stdin, proc.popen.stdout, proc.popen.stderr):
            try:
                if stream:
                    stream.close()
            except OSError:
                pass
        for t in proc.threads:
            t.join(timeout=1.0)
        self._proc = None

    # --- events -----------------------------------------------------------------------------

    def poll(self) -> list[dict[str, Any]]:
        """Everything that has happened since the last call; never blocks."""
        proc = self._proc
        if proc is None:
            return []
        out: list[dict[str, Any]] = []
        while True:
            try:
                line = proc.lines.get_nowait()
            except queue.Empty:
                break
            if line is None:
                proc.eof = True
                continue
            event = protocol.parse_line(line)
            if event is None:
                if line.strip():
                    proc.garbage_count += 1
                    if len(proc.garbage) < 3:
                        proc.garbage.append(line.strip()[:200])
                continue
            self._take(event, out)
            if self._proc is None:  # a terminal event ended a one-shot process
                return out
        out.extend(self._check_health())
        return out

    def _take(self, event: dict[str, Any], out: list[dict[str, Any]]) -> None:
        proc = self._proc
        kind = event["event"]
        if kind == "hello":
            proc.hello = True
        if not self.busy or kind in PROCESS_EVENTS:
            return
        if self.mode == WORKER and event.get("job") not in (None, self._job_id):
            return  # a late event of a job we already gave up on
        if self.mode == WORKER and kind == "error" and event.get("job") is None and event.get("code") == "bad_request":
            return  # about a line we sent outside a job; not this job's outcome
        out.append(event)
        if kind in TERMINAL:
            self._job_id = None
            self._cancel_deadline = None
            if self.mode == ONESHOT:
                _wait_or_kill(proc.popen, 5.0)
                self._reap()

    def _check_health(self) -> list[dict[str, Any]]:
        proc = self._proc
        now = time.monotonic()
        if proc.garbage_count >= GARBAGE_LIMIT and not proc.hello:
            return self._fail(
                "backend_garbage",
                f"{self.python} printed output that is not TrajMaster events (first line: {proc.garbage[0]!r}); "
                "point the backend Python at the environment set up for TrajMaster.",
            )
        exited = proc.popen.poll() is not None and proc.eof
        if exited:
            code = proc.popen.returncode
            # The process is gone, so its stderr ends at once: let the reader take the last
            # lines, which say why it stopped.
            proc.threads[1].join(timeout=0.5)
            if not self.busy:
                self._reap()  # a worker that died between jobs is restarted by the next submit()
                return []
            if self._cancel_deadline is not None:
                return self._end("cancelled", message="Cancelled; no video was written.")
            if proc.garbage and not proc.hello:
                return self._fail(
                    "backend_garbage",
                    f"{self.python} printed output that is not TrajMaster events (first line: {proc.garbage[0]!r}) "
                    f"and exited with code {code}; point the backend Python at the environment set up for TrajMaster.",
                )
            return self._fail("backend_crashed", self._crash_message(code))
        if not self.busy:
            return []
        if self._cancel_deadline is not None and now > self._cancel_deadline:
            self.stop(timeout=1.0)
            return [_event("cancelled", message="Cancelled; the backend did not stop in time and was ended.")]
        if not proc.hello and now - proc.started > self.hello_timeout_s:
            return self._fail(
                "backend_silent",
                f"The backend did not start within {self.hello_timeout_s:.0f} s"
                + (f" (its output was not TrajMaster events: {proc.garbage[0]!r})" if proc.garbage else "")
                + "; check the backend Python in the add-on's preferences.",
            )
        return []

    def _crash_message(self, code: int | None) -> str:
        last = next((line for line in reversed(self.stderr_tail(40)) if line.strip()), "")
        how = f"exit code {code}" if code is not None and code >= 0 else f"signal {-(code or 0)}"
        detail = f" Its last message: {last[:300]}" if last else ""
        return f"The backend stopped unexpectedly ({how}) before finishing the take.{detail}"

    def _fail(self, code: str, message: str) -> list[dict[str, Any]]:
        tail = self.stderr_tail(20)
        self.stop(timeout=1.0)
        return [_event("error", code=code, message=message, exit_code=1, stderr_tail=tail)]

    def _end(self, kind: str, **fields: Any) -> list[dict[str, Any]]:
        self.stop(timeout=1.0)
        return [_event(kind, **fields)]

    def wait(self, timeout: float | None = None, interval: float = 0.05) -> list[dict[str, Any]]:
        """Block until the running job ends (background Blender); returns all its events."""
        deadline = None if timeout is None else time.monotonic() + timeout
        events: list[dict[str, Any]] = []
        while self.busy:
            events.extend(self.poll())
            if not self.busy:
                break
            if deadline is not None and time.monotonic() > deadline:
                self.cancel()
                deadline = None
            time.sleep(interval)
        return events


def _event(kind: str, **fields: Any) -> dict[str, Any]:
    return {"event": kind, "protocol": protocol.PROTOCOL, "time": round(time.time(), 3), **fields}


def _wait_or_kill(popen: subprocess.Popen, timeout: float) -> None:
    try:
        popen.wait(timeout=timeout)
        return
    except subprocess.TimeoutExpired:
        pass
    popen.terminate()
    try:
        popen.wait(timeout=1.0)
        return
    except subprocess.TimeoutExpired:
        pass
    popen.kill()
    popen.wait()


def terminal_event(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The event that ended a job, if it is among `events`."""
    return next((e for e in reversed(events) if e.get("event") in TERMINAL), None)
