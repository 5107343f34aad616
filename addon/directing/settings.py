"""`scene.trajmaster_directing`: the user's directing settings, saved with the .blend and undone
with undo: how many variations and what varies (in the shot's scene), and the takes marked A
and B for the A/B toggle (in the scene whose sequencer holds the takes).

A property of its own beside `scene.trajmaster` (properties.py, the shot): this subpackage
registers and removes it with its operators and panels.
"""

from __future__ import annotations

import bpy
from bpy.props import EnumProperty, IntProperty, PointerProperty, StringProperty

from . import variations

VARIES_ITEMS = (
    (variations.SEED, "Seed", "A new random seed for each take; nothing else changes"),
    (
        variations.LORA_SCALE,
        "LoRA Scale",
        "The shot's seed; LoRA scales spread over the current value +- 0.3 (higher follows the path more "
        "closely, lower looks more natural)",
    ),
    (
        variations.ANNEALED_STEPS,
        "Annealed Steps",
        "The shot's seed; annealed steps (steps that use the trajectory injector) spread over the current value "
        "+- 30% of the steps",
    ),
)


class TRAJMASTER_PG_directing(bpy.types.PropertyGroup):
    variation_count: IntProperty(
        name="Takes",
        default=variations.DEFAULT_COUNT,
        min=variations.MIN_COUNT,
        max=variations.MAX_COUNT,
        description="How many variations to generate (each is a take of its own)",
    )
    variation_varies: EnumProperty(
        name="Vary",
        items=VARIES_ITEMS,
        default=variations.SEED,
        description="What differs between the variations",
    )
    ab_a: StringProperty(name="A", description="The take (strip) marked A for the A/B toggle")
    ab_b: StringProperty(name="B", description="The take (strip) marked B for the A/B toggle")


classes = (TRAJMASTER_PG_directing,)
_register_classes, _unregister_classes = bpy.utils.register_classes_factory(classes)


def register() -> None:
    _register_classes()
    bpy.types.Scene.trajmaster_directing = PointerProperty(type=TRAJMASTER_PG_directing)


def unregister() -> None:
    del bpy.types.Scene.trajmaster_directing
    _unregister_classes()
