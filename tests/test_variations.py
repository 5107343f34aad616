"""Planning a variation set without Blender: the values each kind sweeps, the jobs it makes (valid
against the job schema), and the channels a set's takes land on whatever order they finish in."""

from __future__ import annotations

import importlib
import random

import pytest
from test_supervisor import preview_job, sv

from backend import job as jobfile

var = importlib.import_module(sv.__name__.rsplit(".", 1)[0] + ".directing.variations")

RELEASE = {"seed": 42, "steps": 50, "guidance_scale": 6.0, "lora_scale": 0.6, "annealed_steps": 20}


def test_seed_variations_are_new_distinct_seeds_the_panel_can_hold():
    seeds = var.sweep_values(var.SEED, RELEASE, 8, random.Random(1))
    assert len(set(seeds)) == 8 and all(0 <= s <= 2**31 - 1 for s in seeds)
    # Two presses give different takes (a fixed sequence such as seed+1... would repeat them).
    assert set(var.sweep_values(var.SEED, RELEASE, 8)).isdisjoint(var.sweep_values(var.SEED, RELEASE, 8))


def test_lora_sweep_spans_the_current_value_and_stays_in_range():
    assert var.sweep_values(var.LORA_SCALE, RELEASE, 4) == [0.3, 0.5, 0.7, 0.9]
    assert var.sweep_values(var.LORA_SCALE, RELEASE, 2) == [0.3, 0.9]
    # Near the ends the window moves instead of being cut: still `count` different values.
    assert var.sweep_values(var.LORA_SCALE, {**RELEASE, "lora_scale": 0.95}, 4) == [0.4, 0.6, 0.8, 1.0]
    assert var.sweep_values(var.LORA_SCALE, {**RELEASE, "lora_scale": 0.0}, 3) == [0.0, 0.3, 0.6]
    for center in (0.0, 0.1, 0.5, 0.77, 1.0):
        for count in range(2, 9):
            values = var.sweep_values(var.LORA_SCALE, {**RELEASE, "lora_scale": center}, count)
            assert len(set(values)) == count and all(0.0 <= v <= 1.0 for v in values), (center, count, values)


def test_annealed_sweep_spans_the_current_value_within_the_steps():
    assert var.sweep_values(var.ANNEALED_STEPS, RELEASE, 4) == [5, 15, 25, 35]
    assert var.sweep_values(var.ANNEALED_STEPS, RELEASE, 8) == [5, 9, 14, 18, 22, 26, 31, 35]
    # At the top: annealed = steps (every step with the injector) sweeps below it, never above steps - 1.
    assert var.sweep_values(var.ANNEALED_STEPS, {**RELEASE, "annealed_steps": 50}, 3) == [19, 34, 49]
    # Few steps: a window with too few whole numbers widens to the whole range.
    few = {**RELEASE, "steps": 6, "annealed_steps": 2}
    assert var.sweep_values(var.ANNEALED_STEPS, few, 4) == [0, 1, 3, 4]
    assert var.sweep_values(var.ANNEALED_STEPS, few, 6) == [0, 1, 2, 3, 4, 5]
    for steps in (9, 20, 50, 200):
        for annealed in (0, steps // 3, steps):
            for count in range(2, 9):
                values = var.sweep_values(
                    var.ANNEALED_STEPS, {**RELEASE, "steps": steps, "annealed_steps": annealed}, count
                )
                assert len(set(values)) == count and all(0 <= v < steps for v in values), (steps, annealed, values)


def test_sweeps_that_cannot_be_made_are_refused_with_one_sentence():
    with pytest.raises(var.VariationError, match=r"Only 4 different annealed-step values fit with 4 steps"):
        var.sweep_values(var.ANNEALED_STEPS, {**RELEASE, "steps": 4}, 5)
    with pytest.raises(var.VariationError, match="raise Steps"):
        var.sweep_values(var.ANNEALED_STEPS, {**RELEASE, "steps": 1, "annealed_steps": 0}, 2)
    with pytest.raises(var.VariationError, match="between 2 and 8"):
        var.sweep_values(var.SEED, RELEASE, 9)


@pytest.mark.parametrize("varies", var.VARIES)
def test_each_variation_is_a_valid_job_that_differs_in_one_setting(tmp_path, varies):
    job = jobfile.read(preview_job(tmp_path))
    job["source"] = {"blender": "4.2.0"}
    planned = var.plan(job, 4, varies, set_id="set1", rng=random.Random(7))
    assert [v.index for v in planned] == [0, 1, 2, 3]
    for v in planned:
        jobfile.validate(v.job)  # the schema's own check: the free-form source takes the record
        assert v.job["sampling"][varies] == v.value
        others = {k: x for k, x in v.job["sampling"].items() if k != varies}
        assert others == {k: x for k, x in job["sampling"].items() if k != varies}
        assert v.job["source"]["blender"] == "4.2.0", "the job's own provenance is kept"
        assert v.job["source"]["variation"] == {
            "set": "set1",
            "index": v.index,
            "count": 4,
            "varies": varies,
            "value": v.value,
            "label": v.label,
        }
        assert var.of_job(v.job)["label"] == v.label
    assert len({v.label for v in planned}) == 4
    assert "variation" not in job["source"], "the original job is not changed"
    assert var.of_job(job) is None


@pytest.mark.parametrize("varies", var.VARIES)
def test_variations_of_a_draft_stay_draft_unless_they_vary_its_steps(tmp_path, varies):
    """A draft's injector steps, varied, are no longer draft (a draft job refuses other values):
    those takes run every other draft setting, marked custom; seed and LoRA sweeps stay draft."""
    job = jobfile.read(preview_job(tmp_path))
    job["sampling"] = {k: v for k, v in job["sampling"].items() if k not in jobfile.PRESET_FIELDS}
    job["sampling"]["quality"] = "draft"
    jobfile.validate(job)
    for v in var.plan(job, 3, varies, set_id="set1", rng=random.Random(7)):
        jobfile.validate(v.job)
        resolved = jobfile.resolve_sampling(v.job["sampling"])
        assert resolved[varies] == v.value and resolved["steps"] == 20
        assert resolved["step_cache"] == jobfile.DRAFT_STEP_CACHE
        assert resolved["quality"] == ("custom" if varies == var.ANNEALED_STEPS else "draft")
        if varies == var.ANNEALED_STEPS:
            assert v.value in range(20)  # swept around draft's 8 within its 20 steps


def test_labels_say_what_differs():
    assert var.label(var.SEED, 123) == "seed 123"
    assert var.label(var.LORA_SCALE, 0.3) == "LoRA 0.30"
    assert var.label(var.ANNEALED_STEPS, 15) == "annealed 15"


# --- where a set lands -----------------------------------------------------------------------


def landing(order, count, above=0, busy=()):
    """Place a set's takes in `order`; returns {index: channel} and which one plays."""
    placed: list[tuple[int, int]] = []
    playing = None
    for index in order:
        taken = {c for _, c in placed} | set(busy)
        channel = var.set_channel(placed, index, count, above, lambda c, taken=taken: c not in taken)
        if var.plays([i for i, _ in placed], index):
            playing = index
        placed.append((index, channel))
    return dict(placed), playing


def test_a_set_takes_consecutive_channels_in_its_own_order_whatever_order_it_finishes_in():
    in_order, playing = landing([0, 1, 2, 3], 4, above=2)
    assert in_order == {0: 3, 1: 4, 2: 5, 3: 6} and playing == 0
    shuffled, playing = landing([2, 0, 3, 1], 4, above=2)
    assert shuffled == in_order and playing == 0, "a server finishes takes in any order"


def test_a_set_skips_channels_used_over_the_shot():
    # Another strip on channel 4 over the shot's frames: the set starts above it, all four together.
    placed, _ = landing([0, 1, 2, 3], 4, above=2, busy={4})
    assert placed == {0: 5, 1: 6, 2: 7, 3: 8}


def test_a_place_taken_meanwhile_is_reported_so_the_caller_falls_back():
    assert var.set_channel([(0, 3)], 1, 4, 2, lambda c: c != 4) is None
    assert var.set_channel([], 0, 4, 126, lambda c: True) is None, "no room for four channels"


def test_the_first_take_of_a_set_plays():
    assert var.plays([], 2)
    assert var.plays([2, 3], 0)
    assert not var.plays([0], 1)
