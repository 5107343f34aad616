"""Easing in an entity's own keys, and the one-click fix: Make Keys Linear.

Blender's default interpolation is Bezier with auto-clamped handles: a move between two keys
starts slowly, rushes its middle and slows down again, so its middle runs at about 1.5 times its
average speed. On the model's clock (backend/checks.py) that middle is often what is "too fast"
while the path itself is fine. The checks say so when `eased()` is true, and offer this fix.

Only the entity's own action is looked at and changed (in a layered action only its own slot's
channels): a parent's or a constraint target's animation belongs to other objects, and an action
shared with another object is copied before it is changed, so that object keeps its motion.
"""

from __future__ import annotations

from typing import ClassVar

import bpy
from bpy.props import IntProperty

from . import compat

# Interpolations that do not ease: an even pace, or a deliberate hold.
_EVEN = ("LINEAR", "CONSTANT")


def _moves(fcurve: bpy.types.FCurve) -> bool:
    """Whether the curve is one that moves the object: its location, or a constraint setting (a
    Follow Path offset)."""
    path = fcurve.data_path
    return path in ("location", "delta_location") or path.startswith("constraints[")


def eased(obj: bpy.types.Object | None) -> bool:
    """Whether `obj`'s own keys ease the motion (a key that moves it is Bezier or an easing type)."""
    if obj is None:
        return False
    for fcurve in compat.object_fcurves(obj):
        if fcurve.mute or not _moves(fcurve):
            continue
        points = fcurve.keyframe_points
        # The last key's interpolation shapes nothing after it.
        if any(
            points[i].interpolation not in _EVEN and points[i].co.y != points[i + 1].co.y
            for i in range(len(points) - 1)
        ):
            return True
    return False


def make_linear(obj: bpy.types.Object) -> int:
    """Make every easing key of `obj`'s own action Linear. Returns how many keys changed."""
    fcurves = [f for f in compat.object_fcurves(obj) if any(k.interpolation not in _EVEN for k in f.keyframe_points)]
    if not fcurves:
        return 0
    action = obj.animation_data.action
    if action.users - int(action.use_fake_user) > 1:
        # Shared with other objects: changing its curves would change their motion too.
        obj.animation_data.action = action.copy()
        fcurves = compat.object_fcurves(obj)
    changed = 0
    for fcurve in fcurves:
        for key in fcurve.keyframe_points:
            if key.interpolation not in _EVEN:
                key.interpolation = "LINEAR"
                changed += 1
        fcurve.update()
    return changed


class TRAJMASTER_OT_make_keys_linear(bpy.types.Operator):
    """Make the entity's own keys Linear, so it moves at an even pace (Bezier easing rushes the middle
    of a move); its parents' and constraint targets' animation is not changed"""

    bl_idname = "trajmaster.make_keys_linear"
    bl_label = "Make Keys Linear"
    bl_options: ClassVar[set[str]] = {"REGISTER", "UNDO"}

    entity: IntProperty(name="Entity", default=0, min=0, description="Index of the entity in the shot")

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return context.scene is not None

    def execute(self, context: bpy.types.Context) -> set[str]:
        entities = context.scene.trajmaster.entities
        obj = entities[self.entity].object if self.entity < len(entities) else None
        if obj is None:
            self.report({"ERROR"}, f"Entity {self.entity + 1} has no empty; pick the empty it should follow.")
            return {"CANCELLED"}
        changed = make_linear(obj)
        if not changed:
            self.report({"INFO"}, f"The keys of '{obj.name}' are already Linear.")
            return {"CANCELLED"}
        # The findings are about the old keys: check the shot again now (an operator may sample).
        from . import status_scope

        status_scope.refresh_findings(context, context.scene)
        self.report({"INFO"}, f"Made {changed} key{'s' if changed != 1 else ''} of '{obj.name}' Linear.")
        return {"FINISHED"}


classes = (TRAJMASTER_OT_make_keys_linear,)

# Blender's own helper: registers in order, unregisters in reverse.
register, unregister = bpy.utils.register_classes_factory(classes)
