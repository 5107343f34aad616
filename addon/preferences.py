"""Add-on preferences: which Python runs the backend, and where takes go.

The environment variable TRAJMASTER_PYTHON, when set, names the backend interpreter and wins
over the preference (render farms, CI).
"""

from __future__ import annotations

import os

import bpy
from bpy.props import StringProperty

ENV_PYTHON = "TRAJMASTER_PYTHON"

# The extension's package name (bl_ext.<repo>.trajmaster_previz when installed as an extension).
PACKAGE = __package__.rpartition(".")[0]


class BackendNotConfigured(RuntimeError):
    pass


class TRAJMASTER_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = PACKAGE

    python_path: StringProperty(
        name="Backend Python",
        subtype="FILE_PATH",
        description="The Python interpreter of the environment where the TrajMaster backend's packages are "
        "installed (TRAJMASTER_PYTHON overrides it)",
    )
    output_folder: StringProperty(
        name="Output Folder",
        subtype="DIR_PATH",
        description="Where takes are written, in a sub-folder per scene. Empty: '//trajmaster/' next to the "
        "saved .blend file",
    )

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        col = layout.column()
        col.prop(self, "python_path")
        if os.environ.get(ENV_PYTHON):
            col.label(text=f"{ENV_PYTHON} is set and used instead: {os.environ[ENV_PYTHON]}", icon="INFO")
        col.prop(self, "output_folder")


def preferences(context: bpy.types.Context | None = None) -> TRAJMASTER_AP_preferences | None:
    addons = (context or bpy.context).preferences.addons
    addon = addons.get(PACKAGE)
    return addon.preferences if addon is not None else None


def backend_python(context: bpy.types.Context | None = None) -> str:
    """The backend interpreter: TRAJMASTER_PYTHON, else the preference. Raises BackendNotConfigured."""
    value = os.environ.get(ENV_PYTHON, "").strip()
    if not value:
        prefs = preferences(context)
        value = bpy.path.abspath(prefs.python_path).strip() if prefs is not None else ""
    if not value:
        raise BackendNotConfigured(
            "No backend Python is set: choose the backend's Python in Edit > Preferences > Add-ons > "
            f"TrajMaster Previz, or set the {ENV_PYTHON} environment variable."
        )
    return value


def output_root(context: bpy.types.Context | None = None) -> str:
    prefs = preferences(context)
    return bpy.path.abspath(prefs.output_folder) if prefs is not None and prefs.output_folder else ""


classes = (TRAJMASTER_AP_preferences,)


def register() -> None:
    for cls in classes:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
