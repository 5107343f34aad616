"""Match Model Camera: the shot camera then sees what the model renders, by Blender's own projection."""

from __future__ import annotations

import importlib
import math

import bpy
import numpy as np
import pytest
import scenes
from bpy_extras.object_utils import world_to_camera_view
from conftest import MODULE
from mathutils import Vector

from backend import poses


def _odd_camera(scene):
    """A camera far from the model's: long lens, full-frame sensor, shifted, rolled, HD at 50 %."""
    cam = scenes.camera(scene, position=(3.0, -8.0, 2.5), target=(0.0, 0.0, 0.5))
    cam.rotation_mode = "XYZ"
    cam.rotation_euler.y = math.radians(8.0)
    cam.data.lens, cam.data.sensor_width, cam.data.sensor_fit = 50.0, 36.0, "VERTICAL"
    cam.data.shift_x, cam.data.shift_y = 0.1, -0.05
    render = scene.render
    render.resolution_x, render.resolution_y, render.resolution_percentage = 1920, 1080, 50
    render.pixel_aspect_x, render.pixel_aspect_y = 2.0, 1.0
    bpy.context.view_layer.update()
    return cam


def _points():
    rng = np.random.default_rng(7)
    return [Vector(p) for p in rng.uniform([-4, -2, 0], [4, 6, 2.5], size=(12, 3))]


def _model_pixels(cam, points):
    frame = poses.camera_frame(np.array(cam.matrix_world))
    local = (np.array([tuple(p) for p in points]) - frame[3]) @ frame[:3].T
    return poses.project(local)


def _blender_pixels(scene, cam, points):
    out = []
    for p in points:
        ndc = world_to_camera_view(scene, cam, p)
        out.append((ndc.x * poses.MODEL_WIDTH, (1.0 - ndc.y) * poses.MODEL_HEIGHT))
    return np.array(out)


def test_match_sets_the_model_intrinsics_and_keeps_the_pose(blend):
    scene = bpy.context.scene
    cam = _odd_camera(scene)
    before = np.array(cam.matrix_world)
    euler = tuple(cam.rotation_euler)

    assert bpy.ops.trajmaster.match_model_camera() == {"FINISHED"}

    data, render = cam.data, scene.render
    assert data.type == "PERSP"
    assert data.lens == pytest.approx(35.0) and data.sensor_width == pytest.approx(23.76)
    assert data.sensor_fit == "HORIZONTAL" and (data.shift_x, data.shift_y) == (0.0, 0.0)
    assert (render.resolution_x, render.resolution_y, render.resolution_percentage) == (720, 480, 100)
    assert (render.pixel_aspect_x, render.pixel_aspect_y) == (1.0, 1.0)
    np.testing.assert_allclose(np.array(cam.matrix_world), before, atol=1e-6)
    assert tuple(cam.rotation_euler) == pytest.approx(euler)


def test_rig_pitch_keeps_position_and_heading(blend):
    scene = bpy.context.scene
    cam = _odd_camera(scene)
    location = tuple(cam.matrix_world.translation)
    heading = -np.array(cam.matrix_world)[:2, 2]
    heading /= np.linalg.norm(heading)

    assert bpy.ops.trajmaster.match_model_camera(rig_pose=True) == {"FINISHED"}
    bpy.context.view_layer.update()

    assert tuple(cam.matrix_world.translation) == pytest.approx(location, abs=1e-6)
    # Blender's camera looks down -Z: pitch -5.356 degrees is an X rotation of 90 - 5.356.
    x, y, _z = cam.rotation_euler
    assert math.degrees(x) == pytest.approx(90.0 + poses.RIG_PITCH_DEG, abs=1e-4)
    assert poses.RIG_PITCH_DEG == pytest.approx(-5.356, abs=1e-3)
    assert y == pytest.approx(0.0, abs=1e-6)  # no roll
    frame = poses.camera_frame(np.array(cam.matrix_world))
    assert frame[2, 2] == pytest.approx(poses.RIG_FORWARD_Z, abs=1e-6)
    assert frame[0, 2] == pytest.approx(0.0, abs=1e-6)  # the right axis is level
    np.testing.assert_allclose(frame[2, :2] / np.linalg.norm(frame[2, :2]), heading, atol=1e-6)
    # The camera is now the rig camera the Rig mapping substitutes for it (at its own height).
    rig = poses.rig_camera(frame)
    np.testing.assert_allclose(frame[:3], rig[:3], atol=1e-6)


@pytest.mark.parametrize("rig_pose", [False, True])
def test_blender_projects_like_the_model_after_matching(blend, rig_pose):
    scene = bpy.context.scene
    cam = _odd_camera(scene)
    points = _points()
    assert not np.allclose(_blender_pixels(scene, cam, points), _model_pixels(cam, points), atol=1.0)

    bpy.ops.trajmaster.match_model_camera(rig_pose=rig_pose)
    bpy.context.view_layer.update()

    np.testing.assert_allclose(_blender_pixels(scene, cam, points), _model_pixels(cam, points), atol=1e-2)


def test_match_uses_the_shot_camera_before_the_scene_camera(blend):
    scene = bpy.context.scene
    scene_cam = scenes.camera(scene, position=(0.0, -10.0, 1.6))
    shot_cam = scenes.camera(scene, position=(5.0, -10.0, 1.6), active=False)
    scene.trajmaster.camera = shot_cam
    bpy.ops.trajmaster.match_model_camera()
    assert shot_cam.data.lens == pytest.approx(35.0) and scene_cam.data.lens == pytest.approx(50.0)


def test_without_a_camera_it_says_what_to_do(blend):
    with pytest.raises(RuntimeError, match="no camera"):
        bpy.ops.trajmaster.match_model_camera()


def test_an_animated_rotation_is_reported(blend):
    scene = bpy.context.scene
    cam = _odd_camera(scene)
    cam.keyframe_insert("rotation_euler", frame=1)
    module = importlib.import_module(f"{MODULE}.addon.camera_match")
    assert module._rotation_driven(cam)
    assert bpy.ops.trajmaster.match_model_camera(rig_pose=True) == {"FINISHED"}


def test_the_operator_can_be_undone_and_is_in_the_viewport_panel(blend):
    module = importlib.import_module(f"{MODULE}.addon.camera_match")
    assert {"REGISTER", "UNDO"} <= module.TRAJMASTER_OT_match_model_camera.bl_options
    panel = bpy.types.TRAJMASTER_PT_viewport
    assert panel.bl_parent_id == "TRAJMASTER_PT_main"
