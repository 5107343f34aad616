"""Where a take goes on disk, and committing it without ever replacing an earlier one.

A take is `{name}.mp4`, its sidecar `{name}.json` (everything needed to reproduce it) and,
optionally, a lossless PNG sequence in `{name}_png/`. Names default to `{shot}_take_{NNN}`
with the first number above every existing take of that shot. Everything is written under
temporary names first; the final names appear only when all parts are complete, and a
failure removes every temporary piece.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError
from .job import link_new

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_stem(text: str, fallback: str = "shot") -> str:
    """A file-name-safe version of a scene or take name (ASCII, no separators)."""
    # Accented letters keep their base letter (Écurie -> Ecurie) rather than vanishing.
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    stem = _UNSAFE.sub("_", ascii_text).strip("._-")[:60]
    return stem or fallback


@dataclass(frozen=True)
class TakePaths:
    folder: Path
    name: str

    @property
    def video(self) -> Path:
        return self.folder / f"{self.name}.mp4"

    @property
    def sidecar(self) -> Path:
        return self.folder / f"{self.name}.json"

    @property
    def png_dir(self) -> Path:
        return self.folder / f"{self.name}_png"

    def taken(self) -> bool:
        return any(p.exists() for p in (self.video, self.sidecar, self.png_dir))


def take_number(name: str, shot: str) -> int | None:
    m = re.fullmatch(re.escape(shot) + r"_take_(\d{3,})", name)
    return int(m.group(1)) if m else None


def next_take_name(folder: Path, shot: str) -> str:
    """`{shot}_take_{NNN}`, one above the highest take of this shot already in `folder`."""
    highest = 0
    if folder.is_dir():
        for entry in folder.iterdir():
            stem = entry.name[: -len("_png")] if entry.name.endswith("_png") else entry.stem
            n = take_number(stem, shot)
            if n is not None:
                highest = max(highest, n)
    return f"{shot}_take_{highest + 1:03d}"


def prepare_folder(folder: str | os.PathLike[str]) -> tuple[Path, bool]:
    """Make sure the output folder exists and is writable. Returns (folder, created_now)."""
    path = Path(folder).expanduser().absolute()
    created = False
    if path.exists() and not path.is_dir():
        raise UserError("bad_output", f"The output path {path} is a file, not a folder; choose a folder.")
    if not path.exists():
        try:
            path.mkdir(parents=True)
            created = True
        except OSError as exc:
            raise UserError(
                "bad_output",
                f"Cannot create the output folder {path} ({exc.strerror}); choose a folder you can write to.",
            ) from None
    try:
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".trajmaster-probe-", delete=True)
        probe.close()
    except OSError:
        raise UserError(
            "bad_output", f"The output folder {path} is not writable; choose a folder you can write to."
        ) from None
    return path, created


class TakeCommit:
    """Stages a take's files under temporary names, then publishes them under a free name.

    Use as a context manager: anything not published when the block exits is removed.
    """

    def __init__(self, folder: Path, shot: str, name: str | None = None):
        self.folder = folder
        self.shot = safe_stem(shot)
        self.explicit = name
        if name is not None:
            if safe_stem(name, "") != name:
                raise UserError(
                    "bad_output",
                    f"The take name {name!r} cannot be a file name; use letters, digits, '_', '-' and '.' only.",
                )
            if TakePaths(folder, name).taken():
                raise UserError(
                    "bad_output",
                    f"A take named {name!r} already exists in {folder}; "
                    "choose another name (takes are never overwritten).",
                )
        self._temps: list[Path] = []
        self.paths: TakePaths | None = None

    def temp_file(self, suffix: str) -> Path:
        fd, tmp = tempfile.mkstemp(prefix=".trajmaster-", suffix=suffix + ".part", dir=self.folder)
        os.close(fd)
        self._temps.append(Path(tmp))
        return Path(tmp)

    def temp_dir(self) -> Path:
        tmp = Path(tempfile.mkdtemp(prefix=".trajmaster-", suffix=".part", dir=self.folder))
        self._temps.append(tmp)
        return tmp

    def choose_name(self) -> TakePaths:
        """The final name: the explicit one, or the next free take number of this shot."""
        if self.explicit is not None:
            return TakePaths(self.folder, self.explicit)
        return TakePaths(self.folder, next_take_name(self.folder, self.shot))

    def publish(
        self, video: Path, sidecar_text_for: Callable[[TakePaths], str], png_dir: Path | None = None
    ) -> TakePaths:
        """Give the staged files their final names. `sidecar_text_for(paths)` renders the sidecar
        once the name is known. A name taken meanwhile by another process moves an automatic name
        on to the next number; an explicit name fails."""
        for _ in range(1000):
            paths = self.choose_name()
            try:
                link_new(video, paths.video)
            except FileExistsError:
                if self.explicit is not None:
                    raise UserError(
                        "bad_output",
                        f"A take named {self.explicit!r} appeared in {self.folder} meanwhile; choose another name.",
                    ) from None
                continue
            published = [paths.video]
            try:
                if png_dir is not None:
                    if paths.png_dir.exists():
                        raise FileExistsError(str(paths.png_dir))
                    os.rename(png_dir, paths.png_dir)
                    published.append(paths.png_dir)
                side = self.temp_file(".json")
                side.write_text(sidecar_text_for(paths), encoding="utf-8")
                link_new(side, paths.sidecar)
                published.append(paths.sidecar)
            except BaseException:
                for p in published:
                    _remove(p)
                raise
            self.paths = paths
            return paths
        raise UserError("bad_output", f"Could not find a free take name in {self.folder}.")

    def __enter__(self) -> TakeCommit:
        return self

    def __exit__(self, *exc: object) -> None:
        for tmp in self._temps:
            _remove(tmp)


def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    except OSError:
        pass
