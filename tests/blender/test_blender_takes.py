"""Takes in the Video Sequence Editor: timing, channels, muting, properties.

The timing tests render the sequencer and read back which clip frame Blender shows at every
scene frame, using a clip whose frames carry their own index.
"""

from __future__ import annotations

import importlib

import bpy
import pytest
import scenes
from conftest import MODULE

from backend import timeplan


@pytest.fixture(scope="module")
def index_clip(tmp_path_factory):
    return scenes.index_video(tmp_path_factory.mktemp("clip") / "index.mp4")


def sequencer_module():
    return importlib.import_module(f"{MODULE}.addon.sequencer")


def compat_module():
    return importlib.import_module(f"{MODULE}.addon.compat")


def job_for(scene, start, end):
    job_export = importlib.import_module(f"{MODULE}.addon.job_export")
    cam = scenes.camera(scene)
    scenes.shot(scene, cam, [scenes.keyframed(scene, "Walker", start, end, y=2.0)], start, end)
    return job_export.build(bpy.context, scene).job


def place(scene, clip, start, end, name, job=None):
    seq = sequencer_module()
    # The frame shown_frame renders: a take is fitted to the frame it is placed in.
    scene.render.resolution_x, scene.render.resolution_y = 64, 48
    shot = seq.Shot("Scene", start, end, scene.name)
    result = {"video": str(clip), "name": name, "sidecar": ""}
    return seq.add_take(bpy.context, scene, shot, result, job or job_for(scene, start, end), "/nowhere/job.json")


def new_colour(editor, name, channel, start, length):
    strips = compat_module().strips(editor)
    if bpy.app.version >= (5, 0, 0):
        return strips.new_effect(name, "COLOR", channel=channel, frame_start=start, length=length)
    return strips.new_effect(name, "COLOR", channel=channel, frame_start=start, frame_end=start + length)


def sequencer_scene():
    return compat_module().sequencer_scene(bpy.context, bpy.context.scene)


@pytest.mark.parametrize(("fps", "start", "end"), [(24, 10, 73), (25, 5, 30), (30, 1, 120), (24, 3, 14), (24, 1, 2)])
def test_take_spans_the_shot_and_shows_each_clip_frame_at_its_time(blend, tmp_path, index_clip, fps, start, end):
    scene = bpy.context.scene
    scene.render.fps = fps
    # A strip without retiming data in the way must not disturb the retiming (it did, through
    # Blender's retiming-key API).
    editor = sequencer_scene().sequence_editor_create()
    colour = new_colour(editor, "Other", channel=5, start=start, length=10)
    colour.mute = True
    strip = place(scene, index_clip, start, end, "Scene_take_001")
    assert (strip.frame_final_start, strip.frame_final_end) == (start, end + 1)
    shown = [scenes.shown_frame(scene, f, tmp_path / "f.png") for f in range(start, end + 1)]
    ideal = [(f - start) * (timeplan.VIDEO_FRAMES - 1) / (end - start) for f in range(start, end + 1)]
    assert shown[0] == 0 and shown[-1] == 48
    assert shown == sorted(shown), "scrubbing forward never goes back in the clip"
    worst = max(abs(s - i) for s, i in zip(shown, ideal, strict=True))
    # Up to 4.5 Blender shows the nearest clip frame. 5.0 keys the end of the clip's last frame
    # on a whole frame, so a scene frame may be off by up to one frame of the coarser grid: one clip
    # frame for shots longer than the clip, one scene frame (48 / span clip frames) for shorter ones.
    bound = 0.5 if bpy.app.version < (5, 0, 0) else max(1.0, 48 / (end - start))
    assert worst <= bound + 1e-6, (shown, ideal)
    assert scenes.shown_frame(scene, end + 1, tmp_path / "f.png") == 0, "nothing after the shot"


def test_takes_stack_upwards_the_newest_plays(blend, index_clip):
    scene = bpy.context.scene
    job = job_for(scene, 1, 49)
    editor = sequencer_scene().sequence_editor_create()
    other = new_colour(editor, "Colour", channel=3, start=1, length=60)
    busy = new_colour(editor, "Busy", channel=1, start=20, length=10)
    first = place(scene, index_clip, 1, 49, "Scene_take_001", job)
    second = place(scene, index_clip, 1, 49, "Scene_take_002", job)
    third = place(scene, index_clip, 1, 49, "Scene_take_003", job)
    assert first.channel == 2, "channel 1 is busy during the shot"
    assert second.channel == 4, "the first free channel above the previous take (3 holds another strip)"
    assert third.channel == 5
    assert [first.mute, second.mute, third.mute] == [True, True, False]
    assert not other.mute and not busy.mute, "strips that are not takes of this shot are left alone"
    assert [s.name for s in (first, second, third)] == ["Scene_take_001", "Scene_take_002", "Scene_take_003"]


def test_take_carries_the_job_parameters(blend, index_clip):
    scene = bpy.context.scene
    job = job_for(scene, 1, 49)
    job["sampling"]["seed"] = 777
    strip = place(scene, index_clip, 1, 49, "Scene_take_004", job)
    info = sequencer_module().take_info(strip)
    assert info["shot"] == "Scene" and info["take"] == 4
    assert (info["frame_start"], info["frame_end"], info["seed"], info["steps"]) == (1, 49, 777, 50)
    assert info["engine"] == "preview" and info["pose_mapping"] == "rig"
    assert info["job"] == "/nowhere/job.json" and info["video"] == str(index_clip)
    assert scenes.PROMPTS[0] in info["entities"] and info["location"] == scenes.LOCATION
    # survives save and reload
    bpy.ops.wm.save_mainfile()
    bpy.ops.wm.open_mainfile(filepath=bpy.data.filepath)
    editor = sequencer_scene().sequence_editor
    reloaded = sequencer_module().take_info(compat_module().strips(editor)["Scene_take_004"])
    assert reloaded["seed"] == 777


@pytest.mark.skipif(bpy.app.version < (5, 0, 0), reason="the sequencer scene exists from Blender 5.0")
def test_takes_go_to_the_workspace_sequencer_scene(blend, index_clip):
    scene = bpy.context.scene
    edit = bpy.data.scenes.new("Edit")
    bpy.context.workspace.sequencer_scene = edit
    place(scene, index_clip, 1, 49, "Scene_take_001")
    assert scene.sequence_editor is None or len(compat_module().strips(scene.sequence_editor)) == 0
    assert [s.name for s in compat_module().strips(edit.sequence_editor)] == ["Scene_take_001"]
