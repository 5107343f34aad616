"""`scene.trajmaster`: everything about a shot that the user sets, saved with the .blend.

Only user settings live here (they are undo-safe and travel with the file). The state of a
running generation (progress, last error) is runtime state and lives in runner.py.
"""

from __future__ import annotations

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    FloatVectorProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from ..backend import job as jobfile

MAX_ENTITIES = jobfile.MAX_ENTITIES
# Blender's IntProperty is signed 32-bit; the job allows seeds up to 2**32 - 1.
MAX_SEED = 2**31 - 1

# Display colours for entities 1-3 (linear RGB), distinct in the viewport and the preview engine.
ENTITY_COLORS = ((0.9, 0.25, 0.1), (0.1, 0.45, 0.9), (0.2, 0.75, 0.2))

FACING_ITEMS = (
    ("POS_X", "+X", "The empty looks along its local +X axis"),
    ("NEG_X", "-X", "The empty looks along its local -X axis"),
    ("POS_Y", "+Y", "The empty looks along its local +Y axis"),
    ("NEG_Y", "-Y", "The empty looks along its local -Y axis (Blender's character convention)"),
)


def _is_empty(self: bpy.types.PropertyGroup, obj: bpy.types.Object) -> bool:
    return obj.type == "EMPTY"


def _is_camera(self: bpy.types.PropertyGroup, obj: bpy.types.Object) -> bool:
    return obj.type == "CAMERA"


# Names travel in the job (backend/job.schema.json, $defs.name: 1-63 characters).
MAX_NAME_CHARS = 63
# A person's height (metres): an entity's height until a preset or the user sets it.
DEFAULT_HEIGHT = 1.7


class TRAJMASTER_PG_entity(bpy.types.PropertyGroup):
    display_name: StringProperty(
        name="Name",
        maxlen=MAX_NAME_CHARS,
        description="What the entity is called in take labels, the preview and warnings; empty: its empty's name",
    )
    height: FloatProperty(
        name="Height",
        default=DEFAULT_HEIGHT,
        min=0.05,
        max=100.0,
        soft_max=10.0,
        step=10,
        precision=2,
        description="How tall the entity is, in metres: the preview engine draws it this tall (a dog 0.6, a "
        "horse 2.2). Entity presets set it; the model itself does not use it",
    )
    object: PointerProperty(
        name="Empty",
        type=bpy.types.Object,
        poll=_is_empty,
        description="The empty whose animated path this entity follows",
    )
    prompt: StringProperty(
        name="Prompt",
        description="What the entity is: 15-24 words work best, e.g. 'a brown bear with thick fur and a "
        "heavy build, walking on all fours'",
    )
    forward_axis: EnumProperty(
        name="Facing",
        items=FACING_ITEMS,
        default="NEG_Y",
        description="The empty's local axis that points where the entity looks",
    )
    color: FloatVectorProperty(
        name="Colour",
        subtype="COLOR",
        size=3,
        min=0.0,
        max=1.0,
        default=ENTITY_COLORS[0],
        description="Display colour of this entity (overlay and preview engine)",
    )


def entity_name(item: bpy.types.PropertyGroup) -> str:
    """The entity's display name: its own, else its empty's ("" when it has neither)."""
    return item.display_name.strip() or (item.object.name if item.object is not None else "")


# The preset search fields: their candidates and what picking one does live in presets_ui.py
# (imported when called: it imports this module).
def _entity_preset_candidates(self: bpy.types.PropertyGroup, context: bpy.types.Context, text: str) -> list:
    from . import presets_ui

    return presets_ui.entity_candidates(text)


def _location_preset_candidates(self: bpy.types.PropertyGroup, context: bpy.types.Context, text: str) -> list:
    from . import presets_ui

    return presets_ui.location_candidates(text)


def _entity_preset_picked(self: bpy.types.PropertyGroup, context: bpy.types.Context) -> None:
    from . import presets_ui

    presets_ui.entity_preset_picked(self)


def _location_preset_picked(self: bpy.types.PropertyGroup, context: bpy.types.Context) -> None:
    from . import presets_ui

    presets_ui.location_preset_picked(self)


def _scene_of(settings: bpy.types.PropertyGroup) -> bpy.types.Scene:
    return settings.id_data


# The shot range follows the scene's frame range until the user sets it; then it keeps its own
# values (use_custom_range). Getters/setters make "defaults to the scene range" literal.
def _get_start(self: bpy.types.PropertyGroup) -> int:
    return self.custom_frame_start if self.use_custom_range else _scene_of(self).frame_start


def _get_end(self: bpy.types.PropertyGroup) -> int:
    return self.custom_frame_end if self.use_custom_range else _scene_of(self).frame_end


def _set_start(self: bpy.types.PropertyGroup, value: int) -> None:
    if not self.use_custom_range:
        self.custom_frame_end = _scene_of(self).frame_end
        self.use_custom_range = True
    self.custom_frame_start = value


def _set_end(self: bpy.types.PropertyGroup, value: int) -> None:
    if not self.use_custom_range:
        self.custom_frame_start = _scene_of(self).frame_start
        self.use_custom_range = True
    self.custom_frame_end = value


class TRAJMASTER_PG_settings(bpy.types.PropertyGroup):
    shot_name: StringProperty(
        name="Shot Name",
        maxlen=MAX_NAME_CHARS,
        description="What the shot's takes are named after ({shot}_take_001) and which takes stack together in "
        "the sequencer; empty: the scene's name",
    )
    camera: PointerProperty(
        name="Camera",
        type=bpy.types.Object,
        poll=_is_camera,
        description="The shot camera; empty means the scene's active camera",
    )
    frame_start: IntProperty(
        name="Start",
        get=_get_start,
        set=_set_start,
        description="First frame of the shot (follows the scene's range until you change it)",
    )
    frame_end: IntProperty(
        name="End",
        get=_get_end,
        set=_set_end,
        description="Last frame of the shot (follows the scene's range until you change it)",
    )
    use_custom_range: BoolProperty(name="Own Shot Range", default=False, options={"HIDDEN"})
    custom_frame_start: IntProperty(default=1, options={"HIDDEN"})
    custom_frame_end: IntProperty(default=250, options={"HIDDEN"})
    location_prompt: StringProperty(
        name="Location",
        description="Where the shot takes place, e.g. 'a sunlit desert with rolling dunes'",
    )
    entities: CollectionProperty(type=TRAJMASTER_PG_entity)
    active_entity_index: IntProperty(name="Active Entity", default=0, min=0)
    pose_mapping: EnumProperty(
        name="Mapping",
        items=(
            ("RIG", "Rig", "Stand in the training rig's camera and upright entities (what the model knows best)"),
            ("EXACT", "Exact", "Use the camera and empties exactly as they are (may leave the model's comfort zone)"),
        ),
        default="RIG",
        description="How the camera and empties become the model's poses",
    )
    engine: EnumProperty(
        name="Engine",
        items=(
            ("PREVIEW", "Preview", "A schematic render of the trajectories in seconds, no GPU needed"),
            ("COGVIDEOX", "CogVideoX", "CogVideoX-5B + 3DTrajMaster on the local GPU (minutes)"),
        ),
        default="PREVIEW",
    )
    quality: EnumProperty(
        name="Quality",
        items=(
            ("FINAL", "Final", "The release's settings: " + jobfile.preset_summary("final")),
            ("DRAFT", "Draft", "A faster first look: " + jobfile.preset_summary("draft")),
            ("CUSTOM", "Custom", "Choose the steps, the injector steps and the step cache yourself"),
        ),
        default="FINAL",
        description="How much time the model spends on a take (the preview engine draws every quality alike)",
    )
    seed: IntProperty(
        name="Seed", default=jobfile.SAMPLING_DEFAULTS["seed"], min=0, max=MAX_SEED, description="Random seed"
    )
    steps: IntProperty(
        name="Steps",
        default=jobfile.SAMPLING_DEFAULTS["steps"],
        min=1,
        max=200,
        description="Denoising steps (the release uses 50)",
    )
    guidance_scale: FloatProperty(
        name="Guidance",
        default=jobfile.SAMPLING_DEFAULTS["guidance_scale"],
        min=1.0,
        max=20.0,
        description="Classifier-free guidance scale (the release uses 6.0)",
    )
    lora_scale: FloatProperty(
        name="LoRA Scale",
        default=jobfile.SAMPLING_DEFAULTS["lora_scale"],
        min=0.0,
        max=1.0,
        description="Strength of the 3DTrajMaster LoRA (the release uses 0.6)",
    )
    annealed_steps: IntProperty(
        name="Annealed Steps",
        default=jobfile.SAMPLING_DEFAULTS["annealed_steps"],
        min=0,
        max=200,
        description="Steps that use the LoRA and the trajectory injector (the release uses 20)",
    )
    step_cache: FloatProperty(
        name="Step Cache",
        default=0.0,
        min=0.0,
        max=1.0,
        precision=3,
        step=1,
        description="First Block Cache on the steps after the injector: a step whose first block changed less "
        "than this (relative) reuses the previous step's other blocks. Faster, slightly different; 0: off "
        "(Draft uses 0.05)",
    )
    # Search fields of the Presets panel: typing searches the presets' names, kinds and text;
    # picking one fills the prompt (and the entity's height) and empties the field again.
    entity_preset: StringProperty(
        name="Entity Prompt Preset",
        description="Search the entity presets by name, kind or any word of their text, and fill the active "
        "entity's prompt and height with the one you pick",
        search=_entity_preset_candidates,
        search_options=set(),
        update=_entity_preset_picked,
    )
    location_preset: StringProperty(
        name="Location Prompt Preset",
        description="Search the location presets by name or any word of their text, and fill the location prompt "
        "with the one you pick",
        search=_location_preset_candidates,
        search_options=set(),
        update=_location_preset_picked,
    )
    show_overlay: BoolProperty(
        name="Viewport Overlay",
        default=True,
        description="Draw the entities' paths, pose slots, facing arrows, the model's camera and warnings "
        "in the 3D viewport",
    )


classes = (TRAJMASTER_PG_entity, TRAJMASTER_PG_settings)

_register_classes, _unregister_classes = bpy.utils.register_classes_factory(classes)


def register() -> None:
    _register_classes()
    bpy.types.Scene.trajmaster = PointerProperty(type=TRAJMASTER_PG_settings)


def unregister() -> None:
    del bpy.types.Scene.trajmaster
    _unregister_classes()
