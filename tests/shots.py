"""Shots built in code for the tests: a camera, entities on straight paths, and their job."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from backend import job as jobfile
from backend import poses, timeplan

CAMERA = poses.look_at_camera((0.0, -10.0, 1.6), (0.0, 0.0, 1.0))


def make_job(
    paths: list[tuple[tuple[float, float], tuple[float, float]]] | None = None,
    *,
    mapping: str = "rig",
    frame_start: int = 1,
    frame_end: int = 73,
    fps: float = 24.0,
    engine: str = "preview",
    video: bool = True,
    prompts: list[str] | None = None,
    sampling: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A valid job whose entities walk the given ground paths (world metres) during the shot."""
    paths = paths or [((-2.0, 0.0), (2.0, 0.0))]
    prompts = prompts or [
        "A brown horse with a flowing black mane and a white blaze on its face, muscular and glossy in the sun",
        "A silver humanoid robot with glowing blue eyes, polished metal plates and thin black joints on its arms",
        "A tall fire spirit made of swirling orange flames and drifting sparks with a bright yellow glowing core",
    ]
    entities = []
    pose_t = timeplan.pose_times(frame_start, frame_end)
    video_t = timeplan.video_times(frame_start, frame_end)
    for k, (a, b) in enumerate(paths):

        def at(times, a=a, b=b):
            f = (np.asarray(times) - frame_start) / (frame_end - frame_start)
            return np.stack([_at(a, b, x) for x in f])

        ent = {
            "name": f"Entity{k + 1}",
            "prompt": prompts[k % len(prompts)],
            "poses": poses.model_poses(np.stack([CAMERA] * 13), at(pose_t), "NEG_Y", mapping),
            "forward_axis": "NEG_Y",
        }
        if video:
            ent["video_poses"] = poses.model_poses(np.stack([CAMERA] * 49), at(video_t), "NEG_Y", mapping)
        entities.append(ent)
    camera = {"name": "Camera", "context": poses.camera_context(np.stack([CAMERA] * 13), mapping)}
    if video:
        camera["video_context"] = poses.camera_context(np.stack([CAMERA] * 49), mapping)
    job = jobfile.build_job(
        scene_name="Scene",
        frame_start=frame_start,
        frame_end=frame_end,
        scene_fps=fps,
        location="sunlit desert with golden sand dunes",
        entities=entities,
        pose_mapping=mapping,
        engine=engine,
        sampling=sampling,
        camera=camera,
        video=video,
    )
    return jobfile.parse(jobfile.dumps(job))


def _at(a, b, f: float) -> np.ndarray:
    """The world matrix of a -Y-facing empty a fraction f along the path a -> b, facing along it."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    d = b - a
    yaw = math.atan2(d[1], d[0]) + math.pi / 2
    x, y = a + f * d
    return poses.yaw_matrix(yaw, (x, y, 0.0))
