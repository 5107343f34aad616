"""What the viewport overlay draws, as plain numpy arrays (no bpy, no gpu).

The overlay (overlay.py) samples the shot once with sampling.py and hands the matrices here;
the pose math and the checks come from backend/poses.py and backend/checks.py, so the overlay
shows exactly what Generate would send and warn about. Keeping this free of bpy and gpu lets
the geometry be tested headless, where Blender has no GPU context to draw with.

Coordinates are Blender world space in metres (what sampling.py returns); `scaled` turns a
geometry into the scene's units for drawing. Line geometry is an array of segments, shape (n, 2, 3).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..backend import checks, poses

Color = tuple[float, float, float]

# Warning colours: out of view is the worst case (the model cannot place the entity at all), so
# it gets red; the other out-of-distribution findings (distance, tilt, speed) get orange.
RED: Color = (1.0, 0.12, 0.08)
ORANGE: Color = (1.0, 0.55, 0.0)
FRUSTUM_COLORS: dict[str, Color] = {"rig": (0.35, 0.85, 1.0), "exact": (0.9, 0.9, 0.9)}

ARROW_LENGTH = 0.6  # metres: reads at the 3-13 m distances the model knows
ARROW_HEAD = 0.18
LABEL_LIFT = 0.35  # labels sit this far above the slot they describe, clear of the mark

SHORT_TEXT = {
    "too_close": "too close",
    "too_far": "too far",
    "out_of_view": "out of view",
    "tilted": "tilted",
    "too_fast": "too fast",
    "still": "does not move",
}


@dataclass(frozen=True)
class EntityInput:
    """One entity as sampled: matrices at the 13 pose slots and the 49 video frames."""

    name: str
    color: Color
    facing: str
    slots: np.ndarray  # (13, 4, 4)
    video: np.ndarray  # (49, 4, 4)


@dataclass
class EntityPath:
    name: str
    color: Color
    path: np.ndarray  # (n, 3): positions in time order (slots and video frames merged)
    slots: np.ndarray  # (13, 3): the pivot at each pose slot
    arrows: np.ndarray  # (13 * 3, 2, 3): shaft and two head strokes per slot
    slot_codes: list[tuple[str, ...]]  # finding codes at each slot
    problem: str = ""  # why the entity has no poses (degenerate matrix), else ""

    def slot_colors(self) -> list[Color]:
        return [slot_color(codes, self.color) for codes in self.slot_codes]


@dataclass
class Frustum:
    mapping: str
    apex: np.ndarray  # (3,)
    axes: np.ndarray  # (3, 3): rows right, up, forward (world space)
    segments: np.ndarray  # (12, 2, 3)
    color: Color


@dataclass
class Label:
    position: np.ndarray  # (3,)
    text: str
    color: Color


@dataclass
class Geometry:
    entities: list[EntityPath]
    frustum: Frustum | None
    labels: list[Label]
    findings: list[checks.Finding]
    # The drawing side keeps its GPU batches here, so they live exactly as long as the geometry.
    gpu_cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


def slot_color(codes: tuple[str, ...], color: Color) -> Color:
    if "out_of_view" in codes:
        return RED
    return ORANGE if codes else color


def path_points(slot_times: list[float], slots: np.ndarray, video_times: list[float], video: np.ndarray) -> np.ndarray:
    """The pivots at the slots and the video frames, in time order: the polyline of the path."""
    times = np.concatenate([np.asarray(slot_times, dtype=np.float64), np.asarray(video_times, dtype=np.float64)])
    points = np.concatenate([np.asarray(slots)[:, :3, 3], np.asarray(video)[:, :3, 3]])
    return points[np.argsort(times, kind="stable")]


def arrow_segments(frames: np.ndarray) -> np.ndarray:
    """Facing arrows for entity frames (n, 4, 3) from poses.entity_frame: (n * 3, 2, 3)."""
    right, forward, origin = frames[:, 0], frames[:, 2], frames[:, 3]
    tip = origin + forward * ARROW_LENGTH
    back = tip - forward * ARROW_HEAD
    side = right * ARROW_HEAD * 0.6
    segments = np.stack(
        [np.stack([origin, tip], 1), np.stack([tip, back + side], 1), np.stack([tip, back - side], 1)], 1
    )
    return segments.reshape(-1, 2, 3)


def model_camera(camera_matrix: np.ndarray, mapping: str) -> tuple[np.ndarray, np.ndarray]:
    """(apex, axes) of the camera the model assumes for a Blender camera matrix.

    Exact: the camera itself. Rig: the training rig's camera at the camera's ground position and
    heading, pitched -5.356 degrees with no roll, drawn at the rig's apparent eye height (the
    height the preview engine and the in-view check use, see poses.RIG_APPARENT_CAMERA_HEIGHT).
    """
    frame = poses.camera_frame(camera_matrix)
    if mapping == "rig":
        frame = poses.rig_camera(frame)
        frame[3, 2] = poses.RIG_APPARENT_CAMERA_HEIGHT
    return frame[3].copy(), frame[:3].copy()


def frustum_segments(apex: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """The model camera's view (35 mm, 23.76 mm sensor, 720 x 480) between the trained distances.

    Rectangles at depths MIN_DISTANCE and MAX_DISTANCE, and the four edges from the apex to the
    far one: inside this box an entity is framed and at a distance the model was trained on.
    """
    right, up, forward = axes
    half_w = poses.MODEL_WIDTH / 2 / poses.MODEL_FOCAL_PX
    half_h = poses.MODEL_HEIGHT / 2 / poses.MODEL_FOCAL_PX
    signs = ((-1, -1), (1, -1), (1, 1), (-1, 1))

    def rect(depth: float) -> np.ndarray:
        return np.array([apex + depth * (forward + sx * half_w * right + sy * half_h * up) for sx, sy in signs])

    near, far = rect(checks.MIN_DISTANCE), rect(checks.MAX_DISTANCE)
    segs = [(apex, c) for c in far]
    segs += [(r[i], r[(i + 1) % 4]) for r in (near, far) for i in range(4)]
    return np.array(segs, dtype=np.float64)


def _runs(slots: list[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    for s in sorted(slots):
        if runs and s == runs[-1][-1] + 1:
            runs[-1].append(s)
        else:
            runs.append([s])
    return runs


def _run_text(run: list[int]) -> str:
    return f"slot {run[0]}" if len(run) == 1 else f"slots {run[0]}-{run[-1]}"


def build(
    slot_times: list[float],
    video_times: list[float],
    camera_slots: np.ndarray | None,
    camera_video: np.ndarray | None,
    entities: list[EntityInput],
    mapping: str,
) -> Geometry:
    """Everything the overlay draws for one shot, from the sampled world matrices."""
    labels: list[Label] = []
    findings: list[checks.Finding] = []
    frustum = None
    context13 = None
    if camera_slots is not None:
        try:
            apex, axes = model_camera(camera_slots[0], mapping)
            context13 = poses.camera_context(camera_slots, mapping)
        except poses.PoseError as exc:
            labels.append(Label(np.asarray(camera_slots[0][:3, 3], dtype=np.float64), f"camera: {exc}", RED))
        else:
            frustum = Frustum(mapping, apex, axes, frustum_segments(apex, axes), FRUSTUM_COLORS[mapping])
            if camera_video is not None:
                for finding in checks.check_camera(camera_video):
                    findings.append(finding)
                    labels.append(
                        Label(apex + axes[1] * LABEL_LIFT, "camera moves (the model assumes it still)", ORANGE)
                    )

    paths = []
    for k, ent in enumerate(entities):
        slots = np.asarray(ent.slots, dtype=np.float64)
        path = path_points(slot_times, slots, video_times, ent.video)
        codes: list[list[str]] = [[] for _ in range(len(slots))]
        try:
            frames = poses.entity_frame(slots, ent.facing)  # type: ignore[arg-type]
        except poses.PoseError as exc:
            problem = str(exc)
            labels.append(Label(slots[0, :3, 3] + [0, 0, LABEL_LIFT], f"{ent.name}: {problem}", RED))
            paths.append(
                EntityPath(ent.name, ent.color, path, slots[:, :3, 3], np.zeros((0, 2, 3)), [()] * 13, problem)
            )
            continue
        if context13 is not None and camera_slots is not None:
            pose = poses.model_poses(camera_slots, slots, ent.facing, mapping)  # type: ignore[arg-type]
            found = checks.check_entity(k, ent.name, pose, context13, mapping, poses.tilt_degrees(slots))  # type: ignore[arg-type]
            distance = np.linalg.norm(checks.horizontal_offset(pose, context13), axis=-1)
            for finding in found:
                findings.append(finding)
                if finding.severity == "info":
                    # Worth a look, not a problem: a label in the entity's colour, the slots keep theirs.
                    text = f"{ent.name}: {SHORT_TEXT.get(finding.code, finding.code)}"
                    labels.append(Label(frames[0, 3] + [0, 0, LABEL_LIFT], text, ent.color))
                    continue
                for s in finding.slots:
                    codes[s].append(finding.code)
                color = RED if finding.code == "out_of_view" else ORANGE
                for run in _runs(finding.slots):
                    text = f"{ent.name}: {SHORT_TEXT.get(finding.code, finding.code)}"
                    if finding.code in ("too_close", "too_far"):
                        text += f" {distance[run[0]]:.1f} m"
                    labels.append(Label(frames[run[0], 3] + [0, 0, LABEL_LIFT], f"{text} ({_run_text(run)})", color))
        paths.append(
            EntityPath(
                ent.name, ent.color, path, frames[:, 3].copy(), arrow_segments(frames), [tuple(c) for c in codes]
            )
        )
    return Geometry(paths, frustum, labels, findings)


def scaled(geometry: Geometry, factor: float) -> Geometry:
    """The same geometry with every position multiplied by `factor` (metres -> scene units)."""
    if factor == 1.0:
        return geometry
    entities = [
        replace(e, path=e.path * factor, slots=e.slots * factor, arrows=e.arrows * factor) for e in geometry.entities
    ]
    frustum = geometry.frustum
    if frustum is not None:
        frustum = replace(frustum, apex=frustum.apex * factor, segments=frustum.segments * factor)
    labels = [replace(label, position=label.position * factor) for label in geometry.labels]
    return Geometry(entities, frustum, labels, geometry.findings)
