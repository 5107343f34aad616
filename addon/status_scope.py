"""What the panel may say: status texts and findings belong to the file and the state they describe.

runner.status holds the panel's texts (message, last_error, info) and the findings as runtime
state, outside the .blend, so nothing rewinds them by itself. Each text carries its *subject*
(runner.Status.say), and is dropped as soon as the subject is gone:

| subject | set by | dropped when |
| --- | --- | --- |
| ("file",) (a text set without say) | job outcomes, "Copied N take(s)" | a file is loaded, File > New |
| ("unsaved",) | the temporary-folder warning of Generate | the file is saved |
| ("pending",) | a take that finished after another file was opened | the take was added (kept across loads) |
| ("shot", scene) | a refusal from job_export.shot_problems | the shot no longer has that problem |
| ("motion", scene, fingerprint) | a refusal of the sampled motion | the shot's settings or animation change |
| ("take", scene, strip) | "Added <take>" | that strip is gone from the sequencer (undo, deleted) |

The findings are recomputed, not dropped: they remember the *fingerprint* of the shot they were
computed for (the overlay's settings key and animation signature, plus the shot camera's lens and
the scene's resolution, which the camera-view check reads). When an edit changes it, they are
marked stale and a short debounced timer samples the shot again (job_export.shot_findings, a few
ms); a shot that can no longer be sampled shows none until it can.

Handlers (all @persistent): load_post (a new file: drop all but pending texts, forget the
findings), undo_post and redo_post (check every subject), depsgraph_update_post (the same, but it
runs on every edit: it returns at once unless a text or the findings depend on what changed;
its cost is measured in `stats`, see docs/addon.md). Editing the add-on's own settings (a prompt,
the shot camera) sends no depsgraph update, so the panel also calls `before_draw()`, which checks
the cheap subjects each time the sidebar draws. Work that samples the shot runs in the
timer (`tick`), never inside a handler; background Blender runs no timers, so scripts and tests
call `tick()` themselves.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import bpy
from bpy.app.handlers import persistent

from . import compat, job_export, overlay, presence, redraw, runner, sampling

DEBOUNCE_S = 0.15
TEXT_FIELDS = ("message", "last_error", "info")


@dataclass
class _Checked:
    """The shot the shown findings were computed for."""

    scene: str = ""
    fingerprint: Any = None
    watch: frozenset[str] = frozenset()
    stale: bool = False


@dataclass
class Stats:
    """Main-thread cost of the depsgraph handler (for docs/addon.md, shown nowhere)."""

    calls: int = 0
    total_ms: float = 0.0
    max_ms: float = 0.0
    recomputes: int = 0


_checked = _Checked()
_changed_at = 0.0
stats = Stats()


# --- subjects ---------------------------------------------------------------------------------


def subject(name: str) -> tuple[Any, ...]:
    """What the text field `name` is about now (("file",) unless it was set with Status.say)."""
    text = getattr(runner.status, name)
    said = runner.status.about.get(name)
    return said[1] if said is not None and said[0] == text else ("file",)


def fingerprint(scene: bpy.types.Scene) -> tuple[Any, ...]:
    """Everything the findings of `scene`'s shot depend on (a few property reads and the overlay's
    animation signature, about 0.5 ms)."""
    return (overlay.settings_key(scene), overlay.animation_signature(scene), _camera_key(scene))


def _camera_key(scene: bpy.types.Scene) -> tuple[Any, ...]:
    camera = job_export.shot_camera(scene)
    data = getattr(camera, "data", None)
    if not isinstance(data, bpy.types.Camera):
        return ()
    render = scene.render
    return (
        data.type,
        round(data.lens, 4),
        round(data.sensor_width, 4),
        round(data.sensor_height, 4),
        data.sensor_fit,
        round(data.shift_x, 4),
        round(data.shift_y, 4),
        render.resolution_x,
        render.resolution_y,
        render.pixel_aspect_x,
        render.pixel_aspect_y,
    )


def refusal_subject(exc: job_export.ShotError, scene: bpy.types.Scene) -> tuple[Any, ...]:
    """The subject of a refused shot: its problem, or (for the sampled motion) its fingerprint."""
    if isinstance(exc, job_export.MotionError):
        return ("motion", scene.name, fingerprint(scene))
    return ("shot", scene.name)


def _holds(about: tuple[Any, ...], text: str) -> bool:
    """Whether the subject of `text` is still there."""
    kind = about[0]
    if kind == "unsaved":
        return not bpy.data.filepath
    if kind == "pending":
        return bool(runner.status.pending)
    if kind in ("shot", "motion", "take"):
        scene = bpy.data.scenes.get(about[1])
        if scene is None:
            return False
        if kind == "shot":
            return text in job_export.shot_problems(scene, presence.shot_view_layer(bpy.context, scene))
        if kind == "motion":
            return fingerprint(scene) == about[2]
        editor = scene.sequence_editor
        return editor is not None and compat.all_strips(editor).get(about[2]) is not None
    return True  # the file: only a load drops it


def prune(kinds: tuple[str, ...] = ("unsaved", "pending", "shot", "motion", "take")) -> bool:
    """Drop every text whose subject (of these kinds) is gone. True when something was dropped."""
    changed = False
    for name in TEXT_FIELDS:
        text = getattr(runner.status, name)
        if not text:
            continue
        about = subject(name)
        if about[0] in kinds and not _holds(about, text):
            setattr(runner.status, name, "")
            runner.status.about.pop(name, None)
            changed = True
    return changed


# What before_draw checks: everything but the motion (its animation signature is for edits, which
# the depsgraph handler sees; the rest is a few property reads).
_CHEAP = ("unsaved", "pending", "shot", "take")


def before_draw(context: bpy.types.Context) -> None:
    """Called by the N-panel before it draws (the main panel draws before its sub-panels): drop the
    texts whose subject is gone. Needed because editing an add-on setting (a prompt, the camera)
    from the UI or Python sends no depsgraph update, while the sidebar is redrawn for it anyway."""
    if _needs_checking():
        prune(_CHEAP)


def _needs_checking() -> bool:
    return any(getattr(runner.status, n) and subject(n)[0] not in ("file", "pending") for n in TEXT_FIELDS)


# --- findings ---------------------------------------------------------------------------------


def set_findings(scene: bpy.types.Scene, findings: list[Any]) -> None:
    """Show `findings` for `scene`'s shot as it is now; they are recomputed when the shot changes."""
    runner.status.findings = [f.as_dict() if hasattr(f, "as_dict") else dict(f) for f in findings]
    runner.status.findings_scene = scene.name
    camera, items = overlay._objects(scene)
    _checked.scene = scene.name
    _checked.fingerprint = fingerprint(scene)
    _checked.watch = frozenset(o.name for o in overlay.related_objects([camera, *(e.object for e in items)]))
    _checked.stale = False


def refresh_findings(context: bpy.types.Context, scene: bpy.types.Scene) -> bool:
    """Check `scene`'s shot again if its findings are shown and it changed (samples the shot: call
    it from an operator, a timer or a script). True when the findings were recomputed."""
    if _checked.scene != scene.name or runner.status.findings_scene != scene.name:
        return False
    if _checked.fingerprint == fingerprint(scene):
        _checked.stale = False
        return False
    try:
        found = job_export.shot_findings(context, scene)
    except job_export.ShotError:
        found = []  # the shot cannot be sampled now (a missing empty, no camera): the panel says why
    set_findings(scene, found)
    stats.recomputes += 1
    return True


def _forget_findings() -> None:
    runner.status.findings, runner.status.findings_scene = [], ""
    _checked.scene, _checked.fingerprint, _checked.watch, _checked.stale = "", None, frozenset(), False


def _mark_stale() -> None:
    global _changed_at
    _checked.stale = True
    _changed_at = time.monotonic()
    if not bpy.app.timers.is_registered(tick):
        bpy.app.timers.register(tick, first_interval=DEBOUNCE_S)


# --- the timer and the handlers -------------------------------------------------------------------


def tick() -> float | None:
    """The debounced timer after an edit, undo or redo: recompute stale findings, drop texts whose
    subject is gone, redraw the sidebar if anything changed."""
    wait = _changed_at + DEBOUNCE_S - time.monotonic()
    if wait > 0:
        return wait
    context = bpy.context
    changed = False
    scene = bpy.data.scenes.get(_checked.scene) if _checked.scene else None
    if scene is not None:
        try:
            changed = refresh_findings(context, scene)
        except Exception as exc:  # a broken rig must not kill the timer
            _checked.stale = False
            print(f"TrajMaster: cannot check the shot of {scene.name!r} again: {exc}")
    elif _checked.scene:
        _forget_findings()
        changed = True
    if _needs_checking():
        changed = prune() or changed
    if changed:
        redraw.tag("VIEW_3D", "UI")
    return None


@persistent
def _forget_previous_file(*_args: Any) -> None:
    """Another file (or File > New): nothing said about the previous one stays."""
    status = runner.status
    for name in TEXT_FIELDS:
        about = subject(name)
        keep = about[0] == "pending" and status.pending
        if name == "message" and runner.busy():
            keep = True  # the running job's stage: it goes on whatever file is open
        if not keep:
            setattr(status, name, "")
            status.about.pop(name, None)
    _forget_findings()


@persistent
def _recheck_after_undo(*_args: Any) -> None:
    if prune():
        redraw.tag("VIEW_3D", "UI")
    # Checking the findings' shot again samples it: the timer does that, outside the handler.
    if _checked.scene:
        _mark_stale()


@persistent
def _follow_edits(scene: bpy.types.Scene, depsgraph: bpy.types.Depsgraph) -> None:
    if sampling.active:
        return  # a frame change made by sampling the shot, not an edit
    global _changed_at
    t0 = time.perf_counter()
    texts = _needs_checking()
    findings = _checked.scene == scene.name
    if findings and _checked.stale:
        _changed_at = time.monotonic()  # still editing: the timer waits for a pause (debounce)
        findings = False
    if texts or findings:
        _follow_updates(scene, depsgraph, texts, findings)
    ms = (time.perf_counter() - t0) * 1000.0
    stats.calls += 1
    stats.total_ms += ms
    stats.max_ms = max(stats.max_ms, ms)


def _follow_updates(scene: bpy.types.Scene, depsgraph: bpy.types.Depsgraph, texts: bool, findings: bool) -> None:
    if texts and prune():
        redraw.tag("VIEW_3D", "UI")
    if not findings:
        return
    touched = False
    for update in depsgraph.updates:
        data = update.id
        if isinstance(data, (bpy.types.Action, bpy.types.Scene, bpy.types.Camera, bpy.types.Collection)):
            touched = True  # keys, settings or resolution, the lens, what is in the scene
        elif isinstance(data, bpy.types.Object) and data.name in _checked.watch:
            touched = True
        if touched:
            break
    if touched and fingerprint(scene) != _checked.fingerprint:
        _mark_stale()


def register() -> None:
    bpy.app.handlers.load_post.append(_forget_previous_file)
    bpy.app.handlers.undo_post.append(_recheck_after_undo)
    bpy.app.handlers.redo_post.append(_recheck_after_undo)
    bpy.app.handlers.depsgraph_update_post.append(_follow_edits)


def unregister() -> None:
    for handlers, fn in (
        (bpy.app.handlers.depsgraph_update_post, _follow_edits),
        (bpy.app.handlers.redo_post, _recheck_after_undo),
        (bpy.app.handlers.undo_post, _recheck_after_undo),
        (bpy.app.handlers.load_post, _forget_previous_file),
    ):
        while fn in handlers:
            handlers.remove(fn)
    if bpy.app.timers.is_registered(tick):
        bpy.app.timers.unregister(tick)
