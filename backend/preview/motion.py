"""A job's entities and camera at each of the 49 video frames.

Jobs made by the add-on carry `video_poses` (49 x 12) and `camera.video_context` (49 x 4), which
are used as they are. Jobs written by hand or by other tools may only carry the 13 pose slots:
those are interpolated at the video frames, with the slots placed where the model reads them
(backend/timeplan.py: slot 0 at frame 0, slot k at frame 4k - 1.5), held before the first and
after the last slot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import poses, timeplan
from . import scene_geometry

# Default marker colours (sRGB 0-255): orange, azure, violet: far apart in hue, and all
# saturated enough to stand out from the grey ground and the pale sky.
PALETTE: tuple[tuple[int, int, int], ...] = ((255, 140, 26), (38, 166, 255), (214, 77, 255))


@dataclass(frozen=True)
class EntityTrack:
    name: str
    prompt: str
    color: tuple[int, int, int]  # sRGB 0-255
    poses: np.ndarray  # (49, 12)
    height: float = scene_geometry.BODY_HEIGHT  # metres: how tall its marker stands


@dataclass(frozen=True)
class ShotMotion:
    entities: list[EntityTrack]
    context: np.ndarray  # (49, 4): world up in the camera frame, camera height
    mapping: poses.Mapping
    scene_frames: list[float]  # the Blender time of each video frame


def shot_motion(job: dict[str, Any]) -> ShotMotion:
    """Everything the preview draws, per video frame, from a validated job."""
    shot = job["shot"]
    scene_frames = shot.get("video_frames") or timeplan.video_times(shot["frame_start"], shot["frame_end"])
    tracks = []
    for k, ent in enumerate(job["entities"]):
        if "video_poses" in ent:
            track = np.asarray(ent["video_poses"], dtype=np.float64)
        else:
            track = interpolate_poses(np.asarray(ent["poses"], dtype=np.float64))
        color = srgb8(ent["color"]) if "color" in ent else PALETTE[k % len(PALETTE)]
        height = float(ent.get("height", scene_geometry.BODY_HEIGHT))
        tracks.append(EntityTrack(ent["name"], ent["prompt"], color, track, height))
    return ShotMotion(tracks, video_context(job.get("camera")), job["pose_mapping"], list(scene_frames))


def video_context(camera: dict[str, Any] | None) -> np.ndarray:
    """(49, 4) camera context rows: the job's, interpolated from 13 slots, or the rig's."""
    if camera is None:
        return np.tile(np.asarray(poses.rig_camera_context(), dtype=np.float64), (timeplan.VIDEO_FRAMES, 1))
    if "video_context" in camera:
        rows = np.asarray(camera["video_context"], dtype=np.float64)
    else:
        rows = _interpolate_linear(np.asarray(camera["context"], dtype=np.float64))
    up = rows[:, :3] / np.linalg.norm(rows[:, :3], axis=1, keepdims=True)
    return np.concatenate([up, rows[:, 3:]], axis=1)


def slot_frames() -> np.ndarray:
    """The video frame (fractional) each pose slot stands for."""
    return np.array([timeplan.video_frame_position(k) for k in range(timeplan.POSE_SLOTS)])


def _interpolate_linear(rows: np.ndarray) -> np.ndarray:
    frames = np.arange(timeplan.VIDEO_FRAMES, dtype=np.float64)
    # np.interp holds the end values outside the slots' span, which is the clamping we want.
    return np.stack([np.interp(frames, slot_frames(), rows[:, c]) for c in range(rows.shape[1])], axis=1)


def interpolate_poses(slot_poses: np.ndarray) -> np.ndarray:
    """13 slot 12-vectors -> 49 video-frame 12-vectors.

    Positions are interpolated linearly; rotations along the shortest arc between neighbouring
    slots (for the yaw-only poses of the rig mapping that is the heading by the shortest angle).
    """
    rot, t = poses.split_pose(slot_poses)
    at = slot_frames()
    out = np.empty((timeplan.VIDEO_FRAMES, 12))
    out[:, 9:] = _interpolate_linear(t)
    for j in range(timeplan.VIDEO_FRAMES):
        k = int(np.clip(np.searchsorted(at, j, side="right") - 1, 0, len(at) - 2))
        s = float(np.clip((j - at[k]) / (at[k + 1] - at[k]), 0.0, 1.0))
        r = _slerp(rot[k], rot[k + 1], s)
        out[j, :9] = r.T.reshape(9)  # column by column, as the 12-vector stores it
    return out


def _slerp(a: np.ndarray, b: np.ndarray, s: float) -> np.ndarray:
    """Rotation a fraction `s` of the way from `a` to `b` (3x3 each), the short way round.

    Written out (Rodrigues) because numpy has no rotation type and scipy is not a dependency.
    """
    delta = a.T @ b
    cos_angle = np.clip((np.trace(delta) - 1.0) / 2.0, -1.0, 1.0)
    angle = float(np.arccos(cos_angle))
    if angle < 1e-9:
        return a.copy()
    skew = np.array([delta[2, 1] - delta[1, 2], delta[0, 2] - delta[2, 0], delta[1, 0] - delta[0, 1]])
    if np.linalg.norm(skew) > 1e-6:
        axis = skew / np.linalg.norm(skew)
    else:  # a half turn: the axis is the dominant column of (delta + I) / 2
        sym = (delta + np.eye(3)) / 2.0
        col = sym[:, int(np.argmax(np.linalg.norm(sym, axis=0)))]
        axis = col / np.linalg.norm(col)
    x, y, z = axis
    k = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    phi = s * angle
    step = np.eye(3) + np.sin(phi) * k + (1.0 - np.cos(phi)) * (k @ k)
    return a @ step


def srgb8(linear: list[float] | tuple[float, ...]) -> tuple[int, int, int]:
    """Linear RGB 0-1 (Blender's colour properties) -> display sRGB 0-255."""
    c = np.clip(np.asarray(linear, dtype=np.float64), 0.0, 1.0)
    s = np.where(c <= 0.0031308, 12.92 * c, 1.055 * np.power(c, 1 / 2.4) - 0.055)
    r, g, b = (int(v) for v in np.round(s * 255.0))
    return r, g, b
