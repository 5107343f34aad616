"""Generations inside Blender: start a job, follow its events from a timer, place the take.

The supervisor (supervisor.py, no bpy) owns the backend process; this module is the bpy side.
In the UI a persistent `bpy.app.timers` callback drains the supervisor's events every 0.1 s
(microseconds of work per tick; placing a finished take is the only heavier tick). A timer and
not a modal operator, because Blender cancels modal operators when a file loads. In background
Blender (`bpy.app.background`: scripts, farms, tests) a job runs to completion synchronously
through a one-shot `python -m backend generate`.

The state of the running job is runtime state, kept here and not in the .blend: undo or a file
load does not rewind it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bpy
from bpy.app.handlers import persistent

from . import outputs, preferences, redraw, sequencer
from .supervisor import ONESHOT, WORKER, BackendUnavailable, Busy, Request, Supervisor, terminal_event

TICK_S = 0.1
# The extension's root, the folder that holds `backend/`: the backend process's working directory.
EXTENSION_ROOT = Path(__file__).resolve().parent.parent


class RunError(RuntimeError):
    """A generation could not start; the message is for the user."""


@dataclass
class ActiveJob:
    job: dict[str, Any]
    job_path: Path
    folder: Path
    name: str
    shot: sequencer.Shot
    blend_file: str
    loads: int
    started: float = field(default_factory=time.monotonic)


@dataclass
class PendingTake:
    """A finished take whose file or scene was gone when it arrived (a file was loaded)."""

    active: ActiveJob
    result: dict[str, Any]


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
    # Main-thread cost of the timer (measured for the docs and benchmarks, shown nowhere).
    max_tick_ms: float = 0.0
    max_place_ms: float = 0.0
    last_take_at: float = 0.0


status = Status()
# None: the worker in the UI, one `generate` process per job (synchronous) in background Blender.
# A script that makes many takes in background Blender may set True (the model then loads once)
# and call wait() after each Generate, as the tests do.
use_worker: bool | None = None
_supervisor: Supervisor | None = None
_active: ActiveJob | None = None
_loads = 0


def busy() -> bool:
    return _active is not None


# A second click this soon after Generate (or Regenerate) is the rest of a double click, not a
# wish to start (or stop) again: it is ignored, and the panel says so.
DOUBLE_CLICK_S = 1.0


def just_started() -> bool:
    """Whether the running job started less than DOUBLE_CLICK_S ago."""
    return _active is not None and time.monotonic() - _active.started < DOUBLE_CLICK_S


# --- starting --------------------------------------------------------------------------------


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


def _strip_names(context: bpy.types.Context, scene: bpy.types.Scene) -> list[str]:
    from . import compat

    target = compat.sequencer_scene(context, scene)
    editor = target.sequence_editor
    return [s.name for s in compat.strips(editor)] if editor else []


def submit(context: bpy.types.Context, scene: bpy.types.Scene, shot: sequencer.Shot, job: dict[str, Any]) -> str:
    """Write the job next to the takes and start it. Returns the take's name. Raises RunError.

    In background Blender this returns when the take is in the sequencer (or raises)."""
    global _active
    if busy():
        raise RunError("A generation is already running; wait for it to finish or press Cancel.")
    try:
        python = preferences.backend_python(context)
    except preferences.BackendNotConfigured as exc:
        raise RunError(str(exc)) from None
    _check_python(python)
    folder, warning = outputs.take_folder(context, shot.name)
    try:
        outputs.ensure_writable(folder)
    except outputs.OutputError as exc:
        raise RunError(str(exc)) from None
    names = _strip_names(context, scene)
    for _ in range(100):
        name = outputs.next_take_name(folder, shot.name, names)
        path = outputs.job_path(folder, name)
        try:
            from . import job_export

            job_export.write(job, path)
            break
        except FileExistsError:
            names.append(name)  # raced with another writer: take the next number
        except OSError as exc:
            raise RunError(f"Cannot write the job file {path} ({exc.strerror}); check the output folder.") from None
    else:
        raise RunError(f"Could not find a free take name in {folder}.")
    supervisor = _supervisor_for(python, preferences.engine_args(context))
    active = ActiveJob(job, path, folder, name, shot, bpy.data.filepath, _loads)
    request = Request(job=str(path), out=str(folder), name=name, engine=job["engine"])
    try:
        supervisor.submit(request)
    except (BackendUnavailable, Busy) as exc:
        _remove(path)
        raise RunError(str(exc)) from None
    _active = active
    status.state, status.stage, status.message = "running", "starting", "Starting the backend"
    status.step = status.total = 0
    status.fraction, status.eta_s = 0.0, None
    status.last_error, status.info = "", warning or ""
    if supervisor.mode == ONESHOT:
        _log(f"generating {name} ({job['engine']}) into {folder}")
        _run_to_end(supervisor, context)
    else:
        _ensure_timer()
    return name


def wait(timeout: float | None = None) -> None:
    """Block until the running generation ends, ticking as the UI's timer does (scripts, tests)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while busy():
        tick()
        if busy():
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"the generation did not finish within {timeout} s")
            time.sleep(TICK_S / 2)


def _run_to_end(supervisor: Supervisor, context: bpy.types.Context) -> None:
    """Background Blender: follow the job until it ends, then raise unless a take was placed."""
    end = None
    while end is None:
        events = supervisor.poll()
        _handle(events, context)
        end = terminal_event(events)
        if end is None:
            if not supervisor.busy:
                break
            time.sleep(0.05)
    if end is None or end["event"] != "result" or status.last_error:
        raise RunError(status.last_error or status.message or "The generation did not finish.")


def cancel() -> bool:
    if _supervisor is None or not busy():
        return False
    if _supervisor.cancel():
        status.state, status.message = "cancelling", "Cancelling"
        return True
    return False


# --- events ----------------------------------------------------------------------------------


def _handle(events: list[dict[str, Any]], context: bpy.types.Context | None = None) -> bool:
    """Fold events into the status; place the take on `result`. True when something changed."""
    global _active
    for event in events:
        kind = event.get("event")
        if kind == "stage":
            status.stage, status.message = str(event.get("stage", "")), str(event.get("message", ""))
            status.step = status.total = 0
            status.fraction, status.eta_s = 0.0, None
            if bpy.app.background:
                _log(status.message)
        elif kind == "progress":
            status.stage = str(event.get("stage", status.stage))
            status.step, status.total = int(event.get("step", 0)), int(event.get("total", 0))
            status.fraction = float(event.get("fraction", 0.0))
            status.eta_s = event.get("eta_s")
        elif kind == "heartbeat":
            status.stage = str(event.get("stage", status.stage))
        elif kind == "warning":
            _add_backend_warning(event)
        elif kind in ("result", "error", "cancelled"):
            active, _active = _active, None
            _finish(kind, event, active, context)
    return bool(events)


def _add_backend_warning(event: dict[str, Any]) -> None:
    if _active is None or _active.loads != _loads:
        return  # no job, or a job of a file that is no longer open
    key = (event.get("code"), event.get("entity"))
    if any((f.get("code"), f.get("entity")) == key for f in status.findings):
        return  # the add-on's own checks already listed it
    status.findings.append({"code": event.get("code"), "message": event.get("message", ""), "entity": key[1]})
    status.findings_scene = _active.shot.scene


def _finish(kind: str, event: dict[str, Any], active: ActiveJob | None, context: bpy.types.Context | None) -> None:
    status.state, status.stage = "idle", ""
    status.eta_s = None
    if active is None:
        return
    if kind == "result":
        status.fraction = 1.0
        _place(active, event, context or bpy.context)
        return
    _remove(active.job_path)  # the job file of a take that does not exist
    if kind == "cancelled":
        status.message = str(event.get("message") or "Cancelled; no video was written.")
        status.fraction = 0.0
        if bpy.app.background:
            _log(status.message)
        return
    message = str(event.get("message") or "The generation failed.")
    hint = event.get("hint")
    if event.get("code") == "missing_dependency" and active.job.get("engine") == "cogvideox":
        message, hint = preferences.full_model_needed(message), None
    status.last_error = message + (f" {hint}" if hint and hint not in message else "")
    status.message = "Failed"
    status.fraction = 0.0
    if bpy.app.background:
        _log(f"error: {status.last_error}")


def _place(active: ActiveJob, result: dict[str, Any], context: bpy.types.Context) -> None:
    t0 = time.perf_counter()
    scene = bpy.data.scenes.get(active.shot.scene)
    same_file = active.loads == _loads or (active.blend_file and active.blend_file == bpy.data.filepath)
    if scene is None or not same_file:
        status.pending.append(PendingTake(active, result))
        status.message = "Take ready"
        status.info = (
            f"The take {result.get('name')} finished after another file was opened; it is saved at "
            f"{result.get('video')}. Press Add Finished Take to put it into this file's sequencer."
        )
        return
    try:
        sequencer.add_take(context, scene, active.shot, result, active.job, str(active.job_path))
    except sequencer.TakeError as exc:
        status.last_error = str(exc)
        status.message = "Failed"
        return
    status.last_take = str(result.get("name", ""))
    status.message = f"Added {status.last_take}"
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
    if _supervisor is None:
        return None
    try:
        changed = _handle(_supervisor.poll())
    except Exception as exc:  # a bug here must not leave the timer dead and the UI stuck
        global _active
        _active = None
        status.state, status.message = "idle", "Failed"
        status.last_error = f"The add-on failed while following the backend ({type(exc).__name__}: {exc})."
        changed = True
    if changed:
        _redraw(placed=status.last_take_at >= t0)
    # The tick that places a take is timed in _place(); every other tick only reads the queue.
    if status.last_take_at < t0:
        status.max_tick_ms = max(status.max_tick_ms, (time.perf_counter() - t0) * 1000)
    return TICK_S if busy() else None


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
    status.findings = [f.as_dict() if hasattr(f, "as_dict") else dict(f) for f in findings]
    status.findings_scene = scene.name


def findings_for(scene: bpy.types.Scene) -> list[dict[str, Any]]:
    return status.findings if status.findings_scene == scene.name else []


# --- life cycle ------------------------------------------------------------------------------


def shutdown() -> None:
    """Stop the backend process and forget the running job (unregister, quit)."""
    global _supervisor, _active
    if _supervisor is not None:
        _supervisor.stop()
        _supervisor = None
    if _active is not None:
        _remove(_active.job_path)
        _active = None
    status.state = "idle"


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
