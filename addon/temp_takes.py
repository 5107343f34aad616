"""Takes made while the .blend was unsaved are kept when it is saved.

An unsaved file's takes go to its own folder under a temporary one (outputs.unsaved_folder),
which the system may empty at its next restart. Just before every save, each take strip whose
video lies anywhere under that temporary folder (this file's, or another unsaved file's whose
finished take was added here) is copied with its sidecar, job file and PNG frames to the saved
file's take folder (the preferences' output folder, else `trajmaster/<shot>/` next to it), and
the strip and its properties are pointed at the copies, so the saved .blend never refers to the
temporary folder. A contact sheet's video (directing/contact_sheet.py) is copied the same way.
Blender's own save makes the new paths relative. Copies only: the temporary files stay, and
nothing at the destination is overwritten; a take whose name is already used there by another
take stays where it is, with a warning in the panel (the same take copied before is reused).
"""

from __future__ import annotations

import filecmp
import os
import shutil
from pathlib import Path
from typing import Any

import bpy
from bpy.app.handlers import persistent

from ..backend import takes
from . import compat, outputs, runner, sequencer


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except (ValueError, OSError):
        return False
    return True


def _copy(src: Path, dst: Path) -> None:
    """Copy a file or a folder under a temporary name, then rename: no half copy is ever seen."""
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    if src.is_dir():
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp)
    else:
        shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def _same(src: Path, dst: Path) -> bool:
    """Whether `dst` holds exactly what `src` holds (a file, or a folder of them)."""
    if src.is_dir():
        if not dst.is_dir():
            return False
        names = sorted(os.listdir(src))
        return names == sorted(os.listdir(dst)) and all(_same(src / name, dst / name) for name in names)
    return dst.is_file() and filecmp.cmp(src, dst, shallow=False)


def copy_take(video: Path, folder: Path) -> Path | None:
    """Copy one take's files from next to `video` into `folder`. Returns the new video path, or
    None when one of its names is already used in `folder` by something else (nothing is copied
    then). Files already copied (the same bytes: a split strip's other half, or a save undone)
    count as copied."""
    stem = video.name[: -len(video.suffix)] if video.suffix else video.name
    sources = [video.parent / f"{stem}{suffix}" for suffix in outputs.TAKE_SUFFIXES]
    sources = [s for s in sources if s.exists()]
    if any((folder / s.name).exists() and not _same(s, folder / s.name) for s in sources):
        return None
    folder.mkdir(parents=True, exist_ok=True)
    # Copied in TAKE_SUFFIXES order, the video last, and under the backend's writer lock, so a
    # backend run sweeping that folder never takes the copy's sidecar for a killed run's.
    lock = takes.FolderLock(folder)
    lock.acquire()
    try:
        for src in sources:
            if not (folder / src.name).exists():
                _copy(src, folder / src.name)
    finally:
        lock.release()
    return folder / video.name


def _temp_takes() -> list[tuple[Any, str, dict[str, Any], Path]]:
    """(strip, its property's name, the property, the video) of every take and contact sheet
    (directing/contact_sheet.py: a video alone) in the temporary folder."""
    root = outputs.temp_root()
    found = []
    for scene in bpy.data.scenes:
        editor = scene.sequence_editor
        if editor is None or scene.library is not None:
            continue  # a linked scene's strips are read-only; its own file keeps its takes
        for strip in compat.all_strips(editor):
            prop, info = sequencer.TAKE_PROP, sequencer.take_info(strip)
            if info is None:
                prop, info = sequencer.SHEET_PROP, sequencer.sheet_info(strip)
            if info is None or strip.type != "MOVIE":
                continue
            video = Path(bpy.path.abspath(strip.filepath))
            if _inside(video, root) and video.is_file():
                found.append((strip, prop, info, video))
    return found


# The take properties that name the take's files (sequencer.take_properties).
_PATH_KEYS = ("video", "sidecar", "job")

# The strips the save in progress repointed, as they were: (strip, its property's name, filepath,
# the changed properties).
# A save that writes a copy (File > Save Copy) puts them back afterwards: the copy refers to the
# copied takes, and the open file keeps its takes in the temporary folder until it is saved itself.
_repointed: list[tuple[Any, str, str, dict[str, str]]] = []


def keep_temp_takes(blend_path: str) -> list[str]:
    """Copy the takes in the temporary folder to the take folder of the file saved as
    `blend_path`, and repoint their strips. Returns what to tell the user (nothing when there
    was nothing to do)."""
    takes_dir = outputs.takes_root(blend_path=blend_path)  # where the file's next takes will go
    if takes_dir is None or _inside(takes_dir, outputs.temp_root()):
        return []  # a .blend saved in the system's temporary folder: its takes are there already
    copied: set[Path] = set()  # the takes' new videos (two halves of a split strip are one take)
    sheets: set[Path] = set()
    warnings = []
    for strip, prop, info, video in _temp_takes():
        destination = takes_dir / video.parent.name
        try:
            new_video = copy_take(video, destination)
        except OSError as exc:
            warnings.append(
                f"The take {strip.name} could not be copied to {destination} ({exc.strerror or exc}); "
                f"it is still in {video.parent}: copy it by hand before the temporary folder is emptied."
            )
            continue
        if new_video is None:
            warnings.append(
                f"The take {strip.name} stays in the temporary folder {video.parent}: {destination} already has "
                "a take of that name. Copy it somewhere safe by hand."
            )
            continue
        _repointed.append((strip, prop, strip.filepath, {key: info[key] for key in _PATH_KEYS if key in info}))
        strip.filepath = str(new_video)
        props = strip[prop]
        for key in _PATH_KEYS:
            old = Path(str(info.get(key) or ""))
            if info.get(key) and old.parent == video.parent:
                props[key] = str(destination / old.name)
        (copied if prop == sequencer.TAKE_PROP else sheets).add(new_video)
    if copied or sheets:
        what = [f"{len(copied)} take(s)"] if copied else []
        what += [f"{len(sheets)} contact sheet(s)"] if sheets else []
        warnings.insert(0, f"Copied {' and '.join(what)} made before the first save to {takes_dir}.")
    return warnings


@persistent
def _on_save_pre(*args: Any) -> None:
    # Blender 4.2+ passes the path being written; bpy.data.filepath is still the old one here.
    blend_path = args[0] if args and isinstance(args[0], str) and args[0] else bpy.data.filepath
    _repointed.clear()
    if blend_path:
        messages = keep_temp_takes(blend_path)
        if messages:
            runner.status.info = " ".join(messages)


@persistent
def _on_save_post(*args: Any) -> None:
    # After a save the written path is the open file's; after Save Copy it is not.
    written = args[0] if args and isinstance(args[0], str) else ""
    repointed = [*_repointed]
    _repointed.clear()
    current = bpy.data.filepath
    if not written or (current and os.path.normcase(current) == os.path.normcase(written)):
        return
    for strip, prop, filepath, props in repointed:
        strip.filepath = filepath
        strip[prop].update(props)


def register() -> None:
    bpy.app.handlers.save_pre.append(_on_save_pre)
    bpy.app.handlers.save_post.append(_on_save_post)


def unregister() -> None:
    if _on_save_post in bpy.app.handlers.save_post:
        bpy.app.handlers.save_post.remove(_on_save_post)
    if _on_save_pre in bpy.app.handlers.save_pre:
        bpy.app.handlers.save_pre.remove(_on_save_pre)
