"""The panel tells the truth about the file and the shot as they are now (issue 12).

- An entity whose empty is not in the shot's scene (deleted, unlinked, in another scene only,
  excluded or disabled in viewports) is missing: Generate, Export and Check refuse naming it, the
  overlay leaves it out, before and after a save and reload. A centimetre scene gives metres.
- Status texts and findings belong to the file and the state they describe: a load or File > New
  drops the previous file's, an undone take takes its message with it, a fixed shot its error,
  and findings are checked again when the shot changes.
- A forgotten keyframe, Bezier easing that rushes the middle of a move (with Make Keys Linear),
  and a high camera pitched like the rig are findings.
- Each unsaved file has its own temporary take folder.

Background Blender runs no timers: where the UI's debounced timer would run after an edit, the
tests call it (status_scope.tick, overlay.refresh), as the overlay's tests do.
"""

from __future__ import annotations

import importlib
import math
import re
import tempfile
from pathlib import Path

import bpy
import numpy as np
import pytest
import scenes
from conftest import MODULE

from backend import job as jobfile


def module(name):
    return importlib.import_module(f"{MODULE}.addon.{name}")


def settle():
    """What the window does after an edit: evaluate the scene (depsgraph handlers run), draw the
    panel (which first drops what is no longer true), and run the add-on's debounced timer once the
    edits pause."""
    bpy.context.view_layer.update()
    scope = module("status_scope")
    scope.before_draw(bpy.context)
    scope._changed_at = 0.0
    scope.tick()


two_entity_shot, takes = scenes.two_entity_shot, scenes.takes


def findings(scene=None):
    return module("runner").findings_for(scene or bpy.context.scene)


def codes(scene=None):
    return sorted(f["code"] for f in findings(scene))


def delete_in_viewport(obj):
    """X > Delete in the viewport: the object leaves every collection, the entity still points at it."""
    with bpy.context.temp_override(selected_objects=[obj], selected_editable_objects=[obj], active_object=obj):
        assert bpy.ops.object.delete() == {"FINISHED"}


# --- 1. missing empties and the unit scale --------------------------------------------------------


def _deleted(scene, obj):
    delete_in_viewport(obj)


def _unlinked(scene, obj):
    scene.collection.objects.unlink(obj)


def _other_scene_only(scene, obj):
    other = bpy.data.scenes.new("Set B")
    other.collection.objects.link(obj)
    scene.collection.objects.unlink(obj)


def _excluded(scene, obj):
    props = bpy.data.collections.new("Props")
    scene.collection.children.link(props)
    props.objects.link(obj)
    scene.collection.objects.unlink(obj)
    bpy.context.view_layer.layer_collection.children["Props"].exclude = True


def _collection_disabled(scene, obj):
    props = bpy.data.collections.new("Props")
    scene.collection.children.link(props)
    props.objects.link(obj)
    scene.collection.objects.unlink(obj)
    props.hide_viewport = True


def _object_disabled(scene, obj):
    obj.hide_viewport = True


MISSING = {
    "deleted": (_deleted, "is not in any scene"),
    "unlinked": (_unlinked, "is not in any scene"),
    "in another scene only": (_other_scene_only, "is only in the scene 'Set B'"),
    "excluded from the view layer": (_excluded, "is in a collection excluded from the view layer 'ViewLayer'"),
    "collection disabled in viewports": (_collection_disabled, "is in a collection disabled in viewports"),
    "disabled in viewports": (_object_disabled, "is disabled in viewports"),
}


@pytest.mark.parametrize("how", list(MISSING))
def test_an_empty_that_is_not_in_the_scene_is_missing_and_refused(blend, runner, how):
    scene, settings = two_entity_shot()
    bear = bpy.data.objects["Bear"]
    overlay = module("overlay")
    assert [e.name for e in overlay.refresh(bpy.context, scene).entities] == ["Walker", "Bear"]
    make_missing, reason = MISSING[how]

    make_missing(scene, bear)
    bpy.context.view_layer.update()

    assert settings.entities[1].object == bear, "the entity still points at the empty"
    presence = module("presence")
    assert reason in presence.missing_reason(bear, scene, bpy.context.view_layer)
    sentence = f"Entity 2's empty 'Bear' {reason}"
    for op in (bpy.ops.trajmaster.generate, bpy.ops.trajmaster.check_shot):
        with pytest.raises(RuntimeError, match=re.escape(sentence)):
            op()
        assert runner.status.last_error.startswith(sentence)
    with pytest.raises(RuntimeError, match="Entity 2's empty 'Bear'"):
        bpy.ops.trajmaster.export_job(filepath=str(blend.parent / "shot.json"))
    assert not (blend.parent / "trajmaster").exists() and not (blend.parent / "shot.json").exists()
    # The overlay draws only what is in the scene.
    assert [e.name for e in overlay.refresh(bpy.context, scene).entities] == ["Walker"]


def test_a_hidden_empty_is_still_in_the_shot(blend, runner):
    """Hiding (the eye) does not change evaluation: the empty still moves and is generated."""
    scene, _settings = two_entity_shot()
    bpy.data.objects["Bear"].hide_set(True)
    bpy.context.view_layer.update()
    assert module("presence").missing_reason(bpy.data.objects["Bear"], scene, bpy.context.view_layer) is None
    assert bpy.ops.trajmaster.check_shot() == {"FINISHED"}


def test_a_deleted_empty_stays_missing_after_save_and_reload(blend, runner):
    """The entity's pointer is the deleted empty's last user, so it is saved and comes back, drawn at
    the origin: it must still be missing, not generated there."""
    two_entity_shot()
    delete_in_viewport(bpy.data.objects["Bear"])
    bpy.ops.wm.save_mainfile()
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    scene = bpy.context.scene
    bear = scene.trajmaster.entities[1].object
    assert bear is not None and bear.name == "Bear" and not bear.users_scene
    with pytest.raises(RuntimeError, match="Entity 2's empty 'Bear' is not in any scene"):
        bpy.ops.trajmaster.generate()
    assert takes() == []
    assert [e.name for e in module("overlay").refresh(bpy.context, scene).entities] == ["Walker"]
    # Put back in the scene, it is an entity again.
    scene.collection.objects.link(bear)
    assert bpy.ops.trajmaster.check_shot() == {"FINISHED"}


def test_a_deleted_camera_is_refused(blend, runner):
    _scene, settings = two_entity_shot()
    delete_in_viewport(settings.camera)
    bpy.context.view_layer.update()
    with pytest.raises(RuntimeError, match="The shot camera 'ShotCam' is not in any scene"):
        bpy.ops.trajmaster.check_shot()


def _shot_in_units(unit_scale):
    """The same shot built in a scene counting in units of `unit_scale` metres."""
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    scene.unit_settings.system = "METRIC"
    scene.unit_settings.scale_length = unit_scale
    k = 1.0 / unit_scale
    cam = scenes.camera(scene, position=(0.0, -10.0 * k, 1.6 * k), target=(0.0, 0.0, 1.2 * k))
    walker = scenes.keyframed(scene, "Walker", 1, 49, x0=-2.0 * k, x1=2.0 * k, y=2.0 * k)
    scenes.shot(scene, cam, [walker], 1, 49)
    return scene, walker


def test_a_centimetre_scene_gives_metres(runner):
    scene, _walker = _shot_in_units(1.0)
    metres = module("job_export").build(bpy.context, scene)
    scene, walker = _shot_in_units(0.01)  # Unit Scale 0.01: one unit is a centimetre
    centimetres = module("job_export").build(bpy.context, scene)

    for a, b in zip(metres.job["entities"], centimetres.job["entities"], strict=True):
        np.testing.assert_allclose(b["poses"], a["poses"], atol=1e-5)
        np.testing.assert_allclose(b["video_poses"], a["video_poses"], atol=1e-5)
    np.testing.assert_allclose(centimetres.job["camera"]["context"], metres.job["camera"]["context"], atol=1e-6)
    assert centimetres.findings == metres.findings == [], "12 m away, not 1200 m"
    # The overlay draws where the empty is, in the scene's units.
    geometry = module("overlay").refresh(bpy.context, scene)
    scene.frame_set(1)
    np.testing.assert_allclose(geometry.entities[0].slots[0], walker.matrix_world.translation, atol=1e-3)
    assert geometry.frustum is not None and 150 < geometry.frustum.apex[2] < 170, "eye height 1.6 m = 160 units"


def test_a_template_is_keyed_in_the_scenes_units(runner):
    """A template lays its path out in metres in front of the camera: in a centimetre scene the keys
    are a hundred times the numbers, and the job the same as in a metre scene."""
    distances, jobs = [], []
    for unit_scale in (1.0, 0.01):
        scene, walker = _shot_in_units(unit_scale)
        walker.animation_data_clear()
        assert bpy.ops.trajmaster.apply_template(template="Straight across") == {"FINISHED"}
        scene.frame_set(1)
        distances.append((walker.matrix_world.translation - scene.camera.matrix_world.translation).length)
        jobs.append(module("job_export").build(bpy.context, scene).job)
    assert distances[1] == pytest.approx(100 * distances[0], rel=1e-4) and 3 < distances[0] < 13
    np.testing.assert_allclose(jobs[1]["entities"][0]["poses"], jobs[0]["entities"][0]["poses"], atol=1e-4)


# --- 2. texts and findings follow the file and the shot ---------------------------------------------


@pytest.mark.parametrize("new_file", ["File > New", "open another file"])
def test_another_file_shows_nothing_from_the_previous_one(blend, runner, tmp_path, new_file):
    scene, settings = two_entity_shot()
    assert bpy.ops.trajmaster.generate() == {"FINISHED"}
    assert runner.status.message == "Added Scene_take_001"
    bpy.ops.trajmaster.check_shot()
    settings.camera = None
    scene.camera = None
    with pytest.raises(RuntimeError):
        bpy.ops.trajmaster.generate()
    assert runner.status.last_error.startswith("The shot has no camera")
    runner.status.info = "Copied 1 take(s) made before the first save to somewhere."
    other = tmp_path / "other.blend"
    if new_file == "open another file":
        bpy.ops.wm.read_homefile(use_empty=True)
        bpy.ops.wm.save_as_mainfile(filepath=str(other))
        bpy.ops.wm.open_mainfile(filepath=str(blend))
        runner.status.say("info", "Copied 1 take(s) made before the first save to somewhere.")
        runner.status.message = "Added Scene_take_001"
        bpy.ops.wm.open_mainfile(filepath=str(other))
    else:
        bpy.ops.wm.read_homefile(use_empty=True)
    status = runner.status
    assert (status.message, status.last_error, status.info) == ("", "", "")
    assert findings() == []


def test_a_take_finished_after_another_file_was_opened_keeps_its_note(blend, runner):
    """The one text that is about no file: a take waiting for Add Finished Take."""
    two_entity_shot()
    runner.use_worker = True
    assert bpy.ops.trajmaster.generate() == {"FINISHED"}
    bpy.ops.wm.read_homefile(use_empty=True)
    runner.wait(timeout=120)
    assert "another file was opened" in runner.status.info
    bpy.ops.wm.read_homefile(use_empty=True)
    assert "another file was opened" in runner.status.info and runner.status.pending
    assert bpy.ops.trajmaster.add_pending_take() == {"FINISHED"}
    assert runner.status.info == ""


def test_undoing_a_take_takes_its_message_away(blend, runner):
    two_entity_shot()
    bpy.ops.ed.undo_push(message="Shot")
    assert bpy.ops.trajmaster.generate() == {"FINISHED"}
    bpy.ops.ed.undo_push(message="Add take Scene_take_001")  # what the runner pushes in the UI
    assert runner.status.message == "Added Scene_take_001" and len(takes()) == 1

    assert bpy.ops.ed.undo() == {"FINISHED"}

    assert takes() == []
    assert runner.status.message == "", "the take it names is gone"
    # A take deleted in the sequencer too.
    assert bpy.ops.ed.redo() == {"FINISHED"}
    runner.status.say("message", "Added Scene_take_001", "take", takes()[0].id_data.name, "Scene_take_001")
    compat = module("compat")
    strip = takes()[0]
    compat.strips(strip.id_data.sequence_editor).remove(strip)
    bpy.context.view_layer.update()
    assert runner.status.message == ""


def test_a_refusal_goes_when_the_shot_is_fixed(blend, runner):
    _scene, settings = two_entity_shot()
    settings.entities[0].prompt = ""
    with pytest.raises(RuntimeError, match=r"prompt of entity 1 .* is empty"):
        bpy.ops.trajmaster.generate()
    assert "is empty" in runner.status.last_error
    settings.location_prompt = "a wide beach at sunset with low waves"  # another edit: the problem stays
    settle()
    assert "is empty" in runner.status.last_error

    settings.entities[0].prompt = scenes.PROMPTS[0]
    settle()

    assert runner.status.last_error == ""
    # A failure that is not about the shot (the backend) stays until the file changes.
    runner.status.last_error = "The backend crashed."
    settings.entities[0].prompt = scenes.PROMPTS[1]
    settle()
    assert runner.status.last_error == "The backend crashed."


def test_a_missing_empty_refusal_goes_when_it_is_back(blend, runner):
    scene, _settings = two_entity_shot()
    bear = bpy.data.objects["Bear"]
    scene.collection.objects.unlink(bear)
    bpy.context.view_layer.update()
    with pytest.raises(RuntimeError, match="'Bear' is not in any scene"):
        bpy.ops.trajmaster.generate()
    scene.collection.objects.link(bear)
    bpy.context.view_layer.update()
    assert runner.status.last_error == ""


def eased_walk(scene, name="Horse", length=6.0, start=1, end=73, y=0.0):
    """An empty keyed at two frames with Blender's default interpolation (Bezier, auto-clamped)."""
    obj = scenes.empty(scene, name, (-length / 2, y, 0.0))
    obj.rotation_euler = (0.0, 0.0, -math.pi / 2)  # -Y facing: it looks along +X, where it goes
    for frame, x in ((start, -length / 2), (end, length / 2)):
        obj.location.x = x
        obj.keyframe_insert("location", frame=frame)
        obj.keyframe_insert("rotation_euler", frame=frame)
    for fcurve in module("compat").object_fcurves(obj):
        assert all(k.interpolation == "BEZIER" for k in fcurve.keyframe_points)
    return obj


def test_findings_follow_the_shot_when_its_keys_are_made_linear(blend, runner):
    """The 'too fast' warning goes when the user makes the keys Linear (Key > Interpolation Mode),
    as the overlay's does."""
    scene = bpy.context.scene
    cam = scenes.camera(scene)
    horse = eased_walk(scene)
    scenes.shot(scene, cam, [horse], 1, 73)
    assert bpy.ops.trajmaster.check_shot() == {"FINISHED"}
    assert codes() == ["too_fast"]

    for fcurve in module("compat").object_fcurves(horse):
        for key in fcurve.keyframe_points:
            key.interpolation = "LINEAR"
    settle()

    assert findings() == [], "checked again: the even pace is in distribution"
    # And back (undo in the UI): the finding comes back.
    for fcurve in module("compat").object_fcurves(horse):
        for key in fcurve.keyframe_points:
            key.interpolation = "BEZIER"
    settle()
    assert codes() == ["too_fast"]


def test_findings_are_checked_again_after_undo(blend, runner):
    scene = bpy.context.scene
    cam = scenes.camera(scene)
    walker = scenes.keyframed(scene, "Walker", 1, 49, y=2.0)
    scenes.shot(scene, cam, [walker], 1, 49)
    bpy.ops.ed.undo_push(message="Shot")
    fcurve = next(
        f for f in module("compat").object_fcurves(walker) if f.data_path == "location" and f.array_index == 1
    )
    fcurve.keyframe_points[-1].co.y = 30.0  # the walker ends 30 m away: too far
    fcurve.update()
    bpy.ops.ed.undo_push(message="Move key")
    assert bpy.ops.trajmaster.check_shot() == {"FINISHED"}
    assert "too_far" in codes()

    assert bpy.ops.ed.undo() == {"FINISHED"}
    settle()

    assert "too_far" not in codes()


# --- 4. a forgotten keyframe ----------------------------------------------------------------------


def test_an_entity_that_does_not_move_is_an_info_finding(blend, runner):
    scene = bpy.context.scene
    cam = scenes.camera(scene)
    walker = scenes.keyframed(scene, "Walker", 1, 49, y=2.0)
    statue = scenes.empty(scene, "Statue", (1.0, 1.0, 0.0))  # never keyed: the forgotten I press
    scenes.shot(scene, cam, [walker, statue], 1, 49)

    assert bpy.ops.trajmaster.check_shot() == {"FINISHED"}

    (still,) = findings()
    assert still["code"] == "still" and still["severity"] == "info" and still["entity"] == 1
    assert still["message"].startswith("Statue does not move")
    # It does not stop a generation (standing still can be intended), and the overlay labels it.
    assert bpy.ops.trajmaster.generate() == {"FINISHED"}
    labels = [label.text for label in module("overlay").refresh(bpy.context, scene).labels]
    assert "Statue: does not move" in labels


# --- 5. Bezier easing and Make Keys Linear ----------------------------------------------------------


def test_easing_is_named_as_the_cause_and_make_keys_linear_fixes_it(blend, runner):
    scene = bpy.context.scene
    cam = scenes.camera(scene)
    horse = eased_walk(scene)
    # The horse rides on a parent with its own (eased) animation, and shares its action with a twin:
    # neither is the entity's own to change.
    parent = scenes.empty(scene, "Cart", (0.0, 0.0, 0.0))
    parent.keyframe_insert("location", frame=1)
    parent.location.z = 0.001
    parent.keyframe_insert("location", frame=73)
    horse.parent = parent
    twin = scenes.empty(scene, "Twin", (0.0, 6.0, 0.0))
    twin.animation_data_create().action = horse.animation_data.action
    if hasattr(twin.animation_data, "action_slot"):
        twin.animation_data.action_slot = horse.animation_data.action_slot
    scenes.shot(scene, cam, [horse], 1, 73)
    assert bpy.ops.trajmaster.check_shot() == {"FINISHED"}
    (fast,) = findings()
    assert fast["code"] == "too_fast" and fast["fix"] == "linear_keys" and fast["entity"] == 0
    assert "Bezier easing" in fast["message"] and "2.2 m/s" in fast["message"]

    bpy.ops.ed.undo_push(message="Check")
    assert bpy.ops.trajmaster.make_keys_linear(entity=0) == {"FINISHED"}
    bpy.ops.ed.undo_push(message="Make Keys Linear")

    assert findings() == [], "checked again at once"
    compat = module("compat")
    assert all(k.interpolation == "LINEAR" for f in compat.object_fcurves(horse) for k in f.keyframe_points)
    assert all(k.interpolation == "BEZIER" for f in compat.object_fcurves(parent) for k in f.keyframe_points)
    assert all(k.interpolation == "BEZIER" for f in compat.object_fcurves(twin) for k in f.keyframe_points)
    assert twin.animation_data.action != horse.animation_data.action

    # Undoable: the Bezier keys are back.
    assert "UNDO" in bpy.types.TRAJMASTER_OT_make_keys_linear.bl_options
    assert bpy.ops.ed.undo() == {"FINISHED"}
    horse = bpy.data.objects["Horse"]
    assert all(k.interpolation == "BEZIER" for f in compat.object_fcurves(horse) for k in f.keyframe_points)


def test_a_path_too_long_at_any_pace_is_not_blamed_on_easing(blend, runner):
    scene = bpy.context.scene
    cam = scenes.camera(scene)
    scenes.shot(scene, cam, [eased_walk(scene, length=9.5)], 1, 73)
    bpy.ops.trajmaster.check_shot()
    fast = next(f for f in findings() if f["code"] == "too_fast")
    assert fast["fix"] == "" and "shorten the path" in fast["message"]


# --- 6. With Rig Pitch on a high camera ---------------------------------------------------------------


def test_rig_pitch_on_a_high_camera_warns_that_the_action_leaves_its_view(blend, runner, capfd):
    scene = bpy.context.scene
    cam = scenes.camera(scene, position=(0.0, -10.0, 8.0), target=(0.0, 2.0, 0.0))  # looking down at the action
    walker = scenes.keyframed(scene, "Walker", 1, 49, y=2.0)
    scenes.shot(scene, cam, [walker], 1, 49)
    bpy.ops.trajmaster.check_shot()
    assert findings() == [], "the high camera looking down frames the action"

    assert bpy.ops.trajmaster.match_model_camera(rig_pose=True) == {"FINISHED"}

    (view,) = findings()  # listed in the panel at once
    assert view["code"] == "camera_view" and view["severity"] == "info"
    assert "Walker passes below the frame of the shot camera's own view" in view["message"]
    assert "lower the camera to about 1.6 m" in view["message"]
    assert "Warning" in capfd.readouterr().out, "the operator warns"
    # At eye height the rig pitch frames it: nothing to say.
    cam.location.z = 1.6
    settle()
    assert findings() == []


# --- 7. each unsaved file has its own take folder ---------------------------------------------------


def test_each_unsaved_file_numbers_its_takes_from_one(runner, monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    # Another session's unsaved file left two takes in the temporary folder.
    old = tmp_path / "trajmaster" / "Scene"
    old.mkdir(parents=True)
    for n in (1, 2):
        (old / f"Scene_take_00{n}.mp4").write_bytes(b"another file's take")
    folders = []
    for _ in range(2):  # File > New twice
        bpy.ops.wm.read_homefile(use_empty=True)
        two_entity_shot()
        assert bpy.ops.trajmaster.generate() == {"FINISHED"}
        (strip,) = takes()
        assert strip.name == "Scene_take_001", "a new file's first take"
        video = Path(bpy.path.abspath(strip.filepath))
        folders.append(video.parent.parent)
        assert video.is_file() and video.parent.parent.parent == tmp_path / "trajmaster"
    assert folders[0] != folders[1], "each unsaved file has its own folder"
    assert sorted(p.name for p in old.iterdir()) == ["Scene_take_001.mp4", "Scene_take_002.mp4"]

    # The save-time copy still finds the file's takes in its folder.
    (tmp_path / "project").mkdir()
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "project" / "shot.blend"))
    (strip,) = takes()
    assert strip.filepath == "//trajmaster/Scene/Scene_take_001.mp4"
    copied = tmp_path / "project" / "trajmaster" / "Scene" / "Scene_take_001.job.json"
    assert jobfile.read(copied)["shot"]["scene_name"] == "Scene"
    assert "Copied 1 take(s)" in runner.status.info
