"""The extension as a package: Blender's validator and builder, install, register/unregister, settings."""

from __future__ import annotations

import zipfile

import addon_utils
import bpy
import pytest
import scenes
from conftest import MODULE, ROOT, run_blender_ext


def test_manifest_passes_blenders_validator():
    done = run_blender_ext("validate", str(ROOT))
    assert done.returncode == 0, done.stdout + done.stderr


def test_built_zip_holds_the_addon_and_backend_but_no_dev_files(extension_zip):
    done = run_blender_ext("validate", str(extension_zip))
    assert done.returncode == 0, done.stdout + done.stderr
    names = zipfile.ZipFile(extension_zip).namelist()
    for needed in ("blender_manifest.toml", "__init__.py", "addon/__init__.py", "addon/supervisor.py"):
        assert needed in names
    for needed in ("backend/__main__.py", "backend/poses.py", "backend/job.schema.json"):
        assert needed in names
    leaked = [n for n in names if n.split("/")[0] in ("tests", "docs", ".ci", "out") or "__pycache__" in n]
    leaked += [n for n in names if n == "dev.py" or n.startswith(".")]
    assert "pyproject.toml" in names  # Set Up Backend reads the backend's packages from its extras
    assert not leaked, leaked


def _our_handlers() -> list[str]:
    """The extension's functions in bpy.app.handlers (load, save, depsgraph...), by list and name."""
    found = []
    for name in dir(bpy.app.handlers):
        handlers = getattr(bpy.app.handlers, name)
        if isinstance(handlers, list):
            found += [f"{name}:{h.__name__}" for h in handlers if getattr(h, "__module__", "").startswith(MODULE)]
    return sorted(found)


def test_register_and_unregister_twice_in_a_row():
    for _ in range(2):
        addon_utils.disable(MODULE)
        assert not hasattr(bpy.types.Scene, "trajmaster")
        assert not hasattr(bpy.types, "TRAJMASTER_PT_main") and not hasattr(bpy.types, "TRAJMASTER_OT_generate")
        assert _our_handlers() == [], "unregister leaves no handler behind"
    for _ in range(2):
        addon_utils.enable(MODULE, default_set=True)
        assert hasattr(bpy.types.Scene, "trajmaster")
        assert hasattr(bpy.types, "TRAJMASTER_PT_main") and hasattr(bpy.types, "TRAJMASTER_PT_take")
        handlers = _our_handlers()
        assert "save_pre:_on_save_pre" in handlers and "load_post:_on_load_post" in handlers
        assert len(handlers) == len(set(handlers)), f"a handler registered twice: {handlers}"
    addon_utils.disable(MODULE)
    addon_utils.enable(MODULE, default_set=True)
    assert MODULE in bpy.context.preferences.addons
    assert bpy.ops.trajmaster.generate.poll()


def test_settings_have_the_release_defaults(blend):
    settings = bpy.context.scene.trajmaster
    assert (settings.seed, settings.steps, settings.annealed_steps) == (42, 50, 20)
    assert settings.guidance_scale == pytest.approx(6.0) and settings.lora_scale == pytest.approx(0.6)
    assert settings.pose_mapping == "RIG" and settings.engine == "PREVIEW"
    item = settings.entities.add()
    assert item.forward_axis == "NEG_Y"
    assert {i.identifier for i in item.bl_rna.properties["forward_axis"].enum_items} == {
        "POS_X",
        "NEG_X",
        "POS_Y",
        "NEG_Y",
    }
    assert {i.identifier for i in settings.bl_rna.properties["engine"].enum_items} == {"PREVIEW", "COGVIDEOX"}
    assert {i.identifier for i in settings.bl_rna.properties["pose_mapping"].enum_items} == {"RIG", "EXACT"}


def test_settings_are_saved_with_the_blend(blend, tmp_path):
    scene = bpy.context.scene
    walker = scenes.empty(scene, "Walker")
    settings = scenes.shot(scene, scenes.camera(scene), [walker], 10, 60)
    settings.seed = 1234
    settings.entities[0].forward_axis = "POS_X"
    bpy.ops.wm.save_mainfile()
    bpy.ops.wm.read_homefile(use_empty=True)
    assert len(bpy.context.scene.trajmaster.entities) == 0
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    settings = bpy.context.scene.trajmaster
    assert (settings.frame_start, settings.frame_end, settings.seed) == (10, 60, 1234)
    assert settings.entities[0].object.name == "Walker" and settings.entities[0].forward_axis == "POS_X"
    assert settings.location_prompt == scenes.LOCATION


def test_entity_list_stops_at_three_and_picks_the_active_empty(blend):
    scene = bpy.context.scene
    settings = scene.trajmaster
    empties = [scenes.empty(scene, f"E{k}") for k in range(4)]
    for obj in empties[:3]:
        bpy.context.view_layer.objects.active = obj
        assert bpy.ops.trajmaster.entity_add() == {"FINISHED"}
    assert [e.object.name for e in settings.entities] == ["E0", "E1", "E2"]
    assert len({tuple(e.color) for e in settings.entities}) == 3, "each entity gets its own colour"
    assert not bpy.ops.trajmaster.entity_add.poll(), "Add is greyed out at three entities"
    settings.active_entity_index = 1
    assert bpy.ops.trajmaster.entity_remove() == {"FINISHED"}
    assert [e.object.name for e in settings.entities] == ["E0", "E2"]
    assert bpy.ops.trajmaster.entity_add.poll()


def test_randomize_seed_changes_it(blend):
    settings = bpy.context.scene.trajmaster
    seeds = set()
    for _ in range(3):
        bpy.ops.trajmaster.randomize_seed()
        seeds.add(settings.seed)
    assert len(seeds) > 1 and all(0 <= s < 2**31 for s in seeds)
