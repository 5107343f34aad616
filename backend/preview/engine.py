"""PreviewEngine: a job -> 49 schematic frames of what the model's camera will see.

No torch, no GPU: numpy for the geometry and the backdrop, Pillow for the markers and text.
The picture uses the model's own lens and 720 x 480 frame, so an entity sits in the preview
where the injector will be told it is.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

import numpy as np
from PIL import Image

from .. import poses, timeplan
from ..job import quality_of
from ..progress import Report
from . import draw, labels, motion, scene_geometry
from .backdrop import backdrop

WIDTH, HEIGHT = poses.MODEL_WIDTH, poses.MODEL_HEIGHT
# Label panels sit this far (metres) above the top of the block.
LABEL_CLEARANCE = 0.25
# The highest a label's anchor goes: a label (two lines, about 43 px) still fits above it.
TOP_ANCHOR_PX = 50.0
# Backdrops kept between frames and jobs; a static camera needs one, a moving one one a frame.
BACKDROP_CACHE = 8


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


class PreviewEngine:
    name = "preview"

    def __init__(self) -> None:
        self.fonts = labels.load_fonts()
        self._backdrops: dict[tuple[float, ...], np.ndarray] = {}

    def render(self, job: dict[str, Any], report: Report) -> np.ndarray:
        """The job's 49 frames as uint8 RGB (49, 480, 720, 3); cancellable after every frame."""
        report.stage("rendering", "Drawing the preview")
        sampling = job.get("sampling", {})
        if (sampling.get("width", WIDTH), sampling.get("height", HEIGHT)) != (WIDTH, HEIGHT):
            report.log(
                f"The preview shows the model camera's {WIDTH} x {HEIGHT} framing; the size asked for is ignored."
            )
        # Every quality draws the same schematic in about a second (there is nothing to make
        # cheaper); the take still says which one the job asked for.
        report.metrics["speed"] = {"quality": quality_of(sampling)}
        shot = motion.shot_motion(job)
        count = timeplan.VIDEO_FRAMES
        frames = np.empty((count, HEIGHT, WIDTH, 3), dtype=np.uint8)
        for j in range(count):
            frames[j] = self.render_frame(shot, j)
            report.progress(j + 1, count, "rendering")
        return frames

    def render_frame(self, shot: motion.ShotMotion, j: int) -> np.ndarray:
        """One frame (HEIGHT, WIDTH, 3) of a shot."""
        return np.asarray(self.draw_frame(shot, j)[0])

    def draw_frame(self, shot: motion.ShotMotion, j: int) -> tuple[Image.Image, labels.Layout]:
        """One frame of a shot, and where its text went (the tests check the labels' layout)."""
        context = shot.context[j]
        img = Image.fromarray(self._backdrop(context), "RGB")
        ground = scene_geometry.ground_from_context(context)
        marks = [
            (track, scene_geometry.marker(track.poses[j], context, shot.mapping, track.height))
            for track in shot.entities
        ]
        # Painter's order: the farthest first, so nearer markers cover farther ones.
        marks.sort(key=lambda item: -float(np.linalg.norm(item[1].foot)))
        for track, mark in marks:
            draw.draw_marker(img, mark, track.color)

        layout = labels.Layout(img, self.fonts)
        anchors = {}
        for _, mark in marks:
            if not draw.visible(mark):
                continue
            top = poses.project(mark.head + LABEL_CLEARANCE * ground.up)
            anchor = top if np.all(np.isfinite(top)) else poses.project(mark.pivot)
            # A tall entity's head may be above the frame: then its label sits on its top.
            ax, ay = float(anchor[0]), max(float(anchor[1]), TOP_ANCHOR_PX)
            anchors[id(mark)] = (ax, ay)
            # Labels keep off the entities' blocks and the spots their labels point to.
            block = draw.block_rect(mark, img.size)
            if block is not None:
                layout.avoid.append((min(block[0], ax), min(block[1], ay), max(block[2], ax), block[3]))
        labels.draw_hud(layout, j, timeplan.VIDEO_FRAMES, timeplan.VIDEO_FPS, shot.scene_frames[j], shot.mapping)
        for track, mark in reversed(marks):  # the nearest entity gets the best label spot
            if id(mark) in anchors:
                layout.entity_label(track.name, track.prompt, mark.distance, track.color, anchors[id(mark)])
            else:
                at = draw.draw_pointer(img, mark.pivot, track.color)
                layout.pointer_label(track.name, mark.distance, track.color, at)
        return img, layout

    def _backdrop(self, context: np.ndarray) -> np.ndarray:
        key = tuple(np.round(context, 6).tolist())
        if key not in self._backdrops:
            if len(self._backdrops) >= BACKDROP_CACHE:
                self._backdrops.pop(next(iter(self._backdrops)))
            self._backdrops[key] = backdrop(context, WIDTH, HEIGHT)
        return self._backdrops[key]

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "versions": {
                "numpy": np.__version__,
                "pillow": _version("pillow"),
                "imageio_ffmpeg": _version("imageio-ffmpeg"),
            },
            "font": self.fonts.description,
            "width": WIDTH,
            "height": HEIGHT,
            "frames": timeplan.VIDEO_FRAMES,
            "fps": timeplan.VIDEO_FPS,
            "supersample": draw.SUPERSAMPLE,
            "speed": {},  # no engine-wide speed options
        }

    def close(self) -> None:
        self._backdrops.clear()
