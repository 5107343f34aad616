"""The job file v1: what it holds, and a clear "field.path: what is wrong" for every bad input."""

import copy
import json

import numpy as np
import pytest
from shots import make_job

from backend import job as jobfile


def problems(doc) -> list[str]:
    with pytest.raises(jobfile.JobError) as err:
        jobfile.validate(doc)
    return err.value.problems


def test_a_built_job_holds_the_contract_fields_with_release_defaults():
    job = make_job([((-2, 0), (2, 0)), ((2, 2), (-2, 2))])
    assert job["format"] == "trajmaster-job" and job["version"] == 1
    assert set(job["shot"]) >= {"scene_name", "frame_start", "frame_end", "scene_fps", "pose_frames"}
    assert len(job["shot"]["pose_frames"]) == 13
    assert job["sampling"] == {
        "seed": 42,
        "steps": 50,
        "guidance_scale": 6.0,
        "lora_scale": 0.6,
        "annealed_steps": 20,
        "height": 480,
        "width": 720,
        "frames": 49,
    }
    assert [len(e["poses"]) for e in job["entities"]] == [13, 13]
    assert all(len(row) == 12 for e in job["entities"] for row in e["poses"])
    assert job["prompt"]["text"].endswith("are moving in the sunlit desert with golden sand dunes")
    jobfile.validate(job)


def test_prompt_composition_follows_the_release():
    assert jobfile.compose_prompt(["A horse."], "desert") == "A horse is moving in the desert"
    assert (
        jobfile.compose_prompt(["A horse", "a robot", "a fire spirit"], "a forest.")
        == "A horse and a robot and a fire spirit are moving in the a forest"
    )


def test_published_schema_is_the_one_validated_against():
    from pathlib import Path

    published = Path(__file__).parent.parent / "docs" / "job.schema.json"
    assert json.loads(published.read_text()) == json.loads(jobfile.SCHEMA_PATH.read_text())


def mutate(path, value=None, delete=False):
    job = make_job()
    node = job
    for key in path[:-1]:
        node = node[key]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return job


@pytest.mark.parametrize(
    ("path", "value", "delete", "expected"),
    [
        (("shot", "scene_fps"), None, True, "shot.scene_fps: missing (required)"),
        (("sampling", "seed"), None, True, "sampling.seed: missing (required)"),
        (("entities", 0, "colour"), [1, 0, 0], False, "entities[0]: unknown field 'colour'"),
        (("entities", 0, "height"), 0, False, "entities[0].height: 0 is out of range"),
        (("entities", 0, "height"), "tall", False, "entities[0].height: must be a number, got text"),
        (("shot", "frame_start"), "1", False, "shot.frame_start: must be an integer, got text"),
        (("sampling", "steps"), 2.5, False, "sampling.steps: must be an integer, got a number"),
        (("sampling", "guidance_scale"), 0.5, False, "sampling.guidance_scale: 0.5 is out of range"),
        (("sampling", "lora_scale"), 1.5, False, "sampling.lora_scale: 1.5 is out of range; must be at most 1"),
        (("sampling", "height"), 470, False, "sampling.height: 470 must be a multiple of 16"),
        (("sampling", "frames"), 25, False, "sampling.frames: must be 49"),
        (("pose_mapping",), "unreal", False, 'pose_mapping: must be one of "rig", "exact"'),
        (("engine",), "sora", False, 'engine: must be one of "preview", "cogvideox"'),
        (("entities", 0, "prompt"), "", False, "entities[0].prompt: must not be empty"),
        (("entities", 0, "prompt"), "   ", False, "entities[0].prompt: must not be blank"),
        (("entities", 0, "prompt"), "word " * 200, False, "entities[0].prompt: too long (1000 characters"),
        (("entities", 0, "prompt"), "Un cheval à la crinière noire", False, "use plain English text"),
        (("prompt", "location"), "", False, "prompt.location: must not be empty"),
        (("shot", "frame_end"), 1, False, "shot.frame_end: 1 must be after shot.frame_start (1)"),
        (("shot", "pose_frames"), [1.0] * 12, False, "shot.pose_frames: has 12 items, needs at least 13"),
        (("entities", 0, "poses", 3), [0.0] * 11, False, "entities[0].poses[3]: has 11 items"),
        (("entities",), [], False, "entities: 0 entities; a shot has 1 to 3"),
        (("sampling", "annealed_steps"), 60, False, "sampling.annealed_steps: 60 is more than sampling.steps"),
    ],
)
def test_each_bad_field_is_named_with_what_is_wrong(path, value, delete, expected):
    found = problems(mutate(path, value, delete))
    assert any(expected in p for p in found), found


def test_an_entity_height_is_optional_and_old_jobs_stay_valid():
    job = make_job([((-2, 0), (2, 0)), ((2, 2), (-2, 2))])
    jobfile.validate(job)  # no height: a job written before the field existed
    job["entities"][0]["height"] = 0.6
    job["entities"][1]["height"] = 3
    jobfile.validate(jobfile.parse(jobfile.dumps(job)))
    assert job["version"] == 1


def test_four_entities_are_refused():
    job = make_job([((-2, 0), (2, 0))] * 3)
    job["entities"].append(copy.deepcopy(job["entities"][0]))
    for k, e in enumerate(job["entities"]):
        e["name"] = f"E{k}"
    assert problems(job) == ["entities: 4 entities; a shot has 1 to 3"]


def test_duplicate_entity_names_are_refused():
    job = make_job([((-2, 0), (2, 0)), ((2, 2), (-2, 2))])
    job["entities"][1]["name"] = job["entities"][0]["name"]
    assert "used twice" in problems(job)[0]


@pytest.mark.parametrize(
    ("rotation", "words"),
    [
        (np.zeros((3, 3)), "is singular"),
        (np.diag([2.0, 1.0, 1.0]), "is not a rotation"),
        (np.array([[1, 0.3, 0], [0, 1, 0], [0, 0, 1.0]]), "is not a rotation"),
        (np.diag([-1.0, 1.0, 1.0]), "is mirrored"),
    ],
)
def test_poses_must_be_rigid(rotation, words):
    job = make_job()
    pose = job["entities"][0]["poses"][5]
    pose[:9] = rotation.T.reshape(9).tolist()
    found = problems(job)
    assert found[0].startswith("entities[0].poses[5]: its 3x3 rotation part " + words)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_refused_with_their_path(constant):
    text = jobfile.dumps(make_job()).replace('"scene_fps": 24.0', f'"scene_fps": {constant}', 1)
    with pytest.raises(jobfile.JobError) as err:
        jobfile.parse(text)
    assert err.value.problems == [f"shot.scene_fps: {constant} is not a number; use a finite value"]


def test_a_made_up_key_in_a_path_is_quoted_so_the_message_stays_one_line():
    # Found by tests/test_properties.py: a key holding a newline broke the one-sentence message.
    job = make_job()
    job["source"] = {"a\nb": {"x": float("inf")}, "c" * 500: float("nan")}
    with pytest.raises(jobfile.JobError) as refused:
        jobfile.validate(job)
    message = str(refused.value)
    assert "\n" not in message and len(message) < 300, message
    assert message.startswith("source['a\\nb'].x: inf is not a number")


def test_newer_version_asks_for_an_update():
    job = make_job()
    job["version"] = 2
    assert problems(job) == [
        "version: this job is version 2, but this backend reads version 1; update TrajMaster Previz to run it"
    ]


def test_not_a_job_at_all():
    assert "not a TrajMaster job" in problems({"hello": 1})[0]
    with pytest.raises(jobfile.JobError, match="not valid JSON at line 1"):
        jobfile.parse("{oops")
    with pytest.raises(jobfile.JobError, match="must be a JSON object"):
        jobfile.parse("[1, 2]")


def test_every_problem_is_listed_not_just_the_first():
    job = make_job()
    del job["sampling"]["seed"]
    job["engine"] = "sora"
    with pytest.raises(jobfile.JobError) as err:
        jobfile.validate(job)
    assert len(err.value.problems) == 2
    assert "(and 1 more problem)" in str(err.value)


def test_write_is_atomic_and_never_overwrites(tmp_path):
    job = make_job()
    target = tmp_path / "shot.json"
    jobfile.write(job, target)
    assert jobfile.read(target) == job
    with pytest.raises(FileExistsError):
        jobfile.write(job, target)
    jobfile.write(job, target, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["shot.json"]  # no temporary files left behind


def test_an_invalid_job_is_not_written(tmp_path):
    job = make_job()
    job["engine"] = "sora"
    with pytest.raises(jobfile.JobError):
        jobfile.write(job, tmp_path / "bad.json")
    assert list(tmp_path.iterdir()) == []


# --- values that parse but that no engine can use -------------------------------------------


def text_with(old: str, new: str) -> str:
    text = jobfile.dumps(make_job())
    assert old in text
    return text.replace(old, new, 1)


def refused(text: str) -> list[str]:
    with pytest.raises(jobfile.JobError) as err:
        jobfile.validate(jobfile.parse(text))
    return err.value.problems


@pytest.mark.parametrize(
    ("old", "new", "words"),
    [
        ('"scene_fps": 24.0', '"scene_fps": 1e309', "shot.scene_fps: 1e309 is too large to be a number"),
        ('"frame_end": 73', '"frame_end": 1' + "0" * 400, "shot.frame_end: 100000000000… (401 characters)"),
        ('"frame_end": 73', '"frame_end": 1' + "0" * 5000, "is too large"),
        ('"frame_end": 73', '"frame_end": 100000000', "shot.frame_end: 100000000 is out of range"),
        ('"version": 1', '"version": 2.0', "version: must be an integer, got a number"),
        ('"version": 1', '"version": 1.0', "version: must be an integer, got a number"),
        ('"steps": 50', '"steps": 50.0', "sampling.steps: must be an integer"),
    ],
    ids=["inf-float", "400-digits", "5000-digits", "frame-range", "version-2.0", "version-1.0", "float-steps"],
)
def test_numbers_no_engine_can_use_are_refused(old, new, words):
    assert any(words in p for p in refused(text_with(old, new))), refused(text_with(old, new))


def test_deep_nesting_is_refused_without_a_crash():
    assert refused("[" * 100000 + "]" * 100000) == ["nested more than 32 levels deep; this is not a job file"]
    job = make_job()
    deep: list = []
    for _ in range(200):
        deep = [deep]
    job["source"] = {"notes": deep}
    assert "nested more than 32 levels" in refused(json.dumps(job))[0]


def test_a_degenerate_camera_up_vector_is_refused():
    job = make_job()
    job["camera"]["context"][4][:3] = [0.0, 0.0, 0.0]
    job["camera"]["video_context"][7][:3] = [0.0, 2.0, 0.0]
    assert problems(job) == [
        "camera.context[4]: the up vector has length 0; it must be a unit vector (world up in the camera frame, "
        "see docs/job-file.md)",
        "camera.video_context[7]: the up vector has length 2; it must be a unit vector (world up in the camera "
        "frame, see docs/job-file.md)",
    ]


def test_translations_beyond_ten_kilometres_are_refused():
    job = make_job()
    job["entities"][0]["poses"][3][9] = 1e308
    job["camera"]["context"][0][3] = -20000.0
    assert problems(job) == [
        "camera.context[0][3]: -20000.0 is out of range; must be at least -10000",
        "entities[0].poses[3][9]: 1e+308 is out of range; must be at most 10000",
    ]


def test_error_messages_repeat_at_most_a_little_of_a_wrong_value():
    job = make_job()
    job["engine"] = "x" * 1_000_000
    job["x" * 10_000] = 1
    messages = problems(job)
    assert all(len(m) < 300 for m in messages), [len(m) for m in messages]


def test_a_job_built_in_code_with_an_infinity_is_refused():
    job = make_job()
    job["shot"]["scene_fps"] = float("inf")
    assert problems(job) == ["shot.scene_fps: inf is not a number; use a finite value"]


def _sampled(**fields):
    job = make_job()
    job["sampling"].update(fields)
    for field in [k for k, v in fields.items() if v is None]:
        del job["sampling"][field]
    return job


def test_a_quality_preset_fills_the_steps_it_owns():
    draft = _sampled(quality="draft", steps=None, annealed_steps=None)
    jobfile.validate(draft)
    resolved = jobfile.resolve_sampling(draft["sampling"])
    assert (resolved["steps"], resolved["annealed_steps"]) == (20, 8)
    assert resolved["step_cache"] == jobfile.DRAFT_STEP_CACHE
    final = _sampled(quality="final", steps=None, annealed_steps=None)
    jobfile.validate(final)
    resolved = jobfile.resolve_sampling(final["sampling"])
    assert (resolved["steps"], resolved["annealed_steps"], resolved.get("step_cache")) == (50, 20, None)
    # Given with the preset's own values is fine too (what the add-on writes).
    jobfile.validate(_sampled(quality="draft", steps=20, annealed_steps=8, step_cache=jobfile.DRAFT_STEP_CACHE))


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"quality": "draft", "steps": 50, "annealed_steps": None},
            'sampling.steps: 50 contradicts sampling.quality "draft" (20 steps, 9 with the injector, step cache '
            '0.05); remove the field, or set sampling.quality to "custom" to choose it yourself',
        ),
        (
            {"quality": "final", "annealed_steps": 8},
            'sampling.annealed_steps: 8 contradicts sampling.quality "final" (50 steps, 21 with the injector, no '
            'step cache); remove the field, or set sampling.quality to "custom" to choose it yourself',
        ),
        (
            {"quality": "final", "step_cache": 0.1},
            'sampling.step_cache: the "final" quality uses no step cache; remove the field, or set '
            'sampling.quality to "custom" to choose it yourself',
        ),
        ({"quality": "fast"}, 'sampling.quality: must be one of "final", "draft", "custom", got "fast"'),
        ({"quality": "custom", "steps": None}, "sampling.steps: missing (required)"),
        ({"step_cache": 1.5}, "sampling.step_cache: 1.5 is out of range; must be at most 1"),
    ],
)
def test_a_preset_contradicted_or_a_bad_quality_is_one_clear_sentence(fields, expected):
    with pytest.raises(jobfile.JobError) as caught:
        jobfile.validate(_sampled(**fields))
    assert caught.value.problems == [expected]


def test_jobs_without_a_quality_mean_what_they_meant():
    """Every job from before presets runs its fields as written; its quality is what they amount to."""
    old = make_job()
    assert "quality" not in old["sampling"]
    jobfile.validate(old)
    assert jobfile.quality_of(old["sampling"]) == "final"
    resolved = jobfile.resolve_sampling(old["sampling"])
    assert {k: v for k, v in resolved.items() if k != "quality"} == old["sampling"]
    assert jobfile.quality_of(_sampled(steps=30)["sampling"]) == "custom"
    custom = _sampled(quality="custom", steps=12, annealed_steps=3, step_cache=0.1)
    jobfile.validate(custom)
    assert jobfile.resolve_sampling(custom["sampling"])["steps"] == 12
