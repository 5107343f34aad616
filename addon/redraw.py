"""Asking Blender to redraw only what changed (one place for the three callers: the runner's
progress, the setup tasks' log, the overlay's rebuilt paths).

A redraw of a whole 3D viewport re-renders the user's scene, which can take hundreds of ms in a
heavy file; progress only changes the sidebar, so callers name the region type they changed.
"""

from __future__ import annotations

import bpy


def tag(area_type: str, region_type: str | None = None) -> None:
    """Tag for redraw every area of `area_type` (in every window), or only its regions of
    `region_type` ("UI" for the sidebar) when given."""
    wm = bpy.context.window_manager
    for window in wm.windows if wm else ():
        screen = window.screen
        for area in screen.areas if screen else ():
            if area.type != area_type:
                continue
            if region_type is None:
                area.tag_redraw()
                continue
            for region in area.regions:
                if region.type == region_type:
                    region.tag_redraw()
