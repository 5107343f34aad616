"""The viewport overlay's geometry: what it draws is what the pose module and the checks say,
and it is sampled again only when the animation or a setting changes.

Background Blender has no GPU, so the drawing itself (addon/overlay_draw.py) is not run here;
the geometry it draws is (addon/overlay_geometry.py, built by addon/overlay.py).
"""

from __future__ import annotations

import importlib
import math

import addon_utils
import bpy
import numpy as np
import pytest
import scenes
from conftest import MODULE

from backend import checks, poses, timeplan


@pytest.fixture
def overlay(addon):
    # Imported afresh: enabling the extension again may give new module objects.
    module = importlib.import_module(f"{MODULE}.addon.overlay")
    module.invalidate()
    return module


def _refresh(overlay, scene):
    return overlay.refresh(bpy.context, scene)


def _walk_scene(start=1, end=49):
    scene = bpy.context.scene
    cam = scenes.camera(scene)
    walker = scenes.keyframed(scene, "Walker", start, end)
    child = scenes.parented(scene, "Child", start, end)
    follower = scenes.on_path(scene, "Follower", start, end)
    settings = scenes.shot(scene, cam, [walker, child, follower], start, end)
    return scene, cam, [walker, child, follower], settings


@pytest.mark.parametrize("mapping", ["RIG", "EXACT"])
def test_paths_slots_and_arrows_are_the_pose_modules(blend, overlay, mapping):
    scene, _cam, empties, settings = _walk_scene(10, 73)
    settings.pose_mapping = mapping
    settings.entities[1].forward_axis = "POS_X"
    scene.frame_set(37)

    geometry = _refresh(overlay, scene)

    assert scene.frame_current == 37 and scene.frame_subframe == 0.0, "the user's frame must be restored"
    slot_times = timeplan.pose_times(10, 73)
    video_times = timeplan.video_times(10, 73)
    slot_mats = scenes.matrices_at(scene, empties, slot_times)
    video_mats = scenes.matrices_at(scene, empties, video_times)
    assert [e.name for e in geometry.entities] == [o.name for o in empties]
    for k, ent in enumerate(geometry.entities):
        frames = poses.entity_frame(slot_mats[k], settings.entities[k].forward_axis)
        np.testing.assert_allclose(ent.slots, frames[:, 3], atol=1e-5)
        assert ent.slots.shape == (13, 3)
        # The shaft of each arrow starts at the slot and points where the entity faces.
        shafts = ent.arrows.reshape(13, 3, 2, 3)[:, 0]
        np.testing.assert_allclose(shafts[:, 0], frames[:, 3], atol=1e-5)
        direction = shafts[:, 1] - shafts[:, 0]
        np.testing.assert_allclose(direction / np.linalg.norm(direction, axis=1)[:, None], frames[:, 2], atol=1e-5)
        # The path runs through the slots and the video frames in time order.
        order = np.argsort([*slot_times, *video_times], kind="stable")
        expected = np.concatenate([slot_mats[k, :, :3, 3], video_mats[k, :, :3, 3]])[order]
        np.testing.assert_allclose(ent.path, expected, atol=1e-5)
        assert ent.color == pytest.approx(tuple(settings.entities[k].color))
    assert geometry.frustum is not None and geometry.frustum.mapping == mapping.lower()


def test_cache_is_rebuilt_only_when_the_animation_or_a_setting_changes(blend, overlay):
    scene, _cam, (walker, child, _follower), settings = _walk_scene()
    other = scenes.empty(scene, "Bystander", (5.0, 5.0, 0.0))
    _refresh(overlay, scene)
    cached = overlay.entry(scene)
    assert cached.rebuilds == 1
    first = cached.geometry.entities[0].slots.copy()

    # Nothing that shapes the motion changed: no rebuild.
    for frame in (1, 20, 33):
        scene.frame_set(frame)
        _refresh(overlay, scene)
    other.location.x = 7.0
    bpy.context.view_layer.update()
    assert not cached.stale, "moving an unrelated object must not invalidate the paths"
    walker.select_set(True)
    bpy.context.view_layer.update()
    _refresh(overlay, scene)
    assert cached.rebuilds == 1

    # Moving an animated empty without keying it is not an animation change (and rebuilding
    # would frame_set the move away).
    scene.frame_set(20)
    walker.location.y = 4.0
    bpy.context.view_layer.update()
    assert not cached.stale
    _refresh(overlay, scene)
    assert cached.rebuilds == 1 and walker.location.y == 4.0

    # A keyframe moves: the depsgraph handler notices, the next refresh rebuilds.
    compat = importlib.import_module(f"{MODULE}.addon.compat")
    fcurves = compat.action_fcurves(walker.animation_data.action)
    fcurve = next(f for f in fcurves if f.data_path == "location" and f.array_index == 0)
    fcurve.keyframe_points[-1].co.y = 6.0
    bpy.context.view_layer.update()
    assert cached.stale
    _refresh(overlay, scene)
    assert cached.rebuilds == 2
    moved = cached.geometry.entities[0].slots
    assert moved[-1, 0] > first[-1, 0] + 1.0 and moved[0, 0] == pytest.approx(first[0, 0])

    # A parent (not keyframed itself here: its static transform) moves the child's path.
    child.parent.animation_data_clear()
    bpy.context.view_layer.update()
    _refresh(overlay, scene)
    rebuilds = cached.rebuilds
    child.parent.location.z = 2.0
    bpy.context.view_layer.update()
    assert cached.stale
    _refresh(overlay, scene)
    assert cached.rebuilds == rebuilds + 1
    np.testing.assert_allclose(cached.geometry.entities[1].slots[:, 2], 2.0, atol=1e-6)

    # Settings: facing, mapping, range, colour each rebuild once.
    for change in (
        lambda: setattr(settings.entities[0], "forward_axis", "POS_Y"),
        lambda: setattr(settings, "pose_mapping", "EXACT"),
        lambda: setattr(settings, "frame_end", 40),
        lambda: setattr(settings.entities[2], "color", (1.0, 1.0, 0.0)),
    ):
        before = cached.rebuilds
        change()
        _refresh(overlay, scene)
        _refresh(overlay, scene)
        assert cached.rebuilds == before + 1


def test_the_draw_side_never_samples_it_schedules_a_rebuild(blend, overlay):
    scene, *_rest, settings = _walk_scene()
    drawn = overlay._current(bpy.context)  # what a redraw asks for: nothing built yet
    assert drawn is None and overlay.entry(scene).stale and overlay.entry(scene).rebuilds == 0
    geometry = _refresh(overlay, scene)  # what the timer does once edits pause
    assert overlay._current(bpy.context) is geometry
    settings.pose_mapping = "EXACT"
    assert overlay._current(bpy.context) is geometry, "the old paths stay up until the rebuild"
    cached = overlay.entry(scene)
    assert cached.stale and cached.rebuilds == 1
    assert overlay._tick() is not None or cached.rebuilds == 2  # debounced: it waits, then rebuilds
    cached.stale = True
    overlay._state.changed_at = 0.0
    assert overlay._tick() is None and cached.rebuilds == 2 and not cached.stale
    assert overlay._current(bpy.context).frustum.mapping == "exact"


def _rebuild_pending(overlay):
    """What the debounce timer does once edits pause, if it was started (background Blender runs no timers)."""
    if bpy.app.timers.is_registered(overlay._tick):
        bpy.app.timers.unregister(overlay._tick)
        overlay._state.changed_at = 0.0
        assert overlay._tick() is None


def test_edits_while_the_overlay_is_off_show_when_it_is_on_again(blend, overlay):
    scene, _cam, (walker, *_others), settings = _walk_scene()
    _refresh(overlay, scene)
    first = overlay._current(bpy.context).entities[0].slots.copy()

    settings.show_overlay = False
    bpy.context.view_layer.update()
    compat = importlib.import_module(f"{MODULE}.addon.compat")
    fcurve = next(f for f in compat.action_fcurves(walker.animation_data.action) if f.data_path == "location")
    fcurve.keyframe_points[-1].co.y = 6.0  # a keyframe moves while the overlay is hidden
    bpy.context.view_layer.update()
    settings.show_overlay = True
    bpy.context.view_layer.update()
    overlay._current(bpy.context)  # a redraw
    _rebuild_pending(overlay)
    slots = overlay._current(bpy.context).entities[0].slots
    assert slots[-1, 0] > first[-1, 0] + 1.0, "the paths must follow the keys edited while the overlay was off"


def test_a_shot_emptied_and_set_up_again_draws_the_new_entity(blend, overlay):
    scene, _cam, (walker, _child, follower), settings = _walk_scene()
    _refresh(overlay, scene)
    assert [e.name for e in overlay._current(bpy.context).entities] == ["Walker", "Child", "Follower"]

    walker.location.x = 1.0  # an edit (here: to an unanimated channel) waits for the debounced rebuild ...
    walker.animation_data_clear()
    bpy.context.view_layer.update()
    assert overlay.entry(scene).stale
    for item in settings.entities:
        item.object = None  # ... and before it runs the shot is gone: nothing to draw
    bpy.context.view_layer.update()
    _rebuild_pending(overlay)
    assert overlay._current(bpy.context) is None

    settings.entities[0].object = follower
    bpy.context.view_layer.update()
    overlay._current(bpy.context)  # a redraw
    _rebuild_pending(overlay)
    assert [e.name for e in overlay._current(bpy.context).entities] == ["Follower"]


def _ground_distance_and_pixels(scene, cam, obj, mapping):
    times = timeplan.pose_times(scene.trajmaster.frame_start, scene.trajmaster.frame_end)
    mats = scenes.matrices_at(scene, [cam, obj], times)
    pose = poses.model_poses(mats[0], mats[1], "NEG_Y", mapping)
    context = poses.camera_context(mats[0], mapping)
    distance = np.linalg.norm(checks.horizontal_offset(pose, context), axis=-1)
    pixels = poses.project(poses.apparent_position(pose, context, mapping))
    return distance, pixels


@pytest.mark.parametrize("mapping", ["RIG", "EXACT"])
def test_warnings_sit_at_the_offending_slots(blend, overlay, mapping):
    scene = bpy.context.scene
    cam = scenes.camera(scene, position=(0.0, -10.0, 1.6), target=(0.0, 0.0, 1.2))
    # One walks up to the camera (too close at the end), one walks out of the frame to the right.
    closer = scenes.empty(scene, "Closer", (0.0, 0.0, 1.2))
    closer.keyframe_insert("location", frame=1)
    closer.location = (0.0, -7.6, 1.2)  # 2.4 m from the camera, still in view, held from frame 37
    closer.keyframe_insert("location", frame=37)
    closer.keyframe_insert("location", frame=49)
    scenes.linear(closer)
    leaver = scenes.keyframed(scene, "Leaver", 1, 49, x0=0.0, x1=12.0, yaw0=0.0, yaw1=0.0)
    settings = scenes.shot(scene, cam, [closer, leaver], 1, 49)
    settings.pose_mapping = mapping

    geometry = _refresh(overlay, scene)
    red, orange = overlay.overlay_geometry.RED, overlay.overlay_geometry.ORANGE
    near, _ = _ground_distance_and_pixels(scene, cam, closer, mapping.lower())
    _, pixels = _ground_distance_and_pixels(scene, cam, leaver, mapping.lower())
    too_close = [s for s in range(13) if near[s] < checks.MIN_DISTANCE]
    outside = [s for s in range(13) if not -20 <= pixels[s, 0] <= 740]
    assert len(too_close) > 2 and too_close[0] > 0 and too_close[-1] == 12
    assert outside and outside[0] > 0 and outside[-1] == 12

    ent_close, ent_out = geometry.entities
    assert [s for s in range(13) if "too_close" in ent_close.slot_codes[s]] == too_close
    assert [s for s in range(13) if "out_of_view" in ent_out.slot_codes[s]] == outside
    # Red where out of view, orange for any other finding, the entity's colour elsewhere.
    for ent in (ent_close, ent_out):
        for codes, color in zip(ent.slot_codes, ent.slot_colors(), strict=True):
            assert color == (red if "out_of_view" in codes else orange if codes else ent.color)
    assert ent_close.slot_colors()[0] == ent_close.color and ent_close.slot_colors()[12] == orange
    assert ent_out.slot_colors()[0] == ent_out.color and ent_out.slot_colors()[12] == red
    # A label at the first slot of each run of offending slots, at that slot.
    texts = {label.text: label for label in geometry.labels}
    close_label = next(t for t in texts if t.startswith("Closer: too close"))
    np.testing.assert_allclose(texts[close_label].position[:2], ent_close.slots[too_close[0], :2], atol=1e-6)
    assert f"slots {too_close[0]}-12" in close_label and f"{near[too_close[0]]:.1f} m" in close_label
    out_label = next(t for t in texts if t.startswith("Leaver: out of view"))
    np.testing.assert_allclose(texts[out_label].position[:2], ent_out.slots[outside[0], :2], atol=1e-6)
    assert texts[out_label].color == red
    # The same findings the Check Shot operator lists.
    codes = {(f.code, f.entity, tuple(f.slots)) for f in geometry.findings}
    assert ("too_close", 0, tuple(too_close)) in codes and ("out_of_view", 1, tuple(outside)) in codes


def _corner_pixels(frustum):
    far = frustum.segments[:4, 1]  # apex -> far corners
    local = (far - frustum.apex) @ frustum.axes.T
    return poses.project(local)


def test_rig_frustum_is_the_rig_camera_and_exact_is_the_shot_camera(blend, overlay):
    scene = bpy.context.scene
    cam = scenes.camera(scene, position=(2.0, -9.0, 3.5), target=(0.0, 0.0, 0.0))
    cam.rotation_mode = "XYZ"
    cam.rotation_euler.y += math.radians(12.0)  # some roll, which the rig drops
    bpy.context.view_layer.update()
    walker = scenes.keyframed(scene, "Walker", 1, 49)
    settings = scenes.shot(scene, cam, [walker], 1, 49)
    frame = poses.camera_frame(np.array(cam.matrix_world))

    settings.pose_mapping = "EXACT"
    exact = _refresh(overlay, scene).frustum
    np.testing.assert_allclose(exact.apex, frame[3], atol=1e-6)
    np.testing.assert_allclose(exact.axes, frame[:3], atol=1e-6)

    settings.pose_mapping = "RIG"
    rig = _refresh(overlay, scene).frustum
    expected = poses.rig_camera(frame)
    np.testing.assert_allclose(rig.axes, expected[:3], atol=1e-6)
    np.testing.assert_allclose(rig.apex, [2.0, -9.0, poses.RIG_APPARENT_CAMERA_HEIGHT], atol=1e-6)
    assert rig.axes[2, 2] == pytest.approx(poses.RIG_FORWARD_Z)  # pitch -5.356 degrees
    assert rig.axes[0, 2] == pytest.approx(0.0, abs=1e-9)  # no roll
    assert not np.allclose(rig.axes, exact.axes, atol=1e-3)
    # Same heading on the ground.
    heading = frame[2, :2] / np.linalg.norm(frame[2, :2])
    np.testing.assert_allclose(rig.axes[2, :2] / np.linalg.norm(rig.axes[2, :2]), heading, atol=1e-6)
    # Both frusta are the model's intrinsics: their far corners are the image corners.
    for frustum in (exact, rig):
        np.testing.assert_allclose(_corner_pixels(frustum), [[0, 480], [720, 480], [720, 0], [0, 0]], atol=1e-3)
        depth = (frustum.segments[4:8, 0] - frustum.apex) @ frustum.axes[2]
        np.testing.assert_allclose(depth, checks.MIN_DISTANCE, atol=1e-9)


def test_overlay_only_for_a_shot_with_the_toggle_on(blend, overlay):
    scene = bpy.context.scene
    assert _refresh(overlay, scene) is None, "an empty scene has no shot"
    cam = scenes.camera(scene)
    settings = scenes.shot(scene, cam, [])
    settings.entities.add()  # an entity without an empty
    assert _refresh(overlay, scene) is None
    settings.entities[0].object = scenes.keyframed(scene, "Walker", 1, 49)
    assert _refresh(overlay, scene) is not None
    assert settings.show_overlay is True
    settings.show_overlay = False
    assert not overlay.active(scene) and _refresh(overlay, scene) is None


def test_without_a_camera_the_paths_are_still_drawn(blend, overlay):
    scene = bpy.context.scene
    walker = scenes.keyframed(scene, "Walker", 1, 49)
    scenes.shot(scene, None, [walker], 1, 49)
    geometry = _refresh(overlay, scene)
    assert geometry.frustum is None and geometry.findings == []
    assert geometry.entities[0].slots.shape == (13, 3)


def _our_handlers(handlers):
    return [h for h in handlers if getattr(h, "__module__", "").startswith(MODULE)]


def test_handlers_come_and_go_with_the_extension_twice(blend):
    for _ in range(2):
        addon_utils.disable(MODULE)
        assert not _our_handlers(bpy.app.handlers.depsgraph_update_post)
        assert not _our_handlers(bpy.app.handlers.load_post) or all(
            not h.__module__.endswith("overlay") for h in _our_handlers(bpy.app.handlers.load_post)
        )
        addon_utils.enable(MODULE, default_set=True)
        module = importlib.import_module(f"{MODULE}.addon.overlay")
        assert len([h for h in bpy.app.handlers.depsgraph_update_post if h is module._on_depsgraph]) == 1
        assert len(module._state.handles) == 2, "one POST_VIEW and one POST_PIXEL draw handler"
        assert hasattr(bpy.types, "TRAJMASTER_PT_viewport")


class _FakeShader:
    def __init__(self, name):
        self.name, self.uniforms = name, {}

    def bind(self):
        pass

    def uniform_float(self, name, value):
        self.uniforms[name] = value


class _FakeBatch:
    def __init__(self, shader, kind, content):
        self.shader, self.kind, self.content, self.drawn = shader, kind, content, 0

    def draw(self, shader):
        self.drawn += 1


def test_draw_code_builds_its_batches_once_from_the_geometry(blend, overlay, monkeypatch):
    """Background Blender has no GPU: the gpu calls are stood in for, the batch data is real."""
    import types

    draw = importlib.import_module(f"{MODULE}.addon.overlay_draw")
    fake_gpu = types.SimpleNamespace(
        shader=types.SimpleNamespace(from_builtin=_FakeShader),
        state=types.SimpleNamespace(
            viewport_get=lambda: (0, 0, 800, 600),
            blend_set=lambda *_: None,
            depth_test_set=lambda *_: None,
            point_size_set=lambda *_: None,
        ),
    )
    monkeypatch.setattr(draw, "gpu", fake_gpu)
    monkeypatch.setattr(draw, "batch_for_shader", _FakeBatch)
    scene, _cam, _empties, _settings = _walk_scene()
    geometry = _refresh(overlay, scene)

    draw.draw_view(geometry)
    draw.draw_view(geometry)

    cache = geometry.gpu_cache
    path, arrows, slots, frustum = cache["path"], cache["arrows"], cache["slots"], cache["frustum"]
    assert path.kind == arrows.kind == frustum.kind == "LINES" and slots.kind == "POINTS"
    assert len(path.content["pos"]) == 3 * 2 * (62 - 1)  # three paths of 62 points, as segments
    assert len(arrows.content["pos"]) == 3 * 13 * 3 * 2
    np.testing.assert_allclose(slots.content["pos"], np.concatenate([e.slots for e in geometry.entities]), atol=1e-6)
    assert len(frustum.content["pos"]) == 24
    assert path.drawn == arrows.drawn == slots.drawn == frustum.drawn == 2
    assert cache["lines"].uniforms["viewportSize"] == (800, 600)


def test_labels_are_drawn_where_their_slot_projects_and_do_not_overlap(overlay, monkeypatch):
    import types

    draw = importlib.import_module(f"{MODULE}.addon.overlay_draw")
    geo = overlay.overlay_geometry
    drawn = []
    position = {}
    fake_blf = types.SimpleNamespace(
        SHADOW=1,
        size=lambda *_: None,
        enable=lambda *_: None,
        disable=lambda *_: None,
        shadow=lambda *_: None,
        color=lambda *_: None,
        position=lambda _font, x, y, _z: position.update(xy=(x, y)),
        draw=lambda _font, text: drawn.append((text, position["xy"])),
    )
    monkeypatch.setattr(draw, "blf", fake_blf)
    monkeypatch.setattr(
        draw, "location_3d_to_region_2d", lambda _r, _v, co: (co[0] * 100, co[1] * 100) if co[2] >= 0 else None
    )
    at = np.array([1.0, 2.0, 0.5])
    labels = [
        geo.Label(at, "A: too close", geo.ORANGE),
        geo.Label(at, "A: out of view", geo.RED),
        geo.Label(np.array([0.0, 0.0, -1.0]), "behind the view", geo.RED),
    ]
    draw.draw_labels(geo.Geometry([], None, labels, []), None, None)
    assert [t for t, _ in drawn] == ["A: too close", "A: out of view"]
    (x0, y0), (x1, y1) = drawn[0][1], drawn[1][1]
    assert x0 == x1 == 108.0 and y0 == 200.0 and y1 == y0 - draw.LINE_HEIGHT
