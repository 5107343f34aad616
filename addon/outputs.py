"""Where a scene's takes and job files go, and what the next take is called.

Takes go to `//trajmaster/{shot}/` next to the saved .blend (or `{output folder}/{shot}/`
when the preferences name one); an unsaved file uses a temporary folder, with a warning (its
takes are copied next to the .blend when it is saved: temp_takes.py). The
next take number is one above every take of the shot on disk *and* in the sequencer, so a new
take never reuses a name.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import bpy

from ..backend import takes
from . import preferences

JOB_SUFFIX = ".job.json"
# What one take is on disk: <take>.mp4, its sidecar <take>.json, <take>.job.json, <take>_png/.
TAKE_SUFFIXES = (JOB_SUFFIX, "_png", ".mp4", ".json")


class OutputError(RuntimeError):
    pass


def shot_name(scene: bpy.types.Scene) -> str:
    """The shot's file-safe name: its Shot Name, else the scene's (the backend names takes the same way)."""
    return takes.safe_stem(scene.trajmaster.shot_name.strip() or scene.name)


def takes_root(context: bpy.types.Context | None = None, blend_path: str | None = None) -> Path | None:
    """The folder that holds every shot's take folder for the .blend at `blend_path` (default: the
    open file): the preferences' output folder, else `trajmaster/` next to the .blend; None for an
    unsaved file. A '//'-relative output folder means nothing until the file is saved (it would
    resolve against Blender's working directory)."""
    root = preferences.output_root(context)
    if root and os.path.isabs(root):
        return Path(root)
    path = bpy.data.filepath if blend_path is None else blend_path
    return Path(os.path.abspath(path)).parent / "trajmaster" if path else None


def take_folder(context: bpy.types.Context, shot: str) -> tuple[Path, str | None]:
    """(folder, warning): the shot's take folder, and a warning when it is a temporary one."""
    root = takes_root(context)
    if root is not None:
        return root / shot, None
    folder = temp_root() / shot
    return folder, (
        f"The .blend file is not saved, so takes go to a temporary folder ({folder}); "
        "save the file and they are copied next to it."
    )


def temp_root() -> Path:
    """Where an unsaved file's takes go (temp_takes.py copies them next to the .blend on save)."""
    return Path(tempfile.gettempdir()) / "trajmaster"


def ensure_writable(folder: Path) -> None:
    """Create the folder if needed and prove we can write there. Raises OutputError."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".trajmaster-probe-"):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise OutputError(
            f"Cannot write takes to {folder} ({reason}); choose another output folder in the add-on's "
            "preferences, or save the .blend file somewhere you can write."
        ) from None


def _numbers_on_disk(folder: Path, shot: str) -> Iterable[int]:
    if not folder.is_dir():
        return
    for entry in os.listdir(folder):
        for suffix in TAKE_SUFFIXES:
            if entry.endswith(suffix):
                number = takes.take_number(entry[: -len(suffix)], shot)
                if number is not None:
                    yield number
                break


def next_take_name(folder: Path, shot: str, strip_names: Iterable[str]) -> str:
    numbers = [*_numbers_on_disk(folder, shot)]
    numbers += [n for n in (takes.take_number(name, shot) for name in strip_names) if n is not None]
    return f"{shot}_take_{max(numbers, default=0) + 1:03d}"


def job_path(folder: Path, take: str) -> Path:
    return folder / f"{take}{JOB_SUFFIX}"
