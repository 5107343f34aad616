"""Presets inside Blender: prompt pickers, templates keyed onto empties, example shots, the user folder."""

from __future__ import annotations

import importlib
import json
import math
from types import SimpleNamespace

import bpy
import numpy as np
import pytest
import scenes
from conftest import MODULE
from mathutils import Matrix

from backend import poses, presets, templates

BUILTIN = presets.load_library()
TEMPLATE_NAMES = sorted(BUILTIN.trajectories)
SHOT_NAMES = sorted(BUILTIN.shots)
# A camera away from the origin, turned and pitched: the template must follow it, not the world axes.
CAMERA = presets.ShotCamera(position=(3.0, 4.0, 2.5), heading_deg=130.0, pitch_deg=-20.0).matrix
# The empty's local axis each Facing choice points along the entity's heading.
AXES = {"POS_X": (1, 0, 0), "NEG_X": (-1, 0, 0), "POS_Y": (0, 1, 0), "NEG_Y": (0, -1, 0)}


@pytest.fixture
def ui(addon):
    return importlib.import_module(f"{MODULE}.addon.presets_ui")


def shot_camera(scene) -> bpy.types.Object:
    cam = scenes.link(scene, bpy.data.objects.new("ShotCam", bpy.data.cameras.new("ShotCam")))
    cam.matrix_world = Matrix(CAMERA.tolist())
    scene.camera = cam
    return cam


def one_entity(scene, name="Walker", prompt=""):
    item = scene.trajmaster.entities.add()
    item.object = scenes.empty(scene, name)
    item.prompt = prompt
    return item


def wrap(angles):
    return (np.asarray(angles) + math.pi) % (2 * math.pi) - math.pi


# --- templates as keyframes ---------------------------------------------------------------------


@pytest.mark.parametrize(("fps", "seconds"), [(24, 3.0), (30, 6.0)])
@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_keyed_template_follows_the_template_within_1cm_and_2_degrees(blend, ui, name, fps, seconds):
    """Blender's own Bezier interpolation between the keys must reproduce the template's path."""
    scene = bpy.context.scene
    scene.render.fps = fps
    shot_camera(scene)
    settings = scene.trajmaster
    start, end = 11, 11 + round(seconds * fps)
    settings.frame_start, settings.frame_end = start, end
    template = BUILTIN.trajectories[name]
    # One empty already in the shot (facing +X, to check the axis is honoured); the rest are added.
    one_entity(scene).forward_axis = "POS_X"
    scene.frame_set(1)

    assert bpy.ops.trajmaster.apply_template(template=name) == {"FINISHED"}

    assert len(settings.entities) == len(template.entities)
    times = np.arange(start, end + 1e-9, 0.25)
    objects = [e.object for e in settings.entities]
    matrices = scenes.matrices_at(scene, objects, times)
    for k, item in enumerate(settings.entities):
        facing = item.forward_axis
        positions, yaws = presets.sample_template(template, k, seconds, (times - start) / fps)
        world, rz = presets.to_world(positions, yaws, CAMERA, facing)
        got = matrices[k]
        error_m = np.linalg.norm(got[:, :3, 3] - world, axis=-1)
        assert error_m.max() < 0.01, (
            f"{name} entity {k}: {error_m.max() * 100:.2f} cm at frame {times[error_m.argmax()]}"
        )
        axis = got[:, :3, :3] @ np.array(AXES[facing], dtype=float)
        heading = np.arctan2(axis[:, 1], axis[:, 0])
        error_deg = np.degrees(np.abs(wrap(heading - (rz + templates.AXIS_ANGLES[facing]))))
        assert error_deg.max() < 2.0, f"{name} entity {k}: {error_deg.max():.2f} degrees"
        assert np.allclose(got[:, :3, 2], [0, 0, 1], atol=1e-6)  # upright: X and Y rotation stay 0


def test_one_role_goes_onto_the_active_entity_only(blend, ui):
    scene = bpy.context.scene
    shot_camera(scene)
    settings = scene.trajmaster
    settings.frame_start, settings.frame_end = 1, 73
    one_entity(scene, "First")
    target = one_entity(scene, "Second")
    settings.active_entity_index = 1

    assert bpy.ops.trajmaster.apply_template(template="Two-way", template_entity=1) == {"FINISHED"}

    assert len(settings.entities) == 2
    assert settings.entities[0].object.animation_data is None
    scene.frame_set(1)
    positions, _ = presets.sample_template(BUILTIN.trajectories["Two-way"], 1, 3.0, [0.0])
    world, _ = presets.to_world(positions, np.zeros(1), CAMERA)
    assert np.allclose(np.array(target.object.matrix_world.translation), world[0], atol=0.01)


def test_applying_again_replaces_the_keys(blend, ui):
    scene = bpy.context.scene
    shot_camera(scene)
    scene.trajmaster.frame_start, scene.trajmaster.frame_end = 1, 73
    obj = one_entity(scene).object
    assert bpy.ops.trajmaster.apply_template(template="Zigzag") == {"FINISHED"}
    assert bpy.ops.trajmaster.apply_template(template="Straight across") == {"FINISHED"}
    compat = importlib.import_module(f"{MODULE}.addon.compat")
    expected = templates.template_keyframes(BUILTIN.trajectories["Straight across"], 0, 24.0, 1, 73, CAMERA)
    for fcurve in compat.action_fcurves(obj.animation_data.action):
        assert [round(p.co.x) for p in fcurve.keyframe_points] == [k.frame for k in expected]


def test_a_template_without_an_entity_adds_one(blend, ui):
    scene = bpy.context.scene
    shot_camera(scene)
    assert bpy.ops.trajmaster.apply_template(template="Circle") == {"FINISHED"}
    settings = scene.trajmaster
    assert len(settings.entities) == 1 and settings.entities[0].object.type == "EMPTY"
    assert settings.entities[0].object.animation_data.action is not None


@pytest.mark.parametrize(
    ("spoil", "words"),
    [
        ("camera", "no camera"),
        ("parent", "has a parent"),
        ("constraint", "has constraints"),
        ("delta", "delta transforms"),
        ("template", "no trajectory template named"),
        ("role", "does not exist"),
    ],
)
def test_apply_refuses_with_a_sentence_and_changes_nothing(blend, ui, spoil, words):
    scene = bpy.context.scene
    cam = shot_camera(scene)
    obj = one_entity(scene).object
    name, role = "Straight across", -1
    if spoil == "camera":
        scene.camera = None
        scenes.link(scene, cam.copy())  # a camera that is not the shot's does not count
    elif spoil == "parent":
        obj.parent = scenes.empty(scene, "Parent")
    elif spoil == "constraint":
        obj.constraints.new("COPY_LOCATION").target = cam
    elif spoil == "delta":
        obj.delta_location = (0.0, 0.0, 1.0)
    elif spoil == "template":
        name = "No such template"
    else:
        role = 2

    with pytest.raises(RuntimeError, match=words):
        bpy.ops.trajmaster.apply_template(template=name, template_entity=role)

    assert obj.animation_data is None and len(scene.trajmaster.entities) == 1


def test_template_warnings_are_reported(blend, ui, capsys):
    """Exact mapping with a camera looking up at the sky: the walk leaves the model's view, and the
    template's own findings say so when it is applied. (A template's speed does not depend on the
    shot's length: the model takes every shot as 2.8 s of motion.)"""
    scene = bpy.context.scene
    cam = shot_camera(scene)
    looking_up = poses.look_at_camera((0.0, -10.0, 1.6), (0.0, 0.0, 6.0))
    cam.matrix_world = Matrix(looking_up.tolist())
    scene.trajmaster.pose_mapping = "EXACT"
    scene.trajmaster.frame_start, scene.trajmaster.frame_end = 1, 73
    one_entity(scene)
    assert bpy.ops.trajmaster.apply_template(template="Straight across") == {"FINISHED"}
    findings = presets.template_findings(BUILTIN.trajectories["Straight across"], 3.0, 24.0, "exact", looking_up)
    assert [f.code for f in findings] == ["out_of_view"]  # the case is a real warning
    assert findings[0].message in capsys.readouterr().out


def test_undo_restores_the_previous_keys(blend, ui):
    """Blender's undo (memfile) restores the keys a template replaced.

    Headless, a Python operator call pushes no undo step (bpy.ops' undo argument does nothing
    without a window's event loop), so the steps the window manager pushes after an UNDO
    operator are pushed by hand: the check is that everything the operator changed lives in
    the .blend, where undo restores it, and that the operators ask for undo.
    """
    for op in ("apply_template", "load_example_shot", "pick_entity_prompt", "pick_location_prompt"):
        assert "UNDO" in getattr(bpy.types, f"TRAJMASTER_OT_{op}").bl_options
    scene = bpy.context.scene
    shot_camera(scene)
    scene.trajmaster.frame_start, scene.trajmaster.frame_end = 1, 73
    one_entity(scene)
    bpy.ops.ed.undo_push(message="Set up")
    assert bpy.ops.trajmaster.apply_template(template="Straight across") == {"FINISHED"}
    bpy.ops.ed.undo_push(message="Apply Straight across")
    scene.frame_set(1)
    before = np.array(bpy.data.objects["Walker"].matrix_world)

    assert bpy.ops.trajmaster.apply_template(template="Approach") == {"FINISHED"}
    bpy.ops.ed.undo_push(message="Apply Approach")
    bpy.context.scene.frame_set(1)
    assert not np.allclose(np.array(bpy.data.objects["Walker"].matrix_world), before, atol=0.01)
    assert bpy.ops.ed.undo() == {"FINISHED"}

    bpy.context.scene.frame_set(1)  # undo replaced the Python objects: look them up again
    assert np.allclose(np.array(bpy.data.objects["Walker"].matrix_world), before, atol=1e-6)
    assert len(bpy.context.scene.trajmaster.entities) == 1


# --- prompt pickers -----------------------------------------------------------------------------


def test_pickers_fill_the_active_entity_and_the_location(blend, ui):
    scene = bpy.context.scene
    settings = scene.trajmaster
    assert not bpy.ops.trajmaster.pick_entity_prompt.poll()  # no entity yet
    one_entity(scene, "A", prompt="old")
    one_entity(scene, "B", prompt="old")
    settings.active_entity_index = 1

    assert bpy.ops.trajmaster.pick_entity_prompt(preset="Chestnut horse") == {"FINISHED"}
    assert bpy.ops.trajmaster.pick_location_prompt(preset="Desert dunes") == {"FINISHED"}

    assert settings.entities[1].prompt == BUILTIN.entities["Chestnut horse"].prompt
    assert settings.entities[0].prompt == "old"
    assert settings.location_prompt == BUILTIN.locations["Desert dunes"].prompt
    # The search popup lists every preset, the category first in its label (so "animal" finds animals).
    labels = {label for _, label, _ in ui._entity_items}
    assert len(labels) == len(BUILTIN.entities) and "Animal: Chestnut horse" in labels


def test_the_preset_search_finds_words_of_the_preset_text_and_fills_prompt_and_height(blend, ui):
    """The Presets panel's search field: "dog" finds the Golden retriever by its prompt (a dog with
    a long golden coat...), not only the Robot dog by its name; picking one fills the prompt and
    the entity's height; the menu's tooltips are the prompts themselves."""
    scene = bpy.context.scene
    settings = scene.trajmaster
    one_entity(scene, "Walker", prompt="old")
    # Each candidate shows the preset's text after its name (Blender filters the list again by the
    # words typed, against these strings, so the text must be in them).
    found = dict(c.split(" \u00b7 ", 1) for c in ui.entity_candidates("dog"))
    assert {"Golden retriever", "Robot dog"} <= set(found) and "Chestnut horse" not in found
    assert found["Golden retriever"] == BUILTIN.entities["Golden retriever"].prompt
    assert [c.split(" \u00b7 ")[0] for c in ui.entity_candidates("golden coat")] == ["Golden retriever"]
    assert len(ui.entity_candidates("")) == len(BUILTIN.entities)
    assert any(c.startswith("Desert dunes \u00b7 desert with golden sand") for c in ui.location_candidates("sand"))

    # What picking one in the search list does: the field gets the candidate's text.
    settings.entity_preset = next(c for c in ui.entity_candidates("dog") if c.startswith("Golden retriever"))
    item = settings.entities[0]
    assert item.prompt == BUILTIN.entities["Golden retriever"].prompt
    assert item.height == pytest.approx(BUILTIN.entities["Golden retriever"].height) and item.height < 1.0
    assert settings.entity_preset == "", "the field is empty again for the next search"
    settings.location_preset = ui.location_candidates("dunes sky")[0]
    assert settings.location_prompt == BUILTIN.locations["Desert dunes"].prompt and settings.location_preset == ""

    op = bpy.types.TRAJMASTER_OT_pick_entity_prompt
    props = SimpleNamespace(preset="Golden retriever")
    assert op.description(bpy.context, props).startswith(BUILTIN.entities["Golden retriever"].prompt)
    props = SimpleNamespace(preset="Desert dunes")
    assert bpy.types.TRAJMASTER_OT_pick_location_prompt.description(bpy.context, props) == (
        BUILTIN.locations["Desert dunes"].prompt
    )


# --- the user folder ----------------------------------------------------------------------------


def test_user_presets_override_built_ins_and_a_broken_file_is_one_sentence(blend, ui):
    folder = ui.user_folder()
    assert folder is not None and folder.is_dir(), "installed as an extension, so it has a user folder"
    mine = folder / "my_animals.json"
    broken = folder / "paths.json"
    prompt = "a chestnut horse painted with bright blue stripes along its flanks and a braided golden mane"
    mine.write_text(
        json.dumps(
            {
                "format": "trajmaster-entities",
                "version": 1,
                "entities": [{"name": "Chestnut horse", "category": "animal", "prompt": prompt}],
            }
        )
    )
    bad_walker = {
        "role": "w",
        "start": [0, 8],
        "heading_deg": 90,
        "segments": [{"type": "arc", "radius": -1, "turn_deg": 90}],
    }
    broken.write_text(
        json.dumps(
            {
                "format": "trajmaster-trajectories",
                "version": 1,
                "templates": [{"name": "Bad", "default_duration_s": 3, "entities": [bad_walker]}],
            }
        )
    )
    try:
        assert bpy.ops.trajmaster.reload_presets() == {"FINISHED"}
        lib = ui.library()
        assert lib.entities["Chestnut horse"].prompt == prompt
        assert len(lib.trajectories) == len(BUILTIN.trajectories) and len(lib.shots) == len(BUILTIN.shots)
        assert len(lib.problems) == 1
        problem = lib.problems[0]
        assert str(broken) in problem and "radius must be greater than 0" in problem and "reload" in problem

        one_entity(bpy.context.scene)
        assert bpy.ops.trajmaster.pick_entity_prompt(preset="Chestnut horse") == {"FINISHED"}
        assert bpy.context.scene.trajmaster.entities[0].prompt == prompt
    finally:
        mine.unlink()
        broken.unlink()
        bpy.ops.trajmaster.reload_presets()
    assert ui.library().entities["Chestnut horse"].prompt == BUILTIN.entities["Chestnut horse"].prompt
    assert not ui.library().problems


# --- example shots ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SHOT_NAMES)
def test_example_shot_builds_exports_and_passes_the_pose_checks(blend, ui, tmp_path, name):
    shot = BUILTIN.shots[name]
    assert bpy.ops.trajmaster.load_example_shot(name=name) == {"FINISHED"}

    scene = bpy.context.scene
    settings = scene.trajmaster
    assert (scene.frame_start, scene.frame_end) == (shot.frame_start, shot.frame_end)
    assert scene.render.fps / scene.render.fps_base == pytest.approx(shot.fps)
    assert (settings.frame_start, settings.frame_end) == (shot.frame_start, shot.frame_end)
    assert settings.camera == scene.camera and scene.camera.data.lens == pytest.approx(35.0)
    assert np.allclose(np.array(scene.camera.matrix_world), shot.camera.matrix, atol=1e-5)
    assert settings.location_prompt == BUILTIN.locations[shot.location].prompt
    assert [e.prompt for e in settings.entities] == [BUILTIN.entities[e.entity].prompt for e in shot.entities]
    assert [e.object.name for e in settings.entities] == [e.label for e in shot.entities]

    path = tmp_path / "job.json"
    assert bpy.ops.trajmaster.export_job(filepath=str(path)) == {"FINISHED"}
    job = json.loads(path.read_text())
    assert len(job["entities"]) == len(shot.entities)
    job_export = importlib.import_module(f"{MODULE}.addon.job_export")
    assert job_export.build(bpy.context, scene).findings == []


def test_loading_an_example_shot_twice_reuses_its_objects(blend, ui):
    assert bpy.ops.trajmaster.load_example_shot(name="demo") == {"FINISHED"}
    names = sorted(o.name for o in bpy.context.scene.objects)
    assert bpy.ops.trajmaster.load_example_shot(name="demo") == {"FINISHED"}
    assert sorted(o.name for o in bpy.context.scene.objects) == names


def _keys(obj):
    compat = importlib.import_module(f"{MODULE}.addon.compat")
    return [tuple(k.co) for f in compat.action_fcurves(obj.animation_data.action) for k in f.keyframe_points]


def test_an_example_shot_never_rekeys_the_users_own_object_of_the_same_name(blend, ui):
    scene = bpy.context.scene
    mine_keys = _keys(scenes.keyframed(scene, "Horse", 1, 30, x0=5.0, x1=7.0))
    scenes.link(scene, bpy.data.objects.new("demo camera", bpy.data.cameras.new("mine"))).location = (1.0, 2.0, 3.0)

    assert bpy.ops.trajmaster.load_example_shot(name="demo") == {"FINISHED"}

    mine, mine_camera = scene.objects["Horse"], scene.objects["demo camera"]
    assert _keys(mine) == mine_keys
    assert tuple(mine_camera.location) == (1.0, 2.0, 3.0)
    used = [e.object for e in scene.trajmaster.entities]
    assert mine not in used and used[0].name.startswith("Horse.")
    assert scene.trajmaster.camera != mine_camera

    # Loading it again sets up the example's own "Horse.001" and camera again: nothing piles up.
    names, camera = sorted(o.name for o in scene.objects), scene.trajmaster.camera
    assert bpy.ops.trajmaster.load_example_shot(name="demo") == {"FINISHED"}
    assert sorted(o.name for o in scene.objects) == names
    assert [e.object for e in scene.trajmaster.entities] == used and scene.trajmaster.camera == camera
    assert _keys(mine) == mine_keys and tuple(mine_camera.location) == (1.0, 2.0, 3.0)


def test_an_unknown_example_shot_is_refused_by_name(blend, ui):
    with pytest.raises(RuntimeError, match=r"no example shot named 'nope'.*demo"):
        bpy.ops.trajmaster.load_example_shot(name="nope")


def test_the_presets_panel_and_menus_are_registered(ui):
    for name in ("TRAJMASTER_PT_presets", "TRAJMASTER_MT_templates", "TRAJMASTER_MT_example_shots"):
        assert hasattr(bpy.types, name)
    assert bpy.types.TRAJMASTER_PT_presets.bl_parent_id == "TRAJMASTER_PT_main"


class FakeLayout:
    """Stands in for UILayout so the panel and menus draw headless: every call is checked against
    the real UILayout's arguments (and icons), operator properties against the operator's own."""

    def __init__(self, log: list):
        self.log = log

    def _check(self, function: str, kwargs: dict) -> None:
        rna = bpy.types.UILayout.bl_rna.functions[function]
        for key, value in kwargs.items():
            assert key in rna.parameters, f"UILayout.{function}() has no argument {key!r}"
            param = rna.parameters[key]
            if param.type == "ENUM" and isinstance(value, str):
                assert value in {i.identifier for i in param.enum_items}, f"{function}({key}={value!r})"

    def row(self, **kwargs):
        self._check("row", kwargs)
        return self

    column = row

    def box(self, **kwargs):
        self._check("box", kwargs)
        return self

    def label(self, **kwargs):
        self._check("label", kwargs)
        self.log.append(("label", kwargs.get("text", "")))

    def separator(self, **kwargs):
        self._check("separator", kwargs)

    def column_flow(self, **kwargs):
        self._check("column_flow", kwargs)
        return self

    def prop(self, data, prop: str, **kwargs):
        self._check("prop", kwargs)
        assert prop in data.bl_rna.properties, f"{data} has no property {prop!r}"
        self.log.append(("prop", (prop, kwargs.get("placeholder"))))

    def menu(self, idname: str, **kwargs):
        self._check("menu", kwargs)
        assert hasattr(bpy.types, idname), f"no menu {idname}"
        self.log.append(("menu", idname))

    def operator(self, idname: str, **kwargs):
        self._check("operator", kwargs)
        category, name = idname.split(".")
        properties = getattr(getattr(bpy.ops, category), name).get_rna_type().properties
        log = self.log

        class Props:
            def __setattr__(self, key, value):
                assert key in properties, f"{idname} has no property {key!r}"
                log.append(("set", (idname, key, value)))

        log.append(("operator", (idname, kwargs.get("text"))))
        return Props()


def test_the_panel_and_menus_draw_every_preset(blend, ui):
    scene = bpy.context.scene
    one_entity(scene, "Walker")
    log: list = []
    for cls in (
        ui.TRAJMASTER_PT_presets,
        ui.TRAJMASTER_MT_templates,
        ui.TRAJMASTER_MT_template_roles,
        ui.TRAJMASTER_MT_example_shots,
        ui.TRAJMASTER_MT_entity_prompts,
        ui.TRAJMASTER_MT_location_prompts,
    ):
        cls.draw(SimpleNamespace(layout=FakeLayout(log)), bpy.context)
    sets = [v for k, v in log if k == "set"]
    assert {v for _, key, v in sets if key == "template"} == set(TEMPLATE_NAMES)
    assert {v for _, key, v in sets if key == "name"} == set(SHOT_NAMES)
    roles = sum(len(t.entities) for t in BUILTIN.trajectories.values() if len(t.entities) > 1)
    assert sum(1 for _, key, _ in sets if key == "template_entity") == roles
    assert {v for idname, key, v in sets if key == "preset" and "entity" in idname} == set(BUILTIN.entities)
    assert {v for idname, key, v in sets if key == "preset" and "location" in idname} == set(BUILTIN.locations)
    fields = dict(v for k, v in log if k == "prop")
    assert fields["entity_preset"] == "Prompt for Walker" and fields["location_preset"] == "Location prompt"
