"""TrajMaster Previz inside Blender: one module per concern, registered in order.

Data flow (docs/architecture.md): properties (scene.trajmaster) -> sampling + job_export (the
job file) -> runner + supervisor (the backend process) -> sequencer (the take strip). The UI is
panel.py and operators.py; version differences live in compat.py.
"""

from __future__ import annotations

from . import operators, panel, preferences, properties, runner

# Register in this order, unregister in reverse: properties before the panels that draw them,
# the runner last so that unregistering stops the backend first.
_modules = (preferences, properties, operators, panel, runner)


def register() -> None:
    for module in _modules:
        module.register()


def unregister() -> None:
    for module in reversed(_modules):
        module.unregister()
