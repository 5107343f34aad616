"""The team server in Blender's UI: the preferences' Run On section with Check Server, and the
N-panel's Server section (the server's replicas, busy or idle, and its queue).

Nothing here waits on the network on Blender's main thread: Check Server asks from a thread and
a timer shows the answer; the Server section draws the last status that the executor's
StatusWatch fetched (every few seconds, on its own thread, only while the section is drawn or
takes run) and a 1 s timer redraws the sidebar when a newer one has arrived.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any, ClassVar

import bpy

from ..backend.client import Client, ServerError
from . import panel, preferences, redraw, runner, ui_text
from .server_executor import StatusWatch, describe, replica_label

CHECK_TIMEOUT_S = 10.0
STATE_ICONS = {"busy": "PLAY", "idle": "PAUSE", "loading": "SORTTIME", "cold": "FREEZE"}


# --- Check Server ------------------------------------------------------------------------------


@dataclass
class Check:
    """The last Check Server: running, or what it found (one sentence)."""

    running: bool = False
    ok: bool = False
    sentence: str = ""
    answer: tuple[bool, str] | None = None  # set by the thread, taken by the timer


check = Check()


def forget_check() -> None:
    """The settings changed: the last answer was about other ones (a check still running is
    answered, and its answer kept, since it was asked with the settings of its time)."""
    if not check.running:
        check.ok, check.sentence = False, ""


def _ask(settings: preferences.ServerSettings) -> tuple[bool, str]:
    try:
        client = Client(settings.url, settings.token, token_source=settings.source, timeout=CHECK_TIMEOUT_S)
        return True, describe(client.url, client.status())
    except ServerError as exc:
        return False, str(exc)


def start_check(context: bpy.types.Context) -> None:
    """Ask the server for its status: in a thread in the UI (the answer appears when it comes),
    at once in background Blender."""
    try:
        settings = preferences.server_settings(context)
    except preferences.BackendNotConfigured as exc:
        check.running, check.ok, check.sentence = False, False, str(exc)
        return
    check.running, check.answer = True, None
    if bpy.app.background:
        check.answer = _ask(settings)
        _take_answer()
        return

    def work() -> None:
        check.answer = _ask(settings)

    threading.Thread(target=work, name="trajmaster-check-server", daemon=True).start()
    if not bpy.app.timers.is_registered(_check_tick):
        bpy.app.timers.register(_check_tick, first_interval=0.1)


def _take_answer() -> None:
    check.ok, check.sentence = check.answer
    check.running, check.answer = False, None


def _check_tick() -> float | None:
    if check.answer is None:
        return 0.1
    _take_answer()
    redraw.tag("PREFERENCES")
    redraw.tag("VIEW_3D", "UI")
    return None


class TRAJMASTER_OT_check_server(bpy.types.Operator):
    """Ask the TrajMaster server whether it answers, accepts the token, and what it runs"""

    bl_idname = "trajmaster.check_server"
    bl_label = "Check Server"
    bl_options: ClassVar[set[str]] = {"INTERNAL"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return not check.running

    def execute(self, context: bpy.types.Context) -> set[str]:
        start_check(context)
        if not check.running:
            self.report({"INFO"} if check.ok else {"WARNING"}, check.sentence)
        return {"FINISHED"}


# --- the preferences ---------------------------------------------------------------------------


def draw_preferences(prefs: Any, layout: bpy.types.UILayout) -> bool:
    """The Run On box; True when takes run on a server (the local backend's boxes are then not
    drawn: nothing of them is needed)."""
    box = layout.box()
    box.label(text="Run On", icon="NETWORK_DRIVE")
    box.row().prop(prefs, "run_on", expand=True)
    if prefs.run_on != preferences.SERVER:
        return False
    col = box.column()
    col.use_property_split = True
    col.use_property_decorate = False
    env_url = os.environ.get(preferences.ENV_SERVER, "").strip()
    row = col.row()
    row.enabled = not env_url
    row.prop(prefs, "server_url", placeholder="http://gpu-box:8765")
    col.prop(prefs, "server_token")
    col.prop(prefs, "server_token_file")
    note = _token_note(prefs, env_url)
    if note:
        ui_text.wrapped(col, note, "INFO")
    row = box.row()
    row.operator(TRAJMASTER_OT_check_server.bl_idname, icon="URL")
    if check.running:
        box.label(text="Asking the server...", icon="SORTTIME")
    elif check.sentence:
        ui_text.wrapped(box, check.sentence, "CHECKMARK" if check.ok else "ERROR")
    ui_text.wrapped(
        box,
        "The takes are made on the server and downloaded into the usual take folder: this computer needs no "
        "backend, weights or GPU.",
        "INFO",
    )
    return True


def _token_note(prefs: Any, env_url: str) -> str:
    """Which address and token are used, when that is not simply what is typed above."""
    notes = []
    if env_url:
        notes.append(f"{preferences.ENV_SERVER} is set and used as the address: {env_url}.")
    if os.environ.get(preferences.ENV_TOKEN, "").strip():
        notes.append(f"{preferences.ENV_TOKEN} is set: its token is used, not the ones above.")
    elif prefs.server_token_file.strip() and prefs.server_token:
        notes.append("The token file is used; the typed token is not.")
    return " ".join(notes)


# --- the N-panel's Server section ---------------------------------------------------------------

_watched: StatusWatch | None = None
_drawn_version = -1


def _redraw_tick() -> float | None:
    """Redraw the sidebar when a newer status arrived; stop when nobody looks any more."""
    watch = _watched
    if watch is None or not watch.wanted:
        return None
    if watch.version != _drawn_version:
        redraw.tag("VIEW_3D", "UI")
    return 1.0


class TRAJMASTER_PT_server(bpy.types.Panel):
    """The server's replicas and queue, while takes run on a server."""

    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = panel.CATEGORY
    bl_parent_id = panel.MAIN
    bl_label = "Server"
    # Under Generate and its Queue (the same order, registered after them): where the takes run.
    bl_order = 11

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return preferences.run_on(context) == preferences.SERVER

    def draw(self, context: bpy.types.Context) -> None:
        global _watched, _drawn_version
        layout = self.layout
        watch, problem = runner.server_view(context)
        if watch is None:
            panel._wrapped(layout.column(align=True), context, problem, icon="ERROR")
            return
        watch.want()
        _watched, _drawn_version = watch, watch.version
        if not bpy.app.timers.is_registered(_redraw_tick):
            bpy.app.timers.register(_redraw_tick, first_interval=1.0)
        status = watch.status
        if watch.error is not None:
            panel._wrapped(layout.column(align=True), context, str(watch.error), icon="ERROR")
        if status is None:
            if watch.error is None:
                layout.label(text="Asking the server...", icon="SORTTIME")
            return
        draw_status(layout, context, watch.client.url, status, runner.server_take_names())


def draw_status(
    layout: bpy.types.UILayout, context: bpy.types.Context, url: str, status: dict[str, Any], mine: dict[str, str]
) -> None:
    """The replicas (name, busy or idle, the take it runs when it is one of ours) and the queue."""
    engine = str(status.get("engine") or "")
    col = layout.column(align=True)
    col.label(text=f"{url.split('://', 1)[-1]} · {engine}", icon="NETWORK_DRIVE")
    replicas = status.get("replicas") or []
    if not replicas:
        col.label(text="No replica running yet", icon="SORTTIME")
    for replica in replicas:
        row = col.row(align=True)
        state = str(replica.get("state") or "?")
        row.label(text=replica_label(replica), icon=STATE_ICONS.get(state, "DOT"))
        take = mine.get(str(replica.get("job") or ""))
        right = row.row(align=True)
        right.alignment = "RIGHT"
        right.label(text=f"{state} · {take}" if take else state)
    queued = [q.get("id") for q in status.get("queue") or []]
    yours = sum(q in mine for q in queued)
    text = f"{len(queued)} waiting ({yours} yours)" if queued else "Nothing waiting"
    col.label(text=f"Queue: {text}", icon="TIME")
    scene_engine = context.scene.trajmaster.engine.lower() if context.scene else engine
    if engine and scene_engine != engine:
        name = "Preview" if engine == "preview" else "CogVideoX"
        panel._wrapped(
            layout.column(align=True),
            context,
            f"The server runs the {engine} engine: set Engine to {name} in the Model section to make takes there.",
            icon="ERROR",
        )


classes = (TRAJMASTER_OT_check_server, TRAJMASTER_PT_server)
_register, _unregister = bpy.utils.register_classes_factory(classes)


def register() -> None:
    _register()


def unregister() -> None:
    for timer in (_check_tick, _redraw_tick):
        if bpy.app.timers.is_registered(timer):
            bpy.app.timers.unregister(timer)
    _unregister()
