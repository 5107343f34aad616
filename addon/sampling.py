"""World matrices of the camera and the empties at fractional frame times, in metres.

Read from the evaluated depsgraph after `scene.frame_set(frame, subframe=...)`, so everything
that moves an object in Blender counts: keyframes, constraints (Follow Path, Child Of, Track
To), parenting, drivers, NLA. The user's current frame is restored afterwards, and so are moves
and poses the user has not keyed yet (a frame change re-evaluates every animated object and would
throw them away, as Blender does when the user changes frames; pressing Generate must not).

Blender's world matrices are in scene units; the model, the checks and the presets think in
metres. The conversion is here, once: `world_matrices` returns metres (a centimetre scene, Unit
Scale 0.01, gives a hundredth of its numbers) and whoever writes positions back into the scene
or draws in it divides by `metres_per_unit` (presets_ui, overlay).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import bpy
import numpy as np

from ..backend import timeplan
from . import presence

_TRANSFORMS = ("location", "rotation_euler", "rotation_quaternion", "rotation_axis_angle", "scale")


def _animated_transforms(scene: bpy.types.Scene) -> list[tuple[bpy.types.bpy_struct, str, tuple[float, ...]]]:
    """The transform channels a frame change re-evaluates, as they are now: those of objects with
    animation data and of their pose bones. Shape keys and custom properties are not kept."""
    saved = []
    for obj in scene.objects:
        if obj.animation_data is None:
            continue
        owners = [obj, *(obj.pose.bones if obj.pose is not None else ())]
        saved.extend((owner, path, tuple(getattr(owner, path))) for owner in owners for path in _TRANSFORMS)
    return saved


# True while world_matrices changes frames: depsgraph handlers ignore the updates that causes.
active = False


def metres_per_unit(scene: bpy.types.Scene) -> float:
    """Metres in one scene unit: the scene's Unit Scale, which Blender itself applies only with a
    unit system (with None, a unit is a metre)."""
    units = scene.unit_settings
    return 1.0 if units.system == "NONE" else float(units.scale_length)


@contextmanager
def frame_restored(scene: bpy.types.Scene) -> Iterator[None]:
    frame, subframe = scene.frame_current, scene.frame_subframe
    unkeyed = _animated_transforms(scene)
    try:
        yield
    finally:
        scene.frame_set(frame, subframe=subframe)
        # Back at the user's frame every animated channel holds its keyed value again; put back the
        # ones the user had changed without keying. Unchanged ones are not written (a write is a
        # depsgraph update).
        for owner, path, value in unkeyed:
            if tuple(getattr(owner, path)) != value:
                setattr(owner, path, value)


def world_matrices(
    context: bpy.types.Context,
    scene: bpy.types.Scene,
    objects: Sequence[bpy.types.Object],
    times: Sequence[float],
) -> np.ndarray:
    """Matrices of `objects` at `times` (fractional frames), translations in metres: shape
    (len(objects), len(times), 4, 4)."""
    global active
    out = np.empty((len(objects), len(times), 4, 4), dtype=np.float64)
    view_layer = presence.shot_view_layer(context, scene)
    active = True
    try:
        with frame_restored(scene):
            for t, time in enumerate(times):
                frame, subframe = timeplan.split_time(time)
                scene.frame_set(frame, subframe=subframe)
                depsgraph = view_layer.depsgraph
                for k, obj in enumerate(objects):
                    out[k, t] = np.array(obj.evaluated_get(depsgraph).matrix_world, dtype=np.float64)
    finally:
        active = False
    out[..., :3, 3] *= metres_per_unit(scene)
    return out
