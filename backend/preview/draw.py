"""Pillow drawing of the markers and of the pointers to entities outside the frame.

Pillow fills polygons without antialiasing, so each marker is drawn at SUPERSAMPLE times the
size on a crop of the frame around it and box-filtered back down. Only the marker's
bounding box is supersampled; the rest of the frame is untouched (a block of identical pixels
averages back to itself exactly).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from .. import poses
from .scene_geometry import Marker, in_frame, project_polygon

SUPERSAMPLE = 3
# Above this many crop pixels (a marker right in front of the lens) 2x is plenty and faster.
LARGE_CROP_PX = 120_000

Color = tuple[int, int, int]

# How opaque each part of a marker is: the footprint is a shadow-like disc, the rest solid.
_ALPHA = {"footprint": 90, "arrow": 235, "side": 255, "front": 255, "top": 255, "visor": 235}


def shaded(color: Color, factor: float) -> Color:
    r, g, b = (round(min(255.0, c * factor)) for c in color)
    return r, g, b


def outline_for(color: Color) -> Color:
    """An edge colour that separates the marker from the ground: darker, or lighter for dark colours."""
    luma = 0.2126 * color[0] + 0.7152 * color[1] + 0.0722 * color[2]
    if luma > 70:
        return shaded(color, 0.35)
    return tuple(int(c + (235 - c) * 0.6) for c in color)  # type: ignore[return-value]


def draw_marker(frame: Image.Image, mark: Marker, color: Color) -> None:
    """Draw one entity's footprint, arrow and block onto `frame` (RGB, modified in place)."""
    width, height = frame.size
    # Polygons are cut a little outside the frame: outlines at the border stay whole.
    bounds = (-4.0, -4.0, width + 4.0, height + 4.0)
    polys = [(face, project_polygon(face.points, bounds)) for face in mark.faces]
    polys = [(face, pts) for face, pts in polys if len(pts)]
    if not polys:
        return
    every = np.concatenate([pts for _, pts in polys])
    x0, y0 = np.floor(every.min(axis=0)).astype(int) - 2
    x1, y1 = np.ceil(every.max(axis=0)).astype(int) + 3
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if x1 <= x0 or y1 <= y0:
        return
    box = (int(x0), int(y0), int(x1), int(y1))
    crop = frame.crop(box)
    scale = SUPERSAMPLE if crop.width * crop.height <= LARGE_CROP_PX else 2
    big = crop.resize((crop.width * scale, crop.height * scale), Image.Resampling.NEAREST)
    pen = ImageDraw.Draw(big, "RGBA")
    edge = outline_for(color)
    for face, pts in polys:
        # Pixel centres: crop pixel i spans [i, i + 1) and is covered by big pixels i*s .. i*s+s-1.
        xy = [(float(x), float(y)) for x, y in (pts - (x0, y0)) * scale - 0.5]
        alpha = _ALPHA[face.kind]
        if face.kind == "visor":
            pen.polygon(xy, fill=(*shaded(color, 0.3), alpha))
        elif face.kind == "footprint":
            pen.polygon(xy, fill=(*color, alpha), outline=(*color, 200), width=max(1, scale))
        else:
            pen.polygon(xy, fill=(*shaded(color, face.shade), alpha), outline=(*edge, 255), width=scale)
    frame.paste(big.reduce(scale), box[:2])


def draw_pointer(
    frame: Image.Image, pivot: np.ndarray, color: Color, margins: tuple[float, float] = (14.0, 40.0)
) -> tuple[float, float]:
    """An arrowhead at the frame's edge pointing towards an entity outside the view.

    `margins` (sides, top and bottom) keep it off the frame counter and the legend. Returns
    the pixel where the arrowhead's base sits (for its label).
    """
    width, height = frame.size
    centre = np.array([width / 2, height / 2])
    if pivot[2] > 0.05:
        direction = poses.project(pivot) - centre
    else:
        # Behind the camera: read the frame as a map seen from above (right is right, down is
        # behind), so "behind, to the left" points to the bottom-left.
        direction = np.array([pivot[0], -pivot[2]])
    norm = float(np.linalg.norm(direction))
    direction = direction / norm if norm > 1e-9 else np.array([0.0, 1.0])
    half = np.array([width / 2 - margins[0], height / 2 - margins[1]])
    with np.errstate(divide="ignore"):
        reach = np.min(np.where(np.abs(direction) > 1e-9, half / np.abs(direction), np.inf))
    tip = centre + direction * reach
    side = np.array([-direction[1], direction[0]])
    back = tip - direction * 16.0
    tri = np.array([tip, back + side * 9.0, back - side * 9.0])

    scale = SUPERSAMPLE
    x0, y0 = np.floor(tri.min(axis=0)).astype(int) - 3
    x1, y1 = np.ceil(tri.max(axis=0)).astype(int) + 3
    box = (max(int(x0), 0), max(int(y0), 0), min(int(x1), width), min(int(y1), height))
    crop = frame.crop(box)
    big = crop.resize((crop.width * scale, crop.height * scale), Image.Resampling.NEAREST)
    xy = [(float(x), float(y)) for x, y in (tri - box[:2]) * scale - 0.5]
    ImageDraw.Draw(big).polygon(xy, fill=color, outline=outline_for(color), width=scale)
    frame.paste(big.reduce(scale), box[:2])
    return float(back[0]), float(back[1])


def block_rect(mark: Marker, size: tuple[int, int]) -> tuple[float, float, float, float] | None:
    """The pixel rectangle the marker's block covers in a frame of `size`, or None when none of
    it is in the picture."""
    bounds = (0.0, 0.0, float(size[0]), float(size[1]))
    polys = [project_polygon(face.points, bounds) for face in mark.faces if face.kind not in ("footprint", "arrow")]
    polys = [pts for pts in polys if len(pts)]
    if not polys:
        return None
    every = np.concatenate(polys)
    (x0, y0), (x1, y1) = every.min(axis=0), every.max(axis=0)
    return float(x0), float(y0), float(x1), float(y1)


def visible(mark: Marker) -> bool:
    """Whether the entity's pivot is in the picture (otherwise it gets an edge pointer)."""
    return bool(mark.pivot[2] > 0.05 and in_frame(poses.project(mark.pivot)))
