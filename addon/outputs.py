"""Where a scene's takes and job files go, and what the next take is called.

Takes go to `//trajmaster/{shot}/` next to the saved .blend (or `{output folder}/{shot}/`
when the preferences name one); an unsaved file uses a temporary folder of its own, with a warning
(its takes are copied next to the .blend when it is saved: temp_takes.py). The next take number
is one above every take of the shot on disk *and* in the sequencer, so a new take never reuses a
name, and a new file's first take is take 001 whatever other files left in their folders.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import bpy
from bpy.app.handlers import persistent

from ..backend import takes
from . import preferences

# What one take is on disk: <take>.job.json, <take>_png/, its sidecar <take>.json and <take>.mp4,
# in the order a copy creates them (the video last: backend/takes.py, whole-or-absent takes).
JOB_SUFFIX = takes.JOB_SUFFIX
TAKE_SUFFIXES = takes.TAKE_SUFFIXES


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
    folder = unsaved_folder() / shot
    return folder, (
        f"The .blend file is not saved, so takes go to a temporary folder ({folder}); "
        "save the file and they are copied next to it."
    )


def temp_root() -> Path:
    """The folder that holds every unsaved file's take folder (temp_takes.py copies takes found
    anywhere under it next to the .blend on save)."""
    return Path(tempfile.gettempdir()) / "trajmaster"


# The open unsaved file's own folder under temp_root(), made on its first take; a load or File > New
# forgets it, so the next unsaved file gets a new one (runtime state: an unsaved file has no path to
# name it by).
_unsaved: Path | None = None


def unsaved_folder() -> Path:
    """The open unsaved file's own folder for its takes: `untitled-<date>-<time>-<random>` under
    temp_root(), so that its takes are numbered from 001 and never mixed with another file's."""
    global _unsaved
    if _unsaved is None or not _unsaved.is_dir():
        root = temp_root()
        root.mkdir(parents=True, exist_ok=True)
        _unsaved = Path(tempfile.mkdtemp(prefix=time.strftime("untitled-%Y%m%d-%H%M%S-"), dir=root))
    return _unsaved


@persistent
def _forget_unsaved_folder(*_args: Any) -> None:
    global _unsaved
    _unsaved = None


def ensure_writable(folder: Path) -> None:
    """Create the folder if needed and prove we can write there. Raises OutputError."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        os.listdir(folder)  # takes are numbered from what is there: it must be listable too
        with tempfile.NamedTemporaryFile(dir=folder, prefix=takes.PROBE_PREFIX):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise OutputError(
            f"Cannot write takes to {folder} ({reason}); choose another output folder in the add-on's "
            "preferences, or save the .blend file somewhere you can write."
        ) from None


def next_take_name(folder: Path, shot: str, strip_names: Iterable[str]) -> str:
    """One above every take of the shot on disk (the backend's rule: any piece of a take counts)
    and in the sequencer."""
    try:
        numbers = takes.take_numbers(folder, shot)
    except takes.UserError as exc:
        raise OutputError(exc.message) from None
    numbers += [n for n in (takes.take_number(name, shot) for name in strip_names) if n is not None]
    return f"{shot}_take_{max(numbers, default=0) + 1:03d}"


def job_path(folder: Path, take: str) -> Path:
    return folder / f"{take}{JOB_SUFFIX}"


def register() -> None:
    bpy.app.handlers.load_post.append(_forget_unsaved_folder)


def unregister() -> None:
    while _forget_unsaved_folder in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(_forget_unsaved_folder)
