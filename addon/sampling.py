"""World matrices of the camera and the empties at fractional frame times.

Read from the evaluated depsgraph after `scene.frame_set(frame, subframe=...)`, so everything
that moves an object in Blender counts: keyframes, constraints (Follow Path, Child Of, Track
To), parenting, drivers, NLA. The user's current frame is restored afterwards, and so are moves
and poses the user has not keyed yet (a frame change re-evaluates every animated object and would
throw them away, as Blender does when the user changes frames; pressing Generate must not).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import bpy
import numpy as np

from ..backend import timeplan

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


def _view_layer(context: bpy.types.Context, scene: bpy.types.Scene) -> bpy.types.ViewLayer:
    if context.scene == scene and context.view_layer is not None:
        return context.view_layer
    return scene.view_layers[0]


def world_matrices(
    context: bpy.types.Context,
    scene: bpy.types.Scene,
    objects: Sequence[bpy.types.Object],
    times: Sequence[float],
) -> np.ndarray:
    """Matrices of `objects` at `times` (fractional frames): shape (len(objects), len(times), 4, 4)."""
    out = np.empty((len(objects), len(times), 4, 4), dtype=np.float64)
    view_layer = _view_layer(context, scene)
    with frame_restored(scene):
        for t, time in enumerate(times):
            frame, subframe = timeplan.split_time(time)
            scene.frame_set(frame, subframe=subframe)
            depsgraph = view_layer.depsgraph
            for k, obj in enumerate(objects):
                out[k, t] = np.array(obj.evaluated_get(depsgraph).matrix_world, dtype=np.float64)
    return out
