"""The scene's shot -> a version-1 job (backend.job), with the pose checks' findings.

The pose math, the time plan, the checks and the job layout all come from the backend's pure
modules; this module only gathers what Blender knows (objects, matrices, settings) and refuses
shots the backend could not run, each with one sentence that says what to do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import bpy
import numpy as np

from ..backend import checks, poses, timeplan
from ..backend import job as jobfile
from . import keys, presence, properties, sampling

MAX_PROMPT_CHARS = 600
MAX_NAME_CHARS = properties.MAX_NAME_CHARS
GOOD_WORDS = (15, 24)


class ShotError(ValueError):
    """The shot cannot be turned into a job; the message is for the user (one of shot_problems)."""


class MotionError(ShotError):
    """The sampled motion cannot be used (a degenerate matrix during the shot)."""


@dataclass
class Export:
    job: dict[str, Any]
    findings: list[checks.Finding]


@dataclass
class Sampled:
    """The shot sampled at the 13 pose slots and the 49 video frames (world matrices in metres)."""

    camera: bpy.types.Object
    entities: list[Any]  # the TRAJMASTER_PG_entity items, in order
    slots: np.ndarray  # (1 + entities, 13, 4, 4): the camera first
    video: np.ndarray  # (1 + entities, 49, 4, 4)
    mapping: str
    frame_box: checks.FrameBox | None  # the camera's own frame at unit depth (perspective only)


def shot_camera(scene: bpy.types.Scene) -> bpy.types.Object | None:
    settings = scene.trajmaster
    return settings.camera or scene.camera


def _prompt_problem(what: str, text: str) -> str | None:
    if not text.strip():
        return f"The {what} is empty; describe it in a few words."
    bad = sorted({c for c in text if not " " <= c <= "~"})
    if bad:
        shown = " ".join(repr(c) for c in bad[:5])
        return f"The {what} contains characters the model cannot read ({shown}); use plain ASCII text."
    if len(text) > MAX_PROMPT_CHARS:
        return f"The {what} is {len(text)} characters long; shorten it to {MAX_PROMPT_CHARS} (15-24 words work best)."
    return None


def shot_problems(scene: bpy.types.Scene, view_layer: bpy.types.ViewLayer | None = None) -> list[str]:
    """Everything that stops this scene's shot from being generated, as sentences for the user
    (`view_layer`: where the shot is evaluated, default presence.shot_view_layer)."""
    problems = _structure_problems(scene, view_layer)
    settings = scene.trajmaster
    for k, ent in enumerate(settings.entities, start=1):
        if ent.object is None:
            continue
        problem = _prompt_problem(f"prompt of entity {k} ({properties.entity_name(ent)})", ent.prompt)
        if problem:
            problems.append(problem)
    problem = _prompt_problem("location prompt", settings.location_prompt)
    if problem:
        problems.append(problem)
    if settings.quality == "CUSTOM" and settings.annealed_steps > settings.steps:
        problems.append(
            f"Annealed steps ({settings.annealed_steps}) cannot exceed the steps ({settings.steps}); lower them."
        )
    return problems


def quality_sampling(settings: Any) -> dict[str, Any]:
    """The job's quality and the steps it runs: a preset's own values, or the shot's Custom fields."""
    quality = settings.quality.lower()
    preset = jobfile.QUALITY_PRESETS.get(quality)
    if preset is not None:
        return {"quality": quality, **preset}
    out = {"quality": quality, "steps": settings.steps, "annealed_steps": settings.annealed_steps}
    if settings.step_cache > 0:
        out["step_cache"] = round(settings.step_cache, 4)
    return out


def _structure_problems(scene: bpy.types.Scene, view_layer: bpy.types.ViewLayer | None = None) -> list[str]:
    """What stops the shot from being sampled at all: the camera, the range and the entities' empties."""
    settings = scene.trajmaster
    view_layer = view_layer or presence.shot_view_layer(bpy.context, scene)
    problems: list[str] = []
    camera = shot_camera(scene)
    if camera is None:
        problems.append("The shot has no camera; pick one in the TrajMaster panel or set the scene camera.")
    elif camera.type != "CAMERA":
        problems.append(f"'{camera.name}' is not a camera; pick a camera object for the shot.")
    else:
        missing = presence.missing_reason(camera, scene, view_layer)
        if missing:
            problems.append(f"The shot camera '{camera.name}' {missing}; pick a camera that is in the scene.")
    if settings.frame_end - settings.frame_start < 1:
        problems.append(
            f"The shot range {settings.frame_start}-{settings.frame_end} is shorter than 2 frames; "
            "set an end frame after the start frame."
        )
    entities = list(settings.entities)
    if not entities:
        problems.append("Add at least one entity (an animated empty with a prompt).")
    elif len(entities) > jobfile.MAX_ENTITIES:
        problems.append(
            f"The model follows at most {jobfile.MAX_ENTITIES} entities; this shot has {len(entities)}: "
            f"remove {len(entities) - jobfile.MAX_ENTITIES}."
        )
    seen: dict[str, int] = {}
    named: dict[str, tuple[int, str]] = {}
    for k, ent in enumerate(entities, start=1):
        obj = ent.object
        if obj is None:
            problems.append(f"Entity {k} has no empty; pick the empty it should follow.")
            continue
        name = properties.entity_name(ent)
        # The same empty twice is said below; two empties under one name is said here.
        if name in named and named[name][1] != obj.name:
            problems.append(
                f"Entities {named[name][0]} and {k} are both named '{name}'; give each its own name "
                "(the entity's Name field)."
            )
        named.setdefault(name, (k, obj.name))
        if obj.type != "EMPTY":
            kind = obj.type.lower()
            problems.append(f"Entity {k} uses '{obj.name}', which is a {kind}, not an empty; pick an empty.")
        if obj.name in seen:
            problems.append(
                f"Entities {seen[obj.name]} and {k} both use the empty '{obj.name}'; each entity needs its own empty."
            )
        seen.setdefault(obj.name, k)
        if len(obj.name) > MAX_NAME_CHARS:
            problems.append(f"The empty '{obj.name}' has a name longer than {MAX_NAME_CHARS} characters; rename it.")
        missing = presence.missing_reason(obj, scene, view_layer)
        if missing:
            problems.append(
                f"Entity {k}'s empty '{obj.name}' {missing}; put it back in the scene, or pick another empty "
                "or remove the entity."
            )
    return problems


def shot_label(scene: bpy.types.Scene) -> str:
    """The shot's name as people read it: its Shot Name, else the scene's."""
    return (scene.trajmaster.shot_name.strip() or scene.name)[:MAX_NAME_CHARS]


def scene_fps(scene: bpy.types.Scene) -> float:
    return scene.render.fps / scene.render.fps_base


def sample(context: bpy.types.Context, scene: bpy.types.Scene) -> Sampled:
    """Sample the camera and the entities over the shot. Raises ShotError when the shot cannot be
    sampled (no camera, a missing empty: the first of its problems) and MotionError when a matrix
    cannot be used."""
    view_layer = presence.shot_view_layer(context, scene)
    problems = _structure_problems(scene, view_layer)
    if problems:
        raise ShotError(problems[0])
    settings = scene.trajmaster
    camera = shot_camera(scene)
    entities = list(settings.entities)
    start, end = settings.frame_start, settings.frame_end
    pose_times = timeplan.pose_times(start, end)
    video_times = timeplan.video_times(start, end)
    objects = [camera, *(e.object for e in entities)]
    # One pass over the 62 instants: the 13 pose slots and the 49 video frames.
    mats = sampling.world_matrices(context, scene, objects, [*pose_times, *video_times])
    # Check each object's matrices on their own first, so a refusal names the object.
    for obj, matrices in zip(objects, mats, strict=True):
        try:
            poses.rigid_frame(matrices, "its transform")
        except poses.PoseError as exc:
            raise MotionError(f"'{obj.name}' cannot be used during the shot: {exc}.") from None
    return Sampled(
        camera,
        entities,
        mats[:, : len(pose_times)],
        mats[:, len(pose_times) :],
        settings.pose_mapping.lower(),
        camera_frame_box(scene, camera),
    )


def camera_frame_box(scene: bpy.types.Scene, camera: bpy.types.Object) -> checks.FrameBox | None:
    """The camera's own frame (lens, sensor fit, shift, the scene's resolution) at unit depth, or
    None for an orthographic or panoramic camera."""
    if camera.data.type != "PERSP":
        return None
    corners = np.array([tuple(c) for c in camera.data.view_frame(scene=scene)], dtype=np.float64)
    depth = -corners[:, 2]
    u, v = corners[:, 0] / depth, corners[:, 1] / depth
    return float(u.min()), float(u.max()), float(v.min()), float(v.max())


def entity_poses(sampled: Sampled) -> list[dict[str, Any]]:
    """Each entity's name, facing and model poses at the slots and the video frames."""
    cam_slots, cam_video = sampled.slots[0], sampled.video[0]
    items = []
    for k, ent in enumerate(sampled.entities, start=1):
        facing = ent.forward_axis
        items.append(
            {
                "name": properties.entity_name(ent)[:MAX_NAME_CHARS],
                "poses": poses.model_poses(cam_slots, sampled.slots[k], facing, sampled.mapping),
                "video_poses": poses.model_poses(cam_video, sampled.video[k], facing, sampled.mapping),
                "forward_axis": facing,
                "height": round(float(ent.height), 3),
            }
        )
    return items


def findings(sampled: Sampled, items: list[dict[str, Any]] | None = None) -> list[checks.Finding]:
    """The in-distribution checks on a sampled shot (what Check Shot lists)."""
    items = items if items is not None else entity_poses(sampled)
    context13 = poses.camera_context(sampled.slots[0], sampled.mapping)
    found = checks.check_shot(
        [i["name"] for i in items],
        [i["poses"] for i in items],
        context13,
        sampled.mapping,
        tilts=[poses.tilt_degrees(sampled.slots[k]) for k in range(1, len(items) + 1)],
        eased=[keys.eased(e.object) for e in sampled.entities],
    )
    if sampled.mapping == "rig":
        for k, item in enumerate(items):
            # Where the model's own camera misses it, the out-of-view warning says so already.
            framed = np.ones(timeplan.POSE_SLOTS, dtype=bool)
            for f in found:
                if f.entity == k and f.code == "out_of_view":
                    framed[f.slots] = False
            found += checks.check_camera_view(
                k,
                item["name"],
                sampled.slots[0],
                sampled.slots[k + 1],
                sampled.frame_box or checks.MODEL_FRAME_BOX,
                framed,
            )
    found += checks.check_camera(sampled.video[0])
    return found


def shot_findings(context: bpy.types.Context, scene: bpy.types.Scene) -> list[checks.Finding]:
    """Sample the shot and check it, whatever its prompts say. Raises ShotError."""
    return findings(sample(context, scene))


def build(context: bpy.types.Context, scene: bpy.types.Scene) -> Export:
    """Sample the shot and build its job. Raises ShotError with the first problem."""
    problems = shot_problems(scene, presence.shot_view_layer(context, scene))
    if problems:
        raise ShotError(problems[0])
    sampled = sample(context, scene)
    settings = scene.trajmaster
    camera = sampled.camera
    start, end = settings.frame_start, settings.frame_end
    items = entity_poses(sampled)
    for item, ent in zip(items, sampled.entities, strict=True):
        item["prompt"] = ent.prompt.strip()
        item["color"] = [round(float(c), 4) for c in ent.color]
    found = findings(sampled, items)
    job = jobfile.build_job(
        scene_name=shot_label(scene),
        frame_start=start,
        frame_end=end,
        scene_fps=scene_fps(scene),
        location=settings.location_prompt.strip(),
        entities=[
            {key: i[key] for key in ("name", "prompt", "poses", "video_poses", "color", "forward_axis", "height")}
            for i in items
        ],
        pose_mapping=sampled.mapping,
        engine=settings.engine.lower(),
        sampling={
            "seed": settings.seed,
            "guidance_scale": round(settings.guidance_scale, 4),
            "lora_scale": round(settings.lora_scale, 4),
            **quality_sampling(settings),
        },
        camera={
            "name": camera.name[:MAX_NAME_CHARS],
            "context": poses.camera_context(sampled.slots[0], sampled.mapping),
            "video_context": poses.camera_context(sampled.video[0], sampled.mapping),
        },
        video=True,
        source={
            "scene": scene.name,
            "blender": bpy.app.version_string,
            "blend_file": bpy.data.filepath or None,
            "addon": _addon_version(),
        },
    )
    return Export(job, found)


def _addon_version() -> str:
    from ..backend import __version__

    return __version__


def write(job: dict[str, Any], path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
    """Write a job file atomically. Blender's Python may lack jsonschema, so the backend validates."""
    jobfile.write_atomic(path, jobfile.dumps(job), overwrite=overwrite)


def word_hint(text: str) -> str | None:
    """The panel's hint for a prompt outside the range the model follows well."""
    n = jobfile.word_count(text)
    low, high = GOOD_WORDS
    if n == 0:
        return None
    if n < low:
        return f"{n} words: {low}-{high} work best; add detail"
    if n > high:
        return f"{n} words: {low}-{high} work best; trim it"
    return None
