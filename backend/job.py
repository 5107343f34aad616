"""The job file: the one contract between the add-on, the CLI and any render farm.

A job is a JSON object (format "trajmaster-job", version 1) described by job.schema.json next
to this module (published as docs/job.schema.json). This module builds, reads, validates and
writes jobs. It imports only the standard library and numpy at module level so the add-on can
use it inside Blender; jsonschema is imported when a job is validated (the backend has it).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from . import timeplan
from .errors import clip

FORMAT = "trajmaster-job"
VERSION = 1
SCHEMA_PATH = Path(__file__).with_name("job.schema.json")

ENGINES = ("preview", "cogvideox")
MAX_ENTITIES = 3
# Each 12-vector's rotation must be a proper rotation to this tolerance.
ROTATION_TOLERANCE = 1e-3
# The camera context's up vector must be a unit vector to this tolerance.
UP_TOLERANCE = 1e-2

# What a job file may be at all, before its fields are read (docs/job-file.md, "Limits"): a real
# job is some 50 KB and 6 levels deep; anything far beyond is not a job and must not cost
# memory, time or a crash (a FIFO or /dev/zero as the path, deep nesting, numbers with
# thousands of digits).
MAX_JOB_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 32
MAX_INT_DIGITS = 18
# How much of a wrong value an error message repeats.
ECHO_CHARS = 60
# Every field's numbers are bounded (in the schema) so the engines' float math stays sane:
# Blender's own frame range, and 10 km for translations and camera heights (the model was
# trained on shots of a few to some 20 metres).

SAMPLING_DEFAULTS: dict[str, Any] = {
    "seed": 42,
    "steps": 50,
    "guidance_scale": 6.0,
    "lora_scale": 0.6,
    "annealed_steps": 20,
    "height": 480,
    "width": 720,
    "frames": 49,
}


# Quality presets (docs/job-file.md, "Quality"). A preset owns the fields it lists: a job that
# names one may leave them out (the preset fills them) and must not contradict them. "final" is
# the release's schedule. "draft" keeps the release's proportion of injector steps on a shorter
# schedule that puts the injector's last step on the same timestep as final's: the DPM solver's
# trailing timesteps are 999, 979, ... for 50 steps and 999, 949, ... for 20, so step 20 of 50
# and step 8 of 20 are both timestep 599 (the trajectory shapes the same noise levels).
QUALITIES = ("final", "draft", "custom")
DRAFT_STEP_CACHE = 0.05  # diffusers' First Block Cache default threshold (docs/performance.md)
QUALITY_PRESETS: dict[str, dict[str, Any]] = {
    "final": {"steps": 50, "annealed_steps": 20},
    "draft": {"steps": 20, "annealed_steps": 8, "step_cache": DRAFT_STEP_CACHE},
}
PRESET_FIELDS = ("steps", "annealed_steps", "step_cache")


def quality_of(sampling: dict[str, Any]) -> str:
    """The quality a job's sampling settings run at: the one it names, else what its fields amount
    to (a job without `quality`, every job from before it, runs its fields as written)."""
    named = sampling.get("quality")
    if named:
        return str(named)
    for name, preset in QUALITY_PRESETS.items():
        if all(sampling.get(f) == preset.get(f) for f in PRESET_FIELDS):
            return name
    return "custom"


def resolve_sampling(sampling: dict[str, Any]) -> dict[str, Any]:
    """The sampling settings a (valid) job runs with: its preset's fields filled in, its quality named."""
    out = {**sampling, **QUALITY_PRESETS.get(str(sampling.get("quality")), {})}
    out["quality"] = quality_of(sampling)
    return out


def preset_summary(quality: str) -> str:
    """ "20 steps, 9 with the injector, step cache 0.05" for a preset."""
    preset = QUALITY_PRESETS[quality]
    steps, annealed = preset["steps"], preset["annealed_steps"]
    text = f"{steps} steps, {min(annealed + 1, steps)} with the injector"
    cache = preset.get("step_cache")
    return text + (f", step cache {cache:g}" if cache is not None else ", no step cache")


class JobError(ValueError):
    """A job that cannot be run. `problems` lists every issue as "field.path: what is wrong"."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        first = self.problems[0] if self.problems else "invalid job"
        more = len(self.problems) - 1
        super().__init__(first + (f" (and {more} more problem{'s' if more > 1 else ''})" if more > 0 else ""))


def compose_prompt(entity_prompts: list[str], location: str) -> str:
    """The global prompt the release composes from the entity prompts (model reference, 1)."""
    parts = [p.strip().rstrip(".") for p in entity_prompts]
    place = location.strip().rstrip(".")
    if len(parts) == 1:
        return f"{parts[0]} is moving in the {place}"
    return f"{' and '.join(parts)} are moving in the {place}"


def word_count(text: str) -> int:
    return len(text.split())


def build_job(
    *,
    scene_name: str,
    frame_start: int,
    frame_end: int,
    scene_fps: float,
    location: str,
    entities: list[dict[str, Any]],
    pose_mapping: str = "rig",
    engine: str = "preview",
    sampling: dict[str, Any] | None = None,
    camera: dict[str, Any] | None = None,
    video: bool = False,
    source: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A version-1 job as a plain dict. `entities` items: name, prompt, poses (13 x 12), and
    optionally video_poses (49 x 12), color, forward_axis. Not validated here: call validate()."""
    job: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "shot": {
            "scene_name": scene_name,
            "frame_start": int(frame_start),
            "frame_end": int(frame_end),
            "scene_fps": float(scene_fps),
            "pose_frames": timeplan.pose_times(frame_start, frame_end),
        },
        "prompt": {
            "location": location,
            "text": compose_prompt([e["prompt"] for e in entities], location) if entities else location,
        },
        "entities": [_plain(e) for e in entities],
        "pose_mapping": pose_mapping,
        "sampling": {**SAMPLING_DEFAULTS, **(sampling or {})},
        "engine": engine,
    }
    if video:
        job["shot"]["video_frames"] = timeplan.video_times(frame_start, frame_end)
    if camera is not None:
        job["camera"] = _plain(camera)
    if source is not None:
        job["source"] = _plain(source)
    return job


def _plain(value: Any) -> Any:
    """numpy arrays and scalars -> JSON-ready lists and floats."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


# --- reading ---------------------------------------------------------------------------------


class _NonFinite:
    """Stands in for NaN, Infinity and numbers too large to use while parsing, so the field path
    can be reported."""

    def __init__(self, text: str, why: str = "is not a number; use a finite value"):
        self.text = text
        self.why = why


def _parse_float(text: str) -> float | _NonFinite:
    value = float(text)
    # json turns 1e309 into inf without asking parse_constant.
    return value if np.isfinite(value) else _NonFinite(text, "is too large to be a number; use a finite value")


def _parse_int(text: str) -> int | _NonFinite:
    # Python refuses to read integers of more than 4300 digits (a ValueError mid-parse); no field
    # needs more than 18.
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        return _NonFinite(text, f"is too large (more than {MAX_INT_DIGITS} digits); use a smaller number")
    return int(text)


def echo(value: Any, limit: int = ECHO_CHARS) -> str:
    """A value as an error message repeats it: JSON, cut to `limit` characters."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (ValueError, RecursionError):
        text = repr(value)
    return clip(text, limit)


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]{1,40}")


def _path(parts: list[Any] | tuple[Any, ...]) -> str:
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif not _PLAIN_KEY.fullmatch(str(p)):
            # A key a user (or a fuzzer) made up: quoted and escaped, so that a newline or a
            # thousand characters in it cannot break the one-sentence message.
            out += f"[{_echo_key(str(p))}]"
        else:
            out += f".{p}" if out else str(p)
    return out or "(the job)"


def _find_unusable(doc: Any) -> list[str]:
    """Every NaN/Infinity/too-large number with its path, and nesting beyond MAX_DEPTH. Iterative:
    a document deep enough to matter must not exhaust the stack here either."""
    found: list[str] = []
    stack: list[tuple[Any, tuple[Any, ...]]] = [(doc, ())]
    while stack:
        value, where = stack.pop()
        if isinstance(value, float) and not np.isfinite(value):
            found.append(f"{_path(where)}: {value} is not a number; use a finite value")
        elif isinstance(value, _NonFinite):
            text = value.text if len(value.text) <= 24 else f"{value.text[:12]}… ({len(value.text)} characters)"
            found.append(f"{_path(where)}: {text} {value.why}")
        elif isinstance(value, (dict, list)):
            if len(where) >= MAX_DEPTH:
                return [f"{_path(where[:4])}…: nested more than {MAX_DEPTH} levels deep; this is not a job file"]
            items = value.items() if isinstance(value, dict) else enumerate(value)
            stack.extend((v, (*where, k)) for k, v in reversed(list(items)))
    return found


def parse(text: str) -> dict[str, Any]:
    """JSON text -> job dict, refusing NaN, infinities, numbers too large to use and absurd
    nesting. Raises JobError; does not validate."""
    try:
        doc = json.loads(text, parse_constant=_NonFinite, parse_float=_parse_float, parse_int=_parse_int)
    except json.JSONDecodeError as exc:
        raise JobError([f"not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"]) from None
    except RecursionError:
        raise JobError([f"nested more than {MAX_DEPTH} levels deep; this is not a job file"]) from None
    problems = _find_unusable(doc)
    if problems:
        raise JobError(problems)
    if not isinstance(doc, dict):
        raise JobError([f"must be a JSON object, got {type(doc).__name__}"])
    return doc


def read(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a job file. Raises JobError with a message naming the file's problem.

    Only a regular file of at most MAX_JOB_BYTES is read: a FIFO or a device (/dev/zero) as the
    path is refused without opening it, instead of blocking or reading forever."""
    if not os.fspath(path) or "\0" in os.fspath(path):
        raise JobError(["the job file's path is empty or contains a NUL character; name a job file"])
    p = Path(path)
    try:
        info = p.stat()
        if stat.S_ISDIR(info.st_mode):
            raise JobError([f"{p} is a folder, not a job file"])
        if not stat.S_ISREG(info.st_mode):
            raise JobError([f"{p} is not a regular file (a pipe or a device?); name a job file"])
        with open(p, "rb") as f:
            data = f.read(MAX_JOB_BYTES + 1)
    except FileNotFoundError:
        raise JobError([f"no job file at {p}"]) from None
    except OSError as exc:
        raise JobError([f"cannot read {p}: {exc.strerror}"]) from None
    if len(data) > MAX_JOB_BYTES:
        raise JobError([f"{p} is larger than {MAX_JOB_BYTES // (1024 * 1024)} MB; is it really a job file?"])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise JobError([f"{p} is not UTF-8 text; is it really a job file?"]) from None
    job = parse(text)
    validate(job)
    return job


# --- validation ------------------------------------------------------------------------------


def _schema_message(error: Any) -> str:
    """One jsonschema error -> "path: what is wrong", in words a user can act on."""
    where = _path(list(error.absolute_path))
    v, val = error.validator, error.validator_value
    inst = error.instance
    if v == "required":
        missing = re.findall(r"'([^']+)' is a required property", error.message)
        field = missing[0] if missing else error.message
        return f"{_path([*list(error.absolute_path), field])}: missing (required)"
    if v == "additionalProperties":
        extra = sorted(set(inst) - set(error.schema.get("properties", {})))
        names = ", ".join(_echo_key(k) for k in extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
        return f"{where}: unknown field{'s' if len(extra) > 1 else ''} {names}; remove it or check the spelling"
    if v == "type":
        return f"{where}: must be {'an' if val in ('integer', 'array', 'object') else 'a'} {val}, got {_kind(inst)}"
    if v == "minLength" and val == 1:
        return f"{where}: must not be empty"
    if v == "maxLength":
        return f"{where}: too long ({len(inst)} characters; at most {val})"
    if v == "pattern":
        bad = sorted({c for c in inst if not 0x20 <= ord(c) <= 0x7E})
        shown = " ".join(repr(c) for c in bad[:5])
        return f"{where}: use plain English text (ASCII letters, digits and punctuation); found {shown}"
    if v in ("minItems", "maxItems"):
        if error.absolute_path and error.absolute_path[-1] == "entities":
            return f"{where}: {len(inst)} entities; a shot has 1 to {MAX_ENTITIES}"
        return f"{where}: has {len(inst)} items, needs {'at least' if v == 'minItems' else 'at most'} {val}"
    if v in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        words = {
            "minimum": "at least",
            "maximum": "at most",
            "exclusiveMinimum": "more than",
            "exclusiveMaximum": "less than",
        }
        return f"{where}: {echo(inst)} is out of range; must be {words[v]} {val}"
    if v == "multipleOf":
        return f"{where}: {echo(inst)} must be a multiple of {val}"
    if v == "const":
        return f"{where}: must be {json.dumps(val)}, got {echo(inst)}"
    if v == "enum":
        return f"{where}: must be one of {', '.join(json.dumps(x) for x in val)}, got {echo(inst)}"
    return f"{where}: {clip(error.message, 2 * ECHO_CHARS)}"


def _echo_key(key: str) -> str:
    return clip(repr(key), ECHO_CHARS)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    return {dict: "an object", list: "a list", str: "text", int: "a whole number", float: "a number"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


def validate(job: dict[str, Any]) -> None:
    """Raise JobError listing every problem (schema and meaning) of a parsed job."""
    if not isinstance(job, dict):
        raise JobError([f"must be a JSON object, got {_kind(job)}"])
    if job.get("format") != FORMAT:
        raise JobError(
            [f'format: this is not a TrajMaster job (expected "{FORMAT}", got {json.dumps(job.get("format"))})']
        )
    version = job.get("version")
    if isinstance(version, int) and not isinstance(version, bool) and version > VERSION:
        raise JobError(
            [
                f"version: this job is version {version}, but this backend reads version {VERSION}; "
                "update TrajMaster Previz to run it"
            ]
        )
    problems = _find_unusable(job)  # a job built in code was never parsed
    if problems:
        raise JobError(problems)
    errors = sorted(_validator().iter_errors(job), key=lambda e: (list(map(str, e.absolute_path)), e.validator))
    problems = [_schema_message(e) for e in errors]
    if not problems:
        problems = _meaning_problems(job)
    if problems:
        raise JobError(problems)


def _validator() -> Any:
    import jsonschema  # the backend's dependency; Blender's Python builds jobs but never validates

    # JSON Schema counts 2.0 as an integer; a job's integers (version, frames, steps, seed) are
    # used as such, so a float there is refused (a "version": 2.0 must not run as version 1).
    strict = jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda checker, value: isinstance(value, int) and not isinstance(value, bool)
    )
    cls = jsonschema.validators.extend(jsonschema.Draft202012Validator, type_checker=strict)
    return cls(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))


def _meaning_problems(job: dict[str, Any]) -> list[str]:
    """What the schema cannot say: ordering, rigid rotations, blank prompts, step counts."""
    problems: list[str] = []
    shot = job["shot"]
    if shot["frame_end"] <= shot["frame_start"]:
        problems.append(
            f"shot.frame_end: {shot['frame_end']} must be after shot.frame_start ({shot['frame_start']}); "
            "a shot needs at least 2 frames"
        )
    for key in ("pose_frames", "video_frames"):
        times = shot.get(key)
        if times is not None and any(b < a for a, b in itertools.pairwise(times)):
            problems.append(f"shot.{key}: times must not go backwards")
    for field in ("location", "text"):
        if not job["prompt"][field].strip():
            problems.append(f"prompt.{field}: must not be blank")
    names: set[str] = set()
    for k, ent in enumerate(job["entities"]):
        if not ent["prompt"].strip():
            problems.append(f"entities[{k}].prompt: must not be blank; describe the entity in 15-24 words")
        if ent["name"] in names:
            problems.append(f"entities[{k}].name: {ent['name']!r} is used twice; each entity needs its own name")
        names.add(ent["name"])
        for key in ("poses", "video_poses"):
            if key in ent:
                problems.extend(_rotation_problems(f"entities[{k}].{key}", ent[key]))
    camera = job.get("camera") or {}
    for key in ("context", "video_context"):
        if key in camera:
            problems.extend(_up_problems(f"camera.{key}", camera[key]))
    problems.extend(_quality_problems(job["sampling"]))
    sampling = resolve_sampling(job["sampling"])
    if sampling["annealed_steps"] > sampling["steps"]:
        problems.append(
            f"sampling.annealed_steps: {sampling['annealed_steps']} is more than sampling.steps ({sampling['steps']})"
        )
    return problems


def _quality_problems(sampling: dict[str, Any]) -> list[str]:
    """A preset's fields given with other values: one sentence each, naming both ways out."""
    quality = sampling.get("quality")
    preset = QUALITY_PRESETS.get(str(quality))
    if preset is None:
        return []
    problems = []
    for field in PRESET_FIELDS:
        if field not in sampling or sampling[field] == preset.get(field):
            continue
        if field not in preset:
            problems.append(
                f'sampling.{field}: the "{quality}" quality uses no {field.replace("_", " ")}; remove the field, '
                'or set sampling.quality to "custom" to choose it yourself'
            )
        else:
            problems.append(
                f'sampling.{field}: {echo(sampling[field])} contradicts sampling.quality "{quality}" '
                f'({preset_summary(quality)}); remove the field, or set sampling.quality to "custom" to choose '
                "it yourself"
            )
    return problems


def _up_problems(where: str, rows: list[list[float]]) -> list[str]:
    lengths = np.linalg.norm(np.asarray(rows, dtype=np.float64)[:, :3], axis=1)
    return [
        f"{where}[{i}]: the up vector has length {lengths[i]:.3g}; it must be a unit vector "
        "(world up in the camera frame, see docs/job-file.md)"
        for i in np.flatnonzero(np.abs(lengths - 1.0) > UP_TOLERANCE)
    ]


def _rotation_problems(where: str, rows: list[list[float]]) -> list[str]:
    pose = np.asarray(rows, dtype=np.float64)
    rot = np.swapaxes(pose[:, :9].reshape(-1, 3, 3), -1, -2)
    gram = rot @ np.swapaxes(rot, -1, -2)
    err = np.max(np.abs(gram - np.eye(3)), axis=(-1, -2))
    det = np.linalg.det(rot)
    out = []
    for i in np.flatnonzero((err > ROTATION_TOLERANCE) | (det <= 0)):
        what = (
            "is singular"
            if abs(det[i]) < 1e-6
            else ("is mirrored" if det[i] < 0 else "is not a rotation (scaled or sheared)")
        )
        out.append(f"{where}[{i}]: its 3x3 rotation part {what}; poses must be rigid (see docs/pose-conventions.md)")
    return out


# --- writing ---------------------------------------------------------------------------------


def dumps(job: dict[str, Any]) -> str:
    return json.dumps(_plain(job), indent=1, allow_nan=False) + "\n"


def write_atomic(path: str | os.PathLike[str], text: str | bytes, *, overwrite: bool = False) -> Path:
    """Write a file via a temporary sibling and a rename, so readers never see half a file.

    With overwrite=False an existing file is never replaced (FileExistsError), also when two
    writers race: the final step is a hard link, which fails if the name was taken meanwhile.
    """
    target = Path(path)
    data = text.encode("utf-8") if isinstance(text, str) else text
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, target)
        else:
            link_new(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def link_new(tmp: str | os.PathLike[str], target: Path) -> None:
    """Give `tmp` the name `target` unless that name exists (FileExistsError); atomic."""
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise
    except OSError:
        # Filesystems without hard links (some network shares, FAT): check, then rename.
        if target.exists():
            raise FileExistsError(str(target)) from None
        os.rename(tmp, target)


def write(job: dict[str, Any], path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Validate and write a job file atomically."""
    validate(job)
    return write_atomic(path, dumps(job), overwrite=overwrite)
