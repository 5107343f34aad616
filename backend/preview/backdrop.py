"""The picture behind the entities: sky, ground, a 1 m grid, the model's range rings, a horizon.

Shaded per pixel like a fragment shader: each pixel's ray meets the ground plane (or not), so
the grid needs no clipping at all (only what lies in front of the camera is ever hit) and its
lines are antialiased from their own screen-space width. It depends only on the camera context,
so the engine computes it once per distinct context, not once per frame.
"""

from __future__ import annotations

import numpy as np

from .. import checks, poses
from .scene_geometry import ground_from_context

SKY_ZENITH = np.array([46.0, 56.0, 72.0])
SKY_HORIZON = np.array([142.0, 150.0, 160.0])
GROUND = np.array([56.0, 58.0, 61.0])
# The band of ground where the model was trained to place entities is a little lighter.
GROUND_IN_RANGE = np.array([76.0, 78.0, 79.0])
GRID = np.array([214.0, 218.0, 222.0])
RING = np.array([236.0, 236.0, 228.0])
HORIZON = np.array([196.0, 202.0, 210.0])

GRID_EXTENT = 30.0  # metres from the camera where the grid has faded out
HAZE_DISTANCE = 45.0  # metres over which the ground fades into the horizon colour
RING_DASH = 0.5  # metres of dash (and of gap) along the range rings


def _line_coverage(value: np.ndarray, spacing: float, width_px: float) -> tuple[np.ndarray, np.ndarray]:
    """How much of each pixel a line at every multiple of `spacing` covers, and the lines'
    screen density (metres per pixel), from the value's gradient across the image."""
    dy, dx = np.gradient(value)
    per_px = np.hypot(dx, dy) + 1e-9
    off = np.abs(value / spacing - np.round(value / spacing)) * spacing
    return np.clip(width_px / 2 + 0.5 - off / per_px, 0.0, 1.0), per_px


def _uncrowded(metres_per_px: np.ndarray) -> np.ndarray:
    """1 where 1 m lines are at least 4 px apart, fading to 0 at 2 px: denser is only moire
    (and near the horizon a line's metre-based width would smear over whole rows)."""
    return np.clip((0.5 - metres_per_px) / 0.25, 0.0, 1.0)


def backdrop(context: np.ndarray, width: int = poses.MODEL_WIDTH, height: int = poses.MODEL_HEIGHT) -> np.ndarray:
    """The (height, width, 3) uint8 background for one camera context row."""
    ground = ground_from_context(np.asarray(context, dtype=np.float64))
    f = poses.MODEL_FOCAL_PX * width / poses.MODEL_WIDTH
    x = ((np.arange(width) + 0.5 - width / 2) / f)[None, :]
    y = (-(np.arange(height) + 0.5 - height / 2) / f)[:, None]

    def along(axis: np.ndarray) -> np.ndarray:  # ray (x, y, 1) . axis, per pixel
        return axis[0] * x + axis[1] * y + axis[2]

    rise = along(ground.up)  # > 0: the ray goes up into the sky
    sine = rise / np.sqrt(x * x + y * y + 1.0)
    sees_ground = rise < -1e-9
    reach = np.where(sees_ground, ground.height / np.where(sees_ground, -rise, 1.0), 0.0)
    # Ground coordinates from the point under the camera: right and forward, metres.
    right = reach * along(ground.right)
    forward = reach * along(ground.forward)
    dist = np.hypot(right, forward)

    sky_mix = np.clip(sine * 3.0, 0.0, 1.0)[..., None] ** 0.6
    img = SKY_HORIZON + (SKY_ZENITH - SKY_HORIZON) * sky_mix

    in_range = (dist >= checks.MIN_DISTANCE) & (dist <= checks.MAX_DISTANCE)
    ground_rgb = np.where(in_range[..., None], GROUND_IN_RANGE, GROUND)
    haze = (1.0 - np.exp(-dist / HAZE_DISTANCE))[..., None]
    ground_rgb = ground_rgb + (SKY_HORIZON - ground_rgb) * haze

    near_fade = np.clip(1.0 - dist / GRID_EXTENT, 0.0, 1.0) ** 1.5
    grid = np.zeros_like(dist)
    for coord in (right, forward):
        cov, per_px = _line_coverage(coord, 1.0, 1.0)
        grid = np.maximum(grid, cov * _uncrowded(per_px))
    # The line straight ahead of the camera, a little stronger: where "centre frame" is.
    centre, per_px = _line_coverage(right, 1e9, 1.6)
    grid = np.maximum(grid, centre * (forward > 0) * _uncrowded(per_px))
    grid_alpha = (grid * near_fade * 0.45)[..., None]
    ground_rgb = ground_rgb + (GRID - ground_rgb) * grid_alpha

    ring_alpha = np.zeros_like(dist)
    angle = np.arctan2(right, forward)
    for radius in (checks.MIN_DISTANCE, checks.MAX_DISTANCE):
        cov, per_px = _line_coverage(dist - radius, 1e9, 1.8)
        dash = (np.floor(angle * radius / RING_DASH) % 2) == 0
        ring_alpha = np.maximum(ring_alpha, cov * dash * _uncrowded(per_px))
    ground_rgb = ground_rgb + (RING - ground_rgb) * (ring_alpha * 0.55)[..., None]

    img = np.where(sees_ground[..., None], ground_rgb, img)

    # The horizon: where rays run parallel to the ground, a line one pixel wide.
    slope = np.hypot(ground.up[0], ground.up[1]) / f
    if slope > 1e-12:
        horizon = np.clip(1.0 - np.abs(rise) / slope, 0.0, 1.0)[..., None] * 0.7
        img = img + (HORIZON - img) * horizon
    return np.clip(np.round(img), 0, 255).astype(np.uint8)
