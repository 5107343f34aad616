"""Operators: Generate, Cancel, Export Job, entity list editing, and the take actions.

Each failure is reported as one sentence (the operator report, and the panel's last error);
an ERROR report also makes `bpy.ops.trajmaster.*` raise in scripts, so farms notice.
"""

from __future__ import annotations

import json
import os
import random
import textwrap
from pathlib import Path
from typing import ClassVar

import bpy
from bpy.props import BoolProperty, IntProperty, StringProperty
from bpy_extras.io_utils import ExportHelper

from ..backend import job as jobfile
from . import file_browser, job_export, outputs, properties, runner, sequencer, status_scope

# The prompt editor: wide enough for a 24-word prompt on two lines (about 7.5 px a character).
PROMPT_DIALOG_WIDTH = 640
PROMPT_DIALOG_CHARS = 100


def _fail(op: bpy.types.Operator, message: str, *subject: object) -> set[str]:
    """Report `message` and show it in the panel as being about `subject` (status_scope.py; default:
    the open file)."""
    runner.status.say("last_error", message, *subject)
    if not runner.busy():
        runner.status.message = ""  # an earlier "Added ..." is not what just happened
    op.report({"ERROR"}, message)
    return {"CANCELLED"}


def _busy(op: bpy.types.Operator) -> set[str]:
    """Generate or Regenerate while a take renders: the second click of a double click (within a
    second) is ignored with a note in the status bar; a later one is refused."""
    if runner.just_started():
        op.report({"INFO"}, "Already generating: a second click within a second is ignored.")
        return {"CANCELLED"}
    return _fail(op, "A generation is already running; wait for it to finish or press Cancel.")


def _shot(scene: bpy.types.Scene) -> sequencer.Shot:
    settings = scene.trajmaster
    return sequencer.Shot(outputs.shot_name(scene), settings.frame_start, settings.frame_end, scene.name)


def _export(op: bpy.types.Operator, context: bpy.types.Context) -> job_export.Export | None:
    try:
        export = job_export.build(context, context.scene)
    except job_export.ShotError as exc:
        # About the shot: it goes away once the shot is fixed (status_scope.py).
        _fail(op, str(exc), *status_scope.refusal_subject(exc, context.scene))
        return None
    runner.set_findings(context.scene, export.findings)
    return export


class TRAJMASTER_OT_generate(bpy.types.Operator):
    """Generate a take of this shot (runs in the background; the take lands in the sequencer)"""

    bl_idname = "trajmaster.generate"
    bl_label = "Generate"
    bl_options: ClassVar[set[str]] = {"REGISTER"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return context.scene is not None

    def execute(self, context: bpy.types.Context) -> set[str]:
        if runner.busy():
            return _busy(self)
        export = _export(self, context)
        if export is None:
            return {"CANCELLED"}
        try:
            name = runner.submit(context, context.scene, _shot(context.scene), export.job)
        except runner.RunError as exc:
            return _fail(self, str(exc))
        if runner.status.info:
            self.report({"WARNING"}, runner.status.info)
        self.report({"INFO"}, f"Generating {name}" if runner.busy() else f"Added the take {name} to the sequencer")
        return {"FINISHED"}


class TRAJMASTER_OT_cancel(bpy.types.Operator):
    """Stop the running generation; nothing partial is kept"""

    bl_idname = "trajmaster.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return runner.busy()

    def execute(self, context: bpy.types.Context) -> set[str]:
        runner.cancel()
        return {"FINISHED"}


class TRAJMASTER_OT_export_job(bpy.types.Operator, ExportHelper):
    """Write this shot's job file, to run with `python -m backend generate` elsewhere"""

    bl_idname = "trajmaster.export_job"
    bl_label = "Export Job"
    filename_ext = ".json"
    filter_glob: StringProperty(default="*.json", options={"HIDDEN"})
    overwrite: BoolProperty(name="Overwrite", default=False, description="Replace an existing file of that name")

    def execute(self, context: bpy.types.Context) -> set[str]:
        export = _export(self, context)
        if export is None:
            return {"CANCELLED"}
        path = Path(bpy.path.abspath(self.filepath))
        try:
            job_export.write(export.job, path, overwrite=self.overwrite)
        except FileExistsError:
            return _fail(self, f"{path} already exists; choose another name or tick Overwrite.")
        except OSError as exc:
            return _fail(self, f"Cannot write {path} ({exc.strerror}); choose another folder.")
        self.report({"INFO"}, f"Wrote {path}")
        return {"FINISHED"}


class TRAJMASTER_OT_check_shot(bpy.types.Operator):
    """Sample the shot and list where it leaves what the model was trained on"""

    bl_idname = "trajmaster.check_shot"
    bl_label = "Check Shot"

    def execute(self, context: bpy.types.Context) -> set[str]:
        export = _export(self, context)
        if export is None:
            return {"CANCELLED"}
        runner.status.last_error = ""
        n = len(export.findings)
        self.report({"INFO"}, "No warnings" if n == 0 else f"{n} warning{'s' if n > 1 else ''}")
        return {"FINISHED"}


class TRAJMASTER_OT_entity_add(bpy.types.Operator):
    """Add an entity (up to 3); the active empty is used when it is not in the list yet"""

    bl_idname = "trajmaster.entity_add"
    bl_label = "Add Entity"
    bl_options: ClassVar[set[str]] = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return context.scene is not None and len(context.scene.trajmaster.entities) < properties.MAX_ENTITIES

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.trajmaster
        used = {e.object for e in settings.entities}
        item = settings.entities.add()
        item.color = properties.ENTITY_COLORS[(len(settings.entities) - 1) % len(properties.ENTITY_COLORS)]
        obj = context.active_object
        if obj is not None and obj.type == "EMPTY" and obj not in used:
            item.object = obj
        settings.active_entity_index = len(settings.entities) - 1
        return {"FINISHED"}


class TRAJMASTER_OT_entity_remove(bpy.types.Operator):
    """Remove the selected entity (the empty itself stays in the scene)"""

    bl_idname = "trajmaster.entity_remove"
    bl_label = "Remove Entity"
    bl_options: ClassVar[set[str]] = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return context.scene is not None and len(context.scene.trajmaster.entities) > 0

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.trajmaster
        index = min(settings.active_entity_index, len(settings.entities) - 1)
        settings.entities.remove(index)
        settings.active_entity_index = max(0, min(index, len(settings.entities) - 1))
        return {"FINISHED"}


class TRAJMASTER_OT_randomize_seed(bpy.types.Operator):
    """Pick a new random seed"""

    bl_idname = "trajmaster.randomize_seed"
    bl_label = "Random Seed"
    bl_options: ClassVar[set[str]] = {"REGISTER", "UNDO"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        context.scene.trajmaster.seed = random.SystemRandom().randint(0, properties.MAX_SEED)
        return {"FINISHED"}


class TRAJMASTER_OT_reset_range(bpy.types.Operator):
    """Make the shot follow the scene's frame range again"""

    bl_idname = "trajmaster.reset_range"
    bl_label = "Use Scene Range"
    bl_options: ClassVar[set[str]] = {"REGISTER", "UNDO"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        context.scene.trajmaster.use_custom_range = False
        return {"FINISHED"}


class TRAJMASTER_OT_copy_error(bpy.types.Operator):
    """Copy the last error message to the clipboard"""

    bl_idname = "trajmaster.copy_error"
    bl_label = "Copy Error"

    def execute(self, context: bpy.types.Context) -> set[str]:
        context.window_manager.clipboard = runner.status.last_error
        return {"FINISHED"}


class TRAJMASTER_OT_clear_error(bpy.types.Operator):
    """Dismiss the last error message"""

    bl_idname = "trajmaster.clear_error"
    bl_label = "Dismiss"

    def execute(self, context: bpy.types.Context) -> set[str]:
        runner.status.last_error = ""
        return {"FINISHED"}


def _selected_take(op: bpy.types.Operator, context: bpy.types.Context) -> dict | None:
    _strip, info = sequencer.selected_take(context)
    if info is None:
        _fail(op, "Select a TrajMaster take in the sequencer first.")
    return info


def _read_job(op: bpy.types.Operator, info: dict) -> dict | None:
    path = Path(info.get("job", ""))
    try:
        return jobfile.parse(path.read_text(encoding="utf-8"))
    except OSError:
        _fail(op, f"The job file of this take ({path}) is gone; generate the shot again from the TrajMaster panel.")
    except jobfile.JobError as exc:
        _fail(op, f"The job file of this take ({path}) cannot be read: {exc}")
    return None


class TRAJMASTER_OT_regenerate(bpy.types.Operator):
    """Generate a new take of the selected take's job (same poses and prompts)"""

    bl_idname = "trajmaster.regenerate"
    bl_label = "Regenerate"

    new_seed: BoolProperty(name="New Seed", default=True, description="Use a new random seed")
    final: BoolProperty(
        name="Final Quality",
        default=False,
        description="Make the new take at Final quality (the release's steps, no step cache)",
    )

    def execute(self, context: bpy.types.Context) -> set[str]:
        if runner.busy():
            return _busy(self)
        info = _selected_take(self, context)
        if info is None:
            return {"CANCELLED"}
        job = _read_job(self, info)
        if job is None:
            return {"CANCELLED"}
        if self.new_seed:
            job["sampling"]["seed"] = random.SystemRandom().randint(0, properties.MAX_SEED)
        if self.final:
            job["sampling"] = {k: v for k, v in job["sampling"].items() if k not in jobfile.PRESET_FIELDS}
            job["sampling"].update(quality="final", **jobfile.QUALITY_PRESETS["final"])
        (job.get("source") or {}).pop("variation", None)  # a take of its own, not a member of the set
        scene = bpy.data.scenes.get(info.get("scene", "")) or context.scene
        shot = sequencer.Shot(info["shot"], int(info["frame_start"]), int(info["frame_end"]), scene.name)
        try:
            name = runner.submit(context, scene, shot, job)
        except runner.RunError as exc:
            return _fail(self, str(exc))
        self.report({"INFO"}, f"Generating {name}" if runner.busy() else f"Added the take {name} to the sequencer")
        return {"FINISHED"}


class TRAJMASTER_OT_open_job(bpy.types.Operator):
    """Open the selected take's job file in the Text Editor"""

    bl_idname = "trajmaster.open_job"
    bl_label = "Open Job"

    def execute(self, context: bpy.types.Context) -> set[str]:
        info = _selected_take(self, context)
        if info is None:
            return {"CANCELLED"}
        if _read_job(self, info) is None:
            return {"CANCELLED"}
        path = info["job"]
        text = next((t for t in bpy.data.texts if t.filepath and bpy.path.abspath(t.filepath) == path), None)
        if text is None:
            text = bpy.data.texts.load(path)
        for area in context.screen.areas if context.screen else ():
            if area.type == "TEXT_EDITOR":
                area.spaces.active.text = text
                break
        self.report({"INFO"}, f"Opened {Path(path).name} in the Text Editor")
        return {"FINISHED"}


class TRAJMASTER_OT_show_take_in_folder(bpy.types.Operator):
    """Open the take's folder in the system's file browser, with its video selected where the \
system allows it"""

    bl_idname = "trajmaster.show_take_in_folder"
    bl_label = "Show in Folder"

    strip: StringProperty(
        name="Take", description="The take strip's name; empty: the active strip", options={"SKIP_SAVE"}
    )

    def execute(self, context: bpy.types.Context) -> set[str]:
        strip, info = sequencer.take_named(context, self.strip) if self.strip else sequencer.selected_take(context)
        if info is None:
            return _fail(self, "Select a TrajMaster take in the sequencer first.")
        video = sequencer.take_video(strip)
        if not video.parent.is_dir():
            return _fail(self, f"The take's folder {video.parent} is gone; it was moved or deleted.")
        if not video.exists():
            self.report({"WARNING"}, f"The take's video {video.name} is gone from {video.parent}; showing the folder.")
        else:
            self.report({"INFO"}, f"{video}")
        if bpy.app.background:
            return {"FINISHED"}  # no file browser to open: the path is the report
        if not (video.exists() and file_browser.reveal(video)):
            bpy.ops.wm.path_open(filepath=str(video.parent) + os.sep)
        return {"FINISHED"}


class TRAJMASTER_OT_edit_prompt(bpy.types.Operator):
    """Edit the prompt in a wide window that shows all of it and counts its words"""

    bl_idname = "trajmaster.edit_prompt"
    bl_label = "Edit Prompt"
    bl_options: ClassVar[set[str]] = {"REGISTER", "UNDO"}

    entity: IntProperty(
        name="Entity",
        default=-1,
        min=-1,
        description="Index of the entity; -1: the location prompt",
        options={"SKIP_SAVE"},
    )
    text: StringProperty(name="Prompt", options={"SKIP_SAVE"})

    def _target(self, context: bpy.types.Context) -> tuple[bpy.types.PropertyGroup, str, str] | None:
        settings = context.scene.trajmaster
        if self.entity < 0:
            return settings, "location_prompt", "Location"
        if self.entity < len(settings.entities):
            item = settings.entities[self.entity]
            return item, "prompt", properties.entity_name(item) or f"Entity {self.entity + 1}"
        return None

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        target = self._target(context)
        if target is None:
            return _fail(self, "There is no such entity; add one in the Entities list first.")
        owner, prop, title = target
        self.text = getattr(owner, prop)
        return context.window_manager.invoke_props_dialog(
            self, width=PROMPT_DIALOG_WIDTH, title=f"Prompt: {title}", confirm_text="Apply"
        )

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.activate_init = True  # the text field is ready to type into
        layout.prop(self, "text", text="")
        # The whole prompt, wrapped: the field above scrolls, this shows every word at once.
        col = layout.box().column(align=True)
        for line in textwrap.wrap(self.text, PROMPT_DIALOG_CHARS) or ["(empty)"]:
            col.label(text=line)
        hint = job_export.word_hint(self.text)
        words = jobfile.word_count(self.text)
        layout.label(text=hint or f"{words} words", icon="INFO" if hint else "CHECKMARK" if words else "BLANK1")

    def execute(self, context: bpy.types.Context) -> set[str]:
        target = self._target(context)
        if target is None:
            return _fail(self, "There is no such entity; add one in the Entities list first.")
        owner, prop, _ = target
        setattr(owner, prop, self.text)
        return {"FINISHED"}


class TRAJMASTER_OT_add_pending_take(bpy.types.Operator):
    """Put a take that finished after another file was opened into this scene's sequencer"""

    bl_idname = "trajmaster.add_pending_take"
    bl_label = "Add Finished Take"
    bl_options: ClassVar[set[str]] = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return bool(runner.status.pending) and context.scene is not None

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            name = runner.place_pending(context, context.scene)
        except runner.RunError as exc:
            return _fail(self, str(exc))
        self.report({"INFO"}, f"Added the take {name}")
        return {"FINISHED"}


def entities_text(info: dict) -> list[dict]:
    """The entities stored on a take strip."""
    try:
        return list(json.loads(info.get("entities", "[]")))
    except ValueError:
        return []


classes = (
    TRAJMASTER_OT_generate,
    TRAJMASTER_OT_cancel,
    TRAJMASTER_OT_export_job,
    TRAJMASTER_OT_check_shot,
    TRAJMASTER_OT_entity_add,
    TRAJMASTER_OT_entity_remove,
    TRAJMASTER_OT_randomize_seed,
    TRAJMASTER_OT_reset_range,
    TRAJMASTER_OT_copy_error,
    TRAJMASTER_OT_clear_error,
    TRAJMASTER_OT_regenerate,
    TRAJMASTER_OT_open_job,
    TRAJMASTER_OT_show_take_in_folder,
    TRAJMASTER_OT_edit_prompt,
    TRAJMASTER_OT_add_pending_take,
)


# Blender's own helper: registers in order, unregisters in reverse.
register, unregister = bpy.utils.register_classes_factory(classes)
