"""Keys for comparing takes in the Video Sequence Editor (timeline and preview alike):

- Alt+Up: play the next take of the set (takes stack upwards), Alt+Down: the previous one;
- Alt+B: switch between the takes marked A and B.

None of these is bound in Blender's default sequencer keymaps (4.2-5.0). They go into the
add-on keyconfig, where the user can change them in Preferences > Keymap, and are removed on
unregister.
"""

from __future__ import annotations

from typing import Any

import bpy

from .. import compat

KEYS = (
    ("trajmaster.take_step", "UP_ARROW", {"direction": 1}),
    ("trajmaster.take_step", "DOWN_ARROW", {"direction": -1}),
    ("trajmaster.take_ab", "B", {"action": "TOGGLE"}),
)

_items: list[tuple[Any, Any]] = []


def register() -> None:
    keyconfig = bpy.context.window_manager.keyconfigs.addon
    if keyconfig is None:
        return  # no window manager's keyconfigs (Blender started without them): no keys to add
    keymap = keyconfig.keymaps.new(name=compat.sequencer_keymap(), space_type="SEQUENCE_EDITOR")
    for idname, key, properties in KEYS:
        item = keymap.keymap_items.new(idname, key, "PRESS", alt=True)
        for name, value in properties.items():
            setattr(item.properties, name, value)
        _items.append((keymap, item))


def unregister() -> None:
    for keymap, item in _items:
        try:
            keymap.keymap_items.remove(item)
        except (ReferenceError, RuntimeError):
            pass  # already gone with its keyconfig
    _items.clear()
