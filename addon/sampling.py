"""World matrices of the camera and the empties at fractional frame times.

Read from the evaluated depsgraph after `scene.frame_set(frame, subframe=...)`, so everything
that moves an object in Blender counts: keyframes, constraints (Follow Path, Child Of, Track
To), parenting, drivers, NLA. The user's current frame is restored afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import bpy
import numpy as np

from ..backend import timeplan


@contextmanager
def frame_restored(scene: bpy.types.Scene) -> Iterator[None]:
    frame, subframe = scene.frame_current, scene.frame_subframe
    try:
        yield
    finally:
        scene.frame_set(frame, subframe=subframe)


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
