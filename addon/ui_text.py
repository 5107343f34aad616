"""Long sentences in Blender layouts: a label never wraps, so a message is split into several
labels, with the icon on the first line and a blank icon keeping the others aligned."""

from __future__ import annotations

import textwrap

import bpy


def region_chars(context: bpy.types.Context) -> int:
    """About how many characters fit across the current region (7.5 px each at UI scale 1, less
    the icon and the margins); 300 px when there is no region (a script, a test)."""
    region = context.region
    scale = context.preferences.view.ui_scale * context.preferences.system.pixel_size
    return max(20, int((region.width if region else 300) / (7.5 * scale)) - 6)


def wrapped(layout: bpy.types.UILayout, text: str, icon: str = "NONE", width: int = 110) -> None:
    """`text` as labels of at most `width` characters, in an aligned column (no gaps between lines)."""
    col = layout.column(align=True)
    for i, line in enumerate(textwrap.wrap(text, width) or [""]):
        col.label(text=line, icon=icon if i == 0 else "BLANK1")
