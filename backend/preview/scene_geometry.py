"""Camera-frame geometry of a preview frame: the ground, each entity's marker, clipping.

Everything here is in the model camera's frame (x right, y up, z forward, metres; see
backend/poses.py) until project() turns it into pixels of the 720 x 480 image. Polygons are
clipped at a near plane before projecting, so a point behind the camera never wraps around to
the other side of the picture.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import poses

# The near plane (metres in front of the lens): closer than this nothing is drawn.
NEAR = 0.05

# The marker: an upright block as tall as the entity (the job's entities[].height; a person
# when it has none), so scale reads at a glance: a dog is a low block, an elephant a tall one.
BODY_HEIGHT = 1.7
BODY_WIDTH = 0.56
BODY_DEPTH = 0.32
# The block's width, depth and footprint follow its height within these factors of a person's:
# a 0.5 m robot dog stays wide enough to see at 13 m, a 4 m mech does not become a wall.
GIRTH_RANGE = (0.6, 1.8)
# The band across the front face near the top (fractions of the height) that shows which way
# the block faces: at eye height (1.36-1.56 m) for a person.
VISOR = (1.36 / BODY_HEIGHT, 1.56 / BODY_HEIGHT)
FOOTPRINT_RADIUS = 0.55
# The ground arrow, as (right, forward) offsets from the foot point in metres.
ARROW_TIP = 1.5
ARROW = np.array(
    [(-0.09, 0.34), (-0.09, 1.0), (-0.28, 1.0), (0.0, ARROW_TIP), (0.28, 1.0), (0.09, 1.0), (0.09, 0.34)],
)
# A soft key light from above, slightly left and behind the camera, for the block's faces.
_LIGHT = np.array([-0.45, 1.0, -0.6])

# The lowest camera height drawn; a camera on or under the ground has no ground in view.
MIN_CAMERA_HEIGHT = 0.05


@dataclass(frozen=True)
class Ground:
    """The ground plane {p : p . up = -height} and a basis on it under the camera."""

    up: np.ndarray  # world up in the camera frame (unit)
    height: float  # camera height above the ground (m)
    forward: np.ndarray  # the camera's view direction flattened onto the ground (unit)
    right: np.ndarray  # up x forward in camera coordinates: screen right, on the ground

    @property
    def origin(self) -> np.ndarray:
        """The ground point under the camera."""
        return -self.height * self.up

    def foot(self, point: np.ndarray) -> np.ndarray:
        """The ground point straight below (or above) `point`."""
        return point - (float(point @ self.up) + self.height) * self.up

    def flatten(self, direction: np.ndarray) -> np.ndarray:
        """The horizontal part of `direction` (not normalised)."""
        return direction - float(direction @ self.up) * self.up

    def distance(self, point: np.ndarray) -> float:
        """Horizontal distance from the camera, as backend.checks measures it."""
        return float(np.linalg.norm(self.flatten(point)))


def ground_from_context(context: np.ndarray) -> Ground:
    """A camera context row [up (3), height] -> the Ground."""
    up = np.asarray(context[:3], dtype=np.float64)
    up = up / np.linalg.norm(up)
    height = max(float(context[3]), MIN_CAMERA_HEIGHT)
    forward = _flat_unit(np.array([0.0, 0.0, 1.0]), up, fallback=np.array([0.0, 1.0, 0.0]))
    return Ground(up, height, forward, np.cross(up, forward))


def _flat_unit(direction: np.ndarray, up: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    flat = direction - (direction @ up) * up
    if np.linalg.norm(flat) < 1e-6:  # looking (or facing) straight up or down
        flat = fallback - (fallback @ up) * up
    return flat / np.linalg.norm(flat)


@dataclass(frozen=True)
class Face:
    points: np.ndarray  # (n, 3) camera-frame polygon
    shade: float  # brightness factor for the face's colour
    kind: str  # "footprint", "arrow", "side", "front", "visor", "top"


@dataclass(frozen=True)
class Marker:
    """One entity at one instant, ready to project."""

    pivot: np.ndarray  # apparent pivot (camera frame)
    foot: np.ndarray  # ground point below the pivot
    heading: np.ndarray  # facing direction on the ground (unit)
    head: np.ndarray  # top centre of the block
    distance: float  # horizontal distance from the camera (m)
    faces: list[Face]  # in drawing order: ground first, then the visible block faces


def entity_heading(rotation: np.ndarray, ground: Ground) -> np.ndarray:
    """The entity's forward (rotation column 2) flattened onto the ground.

    An entity lying on its nose or back has no horizontal forward; then its head (the up
    column) says where it points, as backend.poses does for the rig mapping.
    """
    forward, up = rotation[:, 2], rotation[:, 1]
    nose_down = float(forward @ ground.up) < 0
    return _flat_unit(forward, ground.up, fallback=up if nose_down else -up)


def marker(pose: np.ndarray, context: np.ndarray, mapping: poses.Mapping, height: float = BODY_HEIGHT) -> Marker:
    """The marker of one 12-vector: a block `height` metres tall standing on the ground below the
    apparent pivot, turned to the entity's heading, on a footprint disc with an arrow along the
    heading."""
    ground = ground_from_context(context)
    girth = min(max(height / BODY_HEIGHT, GIRTH_RANGE[0]), GIRTH_RANGE[1])
    rotation, _ = poses.split_pose(pose)
    pivot = poses.apparent_position(pose, context, mapping)
    foot = ground.foot(pivot)
    fwd = entity_heading(rotation, ground)
    right = np.cross(ground.up, fwd)  # physical right in the camera's (right, up, forward) axes
    up = ground.up

    def on_ground(offsets: np.ndarray, lift: float = 0.0) -> np.ndarray:
        return foot + offsets[:, :1] * right + offsets[:, 1:2] * fwd + lift * up

    angles = np.linspace(0.0, 2 * np.pi, 40, endpoint=False)
    disc = np.stack([np.cos(angles), np.sin(angles)], axis=1) * FOOTPRINT_RADIUS * girth
    # The arrow starts at the footprint's rim and keeps its length: the heading reads the same.
    arrow = ARROW + np.array([0.0, FOOTPRINT_RADIUS * (girth - 1.0)])
    faces = [
        Face(on_ground(disc), 1.0, "footprint"),
        Face(on_ground(arrow), 1.0, "arrow"),
    ]
    faces.extend(_block_faces(foot, right, up, fwd, height, girth))
    return Marker(pivot, foot, fwd, foot + height * up, ground.distance(foot), faces)


def _block_faces(
    foot: np.ndarray, right: np.ndarray, up: np.ndarray, fwd: np.ndarray, h: float, girth: float
) -> list[Face]:
    """The block's faces that face the camera (it sits at the origin), lit by _LIGHT."""
    hw, hd = BODY_WIDTH * girth / 2, BODY_DEPTH * girth / 2

    def corner(x: float, y: float, z: float) -> np.ndarray:
        return foot + x * right + y * up + z * fwd

    boxes = {
        "front": (fwd, [corner(-hw, 0, hd), corner(hw, 0, hd), corner(hw, h, hd), corner(-hw, h, hd)]),
        "back": (-fwd, [corner(hw, 0, -hd), corner(-hw, 0, -hd), corner(-hw, h, -hd), corner(hw, h, -hd)]),
        "right": (right, [corner(hw, 0, hd), corner(hw, 0, -hd), corner(hw, h, -hd), corner(hw, h, hd)]),
        "left": (-right, [corner(-hw, 0, -hd), corner(-hw, 0, hd), corner(-hw, h, hd), corner(-hw, h, -hd)]),
        "top": (up, [corner(-hw, h, hd), corner(hw, h, hd), corner(hw, h, -hd), corner(-hw, h, -hd)]),
    }
    light = _LIGHT / np.linalg.norm(_LIGHT)
    faces = []
    for name, (normal, corners) in boxes.items():
        pts = np.array(corners)
        # A convex block: a face is visible exactly when it faces the camera, and visible faces
        # never overlap, so no sorting is needed.
        if float(normal @ pts.mean(axis=0)) >= 0:
            continue
        shade = 0.62 + 0.38 * max(0.0, float(normal @ light))
        faces.append(Face(pts, shade, "top" if name == "top" else ("front" if name == "front" else "side")))
        if name == "front":
            lo, hi = VISOR[0] * h, VISOR[1] * h
            band = [
                corner(-hw * 0.8, lo, hd),
                corner(hw * 0.8, lo, hd),
                corner(hw * 0.8, hi, hd),
                corner(-hw * 0.8, hi, hd),
            ]
            faces.append(Face(np.array(band), 0.3, "visor"))
    return faces


# --- clipping and projection -----------------------------------------------------------------


def clip_polygon(points: np.ndarray, normal: np.ndarray, offset: float) -> np.ndarray:
    """Sutherland-Hodgman against one half-space {p : p . normal >= offset}; any dimension.

    Returns the clipped polygon (possibly empty, shape (0, d)).
    """
    if len(points) == 0:
        return points
    side = points @ normal - offset
    out = []
    n = len(points)
    for i in range(n):
        a, b = points[i], points[(i + 1) % n]
        sa, sb = side[i], side[(i + 1) % n]
        if sa >= 0:
            out.append(a)
        if (sa >= 0) != (sb >= 0):
            out.append(a + (b - a) * (sa / (sa - sb)))
    return np.array(out) if out else np.zeros((0, points.shape[1]))


def clip_near(points: np.ndarray) -> np.ndarray:
    """A camera-frame polygon with the part closer than the near plane cut away."""
    return clip_polygon(points, np.array([0.0, 0.0, 1.0]), NEAR)


def clip_rect(points: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """A pixel polygon cut to a rectangle (keeps Pillow's coordinates small and finite)."""
    for normal, offset in (((1.0, 0.0), x0), ((-1.0, 0.0), -x1), ((0.0, 1.0), y0), ((0.0, -1.0), -y1)):
        points = clip_polygon(points, np.array(normal), offset)
    return points


def project_polygon(points: np.ndarray, bounds: tuple[float, float, float, float]) -> np.ndarray:
    """Camera-frame polygon -> pixel polygon: clipped at the near plane, then to `bounds`."""
    front = clip_near(points)
    if len(front) < 3:
        return np.zeros((0, 2))
    pixels = clip_rect(poses.project(front), *bounds)
    return pixels if len(pixels) >= 3 else np.zeros((0, 2))


def in_frame(pixel: np.ndarray, width: int = poses.MODEL_WIDTH, height: int = poses.MODEL_HEIGHT) -> bool:
    return bool(np.all(np.isfinite(pixel)) and 0 <= pixel[0] <= width and 0 <= pixel[1] <= height)
