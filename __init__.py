"""TrajMaster Previz: Blender extension entry point.

Blender loads the repository root as the extension package; everything Blender-side lives in
`addon/`, the model-side process in `backend/` (never imported with torch here).
"""


# Imported when Blender enables the extension, not at import time: pytest imports this file on its
# own (as "__init__", without a parent package) when the checkout's folder name is not a Python
# name, e.g. a plain `git clone` into "trajmaster-previz", and a relative import would fail there.
def register() -> None:
    from . import addon

    addon.register()


def unregister() -> None:
    from . import addon

    addon.unregister()
