"""Directing: variations of a shot, comparing and choosing takes, generating every shot of a file.

- variations.py (no bpy): the plan of a variation set and where its takes land.
- settings.py: `scene.trajmaster_directing` (variation count and kind, the takes marked A and B).
- batches.py: Generate Variations and Generate All Shots (checks, jobs, the runner's queue).
- compare.py: stepping through a set, A/B, favourite/reject marks (sequencer, undoable).
- contact_sheet.py: a set's takes side by side in one video (the backend's contact-sheet), as a strip.
- keymaps.py: the sequencer keys for stepping and A/B.
- panels.py: the N-panel's Variations and All Shots sections, the queue, the take panel's Compare.
"""

from __future__ import annotations

from types import ModuleType


def _modules() -> tuple[ModuleType, ...]:
    from . import batches, compare, contact_sheet, keymaps, panels, settings

    return (settings, batches, compare, contact_sheet, panels, keymaps)


def register() -> None:
    for module in _modules():
        module.register()


def unregister() -> None:
    for module in reversed(_modules()):
        module.unregister()
