"""Which Blender instants become the model's 49 video frames and 13 pose slots.

Model reference, section 2 ("Time"): video frame j of a shot spanning Blender frames [s, e]
is at s + (e - s) * j / 48; pose slot 0 is video frame 0 and slot k >= 1 is the middle of the
4-frame group the VAE packs into latent k, video frame 4k - 1.5. Pure Python (no numpy needed).
"""

from __future__ import annotations

VIDEO_FRAMES = 49
POSE_SLOTS = 13
VIDEO_FPS = 8
TEMPORAL_COMPRESSION = 4
# The release trained on 2.8 s of motion per clip, whatever the clip's playback length (model
# reference, section 2). The model sees positions, not time: it takes every shot as this much
# motion, so speeds that matter for staying in distribution are measured on this clock.
TRAINING_MOTION_S = 2.8


def video_frame_position(slot: int) -> float:
    """The (fractional) video frame whose pose fills pose slot `slot`."""
    if not 0 <= slot < POSE_SLOTS:
        raise ValueError(f"pose slot must be 0..{POSE_SLOTS - 1}, got {slot}")
    return 0.0 if slot == 0 else TEMPORAL_COMPRESSION * slot - 1.5


def video_times(frame_start: float, frame_end: float) -> list[float]:
    """Blender times (frames, fractional) of the 49 video frames."""
    span = frame_end - frame_start
    return [frame_start + span * j / (VIDEO_FRAMES - 1) for j in range(VIDEO_FRAMES)]


def pose_times(frame_start: float, frame_end: float) -> list[float]:
    """Blender times (frames, fractional) of the 13 pose slots."""
    span = frame_end - frame_start
    return [frame_start + span * video_frame_position(k) / (VIDEO_FRAMES - 1) for k in range(POSE_SLOTS)]


def model_slot_seconds() -> list[float]:
    """The 13 pose slots on the model's clock: seconds into the TRAINING_MOTION_S of motion the
    model takes every shot to be, however long the shot is in the scene."""
    return [TRAINING_MOTION_S * video_frame_position(k) / (VIDEO_FRAMES - 1) for k in range(POSE_SLOTS)]


def split_time(time: float) -> tuple[int, float]:
    """A fractional Blender time -> (frame, subframe in [0, 1)) as scene.frame_set() takes it."""
    frame = int(time // 1)
    return frame, time - frame


def clip_seconds() -> float:
    """Length of the generated clip in seconds (49 frames at 8 fps)."""
    return VIDEO_FRAMES / VIDEO_FPS
