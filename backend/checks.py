"""Does a shot stay where the model was trained? Structured warnings, no exceptions.

The training data (model reference, section 2): 1-3 entities, 3-13 m from a static camera, in
view, yaw only, 1-3 m/s over 2.8 s of motion per clip. Each finding is a Finding the add-on lists
under the entities, the overlay draws where it occurs, and the CLI prints as a warning event.
Besides those warnings, two info-level findings point at likely slips that may be intended: an
entity that does not move at all (a forgotten keyframe), and an entity the shot camera's own view
misses while the Rig mapping's camera frames it (the viewport then does not show the take's framing).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from . import poses, timeplan

MAX_ENTITIES = 3
MIN_DISTANCE = 3.0
MAX_DISTANCE = 13.0
MAX_SPEED = 3.0
MAX_TILT_DEG = 10.0
MAX_CAMERA_TRAVEL = 0.25
MAX_CAMERA_TURN_DEG = 3.0
# Over the whole shot an entity that stays this close to where it starts and turns less than this
# does not move: most often a forgotten keyframe (standing still can be intended: info only).
STILL_DISTANCE = 0.05
STILL_TURN_DEG = 2.0
# An entity counts as out of view when its pivot's apparent image point lies this far (pixels)
# outside the 720 x 480 frame: half a body width of slack before warning.
VIEW_MARGIN_PX = 20.0


# A frame's extent at unit depth in front of a camera: (left, right, bottom, top) tangents.
FrameBox = tuple[float, float, float, float]
MODEL_FRAME_BOX: FrameBox = (
    -poses.MODEL_WIDTH / 2 / poses.MODEL_FOCAL_PX,
    poses.MODEL_WIDTH / 2 / poses.MODEL_FOCAL_PX,
    -poses.MODEL_HEIGHT / 2 / poses.MODEL_FOCAL_PX,
    poses.MODEL_HEIGHT / 2 / poses.MODEL_FOCAL_PX,
)
# Fixes a finding can offer (the add-on shows a button for each).
FIX_LINEAR_KEYS = "linear_keys"


@dataclass(frozen=True)
class Finding:
    code: str
    # "info" (worth a look, may be intended), "warning" (the model may not follow) or "error"
    # (the model cannot run it)
    severity: str
    message: str
    entity: int | None = None  # index into the job's entities
    slots: list[int] = field(default_factory=list)  # pose slots where it occurs
    fix: str = ""  # a one-click fix the add-on offers (FIX_LINEAR_KEYS), else ""

    def as_dict(self) -> dict:
        return asdict(self)


def _slot_list(mask: np.ndarray) -> list[int]:
    return [int(i) for i in np.flatnonzero(mask)]


def _slots_text(slots: list[int]) -> str:
    return "all slots" if len(slots) >= 13 else "slot" + ("s " if len(slots) > 1 else " ") + ", ".join(map(str, slots))


def check_count(count: int) -> list[Finding]:
    if count == 0:
        return [Finding("no_entities", "error", "Add at least one entity (an empty with a prompt).")]
    if count > MAX_ENTITIES:
        return [
            Finding(
                "too_many_entities",
                "error",
                f"The model follows at most {MAX_ENTITIES} entities; this shot has {count}. "
                f"Remove {count - MAX_ENTITIES}.",
            )
        ]
    return []


def horizontal_offset(pose: np.ndarray, context: np.ndarray) -> np.ndarray:
    """The entity's position relative to the camera with the world-vertical part removed."""
    _, t = poses.split_pose(pose)
    up = np.asarray(context, dtype=np.float64)[..., :3]
    return t - np.sum(t * up, axis=-1, keepdims=True) * up


def check_entity(
    index: int,
    name: str,
    pose: np.ndarray,
    context: np.ndarray,
    mapping: poses.Mapping,
    tilt: np.ndarray | None = None,
    eased: bool | None = None,
) -> list[Finding]:
    """Findings for one entity's 13 pose slots.

    `tilt` (degrees from upright per slot, see poses.tilt_degrees) enables the tilt check; in
    exact mode it is read from the poses themselves when not given. Speeds are measured on the
    model's clock (timeplan.model_slot_seconds), so they depend on the path, not on the shot's
    length. `eased` says whether the entity's own keys ease in and out (Blender's default Bezier
    interpolation; the add-on knows, a job file does not): then a path that is fine on average but
    too fast in the middle is blamed on the easing, with the fix.
    """
    found: list[Finding] = []
    pose = np.asarray(pose, dtype=np.float64)
    context = np.broadcast_to(np.asarray(context, dtype=np.float64), (*pose.shape[:-1], 4))
    still = _still(index, name, pose)
    if still is not None:
        found.append(still)
    distance = np.linalg.norm(horizontal_offset(pose, context), axis=-1)

    near = distance < MIN_DISTANCE
    if near.any():
        slots = _slot_list(near)
        found.append(
            Finding(
                "too_close",
                "warning",
                f"{name} comes within {distance.min():.1f} m of the camera ({_slots_text(slots)}); "
                f"the model was trained on {MIN_DISTANCE:.0f}-{MAX_DISTANCE:.0f} m: move it away or the camera back.",
                index,
                slots,
            )
        )
    far = distance > MAX_DISTANCE
    if far.any():
        slots = _slot_list(far)
        found.append(
            Finding(
                "too_far",
                "warning",
                f"{name} goes {distance.max():.1f} m from the camera ({_slots_text(slots)}); "
                f"the model was trained on {MIN_DISTANCE:.0f}-{MAX_DISTANCE:.0f} m: bring it closer.",
                index,
                slots,
            )
        )

    pixel = poses.project(poses.apparent_position(pose, context, mapping))
    with np.errstate(invalid="ignore"):
        outside = (
            np.isnan(pixel[..., 0])
            | (pixel[..., 0] < -VIEW_MARGIN_PX)
            | (pixel[..., 0] > poses.MODEL_WIDTH + VIEW_MARGIN_PX)
            | (pixel[..., 1] < -VIEW_MARGIN_PX)
            | (pixel[..., 1] > poses.MODEL_HEIGHT + VIEW_MARGIN_PX)
        )
    if outside.any():
        slots = _slot_list(outside)
        found.append(
            Finding(
                "out_of_view",
                "warning",
                f"{name} is outside the model camera's view ({_slots_text(slots)}); "
                "keep it inside the frame (use Match model camera to see what the model frames).",
                index,
                slots,
            )
        )

    if tilt is None and mapping == "exact":
        rot, _ = poses.split_pose(pose)
        cos_tilt = np.clip(np.sum(rot[..., :, 1] * context[..., :3], axis=-1), -1.0, 1.0)
        tilt = np.degrees(np.arccos(cos_tilt))
    if tilt is not None:
        tilt = np.asarray(tilt, dtype=np.float64)
        tilted = tilt > MAX_TILT_DEG
        if tilted.any():
            slots = _slot_list(tilted)
            found.append(
                Finding(
                    "tilted",
                    "warning",
                    f"{name} is pitched or rolled by up to {tilt.max():.0f} degrees ({_slots_text(slots)}); "
                    "the model only saw turns about the vertical axis"
                    + (", so Rig mapping keeps only its heading." if mapping == "rig" else "."),
                    index,
                    slots,
                )
            )

    if len(pose) == timeplan.POSE_SLOTS and still is None:
        fast = _too_fast(index, name, pose, context, eased)
        if fast is not None:
            found.append(fast)
    return found


def _still(index: int, name: str, pose: np.ndarray) -> Finding | None:
    """An info finding when the entity neither moves nor turns over the shot (relative to the camera,
    which is all the model sees)."""
    if len(pose) < 2:
        return None
    rot, t = poses.split_pose(pose)
    moved = float(np.max(np.linalg.norm(t - t[0], axis=-1)))
    # The angle of rot_0^T rot_k, from its trace.
    cos_turn = (np.einsum("kab,ab->k", rot, rot[0]) - 1.0) / 2.0
    turned = float(np.degrees(np.max(np.arccos(np.clip(cos_turn, -1.0, 1.0)))))
    if moved >= STILL_DISTANCE or turned >= STILL_TURN_DEG:
        return None
    return Finding(
        "still",
        "info",
        f"{name} does not move during the shot; if it should, key its motion (I over Location and Rotation "
        "at another frame of the shot). Standing still is fine when intended.",
        index,
    )


def _too_fast(index: int, name: str, pose: np.ndarray, context: np.ndarray, eased: bool | None) -> Finding | None:
    ground = horizontal_offset(pose, context)
    seconds = np.asarray(timeplan.model_slot_seconds())
    steps = np.linalg.norm(np.diff(ground, axis=0), axis=-1)
    speed = steps / np.diff(seconds)
    fast = speed > MAX_SPEED
    if not fast.any():
        return None
    slots = [s + 1 for s in _slot_list(fast)]
    peak = f"up to {speed.max():.1f} m/s as the model counts time"
    # The same path at an even pace: its length over the model's whole clock.
    average = float(steps.sum() / (seconds[-1] - seconds[0]))
    if average > MAX_SPEED:
        message = (
            f"{name} moves too far between pose slots ({_slots_text(slots)}): {peak} (it takes every shot as "
            f"{timeplan.TRAINING_MOTION_S:g} s of motion) against the 1-{MAX_SPEED:.0f} m/s it was trained on: "
            f"shorten the path (at most about {MAX_SPEED * timeplan.TRAINING_MOTION_S:.1f} m); a longer shot "
            "does not help."
        )
        return Finding("too_fast", "warning", message, index, slots)
    base = (
        f"{name} is too fast in part of its move ({_slots_text(slots)}: {peak}, against the 1-{MAX_SPEED:.0f} m/s "
        f"it was trained on) although its path is fine at an even pace ({average:.1f} m/s)"
    )
    if eased:
        message = (
            f"{base}: Blender's default Bezier easing starts and ends the move slowly and rushes its middle. "
            "Make its keys Linear for an even pace."
        )
        return Finding("too_fast", "warning", message, index, slots, FIX_LINEAR_KEYS)
    message = f"{base}: its pace is uneven; space its keys so that it moves at an even speed."
    return Finding("too_fast", "warning", message, index, slots)


def check_camera_view(
    index: int,
    name: str,
    camera_matrices: np.ndarray,
    entity_matrices: np.ndarray,
    frame_box: FrameBox = MODEL_FRAME_BOX,
    framed_by_model: np.ndarray | None = None,
) -> list[Finding]:
    """Rig mapping: slots where the shot camera's own view misses the entity although the model's
    camera frames it (an info finding: the take is fine, the camera view in the viewport is not what
    the model frames). A camera high above the action and tilted like the rig (Match Model Camera
    with Rig Pitch) looks over it, for one.

    World matrices in metres (13 slots each); `frame_box` is the camera's frame at unit depth
    (the model's intrinsics by default); `framed_by_model` (per slot) limits the finding to slots
    the model's camera frames, so it never repeats an out_of_view warning. The point tested is the
    pivot's hip height above the empty (poses.RIG_APPARENT_PIVOT_HEIGHT), as the in-view check does.
    """
    frame = poses.camera_frame(np.asarray(camera_matrices, dtype=np.float64))
    point = np.asarray(entity_matrices, dtype=np.float64)[..., :3, 3] + [0.0, 0.0, poses.RIG_APPARENT_PIVOT_HEIGHT]
    offset = point - frame[..., 3, :]
    x, y, z = (np.sum(offset * frame[..., i, :], axis=-1) for i in range(3))
    left, right, bottom, top = frame_box
    # The in-view check's margin, as a share of the frame.
    margin_x = (right - left) * VIEW_MARGIN_PX / poses.MODEL_WIDTH
    margin_y = (top - bottom) * VIEW_MARGIN_PX / poses.MODEL_HEIGHT
    with np.errstate(divide="ignore", invalid="ignore"):
        u, v = x / z, y / z
        outside = (
            (z <= 1e-6)
            | (u < left - margin_x)
            | (u > right + margin_x)
            | (v < bottom - margin_y)
            | (v > top + margin_y)
        )
    if framed_by_model is not None:
        outside &= np.asarray(framed_by_model, dtype=bool)
    if not outside.any():
        return []
    slots = _slot_list(outside)
    below = bool(np.all((z[outside] > 1e-6) & (v[outside] < bottom)))
    where = "passes below the frame of" if below else "is outside"
    # How high the camera stands over the entity's ground (the empty's height), at its highest.
    height = float(np.max(frame[..., 3, 2] - np.asarray(entity_matrices)[..., 2, 3]))
    if height > poses.RIG_APPARENT_CAMERA_HEIGHT + 1.0:
        advice = (
            f"from {height:.1f} m up the camera looks over it: lower the camera to about "
            f"{poses.RIG_APPARENT_CAMERA_HEIGHT:g} m to see the model's framing"
        )
    else:
        advice = "tilt the camera toward it to see the model's framing"
    message = (
        f"{name} {where} the shot camera's own view ({_slots_text(slots)}), but the Rig mapping's camera frames "
        f"it, so the take shows it; {advice}."
    )
    return [Finding("camera_view", "info", message, index, slots)]


def check_camera(camera_matrices: np.ndarray) -> list[Finding]:
    """The training cameras never moved: warn when the shot camera travels or turns."""
    frames = poses.camera_frame(camera_matrices)
    travel = float(np.max(np.linalg.norm(frames[:, 3, :] - frames[0, 3, :], axis=-1)))
    cos_turn = np.clip(np.sum(frames[:, 2, :] * frames[0, 2, :], axis=-1), -1.0, 1.0)
    turn = float(np.degrees(np.max(np.arccos(cos_turn))))
    if travel > MAX_CAMERA_TRAVEL or turn > MAX_CAMERA_TURN_DEG:
        return [
            Finding(
                "camera_moves",
                "warning",
                f"The camera moves {travel:.1f} m and turns {turn:.0f} degrees during the shot; the model was trained "
                "on static cameras, so the video will not follow the camera move.",
            )
        ]
    return []


def check_shot(
    names: list[str],
    entity_poses: list[np.ndarray],
    context: np.ndarray,
    mapping: poses.Mapping,
    tilts: list[np.ndarray] | None = None,
    eased: list[bool] | None = None,
) -> list[Finding]:
    """All findings for a shot given its model-convention poses (13 slots per entity)."""
    found = check_count(len(names))
    for k, (name, pose) in enumerate(zip(names, entity_poses, strict=False)):
        tilt = tilts[k] if tilts is not None else None
        found.extend(check_entity(k, name, pose, context, mapping, tilt, eased[k] if eased is not None else None))
    return found


def heading_degrees(pose: np.ndarray) -> np.ndarray:
    """Entity heading relative to the camera, degrees: 0 = facing away, 180 = facing the camera."""
    rot, _ = poses.split_pose(pose)
    forward = rot[..., :, 2]
    return np.degrees(np.arctan2(forward[..., 0], forward[..., 2]))


__all__ = [
    "FIX_LINEAR_KEYS",
    "MODEL_FRAME_BOX",
    "Finding",
    "check_camera",
    "check_camera_view",
    "check_count",
    "check_entity",
    "check_shot",
    "heading_degrees",
]
