"""Trajectories: the exported job holds the pose module's numbers for the objects' real motion."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import bpy
import numpy as np
import pytest
import scenes
from conftest import MODULE, ROOT

from backend import job as jobfile
from backend import poses, timeplan


def export(tmp_path, name="job.json"):
    path = tmp_path / name
    assert bpy.ops.trajmaster.export_job(filepath=str(path)) == {"FINISHED"}
    return path, json.loads(path.read_text())


@pytest.mark.parametrize(("fps", "start", "end"), [(24, 10, 73), (25, 1, 49), (30, 101, 160)])
@pytest.mark.parametrize("mapping", ["RIG", "EXACT"])
def test_exported_poses_follow_keyframes_parents_and_paths(blend, tmp_path, fps, start, end, mapping):
    scene = bpy.context.scene
    scene.render.fps = fps
    scene.frame_start, scene.frame_end = 1, 250  # the shot range is its own
    cam = scenes.camera(scene)
    walker = scenes.keyframed(scene, "Walker", start, end)
    child = scenes.parented(scene, "Child", start, end)
    follower = scenes.on_path(scene, "Follower", start, end)
    settings = scenes.shot(scene, cam, [walker, child, follower], start, end)
    settings.pose_mapping = mapping
    settings.entities[1].forward_axis = "POS_X"
    scene.frame_set(37)

    _, job = export(tmp_path)

    assert scene.frame_current == 37 and scene.frame_subframe == 0.0, "the user's frame must be restored"
    shot = job["shot"]
    assert shot["scene_fps"] == fps
    assert (shot["frame_start"], shot["frame_end"]) == (start, end)
    np.testing.assert_allclose(shot["pose_frames"], timeplan.pose_times(start, end))
    np.testing.assert_allclose(shot["video_frames"], timeplan.video_times(start, end))
    assert any(t != int(t) for t in shot["pose_frames"]), "pose slots fall between frames"
    assert job["pose_mapping"] == mapping.lower()

    objects = [cam, walker, child, follower]
    for key, times in (("poses", shot["pose_frames"]), ("video_poses", shot["video_frames"])):
        mats = scenes.matrices_at(scene, objects, times)
        for k, ent in enumerate(job["entities"]):
            facing = settings.entities[k].forward_axis
            expected = poses.model_poses(mats[0], mats[k + 1], facing, mapping.lower())
            np.testing.assert_allclose(ent[key], expected, atol=1e-5, err_msg=f"{ent['name']} {key}")
    context = poses.camera_context(scenes.matrices_at(scene, [cam], shot["pose_frames"])[0], mapping.lower())
    np.testing.assert_allclose(job["camera"]["context"], context, atol=1e-6)
    assert len(job["camera"]["video_context"]) == 49


def test_subframe_times_are_really_sampled(blend, tmp_path):
    """Analytic check, independent of frame_set: a linear walk along X seen by a camera looking along +Y."""
    scene = bpy.context.scene
    cam = scenes.camera(scene, position=(0.0, -10.0, 1.6), target=(0.0, 0.0, 1.6))
    walker = scenes.keyframed(scene, "Walker", 10, 31, x0=-2.0, x1=2.0, yaw0=0.0, yaw1=0.0)
    scenes.shot(scene, cam, [walker], 10, 31).pose_mapping = "EXACT"
    _, job = export(tmp_path)
    times = np.array(job["shot"]["pose_frames"])
    right = np.array(job["entities"][0]["poses"])[:, 9]
    np.testing.assert_allclose(right, -2.0 + 4.0 * (times - 10) / 21, atol=1e-5)


def test_follow_path_entity_moves_along_its_path(blend, tmp_path):
    scene = bpy.context.scene
    cam = scenes.camera(scene)
    follower = scenes.on_path(scene, "Follower", 1, 49)
    scenes.shot(scene, cam, [follower], 1, 49).pose_mapping = "EXACT"
    _, job = export(tmp_path)
    times = np.array(job["shot"]["pose_frames"])
    right = np.array(job["entities"][0]["poses"])[:, 9]
    np.testing.assert_allclose(right, -3.0 + 6.0 * (times - 1) / 48, atol=1e-4)


def test_driver_and_nla_motion_count(blend, tmp_path):
    scene = bpy.context.scene
    cam = scenes.camera(scene)
    driven = scenes.empty(scene, "Driven")
    fcurve = driven.driver_add("location", 0)
    fcurve.driver.type = "SCRIPTED"
    fcurve.driver.expression = "frame * 0.1 - 3"
    walker = scenes.keyframed(scene, "Walker", 1, 49, y=2.0)
    # Push the walk into an NLA strip that starts 10 frames later.
    track = walker.animation_data.nla_tracks.new()
    action = walker.animation_data.action
    track.strips.new("walk", 11, action)
    walker.animation_data.action = None
    scenes.shot(scene, cam, [driven, walker], 1, 49).pose_mapping = "EXACT"
    _, job = export(tmp_path)
    times = np.array(job["shot"]["pose_frames"])
    driven_x = np.array(job["entities"][0]["poses"])[:, 9]
    np.testing.assert_allclose(driven_x, times * 0.1 - 3, atol=1e-4)
    walker_x = np.array(job["entities"][1]["poses"])[:, 9]
    np.testing.assert_allclose(walker_x, np.clip(-2.0 + 4.0 * (times - 11) / 48, -2.0, 2.0), atol=1e-4)


def _rigged(scene, name):
    """An armature with one bone whose pose is keyed, like a character rig waiting in the scene."""
    arm = scenes.link(scene, bpy.data.objects.new(name, bpy.data.armatures.new(name)))
    bpy.context.view_layer.objects.active = arm
    bpy.ops.object.mode_set(mode="EDIT")
    bone = arm.data.edit_bones.new("spine")
    bone.head, bone.tail = (0.0, 0.0, 0.0), (0.0, 0.0, 1.0)
    bpy.ops.object.mode_set(mode="OBJECT")
    arm.pose.bones["spine"].keyframe_insert("location", frame=1)
    return arm


def test_moves_the_user_has_not_keyed_survive_export_and_the_overlay(blend, tmp_path):
    """Sampling changes frames, which re-evaluates every animated object: the artist's unkeyed
    tweaks (on the shot's empties or anywhere else in the scene) must be there afterwards."""
    scene = bpy.context.scene
    cam = scenes.camera(scene)
    walker = scenes.keyframed(scene, "Walker", 1, 49)
    prop = scenes.keyframed(scene, "Prop", 1, 49, y=3.0)  # animated, not in the shot
    rig = _rigged(scene, "Rig")
    scenes.shot(scene, cam, [walker], 1, 49)
    _, keyed = export(tmp_path, "keyed.json")
    scene.frame_set(20)
    walker.location.x += 1.5
    prop.rotation_euler.z = 1.0
    rig.pose.bones["spine"].location = (0.0, 0.3, 0.0)
    moved = (tuple(walker.location), tuple(prop.rotation_euler), tuple(rig.pose.bones["spine"].location))

    _, job = export(tmp_path)
    geometry = importlib.import_module(f"{MODULE}.addon.overlay").refresh(bpy.context, scene, force=True)
    assert geometry is not None

    assert scene.frame_current == 20
    assert (tuple(walker.location), tuple(prop.rotation_euler), tuple(rig.pose.bones["spine"].location)) == moved
    # The job is the keyed motion: an unkeyed move is not part of the animation.
    np.testing.assert_allclose(job["entities"][0]["poses"], keyed["entities"][0]["poses"], atol=1e-6)
    # Once the user changes frames, Blender itself re-evaluates the keys, as always.
    scene.frame_set(21)
    assert tuple(walker.location) != moved[0]


def test_exported_job_is_accepted_by_the_backend(blend, tmp_path):
    scene = bpy.context.scene
    cam = scenes.camera(scene)
    scenes.shot(scene, cam, [scenes.keyframed(scene, "Walker", 1, 49, y=2.0)], 1, 49)
    path, job = export(tmp_path)
    jobfile.validate(job)
    assert job["engine"] == "preview" and job["sampling"]["steps"] == 50
    assert job["prompt"]["text"].endswith(f"is moving in the {scenes.LOCATION}")
    done = subprocess.run(
        [sys.executable, "-m", "backend", "validate", str(path)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


def test_export_never_overwrites_without_being_asked(blend, tmp_path):
    scene = bpy.context.scene
    cam = scenes.camera(scene)
    scenes.shot(scene, cam, [scenes.keyframed(scene, "Walker", 1, 49, y=2.0)], 1, 49)
    path = tmp_path / "mine.json"
    path.write_text("my notes")
    with pytest.raises(RuntimeError, match="already exists"):
        bpy.ops.trajmaster.export_job(filepath=str(path))
    assert path.read_text() == "my notes"
    assert bpy.ops.trajmaster.export_job(filepath=str(path), overwrite=True) == {"FINISHED"}
    assert json.loads(path.read_text())["format"] == "trajmaster-job"


def test_shot_range_follows_the_scene_until_set(blend):
    scene = bpy.context.scene
    settings = scene.trajmaster
    scene.frame_start, scene.frame_end = 5, 60
    assert (settings.frame_start, settings.frame_end) == (5, 60)
    settings.frame_end = 40
    scene.frame_start = 1
    assert (settings.frame_start, settings.frame_end) == (5, 40)
    bpy.ops.trajmaster.reset_range()
    assert (settings.frame_start, settings.frame_end) == (1, 60)


def test_camera_defaults_to_the_scene_camera(blend, tmp_path):
    scene = bpy.context.scene
    cam = scenes.camera(scene)
    scenes.shot(scene, None, [scenes.keyframed(scene, "Walker", 1, 49, y=2.0)], 1, 49)
    _, job = export(tmp_path)
    assert job["camera"]["name"] == cam.name
