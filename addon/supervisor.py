"""The backend process, seen from Blender: start it, feed it jobs, read their events, stop it.

No bpy here (state is passed in), so this is tested without Blender (tests/test_supervisor.py).
The process is `python -m backend serve` (the worker, kept alive between jobs so the model loads
once; it runs the jobs it is sent one after another, in order) or, for background Blender, one
`python -m backend generate` per job. Arguments are a list and never go through a shell; the
prompts travel inside the job file. It is the local executor of executor.py: the job queue
(job_queue.py) follows each job's events by id.

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
from .executor import TERMINAL, BackendUnavailable, Busy, Request, terminal_event
from .executor import event as _event

__all__ = ["ONESHOT", "TERMINAL", "WORKER", "BackendUnavailable", "Busy", "Request", "Supervisor", "terminal_event"]

WORKER = "worker"
ONESHOT = "oneshot"

# About the process, not a job: the supervisor consumes these itself.
PROCESS_EVENTS = ("hello", "ready", "bye")

# Lines of stderr kept for error messages; the backend's full log is not needed here.
STDERR_TAIL = 200
# Non-event lines on stdout tolerated before the process is declared not to be our backend.
GARBAGE_LIMIT = 50
# Jobs handed to the worker at once: the one it runs and the next, queued in the worker itself so
# that it starts without waiting for Blender's timer. The rest wait in the add-on's queue, where a
# cancel is instant (a job queued in the worker is only confirmed cancelled when its turn comes).
WORKER_CAPACITY = 2


@dataclass
class _Job:
    id: str
    request: Request
    cancel_at: float | None = None  # when a cancel was asked


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
    """Owns at most one backend process and the jobs sent to it.

    poll() returns the jobs' events in protocol form (dicts with "event"), each stamped with its
    job's id ("job"), plus events it makes up itself when the backend fails to say how a job
    ended: an `error` with code `backend_crashed`, `backend_garbage` or `backend_silent` (for
    every job the process held), or a `cancelled` after a kill.

    The worker serves its jobs in the order they were sent, so the oldest unfinished job is the
    one running (the head). A cancelled job that has not ended `cancel_grace_s` after it was
    cancelled *and* became the head is ended with the process; the other jobs the process held,
    not cancelled, are sent again to a new worker (a cancel never loses another take).
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
        capacity: int | None = None,
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
        # How many jobs the job queue hands over at once (executor.py); one process runs one job.
        self.capacity = 1 if mode == ONESHOT else (capacity or WORKER_CAPACITY)
        self.parallel = 1  # one process runs one job at a time
        self._proc: _Process | None = None
        self._jobs: dict[str, _Job] = {}  # in the order sent: the first one is running
        self._claimed: dict[str, list[dict[str, Any]]] = {}  # job id -> its events not yet taken (claim())
        self._unclaimed: list[dict[str, Any]] = []  # events for poll()
        self._head_since = 0.0
        self._ids = itertools.count(1)

    # --- state ------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return bool(self._jobs)

    @property
    def job_id(self) -> str | None:
        """The job running now (the oldest one not finished)."""
        return next(iter(self._jobs), None)

    @property
    def job_ids(self) -> list[str]:
        """Every job not finished, in the order the process serves them."""
        return list(self._jobs)

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
        """Start a job (the worker queues it behind the ones it has); returns its id. Raises
        BackendUnavailable, or Busy when a one-shot process is already running a job."""
        if self.mode == ONESHOT and self.busy:
            raise Busy("A generation is already running; wait for it to finish or cancel it.")
        job_id = f"job-{os.getpid()}-{next(self._ids)}"
        if self.mode == WORKER:
            self.start()
            self._add(job_id, request)
            self._send(request.worker_line(job_id))
        else:
            self._reap()
            self._proc = self._spawn([*request.cli_args(), *self.engine_args])
            self._add(job_id, request)
        return job_id

    def _add(self, job_id: str, request: Request) -> None:
        if not self._jobs:
            self._head_since = time.monotonic()
        self._jobs[job_id] = _Job(job_id, request)

    def _forget(self, job_id: str) -> None:
        head = self.job_id
        self._jobs.pop(job_id, None)
        if job_id == head:
            self._head_since = time.monotonic()

    def cancel(self, job_id: str | None = None) -> bool:
        """Ask a job (None: every job) to stop: the running one at its next step, a queued one
        without running. A job that has not ended after the grace period is ended with the
        process. Returns False when there was nothing to cancel."""
        if self._proc is None:
            return False
        jobs = list(self._jobs.values()) if job_id is None else [self._jobs[job_id]] if job_id in self._jobs else []
        for job in jobs:
            if job.cancel_at is None:
                job.cancel_at = time.monotonic()
                if self.mode == WORKER:
                    self._send({"op": "cancel", "id": job.id})
                else:
                    self._interrupt()
        return bool(jobs)

    def _interrupt(self) -> None:
        try:
            if os.name == "nt":
                self._proc.popen.terminate()
            else:
                self._proc.popen.send_signal(signal.SIGINT)
        except OSError:
            pass

    def stop(self, timeout: float = 3.0) -> None:
        """End the backend process (shutdown request, then terminate, then kill) and forget its
        jobs, with no event. Idempotent."""
        self._end_process(timeout)
        self._jobs.clear()

    def _end_process(self, timeout: float) -> None:
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

    def claim(self, job_id: str) -> None:
        """Keep the events of `job_id` for poll_job() instead of poll(): the add-on's own requests
        (prompt help on the worker) share the process with the job queue's takes, whose poll()
        would otherwise take their events and drop them as not its own."""
        self._claimed.setdefault(job_id, [])

    def poll(self) -> list[dict[str, Any]]:
        """Everything that has happened since the last call to jobs nobody claimed; never blocks."""
        self._drain()
        out, self._unclaimed = self._unclaimed, []
        return out

    def poll_job(self, job_id: str) -> list[dict[str, Any]]:
        """The events of a claimed job since the last call; never blocks. A job that has ended (or
        that a stop() forgot) gives its last events once, then nothing."""
        self._drain()
        if job_id not in self._claimed:
            return []
        events = self._claimed[job_id]
        if job_id in self._jobs:
            self._claimed[job_id] = []
        else:
            del self._claimed[job_id]
        return events

    def _drain(self) -> None:
        for event in self._read():
            job_id = event.get("job")
            (self._claimed[job_id] if job_id in self._claimed else self._unclaimed).append(event)

    def _read(self) -> list[dict[str, Any]]:
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
        if self.mode == WORKER:
            job_id = event.get("job")
            if job_id is None and kind == "error" and event.get("code") == "bad_request":
                return  # about a line we sent outside a job; not a job's outcome
            if job_id is None:
                job_id = self.job_id  # said outside a job while the worker runs the head job
            elif job_id not in self._jobs:
                return  # a late event of a job we already gave up on
        else:
            job_id = self.job_id  # one process, one job
        out.append({**event, "job": job_id})
        if kind in TERMINAL:
            self._forget(job_id)
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
            if proc.garbage and not proc.hello:
                return self._fail(
                    "backend_garbage",
                    f"{self.python} printed output that is not TrajMaster events (first line: {proc.garbage[0]!r}) "
                    f"and exited with code {code}; point the backend Python at the environment set up for TrajMaster.",
                )
            return self._fail("backend_crashed", self._crash_message(code))
        if not self.busy:
            return []
        head = self._jobs[self.job_id]
        if head.cancel_at is not None and now > max(head.cancel_at, self._head_since) + self.cancel_grace_s:
            return self._kill_head()
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
        """The process failed: every job it held ends (a cancelled one as cancelled), the first with
        the stderr tail."""
        tail = self.stderr_tail(20)
        jobs = list(self._jobs.values())
        self.stop(timeout=1.0)
        out = []
        for job in jobs:
            if job.cancel_at is not None:
                out.append(_event("cancelled", job=job.id, message="Cancelled; no video was written."))
            else:
                out.append(_event("error", job=job.id, code=code, message=message, exit_code=1, stderr_tail=tail))
        return out

    def _kill_head(self) -> list[dict[str, Any]]:
        """The running job was cancelled and did not stop in time: end the process. The jobs it
        had queued that nobody cancelled go to a new worker, under the same ids."""
        jobs = list(self._jobs.values())
        self.stop(timeout=1.0)
        ended = "Cancelled; the backend did not stop in time and was ended."
        out = [_event("cancelled", job=jobs[0].id, message=ended)]
        for job in jobs[1:]:
            if job.cancel_at is not None:
                out.append(_event("cancelled", job=job.id, message="Cancelled; no video was written."))
                continue
            try:
                self.start()
            except BackendUnavailable as exc:
                out.append(_event("error", job=job.id, code="backend_crashed", message=str(exc), exit_code=1))
                continue
            self._add(job.id, job.request)
            self._send(job.request.worker_line(job.id))
        return out

    def wait(self, timeout: float | None = None, interval: float = 0.05) -> list[dict[str, Any]]:
        """Block until every job has ended (background Blender); returns all their events."""
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
