"""Trajectory templates: paths drawn relative to the camera, evaluated and turned into keyframes.

Pure Python + numpy (no bpy). A template is drawn the way a turtle walks, in the camera's
ground frame: metres, x to the camera's right, y forward along the camera's ground heading,
origin on the ground under the camera. Headings are degrees clockwise seen from above:
0 = walking away from the camera, 90 = to its right, 180 = towards it (checks.heading_degrees
uses the same convention); a positive turn is a turn to the right. An entity covers its whole
path during the shot at a steady speed (each segment takes time in proportion to its length,
or to its `share`), so a longer shot moves it more slowly. backend/presets.py reads templates
from JSON; docs/presets.md describes the format.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from . import checks, poses, timeplan

SEGMENT_TYPES = ("line", "arc", "spin", "wait")
FACING_MODES = ("path", "backward", "fixed")
# The direction each facing axis points in the empty's own XY plane, radians from local +X.
AXIS_ANGLES = {"POS_X": 0.0, "POS_Y": math.pi / 2, "NEG_X": math.pi, "NEG_Y": -math.pi / 2}
# Keyframe spacing (see template_keyframes): at most this long apart, and the path or the facing
# may turn at most this much from one key to the next. Measured in Blender 4.2 and 5.0 with both
# of its auto-smoothing modes, the built-in templates then stay within 1 cm and 2 degrees.
KEY_MAX_SECONDS = 0.25
KEY_MAX_TURN_DEG = 12.0
DEFAULT_FPS = 24.0
# The camera template_findings() assumes: eye height, the training rig's pitch, looking along +Y.
EYE_HEIGHT = 1.6


class TemplateError(ValueError):
    """A template cannot be evaluated as asked (no such entity, an empty shot)."""


@dataclass(frozen=True)
class Segment:
    """One piece of a path: line (`length` or `to`), arc, spin (turn on the spot) or wait."""

    type: str
    length: float = 0.0
    to: tuple[float, float] | None = None
    radius: float = 0.0
    turn_deg: float = 0.0
    share: float | None = None  # time weight; default: the segment's length in metres


@dataclass(frozen=True)
class TemplateEntity:
    role: str
    start: tuple[float, float]
    heading_deg: float
    segments: tuple[Segment, ...]
    facing: str = "path"  # path: along the tangent; backward: walks backwards; fixed: facing_deg
    facing_deg: float = 0.0
    height_m: float = 0.0
    stationary: bool = False


@dataclass(frozen=True)
class Template:
    name: str
    description: str
    default_duration_s: float
    entities: tuple[TemplateEntity, ...]
    source: str = ""


@dataclass(frozen=True)
class Keyframe:
    """One keyframe for an empty: world location (metres) and rotation_euler Z (radians)."""

    frame: int
    location: tuple[float, float, float]
    rotation_z: float


# --- laying out and evaluating a path ---------------------------------------------------------


def _direction(heading: np.ndarray | float) -> np.ndarray:
    """Unit ground vector(s) for heading(s) in radians (clockwise from +y)."""
    return np.stack([np.sin(heading), np.cos(heading)], axis=-1)


def _right_of(heading: np.ndarray | float) -> np.ndarray:
    return np.stack([np.cos(heading), -np.sin(heading)], axis=-1)


@dataclass(frozen=True)
class _Piece:
    """A segment laid out in space: where it starts, what it does and its time weight."""

    kind: str  # line, arc or still (spin, wait)
    share: float
    start: np.ndarray
    heading: float  # path heading at the start, radians
    turn: float  # radians turned over the piece (arc, spin)
    length: float  # metres covered (line, arc)
    radius: float = 0.0


def _arc_point(piece: _Piece, s: np.ndarray | float) -> np.ndarray:
    side = math.copysign(1.0, piece.turn)
    centre = piece.start + side * piece.radius * _right_of(piece.heading)
    return centre - side * piece.radius * _right_of(piece.heading + piece.turn * np.asarray(s))


def _layout(entity: TemplateEntity) -> list[_Piece]:
    """Walk the turtle through the segments once; a `to` line first snaps the heading to its target."""
    point = np.array(entity.start, dtype=np.float64)
    heading = math.radians(entity.heading_deg)
    pieces = []
    for seg in entity.segments:
        if seg.type == "line":
            length = seg.length
            if seg.to is not None:
                delta = np.array(seg.to) - point
                length = float(np.hypot(*delta))
                if length > 1e-9:
                    # The short way round from the current heading, so headings stay continuous.
                    target = math.atan2(delta[0], delta[1])
                    heading += (target - heading + math.pi) % (2 * math.pi) - math.pi
            piece = _Piece("line", seg.share or length, point, heading, 0.0, length)
            point = point + length * _direction(heading)
        elif seg.type == "arc":
            turn = math.radians(seg.turn_deg)
            piece = _Piece(
                "arc", seg.share or seg.radius * abs(turn), point, heading, turn, seg.radius * abs(turn), seg.radius
            )
            point = _arc_point(piece, 1.0)
            heading += turn
        else:
            turn = math.radians(seg.turn_deg)
            piece = _Piece("still", seg.share or 0.0, point, heading, turn, 0.0)
            heading += turn
        pieces.append(piece)
    return pieces


def path_length(entity: TemplateEntity) -> float:
    """Metres the entity covers along its path."""
    return float(sum(p.length for p in _layout(entity)))


def _evaluate(entity: TemplateEntity, fractions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions (N, 3), path headings (N,) and facing yaws (N,) at fractions 0..1 of the shot."""
    u = np.clip(np.asarray(fractions, dtype=np.float64).ravel(), 0.0, 1.0)
    pieces = _layout(entity)
    positions = np.zeros((u.size, 3))
    headings = np.full(u.size, math.radians(entity.heading_deg))
    spun = np.zeros(u.size)  # turning done by spin segments so far (facing "fixed" follows only that)
    positions[:, :2] = entity.start
    total = sum(p.share for p in pieces)
    if total > 0:
        bounds = np.concatenate([[0.0], np.cumsum([p.share for p in pieces])])
        at = u * total
        which = np.clip(np.searchsorted(bounds, at, side="right") - 1, 0, len(pieces) - 1)
        spun_before = np.cumsum([0.0] + [p.turn if p.kind == "still" else 0.0 for p in pieces])
        for i, piece in enumerate(pieces):
            mask = which == i
            if not mask.any():
                continue
            s = np.clip((at[mask] - bounds[i]) / piece.share, 0.0, 1.0) if piece.share > 0 else np.ones(mask.sum())
            headings[mask] = piece.heading + piece.turn * s
            spun[mask] = spun_before[i]
            if piece.kind == "line":
                positions[mask, :2] = piece.start + (piece.length * s)[:, None] * _direction(piece.heading)
            elif piece.kind == "arc":
                positions[mask, :2] = _arc_point(piece, s)
            else:
                positions[mask, :2] = piece.start
                spun[mask] += piece.turn * s
    elif pieces:  # only zero-length pieces: the entity ends where the last one leaves it
        positions[:, :2] = pieces[-1].start
        headings[:] = pieces[-1].heading + pieces[-1].turn
    positions[:, 2] = entity.height_m
    if entity.facing == "backward":
        yaws = headings + math.pi
    elif entity.facing == "fixed":
        yaws = math.radians(entity.facing_deg) + spun
    else:
        yaws = headings.copy()
    return positions, headings, yaws


def _entity_of(template: Template, entity_index: int) -> TemplateEntity:
    if not 0 <= entity_index < len(template.entities):
        count = len(template.entities)
        raise TemplateError(
            f"the template {template.name!r} has {count} entit{'y' if count == 1 else 'ies'}; "
            f"entity {entity_index} does not exist"
        )
    return template.entities[entity_index]


def sample_template(
    template: Template, entity_index: int, duration_s: float, times: Sequence[float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Where one of the template's entities is at `times` (seconds from the shot start).

    Returns positions (T, 3) in the camera's ground frame (x right, y forward, z up; metres) and
    yaws (T,): the entity's facing as a heading in radians, clockwise seen from above, 0 = facing
    away from the camera. Yaws are continuous (a full circle ends 2 pi from where it began).
    Times outside [0, duration_s] hold the first or last pose.
    """
    entity = _entity_of(template, entity_index)
    if not duration_s > 0:
        raise TemplateError(f"the shot must last longer than 0 seconds, got {duration_s}")
    t = np.asarray(times, dtype=np.float64)
    positions, _, yaws = _evaluate(entity, t / duration_s)
    return positions.reshape((*t.shape, 3)), yaws.reshape(t.shape)


def template_speeds(template: Template, duration_s: float | None = None) -> list[float]:
    """Each entity's top ground speed (m/s) in a shot of `duration_s` (default: the template's own)."""
    duration = duration_s or template.default_duration_s
    speeds = []
    for entity in template.entities:
        pieces = _layout(entity)
        total = sum(p.share for p in pieces)
        moving = [p.length * total / (duration * p.share) for p in pieces if p.length > 0 and p.share > 0]
        speeds.append(max(moving, default=0.0))
    return speeds


# --- into Blender's world ---------------------------------------------------------------------


def camera_ground(camera_matrix: np.ndarray, ground_z: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The template frame in world space: origin under the camera, right and forward unit vectors.

    The camera's ground heading is the one the Rig mapping uses (a camera looking straight down
    takes it from the top edge of its view).
    """
    rig = poses.rig_camera(poses.camera_frame(np.asarray(camera_matrix, dtype=np.float64)), ground_z)
    right = rig[0] / np.linalg.norm(rig[0])
    forward = np.array([-right[1], right[0], 0.0])  # right turned 90 degrees anticlockwise
    return rig[3], right, forward


def to_world(
    positions: np.ndarray,
    yaws: np.ndarray,
    camera_matrix: np.ndarray,
    facing: poses.FacingAxis = "NEG_Y",
    ground_z: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Template-frame positions and yaws -> world locations (T, 3) and rotation_euler Z (T,).

    `facing` is the empty's local axis that should point where the entity faces. The Z
    rotations stay continuous and the first lies in (-pi, pi].
    """
    if facing not in AXIS_ANGLES:
        raise TemplateError(f"facing axis must be one of {', '.join(AXIS_ANGLES)}, got {facing!r}")
    origin, right, forward = camera_ground(camera_matrix, ground_z)
    p = np.asarray(positions, dtype=np.float64)
    world = origin + p[..., :1] * right + p[..., 1:2] * forward
    world[..., 2] = ground_z + p[..., 2]
    # A heading turns clockwise; Blender's Z rotation turns anticlockwise, hence the minus.
    rz = math.atan2(forward[1], forward[0]) - np.asarray(yaws, dtype=np.float64) - AXIS_ANGLES[facing]
    if rz.size:
        rz = rz - 2 * math.pi * math.ceil((rz.flat[0] - math.pi) / (2 * math.pi))
    return world, rz


def _largest_window(per_frame: np.ndarray, width: int) -> float:
    """The largest sum of `width` consecutive values."""
    sums = np.concatenate([[0.0], np.cumsum(per_frame)])
    if len(sums) <= width:
        return float(sums[-1])
    return float(np.max(sums[width:] - sums[:-width]))


def key_step(template: Template, entity_index: int, fps: float, frame_start: int, frame_end: int) -> int:
    """Frames between keyframes: KEY_MAX_SECONDS at most, fewer where the path or the facing turns fast."""
    entity = _entity_of(template, entity_index)
    frames = np.arange(frame_start, frame_end + 1, dtype=np.float64)
    _, headings, yaws = _evaluate(entity, (frames - frame_start) / (frame_end - frame_start))
    turning = np.maximum(np.abs(np.diff(headings)), np.abs(np.diff(yaws)))
    limit = math.radians(KEY_MAX_TURN_DEG) + 1e-9
    step = max(1, math.floor(KEY_MAX_SECONDS * fps))
    while step > 1 and _largest_window(turning, step) > limit:
        step -= 1
    return step


def _segment_end_seconds(entity: TemplateEntity, duration_s: float) -> np.ndarray:
    """Seconds from the shot start at which each segment but the last ends."""
    shares = [p.share for p in _layout(entity)]
    total = sum(shares)
    return np.cumsum(shares)[:-1] / total * duration_s if total > 0 else np.zeros(0)


def _sample_rolling(entity: TemplateEntity, duration_s: float, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions and yaws at `times`, continued before the start and after the end.

    The continuation keeps the end's speed and turning rates (a line goes straight on, a circle
    keeps circling, a spin keeps spinning), so the keys beyond the shot agree with those inside it.
    """
    positions, _, yaws = _evaluate(entity, times / duration_s)
    h = 1e-4
    for end, inside, outside in ((0.0, h, times < 0.0), (1.0, 1.0 - h, times > duration_s)):
        if not outside.any():
            continue
        p, heading, yaw = _evaluate(entity, np.array([end, inside]))
        dt = (end - inside) * duration_s
        speed = float(np.linalg.norm(p[0, :2] - p[1, :2])) / abs(dt)
        turn_rate = (heading[0] - heading[1]) / dt
        tau = times[outside] - end * duration_s
        if abs(turn_rate) < 1e-9:
            path = speed * tau[:, None] * _direction(heading[0])
        else:  # the integral of speed * direction(heading + turn_rate * tau)
            h0, h1 = heading[0], heading[0] + turn_rate * tau
            path = speed / turn_rate * np.stack([np.cos(h0) - np.cos(h1), np.sin(h1) - np.sin(h0)], axis=-1)
        positions[outside, :2] = p[0, :2] + path
        yaws[outside] = yaw[0] + tau * (yaw[0] - yaw[1]) / dt
    return positions, yaws


def template_keyframes(
    template: Template,
    entity_index: int,
    fps: float,
    frame_start: int,
    frame_end: int,
    camera_matrix: np.ndarray,
    facing: poses.FacingAxis = "NEG_Y",
    ground_z: float = 0.0,
) -> list[Keyframe]:
    """World-space keyframes that make an empty follow one of the template's entities.

    The template is laid out in front of the camera (its ground position and heading, see
    camera_ground) and stretched over the shot: frame_start is the path's start, frame_end its
    end. Meant for Blender's default interpolation (Bezier, auto-clamped handles, either
    auto-smoothing mode), which then stays within about 1 cm and 2 degrees of the template:
    keys every key_step() frames, one where each segment ends, and two beyond each end of the
    shot that continue the motion (pre- and post-roll). Rotation Z is continuous from key to key
    (no 359 -> 0 flips); the empty's X and Y rotations should be zero.
    """
    if frame_end <= frame_start:
        raise TemplateError(f"the shot's last frame ({frame_end}) must come after its first ({frame_start})")
    if not fps > 0:
        raise TemplateError(f"frames per second must be greater than 0, got {fps}")
    entity = _entity_of(template, entity_index)
    duration = (frame_end - frame_start) / fps
    step = key_step(template, entity_index, fps, frame_start, frame_end)
    # Blender flattens the handles of a curve's first and last key (an ease in and out), and its
    # continuous-acceleration smoothing carries that a key or two inwards: the roll keys keep it
    # outside the shot.
    frames = {*range(frame_start - 2 * step, frame_end, step), frame_end, frame_end + step, frame_end + 2 * step}
    # A key where the turning rate jumps (a line meets an arc, an S-curve changes sides) keeps the
    # curve from rounding off that corner of the heading.
    corners = {round(frame_start + t * fps) for t in _segment_end_seconds(entity, duration)}
    keys = sorted(frames | {f for f in corners if frame_start < f < frame_end})
    seconds = (np.asarray(keys, dtype=np.float64) - frame_start) / fps
    positions, yaws = _sample_rolling(entity, duration, seconds)
    world, rz = to_world(positions, yaws, camera_matrix, facing, ground_z)
    return [
        Keyframe(f, (float(x), float(y), float(z)), float(r)) for f, (x, y, z), r in zip(keys, world, rz, strict=True)
    ]


def default_camera() -> np.ndarray:
    """A camera at eye height over the origin with the training rig's pitch, looking along +Y."""
    slope = poses.RIG_FORWARD_Z / math.sqrt(1.0 - poses.RIG_FORWARD_Z**2)
    return poses.look_at_camera((0.0, 0.0, EYE_HEIGHT), (0.0, 10.0, EYE_HEIGHT + 10.0 * slope))


def template_findings(
    template: Template,
    duration_s: float | None = None,
    fps: float = DEFAULT_FPS,
    mapping: poses.Mapping = "rig",
    camera_matrix: np.ndarray | None = None,
) -> list[checks.Finding]:
    """The in-distribution warnings the template would raise in a shot of `duration_s` seconds.

    Evaluated at the shot's 13 pose slots with the same checks a shot gets (checks.check_entity);
    the camera defaults to default_camera().
    """
    duration = duration_s or template.default_duration_s
    camera = default_camera() if camera_matrix is None else np.asarray(camera_matrix, dtype=np.float64)
    slots = np.asarray(timeplan.pose_times(0.0, duration * fps))
    seconds = slots / fps
    cameras = np.broadcast_to(camera, (len(slots), 4, 4))
    context = poses.camera_context(cameras, mapping)
    found = checks.check_count(len(template.entities))
    for k, entity in enumerate(template.entities):
        positions, yaws = sample_template(template, k, duration, seconds)
        world, rz = to_world(positions, yaws, camera)
        matrices = np.stack([poses.yaw_matrix(r, tuple(p)) for p, r in zip(world, rz, strict=True)])
        pose = poses.model_poses(cameras, matrices, "NEG_Y", mapping)
        found += checks.check_entity(k, f"{template.name} ({entity.role})", pose, context, mapping)
    return found
