"""The contact sheet of a set: its takes side by side in one video, as a strip above the set.

Made by the backend's own command (`python -m backend contact-sheet`, its ffmpeg) in a one-shot
process in the local backend Python: the takes are files in this computer's take folder,
whatever made them (a server's takes are fetched there), so it needs no worker and runs beside a
generation. In the UI it runs from a timer and can be cancelled; background Blender waits for it.

- Which takes: the selected take's group (compare.group: its variation set in set order, else
  the shot's takes), 2-8 of them. A set's cells are labelled with what differs and the take's
  number ("seed 123 (take 5)"); other takes with what differs in their sidecars (the backend's).
- The file: next to the first take, `{shot}_take_{first}-{last}_sheet.mp4` (`_sheet_2`, ... when
  that name is taken): a new file every time, never a replaced one (the backend refuses an
  existing name too).
- The strip: over the shot's frames, retimed like a take (sequencer.retime), on the first free
  channel above the group, named `{first take}-{last} · contact sheet` and marked with
  sequencer.SHEET_PROP (it is not a take: stepping and A/B ignore it). It plays and the shot's
  takes are muted, as a director who asked to see the sheet expects; playing a take again
  (compare.solo) mutes the sheet. Adding it is one undo step; undo removes the strip and keeps
  the file (a video on disk is never deleted by the add-on; the next sheet gets a new name).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import bpy
from bpy.app.handlers import persistent
from bpy.props import StringProperty

from ...backend import takes as backend_takes
from .. import backend_tasks, compat, operators, panel, redraw, runner, sequencer
from ..executor import BackendUnavailable, event
from . import compare

TICK_S = 0.2
MIN_TAKES, MAX_TAKES = 2, 8
LABEL = "contact sheet"
NEEDS_BACKEND = (
    "A contact sheet is made by the backend on this computer, and none is set up: press Set Up Backend in "
    "Edit > Preferences > Add-ons > TrajMaster Previz (Preview Only is enough)."
)


@dataclass
class SheetJob:
    """The contact sheet being made (one at a time)."""

    task: backend_tasks.Task
    scene: str  # the scene whose sequencer holds the takes
    shot: str
    frame_start: int
    frame_end: int
    takes: list[str]  # the takes' strip names, in the sheet's order
    numbers: list[int]
    set_id: str
    out: Path
    blend_file: str


@dataclass
class Note:
    """What Compare says about the last contact sheet of a shot (until another file is opened)."""

    text: str = ""
    error: bool = False
    scene: str = ""
    shot: str = ""


job: SheetJob | None = None
note = Note()


def sheet_path(folder: Path, shot: str, numbers: list[int]) -> Path:
    """A name for the sheet of these takes that nothing in `folder` has yet."""
    stem = f"{shot}_take_{min(numbers):03d}-{max(numbers):03d}_sheet"
    path = folder / f"{stem}.mp4"
    k = 2
    while path.exists() or path.is_symlink():
        path = folder / f"{stem}_{k}.mp4"
        k += 1
    return path


def _labels(group: list[Any]) -> list[str]:
    """A set's labels (what differs, and the take's number); none for other takes (the backend
    then labels them with what differs in their sidecars)."""
    infos = [sequencer.take_info(s) or {} for s in group]
    if not all(i.get("variation_label") for i in infos):
        return []
    return [f"{i['variation_label']} (take {int(i.get('take', 0))})" for i in infos]


def _say(text: str, scene: str, shot: str, *, error: bool = False) -> None:
    global note
    note = Note(text, error, scene, shot)


def for_shot(context: bpy.types.Context, shot: str) -> tuple[SheetJob | None, Note | None]:
    """The running sheet and the note about this shot of the sequencer the user looks at."""
    scene = compat.sequencer_scene(context, context.scene).name if context.scene else ""
    running = job if job is not None and (job.scene, job.shot) == (scene, shot) else None
    said = note if note.text and (note.scene, note.shot) == (scene, shot) else None
    return running, said


# --- making it ----------------------------------------------------------------------------------


def start(context: bpy.types.Context, strip: Any) -> SheetJob:
    """Start the sheet of `strip`'s group. Raises runner.RunError with the sentence to show."""
    global job
    if job is not None:
        raise runner.RunError("A contact sheet is being made; wait for it or press Cancel.")
    editor = compare.editor(context)
    info = sequencer.take_info(strip) or {}
    shot = str(info.get("shot", ""))
    group = compare.group(editor, strip)
    what = "this set" if info.get("variation_set") else f"the shot {shot}"
    if len(group) < MIN_TAKES:
        raise runner.RunError(
            f"A contact sheet compares {MIN_TAKES}-{MAX_TAKES} takes and {what} has {len(group)}; "
            "generate variations first."
        )
    if len(group) > MAX_TAKES:
        raise runner.RunError(
            f"A contact sheet shows at most {MAX_TAKES} takes and {what} has {len(group)} in the sequencer; "
            "select a take of a variation set, or delete the takes you no longer need."
        )
    videos = [Path(bpy.path.abspath(s.filepath)) for s in group]
    missing = next((s for s, v in zip(group, videos, strict=True) if not v.is_file()), None)
    if missing is not None:
        raise runner.RunError(
            f"The video of {missing.name} is missing ({bpy.path.abspath(missing.filepath)}); "
            "put it back or delete its strip, then make the contact sheet again."
        )
    try:
        python = runner.local_python(context)
    except runner.RunError:
        raise runner.RunError(NEEDS_BACKEND) from None
    numbers = [int((sequencer.take_info(s) or {}).get("take") or 0) for s in group]
    if not all(numbers):  # a take renamed by hand: its file name still says its number
        numbers = [backend_takes.take_number(v.stem, shot) or k + 1 for k, v in enumerate(videos)]
    out = sheet_path(videos[0].parent, shot, numbers)
    request = backend_tasks.ContactSheetRequest([str(v) for v in videos], str(out), _labels(group))
    try:
        task = backend_tasks.Task(backend_tasks.oneshot(python, runner.EXTENSION_ROOT), request, own=True)
    except BackendUnavailable as exc:
        raise runner.RunError(str(exc)) from None
    job = SheetJob(
        task,
        compat.sequencer_scene(context, context.scene).name,
        shot,
        int(info.get("frame_start", 0)),
        int(info.get("frame_end", 0)),
        [s.name for s in group],
        numbers,
        str(info.get("variation_set") or ""),
        out,
        bpy.data.filepath,
    )
    _say(f"Making the contact sheet of {len(group)} takes", job.scene, shot)
    return job


def tick() -> float | None:
    """Follow the backend; add the strip when the sheet is there."""
    if job is None:
        return None
    try:
        changed = job.task.poll()
    except Exception as exc:  # a bug here must not leave the sheet running forever
        job.task.abandon()
        job.task.end = event("error", message=f"The add-on failed while following the backend ({exc}).")
        changed = True
    if job.task.done:
        finish(bpy.context)
    if changed:
        redraw.tag("SEQUENCE_EDITOR", "UI")
    return TICK_S if job is not None else None


def finish(context: bpy.types.Context) -> Any | None:
    """The backend ended: add the sheet's strip, or say why there is none. Returns the strip."""
    global job
    ended, job = job, None
    if ended is None:
        return None
    task = ended.task
    if task.result is None:
        cancelled = task.end is not None and task.end.get("event") == "cancelled"
        text = "Cancelled; no contact sheet was written." if cancelled else task.failure
        _say(text, ended.scene, ended.shot, error=not cancelled)
        return None
    scene = bpy.data.scenes.get(ended.scene)
    if scene is None or bpy.data.filepath != ended.blend_file:
        return None  # another file was opened meanwhile: the sheet stays on disk, unused
    try:
        strip = place(context, scene, ended, (int(task.result["width"]), int(task.result["height"])))
    except sequencer.TakeError as exc:
        _say(str(exc), ended.scene, ended.shot, error=True)
        return None
    _say(f"Added the contact sheet {strip.name}", ended.scene, ended.shot)
    runner._undo_push(f"Add contact sheet {strip.name}")
    return strip


def place(context: bpy.types.Context, scene: bpy.types.Scene, made: SheetJob, size: tuple[int, int]) -> Any:
    """The sheet's strip over the shot, above the set, playing, scaled to fit the frame (it is
    bigger than a take: up to twice its size each way); the selection is kept (Compare stays on
    the take the user had selected)."""
    editor = scene.sequence_editor or scene.sequence_editor_create()
    strips = compat.strips(editor)
    members = [strips.get(name) for name in made.takes]
    members = [s for s in members if s is not None]
    start, end = made.frame_start, made.frame_end
    above = max((s.channel for s in members), default=0)
    channel = sequencer.free_channel(editor, start, end + 1, above)
    video = str(made.out)
    filepath = video
    if bpy.data.filepath:
        try:
            filepath = bpy.path.relpath(video)
        except ValueError:
            pass  # another drive (Windows)
    first = made.takes[0].split(sequencer.LABEL_SEPARATOR)[0]
    name = f"{first}-{max(made.numbers):03d}{sequencer.LABEL_SEPARATOR}{LABEL}"
    active = editor.active_strip
    selected = [s for s in strips if s.select]
    try:
        strip = strips.new_movie(name=name, filepath=filepath, channel=channel, frame_start=start)
    except RuntimeError as exc:
        raise sequencer.TakeError(f"Blender could not open the contact sheet {video} ({exc}).") from None
    try:
        sequencer.retime(scene, editor, strip, start, end)
    except BaseException:
        strips.remove(strip)
        raise
    # Blender's Python API adds a movie at its own size (the fit method applies only when it is
    # added from the UI): scale it to fit the frame, as "Scale to Fit" would.
    scale = min(scene.render.resolution_x / size[0], scene.render.resolution_y / size[1])
    strip.transform.scale_x = strip.transform.scale_y = scale
    strip[sequencer.SHEET_PROP] = {
        "shot": made.shot,
        "scene": made.scene,
        "set": made.set_id,
        "takes": json.dumps(made.takes),  # IDProperties hold no lists of strings
        "video": video,
        "frame_start": start,
        "frame_end": end,
    }
    play(editor, strip)
    strip.select = False
    for s in selected:
        s.select = True
    editor.active_strip = active
    return strip


def play(editor: bpy.types.SequenceEditor, sheet: Any) -> None:
    """Play the sheet: the shot's takes and other sheets are muted (one thing of a shot plays)."""
    shot = str((sequencer.sheet_info(sheet) or {}).get("shot", ""))
    for take in sequencer.shot_takes(editor, shot):
        take.mute = True
    for other in sequencer.shot_sheets(editor, shot):
        other.mute = other != sheet
    sheet.mute = False


def cancel() -> bool:
    if job is None:
        return False
    job.task.cancel()  # the backend stops at its next step and leaves nothing behind
    return True


def abandon() -> None:
    """Stop following the sheet at once (another file, unregister): its process is ended."""
    global job
    if job is not None:
        job.task.abandon()
        job = None


# --- operators and drawing ------------------------------------------------------------------------


class TRAJMASTER_OT_make_contact_sheet(bpy.types.Operator):
    """Put the takes of this set side by side in one video and add it above them (the backend's own \
ffmpeg; takes a few seconds)"""

    bl_idname = "trajmaster.make_contact_sheet"
    bl_label = "Make Contact Sheet"
    bl_options: ClassVar[set[str]] = {"REGISTER"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return job is None and sequencer.selected_take(context)[1] is not None

    def execute(self, context: bpy.types.Context) -> set[str]:
        strip, _info = sequencer.selected_take(context)
        try:
            made = start(context, strip)
        except runner.RunError as exc:
            return operators._fail(self, str(exc))
        if not bpy.app.background:
            if not bpy.app.timers.is_registered(tick):
                bpy.app.timers.register(tick, first_interval=TICK_S, persistent=True)
            self.report({"INFO"}, f"Making the contact sheet of {len(made.takes)} takes")
            return {"FINISHED"}
        made.task.wait(timeout=600)  # background Blender: no timers, so wait, as Generate does
        sheet = finish(context)
        if sheet is None:
            return operators._fail(self, note.text or "No contact sheet was made.")
        self.report({"INFO"}, f"Added the contact sheet {sheet.name}")
        return {"FINISHED"}


class TRAJMASTER_OT_cancel_contact_sheet(bpy.types.Operator):
    """Stop making the contact sheet; nothing is written"""

    bl_idname = "trajmaster.cancel_contact_sheet"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return job is not None

    def execute(self, context: bpy.types.Context) -> set[str]:
        cancel()
        return {"FINISHED"}


class TRAJMASTER_OT_play_contact_sheet(bpy.types.Operator):
    """Play this contact sheet (the shot's takes are muted; play a take again to see it alone)"""

    bl_idname = "trajmaster.play_contact_sheet"
    bl_label = "Play Contact Sheet"
    bl_options: ClassVar[set[str]] = {"REGISTER", "UNDO"}

    strip: StringProperty(name="Strip", options={"SKIP_SAVE"})

    def execute(self, context: bpy.types.Context) -> set[str]:
        editor = compare.editor(context)
        sheet = compat.strips(editor).get(self.strip) if editor else None
        if sheet is None or sequencer.sheet_info(sheet) is None:
            return operators._fail(self, "That contact sheet is no longer in the sequencer.")
        play(editor, sheet)
        return {"FINISHED"}


def draw(layout: bpy.types.UILayout, context: bpy.types.Context, strip: Any) -> None:
    """Compare's contact sheet section: the button (or the progress and Cancel), the shot's
    sheets with Play, and what happened to the last one."""
    info = sequencer.take_info(strip) or {}
    shot = str(info.get("shot", ""))
    running, said = for_shot(context, shot)
    col = layout.column(align=True)
    if running is not None:
        task = running.task
        text = task.message or "Starting the backend"
        if task.total:
            text = f"Reading take {task.step} of {task.total}"
        row = col.row(align=True)
        compat.draw_progress(row, task.step / task.total if task.total else 0.0, text)
        row.operator("trajmaster.cancel_contact_sheet", text="", icon="X")
    else:
        # Enabled for a group of the wrong size too: the press says why in one sentence.
        col.operator("trajmaster.make_contact_sheet", icon="IMGDISPLAY")
    editor = compare.editor(context)
    for sheet in sequencer.shot_sheets(editor, shot) if editor else []:
        row = col.row(align=True)
        row.operator(
            "trajmaster.play_contact_sheet", text=sheet.name, icon="PLAY" if not sheet.mute else "BLANK1"
        ).strip = sheet.name
    if said is not None and running is None:
        panel._wrapped(col, context, said.text, icon="ERROR" if said.error else "INFO")


@persistent
def _forget_sheet_on_load(*_args: Any) -> None:
    global note
    abandon()  # its strip would go into another file's sequencer
    note = Note()


classes = (TRAJMASTER_OT_make_contact_sheet, TRAJMASTER_OT_cancel_contact_sheet, TRAJMASTER_OT_play_contact_sheet)
_register_classes, _unregister_classes = bpy.utils.register_classes_factory(classes)


def register() -> None:
    _register_classes()
    bpy.app.handlers.load_post.append(_forget_sheet_on_load)


def unregister() -> None:
    if _forget_sheet_on_load in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(_forget_sheet_on_load)
    if bpy.app.timers.is_registered(tick):
        bpy.app.timers.unregister(tick)
    abandon()
    _unregister_classes()
