"""Presets: the built-in prompts, trajectory templates and example shots, and the user folder."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from backend import checks, poses, presets, templates, timeplan
from backend.job import compose_prompt

LIBRARY = presets.load_library()
TEMPLATES = list(LIBRARY.trajectories.values())
ENTITY_IDS = [(t, k) for t in TEMPLATES for k in range(len(t.entities))]
FPS = 24.0
# Cameras the templates are laid out in front of: the example shots' own, one turned and
# pitched elsewhere in the scene, and one whose heading sits on the +-180 degree seam.
CAMERAS = {
    "shot": presets.ShotCamera(position=(0.0, -9.0, 1.6)).matrix,
    "turned": presets.ShotCamera(position=(3.0, 4.0, 2.5), heading_deg=130.0, pitch_deg=-20.0).matrix,
    "seam": poses.look_at_camera((5.0, 5.0, 1.6), (5.0 - 10.0, 5.0 + 0.01, 1.0)),
}


def ids(pairs):
    return [f"{t.name}-{t.entities[k].role}" for t, k in pairs]


def shot_frames(duration_s: float) -> tuple[int, int]:
    return 1, 1 + round(duration_s * FPS)


def keyed_poses(keys: list[presets.Keyframe], times: np.ndarray) -> np.ndarray:
    """World matrices at `times` from the keyframes, interpolated linearly between keys."""
    frames = [k.frame for k in keys]
    loc = np.stack([np.interp(times, frames, [k.location[i] for k in keys]) for i in range(3)], axis=-1)
    rz = np.interp(times, frames, [k.rotation_z for k in keys])
    return np.stack([poses.yaw_matrix(r, tuple(p)) for p, r in zip(loc, rz, strict=True)])


def write(folder: Path, name: str, data) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def walker(segments: list[dict], start=(0, 8), heading_deg=0) -> dict:
    return {"role": "walker", "start": list(start), "heading_deg": heading_deg, "segments": segments}


def builtin_demo() -> dict:
    return json.loads((presets.BUILTIN_DIR / "shots" / "demo.json").read_text(encoding="utf-8"))


# --- the built-in presets ---------------------------------------------------------------------


def test_every_builtin_file_loads_and_the_library_has_enough_of_each():
    files = sorted(presets.BUILTIN_DIR.glob("*.json")) + sorted((presets.BUILTIN_DIR / "shots").glob("*.json"))
    kinds = [presets.load_file(f)[0] for f in files]
    assert set(kinds) == set(presets.FORMATS)
    assert LIBRARY.problems == []
    assert len(LIBRARY.entities) >= 24
    assert len(LIBRARY.locations) >= 20
    assert len(LIBRARY.trajectories) >= 12
    assert len(LIBRARY.shots) >= 3 and "demo" in LIBRARY.shots
    for f in files:
        assert json.loads(f.read_text(encoding="utf-8"))["version"] == 1


def test_entity_prompts_are_15_to_24_ascii_words_describing_one_thing_of_each_kind():
    low, high = presets.PROMPT_WORDS
    for preset in LIBRARY.entities.values():
        words = preset.prompt.split()
        assert low <= len(words) <= high, (preset.name, len(words))
        assert preset.prompt.isascii() and preset.name.isascii(), preset.name
        # The trajectory says where it goes; a prompt that says it too fights the poses.
        assert not {"walking", "moving", "walks", "moves", "driving", "flying", "towards"} & set(words), preset.name
    categories = {p.category for p in LIBRARY.entities.values()}
    assert {"human", "animal", "robot", "vehicle", "abstract"} <= categories


def test_every_entity_preset_has_a_typical_height_that_tells_a_dog_from_a_horse():
    heights = {name: preset.height for name, preset in LIBRARY.entities.items()}
    raw = json.loads((presets.BUILTIN_DIR / "entities.json").read_text(encoding="utf-8"))["entities"]
    assert all("height" in e for e in raw), "each built-in entity says how tall it is"
    assert heights["Golden retriever"] < 1.0 < heights["Runner in red"] < heights["Chestnut horse"]
    assert heights["Chestnut horse"] < heights["Elephant"]
    assert all(0.3 <= h <= 5.0 for h in heights.values()), heights
    # A user preset without a height stands as tall as a person.
    _, (snail,) = presets.loads(
        json.dumps(
            {"format": "trajmaster-entities", "version": 1, "entities": [{"name": "S", "category": "x", "prompt": "a"}]}
        )
    )
    assert snail.height == presets.DEFAULT_ENTITY_HEIGHT == 1.7


def test_location_prompts_read_naturally_inside_the_global_prompt():
    for preset in LIBRARY.locations.values():
        assert preset.prompt.isascii() and preset.name.isascii(), preset.name
        # compose_prompt writes "... moving in the {location}", so no article of its own.
        assert preset.prompt.split()[0].lower() not in {"a", "an", "the"}, preset.name
        assert 4 <= len(preset.prompt.split()) <= 16, preset.name
    text = compose_prompt([LIBRARY.entities["Chestnut horse"].prompt], LIBRARY.locations["Desert dunes"].prompt)
    assert text.endswith("is moving in the desert with golden sand dunes under a clear blue sky")


def test_the_templates_named_in_the_issue_are_all_there():
    names = set(LIBRARY.trajectories)
    expected = {
        "Straight across", "Diagonal", "Turn 90 degrees", "U-turn", "Circle", "S-curve", "Zigzag",
        "Turn in place", "Approach", "Retreat", "Crossing paths", "Pass behind",
    }  # fmt: skip
    assert expected <= names
    counts = [len(t.entities) for t in TEMPLATES]
    assert 2 in counts and 3 in counts
    assert LIBRARY.trajectories["Turn in place"].entities[0].stationary


@pytest.mark.parametrize("camera", CAMERAS, ids=list(CAMERAS))
@pytest.mark.parametrize("template", TEMPLATES, ids=[t.name for t in TEMPLATES])
def test_templates_applied_as_keyframes_raise_no_pose_warnings(template, camera):
    """The keyframes, read back at the 13 pose slots of a shot at the default duration, stay
    3-13 m from the camera, in view and at most 3 m/s: checks.check_entity finds nothing."""
    start, end = shot_frames(template.default_duration_s)
    slots = np.asarray(timeplan.pose_times(start, end))
    cameras = np.broadcast_to(CAMERAS[camera], (len(slots), 4, 4))
    context = poses.camera_context(cameras, "rig")
    for k, entity in enumerate(template.entities):
        keys = presets.template_keyframes(template, k, FPS, start, end, CAMERAS[camera])
        pose = poses.model_poses(cameras, keyed_poses(keys, slots), "NEG_Y", "rig")
        found = checks.check_entity(k, entity.role, pose, context, "rig")
        assert found == [], [f.message for f in found]
    assert presets.template_findings(template, camera_matrix=CAMERAS[camera]) == []


@pytest.mark.parametrize(("template", "k"), ENTITY_IDS, ids=ids(ENTITY_IDS))
def test_templates_keep_a_margin_inside_the_comfortable_range(template, k):
    """Stricter than the checks: 4-12.5 m away and within 15 degrees of the view's centre (the
    frame's edge is at 18.75), so an entity's body, not just its pivot, stays in the picture."""
    times = np.linspace(0.0, template.default_duration_s, 241)
    positions, _ = presets.sample_template(template, k, template.default_duration_s, times)
    distance = np.hypot(positions[:, 0], positions[:, 1])
    bearing = np.degrees(np.arctan2(np.abs(positions[:, 0]), positions[:, 1]))
    assert 4.0 <= distance.min() and distance.max() <= 12.5, (distance.min(), distance.max())
    assert bearing.max() <= 15.0


@pytest.mark.parametrize(("template", "k"), ENTITY_IDS, ids=ids(ENTITY_IDS))
def test_speeds_are_in_the_trained_range_unless_the_template_says_stationary(template, k):
    duration = template.default_duration_s
    times = np.linspace(0.0, duration, 241)
    positions, _ = presets.sample_template(template, k, duration, times)
    speed = np.linalg.norm(np.diff(positions[:, :2], axis=0), axis=1) / np.diff(times)
    declared = presets.template_speeds(template)[k]
    if template.entities[k].stationary:
        assert speed.max() < 1e-9 and declared == 0.0
    else:
        assert 1.0 <= speed.min() and speed.max() <= 3.0, (speed.min(), speed.max())
        assert speed.max() == pytest.approx(declared, rel=1e-3)


@pytest.mark.parametrize(("template", "k"), ENTITY_IDS, ids=ids(ENTITY_IDS))
def test_heading_follows_the_path_tangent(template, k):
    entity = template.entities[k]
    duration = template.default_duration_s
    times = np.linspace(0.0, duration, 601)
    positions, yaws = presets.sample_template(template, k, duration, times)
    if entity.stationary:
        assert np.allclose(positions, positions[0])
        assert abs(yaws[-1] - yaws[0]) > math.radians(90)  # it turns on the spot
        return
    step = np.diff(positions[:, :2], axis=0)
    moving = np.degrees(np.arctan2(step[:, 0], step[:, 1]))  # headings, clockwise from +y
    facing = np.degrees((yaws[:-1] + yaws[1:]) / 2) + (180.0 if entity.facing == "backward" else 0.0)
    off = (moving - facing + 180.0) % 360.0 - 180.0
    assert np.abs(off).max() < 1.0


@pytest.mark.parametrize("camera", CAMERAS, ids=list(CAMERAS))
@pytest.mark.parametrize(("template", "k"), ENTITY_IDS, ids=ids(ENTITY_IDS))
def test_keyframes_face_the_way_the_empty_moves_and_never_flip(template, k, camera):
    """In world space, with Blender's -Y facing convention and with +X: the facing axis of the
    keyed empty points along its motion, and rotation Z changes smoothly from key to key."""
    start, end = shot_frames(template.default_duration_s)
    for facing in ("NEG_Y", "POS_X"):
        keys = presets.template_keyframes(template, k, FPS, start, end, CAMERAS[camera], facing)
        frames = [key.frame for key in keys]
        assert frames[0] < start and frames[-1] > end and start in frames and end in frames
        assert frames == sorted(set(frames))
        rz = np.array([key.rotation_z for key in keys])
        assert -math.pi < rz[0] <= math.pi
        assert np.abs(np.diff(rz)).max() < math.radians(templates.KEY_MAX_TURN_DEG) * 1.5
        locations = np.array([key.location for key in keys])
        assert np.allclose(locations[:, 2], 0.0)
        if template.entities[k].stationary:
            continue
        forward = poses.entity_frame(np.stack([poses.yaw_matrix(r, (0, 0, 0)) for r in rz]), facing)[:, 2]
        motion = np.diff(locations, axis=0)
        motion /= np.linalg.norm(motion, axis=1, keepdims=True)
        mid = (forward[:-1] + forward[1:]) / 2
        mid /= np.linalg.norm(mid, axis=1, keepdims=True)
        sign = -1.0 if template.entities[k].facing == "backward" else 1.0
        assert np.min(np.sum(motion * mid, axis=1) * sign) > math.cos(math.radians(8.0))


def test_keyframes_hit_the_template_at_both_ends_of_the_shot_and_stretch_with_it():
    template = LIBRARY.trajectories["Turn 90 degrees"]
    camera = CAMERAS["turned"]
    for start, end in ((1, 73), (10, 154)):  # 3 s and 6 s at 24 fps
        keys = {key.frame: key for key in presets.template_keyframes(template, 0, FPS, start, end, camera)}
        duration = (end - start) / FPS
        positions, yaws = presets.sample_template(template, 0, duration, [0.0, duration])
        world, rz = presets.to_world(positions, yaws, camera)
        assert np.allclose(keys[start].location, world[0]) and np.allclose(keys[end].location, world[1])
        assert math.isclose(keys[start].rotation_z, rz[0]) and math.isclose(keys[end].rotation_z, rz[1])
    # Twice as long, half the speed: the same path.
    assert presets.template_speeds(template, 6.0)[0] == pytest.approx(presets.template_speeds(template, 3.0)[0] / 2)


def test_the_template_frame_is_the_camera_s_ground_heading():
    """x right, y forward from the camera along its heading, whatever its height, pitch or roll."""
    camera = presets.ShotCamera(position=(2.0, 1.0, 5.0), heading_deg=90.0, pitch_deg=-30.0).matrix
    world, rz = presets.to_world(np.array([[0.0, 8.0, 0.0], [1.0, 8.0, 0.0]]), np.array([0.0, math.pi / 2]), camera)
    assert np.allclose(world, [[10.0, 1.0, 0.0], [10.0, 0.0, 0.0]])  # looking along +X, right is -Y
    facing = poses.entity_frame(np.stack([poses.yaw_matrix(r, (0, 0, 0)) for r in rz]), "NEG_Y")[:, 2]
    assert np.allclose(facing, [[1.0, 0.0, 0.0], [0.0, -1.0, 0.0]], atol=1e-12)  # away, then to the right


def test_shot_cameras_look_along_their_heading_with_the_given_pitch():
    cam = presets.ShotCamera(position=(0.0, -9.0, 1.6))
    slope = poses.RIG_FORWARD_Z / math.sqrt(1 - poses.RIG_FORWARD_Z**2)
    assert np.allclose(cam.matrix, poses.look_at_camera((0, -9, 1.6), (0, 1, 1.6 + 10 * slope)), atol=1e-9)
    assert math.isclose(cam.rotation_euler[0], math.radians(90 + poses.RIG_PITCH_DEG))
    right = presets.ShotCamera(heading_deg=90.0, pitch_deg=0.0).matrix
    assert np.allclose(-right[:3, 2], [1.0, 0.0, 0.0], atol=1e-12)


# --- the path language ------------------------------------------------------------------------


def one_entity(*segments, heading=0.0, **extra) -> presets.Template:
    data = {
        "format": "trajmaster-trajectories",
        "version": 1,
        "templates": [
            {
                "name": "T",
                "default_duration_s": 2.0,
                "entities": [
                    {"role": "e", "start": [0.0, 5.0], "heading_deg": heading, "segments": list(segments), **extra}
                ],
            }
        ],
    }
    kind, found = presets.loads(json.dumps(data))
    assert kind == "trajmaster-trajectories"
    return found[0]


def test_arcs_turn_right_for_positive_angles_and_lines_can_aim_at_points():
    right = one_entity({"type": "arc", "radius": 2.0, "turn_deg": 90})
    p, yaw = presets.sample_template(right, 0, 2.0, [0.0, 1.0, 2.0])
    assert np.allclose(p[-1], [2.0, 7.0, 0.0]) and math.isclose(math.degrees(yaw[-1]), 90.0)
    assert np.allclose(p[1, :2], [2 - math.sqrt(2), 5 + math.sqrt(2)])  # halfway round the arc
    left = one_entity({"type": "arc", "radius": 2.0, "turn_deg": -90})
    assert np.allclose(presets.sample_template(left, 0, 2.0, [2.0])[0], [[-2.0, 7.0, 0.0]])
    aimed = one_entity({"type": "line", "to": [3.0, 9.0]}, {"type": "line", "length": 5.0})
    p, yaw = presets.sample_template(aimed, 0, 2.0, [1.0, 2.0])
    assert np.allclose(p[:, :2], [[3.0, 9.0], [6.0, 13.0]]) and np.allclose(yaw, math.atan2(3, 4))


def test_time_is_shared_by_length_unless_a_segment_gives_its_share():
    template = one_entity(
        {"type": "line", "length": 2.0},
        {"type": "spin", "turn_deg": 180, "share": 2.0},
        {"type": "wait", "share": 1.0},
        {"type": "line", "length": 1.0},
    )
    p, yaw = presets.sample_template(template, 0, 6.0, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 9.0])
    assert np.allclose(p[:, 1], [6.0, 7.0, 7.0, 7.0, 7.0, 6.0, 6.0])  # walks back after the spin
    assert np.allclose(np.degrees(yaw), [0.0, 0.0, 90.0, 180.0, 180.0, 180.0, 180.0])


def test_walking_backwards_and_a_fixed_facing():
    back = one_entity({"type": "line", "length": 3.0}, facing="backward")
    assert np.allclose(np.degrees(presets.sample_template(back, 0, 2.0, [1.0])[1]), 180.0)
    fixed = one_entity({"type": "arc", "radius": 2.0, "turn_deg": 90}, facing="fixed", facing_deg=-90.0)
    assert np.allclose(np.degrees(presets.sample_template(fixed, 0, 2.0, [0.0, 1.0, 2.0])[1]), -90.0)


def test_a_template_asked_for_an_entity_it_lacks_says_so():
    template = LIBRARY.trajectories["Circle"]
    with pytest.raises(presets.TemplateError, match="has 1 entity; entity 1 does not exist"):
        presets.sample_template(template, 1, 3.0, [0.0])
    with pytest.raises(presets.TemplateError, match="must come after"):
        presets.template_keyframes(template, 0, FPS, 10, 10, CAMERAS["shot"])


# --- user presets -----------------------------------------------------------------------------


def test_user_presets_override_by_name_and_add_new_ones(tmp_path):
    write(
        tmp_path,
        "my_entities.json",
        {
            "format": "trajmaster-entities",
            "version": 1,
            "entities": [
                {"name": "Chestnut horse", "category": "animal", "prompt": "a black horse with a silver saddle"},
                {"name": "Snail", "category": "animal", "prompt": "a giant snail with a glossy spiral shell"},
            ],
        },
    )
    builtin = LIBRARY.trajectories["Approach"]
    write(
        tmp_path,
        "paths.json",
        {
            "format": "trajmaster-trajectories",
            "version": 1,
            "templates": [
                {
                    "name": "Approach",
                    "default_duration_s": 4.0,
                    "entities": [walker([{"type": "line", "length": 5}], start=[0, 11], heading_deg=180)],
                }
            ],
        },
    )  # fmt: skip
    write(tmp_path, "shots/demo.json", {**builtin_demo(), "location": "Glacier", "label": "My demo"})
    library = presets.load_library(tmp_path)
    assert library.problems == []
    assert library.entities["Chestnut horse"].prompt == "a black horse with a silver saddle"
    assert library.entities["Snail"].source == str(tmp_path / "my_entities.json")
    assert len(library.entities) == len(LIBRARY.entities) + 1
    assert library.trajectories["Approach"].default_duration_s == 4.0 != builtin.default_duration_s
    assert library.shots["demo"].label == "My demo" and library.shots["demo"].location == "Glacier"
    assert [e.label for e in library.shots["demo"].entities] == ["Horse", "Robot"]
    kind, (bare,) = presets.loads(
        json.dumps({**builtin_demo(), "entities": [{"entity": "Camel", "trajectory": "Circle"}]})
    )
    assert kind == "trajmaster-shot" and bare.entities[0].label == "Camel" and bare.entities[0].template_entity == 0
    assert LIBRARY.entities["Chestnut horse"].prompt != library.entities["Chestnut horse"].prompt


BROKEN = {
    "bad_json.json": ('{"format": "trajmaster-entities", "version": 1, "entities": [', "is not valid JSON (line 1"),
    "no_format.json": ({"version": 1, "entities": []}, "format is missing"),
    "odd_format.json": ({"format": "trajmaster-cats", "version": 1}, "format must be one of trajmaster-entities"),
    "future.json": ({"format": "trajmaster-locations", "version": 7, "locations": []}, "made for a newer TrajMaster"),
    "no_prompt.json": (
        {"format": "trajmaster-entities", "version": 1, "entities": [{"name": "X", "category": "animal"}]},
        "entities[0].prompt is missing",
    ),
    "bad_height.json": (
        {
            "format": "trajmaster-entities",
            "version": 1,
            "entities": [{"name": "X", "category": "animal", "height": 0, "prompt": "a grey mouse"}],
        },
        "entities[0].height must be between 0.05 and 100, got 0",
    ),
    "bad_radius.json": (
        {
            "format": "trajmaster-trajectories",
            "version": 1,
            "templates": [
                {
                    "name": "Bad",
                    "default_duration_s": 3,
                    "entities": [walker([{"type": "arc", "radius": -1, "turn_deg": 90}])],
                }
            ],
        },
        "templates[0].entities[0].segments[0].radius must be greater than 0, got -1",
    ),
    "still.json": (
        {
            "format": "trajmaster-trajectories",
            "version": 1,
            "templates": [
                {
                    "name": "Still",
                    "default_duration_s": 3,
                    "entities": [walker([{"type": "wait", "share": 1}])],
                }
            ],
        },
        'templates[0].entities[0].stationary is missing: this entity does not move, so say "stationary": true',
    ),
    "typo.json": (
        {"format": "trajmaster-locations", "version": 1, "locations": [{"name": "X", "promt": "a field"}]},
        "locations[0].promt is not a known field",
    ),
    "huge.json": (
        {**builtin_demo(), "name": "huge", "fps": 1e308},
        "fps must be between -1e+06 and 1e+06, got 1e+308",
    ),
    "nan.json": ('{"format": "trajmaster-shot", "version": 1, "fps": NaN}', "NaN is not a number"),
    "list.json": ("[1, 2, 3]", "the file must be a JSON object"),
    "twice.json": (
        {
            "format": "trajmaster-locations",
            "version": 1,
            "locations": [{"name": "X", "prompt": "a field"}, {"name": "X", "prompt": "a road"}],
        },
        "names 'X' twice",
    ),
}  # fmt: skip


def test_broken_user_files_are_skipped_with_the_file_and_the_field_named(tmp_path):
    for name, (data, _) in BROKEN.items():
        write(tmp_path, name, data)
    write(tmp_path, "shots/orphan.json", {**builtin_demo(), "name": "orphan", "location": "Atlantis"})
    fine = [{"name": "Field", "prompt": "wide field of barley"}]
    write(tmp_path, "fine.json", {"format": "trajmaster-locations", "version": 1, "locations": fine})
    library = presets.load_library(tmp_path)
    assert library.locations["Field"].prompt == "wide field of barley"  # the good file still counts
    assert len(library.entities) == len(LIBRARY.entities) and "Bad" not in library.trajectories
    assert "orphan" not in library.shots and "demo" in library.shots
    assert len(library.problems) == len(BROKEN) + 1
    for name, (_, reason) in BROKEN.items():
        (problem,) = [p for p in library.problems if str(tmp_path / name) in p]
        assert reason in problem, problem
        assert problem.endswith("fix it and reload the presets.")
    (orphan,) = [p for p in library.problems if "orphan" in p]
    assert "names the location 'Atlantis', which is not a preset" in orphan


def test_a_missing_user_folder_is_no_problem_and_a_broken_builtin_folder_is_an_error(tmp_path):
    assert presets.load_library(tmp_path / "nowhere").problems == []
    write(tmp_path, "entities.json", {"format": "trajmaster-entities", "version": 1, "entities": [{"name": "X"}]})
    with pytest.raises(presets.PresetError, match=r"entities\.json: entities\[0\]\.category is missing"):
        presets.load_library(builtin_folder=tmp_path)


# --- the example shots ------------------------------------------------------------------------


@pytest.mark.parametrize("shot", list(LIBRARY.shots.values()), ids=list(LIBRARY.shots))
def test_example_shots_are_in_distribution_and_keep_their_entities_apart(shot):
    """Set up as the add-on would (the shot's camera, frames and keyframes), every example shot
    passes all checks, and its entities never come within 1 m of each other."""
    assert 1 <= len(shot.entities) <= 3
    assert math.isclose(shot.duration_s, 3.0)  # about the 2.8 s of motion the model was trained on
    slots = np.asarray(timeplan.pose_times(shot.frame_start, shot.frame_end))
    cameras = np.broadcast_to(shot.camera.matrix, (len(slots), 4, 4))
    names, entity_poses, grounds = [], [], []
    for e in shot.entities:
        template = LIBRARY.trajectories[e.trajectory]
        keys = presets.template_keyframes(
            template, e.template_entity, shot.fps, shot.frame_start, shot.frame_end, shot.camera.matrix
        )
        matrices = keyed_poses(keys, slots)
        names.append(e.label)
        entity_poses.append(poses.model_poses(cameras, matrices, "NEG_Y", "rig"))
        grounds.append(matrices[:, :2, 3])
        assert LIBRARY.entities[e.entity].prompt
    context = poses.camera_context(cameras, "rig")
    assert checks.check_shot(names, entity_poses, context, "rig") == []
    assert checks.check_camera(np.asarray(cameras)) == []
    for i in range(len(grounds)):
        for j in range(i + 1, len(grounds)):
            assert np.linalg.norm(grounds[i] - grounds[j], axis=1).min() > 1.0
    assert LIBRARY.locations[shot.location].prompt


def test_the_demo_shows_two_entities_that_never_overlap_in_the_picture():
    shot = LIBRARY.shots["demo"]
    assert len(shot.entities) == 2
    slots = np.asarray(timeplan.pose_times(shot.frame_start, shot.frame_end))
    cameras = np.broadcast_to(shot.camera.matrix, (len(slots), 4, 4))
    context = poses.camera_context(cameras, "rig")
    columns = []
    for e in shot.entities:
        template = LIBRARY.trajectories[e.trajectory]
        positions, yaws = presets.sample_template(
            template, e.template_entity, shot.duration_s, (slots - shot.frame_start) / shot.fps
        )
        world, rz = presets.to_world(positions, yaws, shot.camera.matrix)
        matrices = np.stack([poses.yaw_matrix(r, tuple(p)) for p, r in zip(world, rz, strict=True)])
        pose = poses.model_poses(cameras, matrices, "NEG_Y", "rig")
        columns.append(poses.project(poses.apparent_position(pose, context, "rig"))[:, 0])
    assert np.abs(columns[0] - columns[1]).min() > 150  # pixels of 720
