"""Takes in the Video Sequence Editor: one movie strip per generation, never replacing one.

A take spans exactly the shot's frames: the 49-frame, 8 fps clip is retimed with Blender's own
retiming keys so that clip frame j shows at scene time start + (end - start) * j / 48, the
instant the model rendered it for (backend.timeplan). Takes of a shot stack upwards, one
channel above the previous take; the newest plays and the earlier ones are muted. A variation
set (directing/variations.py) takes consecutive channels in its own order, each strip named
after its take and what differs; the set's first take plays.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bpy

from ..backend import job as jobfile
from ..backend import poses, takes, timeplan
from . import compat
from .directing import variations

TAKE_PROP = "trajmaster"
# A contact sheet's strip (directing/contact_sheet.py): not a take, so it has its own property.
SHEET_PROP = "trajmaster_sheet"
MAX_CHANNEL = 128
LABEL_SEPARATOR = " \u00b7 "  # a middle dot: "Scene_take_005 · LoRA 0.30"


class TakeError(RuntimeError):
    pass


@dataclass(frozen=True)
class Shot:
    """What a take belongs to: the shot's name and frame range, and the scene it was made in."""

    name: str
    frame_start: int
    frame_end: int
    scene: str


def take_info(strip: Any) -> dict[str, Any] | None:
    """The TrajMaster properties of a strip (as a plain dict), or None for other strips."""
    if strip is None or TAKE_PROP not in strip:
        return None
    value = strip[TAKE_PROP]
    return value.to_dict() if hasattr(value, "to_dict") else dict(value)


def shot_takes(editor: bpy.types.SequenceEditor, shot: str) -> list[Any]:
    """The shot's take strips, oldest first."""
    found = []
    for strip in compat.strips(editor):
        info = take_info(strip)
        if info is not None and info.get("shot") == shot:
            found.append((int(info.get("take", 0)), strip))
    return [s for _, s in sorted(found, key=lambda pair: pair[0])]


def sheet_info(strip: Any) -> dict[str, Any] | None:
    """The contact sheet properties of a strip (as a plain dict), or None for other strips."""
    if strip is None or SHEET_PROP not in strip:
        return None
    value = strip[SHEET_PROP]
    return value.to_dict() if hasattr(value, "to_dict") else dict(value)


def shot_sheets(editor: bpy.types.SequenceEditor, shot: str) -> list[Any]:
    """The shot's contact sheet strips, in channel order."""
    found = [s for s in compat.strips(editor) if (sheet_info(s) or {}).get("shot") == shot]
    return sorted(found, key=lambda s: s.channel)


def _channel_free(editor: bpy.types.SequenceEditor, channel: int, start: int, end: int) -> bool:
    for strip in compat.strips(editor):
        if strip.channel == channel and strip.frame_final_start < end and strip.frame_final_end > start:
            return False
    return True


def free_channel(editor: bpy.types.SequenceEditor, start: int, end: int, above: int) -> int:
    """The first channel above `above` with nothing in frames [start, end)."""
    for channel in range(above + 1, MAX_CHANNEL + 1):
        if _channel_free(editor, channel, start, end):
            return channel
    raise TakeError(
        f"No free sequencer channel above {above} for frames {start}-{end - 1}; "
        "delete or move some strips and add the take again."
    )


def retime(scene: bpy.types.Scene, editor: bpy.types.SequenceEditor, strip: Any, start: int, end: int) -> None:
    """Stretch the 49-frame clip over the shot: clip frame 0 at `start`, frame 48 at `end`.

    Blender's own retiming does it (the strip keeps its clip; scrubbing maps clip time to scene
    time). Only the speed operator is used: reading or moving retiming keys through the Python
    API is unreliable in 4.2-5.0 when the sequencer holds strips without retiming data (effect
    strips), where it picks the wrong strip's keys and can crash.
    """
    frames = timeplan.VIDEO_FRAMES
    span = end - start
    if compat.RETIMING_KEY_AFTER_LAST_FRAME:
        # 5.0+: the end key marks the end of the last frame (content index 49); rounding down keeps
        # every scene frame within one frame of the time plan (tests/blender/test_blender_takes.py).
        length = frames * span // (frames - 1)
    else:
        length = span  # the end key sits on the last frame (content index 48): exact
    # The operator rounds (5.0) or truncates (4.2, 4.3) the segment's new length: aim a quarter
    # frame past it so both land on `length`.
    speed = 100.0 * frames / (length + 0.25)
    for other in compat.strips(editor):
        other.select = False
    strip.select = True
    editor.active_strip = strip
    with bpy.context.temp_override(**compat.sequencer_override(scene)):
        result = bpy.ops.sequencer.retiming_segment_speed_set(speed=speed)
    if result != {"FINISHED"}:
        raise TakeError("Blender could not retime the take; please report this with your Blender version.")
    strip.frame_final_end = end + 1
    if (strip.frame_final_start, strip.frame_final_end) != (start, end + 1):
        raise TakeError(
            f"Blender placed the take at frames {strip.frame_final_start}-{strip.frame_final_end - 1} instead of "
            f"{start}-{end}; please report this with your Blender version."
        )


def add_take(
    context: bpy.types.Context,
    scene: bpy.types.Scene,
    shot: Shot,
    result: dict[str, Any],
    job: dict[str, Any],
    job_path: str,
    *,
    into: bpy.types.Scene | None = None,
) -> Any:
    """Put a finished take into the sequencer of `scene` (5.x: its sequencer scene), or of `into`."""
    target = into or compat.sequencer_scene(context, scene, claim=True)
    editor = target.sequence_editor or target.sequence_editor_create()
    earlier = shot_takes(editor, shot.name)
    start, end = shot.frame_start, shot.frame_end
    variation = variations.of_job(job)
    channel, play = _placement(editor, earlier, variation, start, end)
    video = str(result["video"])
    name = str(result.get("name") or Path(video).stem)
    # A strip has no label of its own: a set's takes say what differs in their names, after the
    # take's name (which stays its start, as in the take folder), and a take below Final quality
    # says so last ("Scene_take_004 · Draft").
    labels = [variation["label"]] if variation and variation.get("label") else []
    quality = jobfile.quality_of(job["sampling"])
    if quality != "final":
        labels.append(quality.capitalize())
    strip_name = LABEL_SEPARATOR.join([name, *labels])
    filepath = video
    if bpy.data.filepath:
        try:
            filepath = bpy.path.relpath(video)  # the .blend and its takes move together
        except ValueError:
            pass  # another drive (Windows): keep the absolute path
    try:
        # Given the final path here: setting strip.filepath afterwards would open the movie a second
        # time (about 10 ms on the timer tick that places the take).
        # Scaled to fit the scene's frame with its aspect kept (Blender's "Scale to Fit"): a 720 x 480
        # take fills the height of a 1920 x 1080 frame instead of sitting in it at its own size.
        strip = compat.strips(editor).new_movie(
            name=strip_name, filepath=filepath, channel=channel, frame_start=start, fit_method="FIT"
        )
    except RuntimeError as exc:
        raise TakeError(f"Blender could not open the take {video} ({exc}); the file may be damaged.") from None
    try:
        retime(target, editor, strip, start, end)
    except BaseException:
        compat.strips(editor).remove(strip)
        raise
    if play:
        for other in earlier:
            other.mute = True
    strip.mute = not play
    strip[TAKE_PROP] = take_properties(shot, result, job, job_path)
    return strip


def _placement(
    editor: bpy.types.SequenceEditor, earlier: list[Any], variation: dict[str, Any] | None, start: int, end: int
) -> tuple[int, bool]:
    """(channel, plays) for a new take: above the shot's previous takes and playing; a variation
    in its set's run of channels, playing only if it is the set's first take so far."""

    def free(channel: int) -> bool:
        return _channel_free(editor, channel, start, end + 1)

    if variation is None:
        return free_channel(editor, start, end + 1, max((s.channel for s in earlier), default=0)), True
    members = [(s, take_info(s)) for s in earlier]
    same_set = [(int(i.get("variation_index", 0)), s.channel) for s, i in members if _in_set(i, variation)]
    others = [s.channel for s, i in members if not _in_set(i, variation)]
    index, count = int(variation.get("index", 0)), int(variation.get("count", 1))
    channel = variations.set_channel(same_set, index, count, max(others, default=0), free, MAX_CHANNEL)
    if channel is None:
        channel = free_channel(editor, start, end + 1, max((s.channel for s in earlier), default=0))
    return channel, variations.plays([i for i, _ in same_set], index)


def _in_set(info: dict[str, Any] | None, variation: dict[str, Any]) -> bool:
    return bool(info) and info.get("variation_set") == variation.get("set")


def fit_scale(scene: bpy.types.Scene, strip: Any) -> float | None:
    """The scale at which `strip` fits `scene`'s frame keeping its aspect, as Blender's "Scale to
    Fit" computes it (output resolution, not its percentage); None when its size is not known."""
    element = strip.elements[0] if len(strip.elements) else None
    if element is None or element.orig_width <= 0 or element.orig_height <= 0:
        return None
    render = scene.render
    return min(render.resolution_x / element.orig_width, render.resolution_y / element.orig_height)


def fit_takes(context: bpy.types.Context, scene: bpy.types.Scene) -> int:
    """Fit every take in `scene`'s sequencer to its frame again (after its resolution changed:
    Blender fits a strip once, when it is added). Returns how many were fitted."""
    target = compat.sequencer_scene(context, scene)
    editor = target.sequence_editor
    fitted = 0
    for strip in compat.strips(editor) if editor else ():
        scale = fit_scale(target, strip) if take_info(strip) is not None else None
        if scale is not None:
            strip.transform.scale_x = strip.transform.scale_y = scale
            fitted += 1
    return fitted


def model_frame(scene: bpy.types.Scene) -> bool:
    """Whether `scene` renders the model's frame size, 720 x 480 (its takes then fill it 1:1)."""
    render = scene.render
    return (render.resolution_x, render.resolution_y) == (poses.MODEL_WIDTH, poses.MODEL_HEIGHT)


def take_properties(shot: Shot, result: dict[str, Any], job: dict[str, Any], job_path: str) -> dict[str, Any]:
    """The job's parameters on the strip: enough to regenerate, reopen the job, or read at a glance."""
    sampling = jobfile.resolve_sampling(job["sampling"])
    name = str(result.get("name") or Path(str(result["video"])).stem)
    return {
        "shot": shot.name,
        "take": takes.take_number(name, shot.name) or 0,
        "scene": shot.scene,
        "frame_start": shot.frame_start,
        "frame_end": shot.frame_end,
        "scene_fps": float(job["shot"]["scene_fps"]),
        "job": str(job_path),
        "video": str(result["video"]),
        "sidecar": str(result.get("sidecar") or ""),
        "engine": job["engine"],
        "pose_mapping": job["pose_mapping"],
        "seed": int(sampling["seed"]),
        "steps": int(sampling["steps"]),
        "guidance_scale": float(sampling["guidance_scale"]),
        "lora_scale": float(sampling["lora_scale"]),
        "annealed_steps": int(sampling["annealed_steps"]),
        "quality": str(sampling["quality"]),
        # Every speed setting the take was made with, as its sidecar records them (JSON text:
        # the keys are the engines' and may grow).
        "speed": json.dumps(take_speed(result, sampling)),
        "location": job["prompt"]["location"],
        "prompt": job["prompt"]["text"],
        # IDProperties hold no lists of strings: the entities travel as JSON text.
        "entities": json.dumps(
            [{"name": e["name"], "prompt": e["prompt"], "forward_axis": e.get("forward_axis")} for e in job["entities"]]
        ),
        **variation_properties(job),
    }


def take_speed(result: dict[str, Any], sampling: dict[str, Any]) -> dict[str, Any]:
    """The sidecar's `speed` record of a take; the job's quality alone when there is none to read."""
    try:
        with open(str(result.get("sidecar") or ""), encoding="utf-8") as f:
            speed = json.load(f).get("speed")
    except (OSError, ValueError, AttributeError):
        speed = None
    return speed if isinstance(speed, dict) else {"quality": str(sampling["quality"])}


def speed_text(info: dict[str, Any]) -> str:
    """A take's speed settings in one line, e.g. "Draft: 20 steps, 9 with the injector, step cache
    0.05 (4 of 11 steps reused); dtype bfloat16, compile off". Every key an engine records is
    shown, known or not, so a new speed option needs no change here."""
    try:
        speed = json.loads(str(info.get("speed") or "{}"))
    except ValueError:
        speed = {}
    if not isinstance(speed, dict):
        speed = {}
    speed = dict(speed)
    quality = str(speed.pop("quality", info.get("quality", "final"))).capitalize()
    job_part = []
    steps, injector = speed.pop("steps", None), speed.pop("injector_steps", None)
    if steps is not None:
        job_part.append(f"{steps} steps" + (f", {injector} with the injector" if injector is not None else ""))
    cache = speed.pop("step_cache", None)
    if isinstance(cache, dict):
        threshold = cache.get("threshold")
        computed, skipped = cache.get("computed_steps", 0), cache.get("skipped_steps", 0)
        job_part.append(f"step cache {threshold:g} ({skipped} of {computed + skipped} steps reused)")
    elif cache is not None:
        job_part.append(f"step cache {_speed_value(cache)}")
    engine_part = [f"{key.replace('_', ' ')} {_speed_value(value)}" for key, value in speed.items()]
    text = quality + (": " + ", ".join(job_part) if job_part else "")
    return text + ("; " + ", ".join(engine_part) if engine_part else "")


def _speed_value(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(", ", ": "))
    return str(value)


def variation_properties(job: dict[str, Any]) -> dict[str, Any]:
    """The job's variation record (directing/variations.py) as strip properties; none for a plain take."""
    variation = variations.of_job(job)
    if variation is None:
        return {}
    return {
        "variation_set": str(variation["set"]),
        "variation_index": int(variation.get("index", 0)),
        "variation_count": int(variation.get("count", 1)),
        "variation_varies": str(variation.get("varies", "")),
        "variation_value": float(variation.get("value", 0.0)),
        "variation_label": str(variation.get("label", "")),
    }


def take_named(context: bpy.types.Context, name: str) -> tuple[Any, dict[str, Any]] | tuple[None, None]:
    """The take strip called `name` in the sequencer the user looks at."""
    scene = compat.sequencer_scene(context, context.scene) if context.scene else None
    editor = scene.sequence_editor if scene else None
    strip = compat.strips(editor).get(name) if editor else None
    info = take_info(strip)
    return (strip, info) if info is not None else (None, None)


def take_video(strip: Any) -> Path:
    """The take's video file as the strip plays it (after a save-time copy, the copy)."""
    return Path(os.path.normpath(bpy.path.abspath(strip.filepath, library=strip.id_data.library)))


def selected_take(context: bpy.types.Context) -> tuple[Any, dict[str, Any]] | tuple[None, None]:
    """The active strip of the sequencer the user looks at, if it is a take."""
    scene = compat.sequencer_scene(context, context.scene) if context.scene else None
    editor = scene.sequence_editor if scene else None
    strip = editor.active_strip if editor else None
    info = take_info(strip)
    return (strip, info) if info is not None else (None, None)
