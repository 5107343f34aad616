"""Real Blender (the `bpy` module), headless, with the extension installed as a user installs it.

Run inside a bpy environment, once per Blender version:
    /tmp/venvs/b42/bin/python -m pytest tests/blender
    /tmp/venvs/b50/bin/python -m pytest tests/blender

Per session: Blender's user folders point at a temporary directory (before bpy is imported, so
nothing touches the real user's configuration), the extension zip is built once with Blender's
own builder, installed with Blender's own extension installer and enabled. The backend runs
in this same environment's Python (it has the preview engine's packages).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

_USER_DIR = Path(tempfile.mkdtemp(prefix="trajmaster-blender-user-"))
for _kind in ("CONFIG", "SCRIPTS", "EXTENSIONS", "DATAFILES"):
    os.environ[f"BLENDER_USER_{_kind}"] = str(_USER_DIR / _kind.lower())
os.environ["TRAJMASTER_PYTHON"] = sys.executable

try:
    import bpy
except ImportError as exc:  # fail loudly: a skipped Blender suite would hide a broken add-on
    raise RuntimeError(
        f"tests/blender needs Blender's Python module (bpy), which {sys.executable} cannot import ({exc}). "
        "Run these tests with a bpy environment's Python, e.g. /tmp/venvs/b50/bin/python -m pytest tests/blender "
        "(python3 dev.py test does this for every supported Blender)."
    ) from None

# Blender's builder and installer, shared with dev.py's demo; MODULE and run_blender_ext are re-exported
# for the test files (they import them from conftest).
from extension_install import MODULE, build, install, run_blender_ext  # noqa: E402, F401


@pytest.fixture(scope="session")
def extension_zip(tmp_path_factory) -> Path:
    return build(ROOT, tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="session", autouse=True)
def installed(extension_zip) -> str:
    """Install the zip with Blender's extension installer and enable it, as a user would."""
    yield install(extension_zip)
    import addon_utils

    addon_utils.disable(MODULE)
    shutil.rmtree(_USER_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def addon(installed):
    """The installed extension's add-on package (bl_ext.user_default.trajmaster_previz.addon)."""
    import importlib

    return importlib.import_module(f"{MODULE}.addon")


@pytest.fixture
def runner(addon):
    from importlib import import_module

    module = import_module(f"{MODULE}.addon.runner")
    yield module
    module.wait(timeout=120)
    module.use_worker = None
    module.status.last_error = ""
    module.status.info = ""
    module.status.pending.clear()
    module.status.message = ""
    bpy.context.preferences.addons[MODULE].preferences.output_folder = ""


@pytest.fixture
def blend(tmp_path):
    """A new empty .blend saved in tmp_path (takes go to tmp_path/trajmaster/<scene>/)."""
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 24, 1.0
    path = tmp_path / "shot.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    return path
