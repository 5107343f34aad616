"""Build the extension with Blender's own builder and install it with Blender's own installer.

Shared by tests/blender/conftest.py and dev.py's demo. Import it with the `bpy` module already
importable, after pointing BLENDER_USER_* at a scratch folder (the install goes into the user
extensions repository, so that keeps the user's own Blender untouched).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import bpy

EXTENSION_ID = "trajmaster_previz"
REPO = "user_default"
MODULE = f"bl_ext.{REPO}.{EXTENSION_ID}"


def blender_ext() -> Path:
    """Blender's own extension command-line tool, shipped inside the bpy module."""
    return Path(bpy.utils.system_resource("SCRIPTS")) / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"


def run_blender_ext(*args: str) -> subprocess.CompletedProcess:
    # The tool is plain Python; this interpreter (the bpy environment's) runs it.
    return subprocess.run(
        [sys.executable, str(blender_ext()), *args], capture_output=True, text=True, timeout=120, check=False
    )


def build(root: str | Path, build_dir: str | Path) -> Path:
    """The extension zip of the repository at `root`, written into `build_dir`."""
    out = Path(build_dir) / f"{EXTENSION_ID}.zip"
    out.parent.mkdir(parents=True, exist_ok=True)
    done = run_blender_ext("build", "--source-dir", str(root), "--output-filepath", str(out))
    if done.returncode != 0:
        raise RuntimeError(f"Blender's extension builder failed:\n{done.stdout}\n{done.stderr}")
    return out


def install(zip_path: str | Path) -> str:
    """Install and enable the zip as a user would; returns the add-on's module name."""
    result = bpy.ops.extensions.package_install_files(filepath=str(zip_path), repo=REPO, enable_on_install=True)
    if result != {"FINISHED"}:
        raise RuntimeError(f"Blender's extension installer returned {result} for {zip_path}")
    if MODULE not in bpy.context.preferences.addons:
        raise RuntimeError(f"{MODULE} was installed but not enabled")
    return MODULE


def build_and_install(root: str | Path, build_dir: str | Path) -> str:
    """Build the repository at `root` into `build_dir`, install and enable it; returns the module name."""
    return install(build(root, build_dir))
