"""Bad input: one clear sentence in the panel and the operator report, Blender keeps working,
and no earlier take or file is touched."""

from __future__ import annotations

import importlib
import stat

import bpy
import pytest
import scenes
from conftest import MODULE

EVENT = '{{"event": "{kind}", "protocol": 1, "time": 0{fields}}}'


@pytest.fixture
def shot_with_a_take(blend, tmp_path, runner):
    """A valid two-entity shot that already has one take in the sequencer and on disk."""
    scene = bpy.context.scene
    cam = scenes.camera(scene)
    walker = scenes.keyframed(scene, "Walker", 1, 49, y=2.0)
    bear = scenes.keyframed(scene, "Bear", 1, 49, x0=3.0, x1=-1.0, y=4.0)
    scenes.shot(scene, cam, [walker, bear], 1, 49)
    job_export = importlib.import_module(f"{MODULE}.addon.job_export")
    sequencer = importlib.import_module(f"{MODULE}.addon.sequencer")
    folder = tmp_path / "trajmaster" / "Scene"
    folder.mkdir(parents=True)
    job = job_export.build(bpy.context, scene).job
    job_export.write(job, folder / "Scene_take_001.job.json")
    video = scenes.index_video(folder / "Scene_take_001.mp4")
    shot = sequencer.Shot("Scene", 1, 49, scene.name)
    sequencer.add_take(bpy.context, scene, shot, {"video": str(video), "name": "Scene_take_001"}, job, "")
    return scene, folder


def snapshot(scene, folder):
    compat = importlib.import_module(f"{MODULE}.addon.compat")
    editor = compat.sequencer_scene(bpy.context, scene).sequence_editor
    strips = sorted((s.name, s.channel, s.mute, s.frame_final_start, s.frame_final_end) for s in compat.strips(editor))
    files = sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in folder.iterdir())
    return strips, files


def fake_python(tmp_path, script: str):
    path = tmp_path / "fake-python"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def event(kind, **fields):
    extra = "".join(f', "{k}": {v}' for k, v in fields.items())
    return EVENT.format(kind=kind, fields=extra)


def no_camera(scene, tmp_path, monkeypatch):
    scene.trajmaster.camera = None
    scene.camera = None


def camera_is_an_empty(scene, tmp_path, monkeypatch):
    scene.trajmaster.camera = None
    scene.camera = scenes.empty(scene, "NotACamera")


def camera_pointer_is_a_mesh(scene, tmp_path, monkeypatch):
    mesh = scenes.link(scene, bpy.data.objects.new("Box", bpy.data.meshes.new("Box")))
    scene.trajmaster.camera = mesh  # Python skips the picker's filter; the add-on must not


def entity_is_not_an_empty(scene, tmp_path, monkeypatch):
    scene.trajmaster.entities[1].object = scenes.link(scene, bpy.data.objects.new("Box", bpy.data.meshes.new("Box")))


def same_empty_twice(scene, tmp_path, monkeypatch):
    scene.trajmaster.entities[1].object = scene.trajmaster.entities[0].object


def no_entities(scene, tmp_path, monkeypatch):
    scene.trajmaster.entities.clear()


def four_entities(scene, tmp_path, monkeypatch):
    for k in range(2):
        item = scene.trajmaster.entities.add()
        item.object = scenes.empty(scene, f"Extra{k}")
        item.prompt = scenes.PROMPTS[2]


def empty_prompt(scene, tmp_path, monkeypatch):
    scene.trajmaster.entities[0].prompt = "   "


def accented_prompt(scene, tmp_path, monkeypatch):
    scene.trajmaster.entities[0].prompt = "a waiter in a caf\u00e9 carrying a tray of drinks between the tables"


def empty_location(scene, tmp_path, monkeypatch):
    scene.trajmaster.location_prompt = ""


def entity_scaled_to_zero(scene, tmp_path, monkeypatch):
    scene.trajmaster.entities[1].object.scale = (0.0, 0.0, 0.0)


def mirrored_camera(scene, tmp_path, monkeypatch):
    scene.trajmaster.camera.scale = (-1.0, 1.0, 1.0)


def one_frame_shot(scene, tmp_path, monkeypatch):
    scene.trajmaster.frame_start = 20
    scene.trajmaster.frame_end = 20


def missing_python(scene, tmp_path, monkeypatch):
    monkeypatch.setenv("TRAJMASTER_PYTHON", str(tmp_path / "nowhere" / "python3"))


def no_python_configured(scene, tmp_path, monkeypatch):
    monkeypatch.delenv("TRAJMASTER_PYTHON")


def backend_crashes_mid_job(scene, tmp_path, monkeypatch):
    hello = event("hello", pid=1, version='"x"')
    progress = event("progress", stage='"rendering"', step=1, total=49, fraction=0.02, eta_s="null")
    script = f"echo '{hello}'\necho '{progress}'\necho 'Fatal Python error: Segmentation fault' >&2\nexit 139\n"
    monkeypatch.setenv("TRAJMASTER_PYTHON", fake_python(tmp_path, script))


def backend_prints_garbage(scene, tmp_path, monkeypatch):
    script = "echo 'Python 2.7.18'\necho 'Type \"help\" for more information.'\nexit 0\n"
    monkeypatch.setenv("TRAJMASTER_PYTHON", fake_python(tmp_path, script))


def output_folder_not_writable(scene, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    bpy.context.preferences.addons[MODULE].preferences.output_folder = str(blocker / "takes")  # reset by `runner`


CASES = [
    (no_camera, "no camera"),
    (camera_is_an_empty, "'NotACamera' is not a camera"),
    (camera_pointer_is_a_mesh, "'Box' is not a camera"),
    (entity_is_not_an_empty, "uses 'Box', which is a mesh, not an empty"),
    (same_empty_twice, "both use the empty 'Walker'"),
    (no_entities, "Add at least one entity"),
    (four_entities, "at most 3 entities; this shot has 4"),
    (empty_prompt, r"prompt of entity 1 \(Walker\) is empty"),
    (accented_prompt, "cannot read"),
    (empty_location, "location prompt is empty"),
    (one_frame_shot, "shorter than 2 frames"),
    (entity_scaled_to_zero, "'Bear' cannot be used during the shot: its transform has zero length"),
    (mirrored_camera, "'ShotCam' cannot be used during the shot: its transform is mirrored"),
    (missing_python, "does not exist"),
    (no_python_configured, "No backend Python is set"),
    (backend_crashes_mid_job, "stopped unexpectedly \\(exit code 139\\).*Segmentation fault"),
    (backend_prints_garbage, "not TrajMaster events.*Python 2.7.18"),
    (output_folder_not_writable, "Cannot write takes to"),
]


@pytest.mark.parametrize(("spoil", "message"), CASES, ids=[c[0].__name__ for c in CASES])
def test_bad_input_is_one_clear_sentence_and_touches_nothing(
    shot_with_a_take, tmp_path, monkeypatch, runner, spoil, message
):
    scene, folder = shot_with_a_take
    before = snapshot(scene, folder)
    spoil(scene, tmp_path, monkeypatch)
    with pytest.raises(RuntimeError, match=message) as raised:
        bpy.ops.trajmaster.generate()
    error = runner.status.last_error
    assert error and "Traceback" not in error and "\n" not in error
    assert error in str(raised.value), "the panel shows the same sentence as the report"
    assert snapshot(scene, folder) == before, "an earlier take or file was touched"
    assert not runner.busy() and runner.worker_pid() is None
    # Blender keeps working: the panel's other operators still run.
    assert bpy.ops.trajmaster.randomize_seed() == {"FINISHED"}
    assert bpy.ops.trajmaster.copy_error() == {"FINISHED"}
