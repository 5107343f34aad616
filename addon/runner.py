"""Generations inside Blender: queue jobs, follow their events from a timer, place each take.

The executor (executor.py, no bpy: the local backend process of supervisor.py, or a TrajMaster
team server, server_executor.py, as the preferences' Run On says) makes the takes; the job
queue (job_queue.py, no bpy) hands jobs over and follows each one's events by id; this module
is the bpy side: it reserves each take's name (its job file is written before anything runs),
folds the events into the status the panel draws, and puts each take into the sequencer as it
finishes. In the UI a persistent `bpy.app.timers` callback polls every 0.1 s (microseconds of
work per tick; placing a finished take is the only heavier tick). A timer and not a modal
operator, because Blender cancels modal operators when a file loads. In background Blender
(`bpy.app.background`: scripts, farms, tests) the jobs run to completion synchronously, one
`python -m backend generate` each (or on the server).

One submission runs at a time: Generate, Regenerate, Generate Variations and Generate All Shots
are refused while one runs. A submission of several takes is a batch: its progress is takes
done out of takes queued, with an ETA.

The state of the running jobs is runtime state, kept here and not in the .blend: undo or a file
load does not rewind it. The texts the panel shows (message, last_error, info) and the findings
say what they are about (Status.about, set with Status.say); status_scope.py drops each one when
that is gone (another file, an undone take, a fixed shot) and keeps the findings current.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bpy
from bpy.app.handlers import persistent

from . import job_queue, outputs, preferences, redraw, sequencer
from .executor import BackendUnavailable, Executor, Request
from .server_executor import ServerExecutor, StatusWatch
from .supervisor import ONESHOT, WORKER, Supervisor

TICK_S = 0.1
# The extension's root, the folder that holds `backend/`: the backend process's working directory.
EXTENSION_ROOT = Path(__file__).resolve().parent.parent
BUSY_MESSAGE = "A generation is already running; wait for it to finish or press Cancel."


class RunError(RuntimeError):
    """A generation could not start; the message is for the user."""


@dataclass
class TakeSpec:
    """One take to make: a job of `scene`'s shot. `label` says what sets it apart in a batch
    (a variation's value, the shot's name); `own_sequencer` puts the take into the shot scene's
    own sequencer (Generate All Shots) rather than the one the user looks at (5.x: the workspace's
    sequencer scene)."""

    scene: bpy.types.Scene
    shot: sequencer.Shot
    job: dict[str, Any]
    label: str = ""
    own_sequencer: bool = False


@dataclass
class ActiveJob:
    """The runner's record of one queued take (the job queue's `data`)."""

    job: dict[str, Any]
    job_path: Path
    folder: Path
    name: str
    shot: sequencer.Shot
    blend_file: str
    loads: int
    started: float = field(default_factory=time.monotonic)
    own_sequencer: bool = False


@dataclass
class PendingTake:
    """A finished take whose file or scene was gone when it arrived (a file was loaded)."""

    active: ActiveJob
    result: dict[str, Any]


@dataclass
class QueueEntry:
    """One take of the running batch, as the panel lists it."""

    key: int
    name: str
    label: str
    state: str  # job_queue's: queued (also: handed over, not started), running, cancelling, done, failed, cancelled
    fraction: float


@dataclass
class Status:
    state: str = "idle"  # idle, running, cancelling
    stage: str = ""
    message: str = ""
    step: int = 0
    total: int = 0
    fraction: float = 0.0
    eta_s: float | None = None
    last_error: str = ""
    last_take: str = ""
    info: str = ""
    findings: list[dict[str, Any]] = field(default_factory=list)
    findings_scene: str = ""
    pending: list[PendingTake] = field(default_factory=list)
    # The running submission (a batch when jobs_total > 1): what it is, how far, how long left.
    batch_title: str = ""
    jobs_done: int = 0
    jobs_total: int = 0
    batch_eta_s: float | None = None
    current_take: str = ""
    queue: list[QueueEntry] = field(default_factory=list)
    # Main-thread cost of the timer (measured for the docs and benchmarks, shown nowhere).
    max_tick_ms: float = 0.0
    max_place_ms: float = 0.0
    last_take_at: float = 0.0
    # What message, last_error and info are about: field -> (the text, its subject), see
    # status_scope.py. A text set without say() is about the open file.
    about: dict[str, tuple[str, tuple[Any, ...]]] = field(default_factory=dict)

    def say(self, name: str, text: str, *subject: Any) -> None:
        """Set the text field `name` and what it is about: ("unsaved",), ("pending",),
        ("shot", scene), ("motion", scene, fingerprint), ("take", sequencer scene, strip)."""
        setattr(self, name, text)
        self.about[name] = (text, subject or ("file",))


status = Status()
# None: the worker in the UI, one `generate` process per job (synchronous) in background Blender.
# A script that makes many takes in background Blender may set True (the model then loads once)
# and call wait() after each Generate, as the tests do.
use_worker: bool | None = None
_supervisor: Supervisor | None = None
_server: ServerExecutor | None = None
_server_key: tuple[str, str] | None = None
# The panel's view of the server: (when, its status watch, or why there is none).
_view: tuple[float, StatusWatch | None, str] = (0.0, None, "")
VIEW_S = 1.0  # how long that view is reused (a token file is read to make it)
_queue = job_queue.JobQueue()
_loads = 0
_cancelling_all = False
# The batch's outcome, gathered as its jobs end: the takes placed and the errors.
_placed: list[str] = []
_errors: list[str] = []


def busy() -> bool:
    return _queue.busy


# A second click this soon after Generate (or Regenerate, Variations, All Shots) is the rest of a
# double click, not a wish to start (or stop) again: it is ignored, and the panel says so.
DOUBLE_CLICK_S = 1.0
_submitted_at: float | None = None


def just_started() -> bool:
    """Whether the running submission started less than DOUBLE_CLICK_S ago."""
    return busy() and _submitted_at is not None and time.monotonic() - _submitted_at < DOUBLE_CLICK_S


# --- the executor ----------------------------------------------------------------------------


def _check_python(python: str) -> None:
    if os.sep in python or (os.altsep and os.altsep in python):
        exists = os.path.isfile(python)
    else:
        exists = shutil.which(python) is not None
    if not exists:
        raise RunError(
            f"The backend Python {python} does not exist; set the backend Python in the add-on's preferences "
            f"or the {preferences.ENV_PYTHON} environment variable."
        )


def _mode() -> str:
    if use_worker is None:
        return ONESHOT if bpy.app.background else WORKER
    return WORKER if use_worker else ONESHOT


def _supervisor_for(python: str, engine_args: list[str] | tuple[str, ...] = ()) -> Supervisor:
    """The supervisor for these settings; a worker started with other settings (another Python,
    weights folder or memory mode from the preferences) is stopped, and the next job starts a new one."""
    global _supervisor
    mode = _mode()
    engine_args = tuple(engine_args)
    if _supervisor is not None and (
        _supervisor.python != python or _supervisor.mode != mode or _supervisor.engine_args != engine_args
    ):
        _supervisor.stop()
        _supervisor = None
    if _supervisor is None:
        _supervisor = Supervisor(python, EXTENSION_ROOT, mode=mode, engine_args=engine_args)
    return _supervisor


def local_python(context: bpy.types.Context | None = None) -> str:
    """The backend Python on this computer, checked to exist (raises RunError with the sentence):
    what the add-on's one-shot helper commands (contact sheets) run in."""
    try:
        python = preferences.backend_python(context)
    except preferences.BackendNotConfigured as exc:
        raise RunError(str(exc)) from None
    _check_python(python)
    return python


def _executor_for(context: bpy.types.Context) -> Executor:
    """Where the next submission runs: the local backend, or the TrajMaster server the
    preferences name (Run On). With a server nothing of a local backend is looked for."""
    if preferences.run_on(context) == preferences.SERVER:
        return _server_for(context)
    return _supervisor_for(local_python(context), preferences.engine_args(context))


def local_worker(context: bpy.types.Context) -> Supervisor | None:
    """The local worker that makes the takes (started on first use), for the add-on's other
    requests to it (prompt help); None when takes are made otherwise (one process per take in
    background Blender). Raises RunError when there is no backend on this computer."""
    executor = _executor_for(context)
    return executor if isinstance(executor, Supervisor) and executor.mode == WORKER else None


def _server_for(context: bpy.types.Context) -> ServerExecutor:
    """The executor for the server the preferences name (made without any network request). One
    made for another address or token is stopped, unless its takes are still running: it then
    finishes them (runner.shutdown() stops it)."""
    global _server, _server_key, _view
    try:
        settings = preferences.server_settings(context)
    except preferences.BackendNotConfigured as exc:
        raise RunError(str(exc)) from None
    key = (settings.url, hashlib.sha256(settings.token.encode("utf-8")).hexdigest())
    if _server is not None and _server_key != key:
        if _server.busy:
            return _server  # its batch goes on; the new settings apply to the next one
        _server.stop()
        _server = None
    if _server is None:
        try:
            _server = ServerExecutor(settings.url, settings.token, token_source=settings.source)
        except BackendUnavailable as exc:
            raise RunError(str(exc)) from None
        _server_key = key
        _view = (0.0, None, "")  # the panel looks at this one from now on
    return _server


def server_view(context: bpy.types.Context) -> tuple[StatusWatch | None, str]:
    """For the panel: the server's status watch (it asks the server every few seconds while the
    panel is drawn), or why there is none (one sentence). The settings are looked at again at
    most once a second, not at every redraw."""
    global _view
    now = time.monotonic()
    if now - _view[0] > VIEW_S:
        try:
            _view = (now, _server_for(context).watch, "")
        except RunError as exc:
            _view = (now, None, str(exc))
    return _view[1], _view[2]


def server_take_names() -> dict[str, str]:
    """The server's job ids of this file's running takes -> the takes' names (the panel shows
    which replica runs which take)."""
    if not isinstance(_queue.executor, ServerExecutor):
        return {}
    ids = _queue.executor.server_ids()
    return {ids[j.executor_id]: j.name for j in _queue.active() if j.executor_id in ids}


def _synchronous(executor: Executor) -> bool:
    """Background Blender's one-shot backend (or a server there): submit() returns when every
    take is placed."""
    if isinstance(executor, ServerExecutor):
        return _mode() == ONESHOT
    return isinstance(executor, Supervisor) and executor.mode == ONESHOT


# --- submitting --------------------------------------------------------------------------------


def _take_names(context: bpy.types.Context, scene: bpy.types.Scene, own: bool) -> list[str]:
    """Names in the sequencer the take goes to: strip names, and the take names behind them
    (a set's strips are named after their take and what differs)."""
    from . import compat

    target = scene if own else compat.sequencer_scene(context, scene)
    editor = target.sequence_editor
    if editor is None:
        return []
    names = []
    for strip in compat.strips(editor):
        names.append(strip.name)
        info = sequencer.take_info(strip)
        if info and info.get("video"):
            names.append(Path(str(info["video"])).stem)
    return names


def _reserve(context: bpy.types.Context, spec: TakeSpec) -> tuple[ActiveJob, str | None]:
    """Write the take's job file under the next free name: the name is the take's from now on."""
    folder, warning = outputs.take_folder(context, spec.shot.name)
    try:
        outputs.ensure_writable(folder)
    except outputs.OutputError as exc:
        raise RunError(str(exc)) from None
    names = _take_names(context, spec.scene, spec.own_sequencer)
    from . import job_export

    for _ in range(100):
        name = outputs.next_take_name(folder, spec.shot.name, names)
        path = outputs.job_path(folder, name)
        try:
            job_export.write(spec.job, path)
            break
        except FileExistsError:
            names.append(name)  # raced with another writer: take the next number
        except OSError as exc:
            raise RunError(f"Cannot write the job file {path} ({exc.strerror}); check the output folder.") from None
    else:
        raise RunError(f"Could not find a free take name in {folder}.")
    active = ActiveJob(
        spec.job, path, folder, name, spec.shot, bpy.data.filepath, _loads, own_sequencer=spec.own_sequencer
    )
    return active, warning


def submit(context: bpy.types.Context, scene: bpy.types.Scene, shot: sequencer.Shot, job: dict[str, Any]) -> str:
    """Write the job next to the takes and start it. Returns the take's name. Raises RunError.

    In background Blender this returns when the take is in the sequencer (or raises)."""
    return submit_batch(context, [TakeSpec(scene, shot, job)])[0]


def submit_batch(context: bpy.types.Context, specs: list[TakeSpec], title: str = "") -> list[str]:
    """Reserve every take's name (job files written), queue them in order, start the first.
    Returns the take names. Raises RunError, leaving no job file behind.

    In background Blender this returns when every take has run: it raises RunError when any
    failed (the others are placed)."""
    global _cancelling_all, _submitted_at
    if busy():
        raise RunError(BUSY_MESSAGE)
    if not specs:
        raise RunError("There is nothing to generate.")
    executor = _executor_for(context)
    reserved: list[ActiveJob] = []
    warnings: list[str] = []
    try:
        for spec in specs:
            active, warning = _reserve(context, spec)
            reserved.append(active)
            if warning and warning not in warnings:
                warnings.append(warning)
    except RunError:
        for active in reserved:
            _remove(active.job_path)
        raise
    _queue.executor = executor
    _queue.add(
        [
            job_queue.QueuedJob(
                Request(job=str(a.job_path), out=str(a.folder), name=a.name, engine=a.job["engine"]),
                label=spec.label,
                data=a,
            )
            for a, spec in zip(reserved, specs, strict=True)
        ]
    )
    failed = _queue.pump()
    if failed:  # the executor cannot run anything: nothing was started
        for job in _queue.jobs:
            _remove(job.data.job_path)
        _queue.jobs.clear()
        raise RunError(str(failed[0][1].get("message") or "The backend could not be started."))
    _cancelling_all = False
    _submitted_at = time.monotonic()
    _placed.clear()
    _errors.clear()
    starting = "Sending to the server" if isinstance(executor, ServerExecutor) else "Starting the backend"
    status.state, status.stage, status.message = "running", "starting", starting
    status.step = status.total = 0
    status.fraction, status.eta_s = 0.0, None
    status.last_error = ""
    status.say("info", warnings[0] if warnings else "", "unsaved")  # one folder's is enough
    status.batch_title = title
    _sync_status()
    names = [a.name for a in reserved]
    if _synchronous(executor):
        for a in reserved:
            _log(f"generating {a.name} ({a.job['engine']}) into {a.folder}")
        _run_to_end(context)
    else:
        _ensure_timer()
    return names


def wait(timeout: float | None = None) -> None:
    """Block until the running jobs end, ticking as the UI's timer does (scripts, tests)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while busy():
        tick()
        if busy():
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"the generation did not finish within {timeout} s")
            time.sleep(TICK_S / 2)


def _run_to_end(context: bpy.types.Context) -> None:
    """Background Blender: follow the jobs until they end, then raise unless every take was placed."""
    while busy():
        _handle(_queue.poll(), context)
        if busy():
            time.sleep(0.05)
    if status.last_error or len(_placed) < len(_queue.jobs):
        raise RunError(status.last_error or status.message or "The generation did not finish.")


def cancel(key: int | None = None) -> bool:
    """Cancel one take of the queue (`key`, from status.queue) or all of them. Takes that have
    not started end at once (their job files removed); a running one stops at its next step."""
    global _cancelling_all
    if not busy():
        return False
    if key is None:
        _cancelling_all = True
    elif _queue.get(key) is None or _queue.get(key).ended:
        return False
    _handle(_queue.cancel(key))
    _sync_status()
    if busy() and key is None:
        status.state, status.message = "cancelling", "Cancelling"
    return True


# --- events ----------------------------------------------------------------------------------


def _handle(pairs: list[tuple[job_queue.QueuedJob, dict[str, Any]]], context: bpy.types.Context | None = None) -> bool:
    """Fold events into the status; place each take on its `result`. True when something changed."""
    for job, event in pairs:
        kind = event.get("event")
        active: ActiveJob = job.data
        if kind == "stage" and bpy.app.background:
            _log(f"{active.name}: {event.get('message', '')}")
        elif kind == "warning":
            _add_backend_warning(active, event)
        elif kind in job_queue.TERMINAL:
            _finish(kind, event, active, context)
    if pairs:
        _sync_status()
    return bool(pairs)


def _sync_status() -> None:
    """The panel's view of the queue: the running take's progress, the batch's counts and ETA."""
    progress = _queue.progress()
    status.jobs_done, status.jobs_total = progress.done, progress.total
    status.batch_eta_s = progress.eta_s
    status.queue = [QueueEntry(j.key, j.name, j.label, _shown_state(j), j.fraction) for j in _queue.jobs]
    current = progress.current
    if _queue.busy:
        status.state = "cancelling" if _cancelling_all else "running"
        if current is not None:
            status.current_take = current.name
            if current.stage:
                status.stage = current.stage
                status.message = "Cancelling" if _cancelling_all else current.message or status.message
            status.step, status.total = current.step, current.total
            status.fraction, status.eta_s = current.fraction, current.eta_s
        return
    status.state, status.stage = "idle", ""
    status.eta_s = status.batch_eta_s = None
    status.current_take = ""
    _summarize(progress)


def _shown_state(job: job_queue.QueuedJob) -> str:
    """A job handed to the worker that has not started yet waits there: queued, for the user."""
    return job_queue.QUEUED if job.state == job_queue.RUNNING and job.started_at is None else job.state


def _summarize(progress: job_queue.Progress) -> None:
    """The message and error once every job of the submission has ended."""
    if progress.total <= 1:
        return  # one take: _finish() already said how it ended
    if _errors:
        failed = len(_errors)
        status.last_error = _errors[0] if failed == 1 else f"{failed} of {progress.total} takes failed; {_errors[0]}"
    parts = []
    if _placed:
        parts.append(f"Added {len(_placed)} take{'s' if len(_placed) > 1 else ''}")
    if progress.cancelled:
        parts.append(f"{progress.cancelled} cancelled")
    if progress.failed:
        parts.append(f"{progress.failed} failed")
    if not _placed and progress.cancelled == progress.total:
        status.message = "Cancelled; no video was written."
    else:
        status.message = ", ".join(parts) if parts else "Done"
    status.fraction = 1.0 if _placed else 0.0
    if bpy.app.background:
        _log(status.message)


def _add_backend_warning(active: ActiveJob, event: dict[str, Any]) -> None:
    if active.loads != _loads:
        return  # a job of a file that is no longer open
    if status.findings_scene not in ("", active.shot.scene):
        return  # the panel shows another scene's findings (Generate All Shots lists them up front)
    key = (event.get("code"), event.get("entity"))
    if any((f.get("code"), f.get("entity")) == key for f in status.findings):
        return  # the add-on's own checks already listed it
    status.findings.append({"code": event.get("code"), "message": event.get("message", ""), "entity": key[1]})
    status.findings_scene = active.shot.scene


def _finish(kind: str, event: dict[str, Any], active: ActiveJob, context: bpy.types.Context | None) -> None:
    single = len(_queue.jobs) <= 1
    if kind == "result":
        if single:
            status.fraction = 1.0
        _place(active, event, context or bpy.context)
        return
    _remove(active.job_path)  # the job file of a take that does not exist
    if kind == "cancelled":
        if single:
            status.message = str(event.get("message") or "Cancelled; no video was written.")
            status.fraction = 0.0
            if bpy.app.background:
                _log(status.message)
        return
    message = str(event.get("message") or "The generation failed.")
    hint = event.get("hint")
    if event.get("code") == "missing_dependency" and active.job.get("engine") == "cogvideox":
        message, hint = preferences.full_model_needed(message), None
    if event.get("code") == "unsupported" and isinstance(_queue.executor, ServerExecutor):
        # The server's hint speaks of the job file; here the engine is a setting of the panel.
        hint = "Set Engine in the Model section to the server's, or choose Run On: This Computer in the preferences."
    text = message + (f" {hint}" if hint and hint not in message else "")
    _errors.append(text if single else f"{active.name}: {text}")
    status.last_error = _errors[-1]  # said at once; a batch sums its errors up when it ends
    if single:
        status.message = "Failed"
        status.fraction = 0.0
    if bpy.app.background:
        _log(f"error: {active.name}: {text}")


def _place(active: ActiveJob, result: dict[str, Any], context: bpy.types.Context) -> None:
    t0 = time.perf_counter()
    scene = bpy.data.scenes.get(active.shot.scene)
    same_file = active.loads == _loads or (active.blend_file and active.blend_file == bpy.data.filepath)
    if scene is None or not same_file:
        status.pending.append(PendingTake(active, result))
        status.message = "Take ready"
        waiting = len(status.pending)
        status.say(
            "info",
            f"The take {result.get('name')} finished after another file was opened; it is saved at "
            f"{result.get('video')}. Press Add Finished Take to put it into this file's sequencer."
            if waiting == 1
            else f"{waiting} takes finished after another file was opened; they are saved in their take folders. "
            "Press Add Finished Take to put each into this file's sequencer.",
            "pending",
        )
        return
    into = None
    if active.own_sequencer:
        into = scene  # Generate All Shots: each shot's take in its own scene, shots never stack in one edit
        if scene == context.scene:
            from . import compat

            # 5.x: a workspace without a sequencer scene shows this one's, as after Generate.
            compat.sequencer_scene(context, scene, claim=True)
    try:
        strip = sequencer.add_take(context, scene, active.shot, result, active.job, str(active.job_path), into=into)
    except sequencer.TakeError as exc:
        _errors.append(str(exc))
        status.last_error = str(exc)
        status.message = "Failed"
        return
    status.last_take = str(result.get("name", ""))
    _placed.append(status.last_take)
    # About that strip: an undo (or deleting it) takes the message away with it.
    status.say("message", f"Added {status.last_take}", "take", strip.id_data.name, strip.name)
    _undo_push(f"Add take {status.last_take}")
    status.last_take_at = time.perf_counter()
    status.max_place_ms = max(status.max_place_ms, (status.last_take_at - t0) * 1000)
    if bpy.app.background:
        _log(f"added {status.last_take} ({result.get('video')})")


def _undo_push(message: str) -> None:
    """Make the new strip an undo step of its own: it was added from a timer, outside any
    operator, and would otherwise vanish on the next undo and not come back on redo."""
    if bpy.app.background:
        return
    wm = bpy.context.window_manager
    window = wm.windows[0] if wm and wm.windows else None
    if window is None:
        return
    with bpy.context.temp_override(window=window):
        bpy.ops.ed.undo_push(message=message)


def place_pending(context: bpy.types.Context, scene: bpy.types.Scene) -> str:
    """Put the oldest finished-but-unplaced take into `scene`'s sequencer. Returns its name."""
    if not status.pending:
        raise RunError("There is no finished take waiting to be added.")
    pending = status.pending[0]
    shot = sequencer.Shot(
        pending.active.shot.name, pending.active.shot.frame_start, pending.active.shot.frame_end, scene.name
    )
    try:
        sequencer.add_take(context, scene, shot, pending.result, pending.active.job, str(pending.active.job_path))
    except sequencer.TakeError as exc:
        raise RunError(str(exc)) from None
    status.pending.pop(0)
    status.info = ""
    return str(pending.result.get("name", ""))


def tick() -> float | None:
    """The timer: drain events, update the panel. Returns None (stop) when nothing runs."""
    t0 = time.perf_counter()
    if not busy():
        return None
    try:
        changed = _handle(_queue.poll())
    except Exception as exc:  # a bug here must not leave the timer dead and the UI stuck
        _abandon(f"The add-on failed while following the backend ({type(exc).__name__}: {exc}).")
        changed = True
    if changed:
        _redraw(placed=status.last_take_at >= t0)
    # The tick that places a take is timed in _place(); every other tick only reads the queue.
    if status.last_take_at < t0:
        status.max_tick_ms = max(status.max_tick_ms, (time.perf_counter() - t0) * 1000)
    return TICK_S if busy() else None


def _abandon(message: str) -> None:
    """Stop following every job (the backend is asked to cancel them) and say why."""
    if _queue.executor is not None:
        _queue.executor.cancel()
    for job in _queue.active():
        _remove(job.data.job_path)
        job.state = job_queue.CANCELLED
    status.state, status.message = "idle", "Failed"
    status.last_error = message
    status.queue = []


def _ensure_timer() -> None:
    if not bpy.app.timers.is_registered(tick):
        bpy.app.timers.register(tick, first_interval=TICK_S, persistent=True)


def _redraw(placed: bool) -> None:
    # Progress only changes the sidebar; a placed take also changes the sequencer's timeline.
    redraw.tag("VIEW_3D", "UI")
    if placed:
        redraw.tag("SEQUENCE_EDITOR")


# --- findings --------------------------------------------------------------------------------


def set_findings(scene: bpy.types.Scene, findings: list[Any]) -> None:
    """Show `findings` for `scene`'s shot as it is now; status_scope keeps them current after edits."""
    from . import status_scope

    status_scope.set_findings(scene, findings)


def findings_for(scene: bpy.types.Scene) -> list[dict[str, Any]]:
    return status.findings if status.findings_scene == scene.name else []


# --- life cycle ------------------------------------------------------------------------------


def shutdown() -> None:
    """Stop the backend process (or cancel the jobs on the server) and forget the queued jobs
    (unregister, quit): their job files are removed, as no take will come of them."""
    global _supervisor, _server, _view
    if _supervisor is not None:
        _supervisor.stop()
        _supervisor = None
    # The server's jobs are cancelled there: nobody would place their takes (docs/user-guide.md,
    # "Working as a team"). A few seconds at most, whatever the network does.
    for executor in {id(e): e for e in (_server, _queue.executor) if isinstance(e, ServerExecutor)}.values():
        executor.stop()
    _server, _view = None, (0.0, None, "")
    for job in _queue.active():
        _remove(job.data.job_path)
        job.state = job_queue.CANCELLED
    _queue.executor = None
    status.state = "idle"
    status.queue = []


def worker_pid() -> int | None:
    return _supervisor.pid if _supervisor is not None and _supervisor.running else None


@persistent
def _on_load_post(*_args: Any) -> None:
    global _loads
    _loads += 1
    # Findings are about the previous file's shot; its scene's name is often this file's too.
    status.findings, status.findings_scene = [], ""


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def _log(message: str) -> None:
    print(f"TrajMaster: {message}", file=sys.stderr, flush=True)


def register() -> None:
    bpy.app.handlers.load_post.append(_on_load_post)
    atexit.register(shutdown)


def unregister() -> None:
    atexit.unregister(shutdown)
    if _on_load_post in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(_on_load_post)
    if bpy.app.timers.is_registered(tick):
        bpy.app.timers.unregister(tick)
    shutdown()
