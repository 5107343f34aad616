"""Regenerate docs/images/preview-frame.png: one frame of the preview engine's output.

The shot is the built-in "demo" example (presets/shots/demo.json, the README's demo: a horse and
a robot passing in the desert), turned into a job the way the add-on would: the templates give
world positions and headings at the shot's pose and video times, backend.poses the 12-vectors.

Run from the repository root:  python docs/images/make_preview_frame.py [--frame 20] [--shot demo]
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from backend import job as jobfile  # noqa: E402
from backend import poses, presets, templates, timeplan  # noqa: E402
from backend.events import EventStream  # noqa: E402
from backend.preview.engine import PreviewEngine  # noqa: E402
from backend.progress import Report  # noqa: E402

OUT = Path(__file__).with_name("preview-frame.png")


def shot_job(name: str) -> dict:
    library = presets.load_library()
    shot = library.shots[name]
    camera = shot.camera.matrix
    start, end = shot.frame_start, shot.frame_end
    entities = []
    for item in shot.entities:
        template = library.trajectories[item.trajectory]

        def world_matrices(times: list[float], template=template, item=item) -> np.ndarray:
            seconds = (np.asarray(times) - start) / shot.fps
            where, yaws = templates.sample_template(template, item.template_entity, shot.duration_s, seconds)
            locations, rz = templates.to_world(where, yaws, camera)
            return np.stack([poses.yaw_matrix(z, tuple(p)) for p, z in zip(locations, rz, strict=True)])

        cams = {n: np.stack([camera] * n) for n in (13, 49)}
        entity = {
            "name": item.label or item.entity,
            "prompt": library.entities[item.entity].prompt,
            "poses": poses.model_poses(cams[13], world_matrices(timeplan.pose_times(start, end))),
            "video_poses": poses.model_poses(cams[49], world_matrices(timeplan.video_times(start, end))),
        }
        if item.color is not None:
            entity["color"] = list(item.color)
        entities.append(entity)
    job = jobfile.build_job(
        scene_name=shot.name,
        frame_start=start,
        frame_end=end,
        scene_fps=shot.fps,
        location=library.locations[shot.location].prompt,
        entities=entities,
        camera={"name": "Camera", "context": poses.camera_context(np.stack([camera] * 13))},
        video=True,
    )
    jobfile.validate(job)
    return job


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shot", default="demo", help="an example shot's name (default: demo)")
    parser.add_argument("--frame", type=int, default=20, help="video frame, 1-49 (default: 20)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    engine = PreviewEngine()
    frames = engine.render(shot_job(args.shot), Report(EventStream(io.StringIO())))
    Image.fromarray(frames[args.frame - 1]).save(args.out, optimize=True)
    print(f"{args.out}: frame {args.frame} of {args.shot}, {args.out.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
