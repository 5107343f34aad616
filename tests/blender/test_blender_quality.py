"""Quality: the shot's choice in the panel, the job file it writes, and the take's strip that says
what the take was made with (the real backend with the preview engine)."""

from __future__ import annotations

import importlib
import json
from types import SimpleNamespace

import bpy
import scenes
from conftest import MODULE
from test_blender_preferences import FakeLayout

from backend import job as jobfile


def module(name):
    return importlib.import_module(f"{MODULE}.addon.{name}")


def drawn(cls) -> FakeLayout:
    layout = FakeLayout()
    cls.draw(SimpleNamespace(layout=layout), bpy.context)
    return layout


def props(layout: FakeLayout) -> list[str]:
    return [v for k, v in layout.log if k == "prop"]


def steps_of(job) -> tuple:
    return job["sampling"]["quality"], job["sampling"]["steps"], job["sampling"]["annealed_steps"]


def select(strip) -> None:
    module("compat").sequencer_scene(bpy.context, bpy.context.scene).sequence_editor.active_strip = strip


def test_the_panel_offers_quality_and_shows_the_steps_only_for_custom(blend):
    _, settings = scenes.two_entity_shot(10, 73)
    assert settings.quality == "FINAL", "Final is the default"
    settings.engine = "COGVIDEOX"
    assert "quality" in props(drawn(bpy.types.TRAJMASTER_PT_generate)), "Quality sits beside Generate"
    model = drawn(bpy.types.TRAJMASTER_PT_sampling)
    assert "quality" in props(model) and "steps" not in props(model) and "annealed_steps" not in props(model)
    assert "50 steps, 21 with the injector, no step cache" in model.labels()
    settings.quality = "DRAFT"
    assert "20 steps, 9 with the injector, step cache 0.05" in drawn(bpy.types.TRAJMASTER_PT_sampling).labels()
    settings.quality = "CUSTOM"
    assert {"steps", "annealed_steps", "step_cache"} <= set(props(drawn(bpy.types.TRAJMASTER_PT_sampling)))
    # The preview ignores the quality: not offered beside Generate there.
    settings.engine = "PREVIEW"
    assert "quality" not in props(drawn(bpy.types.TRAJMASTER_PT_generate))


def test_custom_steps_are_checked_only_when_they_are_used(blend):
    scene, settings = scenes.two_entity_shot(10, 73)
    settings.steps, settings.annealed_steps = 10, 30
    job_export = module("job_export")
    assert not any("Annealed steps" in p for p in job_export.shot_problems(scene))
    settings.quality = "CUSTOM"
    assert any("Annealed steps (30) cannot exceed the steps (10)" in p for p in job_export.shot_problems(scene))


def test_the_quality_chosen_goes_into_the_job_and_onto_the_take_strip(blend, runner):
    _, settings = scenes.two_entity_shot(10, 73)
    sequencer = module("sequencer")
    folder = blend.parent / "trajmaster" / "Scene"

    settings.quality = "DRAFT"
    assert bpy.ops.trajmaster.generate() == {"FINISHED"}
    job = jobfile.read(folder / "Scene_take_001.job.json")
    assert {k: job["sampling"].get(k) for k in ("quality", "steps", "annealed_steps", "step_cache")} == {
        "quality": "draft",
        "steps": 20,
        "annealed_steps": 8,
        "step_cache": jobfile.DRAFT_STEP_CACHE,
    }
    (draft,) = scenes.takes()
    assert draft.name == "Scene_take_001 \u00b7 Draft"
    info = sequencer.take_info(draft)
    assert info["quality"] == "draft" and info["steps"] == 20 and info["annealed_steps"] == 8
    sidecar = json.loads((folder / "Scene_take_001.json").read_text())
    assert json.loads(info["speed"]) == sidecar["speed"] == {"quality": "draft"}
    select(draft)
    take_panel = drawn(bpy.types.TRAJMASTER_PT_take)
    assert "Draft" in take_panel.labels()

    settings.quality = "FINAL"
    assert bpy.ops.trajmaster.generate() == {"FINISHED"}
    job = jobfile.read(folder / "Scene_take_002.job.json")
    assert steps_of(job) == ("final", 50, 20)
    assert "step_cache" not in job["sampling"]
    final = scenes.takes()[1]
    assert final.name == "Scene_take_002", "a Final take keeps its plain name"
    assert sequencer.take_info(final)["quality"] == "final"

    settings.quality = "CUSTOM"
    settings.steps, settings.annealed_steps, settings.step_cache = 12, 3, 0.1
    assert bpy.ops.trajmaster.generate() == {"FINISHED"}
    job = jobfile.read(folder / "Scene_take_003.job.json")
    assert {k: job["sampling"].get(k) for k in ("quality", "steps", "annealed_steps", "step_cache")} == {
        "quality": "custom",
        "steps": 12,
        "annealed_steps": 3,
        "step_cache": 0.1,
    }
    assert scenes.takes()[2].name == "Scene_take_003 \u00b7 Custom"


def test_a_draft_take_becomes_a_final_take_with_its_seed(blend, runner):
    _, settings = scenes.two_entity_shot(10, 73)
    settings.engine, settings.quality, settings.seed = "PREVIEW", "DRAFT", 321
    assert bpy.ops.trajmaster.generate() == {"FINISHED"}
    (draft,) = scenes.takes()
    select(draft)

    def regenerate_buttons() -> int:
        log = drawn(bpy.types.TRAJMASTER_PT_take).log
        return sum(1 for k, v in log if k == "operator" and v[0] == "trajmaster.regenerate")

    # A preview ignores the seed and the quality: one Regenerate. A model's draft take also offers
    # Same Seed and Make Final Take.
    assert regenerate_buttons() == 1
    draft["trajmaster"]["engine"] = "cogvideox"
    assert regenerate_buttons() == 3
    assert bpy.ops.trajmaster.regenerate(new_seed=False, final=True) == {"FINISHED"}
    _, final = scenes.takes()
    select(final)
    final["trajmaster"]["engine"] = "cogvideox"
    assert regenerate_buttons() == 2, "a final take offers no Make Final Take"
    assert final.name == "Scene_take_002"
    job = jobfile.read(module("sequencer").take_info(final)["job"])
    assert job["sampling"]["seed"] == 321
    assert steps_of(job) == ("final", 50, 20)
    assert "step_cache" not in job["sampling"]


def test_the_strip_shows_every_speed_setting_the_engine_recorded():
    """The take's speed line reads the sidecar's record generically: options it does not know
    (another engine's, a later version's) still show, as key and value."""
    speed = {
        "quality": "draft",
        "steps": 20,
        "injector_steps": 9,
        "step_cache": {"threshold": 0.05, "computed_steps": 7, "skipped_steps": 4},
        "dtype": "bfloat16",
        "compile": False,
        "quantize": "none",
        "attention": "sage",
        "gpus": 2,
    }
    text = module("sequencer").speed_text({"speed": json.dumps(speed)})
    assert text == (
        "Draft: 20 steps, 9 with the injector, step cache 0.05 (4 of 11 steps reused); "
        "dtype bfloat16, compile off, quantize none, attention sage, gpus 2"
    )
    off = {"quality": "final", "steps": 50, "injector_steps": 21, "step_cache": "off"}
    assert module("sequencer").speed_text({"speed": json.dumps(off)}) == (
        "Final: 50 steps, 21 with the injector, step cache off"
    )
    # A take from before speed records: its quality alone.
    assert module("sequencer").speed_text({"quality": "final"}) == "Final"
