"""The contact sheet in Compare, in real Blender with the real backend (preview engine): a set's
takes side by side in a new video next to them, added as a strip over the shot above the set
(retimed like a take, playing), never over an existing file, undoable without losing the file,
cancellable, and one sentence when it cannot be made."""

from __future__ import annotations

import importlib
import tempfile
from pathlib import Path

import bpy
import pytest
import scenes
from conftest import MODULE

from backend import video


def module(name):
    return importlib.import_module(f"{MODULE}.addon.{name}")


START, END = 10, 58


def editor():
    return module("compat").sequencer_scene(bpy.context, bpy.context.scene).sequence_editor


def strips():
    return sorted(module("compat").strips(editor()), key=lambda s: (s.channel, s.name))


def takes():
    return [s for s in strips() if "trajmaster" in s]


def sheets():
    return [s for s in strips() if "trajmaster_sheet" in s]


def folder(blend):
    return blend.parent / "trajmaster" / "Scene"


def make_set(count):
    scene = bpy.context.scene
    cam = scenes.camera(scene)
    walker = scenes.keyframed(scene, "Walker", START, END, y=2.0)
    scenes.shot(scene, cam, [walker], START, END)
    settings = scene.trajmaster_directing
    settings.variation_count, settings.variation_varies = count, "seed"
    assert bpy.ops.trajmaster.generate_variations() == {"FINISHED"}
    editor().active_strip = takes()[0]
    bpy.ops.ed.undo_push(message="Variations")


@pytest.fixture
def four_takes(blend, runner):
    make_set(4)
    yield blend
    module("directing.contact_sheet").abandon()


@pytest.fixture
def two_takes(blend, runner):
    make_set(2)
    yield blend
    module("directing.contact_sheet").abandon()


def test_the_sheet_is_a_new_video_next_to_the_takes_and_a_strip_above_the_set_that_plays(four_takes):
    first = takes()[0]
    assert bpy.ops.trajmaster.make_contact_sheet() == {"FINISHED"}

    path = folder(four_takes) / "Scene_take_001-004_sheet.mp4"
    frames, info = video.read_mp4(path)
    assert frames.shape == (49, 964, 1444, 3), "four takes at their full 720 x 480, 2 x 2"
    assert info["fps"] == pytest.approx(8.0)
    (sheet,) = sheets()
    assert sheet.name == "Scene_take_001-004 \u00b7 contact sheet"
    assert sheet.channel == 5, "on the first channel above the set (channels 1-4)"
    assert (sheet.frame_final_start, sheet.frame_final_end) == (START, END + 1), "over the shot, like a take"
    assert bpy.path.abspath(sheet.filepath) == str(path)
    assert not sheet.mute and all(t.mute for t in takes()), "the sheet plays; the takes are muted"
    render = bpy.context.scene.render
    scale = sheet.transform.scale_x
    assert sheet.transform.scale_y == pytest.approx(scale)
    fitted = (1444 * scale, 964 * scale)
    assert fitted[0] <= render.resolution_x + 0.5 and fitted[1] <= render.resolution_y + 0.5, "it fits the frame"
    assert max(fitted[0] / render.resolution_x, fitted[1] / render.resolution_y) == pytest.approx(1.0, abs=1e-3)
    props = sheet["trajmaster_sheet"]
    assert props["shot"] == "Scene" and props["set"] == first["trajmaster"]["variation_set"]
    assert editor().active_strip == first, "Compare stays on the selected take"
    assert module("directing.contact_sheet").note.text == f"Added the contact sheet {sheet.name}"


def test_a_take_played_again_mutes_the_sheet_and_play_brings_the_sheet_back(two_takes):
    assert bpy.ops.trajmaster.make_contact_sheet() == {"FINISHED"}
    (sheet,) = sheets()
    assert bpy.ops.trajmaster.take_step(direction=1) == {"FINISHED"}
    assert sheet.mute and [t.mute for t in takes()] == [True, False]
    assert bpy.ops.trajmaster.play_contact_sheet(strip=sheet.name) == {"FINISHED"}
    assert not sheet.mute and all(t.mute for t in takes())


def test_a_sheet_never_replaces_a_file(two_takes):
    taken = folder(two_takes) / "Scene_take_001-002_sheet.mp4"
    taken.write_bytes(b"the user's own file")
    assert bpy.ops.trajmaster.make_contact_sheet() == {"FINISHED"}
    assert bpy.ops.trajmaster.make_contact_sheet() == {"FINISHED"}
    assert taken.read_bytes() == b"the user's own file"
    assert [bpy.path.abspath(s.filepath).rsplit("/", 1)[-1] for s in sheets()] == [
        "Scene_take_001-002_sheet_2.mp4",
        "Scene_take_001-002_sheet_3.mp4",
    ]
    assert [s.channel for s in sheets()] == [3, 4]
    assert [s.mute for s in sheets()] == [True, False], "the newest sheet plays"


def test_undo_takes_the_strip_away_and_keeps_the_file(two_takes):
    assert bpy.ops.trajmaster.make_contact_sheet() == {"FINISHED"}
    bpy.ops.ed.undo_push(message="Add contact sheet")  # what the add-on pushes in the UI when the sheet lands
    path = folder(two_takes) / "Scene_take_001-002_sheet.mp4"

    assert bpy.ops.ed.undo() == {"FINISHED"}
    assert sheets() == [] and path.is_file()
    assert [t.mute for t in takes()] == [False, True], "the take that played plays again"
    assert bpy.ops.ed.redo() == {"FINISHED"}
    assert len(sheets()) == 1 and all(t.mute for t in takes())


def test_cancelling_leaves_no_file_and_says_so(two_takes):
    cs = module("directing.contact_sheet")
    made = cs.start(bpy.context, takes()[0])
    assert cs.cancel()
    made.task.wait(timeout=60)
    assert cs.finish(bpy.context) is None
    assert cs.note.text == "Cancelled; no contact sheet was written." and not cs.note.error
    assert sheets() == [] and not list(folder(two_takes).glob("*sheet*"))
    assert not [p for p in folder(two_takes).iterdir() if p.name.startswith(".trajmaster-")]


def test_without_a_backend_on_this_computer_it_says_what_to_do(two_takes, monkeypatch):
    monkeypatch.delenv("TRAJMASTER_PYTHON")
    bpy.context.preferences.addons[MODULE].preferences.python_source = "MANAGED"
    with pytest.raises(RuntimeError, match=r"press Set Up Backend .* \(Preview Only is enough\)\.$"):
        bpy.ops.trajmaster.make_contact_sheet()
    assert sheets() == [] and not list(folder(two_takes).glob("*sheet*"))


def test_a_missing_take_video_is_one_sentence(two_takes):
    (folder(two_takes) / "Scene_take_002.mp4").unlink()
    with pytest.raises(RuntimeError, match=r"The video of Scene_take_002 .* is missing"):
        bpy.ops.trajmaster.make_contact_sheet()
    assert sheets() == []


def test_one_take_has_no_contact_sheet(blend, runner):
    scene = bpy.context.scene
    cam = scenes.camera(scene)
    scenes.shot(scene, cam, [scenes.keyframed(scene, "Walker", 1, 49, y=2.0)], 1, 49)
    assert bpy.ops.trajmaster.generate() == {"FINISHED"}
    editor().active_strip = takes()[0]
    with pytest.raises(RuntimeError, match="compares 2-8 takes and the shot Scene has 1"):
        bpy.ops.trajmaster.make_contact_sheet()


def test_a_sheet_made_before_the_first_save_is_copied_next_to_the_saved_file(runner, monkeypatch, tmp_path):
    bpy.ops.wm.read_homefile(use_empty=True)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "system-temp"))
    make_set(2)
    assert bpy.ops.trajmaster.make_contact_sheet() == {"FINISHED"}
    temp = module("outputs").unsaved_folder() / "Scene" / "Scene_take_001-002_sheet.mp4"
    assert temp.is_file()

    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "shot.blend"))

    copy = tmp_path / "trajmaster" / "Scene" / "Scene_take_001-002_sheet.mp4"
    (sheet,) = sheets()
    assert copy.is_file() and Path(bpy.path.abspath(sheet.filepath)) == copy
    assert sheet["trajmaster_sheet"]["video"] == str(copy)
    assert runner.status.info.startswith("Copied 2 take(s) and 1 contact sheet(s) made before the first save")
