"""Pose math: Blender world matrices -> the injector's 12-vectors.

Pure Python + numpy (no bpy, no torch): the add-on imports it inside Blender and the backend
imports it in its own process, so the convention exists exactly once. Conventions and test
vectors: docs/pose-conventions.md (from the model reference, section 2).

A *frame* here is an orthonormal basis plus an origin, as an array of shape (..., 4, 3): rows
are right, up, forward (unit vectors in world space) and position. Every function accepts a
leading batch shape so a whole shot (13 or 49 instants) is converted in one call.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

FacingAxis = Literal["POS_X", "NEG_X", "POS_Y", "NEG_Y"]
Mapping = Literal["rig", "exact"]

FACING_AXES: tuple[str, ...] = ("POS_X", "NEG_X", "POS_Y", "NEG_Y")
MAPPINGS: tuple[str, ...] = ("rig", "exact")

# The training rig (model reference, section 2): cameras pitched so that the forward vector's
# vertical component is exactly this, roll 0; entity pivots recorded this far above the camera.
RIG_FORWARD_Z = -0.09334070869305827
RIG_PITCH_DEG = math.degrees(math.asin(RIG_FORWARD_Z))  # -5.356
RIG_PIVOT_HEIGHT = 1.47103

# The model's camera: 35 mm lens on a 23.76 mm wide sensor, 720 x 480 pixels.
MODEL_LENS_MM = 35.0
MODEL_SENSOR_WIDTH_MM = 23.76
MODEL_WIDTH = 720
MODEL_HEIGHT = 480
MODEL_FOCAL_PX = MODEL_LENS_MM / MODEL_SENSOR_WIDTH_MM * MODEL_WIDTH  # 1060.6

# The rig's recorded heights do not match what its renders show (model reference, section 2):
# the ring target (8 m away) sits at the image centre, so the pivot *appears* 8 m * tan(5.356 deg)
# below the camera. The preview engine and the in-view check use this apparent geometry in rig
# mode; a character's pivot is drawn at hip height above an eye-height camera's ground.
RIG_RING_RADIUS = 8.0
RIG_APPARENT_CAMERA_HEIGHT = 1.6
RIG_APPARENT_PIVOT_HEIGHT = RIG_APPARENT_CAMERA_HEIGHT - RIG_RING_RADIUS * -RIG_FORWARD_Z / math.sqrt(
    1.0 - RIG_FORWARD_Z**2
)

# How far a matrix may be from rigid (after scale is removed) before it is refused.
RIGID_TOLERANCE = 1e-3


class PoseError(ValueError):
    """A matrix that cannot be turned into a pose (singular, sheared, non-finite)."""


def _unit(v: np.ndarray, what: str) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    if not np.all(np.isfinite(n)) or np.any(n < 1e-9):
        raise PoseError(f"{what} has zero length (the object is scaled to zero or degenerate)")
    return v / n


def rigid_frame(matrix: np.ndarray, what: str = "matrix") -> np.ndarray:
    """A 4x4 world matrix (any batch shape) with its scale removed, as local axes + origin.

    Returns (..., 4, 3): rows are the local X, Y, Z axes (unit length) and the translation.
    Raises PoseError if the matrix is non-finite, singular, sheared or mirrored.
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape[-2:] != (4, 4):
        raise PoseError(f"{what} must be 4x4, got shape {m.shape[-2:]}")
    if not np.all(np.isfinite(m)):
        raise PoseError(f"{what} contains NaN or infinite numbers")
    if not np.allclose(m[..., 3, :], [0.0, 0.0, 0.0, 1.0], atol=1e-6):
        raise PoseError(f"{what} has a projective last row; it is not an object transform")
    cols = np.swapaxes(m[..., :3, :3], -1, -2)  # rows = the three basis columns
    axes = _unit(cols, what)
    gram = axes @ np.swapaxes(axes, -1, -2)
    if np.max(np.abs(gram - np.eye(3)), initial=0.0) > RIGID_TOLERANCE:
        raise PoseError(f"{what} is sheared (its axes are not perpendicular); apply or clear the shear")
    if np.any(np.linalg.det(axes) <= 0):
        raise PoseError(f"{what} is mirrored (negative scale); use a positive scale")
    return np.concatenate([axes, m[..., None, :3, 3]], axis=-2)


def camera_frame(camera_matrix: np.ndarray) -> np.ndarray:
    """Blender camera world matrix -> (right, up, forward, position); a camera looks down -Z."""
    local = rigid_frame(camera_matrix, "camera matrix")
    return np.stack([local[..., 0, :], local[..., 1, :], -local[..., 2, :], local[..., 3, :]], axis=-2)


def entity_frame(entity_matrix: np.ndarray, facing: FacingAxis = "NEG_Y") -> np.ndarray:
    """Entity world matrix -> (right, up, forward, position) with up = local +Z.

    `facing` is the local axis the entity looks along; right = forward x up (Blender is
    right-handed), so for the default NEG_Y right is local -X.
    """
    local = rigid_frame(entity_matrix, "entity matrix")
    x, y, z, p = (local[..., i, :] for i in range(4))
    forward = {"POS_X": x, "NEG_X": -x, "POS_Y": y, "NEG_Y": -y}.get(facing)
    if forward is None:
        raise PoseError(f"facing axis must be one of {', '.join(FACING_AXES)}, got {facing!r}")
    right = np.cross(forward, z)
    return np.stack([right, z, forward, p], axis=-2)


def relative_pose(camera: np.ndarray, entity: np.ndarray) -> np.ndarray:
    """Two frames -> the model's 12-vector(s): R' column by column, then t' (model reference 2)."""
    cam_axes = camera[..., :3, :]
    rot = cam_axes @ np.swapaxes(entity[..., :3, :], -1, -2)  # rot[a, b] = cam_a . ent_b
    t = cam_axes @ (entity[..., 3, :] - camera[..., 3, :])[..., None]
    return np.concatenate([np.swapaxes(rot, -1, -2).reshape((*rot.shape[:-2], 9)), t[..., 0]], axis=-1)


def _ground_heading(forward: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Unit heading of `forward` on the ground plane.

    Where `forward` is vertical (a camera looking straight down, an entity on its nose) the
    heading is read from `up` instead: it points where the top of the view / the head points.
    """
    flat = forward * np.array([1.0, 1.0, 0.0])
    alt = up * np.array([1.0, 1.0, 0.0]) * -np.sign(forward[..., 2:3])
    weak = np.linalg.norm(flat, axis=-1, keepdims=True) < 1e-6
    return _unit(np.where(weak, alt, flat), "heading")


def rig_camera(camera: np.ndarray, ground_z: float = 0.0) -> np.ndarray:
    """The virtual training-rig camera standing in for a real camera frame (Rig mapping)."""
    heading = _ground_heading(camera[..., 2, :], camera[..., 1, :])
    cos_p = math.sqrt(1.0 - RIG_FORWARD_Z**2)
    zed = np.broadcast_to(np.array([0.0, 0.0, 1.0]), heading.shape)
    forward = heading * cos_p + zed * RIG_FORWARD_Z
    up = heading * -RIG_FORWARD_Z + zed * cos_p
    right = np.cross(forward, up)
    position = camera[..., 3, :].copy()
    position[..., 2] = ground_z
    return np.stack([right, up, forward, position], axis=-2)


def rig_entity(entity: np.ndarray, ground_z: float = 0.0) -> np.ndarray:
    """A yaw-only stand-in for an entity frame, pivot at the rig's recorded height (Rig mapping)."""
    forward = _ground_heading(entity[..., 2, :], entity[..., 1, :])
    up = np.broadcast_to(np.array([0.0, 0.0, 1.0]), forward.shape)
    right = np.cross(forward, up)
    position = entity[..., 3, :].copy()
    position[..., 2] = ground_z + RIG_PIVOT_HEIGHT
    return np.stack([right, up, forward, position], axis=-2)


def model_poses(
    camera_matrices: np.ndarray,
    entity_matrices: np.ndarray,
    facing: FacingAxis = "NEG_Y",
    mapping: Mapping = "rig",
    ground_z: float = 0.0,
) -> np.ndarray:
    """World matrices at the same instants -> 12-vectors, shape (..., 12)."""
    cam = camera_frame(camera_matrices)
    ent = entity_frame(entity_matrices, facing)
    if mapping == "rig":
        cam, ent = rig_camera(cam, ground_z), rig_entity(ent, ground_z)
    elif mapping != "exact":
        raise PoseError(f"pose mapping must be 'rig' or 'exact', got {mapping!r}")
    return relative_pose(cam, ent)


def camera_context(camera_matrices: np.ndarray, mapping: Mapping = "rig", ground_z: float = 0.0) -> np.ndarray:
    """World up in the model camera's frame and the camera's height over the ground: (..., 4).

    The preview engine needs these to draw the ground and the checks to measure distances on
    it; in rig mode they are the apparent rig geometry (see RIG_APPARENT_CAMERA_HEIGHT).
    """
    cam = camera_frame(camera_matrices)
    if mapping == "rig":
        cam = rig_camera(cam, ground_z)
        height = np.full((*cam.shape[:-2], 1), RIG_APPARENT_CAMERA_HEIGHT)
    else:
        height = cam[..., 3, 2:3] - ground_z
    world_up = cam[..., :3, 2]  # the z component of right, up, forward
    return np.concatenate([world_up, height], axis=-1)


def rig_camera_context() -> list[float]:
    """camera_context() of any rig camera: the default when a job carries no camera block."""
    cos_p = math.sqrt(1.0 - RIG_FORWARD_Z**2)
    return [0.0, cos_p, RIG_FORWARD_Z, RIG_APPARENT_CAMERA_HEIGHT]


def tilt_degrees(entity_matrices: np.ndarray) -> np.ndarray:
    """How far an entity's up axis (local +Z) leans from world up, degrees: pitch and roll."""
    local = rigid_frame(entity_matrices, "entity matrix")
    return np.degrees(np.arccos(np.clip(local[..., 2, 2], -1.0, 1.0)))


def split_pose(pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """12-vector(s) -> (rotation (..., 3, 3) with rot[a, b] = cam_a . ent_b, translation (..., 3))."""
    p = np.asarray(pose, dtype=np.float64)
    rot = np.swapaxes(p[..., :9].reshape((*p.shape[:-1], 3, 3)), -1, -2)
    return rot, p[..., 9:12]


def apparent_position(pose: np.ndarray, context: np.ndarray, mapping: Mapping = "rig") -> np.ndarray:
    """Where the entity's pivot appears in the model camera's frame (metres, right/up/forward).

    Exact mode: the recorded position. Rig mode: the recorded pivot height is replaced by the
    apparent one, so the point lands where the rig's renders put it.
    """
    _, t = split_pose(pose)
    if mapping != "rig":
        return t
    up = np.asarray(context, dtype=np.float64)[..., :3]
    vertical = np.sum(t * up, axis=-1, keepdims=True)
    apparent = RIG_APPARENT_PIVOT_HEIGHT - RIG_APPARENT_CAMERA_HEIGHT
    return t + (apparent - vertical) * up


def project(points: np.ndarray) -> np.ndarray:
    """Camera-frame points (right, up, forward) -> model image pixels (x right, y down), (..., 2).

    Points at or behind the camera get NaN.
    """
    p = np.asarray(points, dtype=np.float64)
    z = p[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        x = MODEL_WIDTH / 2 + MODEL_FOCAL_PX * p[..., 0] / z
        y = MODEL_HEIGHT / 2 - MODEL_FOCAL_PX * p[..., 1] / z
    behind = z <= 1e-6
    return np.stack([np.where(behind, np.nan, x), np.where(behind, np.nan, y)], axis=-1)


def yaw_matrix(yaw: float, position: tuple[float, float, float]) -> np.ndarray:
    """A 4x4 with rotation `yaw` (radians) about world Z at `position`: handy for tests/templates."""
    c, s = math.cos(yaw), math.sin(yaw)
    m = np.eye(4)
    m[:2, :2] = [[c, -s], [s, c]]
    m[:3, 3] = position
    return m


def look_at_camera(position: tuple[float, float, float], target: tuple[float, float, float]) -> np.ndarray:
    """A Blender camera world matrix at `position` looking at `target` with no roll."""
    p = np.asarray(position, dtype=np.float64)
    forward = _unit(np.asarray(target, dtype=np.float64) - p, "look direction")
    right = np.cross(forward, [0.0, 0.0, 1.0])
    if np.linalg.norm(right) < 1e-9:
        right = np.array([1.0, 0.0, 0.0])
    right = _unit(right, "camera right")
    up = np.cross(right, forward)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, up, -forward, p
    return m
