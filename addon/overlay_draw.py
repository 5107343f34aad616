"""GPU drawing of the overlay geometry (overlay_geometry.Geometry) in a 3D viewport.

Imported only from the viewport's draw callbacks (overlay.draw_view / draw_pixel): background
Blender has no GPU context, and `gpu.shader.from_builtin` raises there, so nothing in the add-on
imports this module while registering. Batches are built once per geometry (kept in
`geometry.gpu_cache`) and only drawn afterwards: a redraw costs a few draw calls.

Shader names are the 4.0+ built-ins ('POLYLINE_FLAT_COLOR', and 'POINT_FLAT_COLOR' where it
exists, else 'FLAT_COLOR'); the '3D_' prefixed names of 3.x are gone.
"""

from __future__ import annotations

from typing import Any

import blf
import gpu
import numpy as np
from bpy_extras.view3d_utils import location_3d_to_region_2d
from gpu_extras.batch import batch_for_shader

from .overlay_geometry import Geometry

PATH_WIDTH = 2.0
ARROW_WIDTH = 1.5
FRUSTUM_WIDTH = 1.0
SLOT_SIZE = 9.0
FONT_SIZE = 12
LINE_HEIGHT = 15


def _rgba(color: Any, alpha: float = 1.0) -> tuple[float, float, float, float]:
    return (float(color[0]), float(color[1]), float(color[2]), alpha)


def _line_batch(shader: gpu.types.GPUShader, segments: np.ndarray, colors: list) -> Any:
    """LINES batch with one colour per segment."""
    pos = np.asarray(segments, dtype=np.float32).reshape(-1, 3)
    col = np.repeat(np.asarray(colors, dtype=np.float32), 2, axis=0)
    return batch_for_shader(shader, "LINES", {"pos": pos, "color": col})


def _point_shader() -> gpu.types.GPUShader:
    # Newer Blender (5.0 has it, 4.2 does not) draws points with 'POINT_FLAT_COLOR', whose size is a
    # uniform; older versions use 'FLAT_COLOR' and gpu.state.point_size_set.
    try:
        return gpu.shader.from_builtin("POINT_FLAT_COLOR")
    except (ValueError, TypeError):  # an unknown name
        return gpu.shader.from_builtin("FLAT_COLOR")


def _batches(geometry: Geometry) -> dict[str, Any]:
    cache = geometry.gpu_cache
    if cache:
        return cache
    lines = gpu.shader.from_builtin("POLYLINE_FLAT_COLOR")
    points = _point_shader()
    path_segs, path_cols, arrow_segs, arrow_cols, slot_pos, slot_cols = [], [], [], [], [], []
    for ent in geometry.entities:
        if len(ent.path) > 1:
            path_segs.append(np.stack([ent.path[:-1], ent.path[1:]], 1))
            path_cols += [_rgba(ent.color, 0.9)] * (len(ent.path) - 1)
        colors = ent.slot_colors()
        if len(ent.arrows):
            arrow_segs.append(ent.arrows)
            arrow_cols += [_rgba(c) for c in colors for _ in range(3)]
        slot_pos.append(ent.slots)
        slot_cols += [_rgba(c) for c in colors]
    cache["lines"] = lines
    cache["points"] = points
    cache["path"] = _line_batch(lines, np.concatenate(path_segs), path_cols) if path_segs else None
    cache["arrows"] = _line_batch(lines, np.concatenate(arrow_segs), arrow_cols) if arrow_segs else None
    cache["slots"] = (
        batch_for_shader(
            points,
            "POINTS",
            {"pos": np.concatenate(slot_pos).astype(np.float32), "color": np.asarray(slot_cols, np.float32)},
        )
        if slot_pos
        else None
    )
    frustum = geometry.frustum
    cache["frustum"] = (
        _line_batch(lines, frustum.segments, [_rgba(frustum.color, 0.8)] * len(frustum.segments)) if frustum else None
    )
    return cache


def draw_view(geometry: Geometry) -> None:
    """Paths, slot marks, facing arrows and the model camera, in the viewport's 3D space."""
    cache = _batches(geometry)
    viewport = gpu.state.viewport_get()[2:]
    gpu.state.blend_set("ALPHA")
    gpu.state.depth_test_set("NONE")  # the shot reads through the scene, like Blender's motion paths
    lines = cache["lines"]
    lines.bind()
    lines.uniform_float("viewportSize", viewport)
    for name, width in (("frustum", FRUSTUM_WIDTH), ("path", PATH_WIDTH), ("arrows", ARROW_WIDTH)):
        if cache[name] is not None:
            lines.uniform_float("lineWidth", width)
            cache[name].draw(lines)
    if cache["slots"] is not None:
        points = cache["points"]
        points.bind()
        gpu.state.point_size_set(SLOT_SIZE)
        try:
            points.uniform_float("size", SLOT_SIZE)  # POINT_* shaders take the size as a uniform
        except ValueError:
            pass  # FLAT_COLOR: the point size state set above applies
        cache["slots"].draw(points)
        gpu.state.point_size_set(1.0)
    # Left as Blender's other draw handlers expect them (blend off, depth test off, 1 px points).
    gpu.state.blend_set("NONE")


def draw_labels(geometry: Geometry, region: Any, region_3d: Any) -> None:
    """The warnings as text next to the slots where they occur (and the camera's, at the camera)."""
    font = 0
    blf.size(font, FONT_SIZE)
    blf.enable(font, blf.SHADOW)
    blf.shadow(font, 3, 0.0, 0.0, 0.0, 0.9)
    placed: list[tuple[float, float]] = []
    for label in geometry.labels:
        xy = location_3d_to_region_2d(region, region_3d, label.position)
        if xy is None:
            continue
        x, y = float(xy[0]) + 8.0, float(xy[1])
        # Several warnings at one slot stack downwards instead of printing over each other.
        while any(abs(x - px) < 40 and abs(y - py) < LINE_HEIGHT - 1 for px, py in placed):
            y -= LINE_HEIGHT
        placed.append((x, y))
        blf.color(font, *_rgba(label.color))
        blf.position(font, x, y, 0)
        blf.draw(font, label.text)
    blf.disable(font, blf.SHADOW)
