"""Is an entity's empty (or the shot camera) really part of the shot's scene?

An entity's PointerProperty keeps its object whatever happens to it: an empty deleted in the
viewport stays referenced (the pointer is its last user, so it is even saved and comes back on
reload), an object can be unlinked, live only in another scene, or sit in a collection that is
excluded from the view layer or disabled in viewports. None of those is evaluated with the scene,
so sampling it reads a stale matrix, or the origin after a reload. Such an object is *missing*:
the entity list shows it in red, the overlay leaves it out and Generate, Export and Check refuse
with a sentence that names it (job_export.shot_problems).

Everything here is a few property reads and a walk over the view layer's collections (no object
lookups), cheap enough for a panel redraw.
"""

from __future__ import annotations

import bpy


def shot_view_layer(context: bpy.types.Context | None, scene: bpy.types.Scene) -> bpy.types.ViewLayer:
    """The view layer the shot is sampled in: the window's when it shows `scene`, else the first."""
    if context is not None and getattr(context, "scene", None) == scene and context.view_layer is not None:
        return context.view_layer
    return scene.view_layers[0]


def missing_reason(obj: bpy.types.Object, scene: bpy.types.Scene, view_layer: bpy.types.ViewLayer) -> str | None:
    """Why `obj` is not part of the shot, as the end of a sentence that starts with its name
    ("is not in any scene: it was deleted or unlinked"), or None when it is there."""
    # Name lookups in Blender's collections run in C; Object.users_scene and users_collection are
    # Python loops over every object of the file (milliseconds in a big file, and this runs at
    # each redraw of the panel).
    if scene.objects.get(obj.name) != obj:
        others = [s for s in bpy.data.scenes if s.objects.get(obj.name) == obj]
        if not others:
            return "is not in any scene: it was deleted or unlinked"
        return f"is only in the scene '{others[0].name}', not in '{scene.name}'"
    if obj.hide_viewport:
        return "is disabled in viewports (the screen icon in the Outliner)"
    included, enabled = _homes(obj, view_layer)
    if enabled:
        return None
    if included:
        return "is in a collection disabled in viewports (the screen icon in the Outliner)"
    return f"is in a collection excluded from the view layer '{view_layer.name}'"


def _homes(obj: bpy.types.Object, view_layer: bpy.types.ViewLayer) -> tuple[bool, bool]:
    """Whether a collection of the view layer holds `obj` that is not excluded, and whether one does
    that the viewport evaluates too (neither it nor a parent disabled in viewports).

    These rules decide, not the depsgraph: an object the scene only points at (an entity's
    PointerProperty) is copied into the depsgraph too, but its animation is not evaluated there.
    (The view layer's own object list is not used either: it is only brought up to date lazily.)"""
    included = False
    todo = [(view_layer.layer_collection, True)]
    while todo:
        layer, parent_enabled = todo.pop()
        if layer.exclude:
            continue
        collection = layer.collection
        on = parent_enabled and not collection.hide_viewport
        if collection.objects.get(obj.name) == obj:
            if on:
                return True, True
            included = True
        todo.extend((child, on) for child in layer.children)
    return included, False


def is_present(obj: bpy.types.Object | None, scene: bpy.types.Scene, view_layer: bpy.types.ViewLayer) -> bool:
    return obj is not None and missing_reason(obj, scene, view_layer) is None
