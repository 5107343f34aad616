"""TrajMaster Previz inside Blender: one module per concern, registered in order.

Data flow (docs/architecture.md): properties (scene.trajmaster) -> sampling + job_export (the
job file) -> runner + supervisor (the backend process) -> sequencer (the take strip). The UI is
panel.py and operators.py; version differences live in compat.py.

The modules are imported by register(), not here, so that importing the extension's package
outside Blender (pytest collecting the repository, the backend's tools) does not need bpy.
"""

from __future__ import annotations

from types import ModuleType


def _modules() -> tuple[ModuleType, ...]:
    from . import (
        camera_match,
        directing,
        keys,
        operators,
        outputs,
        overlay,
        panel,
        panel_viewport,
        preferences,
        presets_ui,
        prompt_help,
        properties,
        runner,
        server_ui,
        setup_ops,
        status_scope,
        temp_takes,
    )

    # Register in this order, unregister in reverse: properties before the panels that draw
    # them, directing after the panels its sub-panels hang off, the runner last so that
    # unregistering stops the backend first.
    return (
        preferences,
        properties,
        operators,
        prompt_help,
        keys,
        setup_ops,
        camera_match,
        outputs,
        overlay,
        status_scope,
        panel,
        panel_viewport,
        presets_ui,
        directing,
        server_ui,
        temp_takes,
        runner,
    )


def register() -> None:
    for module in _modules():
        module.register()


def unregister() -> None:
    for module in reversed(_modules()):
        module.unregister()
