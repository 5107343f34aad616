"""Directing in real Blender: variation sets (the real backend, preview engine), the batch queue
(progress, cancel, a file loaded meanwhile), comparing and marking takes (undoable, with keys),
and Generate All Shots (one check for every scene, each take in its own scene's sequencer)."""

from __future__ import annotations

import importlib
import json
import shutil
import time
from pathlib import Path

import addon_utils
import bpy
import pytest
import scenes
from conftest import MODULE

from backend import job as jobfile


def module(name):
    return importlib.import_module(f"{MODULE}.addon.{name}")


def one_entity_shot(scene=None, start=1, end=49, name="Walker", y=2.0):
    scene = scene or bpy.context.scene
    cam = scenes.camera(scene)
    walker = scenes.keyframed(scene, name, start, end, y=y)
    return scenes.shot(scene, cam, [walker], start, end)


def editor_of(scene=None):
    compat = module("compat")
    return compat.sequencer_scene(bpy.context, scene or bpy.context.scene).sequence_editor


def takes(scene=None, own=False):
    """Take strips by take name, in the sequencer the user sees (or the scene's own with `own`)."""
    scene = scene or bpy.context.scene
    editor = scene.sequence_editor if own else editor_of(scene)
    strips = module("compat").strips(editor) if editor else []
    return sorted((s for s in strips if "trajmaster" in s), key=lambda s: s.name)


def info(strip):
    return module("sequencer").take_info(strip)


def take_folder(blend, scene="Scene"):
    return blend.parent / "trajmaster" / scene


def variations_settings(count, varies):
    settings = bpy.context.scene.trajmaster_directing
    settings.variation_count, settings.variation_varies = count, varies
    return settings


# --- variations --------------------------------------------------------------------------------


def test_a_lora_sweep_lands_as_a_set_on_consecutive_channels_and_its_first_take_plays(blend, runner):
    one_entity_shot(start=10, end=58)
    assert bpy.ops.trajmaster.generate() == {"FINISHED"}  # an earlier take of the shot, on channel 1
    variations_settings(4, "lora_scale")

    assert bpy.ops.trajmaster.generate_variations() == {"FINISHED"}

    earlier, *made = takes()
    assert [s.name for s in made] == [
        "Scene_take_002 \u00b7 LoRA 0.30",
        "Scene_take_003 \u00b7 LoRA 0.50",
        "Scene_take_004 \u00b7 LoRA 0.70",
        "Scene_take_005 \u00b7 LoRA 0.90",
    ]
    assert [s.channel for s in made] == [2, 3, 4, 5]
    assert all((s.frame_final_start, s.frame_final_end) == (10, 59) for s in made), "each spans the shot"
    assert [s.mute for s in (earlier, *made)] == [True, False, True, True, True], "the set's first take plays"
    sets = {info(s)["variation_set"] for s in made}
    assert len(sets) == 1 and "variation_set" not in info(earlier)
    assert [(info(s)["variation_index"], info(s)["variation_count"]) for s in made] == [(k, 4) for k in range(4)]
    assert [info(s)["lora_scale"] for s in made] == pytest.approx([0.3, 0.5, 0.7, 0.9])
    assert {info(s)["seed"] for s in made} == {info(earlier)["seed"]}, "a sweep keeps the shot's seed"
    folder = take_folder(blend)
    for k, strip in enumerate(made, start=2):
        job = jobfile.read(folder / f"Scene_take_{k:03d}.job.json")
        assert job["source"]["variation"]["label"] == info(strip)["variation_label"]
        assert job["sampling"]["lora_scale"] == pytest.approx(info(strip)["lora_scale"])
        assert (folder / f"Scene_take_{k:03d}.mp4").is_file() and (folder / f"Scene_take_{k:03d}.json").is_file()
    assert runner.status.message == "Added 4 takes"


def test_seed_variations_each_get_their_own_seed(blend, runner):
    one_entity_shot()
    variations_settings(3, "seed")
    assert bpy.ops.trajmaster.generate_variations() == {"FINISHED"}
    made = takes()
    seeds = [info(s)["seed"] for s in made]
    assert len(set(seeds)) == 3
    assert [s.name for s in made] == [f"Scene_take_00{k + 1} \u00b7 seed {seeds[k]}" for k in range(3)]
    assert [info(s)["variation_varies"] for s in made] == ["seed"] * 3


def test_a_sweep_that_cannot_be_made_is_refused_before_anything_is_written(blend, runner):
    settings = one_entity_shot()
    settings.quality, settings.steps, settings.annealed_steps = "CUSTOM", 4, 2
    variations_settings(8, "annealed_steps")
    with pytest.raises(RuntimeError, match="Only 4 different annealed-step values fit with 4 steps"):
        bpy.ops.trajmaster.generate_variations()
    assert not take_folder(blend).exists() and takes() == []


def test_the_queue_shows_takes_done_and_an_eta_while_a_set_runs_on_the_worker(blend, runner):
    one_entity_shot()
    variations_settings(3, "seed")
    runner.use_worker = True
    assert bpy.ops.trajmaster.generate_variations() == {"FINISHED"}
    assert runner.busy(), "with the worker, the operator returns at once"
    assert runner.status.batch_title == "3 variations (seed)" and runner.status.jobs_total == 3
    assert bpy.ops.trajmaster.generate() == {"CANCELLED"}  # within a second: the end of a double click
    runner._submitted_at -= 2 * runner.DOUBLE_CLICK_S
    with pytest.raises(RuntimeError, match="already running"):
        bpy.ops.trajmaster.generate()
    runner.status.last_error = ""  # that refusal's own message (Dismiss)
    seen = []
    deadline = time.monotonic() + 180
    while runner.busy() and time.monotonic() < deadline:
        runner.tick()
        s = runner.status
        handed = [j.executor_id is not None for j in runner._queue.jobs]
        seen.append((s.jobs_done, s.batch_eta_s, s.current_take, [e.state for e in s.queue], handed))
        time.sleep(0.02)
    assert not runner.busy()
    assert [d for d, *_ in seen] == sorted(d for d, *_ in seen), "takes done only goes up"
    assert {d for d, *_ in seen} >= {0, 1, 2}
    assert any(eta is not None and eta > 0 for _, eta, *_ in seen), "the batch shows an ETA"
    assert any(handed == [True, True, False] for *_, handed in seen), "the third waits in the add-on's queue"
    assert any(states == ["running", "queued", "queued"] for *_, states, _ in seen), "one runs, two wait"
    assert {name for _, _, name, *_ in seen if name} == {"Scene_take_001", "Scene_take_002", "Scene_take_003"}
    assert [s.channel for s in takes()] == [1, 2, 3]
    assert runner.status.message == "Added 3 takes" and runner.status.last_error == ""


def test_a_set_finishing_out_of_order_still_takes_its_channels_in_order(blend, runner, tmp_path):
    """A server finishes a set's takes in any order; each lands on its own channel of the set's run,
    above another strip that occupies a channel over the shot, and the set's first take plays."""
    sequencer, variations = module("sequencer"), importlib.import_module(f"{MODULE}.addon.directing.variations")
    settings = one_entity_shot(start=1, end=49)
    export = module("job_export").build(bpy.context, bpy.context.scene)
    planned = variations.plan(export.job, 4, "lora_scale", set_id="s1")
    scene = bpy.context.scene
    editor = scene.sequence_editor_create()
    clip = scenes.index_video(tmp_path / "clip.mp4")
    blocker = module("compat").strips(editor).new_movie(name="Reference", filepath=str(clip), channel=2, frame_start=1)
    assert blocker.frame_final_end > 49, "the other strip lies over the whole shot"
    shot = sequencer.Shot("Scene", settings.frame_start, settings.frame_end, scene.name)
    for index in (2, 0, 3, 1):
        name = f"Scene_take_00{index + 1}"
        video = tmp_path / f"{name}.mp4"
        shutil.copy(clip, video)
        result = {"video": str(video), "name": name, "sidecar": ""}
        sequencer.add_take(bpy.context, scene, shot, result, planned[index].job, str(tmp_path / f"{name}.job.json"))
    made = takes()
    assert [s.channel for s in made] == [3, 4, 5, 6], "the run starts above the strip on channel 2"
    assert [s.mute for s in made] == [False, True, True, True]
    assert blocker.channel == 2 and not blocker.mute, "other strips are not touched"


def test_regenerating_a_variation_makes_a_plain_take_not_a_member_of_the_set(blend, runner):
    one_entity_shot()
    variations_settings(2, "lora_scale")
    assert bpy.ops.trajmaster.generate_variations() == {"FINISHED"}
    editor_of().active_strip = takes()[1]
    assert bpy.ops.trajmaster.regenerate(new_seed=True) == {"FINISHED"}
    *_set, new = takes()
    assert new.name == "Scene_take_003" and "variation_set" not in info(new)
    assert new.channel == 3 and not new.mute and all(s.mute for s in _set), "it plays like any new take"
    assert info(new)["lora_scale"] == pytest.approx(0.9), "with the variation's own settings"
    assert "variation" not in jobfile.read(Path(info(new)["job"]))["source"]


# --- the queue: cancel, file load ---------------------------------------------------------------


def _until(predicate, seconds=60.0):
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:
        module("runner").tick()
        time.sleep(0.01)
    assert predicate(), "timed out"


def test_cancelling_a_batch_leaves_no_take_and_no_job_file(blend, runner):
    one_entity_shot()
    variations_settings(4, "seed")
    runner.use_worker = True
    assert bpy.ops.trajmaster.generate_variations() == {"FINISHED"}
    folder = take_folder(blend)
    assert len(list(folder.glob("*.job.json"))) == 4, "every take's name is reserved by its job file"
    _until(lambda: runner.status.step > 0 or not runner.busy())
    assert runner.busy() and runner.status.jobs_done == 0, "the first take ended before it could be cancelled"
    assert bpy.ops.trajmaster.cancel() == {"FINISHED"}
    assert runner.status.state == "cancelling"
    runner.wait(timeout=60)
    assert runner.status.message.startswith("Cancelled")
    assert takes() == []
    assert list(folder.iterdir()) == [], "no take, sidecar or job file is left"


def test_cancelling_one_waiting_take_drops_it_and_the_others_go_on(blend, runner):
    one_entity_shot()
    variations_settings(4, "seed")
    runner.use_worker = True
    assert bpy.ops.trajmaster.generate_variations() == {"FINISHED"}
    last = runner.status.queue[-1]
    assert last.state == "queued" and last.name == "Scene_take_004"
    assert bpy.ops.trajmaster.cancel_take(key=last.key) == {"FINISHED"}
    assert not (take_folder(blend) / "Scene_take_004.job.json").exists(), "dropped at once, job file removed"
    runner.wait(timeout=180)
    made = takes()
    assert [s.name.split(" ")[0] for s in made] == ["Scene_take_001", "Scene_take_002", "Scene_take_003"]
    assert [s.channel for s in made] == [1, 2, 3]
    assert runner.status.message == "Added 3 takes, 1 cancelled"
    assert not (take_folder(blend) / "Scene_take_004.mp4").exists()


def test_a_batch_that_finishes_after_another_file_was_opened_waits_for_add_finished_take(blend, runner):
    one_entity_shot()
    variations_settings(2, "lora_scale")
    runner.use_worker = True
    assert bpy.ops.trajmaster.generate_variations() == {"FINISHED"}
    bpy.ops.wm.read_homefile(use_empty=True)  # the user opens another file meanwhile
    runner.wait(timeout=180)
    assert takes() == []
    assert "2 takes finished after another file was opened" in runner.status.info
    assert len(runner.status.pending) == 2
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    assert takes() == []
    for _ in range(2):
        assert bpy.ops.trajmaster.add_pending_take() == {"FINISHED"}
    made = takes()
    assert [s.name for s in made] == ["Scene_take_001 \u00b7 LoRA 0.30", "Scene_take_002 \u00b7 LoRA 0.90"]
    assert [s.channel for s in made] == [1, 2] and [s.mute for s in made] == [False, True]
    assert not runner.status.pending


# --- comparing and choosing ---------------------------------------------------------------------


@pytest.fixture
def three_variations(blend, runner):
    one_entity_shot()
    variations_settings(3, "lora_scale")
    assert bpy.ops.trajmaster.generate_variations() == {"FINISHED"}
    editor_of().active_strip = takes()[0]
    bpy.ops.ed.undo_push(message="Variations")
    return blend


def playing():
    return [s.name.split(" ")[0] for s in takes() if not s.mute]


def test_stepping_through_a_set_solos_one_take_at_a_time_and_undo_brings_the_last_back(three_variations):
    for op in ("take_step", "take_solo", "take_ab", "take_mark"):
        assert "UNDO" in getattr(bpy.types, f"TRAJMASTER_OT_{op}").bl_options
    assert playing() == ["Scene_take_001"]
    assert bpy.ops.trajmaster.take_step(direction=1) == {"FINISHED"}
    bpy.ops.ed.undo_push(message="Next Take")
    assert playing() == ["Scene_take_002"]
    assert editor_of().active_strip.name.startswith("Scene_take_002"), "the panel follows the take that plays"
    assert bpy.ops.trajmaster.take_step(direction=1) == {"FINISHED"}
    bpy.ops.ed.undo_push(message="Next Take")
    assert playing() == ["Scene_take_003"]
    assert bpy.ops.trajmaster.take_step(direction=1) == {"FINISHED"}
    bpy.ops.ed.undo_push(message="Next Take")
    assert playing() == ["Scene_take_001"], "stepping wraps around"
    assert bpy.ops.trajmaster.take_step(direction=-1) == {"FINISHED"}
    bpy.ops.ed.undo_push(message="Previous Take")
    assert playing() == ["Scene_take_003"]

    assert bpy.ops.ed.undo() == {"FINISHED"}
    assert playing() == ["Scene_take_001"]
    assert bpy.ops.ed.undo() == {"FINISHED"}
    assert playing() == ["Scene_take_003"]
    assert bpy.ops.ed.redo() == {"FINISHED"}
    assert playing() == ["Scene_take_001"]


def test_a_b_switches_between_two_marked_takes_and_is_undoable(three_variations):
    with pytest.raises(RuntimeError, match="Mark two takes for A/B first"):
        bpy.ops.trajmaster.take_ab(action="TOGGLE")
    first, _second, third = takes()
    editor_of().active_strip = first
    assert bpy.ops.trajmaster.take_ab(action="SET_A") == {"FINISHED"}
    editor_of().active_strip = third
    assert bpy.ops.trajmaster.take_ab(action="SET_B") == {"FINISHED"}
    bpy.ops.ed.undo_push(message="Set B")
    settings = bpy.context.scene.trajmaster_directing
    assert (settings.ab_a, settings.ab_b) == (first.name, third.name)
    assert playing() == ["Scene_take_001"]
    assert bpy.ops.trajmaster.take_ab() == {"FINISHED"}
    bpy.ops.ed.undo_push(message="A/B")
    assert playing() == ["Scene_take_003"]
    assert bpy.ops.trajmaster.take_ab() == {"FINISHED"}
    bpy.ops.ed.undo_push(message="A/B")
    assert playing() == ["Scene_take_001"]
    assert bpy.ops.ed.undo() == {"FINISHED"}
    assert playing() == ["Scene_take_003"]
    assert bpy.ops.ed.undo() == {"FINISHED"}
    assert bpy.ops.ed.undo() == {"FINISHED"}
    assert bpy.context.scene.trajmaster_directing.ab_b == "", "undo takes the B mark back too"


def test_favourite_and_reject_are_colour_tags_that_undo_takes_back(three_variations):
    editor_of().active_strip = takes()[0]
    assert bpy.ops.trajmaster.take_mark(mark="FAVOURITE") == {"FINISHED"}
    bpy.ops.ed.undo_push(message="Favourite")
    editor_of().active_strip = takes()[1]
    assert bpy.ops.trajmaster.take_mark(mark="REJECT") == {"FINISHED"}
    bpy.ops.ed.undo_push(message="Reject")
    assert [s.color_tag for s in takes()] == ["COLOR_04", "COLOR_01", "NONE"]
    assert bpy.ops.trajmaster.take_mark(mark="REJECT") == {"FINISHED"}, "pressing a mark again clears it"
    bpy.ops.ed.undo_push(message="Reject")
    assert [s.color_tag for s in takes()] == ["COLOR_04", "NONE", "NONE"]
    assert bpy.ops.ed.undo() == {"FINISHED"}
    assert bpy.ops.ed.undo() == {"FINISHED"}
    assert [s.color_tag for s in takes()] == ["COLOR_04", "NONE", "NONE"]
    assert bpy.ops.ed.undo() == {"FINISHED"}
    assert [s.color_tag for s in takes()] == ["NONE", "NONE", "NONE"]


def test_a_plain_take_is_compared_with_the_other_takes_of_its_shot(blend, runner):
    one_entity_shot()
    for _ in range(2):
        assert bpy.ops.trajmaster.generate() == {"FINISHED"}
    editor_of().active_strip = takes()[1]
    assert playing() == ["Scene_take_002"]
    assert bpy.ops.trajmaster.take_step(direction=1) == {"FINISHED"}
    assert playing() == ["Scene_take_001"]


def _keys():
    kc = bpy.context.window_manager.keyconfigs.addon
    return sorted(
        (kmi.idname, kmi.type, kmi.alt, tuple(sorted((k, getattr(kmi.properties, k)) for k in kmi.properties.keys())))
        for km in kc.keymaps
        for kmi in km.keymap_items
        if kmi.idname.startswith("trajmaster.")
    )


def test_comparison_keys_are_in_the_sequencer_and_go_away_on_unregister():
    expected = [
        ("trajmaster.take_ab", "B", True, (("action", "TOGGLE"),)),
        ("trajmaster.take_step", "DOWN_ARROW", True, (("direction", -1),)),
        ("trajmaster.take_step", "UP_ARROW", True, (("direction", 1),)),
    ]
    assert _keys() == expected
    km = next(
        km for km in bpy.context.window_manager.keyconfigs.addon.keymaps if km.keymap_items.get("trajmaster.take_step")
    )
    assert km.space_type == "SEQUENCE_EDITOR" and km.name in bpy.context.window_manager.keyconfigs.default.keymaps
    addon_utils.disable(MODULE)
    try:
        assert _keys() == []
    finally:
        addon_utils.enable(MODULE, default_set=True)
    assert _keys() == expected, "enabled again: each key once"


# --- Generate All Shots --------------------------------------------------------------------------


def new_scene(name):
    scene = bpy.data.scenes.new(name)
    scene.render.fps, scene.render.fps_base = 24, 1.0
    return scene


def test_generate_all_shots_checks_every_scene_first_and_names_each_problem(blend, runner):
    one_entity_shot(bpy.context.scene)
    no_camera = new_scene("Alley")
    settings = one_entity_shot(no_camera, name="Cat")
    settings.camera, no_camera.camera = None, None
    settings.location_prompt = ""
    steps = new_scene("Roof")
    bird = one_entity_shot(steps, name="Bird")
    bird.quality, bird.annealed_steps = "CUSTOM", 60  # the shot's own steps: checked
    new_scene("Notes")  # no shot: not a shot of the batch
    with pytest.raises(RuntimeError) as raised:
        bpy.ops.trajmaster.generate_all_shots()
    check = importlib.import_module(f"{MODULE}.addon.directing.batches").last_check
    assert check.scenes == ["Alley", "Roof", "Scene"], "in Blender's order of scenes (by name)"
    assert check.problems == [
        "Alley: The shot has no camera; pick one in the TrajMaster panel or set the scene camera.",
        "Alley: The location prompt is empty; describe it in a few words.",
        "Roof: Annealed steps (60) cannot exceed the steps (50); lower them.",
    ]
    for problem in check.problems:
        assert problem in str(raised.value)
    assert "3 problems" in runner.status.last_error
    assert not (blend.parent / "trajmaster").exists(), "nothing is written before every shot passes"
    bpy.ops.wm.read_homefile(use_empty=True)
    assert importlib.import_module(f"{MODULE}.addon.directing.batches").last_check.problems == [], "per file"


def test_generate_all_shots_puts_each_take_into_its_own_scene_with_progress(blend, runner):
    first = bpy.context.scene
    one_entity_shot(first, start=1, end=49)
    second = new_scene("Alley")
    one_entity_shot(second, start=101, end=172, name="Cat", y=4.0)
    third = new_scene("Roof")
    one_entity_shot(third, start=1, end=25, name="Bird", y=6.0)
    runner.use_worker = True
    assert bpy.ops.trajmaster.generate_all_shots() == {"FINISHED"}
    assert runner.status.batch_title == "All shots (3)" and runner.status.jobs_total == 3
    assert [e.label for e in runner.status.queue] == ["Alley", "Roof", "Scene"]
    done = set()
    while runner.busy():
        runner.tick()
        done.add(runner.status.jobs_done)
        time.sleep(0.02)
    assert done >= {0, 1, 2}
    assert runner.status.message == "Added 3 takes"
    for scene, (start, end), entity in (
        (first, (1, 49), "Walker"),
        (second, (101, 172), "Cat"),
        (third, (1, 25), "Bird"),
    ):
        (strip,) = takes(scene, own=True)
        assert strip.name == f"{scene.name}_take_001"
        assert (strip.frame_final_start, strip.frame_final_end) == (start, end + 1)
        job = jobfile.read(Path(info(strip)["job"]))
        assert [e["name"] for e in job["entities"]] == [entity]
        assert (job["shot"]["frame_start"], job["shot"]["frame_end"]) == (start, end)
        poses = [p[9:12] for p in job["entities"][0]["poses"]]
        assert poses[0] != poses[-1], f"{scene.name}'s entity moves in its own job"
        assert Path(info(strip)["video"]).parent == blend.parent / "trajmaster" / scene.name
    assert first.frame_current == 1 and second.frame_current == 1, "sampling put every scene's frame back"
    sidecar = json.loads(Path(info(takes(second, own=True)[0])["sidecar"]).read_text())
    assert sidecar["job"]["shot"]["scene_name"] == "Alley"
