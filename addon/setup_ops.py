"""The backend's setup inside Blender: Set Up Backend, Download Weights, Check Backend, Cancel, and
the preferences' sections that show them.

The processes and their logs are env_setup.Task (no bpy); here a persistent bpy.app.timers
callback polls the running tasks every 0.1 s (it only drains queues: well under a millisecond
per tick, measured in `max_tick_ms`) and redraws the preferences. A timer and not a modal
operator, so that closing the preferences window or loading a file does not stop an install.
In background Blender (scripts, farms, tests) the operators run to the end before returning,
and a failure makes `bpy.ops.trajmaster.*` raise with its one-sentence message.

State here is runtime state: what runs now and how the last run ended. Whether the managed
environment is ready is the marker file in its folder (env_setup.env_state), so it survives
restarts and a half-built environment is never taken for a ready one.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import bpy
from bpy.props import BoolProperty, EnumProperty

from . import compat, env_setup, preferences, redraw, runner, ui_text

SETUP, DOWNLOAD, CHECK = "SETUP", "DOWNLOAD", "CHECK"
KINDS = (
    (SETUP, "Set Up Backend", "Building the managed environment"),
    (DOWNLOAD, "Download Weights", "Downloading the model weights"),
    (CHECK, "Check Backend", "Checking the backend"),
)
LOG_NAMES = {SETUP: "backend-setup.log", DOWNLOAD: "download.log", CHECK: "check.log"}
TICK_S = 0.1
TAIL_SHORT, TAIL_LONG = 8, 40

# None: run in the background in the UI, to the end before returning in background Blender.
synchronous: bool | None = None


@dataclass
class Activity:
    kind: str
    task: env_setup.Task | None = None
    state: str = "idle"  # idle, running, done, failed, cancelled
    message: str = ""  # how the last run ended, one sentence
    python: str = ""
    choice: str = ""  # Set Up Backend: the environment chosen; a download: WEIGHTS or PROMPT
    env_dir: str = ""
    progress: env_setup.DownloadProgress = field(default_factory=env_setup.DownloadProgress)
    report: dict[str, Any] | None = None  # Check Backend: doctor's report
    stderr: list[str] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.finished

    @property
    def log_path(self) -> str:
        return str(self.task.log_path) if self.task is not None else ""


activities: dict[str, Activity] = {kind: Activity(kind) for kind, _, _ in KINDS}
# Main-thread cost of the timer (checked by the tests, shown nowhere).
max_tick_ms = 0.0
max_finish_ms = 0.0


def _synchronous() -> bool:
    return bpy.app.background if synchronous is None else synchronous


def online_access() -> tuple[bool, str]:
    """Whether the add-on may use the network, and if not, what the user can do about it."""
    if getattr(bpy.app, "online_access", True):
        return True, ""
    # Started with --offline-mode: the preference cannot change it for this session.
    overridden = getattr(bpy.app, "online_access_override", None)
    if overridden is None:
        overridden = getattr(bpy.app, "online_access_overriden", False)
    if overridden:
        return (
            False,
            "Blender was started in offline mode (--offline-mode): restart it without that option to use the network.",
        )
    return False, "Allow Online Access in Preferences > System to download."


# --- starting ---------------------------------------------------------------------------------


class StartError(RuntimeError):
    """A task could not start; the message is for the user."""


def _start(activity: Activity, steps: list[env_setup.Step]) -> None:
    log = Path(preferences.logs_dir()) / LOG_NAMES[activity.kind]
    activity.task = env_setup.Task(steps, log)
    activity.state, activity.message = "running", ""
    activity.progress = env_setup.DownloadProgress()
    activity.stderr = []
    try:
        activity.task.start()
    except OSError as exc:
        activity.task = None
        activity.state = "failed"
        raise StartError(f"Cannot write the log file {log} ({exc.strerror or exc}); check the user folder.") from None
    if _synchronous():
        while activity.running:
            _poll(activity, max_lines=10_000)
            if activity.running:
                time.sleep(0.05)
        _poll(activity, max_lines=10_000)
    else:
        _ensure_timer()


def start_setup(context: bpy.types.Context, choice: str, *, clear: bool = False) -> Activity:
    """Build (or complete, or with `clear` rebuild) the managed environment. Raises StartError."""
    activity = activities[SETUP]
    if any(a.running for a in activities.values()):
        raise StartError("Wait for the running download or check to finish, or cancel it, then set up the backend.")
    if runner.busy():
        raise StartError("A generation is running; wait for it to finish or cancel it, then set up the backend.")
    env_dir = preferences.managed_env_dir(create=True)
    try:
        steps = env_setup.setup_steps(
            sys.executable,
            env_dir,
            runner.EXTENSION_ROOT,
            choice,
            clear=clear,
            weights=preferences.weights_dir(context),
        )
    except env_setup.SetupError as exc:  # refused before anything changed: a ready environment stays ready
        raise StartError(str(exc)) from None
    runner.shutdown()  # the worker may be running the environment's Python, which pip is about to change
    env_setup.mark_not_ready(env_dir)  # from here until doctor succeeds, the environment is not ready
    activity.choice, activity.env_dir = choice, env_dir
    activity.python = str(env_setup.env_python(env_dir))
    _start(activity, steps)
    return activity


# What each download fetches: its button, its step's label, and the backend's --only.
DOWNLOADS = {
    "WEIGHTS": ("Download Weights", "Downloading the weights", None),
    "PROMPT": ("Download Prompt Model", "Downloading the prompt model", "prompt"),
}


def start_download(context: bpy.types.Context, what: str = "WEIGHTS") -> Activity:
    activity = activities[DOWNLOAD]
    if activity.running:
        being = "the prompt model is" if activity.choice == "PROMPT" else "the weights are"
        raise StartError(f"One download at a time: {being} downloading.")
    if activities[SETUP].running:
        raise StartError("Wait for Set Up Backend to finish, then download.")
    ok, note = online_access()
    if not ok:
        raise StartError(note)
    python = _python(context)
    dest = preferences.weights_dir(context)
    _button, label, only = DOWNLOADS[what]
    activity.python, activity.choice = python, what
    _start(
        activity,
        [env_setup.Step(label, env_setup.download_command(python, dest, only), cwd=str(runner.EXTENSION_ROOT))],
    )
    return activity


def start_check(context: bpy.types.Context) -> Activity:
    activity = activities[CHECK]
    if activity.running:
        raise StartError("The backend check is already running.")
    if activities[SETUP].running:
        raise StartError("Wait for Set Up Backend to finish; it checks the backend itself at the end.")
    activity.report = None
    try:
        python = _python(context)
    except StartError as exc:
        activity.state, activity.message = "failed", str(exc)
        raise
    activity.python = python
    command = env_setup.doctor_command(python, preferences.weights_dir(context))
    _start(activity, [env_setup.Step("Checking the backend", command, cwd=str(runner.EXTENSION_ROOT), capture=True)])
    return activity


def _python(context: bpy.types.Context) -> str:
    try:
        return preferences.backend_python(context)
    except preferences.BackendNotConfigured as exc:
        raise StartError(str(exc)) from None


def cancel(kind: str) -> bool:
    activity = activities[kind]
    return activity.task is not None and activity.task.cancel()


# --- following --------------------------------------------------------------------------------


def _poll(activity: Activity, max_lines: int = env_setup.POLL_LINES) -> bool:
    """Fold what the task said since the last call into the activity. True when something changed."""
    task = activity.task
    if task is None or activity.state != "running":
        return False
    lines = task.poll(max_lines)
    for line in lines:
        if line.stream == "out" and activity.kind == DOWNLOAD:
            activity.progress.feed(line.text)
        elif line.stream == "err" and line.text.strip():
            activity.stderr = [*activity.stderr[-39:], line.text]
    if task.finished:
        _finish(activity)
        return True
    return bool(lines)


def _finish(activity: Activity) -> None:
    task = activity.task
    activity.state = task.state
    if activity.kind == SETUP:
        _finish_setup(activity, task)
    elif activity.kind == DOWNLOAD:
        _finish_download(activity, task)
    else:
        _finish_check(activity, task)
    if bpy.app.background and activity.message:
        print(f"TrajMaster: {activity.message}", file=sys.stderr, flush=True)


def _finish_setup(activity: Activity, task: env_setup.Task) -> None:
    log = f" The full log is in {task.log_path}."
    if task.state == env_setup.CANCELLED:
        activity.message = (
            "Set Up Backend was cancelled; the environment is not ready: press Set Up Backend to finish it."
        )
        return
    if task.state == env_setup.FAILED:
        text = task.message
        if any(key in "\n".join(task.tail.lines(60)) for key in NETWORK_TROUBLE):
            text = text.rstrip(".") + " (check the internet connection or proxy)."
        activity.message = f"{text} The environment is not ready: fix that and press Set Up Backend again.{log}"
        return
    try:
        report = env_setup.parse_doctor(task.captured.get(len(task.steps) - 1, ""))
    except ValueError:
        activity.state = env_setup.FAILED
        activity.message = f"The new environment's backend check printed no report; the environment is not ready.{log}"
        return
    env_setup.mark_ready(activity.env_dir, activity.choice, activity.python, report)
    activities[CHECK].report, activities[CHECK].python = report, activity.python
    activities[CHECK].state, activities[CHECK].message = "done", ""
    if activity.choice == "PREVIEW":
        # What it is ready for, and what the Full Model would add, is the check's report below.
        activity.message = "The Preview Only environment is set up."
    else:
        activity.message = f"The backend environment (Full Model) is ready: {activity.python}."


# Fragments of pip's output that mean it could not reach the package index.
NETWORK_TROUBLE = (
    "NewConnectionError",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "No matching distribution found",
    "ProxyError",
    "ConnectTimeout",
)


def _finish_download(activity: Activity, task: env_setup.Task) -> None:
    if task.state == env_setup.CANCELLED:
        button = DOWNLOADS.get(activity.choice, DOWNLOADS["WEIGHTS"])[0]
        activity.message = f"Download cancelled; what was fetched is kept: press {button} to resume."
        return
    outcome = activity.progress.outcome()
    if task.state == env_setup.FAILED:
        activity.message = outcome or task.message
        if "huggingface_hub" in activity.message:
            # The backend reports the missing package as an internal failure with a crash log;
            # it is simply the Preview Only environment, and the user can fix that.
            activity.message = (
                f"The backend Python {activity.python} cannot download (huggingface_hub is not installed): set up "
                "the backend with Full Model, or pip install huggingface_hub into that Python."
            )
        return
    activity.message = outcome or "The download finished."
    if activity.progress.result is not None and not activity.progress.result.get("ready"):
        activity.state = env_setup.FAILED


def _finish_check(activity: Activity, task: env_setup.Task) -> None:
    if task.state == env_setup.CANCELLED:
        activity.message = "The backend check was cancelled."
        return
    try:
        activity.report = env_setup.parse_doctor(task.captured.get(0, ""))
    except ValueError:
        activity.report = None
        activity.state = env_setup.FAILED
        activity.message = env_setup.check_failure(activity.python, task.returncode, activity.stderr, task.message)
        return
    activity.state, activity.message = "done", ""


def tick() -> float | None:
    """The timer: follow the running tasks, redraw the preferences. None (stop) when nothing runs."""
    global max_tick_ms, max_finish_ms
    t0 = time.perf_counter()
    changed = finished = False
    for activity in activities.values():
        try:
            was_running = activity.state == "running"
            changed |= _poll(activity)
            finished |= was_running and activity.state != "running"
        except Exception as exc:  # a bug here must not leave the timer dead and the buttons stuck
            if activity.task is not None:
                activity.task.cancel()
            activity.state = "failed"
            activity.message = (
                f"The add-on failed while following {activity.kind.lower()} ({type(exc).__name__}: {exc})."
            )
            changed = True
    if changed:
        _redraw()
    # The tick that ends a task (parses doctor's report, writes the marker) is timed apart, as
    # runner times the tick that places a take; every other tick only drains queues.
    ms = (time.perf_counter() - t0) * 1000
    if finished:
        max_finish_ms = max(max_finish_ms, ms)
    else:
        max_tick_ms = max(max_tick_ms, ms)
    return TICK_S if any(a.running for a in activities.values()) else None


def _ensure_timer() -> None:
    if not bpy.app.timers.is_registered(tick):
        bpy.app.timers.register(tick, first_interval=TICK_S, persistent=True)


def _redraw() -> None:
    redraw.tag("PREFERENCES")


def wait(kind: str, timeout: float | None = None) -> None:
    """Block until the task of `kind` ends, ticking as the timer does (scripts, tests)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    activity = activities[kind]
    while activity.running or activity.state == "running":
        tick()
        if activity.state == "running":
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{kind} did not finish within {timeout} s")
            time.sleep(0.02)


# --- operators --------------------------------------------------------------------------------


def _outcome(op: bpy.types.Operator, activity: Activity) -> set[str]:
    """The operator's result: at once in the UI, the task's outcome in background Blender."""
    if activity.state == "running":
        op.report({"INFO"}, f"{dict((k, d) for k, _, d in KINDS)[activity.kind]}; see the add-on's preferences")
        return {"FINISHED"}
    if activity.state == env_setup.DONE:
        if activity.message:
            op.report({"INFO"}, activity.message)
        return {"FINISHED"}
    op.report({"ERROR"}, activity.message or "It did not finish.")
    return {"CANCELLED"}


class TRAJMASTER_OT_setup_backend(bpy.types.Operator):
    """Create the backend's own Python environment in the extension's user folder and install its packages \
(runs in the background; the log shows here)"""

    bl_idname = "trajmaster.setup_backend"
    bl_label = "Set Up Backend"
    bl_options: ClassVar[set[str]] = {"INTERNAL"}

    # SKIP_SAVE: a button that does not set it must not inherit the last run's value.
    clear: BoolProperty(
        name="From Scratch", description="Delete the environment's packages first", default=False, options={"SKIP_SAVE"}
    )

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        ok, note = online_access()
        if not ok:
            cls.poll_message_set(note.replace("to download", "to install the backend's packages"))
            return False
        return not any(a.running for a in activities.values())

    def execute(self, context: bpy.types.Context) -> set[str]:
        prefs = preferences.preferences(context)
        choice = prefs.env_choice if prefs is not None else "PREVIEW"
        try:
            activity = start_setup(context, choice, clear=self.clear)
        except StartError as exc:
            activities[SETUP].message = str(exc)
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        return _outcome(self, activity)


class TRAJMASTER_OT_download_weights(bpy.types.Operator):
    """Download CogVideoX-5B and 3DTrajMaster (about 24 GB, resumable) into the weights folder with the \
backend Python"""

    bl_idname = "trajmaster.download_weights"
    bl_label = "Download Weights"
    bl_options: ClassVar[set[str]] = {"INTERNAL"}

    what: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="What",
        items=(
            ("WEIGHTS", "Weights", "CogVideoX-5B and 3DTrajMaster, about 24 GB"),
            (
                "PROMPT",
                "Prompt Model",
                "Optional: Qwen2.5-1.5B-Instruct (Apache-2.0, about 3 GB), which writes Expand's proposals",
            ),
        ),
        default="WEIGHTS",
    )

    @classmethod
    def description(cls, context: bpy.types.Context, properties: Any) -> str:
        if properties.what == "PROMPT":
            return (
                "Download the optional prompt help model (Qwen2.5-1.5B-Instruct, Apache-2.0, about 3 GB, "
                "resumable) into the weights folder: Expand then writes with it instead of the offline fallback"
            )
        return cls.__doc__ or ""

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        ok, note = online_access()
        if not ok:
            cls.poll_message_set(note)
            return False
        return not activities[DOWNLOAD].running and not activities[SETUP].running

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            activity = start_download(context, self.what)
        except StartError as exc:
            activities[DOWNLOAD].message = str(exc)
            activities[DOWNLOAD].state = "failed"
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        return _outcome(self, activity)


class TRAJMASTER_OT_check_backend(bpy.types.Operator):
    """Run the backend's doctor with the backend Python: GPU, VRAM, torch/CUDA and diffusers versions, weights \
found, free disk"""

    bl_idname = "trajmaster.check_backend"
    bl_label = "Check Backend"
    bl_options: ClassVar[set[str]] = {"INTERNAL"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return not activities[CHECK].running and not activities[SETUP].running

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            activity = start_check(context)
        except StartError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        return _outcome(self, activity)


class TRAJMASTER_OT_cancel_setup_task(bpy.types.Operator):
    """Stop it now (the process and everything it started); a half-built environment is left not ready"""

    bl_idname = "trajmaster.cancel_setup_task"
    bl_label = "Cancel"
    bl_options: ClassVar[set[str]] = {"INTERNAL"}

    kind: EnumProperty(items=KINDS, name="Task")

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return any(a.running for a in activities.values())

    def execute(self, context: bpy.types.Context) -> set[str]:
        if not cancel(self.kind):
            return {"CANCELLED"}
        if _synchronous():
            wait(self.kind, timeout=30)
        return {"FINISHED"}


class TRAJMASTER_OT_open_setup_log(bpy.types.Operator):
    """Open the full log of the last run in the system's text viewer"""

    bl_idname = "trajmaster.open_setup_log"
    bl_label = "Open Log"
    bl_options: ClassVar[set[str]] = {"INTERNAL"}

    kind: EnumProperty(items=KINDS, name="Task")

    def execute(self, context: bpy.types.Context) -> set[str]:
        path = activities[self.kind].log_path
        if not path or not os.path.exists(path):
            self.report({"ERROR"}, "There is no log yet; it is written when the task runs.")
            return {"CANCELLED"}
        bpy.ops.wm.path_open(filepath=path)
        return {"FINISHED"}


# --- drawing (called from the preferences' draw) ----------------------------------------------


def _draw_log(layout: bpy.types.UILayout, prefs: Any, activity: Activity) -> None:
    task = activity.task
    if task is None:
        return
    # A finished setup's log ends with the backend check's JSON: shown only on request (More Lines),
    # the outcome sentence and the check's report say the same for people.
    if activity.state == "done" and not prefs.show_full_log:
        row = layout.row()
        row.prop(prefs, "show_full_log", text="Show Log")
        row.operator(TRAJMASTER_OT_open_setup_log.bl_idname, icon="TEXT").kind = activity.kind
        return
    lines = task.tail.lines(TAIL_LONG if prefs.show_full_log else TAIL_SHORT)
    if not lines:
        return
    box = layout.box()
    col = box.column(align=True)
    col.scale_y = 0.7
    for line in lines:
        col.label(text=line[:160])
    row = box.row()
    row.prop(prefs, "show_full_log")
    row.operator(TRAJMASTER_OT_open_setup_log.bl_idname, icon="TEXT").kind = activity.kind


def _draw_outcome(layout: bpy.types.UILayout, activity: Activity) -> None:
    if activity.state == "running" or not activity.message:
        return
    icon = {"done": "CHECKMARK", "cancelled": "INFO"}.get(activity.state, "ERROR")
    ui_text.wrapped(layout, activity.message, icon)


def _draw_running(layout: bpy.types.UILayout, activity: Activity, text: str, factor: float | None = None) -> None:
    row = layout.row()
    if factor is None:
        task = activity.task
        elapsed = int(time.monotonic() - task.started) if task is not None else 0
        row.label(text=f"{text} ({elapsed} s)", icon="SORTTIME")
    else:
        compat.draw_progress(row, factor, text)
    row.operator(TRAJMASTER_OT_cancel_setup_task.bl_idname, text="Cancel", icon="CANCEL").kind = activity.kind


def draw_backend(prefs: Any, layout: bpy.types.UILayout) -> None:
    box = layout.box()
    box.label(text="Backend Python", icon="CONSOLE")
    box.row().prop(prefs, "python_source", expand=True)
    if os.environ.get(preferences.ENV_PYTHON):
        env_python = os.environ[preferences.ENV_PYTHON]
        ui_text.wrapped(box, f"{preferences.ENV_PYTHON} is set and used instead: {env_python}", "INFO")
    setup = activities[SETUP]
    if prefs.python_source == preferences.MANAGED:
        env_dir = preferences.managed_env_dir()
        state = env_setup.env_state(env_dir)
        col = box.column()
        if setup.running:
            col.label(text=f"Being set up in {env_dir}", icon="SORTTIME")
        elif state["ready"]:
            label = "Preview Only" if state.get("choice") == "PREVIEW" else "Full Model"
            col.label(text=f"Ready ({label}): {state['python']}", icon="CHECKMARK")
        elif state["exists"]:
            col.label(text="Not ready: the last setup did not finish. Press Set Up Backend.", icon="ERROR")
        else:
            col.label(text=f"Not set up yet. Set Up Backend creates it in {env_dir}.", icon="INFO")
        col.prop(prefs, "env_choice", expand=True)
        if setup.running:
            task = setup.task
            _draw_running(col, setup, f"{task.title} (step {task.step + 1} of {len(task.steps)})")
        else:
            row = col.row()
            ok, note = online_access()
            row.enabled = ok and not any(a.running for a in activities.values())
            row.operator(
                TRAJMASTER_OT_setup_backend.bl_idname,
                icon="IMPORT",
                text="Update Backend" if state["exists"] else "Set Up Backend",
            )
            if state["exists"]:
                row.operator(TRAJMASTER_OT_setup_backend.bl_idname, text="Rebuild From Scratch").clear = True
            if not ok:
                ui_text.wrapped(col, note.replace("to download", "to install the backend's packages"), "ERROR")
        _draw_outcome(col, setup)
        _draw_log(col, prefs, setup)
    else:
        box.prop(prefs, "python_path")
    _draw_check(prefs, box)


def _draw_check(prefs: Any, layout: bpy.types.UILayout) -> None:
    check = activities[CHECK]
    col = layout.column()
    if check.running:
        _draw_running(col, check, "Checking the backend")
        return
    row = col.row()
    row.enabled = not activities[SETUP].running
    row.operator(TRAJMASTER_OT_check_backend.bl_idname, icon="VIEWZOOM")
    if check.state == "failed" and check.message:
        ui_text.wrapped(col, check.message, "ERROR")
    report = check.report
    if report is None:
        return
    grid = col.box().grid_flow(row_major=True, columns=2, even_columns=False, align=True)
    for label, value in env_setup.doctor_facts(report):
        grid.label(text=label)
        grid.label(text=value)
    icons = {"ok": "CHECKMARK", "warning": "ERROR", "error": "CANCEL", "info": "BLANK1", "next": "INFO"}
    managed = prefs.python_source == preferences.MANAGED and not os.environ.get(preferences.ENV_PYTHON)
    for level, sentence in env_setup.doctor_sentences(report, managed=managed):
        ui_text.wrapped(col, sentence, icons.get(level, "INFO"))


def draw_weights(prefs: Any, layout: bpy.types.UILayout) -> None:
    box = layout.box()
    box.label(text="Model Weights", icon="FILE_FOLDER")
    col = box.column()
    col.prop(prefs, "weights_folder")
    if os.environ.get(preferences.ENV_WEIGHTS):
        ui_text.wrapped(
            col, f"{preferences.ENV_WEIGHTS} is set and used instead: {os.environ[preferences.ENV_WEIGHTS]}", "INFO"
        )
    elif not prefs.weights_folder.strip():
        col.label(text=f"Default: {preferences.default_weights_dir()}", icon="BLANK1")
    download = activities[DOWNLOAD]
    if download.running:
        progress = download.progress
        _draw_running(col, download, progress.text() or "Starting the download", progress.fraction)
        if progress.message:
            col.label(text=progress.message, icon="BLANK1")
    else:
        ok, note = online_access()
        row = col.row()
        row.enabled = ok and not activities[SETUP].running
        for what, (button, _label, _only) in DOWNLOADS.items():
            row.operator(TRAJMASTER_OT_download_weights.bl_idname, text=button, icon="IMPORT").what = what
        if not ok:
            ui_text.wrapped(col, note, "ERROR")
    _draw_outcome(col, download)
    if download.state in ("failed",) or download.running:
        _draw_log(col, prefs, download)


classes = (
    TRAJMASTER_OT_setup_backend,
    TRAJMASTER_OT_download_weights,
    TRAJMASTER_OT_check_backend,
    TRAJMASTER_OT_cancel_setup_task,
    TRAJMASTER_OT_open_setup_log,
)


def shutdown() -> None:
    """Stop every running task (unregister): no install or download outlives the add-on."""
    for activity in activities.values():
        if activity.task is not None and activity.task.cancel():
            activity.task.wait(timeout=env_setup.KILL_GRACE_S + 2)
            _poll(activity, max_lines=10_000)


_register_classes, _unregister_classes = bpy.utils.register_classes_factory(classes)


def register() -> None:
    _register_classes()


def unregister() -> None:
    if bpy.app.timers.is_registered(tick):
        bpy.app.timers.unregister(tick)
    shutdown()
    _unregister_classes()
