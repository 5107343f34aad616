"""Does a shot stay where the model was trained? Structured warnings, no exceptions.

The training data (model reference, section 2): 1-3 entities, 3-13 m from a static camera, in
view, yaw only, 1-3 m/s over 2.8 s of motion per clip. Each finding is a Finding the add-on lists
under the entities, the overlay draws where it occurs, and the CLI prints as a warning event.
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
# An entity counts as out of view when its pivot's apparent image point lies this far (pixels)
# outside the 720 x 480 frame: half a body width of slack before warning.
VIEW_MARGIN_PX = 20.0


@dataclass(frozen=True)
class Finding:
    code: str
    severity: str  # "warning" (the model may not follow) or "error" (the model cannot run it)
    message: str
    entity: int | None = None  # index into the job's entities
    slots: list[int] = field(default_factory=list)  # pose slots where it occurs

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
) -> list[Finding]:
    """Findings for one entity's 13 pose slots.

    `tilt` (degrees from upright per slot, see poses.tilt_degrees) enables the tilt check; in
    exact mode it is read from the poses themselves when not given. Speeds are measured on the
    model's clock (timeplan.model_slot_seconds), so they depend on the path, not on the shot's
    length.
    """
    found: list[Finding] = []
    pose = np.asarray(pose, dtype=np.float64)
    context = np.broadcast_to(np.asarray(context, dtype=np.float64), (*pose.shape[:-1], 4))
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

    if len(pose) == timeplan.POSE_SLOTS:
        ground = horizontal_offset(pose, context)
        dt = np.diff(np.asarray(timeplan.model_slot_seconds()))
        speed = np.linalg.norm(np.diff(ground, axis=0), axis=-1) / dt
        fast = speed > MAX_SPEED
        if fast.any():
            slots = [s + 1 for s in _slot_list(fast)]
            found.append(
                Finding(
                    "too_fast",
                    "warning",
                    f"{name} moves too far between pose slots ({_slots_text(slots)}): up to {speed.max():.1f} m/s "
                    f"as the model counts time (it takes every shot as {timeplan.TRAINING_MOTION_S:g} s of motion) "
                    f"against the 1-{MAX_SPEED:.0f} m/s it was trained on: shorten the path (at most about "
                    f"{MAX_SPEED * timeplan.TRAINING_MOTION_S:.1f} m); a longer shot does not help.",
                    index,
                    slots,
                )
            )
    return found


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
) -> list[Finding]:
    """All findings for a shot given its model-convention poses (13 slots per entity)."""
    found = check_count(len(names))
    for k, (name, pose) in enumerate(zip(names, entity_poses, strict=False)):
        tilt = tilts[k] if tilts is not None else None
        found.extend(check_entity(k, name, pose, context, mapping, tilt))
    return found


def heading_degrees(pose: np.ndarray) -> np.ndarray:
    """Entity heading relative to the camera, degrees: 0 = facing away, 180 = facing the camera."""
    rot, _ = poses.split_pose(pose)
    forward = rot[..., :, 2]
    return np.degrees(np.arctan2(forward[..., 0], forward[..., 2]))


__all__ = ["Finding", "check_camera", "check_count", "check_entity", "check_shot", "heading_degrees"]
