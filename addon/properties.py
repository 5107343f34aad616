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


class TRAJMASTER_PG_entity(bpy.types.PropertyGroup):
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
