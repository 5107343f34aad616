"""A model replica: one engine kept warm, one job at a time (the body of a Ray Serve deployment).

It does what the local worker does (backend/worker.py) with the same pieces: an `EngineCache`
loaded once (here when the replica starts, so a replica that takes jobs is warm; the prompt cache
lives in the engine), and `run_job` for each job, in a thread so that the replica's event loop
keeps streaming the job's events to the gateway while the engine works. The job arrives in the
request, already validated by the gateway (run_job takes it as it is); the take is written into a
fresh scratch folder the replica names (not flushed to its disk: the client publishes the take),
its files go back to the gateway in the same stream, and the folder is removed: nothing is shared
between machines but what travels through Ray.

Cancellation: when the gateway cancels the request, Ray Serve raises CancelledError here; that
sets the job's `Report.cancel`, which the engine checks at its next step boundary, and the
replica waits for the job to stop before it takes another. Out of memory: the job is run again
in the next lower memory mode (`OutOfMemory.suggest_memory`), which the replica then keeps, as
the local engine does under `--memory auto`. A CUDA error leaves the GPU unusable: the replica
reports itself broken (Serve's health check replaces it) and the gateway runs the job elsewhere.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

from ..engines import EngineCache
from ..errors import OutOfMemory, UserError
from ..events import EventStream
from ..generate import run_job
from ..outcome import report_outcome
from ..progress import Cancelled, Report
from .settings import MODEL_ARG_DEFAULTS, ServerConfig

CHUNK_BYTES = 4 << 20
EVENT_BATCH_S = 0.25
TAKE = "take"  # the server's own name for every take; the client names its copy


def work_root() -> Path:
    """Where this machine's replicas (of this user) keep their jobs' folders, one per process."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"trajmaster-replicas-{uid}"


def work_folder() -> Path:
    """This replica's folder for its jobs. A replica that was killed mid-job never removed its
    job's folder: those of processes that no longer run are removed here."""
    root = work_root()
    root.mkdir(mode=0o700, exist_ok=True)
    for entry in root.iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid() and not _running(int(entry.name)):
            shutil.rmtree(entry, ignore_errors=True)
    mine = root / str(os.getpid())
    shutil.rmtree(mine, ignore_errors=True)  # a reused pid's leftovers
    mine.mkdir(mode=0o700)
    return mine


def _running(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would end the process there; leave the folder be
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, owned by someone else
        return True
    return True


def is_device_failure(exc: BaseException) -> bool:
    """An error after which this process's GPU cannot be trusted (the CUDA context is broken)."""
    text = f"{type(exc).__name__}: {exc}"
    return "CUDA error" in text or "AcceleratorError" in text or "cuDNN error" in text


class _LineSink:
    """The file an EventStream writes to: each JSON line is handed over as it is (parsed later,
    on the event loop's side, so the engine's thread does no more than it does locally)."""

    def __init__(self, put: Callable[[tuple[str, Any]], None]):
        self._put = put
        self._buffer = ""

    def write(self, text: str) -> int:
        self._buffer += text
        while "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            if line.strip():
                self._put(("event", line))
        return len(text)

    def flush(self) -> None:
        pass


class ModelReplica:
    """One warm engine. Ray Serve calls `run` with one request at a time (max_ongoing_requests=1)."""

    def __init__(self, config: dict[str, Any]):
        import ray
        from ray import serve

        self.config = ServerConfig.from_dict(config)
        context = serve.get_replica_context()
        self.replica_id = context.replica_id.unique_id
        self.node = ray.util.get_node_ip_address()
        self._gateway = serve.get_deployment_handle("Gateway", context.app_name)
        self.state, self.job_id, self.jobs_done = "loading", None, 0
        self.broken: str | None = None
        self.since = time.time()
        self._engine: Any = None
        self._device: dict[str, Any] | None = None
        self._lock = threading.Lock()  # one job at a time, even while a cancelled one winds down
        self._stop, self._changed = threading.Event(), threading.Event()
        threading.Thread(target=self._report_loop, name="trajmaster-report", daemon=True).start()
        self.work = work_folder()
        self.args = argparse.Namespace(**{**MODEL_ARG_DEFAULTS, **self.config.model_args})
        self.engines = EngineCache(self.args, Report(EventStream(sys.stderr)))
        self._load()

    # ------------------------------------------------------------ the engine

    def _load(self, report: Report | None = None) -> Any:
        self._set_state("loading")
        try:
            self._engine = self.engines.get(self.config.engine, report)
        except UserError as exc:
            # Serve shows the constructor's exception; keep it to the sentence the user needs.
            raise RuntimeError(exc.message + (f" ({exc.hint})" if exc.hint else "")) from None
        self._set_state("idle")
        return self._engine

    def _get_engine(self, name: str, report: Report) -> Any:
        return self._engine if self._engine is not None else self._load(report)

    def _drop_engine(self) -> None:
        self.engines.drop(self.config.engine)
        self._engine = None

    def _use_memory_mode(self, mode: str) -> None:
        switch = getattr(self._engine, "use_memory_mode", None)
        if switch is not None:
            switch(mode)
        else:  # an engine that cannot re-place its weights is loaded again in that mode
            self._drop_engine()
        self.args.memory = mode

    def device(self) -> dict[str, Any]:
        """The GPU's name and memory (the engine's own description, read once: it looks up
        package versions), or the CPU."""
        if self._engine is not None and self._device is None:
            try:
                self._device = self._engine.describe().get("device") or None
            except Exception:  # a broken GPU must not break the status report
                self._device = None
        if self._device:
            return self._device
        if self.config.replica_gpus:
            return {"type": "gpu", "name": "GPU"}
        return {"type": "cpu", "name": f"CPU ({platform.machine()}, {os.cpu_count()} cores)"}

    # ------------------------------------------------------------ state, for the gateway

    def info(self) -> dict[str, Any]:
        return {
            "replica": self.replica_id,
            "state": self.state,
            "job": self.job_id,
            "warm": self._engine is not None,
            "engine": self.config.engine,
            "memory_mode": getattr(self._engine, "memory_mode", None),
            "device": self.device(),
            "node": self.node,
            "pid": os.getpid(),
            "jobs_done": self.jobs_done,
            "since": self.since,
            "broken": self.broken,
        }

    def _set_state(self, state: str, job_id: str | None = None) -> None:
        self.state, self.job_id, self.since = state, job_id, time.time()
        self._changed.set()  # the reporter thread tells the gateway now, off the job's thread

    def _report_loop(self) -> None:
        while not self._stop.is_set():
            self._changed.wait(self.config.replica_report_s)
            self._changed.clear()
            try:
                self._gateway.replica_report.remote(self.info())
            except Exception:  # the gateway may be restarting; the next report will do
                pass

    def check_health(self) -> None:
        """Ray Serve's health check: a replica whose GPU failed is replaced."""
        if self.broken:
            raise RuntimeError(self.broken)

    def __del__(self) -> None:
        self._stop.set()
        self._changed.set()
        self.engines.close()
        shutil.rmtree(self.work, ignore_errors=True)

    # ------------------------------------------------------------ one job

    async def run(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Stream one job: `started`, its events, then either the take (`file` chunks and
        `result`) or nothing more (its `error`/`cancelled` event was the last), or `failed` when
        this replica can no longer run anything."""
        loop = asyncio.get_running_loop()
        said: collections.deque = collections.deque()  # appended by the job's thread, drained here
        report = Report(EventStream(_LineSink(said.append)), job_id=request["id"])
        # Named by the job's id (made by the gateway, 32 hex digits), never by anything a client sent.
        folder = Path(tempfile.mkdtemp(prefix=f"{request['id']}-", dir=self.work))
        work = loop.run_in_executor(None, self._work, request, folder, report, said.append)
        try:
            yield {"kind": "started", "replica": self.info()}
            outcome = None
            while outcome is None:
                # What the job said meanwhile goes on as one message, at most every EVENT_BATCH_S
                # (and at once when it ends): waking this loop and sending through Ray for each
                # event would take the CPU and the GIL from the engine, which a fast engine feels.
                await asyncio.wait([work], timeout=EVENT_BATCH_S)
                items = [said.popleft() for _ in range(len(said))]
                events = [json.loads(payload) for kind, payload in items if kind == "event"]
                if events:
                    yield {"kind": "events", "events": events}
                outcome = next((payload for kind, payload in items if kind == "done"), None)
            outcome, value = outcome
            if outcome == "result":
                for message in _take_files(folder, value):
                    yield message
                yield {
                    "kind": "result",
                    "result": {k: value[k] for k in ("frames", "fps", "width", "height", "seconds")},
                }
            elif outcome == "failed":
                yield {"kind": "failed", "message": value}
        except (asyncio.CancelledError, GeneratorExit):
            report.cancel.set()  # the engine stops at its next step boundary
            while not work.done():
                try:
                    await asyncio.wait([work])
                except asyncio.CancelledError:
                    continue
            raise
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _work(self, request: dict[str, Any], folder: Path, report: Report, put: Callable) -> None:
        outcome: tuple[str, Any] = ("ended", None)
        with self._lock:
            self._set_state("busy", request["id"])
            try:
                outcome = self._run(request, folder, report)
            finally:
                self.jobs_done += 1
                self._set_state("idle" if self._engine is not None else "cold")
                put(("done", outcome))

    def _run(self, request: dict[str, Any], folder: Path, report: Report) -> tuple[str, Any]:
        tried: set[str] = set()
        while True:
            try:
                result = run_job(
                    None,
                    folder / TAKE,
                    self._get_engine_for(report),
                    report,
                    name=TAKE,
                    png=bool(request.get("png")),
                    engine_name=self.config.engine,
                    # Parsed and validated by the gateway (api.parse_submission) before it was queued;
                    # validating it again here would cost every job tens of milliseconds of CPU.
                    validated_job=request["job"],
                    # A scratch folder: its files are sent to the gateway (checked by SHA-256) and
                    # published by the client; flushing them to this disk would only add waiting.
                    durable=False,
                )
                return ("result", result)
            except OutOfMemory as exc:
                lower = exc.suggest_memory
                if lower and lower not in tried:
                    tried.add(lower)
                    report.warning(
                        "memory_fallback", f"{exc.message.rstrip('.')}; running the job again in memory mode '{lower}'."
                    )
                    self._use_memory_mode(lower)
                    continue
                report_outcome(report, exc)
                return ("ended", None)
            except BaseException as exc:
                if not isinstance(exc, (UserError, Cancelled, KeyboardInterrupt)):
                    # As in the worker: an engine that failed mid-job may be in a broken state.
                    self._drop_engine()
                    if is_device_failure(exc):
                        self.broken = f"The GPU failed ({type(exc).__name__}: {str(exc)[:200]})."
                        return ("failed", self.broken)
                report_outcome(report, exc)
                return ("ended", None)

    def _get_engine_for(self, report: Report) -> Callable[[str], Any]:
        return lambda name: self._get_engine(name, report)


def _take_files(folder: Path, result: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The take's files as chunks: video, sidecar and the PNG frames as one uncompressed zip."""
    files = {"video": Path(result["video"]), "sidecar": Path(result["sidecar"])}
    if result.get("png_dir"):
        archive = folder / f"{TAKE}_png.zip"
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as z:
            for png in sorted(Path(result["png_dir"]).iterdir()):
                z.write(png, png.name)
        files["png"] = archive
    for role, path in files.items():
        size = path.stat().st_size
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            offset = 0
            while True:
                chunk = f.read(CHUNK_BYTES)
                digest.update(chunk)
                last = offset + len(chunk) >= size
                yield {
                    "kind": "file",
                    "role": role,
                    "name": path.name,
                    "offset": offset,
                    "data": chunk,
                    "size": size,
                    "sha256": digest.hexdigest() if last else None,
                }
                offset += len(chunk)
                if last:
                    break
