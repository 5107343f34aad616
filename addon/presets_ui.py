"""Presets in Blender: prompt pickers, trajectory templates as keyframes, example shots.

The presets themselves (files, validation, path math) are backend/presets.py and
backend/templates.py, pure numpy; this module is the bpy side:

- the library: the built-in presets plus the extension's user folder, loaded once and cached
  (Reload reads both again); a broken user file is one sentence in `library().problems`, never
  a reason to hide the built-ins;
- `trajmaster.pick_entity_prompt` / `trajmaster.pick_location_prompt`: a search popup over the
  prompt presets that fills the active entity's prompt or the location prompt;
- `trajmaster.apply_template`: a template as location + rotation Z keys in front of the shot
  camera, over the shot range at the scene frame rate;
- `trajmaster.load_example_shot`: a whole example shot (camera, keyed empties, prompts, range);
- the "Presets" sub-panel and its menus.

Keys are written world-space, so an empty that something else moves (a parent, constraints,
drivers, NLA, delta transforms) is refused with a sentence rather than keyed into nonsense.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import ClassVar

import bpy
import numpy as np
from bpy.props import EnumProperty, IntProperty, StringProperty
from mathutils import Quaternion

from ..backend import poses, presets
from . import compat, job_export, panel, properties, runner, sampling, ui_text

# The extension's package (bl_ext.<repository>.trajmaster_previz): Blender keys the extension's
# user folder by it.
PACKAGE = __package__.rpartition(".")[0]
USER_SUBFOLDER = "presets"
# Channels a template writes; everything else on the empty's action is left alone.
KEYED_PATHS = ("location", "rotation_euler")

_library: presets.PresetLibrary | None = None
# Blender keeps only pointers to the strings of dynamic enum items: Python must hold them, and
# rebuilding them on every draw would let Blender read freed text. Rebuilt with the library.
_entity_items: list[tuple[str, str, str]] = []
_location_items: list[tuple[str, str, str]] = []


# --- the library --------------------------------------------------------------------------------


def user_folder(*, create: bool = True) -> Path | None:
    """The user presets folder, inside the extension's user folder (kept across upgrades).

    None when the add-on is not installed as an extension (a legacy add-on install or a
    development checkout has no extension user folder) or Blender cannot create the folder.
    """
    if not PACKAGE.startswith("bl_ext."):
        return None
    try:
        path = bpy.utils.extension_path_user(PACKAGE, path=USER_SUBFOLDER, create=create)
    except (ValueError, RuntimeError, OSError):
        return None
    return Path(path) if path else None


def library(*, reload: bool = False) -> presets.PresetLibrary:
    """The merged preset library, read on first use and on Reload."""
    global _library
    if _library is None or reload:
        _library = _load()
        _rebuild_items(_library)
    return _library


def _load() -> presets.PresetLibrary:
    try:
        return presets.load_library(user_folder())
    except presets.PresetError as exc:
        # Only a built-in file raises: the installed extension is damaged. The panel still draws.
        broken = presets.PresetLibrary()
        broken.problems.append(
            f"The built-in preset file {exc.file} cannot be read ({exc.reason}); reinstall TrajMaster Previz."
        )
        return broken


def _rebuild_items(lib: presets.PresetLibrary) -> None:
    # The search popup matches on the label, so the category is part of it ("animal", "robot").
    _entity_items[:] = [
        (p.name, f"{p.category.capitalize()}: {p.name}", p.prompt)
        for p in sorted(lib.entities.values(), key=lambda p: (p.category, p.name))
    ]
    _location_items[:] = [(p.name, p.name, p.prompt) for p in sorted(lib.locations.values(), key=lambda p: p.name)]


# Between a preset's name and its text in the search fields' lists.
SEARCH_SEPARATOR = " \u00b7 "


def _matches(words: list[str], *fields: str) -> bool:
    text = " ".join(fields).lower()
    return all(word in text for word in words)


def entity_candidates(text: str) -> list[str]:
    """The entity presets whose name, kind or prompt holds every word of `text`, as
    "name · prompt" for the search field's list: the prompt is shown before it is picked, and
    Blender, which filters a search list again by the words typed, matches its words too ("dog"
    finds the Golden retriever, "a dog with a long golden coat, ...")."""
    words = text.lower().split()
    found = [p for p in library().entities.values() if _matches(words, p.name, p.category, p.prompt)]
    return [f"{p.name}{SEARCH_SEPARATOR}{p.prompt}" for p in sorted(found, key=lambda p: (p.category, p.name))]


def location_candidates(text: str) -> list[str]:
    """The location presets whose name or prompt holds every word of `text`, as "name · prompt"."""
    words = text.lower().split()
    found = sorted((p for p in library().locations.values() if _matches(words, p.name, p.prompt)), key=lambda p: p.name)
    return [f"{p.name}{SEARCH_SEPARATOR}{p.prompt}" for p in found]


def _picked_name(value: str) -> str:
    """The preset name of a search field's value ("name · prompt", or a bare name from a script)."""
    return value.split(SEARCH_SEPARATOR, 1)[0]


def apply_entity_preset(item: bpy.types.PropertyGroup, preset: presets.EntityPreset) -> None:
    """What picking an entity preset does: its prompt, and its typical height for the preview."""
    item.prompt = preset.prompt
    item.height = preset.height


def entity_preset_picked(settings: bpy.types.PropertyGroup) -> None:
    """The Presets panel's entity search field got a name: fill the active entity, empty the field."""
    name = _picked_name(settings.entity_preset)
    if not name:
        return
    found = library().entities.get(name)
    item = _active_entity(settings, -1)
    if found is not None and item is not None:
        apply_entity_preset(item, found)
    settings.entity_preset = ""  # ready for the next search (this update then returns at once)


def location_preset_picked(settings: bpy.types.PropertyGroup) -> None:
    name = _picked_name(settings.location_preset)
    if not name:
        return
    found = library().locations.get(name)
    if found is not None:
        settings.location_prompt = found.prompt
    settings.location_preset = ""


def _entity_enum(self: bpy.types.Operator, context: bpy.types.Context | None) -> list[tuple[str, str, str]]:
    library()
    return _entity_items


def _location_enum(self: bpy.types.Operator, context: bpy.types.Context | None) -> list[tuple[str, str, str]]:
    library()
    return _location_items


# --- keying a template ----------------------------------------------------------------------------


def keying_problem(obj: bpy.types.Object) -> str | None:
    """Why world-space location/rotation keys on `obj` would not put it where the template says."""
    if obj.parent is not None:
        return (
            f"'{obj.name}' has a parent ('{obj.parent.name}'), so keys made in world space would move with it; "
            "clear its parent (Object > Parent > Clear and Keep Transformation) or use another empty."
        )
    active = [c.name for c in obj.constraints if c.enabled and c.influence > 0]
    if active:
        return (
            f"'{obj.name}' has constraints ({', '.join(active)}) that move it; remove or disable them, "
            "or use another empty."
        )
    anim = obj.animation_data
    if anim is not None:
        if any(d.data_path.startswith(KEYED_PATHS) for d in anim.drivers):
            return f"'{obj.name}' has drivers on its location or rotation; remove them or use another empty."
        if any(not t.mute and len(t.strips) > 0 for t in anim.nla_tracks):
            return (
                f"'{obj.name}' has NLA tracks that move it too; mute or remove them (NLA editor), or use another empty."
            )
    offsets = [*obj.delta_location, *obj.delta_rotation_euler, *(obj.delta_rotation_quaternion - Quaternion())]
    if any(abs(v) > 1e-9 for v in offsets):
        return (
            f"'{obj.name}' has delta transforms that offset its keys; set its delta location and rotation to 0 "
            "(Object properties > Transform > Delta Transform) or use another empty."
        )
    return None


def _clear_keyed_channels(obj: bpy.types.Object) -> None:
    anim = obj.animation_data
    if anim is None or anim.action is None:
        return
    if anim.action.users - int(anim.action.use_fake_user) > 1:
        # Shared with other objects: clearing its curves would change them too.
        anim.action = anim.action.copy()
    for fcurve in compat.object_fcurves(obj):
        if fcurve.data_path in KEYED_PATHS:
            fcurve.keyframe_points.clear()
            # A modifier (Cycles, Noise) would bend the template; the curve is replaced as a whole.
            for modifier in list(fcurve.modifiers):
                fcurve.modifiers.remove(modifier)


def camera_matrix_at(
    context: bpy.types.Context, scene: bpy.types.Scene, camera: bpy.types.Object, frame: int
) -> np.ndarray:
    """The camera's evaluated world matrix at `frame` (an animated camera: where it starts the shot), in
    metres like the templates."""
    return sampling.world_matrices(context, scene, [camera], [float(frame)])[0, 0]


def key_template(
    scene: bpy.types.Scene,
    obj: bpy.types.Object,
    template: presets.Template,
    entity_index: int,
    camera_matrix: np.ndarray,
    facing: str,
) -> list[presets.Keyframe]:
    """Replace `obj`'s location and rotation keys with the template entity's path over the shot.

    The keys are Bezier with auto-clamped handles whatever the user's keyframe preferences say:
    backend.templates spaced them for exactly that interpolation.
    """
    settings = scene.trajmaster
    keys = presets.template_keyframes(
        template,
        entity_index,
        job_export.scene_fps(scene),
        settings.frame_start,
        settings.frame_end,
        camera_matrix,
        facing,
    )
    _clear_keyed_channels(obj)
    if obj.rotation_mode in ("QUATERNION", "AXIS_ANGLE"):
        obj.rotation_mode = "XYZ"  # rotation_euler would be ignored; with X = Y = 0 any Euler order agrees
    units = sampling.metres_per_unit(scene)  # the keys are in metres, the scene may count in centimetres
    for key in keys:
        obj.location = tuple(v / units for v in key.location)
        obj.rotation_euler = (0.0, 0.0, key.rotation_z)
        # keyframe_insert works on 4.2's actions and 4.4+'s layered ones (5.0: channelbags) alike.
        obj.keyframe_insert("location", frame=key.frame)
        obj.keyframe_insert("rotation_euler", frame=key.frame)
    for fcurve in compat.object_fcurves(obj):
        if fcurve.data_path in KEYED_PATHS:
            for point in fcurve.keyframe_points:
                point.interpolation = "BEZIER"
                point.handle_left_type = point.handle_right_type = "AUTO_CLAMPED"
            fcurve.update()
    return keys


# Marks the objects an example shot made, with the shot's name: loading the shot again sets up
# those objects again instead of piling up new ones, and never re-keys an object of the user's
# that happens to have the same name (a "Horse" of their own).
EXAMPLE_MARK = "trajmaster_example"


def _new_empty(
    context: bpy.types.Context, scene: bpy.types.Scene, name: str, shot: str | None = None
) -> bpy.types.Object:
    obj = bpy.data.objects.new(name, None)
    obj.empty_display_type = "SINGLE_ARROW"
    obj.empty_display_size = 1.0
    if shot is not None:
        obj[EXAMPLE_MARK] = shot
    collection = context.collection if context.scene == scene and context.collection else scene.collection
    collection.objects.link(obj)
    return obj


def _reusable(scene: bpy.types.Scene, name: str, kind: str, shot: str) -> bpy.types.Object | None:
    """The object this example shot made for `name` in this scene on an earlier load, if any: named
    `name`, or `name.001`... when an object of the user's already had that name."""
    named = re.compile(rf"{re.escape(name)}(\.\d{{3,}})?")
    for obj in sorted((o for o in scene.objects if named.fullmatch(o.name)), key=lambda o: (o.name != name, o.name)):
        if obj.type != kind or obj.get(EXAMPLE_MARK) != shot or keying_problem(obj):
            continue
        if kind == "CAMERA" and obj.animation_data is not None and obj.animation_data.action is not None:
            continue  # an animated camera would not stay where the shot puts it
        return obj
    return None


def _new_entity(settings: bpy.types.PropertyGroup) -> bpy.types.PropertyGroup:
    item = settings.entities.add()
    item.color = properties.ENTITY_COLORS[(len(settings.entities) - 1) % len(properties.ENTITY_COLORS)]
    return item


def _finding_text(findings: list) -> str:
    return " ".join(f.message for f in findings)


def _fail(op: bpy.types.Operator, message: str) -> set[str]:
    op.report({"ERROR"}, message)
    return {"CANCELLED"}


def _active_entity(settings: bpy.types.PropertyGroup, index: int) -> bpy.types.PropertyGroup | None:
    if index < 0:
        index = settings.active_entity_index
    return settings.entities[index] if 0 <= index < len(settings.entities) else None


# --- operators --------------------------------------------------------------------------------


class TRAJMASTER_OT_pick_entity_prompt(bpy.types.Operator):
    """Fill the active entity's prompt and height from a preset (search by name or kind)"""

    bl_idname = "trajmaster.pick_entity_prompt"
    bl_label = "Entity Prompt Preset"
    bl_options: ClassVar[set[str]] = {"REGISTER", "UNDO"}
    bl_property = "preset"

    preset: EnumProperty(name="Preset", items=_entity_enum)
    entity: IntProperty(name="Entity", default=-1, min=-1, description="Index of the entity; -1: the active one")

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if context.scene is None or not context.scene.trajmaster.entities:
            cls.poll_message_set("Add an entity first")
            return False
        return True

    @classmethod
    def description(cls, context: bpy.types.Context, props: bpy.types.OperatorProperties) -> str:
        # The tooltip of each item of the presets menu: the prompt itself, before it is picked.
        found = library().entities.get(props.preset) if props.preset else None
        if found is None:
            return cls.__doc__
        return f"{found.prompt}. ({found.height:g} m tall in the preview.)"

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        context.window_manager.invoke_search_popup(self)
        return {"RUNNING_MODAL"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        item = _active_entity(context.scene.trajmaster, self.entity)
        found = library().entities.get(self.preset)
        if item is None:
            return _fail(self, "There is no such entity; add one in the Entities list first.")
        if found is None:
            return _fail(self, f"There is no entity preset named {self.preset!r}; reload the presets.")
        apply_entity_preset(item, found)
        self.report({"INFO"}, f"Prompt: {found.prompt}")
        return {"FINISHED"}


class TRAJMASTER_OT_pick_location_prompt(bpy.types.Operator):
    """Fill the location prompt from a preset (search by name)"""

    bl_idname = "trajmaster.pick_location_prompt"
    bl_label = "Location Prompt Preset"
    bl_options: ClassVar[set[str]] = {"REGISTER", "UNDO"}
    bl_property = "preset"

    preset: EnumProperty(name="Preset", items=_location_enum)

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return context.scene is not None

    @classmethod
    def description(cls, context: bpy.types.Context, props: bpy.types.OperatorProperties) -> str:
        found = library().locations.get(props.preset) if props.preset else None
        return found.prompt if found is not None else cls.__doc__

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        context.window_manager.invoke_search_popup(self)
        return {"RUNNING_MODAL"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        found = library().locations.get(self.preset)
        if found is None:
            return _fail(self, f"There is no location preset named {self.preset!r}; reload the presets.")
        context.scene.trajmaster.location_prompt = found.prompt
        self.report({"INFO"}, f"Location: {found.prompt}")
        return {"FINISHED"}


class TRAJMASTER_OT_apply_template(bpy.types.Operator):
    """Key a trajectory template onto the shot's empties, laid out in front of the shot camera"""

    bl_idname = "trajmaster.apply_template"
    bl_label = "Apply Trajectory Template"
    bl_options: ClassVar[set[str]] = {"REGISTER", "UNDO"}

    template: StringProperty(name="Template", description="The template's name")
    template_entity: IntProperty(
        name="Template Entity",
        default=-1,
        min=-1,
        max=properties.MAX_ENTITIES - 1,
        description="-1: every entity of the template, onto the shot's entities in order (added as needed); "
        "0 or more: only that entity of the template, onto the active entity",
    )

    @classmethod
    def description(cls, context: bpy.types.Context, props: bpy.types.OperatorProperties) -> str:
        template = library().trajectories.get(props.template)
        if template is None:
            return cls.__doc__
        if props.template_entity >= 0 and props.template_entity < len(template.entities):
            role = template.entities[props.template_entity].role
            return f"The active entity follows the {role} of '{template.name}'. {template.description}"
        return template.description or cls.__doc__

    def execute(self, context: bpy.types.Context) -> set[str]:
        scene = context.scene
        settings = scene.trajmaster
        template = library().trajectories.get(self.template)
        if template is None:
            return _fail(
                self, f"There is no trajectory template named {self.template!r}; pick one in the Presets panel."
            )
        camera = job_export.shot_camera(scene)
        if camera is None or camera.type != "CAMERA":
            return _fail(
                self,
                "The shot has no camera, and templates are laid out in front of it; "
                "pick one in the TrajMaster panel or set the scene camera.",
            )
        start, end = settings.frame_start, settings.frame_end
        if end <= start:
            return _fail(self, f"The shot range {start}-{end} is too short; set an end frame after the start frame.")
        count = len(template.entities)
        if self.template_entity >= count:
            return _fail(
                self,
                f"'{template.name}' has {count} entit{'y' if count == 1 else 'ies'}; "
                f"template entity {self.template_entity} does not exist (count from 0).",
            )
        # (template entity, shot entity index or None for "a new one")
        if self.template_entity >= 0 or count == 1:
            index = settings.active_entity_index if 0 <= settings.active_entity_index < len(settings.entities) else None
            targets = [(max(self.template_entity, 0), index)]
        else:
            targets = [(k, k if k < len(settings.entities) else None) for k in range(count)]
        # Refuse before changing anything.
        for _, index in targets:
            obj = settings.entities[index].object if index is not None else None
            problem = keying_problem(obj) if obj is not None else None
            if problem:
                return _fail(self, problem)
        matrix = camera_matrix_at(context, scene, camera, start)
        added, applied = [], []
        for k, index in targets:
            item = settings.entities[index] if index is not None else _new_entity(settings)
            if item.object is None:
                item.object = _new_empty(context, scene, template.entities[k].role.capitalize())
                added.append(item.object.name)
            key_template(scene, item.object, template, k, matrix, item.forward_axis)
            applied.append(f"'{item.object.name}' ({template.entities[k].role})")
        if len(targets) == 1:
            settings.active_entity_index = next(i for i, e in enumerate(settings.entities) if e.object == item.object)
        scene.frame_set(scene.frame_current)  # show the new keys at the current frame
        text = f"Applied '{template.name}' to {', '.join(applied)}, frames {start}-{end}"
        if added:
            text += f"; added the empt{'y' if len(added) == 1 else 'ies'} {', '.join(added)}: give them prompts"
        findings = presets.template_findings(
            template,
            (end - start) / job_export.scene_fps(scene),
            job_export.scene_fps(scene),
            settings.pose_mapping.lower(),
            matrix,
        )
        if findings:
            self.report({"WARNING"}, f"{text}. In this shot: {_finding_text(findings)}")
        else:
            self.report({"INFO"}, text + ".")
        return {"FINISHED"}


def _set_fps(scene: bpy.types.Scene, fps: float) -> None:
    # Blender stores a rate as an integer over a base: 23.976 is 24 / 1.001.
    whole = math.ceil(fps - 1e-9)
    scene.render.fps = whole
    scene.render.fps_base = 1.0 if abs(whole - fps) < 1e-9 else whole / fps


def build_example_shot(context: bpy.types.Context, scene: bpy.types.Scene, shot: presets.Shot) -> list[str]:
    """Set up `shot` in `scene`: range, fps, camera, keyed empties, prompts. Returns the empties' names."""
    lib = library()
    settings = scene.trajmaster
    _set_fps(scene, shot.fps)
    scene.frame_start, scene.frame_end = shot.frame_start, shot.frame_end
    settings.use_custom_range = False  # the shot follows the scene range set just above
    camera = _reusable(scene, f"{shot.name} camera", "CAMERA", shot.name)
    if camera is None:
        camera = bpy.data.objects.new(f"{shot.name} camera", bpy.data.cameras.new(f"{shot.name} camera"))
        camera[EXAMPLE_MARK] = shot.name
        scene.collection.objects.link(camera)
    camera.rotation_mode = "XYZ"
    camera.location = tuple(v / sampling.metres_per_unit(scene) for v in shot.camera.position)
    camera.rotation_euler = shot.camera.rotation_euler
    if shot.camera.match_model_camera:
        data = camera.data
        data.type, data.lens, data.sensor_width, data.sensor_fit = (
            "PERSP",
            poses.MODEL_LENS_MM,
            poses.MODEL_SENSOR_WIDTH_MM,
            "HORIZONTAL",
        )
        data.shift_x = data.shift_y = 0.0
        scene.render.resolution_x, scene.render.resolution_y = poses.MODEL_WIDTH, poses.MODEL_HEIGHT
        scene.render.resolution_percentage = 100
    scene.camera = camera
    settings.camera = camera
    settings.location_prompt = lib.locations[shot.location].prompt
    settings.entities.clear()
    empties = []
    for k, entry in enumerate(shot.entities):
        obj = _reusable(scene, entry.label, "EMPTY", shot.name) or _new_empty(context, scene, entry.label, shot.name)
        item = settings.entities.add()
        item.object = obj
        apply_entity_preset(item, lib.entities[entry.entity])
        item.color = entry.color or properties.ENTITY_COLORS[k % len(properties.ENTITY_COLORS)]
        item.forward_axis = "NEG_Y"
        empties.append(obj)
    settings.active_entity_index = 0
    matrix = camera_matrix_at(context, scene, camera, shot.frame_start)
    for obj, entry in zip(empties, shot.entities, strict=True):
        key_template(scene, obj, lib.trajectories[entry.trajectory], entry.template_entity, matrix, "NEG_Y")
    scene.frame_set(shot.frame_start)
    return [obj.name for obj in empties]


class TRAJMASTER_OT_load_example_shot(bpy.types.Operator):
    """Set up an example shot in this scene: camera, keyed empties, prompts, frame range and rate"""

    bl_idname = "trajmaster.load_example_shot"
    bl_label = "Load Example Shot"
    bl_options: ClassVar[set[str]] = {"REGISTER", "UNDO"}

    name: StringProperty(name="Shot", description="The example shot's name (presets/shots/<name>.json)")

    @classmethod
    def description(cls, context: bpy.types.Context, props: bpy.types.OperatorProperties) -> str:
        shot = library().shots.get(props.name)
        return f"{shot.label}. {shot.description}" if shot is not None else cls.__doc__

    def execute(self, context: bpy.types.Context) -> set[str]:
        lib = library()
        shot = lib.shots.get(self.name)
        if shot is None:
            known = ", ".join(sorted(lib.shots)) or "none"
            return _fail(self, f"There is no example shot named {self.name!r} (there are: {known}).")
        scene = context.scene
        names = build_example_shot(context, scene, shot)
        frames = f"frames {shot.frame_start}-{shot.frame_end}"
        text = f"Loaded the example shot '{shot.label}' ({', '.join(names)}; {frames})"
        try:
            findings = job_export.build(context, scene).findings
        except job_export.ShotError as exc:  # cannot happen with valid presets; say so if it does
            self.report({"WARNING"}, f"{text}, but it cannot be generated yet: {exc}")
            return {"FINISHED"}
        runner.set_findings(scene, findings)
        if findings:
            self.report({"WARNING"}, f"{text}. {_finding_text(findings)}")
        else:
            self.report({"INFO"}, text + ".")
        return {"FINISHED"}


class TRAJMASTER_OT_reload_presets(bpy.types.Operator):
    """Read the built-in and user presets again (after editing a file in the user presets folder)"""

    bl_idname = "trajmaster.reload_presets"
    bl_label = "Reload Presets"

    def execute(self, context: bpy.types.Context) -> set[str]:
        lib = library(reload=True)
        counts = (
            f"{len(lib.entities)} entities, {len(lib.locations)} locations, "
            f"{len(lib.trajectories)} templates, {len(lib.shots)} example shots"
        )
        if lib.problems:
            self.report({"WARNING"}, f"Loaded {counts}. " + " ".join(lib.problems))
        else:
            self.report({"INFO"}, f"Loaded {counts}.")
        return {"FINISHED"}


class TRAJMASTER_OT_open_presets_folder(bpy.types.Operator):
    """Open the folder for your own preset files (created if missing) in the file browser"""

    bl_idname = "trajmaster.open_presets_folder"
    bl_label = "Open User Presets Folder"

    def execute(self, context: bpy.types.Context) -> set[str]:
        folder = user_folder(create=True)
        if folder is None:
            return _fail(self, "User presets need TrajMaster Previz installed as an extension (Get Extensions).")
        bpy.ops.wm.path_open(filepath=str(folder) + os.sep)
        self.report({"INFO"}, str(folder))
        return {"FINISHED"}


# --- menus and the panel ------------------------------------------------------------------------


class TRAJMASTER_MT_templates(bpy.types.Menu):
    """Every template: all of its entities onto the shot's entities in order"""

    bl_idname = "TRAJMASTER_MT_templates"
    bl_label = "Apply Template"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        templates = sorted(library().trajectories.values(), key=lambda t: len(t.entities))
        for count in sorted({len(t.entities) for t in templates}):
            layout.label(text=f"{count} entit{'y' if count == 1 else 'ies'}")
            for t in templates:
                if len(t.entities) == count:
                    roles = "" if count == 1 else f" ({', '.join(e.role for e in t.entities)})"
                    layout.operator(TRAJMASTER_OT_apply_template.bl_idname, text=t.name + roles).template = t.name
            layout.separator()


class TRAJMASTER_MT_template_roles(bpy.types.Menu):
    """One entity of a multi-entity template onto the active entity"""

    bl_idname = "TRAJMASTER_MT_template_roles"
    bl_label = "Apply One Role"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        for t in library().trajectories.values():
            if len(t.entities) < 2:
                continue
            for k, entity in enumerate(t.entities):
                op = layout.operator(TRAJMASTER_OT_apply_template.bl_idname, text=f"{t.name}: {entity.role}")
                op.template, op.template_entity = t.name, k


class TRAJMASTER_MT_entity_prompts(bpy.types.Menu):
    """Every entity preset, a column per kind; each one's prompt shows as its tooltip"""

    bl_idname = "TRAJMASTER_MT_entity_prompts"
    bl_label = "Entity Prompt Presets"

    def draw(self, context: bpy.types.Context) -> None:
        kinds: dict[str, list[presets.EntityPreset]] = {}
        for preset in sorted(library().entities.values(), key=lambda p: p.name):
            kinds.setdefault(preset.category, []).append(preset)
        row = self.layout.row()
        for kind in sorted(kinds):
            col = row.column()
            col.label(text=kind.capitalize())
            for preset in kinds[kind]:
                col.operator(TRAJMASTER_OT_pick_entity_prompt.bl_idname, text=preset.name).preset = preset.name


class TRAJMASTER_MT_location_prompts(bpy.types.Menu):
    """Every location preset; each one's prompt shows as its tooltip"""

    bl_idname = "TRAJMASTER_MT_location_prompts"
    bl_label = "Location Prompt Presets"

    def draw(self, context: bpy.types.Context) -> None:
        names = sorted(library().locations)
        flow = self.layout.column_flow(columns=max(1, (len(names) + 11) // 12))
        for name in names:
            flow.operator(TRAJMASTER_OT_pick_location_prompt.bl_idname, text=name).preset = name


class TRAJMASTER_MT_example_shots(bpy.types.Menu):
    bl_idname = "TRAJMASTER_MT_example_shots"
    bl_label = "Example Shots"

    def draw(self, context: bpy.types.Context) -> None:
        for shot in sorted(library().shots.values(), key=lambda s: s.name):
            self.layout.operator(TRAJMASTER_OT_load_example_shot.bl_idname, text=shot.label).name = shot.name


class TRAJMASTER_PT_presets(bpy.types.Panel):
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = panel.CATEGORY
    bl_label = "Presets"
    bl_parent_id = panel.MAIN
    # After Entities (10), whose active entity the prompt picker fills; before Viewport (15).
    bl_order = 12

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        settings = context.scene.trajmaster
        lib = library()
        item = _active_entity(settings, -1)
        col = layout.column(align=True)
        # A search field (any word of a preset's text finds it) and, beside it, the whole list,
        # whose tooltips show each prompt before it is picked.
        if item is not None:
            name = properties.entity_name(item) or f"entity {settings.active_entity_index + 1}"
            row = col.row(align=True)
            row.prop(settings, "entity_preset", text="", icon="VIEWZOOM", placeholder=f"Prompt for {name}")
            row.menu(TRAJMASTER_MT_entity_prompts.bl_idname, text="", icon="PRESET")
        else:
            col.label(text="Add an entity to pick its prompt", icon="INFO")
        row = col.row(align=True)
        row.prop(settings, "location_preset", text="", icon="VIEWZOOM", placeholder="Location prompt")
        row.menu(TRAJMASTER_MT_location_prompts.bl_idname, text="", icon="PRESET")
        col = layout.column(align=True)
        col.menu(TRAJMASTER_MT_templates.bl_idname, text="Apply Trajectory Template", icon="CURVE_PATH")
        col.menu(TRAJMASTER_MT_template_roles.bl_idname, text="One Role to the Active Entity", icon="EMPTY_ARROWS")
        layout.menu(TRAJMASTER_MT_example_shots.bl_idname, text="Load Example Shot", icon="SCENE_DATA")
        row = layout.row(align=True)
        row.operator(TRAJMASTER_OT_reload_presets.bl_idname, text="Reload", icon="FILE_REFRESH")
        row.operator(TRAJMASTER_OT_open_presets_folder.bl_idname, text="User Folder", icon="FILE_FOLDER")
        if lib.problems:
            col = layout.box().column(align=True)
            for problem in lib.problems:
                ui_text.wrapped(col, problem, "ERROR", ui_text.region_chars(context))


classes = (
    TRAJMASTER_OT_pick_entity_prompt,
    TRAJMASTER_OT_pick_location_prompt,
    TRAJMASTER_OT_apply_template,
    TRAJMASTER_OT_load_example_shot,
    TRAJMASTER_OT_reload_presets,
    TRAJMASTER_OT_open_presets_folder,
    TRAJMASTER_MT_entity_prompts,
    TRAJMASTER_MT_location_prompts,
    TRAJMASTER_MT_templates,
    TRAJMASTER_MT_template_roles,
    TRAJMASTER_MT_example_shots,
    TRAJMASTER_PT_presets,
)

_register_classes, _unregister_classes = bpy.utils.register_classes_factory(classes)


def register() -> None:
    _register_classes()


def unregister() -> None:
    global _library
    _unregister_classes()
    _library = None
    _entity_items.clear()
    _location_items.clear()
