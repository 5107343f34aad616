"""Presets: entity and location prompts, trajectory templates and example shots, from JSON.

Pure Python + numpy (no bpy): the add-on lists and applies presets inside Blender, the tests
check them without it. The built-in files live in `presets/`; a user folder (the add-on passes
its extension user folder) adds presets and overrides built-in ones of the same name. Every
file is plain JSON with a "format" and a "version"; docs/presets.md describes them. The path
math of trajectory templates lives in backend/templates.py; its public functions are
re-exported here so one import serves the add-on.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from . import checks, poses
from .prompt_help import WORD_RANGE
from .templates import (
    FACING_MODES,
    SEGMENT_TYPES,
    Keyframe,
    Segment,
    Template,
    TemplateEntity,
    TemplateError,
    camera_ground,
    path_length,
    sample_template,
    template_findings,
    template_keyframes,
    template_speeds,
    to_world,
)

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "presets"
VERSION = 1
ENTITIES_FORMAT = "trajmaster-entities"
LOCATIONS_FORMAT = "trajmaster-locations"
TRAJECTORIES_FORMAT = "trajmaster-trajectories"
SHOT_FORMAT = "trajmaster-shot"
FORMATS = (ENTITIES_FORMAT, LOCATIONS_FORMAT, TRAJECTORIES_FORMAT, SHOT_FORMAT)
# No number in a preset file is larger than this (metres, degrees, frames, seconds, shares).
LARGEST = 1e6
# The prompt length the model follows well (model reference, section 1); checked for built-ins.
PROMPT_WORDS = WORD_RANGE


class PresetError(ValueError):
    """A preset file that cannot be used; the message names the file and the field."""

    def __init__(self, file: str, reason: str):
        self.file, self.reason = file, reason
        super().__init__(f"{file}: {reason}")


# --- the presets ------------------------------------------------------------------------------


# How tall an entity preset is when its file does not say (metres): a person.
DEFAULT_ENTITY_HEIGHT = 1.7


@dataclass(frozen=True)
class EntityPreset:
    name: str
    category: str
    prompt: str
    source: str = ""
    height: float = DEFAULT_ENTITY_HEIGHT  # metres, typical: the preview draws the entity this tall


@dataclass(frozen=True)
class LocationPreset:
    name: str
    prompt: str
    source: str = ""


@dataclass(frozen=True)
class ShotCamera:
    """Where an example shot's camera stands: world position, heading (as templates), pitch."""

    position: tuple[float, float, float] = (0.0, 0.0, 1.6)
    heading_deg: float = 0.0
    pitch_deg: float = poses.RIG_PITCH_DEG
    match_model_camera: bool = True  # 35 mm on 23.76 mm, 720 x 480 (poses.MODEL_*)

    @property
    def rotation_euler(self) -> tuple[float, float, float]:
        """Blender XYZ Euler angles (radians): a camera looks down -Z, so X = 90 degrees looks along +Y."""
        return (math.pi / 2 + math.radians(self.pitch_deg), 0.0, -math.radians(self.heading_deg))

    @property
    def matrix(self) -> np.ndarray:
        rx, _, rz = self.rotation_euler
        cx, sx, cz, sz = math.cos(rx), math.sin(rx), math.cos(rz), math.sin(rz)
        m = np.eye(4)
        m[:3, :3] = np.array([[cz, -sz, 0.0], [sz, cz, 0.0], [0.0, 0.0, 1.0]]) @ np.array(
            [[1.0, 0.0, 0.0], [0.0, cx, -sx], [0.0, sx, cx]]
        )
        m[:3, 3] = self.position
        return m


@dataclass(frozen=True)
class ShotEntity:
    entity: str  # an entity preset's name
    trajectory: str  # a template's name
    template_entity: int = 0  # which of the template's entities this one follows
    label: str = ""  # the empty's name; the file may leave it out: then the entity preset's name
    color: tuple[float, float, float] | None = None


@dataclass(frozen=True)
class Shot:
    name: str
    label: str
    description: str
    location: str  # a location preset's name
    frame_start: int
    frame_end: int
    fps: float
    camera: ShotCamera
    entities: tuple[ShotEntity, ...]
    source: str = ""

    @property
    def duration_s(self) -> float:
        return (self.frame_end - self.frame_start) / self.fps


@dataclass
class PresetLibrary:
    """Built-in presets merged with the user's: same name overrides, new names are added."""

    entities: dict[str, EntityPreset] = field(default_factory=dict)
    locations: dict[str, LocationPreset] = field(default_factory=dict)
    trajectories: dict[str, Template] = field(default_factory=dict)
    shots: dict[str, Shot] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # one sentence per skipped file or shot


# --- reading and validating -------------------------------------------------------------------


class _Reader:
    """Typed access to one JSON object; every complaint names the file and the field."""

    def __init__(self, data: Any, file: str, where: str):
        self.file, self.where = file, where
        if not isinstance(data, dict):
            self.fail("", "must be a JSON object ({...})")
        self.data: dict[str, Any] = data

    def fail(self, key: str, problem: str) -> NoReturn:
        place = ".".join(p for p in (self.where, key) if p) or "the file"
        raise PresetError(self.file, f"{place} {problem}")

    def has(self, key: str) -> bool:
        return key in self.data

    def child(self, key: str) -> _Reader:
        return _Reader(self.get(key), self.file, f"{self.where}.{key}" if self.where else key)

    def items(self, key: str, minimum: int = 1, maximum: int | None = None) -> list[_Reader]:
        value = self.get(key)
        if not isinstance(value, list) or len(value) < minimum or (maximum is not None and len(value) > maximum):
            count = f"{minimum}" + (f" to {maximum}" if maximum is not None else " or more")
            self.fail(key, f"must be a list of {count} objects")
        prefix = f"{self.where}.{key}" if self.where else key
        return [_Reader(v, self.file, f"{prefix}[{i}]") for i, v in enumerate(value)]

    def get(self, key: str, default: Any = ...) -> Any:
        if key not in self.data:
            if default is ...:
                self.fail(key, "is missing")
            return default
        return self.data[key]

    def text(self, key: str, default: Any = ...) -> str:
        if default is not ... and key not in self.data:
            return default
        value = self.get(key)
        if not isinstance(value, str) or not value.strip():
            self.fail(key, "must be non-empty text")
        return value.strip()

    def number(self, key: str, default: Any = ..., low: float = -LARGEST, high: float = LARGEST) -> float:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self.fail(key, "must be a number")
        if not low <= value <= high:
            self.fail(key, f"must be between {low:g} and {high:g}, got {value:g}")
        return float(value)

    def positive(self, key: str, default: Any = ...) -> float:
        value = self.number(key, default)
        if value <= 0:
            self.fail(key, f"must be greater than 0, got {value:g}")
        return value

    def integer(self, key: str, default: Any = ...) -> int:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, "must be a whole number")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.get(key, default)
        if not isinstance(value, bool):
            self.fail(key, "must be true or false")
        return value

    def vector(self, key: str, size: int, default: Any = ...) -> tuple[float, ...]:
        value = self.get(key, default)
        if (
            not isinstance(value, list)
            or len(value) != size
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) <= LARGEST for v in value)
        ):
            self.fail(key, f"must be a list of {size} numbers (at most {LARGEST:g} each)")
        return tuple(float(v) for v in value)

    def choice(self, key: str, options: Sequence[str], default: Any = ...) -> str:
        value = self.get(key, default)
        if value not in options:
            self.fail(key, f"must be one of {', '.join(options)}, got {value!r}")
        return value

    def check_keys(self, allowed: Sequence[str]) -> None:
        unknown = sorted(set(self.data) - set(allowed))
        if unknown:
            self.fail(unknown[0], f"is not a known field (known: {', '.join(allowed)}); check its spelling")


def _parse_json(text: str, file: str) -> Any:
    def refuse(constant: str) -> NoReturn:
        raise PresetError(file, f"{constant} is not a number; use a finite value")

    try:
        return json.loads(text, parse_constant=refuse)
    except json.JSONDecodeError as exc:
        raise PresetError(file, f"is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from exc
    except RecursionError as exc:
        raise PresetError(file, "is nested too deeply to be a preset file") from exc


def _header(data: Any, file: str) -> tuple[_Reader, str]:
    top = _Reader(data, file, "")
    kind = top.get("format")
    if kind not in FORMATS:
        top.fail("format", f"must be one of {', '.join(FORMATS)}, got {kind!r}")
    version = top.integer("version")
    if version > VERSION:
        top.fail("version", f"is {version}, made for a newer TrajMaster; update the extension")
    if version < 1:
        top.fail("version", f"must be {VERSION}")
    return top, kind


def _entity(r: _Reader, source: str) -> EntityPreset:
    r.check_keys(("name", "category", "height", "prompt"))
    height = r.number("height", DEFAULT_ENTITY_HEIGHT, low=0.05, high=100.0)
    return EntityPreset(r.text("name"), r.text("category"), r.text("prompt"), source, height)


def _location(r: _Reader, source: str) -> LocationPreset:
    r.check_keys(("name", "prompt"))
    return LocationPreset(r.text("name"), r.text("prompt"), source)


def _segment(r: _Reader) -> Segment:
    kind = r.choice("type", SEGMENT_TYPES)
    share = r.positive("share") if r.has("share") else None
    if kind == "line":
        r.check_keys(("type", "length", "to", "share"))
        if r.has("length") == r.has("to"):
            r.fail("", "needs either length (metres along the current heading) or to ([x, y]), not both")
        if r.has("to"):
            return Segment("line", to=r.vector("to", 2), share=share)
        return Segment("line", length=r.positive("length"), share=share)
    if kind == "arc":
        r.check_keys(("type", "radius", "turn_deg", "share"))
        turn = r.number("turn_deg")
        if turn == 0:
            r.fail("turn_deg", "must not be 0 (positive turns right, negative left); use a line to go straight")
        return Segment("arc", radius=r.positive("radius"), turn_deg=turn, share=share)
    r.check_keys(("type", "turn_deg", "share") if kind == "spin" else ("type", "share"))
    if share is None:
        r.fail("share", f"is missing: a {kind} segment takes time but covers no distance, so say how much")
    return Segment(kind, turn_deg=r.number("turn_deg") if kind == "spin" else 0.0, share=share)


def _template_entity(r: _Reader) -> TemplateEntity:
    r.check_keys(("role", "start", "heading_deg", "segments", "facing", "facing_deg", "height_m", "stationary"))
    start = r.vector("start", 2)
    segments = tuple(_segment(s) for s in r.items("segments", minimum=0))
    if r.has("heading_deg"):
        heading = r.number("heading_deg")
    elif segments and segments[0].to is not None:
        to = segments[0].to
        heading = math.degrees(math.atan2(to[0] - start[0], to[1] - start[1]))
    else:
        r.fail("heading_deg", "is missing (0 = away from the camera, 90 = to its right)")
    facing = r.choice("facing", FACING_MODES, "path")
    if facing == "fixed" and not r.has("facing_deg"):
        r.fail("facing_deg", 'is missing: facing "fixed" needs the heading to hold')
    entity = TemplateEntity(
        role=r.text("role"),
        start=start,
        heading_deg=heading,
        segments=segments,
        facing=facing,
        facing_deg=r.number("facing_deg", 0.0),
        height_m=r.number("height_m", 0.0),
        stationary=r.flag("stationary", False),
    )
    moves = path_length(entity) > 1e-9
    if moves and entity.stationary:
        r.fail("stationary", "is true but the path moves; remove it or use only spin and wait segments")
    if not moves and not entity.stationary:
        r.fail("stationary", 'is missing: this entity does not move, so say "stationary": true')
    return entity


def _template(r: _Reader, source: str) -> Template:
    r.check_keys(("name", "description", "default_duration_s", "entities"))
    return Template(
        name=r.text("name"),
        description=r.text("description", ""),
        default_duration_s=r.positive("default_duration_s"),
        entities=tuple(_template_entity(e) for e in r.items("entities", 1, checks.MAX_ENTITIES)),
        source=source,
    )


def _shot(top: _Reader, source: str) -> Shot:
    top.check_keys(
        ("format", "version", "name", "label", "description", "location", "frames", "fps", "camera", "entities")
    )
    frames = top.vector("frames", 2)
    if frames[0] != int(frames[0]) or frames[1] != int(frames[1]) or frames[1] <= frames[0]:
        top.fail("frames", "must be [first frame, last frame], whole numbers, last after first")
    cam = top.child("camera") if top.has("camera") else _Reader({}, top.file, "camera")
    cam.check_keys(("position", "heading_deg", "pitch_deg", "match_model_camera"))
    pitch = cam.get("pitch_deg", "rig")
    camera = ShotCamera(
        position=cam.vector("position", 3, [0.0, 0.0, 1.6]),
        heading_deg=cam.number("heading_deg", 0.0),
        pitch_deg=poses.RIG_PITCH_DEG if pitch == "rig" else cam.number("pitch_deg", low=-90.0, high=90.0),
        match_model_camera=cam.flag("match_model_camera", True),
    )
    entities = []
    for e in top.items("entities", 1, checks.MAX_ENTITIES):
        e.check_keys(("entity", "trajectory", "template_entity", "label", "color"))
        color = e.vector("color", 3) if e.has("color") else None
        index = e.integer("template_entity", 0)
        if index < 0:
            e.fail("template_entity", "must be 0 or more (0 = the template's first entity)")
        entities.append(
            ShotEntity(e.text("entity"), e.text("trajectory"), index, e.text("label", e.text("entity")), color)
        )
    return Shot(
        name=top.text("name"),
        label=top.text("label", top.text("name")),
        description=top.text("description", ""),
        location=top.text("location"),
        frame_start=int(frames[0]),
        frame_end=int(frames[1]),
        fps=top.positive("fps"),
        camera=camera,
        entities=tuple(entities),
        source=source,
    )


def load_file(path: str | Path) -> tuple[str, list[Any]]:
    """One preset file -> (its format, its presets). Raises PresetError naming the file and field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise PresetError(path.name, "is not UTF-8 text; save it as UTF-8") from exc
    except OSError as exc:
        raise PresetError(path.name, f"cannot be read ({exc.strerror})") from exc
    return loads(text, path.name, str(path))


def loads(text: str, file: str = "<text>", source: str = "") -> tuple[str, list[Any]]:
    """Preset JSON text -> (its format, its presets); `file` names it in errors, `source` in presets."""
    top, kind = _header(_parse_json(text, file), file)
    if kind == SHOT_FORMAT:
        return kind, [_shot(top, source)]
    if kind == ENTITIES_FORMAT:
        top.check_keys(("format", "version", "entities"))
        found: list[Any] = [_entity(r, source) for r in top.items("entities", minimum=0)]
    elif kind == LOCATIONS_FORMAT:
        top.check_keys(("format", "version", "locations"))
        found = [_location(r, source) for r in top.items("locations", minimum=0)]
    else:
        top.check_keys(("format", "version", "templates"))
        found = [_template(r, source) for r in top.items("templates", minimum=0)]
    names = [p.name for p in found]
    for name in names:
        if names.count(name) > 1:
            top.fail("", f"names {name!r} twice; give each preset its own name")
    return kind, found


def _preset_files(folder: Path) -> list[Path]:
    """The JSON files of a preset folder: its top level and its shots/ folder, in name order."""
    files = sorted(folder.glob("*.json"))
    if (folder / "shots").is_dir():
        files += sorted((folder / "shots").glob("*.json"))
    return files


def _merge(library: PresetLibrary, kind: str, found: list[Any]) -> None:
    table = {
        ENTITIES_FORMAT: library.entities,
        LOCATIONS_FORMAT: library.locations,
        TRAJECTORIES_FORMAT: library.trajectories,
        SHOT_FORMAT: library.shots,
    }[kind]
    for preset in found:
        table[preset.name] = preset


def load_library(user_folder: str | Path | None = None, builtin_folder: str | Path | None = None) -> PresetLibrary:
    """The built-in presets, then the user folder's on top (same name overrides, new ones added).

    A broken built-in file raises PresetError (the extension is damaged); a broken user file is
    skipped and described in `problems`, as is a shot that names a preset that does not exist.
    """
    library = PresetLibrary()
    for path in _preset_files(Path(builtin_folder) if builtin_folder is not None else BUILTIN_DIR):
        _merge(library, *load_file(path))
    if user_folder is not None and Path(user_folder).is_dir():
        for path in _preset_files(Path(user_folder)):
            try:
                _merge(library, *load_file(path))
            except PresetError as exc:
                library.problems.append(
                    f"Skipped the user preset file {path}: {exc.reason}; fix it and reload the presets."
                )
    for name, shot in list(library.shots.items()):
        missing = shot_problem(shot, library)
        if missing:
            del library.shots[name]
            library.problems.append(f"Skipped the example shot {name!r} ({shot.source}): {missing}.")
    return library


def shot_problem(shot: Shot, library: PresetLibrary) -> str | None:
    """Why `shot` cannot be set up from `library` (a preset it names is missing), or None."""
    if shot.location not in library.locations:
        return f"it names the location {shot.location!r}, which is not a preset"
    for k, e in enumerate(shot.entities):
        if e.entity not in library.entities:
            return f"entities[{k}] names the entity {e.entity!r}, which is not a preset"
        template = library.trajectories.get(e.trajectory)
        if template is None:
            return f"entities[{k}] names the trajectory {e.trajectory!r}, which is not a template"
        if e.template_entity >= len(template.entities):
            return (
                f"entities[{k}].template_entity is {e.template_entity}, but {e.trajectory!r} has "
                f"{len(template.entities)} entit{'y' if len(template.entities) == 1 else 'ies'}"
            )
    return None


__all__ = [
    "BUILTIN_DIR",
    "DEFAULT_ENTITY_HEIGHT",
    "FACING_MODES",
    "FORMATS",
    "SEGMENT_TYPES",
    "EntityPreset",
    "Keyframe",
    "LocationPreset",
    "PresetError",
    "PresetLibrary",
    "Segment",
    "Shot",
    "ShotCamera",
    "ShotEntity",
    "Template",
    "TemplateEntity",
    "TemplateError",
    "camera_ground",
    "load_file",
    "load_library",
    "loads",
    "path_length",
    "sample_template",
    "shot_problem",
    "template_findings",
    "template_keyframes",
    "template_speeds",
    "to_world",
]
