"""TrajMaster Previz: Blender extension entry point.

Blender loads the repository root as the extension package; everything Blender-side lives in
`addon/`, the model-side process in `backend/` (never imported with torch here).
"""

from . import addon


def register() -> None:
    addon.register()


def unregister() -> None:
    addon.unregister()
