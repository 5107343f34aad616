"""The viewport overlay: each entity's path, its 13 pose slots, facing arrows, the model's
camera and the out-of-distribution warnings where they occur.

Cost model. Sampling a shot means 62 `frame_set` calls (sampling.py), far too slow for a
redraw, so the geometry is cached per scene and rebuilt only when its inputs change:
- the *settings key* (camera, entities, facing, colours, mapping, range, fps), compared at
  each redraw (a few property reads);
- the *animation signature*, a hash of everything that shapes the motion of the camera and the
  entities (keyframes, drivers, constraints, parents, NLA, the transforms of unanimated
  channels), recomputed only when a depsgraph update touches one of those objects or an action.
A changed frame changes neither, so scrubbing and playback never rebuild. Transform updates
that are not edits of the animation (moving an animated empty without keying it) leave the
signature alone: the motion is the keys, and the move would not change a sampled path.

The rebuild itself runs from a short, debounced timer, never inside the draw callback or the
depsgraph handler (changing frames while drawing or while the depsgraph is being evaluated is
not allowed). Scripts and tests call `refresh()` directly; background Blender has no timers
running and no GPU, so nothing here touches `gpu` until a real viewport draws (overlay_draw.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import bpy
import numpy as np
from bpy.app.handlers import persistent

from ..backend import timeplan
from . import compat, job_export, overlay_geometry, presence, properties, redraw, sampling

DEBOUNCE_S = 0.15
# Related objects (parents, constraint and driver targets) followed this many links deep.
MAX_RELATED = 64

_TRANSFORM_PATHS = (
    "location",
    "rotation_euler",
    "rotation_quaternion",
    "rotation_axis_angle",
    "scale",
    "delta_location",
    "delta_rotation_euler",
    "delta_rotation_quaternion",
    "delta_scale",
)

# What places an NLA strip in time and mixes it (its animated influence and time are curves).
_NLA_STRIP = (
    "name",
    "mute",
    "frame_start",
    "frame_end",
    "action_frame_start",
    "action_frame_end",
    "scale",
    "repeat",
    "blend_type",
    "extrapolation",
    "use_reverse",
    "blend_in",
    "blend_out",
    "use_animated_influence",
    "use_animated_time",
)


@dataclass
class Entry:
    """The cached overlay of one scene (runtime state: never saved, dropped on file load)."""

    key: tuple | None = None
    signature: int | None = None
    geometry: overlay_geometry.Geometry | None = None
    watch: frozenset[str] = frozenset()
    stale: bool = True
    rebuilds: int = 0
    last_ms: float = 0.0


@dataclass
class _State:
    entries: dict[str, Entry] = field(default_factory=dict)
    sampling: bool = False
    changed_at: float = 0.0
    handles: list[Any] = field(default_factory=list)


_state = _State()


def entry(scene: bpy.types.Scene) -> Entry | None:
    """The cache of `scene` (None before its first build)."""
    return _state.entries.get(scene.name)


def active(scene: bpy.types.Scene | None) -> bool:
    """Drawn only for a scene with a TrajMaster shot (an entity whose empty is in the scene) and the
    toggle on."""
    if scene is None:
        return False
    return bool(scene.trajmaster.show_overlay) and bool(_objects(scene)[1])


def _objects(scene: bpy.types.Scene) -> tuple[bpy.types.Object | None, list[Any]]:
    """The shot camera and the entities whose objects are in the scene (presence.py: a deleted,
    unlinked or excluded empty is not drawn, and neither is its entity's path)."""
    settings = scene.trajmaster
    view_layer = presence.shot_view_layer(bpy.context, scene)
    camera = job_export.shot_camera(scene)
    if camera is not None and (camera.type != "CAMERA" or not presence.is_present(camera, scene, view_layer)):
        camera = None
    return camera, [e for e in settings.entities if presence.is_present(e.object, scene, view_layer)]


def settings_key(scene: bpy.types.Scene) -> tuple:
    """Every setting that changes the overlay (cheap: compared at every redraw)."""
    settings = scene.trajmaster
    camera, items = _objects(scene)
    return (
        camera.name if camera else None,
        settings.pose_mapping,
        settings.frame_start,
        settings.frame_end,
        sampling.metres_per_unit(scene),
        tuple(
            (e.object.name, properties.entity_name(e), e.forward_axis, tuple(round(c, 4) for c in e.color))
            for e in items
        ),
    )


def related_objects(objects: list[bpy.types.Object]) -> list[bpy.types.Object]:
    """`objects` plus what moves them: parents, constraint targets, driver targets."""
    seen: dict[str, bpy.types.Object] = {}
    todo = list(objects)
    while todo and len(seen) < MAX_RELATED:
        obj = todo.pop()
        if obj is None or obj.name in seen:
            continue
        seen[obj.name] = obj
        todo.append(obj.parent)
        todo.extend(getattr(c, "target", None) for c in obj.constraints)
        anim = obj.animation_data
        for fcurve in anim.drivers if anim else ():
            for var in fcurve.driver.variables:
                todo.extend(t.id for t in var.targets if isinstance(t.id, bpy.types.Object))
    return list(seen.values())


def _floats(collection: Any, attr: str, width: int) -> bytes:
    buf = np.empty(len(collection) * width, dtype=np.float32)
    collection.foreach_get(attr, buf)
    return buf.tobytes()


def _fcurve_sig(fcurve: bpy.types.FCurve) -> tuple:
    keys = fcurve.keyframe_points
    return (
        fcurve.data_path,
        fcurve.array_index,
        fcurve.mute,
        fcurve.extrapolation,
        _floats(keys, "co", 2),
        _floats(keys, "handle_left", 2),
        _floats(keys, "handle_right", 2),
        tuple(k.interpolation for k in keys),
        tuple((m.type, m.mute) for m in fcurve.modifiers),
    )


def _rna_values(struct: Any, path: str, animated: frozenset[str]) -> tuple:
    """Plain property values of a struct (constraint, NLA strip): generic, so no setting is missed.

    Properties animated through `path` (e.g. a keyframed Follow Path offset) are left out: their
    current value depends on the frame, and their curves are already in the signature.
    """
    out = []
    for prop in struct.bl_rna.properties:
        name = prop.identifier
        if name == "rna_type" or prop.type == "COLLECTION" or f"{path}{name}" in animated:
            continue
        value = getattr(struct, name, None)
        if prop.type == "POINTER":
            value = getattr(value, "name", None) if isinstance(value, bpy.types.ID) else None
        elif getattr(prop, "array_length", 0):
            value = np.asarray(value, dtype=np.float64).round(6).tobytes()  # vectors and matrices alike
        elif isinstance(value, set):
            value = tuple(sorted(value))  # enum flags
        elif isinstance(value, float):
            value = round(value, 6)
        out.append((name, value))
    return tuple(out)


def _object_sig(obj: bpy.types.Object) -> tuple:
    anim = obj.animation_data
    actions = []
    animated: set[tuple[str, int]] = set()
    drivers = []
    if anim is not None:
        used = [anim.action, *(s.action for t in anim.nla_tracks for s in t.strips)]
        for action in used:
            fcurves = list(compat.action_fcurves(action))
            animated.update((f.data_path, f.array_index) for f in fcurves)
            actions.append((action.name if action else None, tuple(_fcurve_sig(f) for f in fcurves)))
        nla = tuple(tuple(getattr(s, a, None) for a in _NLA_STRIP) for t in anim.nla_tracks for s in t.strips)
        actions.append(("nla", tuple(t.mute for t in anim.nla_tracks), nla))
        for fcurve in anim.drivers:
            animated.add((fcurve.data_path, fcurve.array_index))
            variables = tuple(
                (v.name, v.type, tuple((getattr(t.id, "name", None), t.data_path, t.transform_type) for t in v.targets))
                for v in fcurve.driver.variables
            )
            drivers.append((_fcurve_sig(fcurve), fcurve.driver.type, fcurve.driver.expression, variables))
    # Channels without animation hold the user's transform as it is; animated ones come from
    # their curves (their current value is not part of the motion, see the module docstring).
    static = []
    for path in _TRANSFORM_PATHS:
        value = getattr(obj, path, None)
        if value is not None:
            static.extend((path, i, round(v, 6)) for i, v in enumerate(value) if (path, i) not in animated)
    paths = frozenset(p for p, _ in animated)
    return (
        obj.name,
        obj.rotation_mode,
        getattr(obj.parent, "name", None),
        obj.parent_type,
        tuple(round(v, 6) for row in obj.matrix_parent_inverse for v in row),
        tuple(static),
        tuple(actions),
        tuple(drivers),
        tuple(_rna_values(c, f'constraints["{c.name}"].', paths) for c in obj.constraints),
    )


def animation_signature(scene: bpy.types.Scene) -> int:
    camera, items = _objects(scene)
    return hash(tuple(_object_sig(o) for o in related_objects([camera, *(e.object for e in items)])))


def _sample(context: bpy.types.Context, scene: bpy.types.Scene) -> overlay_geometry.Geometry:
    settings = scene.trajmaster
    camera, items = _objects(scene)
    slot_times = timeplan.pose_times(settings.frame_start, settings.frame_end)
    video_times = timeplan.video_times(settings.frame_start, settings.frame_end)
    objects = [*([camera] if camera else []), *(e.object for e in items)]
    _state.sampling = True
    try:
        mats = sampling.world_matrices(context, scene, objects, [*slot_times, *video_times])
    finally:
        _state.sampling = False
    n = len(slot_times)
    slots, video = mats[:, :n], mats[:, n:]
    first = 1 if camera else 0
    inputs = [
        overlay_geometry.EntityInput(
            properties.entity_name(e), tuple(e.color), e.forward_axis, slots[first + k], video[first + k]
        )
        for k, e in enumerate(items)
    ]
    geometry = overlay_geometry.build(
        slot_times,
        video_times,
        slots[0] if camera else None,
        video[0] if camera else None,
        inputs,
        settings.pose_mapping.lower(),
    )
    # Built in metres (the checks' and the model's unit); drawn in the scene's units.
    return overlay_geometry.scaled(geometry, 1.0 / sampling.metres_per_unit(scene))


def refresh(
    context: bpy.types.Context, scene: bpy.types.Scene, *, force: bool = False
) -> overlay_geometry.Geometry | None:
    """The scene's overlay geometry, rebuilt only if a setting or the animation changed.

    None when the overlay is not in use for the scene. This samples the depsgraph when it
    rebuilds: call it from an operator, a timer or a script, never from a draw callback.
    """
    if not active(scene):
        # No cache for a scene without an overlay: edits made meanwhile are not followed, so
        # whatever was cached would be out of date when the overlay is shown again.
        _state.entries.pop(scene.name, None)
        return None
    cached = _state.entries.setdefault(scene.name, Entry())
    key = settings_key(scene)
    signature = animation_signature(scene)
    if force or cached.geometry is None or key != cached.key or signature != cached.signature:
        started = time.perf_counter()
        cached.geometry = _sample(context, scene)
        cached.key, cached.signature = key, signature
        camera, items = _objects(scene)
        cached.watch = frozenset(o.name for o in related_objects([camera, *(e.object for e in items)]))
        cached.rebuilds += 1
        cached.last_ms = (time.perf_counter() - started) * 1000.0
    cached.stale = False
    return cached.geometry


def invalidate(scene: bpy.types.Scene | None = None) -> None:
    """Forget the cache (of one scene, or all): the next refresh rebuilds."""
    if scene is None:
        _state.entries.clear()
    else:
        _state.entries.pop(scene.name, None)


# --- keeping the cache current -------------------------------------------------------------


def _mark_stale(cached: Entry) -> None:
    cached.stale = True
    _state.changed_at = time.monotonic()
    if not bpy.app.timers.is_registered(_tick):
        bpy.app.timers.register(_tick, first_interval=DEBOUNCE_S)


@persistent
def _on_depsgraph(scene: bpy.types.Scene, depsgraph: bpy.types.Depsgraph) -> None:
    if _state.sampling or sampling.active:
        return
    cached = _state.entries.get(scene.name)
    if cached is None:
        return
    if not active(scene):
        _state.entries.pop(scene.name, None)  # see refresh(): the next draw with the overlay on rebuilds
        return
    if cached.stale:
        _state.changed_at = time.monotonic()  # still editing: push the rebuild back (debounce)
        return
    touched = scene_touched = False
    for update in depsgraph.updates:
        data = update.id
        if isinstance(data, bpy.types.Action):
            touched = True
        elif isinstance(data, bpy.types.Object) and data.name in cached.watch:
            if update.is_updated_geometry and data.type not in {"EMPTY", "CAMERA"}:
                _mark_stale(cached)  # a Follow Path curve (or other target shape) was edited
                return
            touched = touched or update.is_updated_transform
        elif isinstance(data, bpy.types.Scene):
            scene_touched = True
    if (touched and animation_signature(scene) != cached.signature) or (
        scene_touched and settings_key(scene) != cached.key
    ):
        _mark_stale(cached)


@persistent
def _on_load(*_args: Any) -> None:
    invalidate()


def _playing() -> bool:
    wm = bpy.context.window_manager
    return any(w.screen and w.screen.is_animation_playing for w in (wm.windows if wm else ()))


def _tick() -> float | None:
    """Rebuild stale scenes once edits pause (and not during playback: it would jump frames)."""
    wait = _state.changed_at + DEBOUNCE_S - time.monotonic()
    if wait > 0:
        return wait
    if _playing():
        return 0.5
    for name, cached in list(_state.entries.items()):
        scene = bpy.data.scenes.get(name)
        if scene is None:
            _state.entries.pop(name, None)
        elif cached.stale:
            try:
                refresh(bpy.context, scene)
            except Exception as exc:  # a broken rig must not kill the timer or spam every redraw
                cached.stale = False
                print(f"TrajMaster overlay: cannot sample {name!r}: {exc}")
    _redraw_viewports()
    return None


def _redraw_viewports() -> None:
    redraw.tag("VIEW_3D", "WINDOW")


# --- drawing (the GPU side lives in overlay_draw.py, imported only when a viewport draws) ----


def _current(context: bpy.types.Context) -> overlay_geometry.Geometry | None:
    """The geometry to draw now; schedules a rebuild when it is out of date (never samples)."""
    scene = context.scene
    space = context.space_data
    if not active(scene) or (space is not None and not space.overlay.show_overlays):
        return None
    cached = _state.entries.get(scene.name)
    if cached is None:
        cached = _state.entries[scene.name] = Entry()
        _mark_stale(cached)
    elif not cached.stale and settings_key(scene) != cached.key:
        _mark_stale(cached)
    return cached.geometry


def draw_view() -> None:
    """SpaceView3D POST_VIEW callback: paths, slots, arrows, frustum."""
    geometry = _current(bpy.context)
    if geometry is not None:
        from . import overlay_draw

        overlay_draw.draw_view(geometry)


def draw_pixel() -> None:
    """SpaceView3D POST_PIXEL callback: the warning labels."""
    context = bpy.context
    geometry = _current(context)
    if geometry is not None and context.region is not None and context.region_data is not None:
        from . import overlay_draw

        overlay_draw.draw_labels(geometry, context.region, context.region_data)


classes: tuple[type, ...] = ()


def register() -> None:
    # Adding a draw handler needs no GPU, so this is the same in background Blender (where
    # nothing ever calls it); the GPU work starts inside the callbacks.
    space = bpy.types.SpaceView3D
    _state.handles = [
        space.draw_handler_add(draw_view, (), "WINDOW", "POST_VIEW"),
        space.draw_handler_add(draw_pixel, (), "WINDOW", "POST_PIXEL"),
    ]
    bpy.app.handlers.depsgraph_update_post.append(_on_depsgraph)
    bpy.app.handlers.load_post.append(_on_load)


def unregister() -> None:
    for handle in _state.handles:
        bpy.types.SpaceView3D.draw_handler_remove(handle, "WINDOW")
    _state.handles = []
    for handlers, fn in (
        (bpy.app.handlers.depsgraph_update_post, _on_depsgraph),
        (bpy.app.handlers.load_post, _on_load),
    ):
        while fn in handlers:
            handlers.remove(fn)
    if bpy.app.timers.is_registered(_tick):
        bpy.app.timers.unregister(_tick)
    invalidate()
