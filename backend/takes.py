"""Where a take goes on disk, and committing it without ever replacing an earlier one.

A take is `{name}.mp4`, its sidecar `{name}.json` (everything needed to reproduce it) and,
optionally, a lossless PNG sequence in `{name}_png/`. Names default to `{shot}_take_{NNN}`
with the first number above every existing take of that shot.

A take is whole or absent at every instant, whatever kills the process:
- every piece is written under a hidden temporary name (`.trajmaster-*.part`) first;
- publication gives the sidecar its final name first (an exclusive hard link: that claims the
  name against concurrent runs), then the PNG folder, and the video *last*: the video's name
  appearing is the commit point, so whoever sees a take's video also sees its sidecar;
- each temporary name is removed as soon as its final name exists;
- what a killed run leaves behind (`.part` files, a sidecar or PNG folder without its video) is
  swept by the next run in that folder, but only while no other run is writing there: writers
  hold a shared lock on the folder, the sweep needs the exclusive one (flock on the folder).
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError, clip, format_bytes
from .job import link_new

try:
    import fcntl
except ImportError:  # Windows: no flock; the sweep falls back to the age of what it finds
    fcntl = None  # type: ignore[assignment]

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
# The longest take name a user may choose (safe_stem cuts a shot name to the same length).
MAX_NAME = 60
# Take numbers with more digits than this are not ours (a file named so cannot push the next
# number, and so the take's file name, past what file systems accept).
MAX_NUMBER_DIGITS = 9

VIDEO_SUFFIX = ".mp4"
SIDECAR_SUFFIX = ".json"
PNG_SUFFIX = "_png"
# The add-on's job file for a take (written before the backend runs, to reserve the name).
JOB_SUFFIX = ".job.json"
# Every name a take may have on disk, in the order a copy must create them: the video last.
# (".job.json" is tested before ".json".) The add-on numbers and copies takes with this too.
TAKE_SUFFIXES = (JOB_SUFFIX, PNG_SUFFIX, SIDECAR_SUFFIX, VIDEO_SUFFIX)

TEMP_PREFIX = ".trajmaster-"
TEMP_SUFFIX = ".part"
PROBE_PREFIX = ".trajmaster-probe-"
# Exactly the names temp_file/temp_dir give (8 random characters, then the piece's suffix such as
# ".mp4"), so that no other file, e.g. the add-on's job file being written for a shot called
# "trajmaster-...", is ever taken for one.
_TEMP_NAME = re.compile(r"\.trajmaster-[a-z0-9_]{8}(?:\.[a-z0-9]{1,8})?\.part")
_PROBE_NAME = re.compile(r"\.trajmaster-probe-[a-z0-9_]{8}")
# A probe lives for microseconds; one this old was left by a killed run.
PROBE_AGE_S = 60
PNG_FRAME = re.compile(r"frame_\d{4,}\.png")
# Without flock (Windows) a leftover is swept only when it is this old: no run takes a day
# between writing a temporary file and publishing it.
UNLOCKED_SWEEP_AGE_S = 24 * 3600


def safe_stem(text: str, fallback: str = "shot") -> str:
    """A file-name-safe version of a scene or take name (ASCII, no separators)."""
    # Accented letters keep their base letter (Écurie -> Ecurie) rather than vanishing.
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    stem = _UNSAFE.sub("_", ascii_text).strip("._-")[:MAX_NAME]
    return stem or fallback


@dataclass(frozen=True)
class TakePaths:
    folder: Path
    name: str

    @property
    def video(self) -> Path:
        return self.folder / f"{self.name}{VIDEO_SUFFIX}"

    @property
    def sidecar(self) -> Path:
        return self.folder / f"{self.name}{SIDECAR_SUFFIX}"

    @property
    def png_dir(self) -> Path:
        return self.folder / f"{self.name}{PNG_SUFFIX}"

    def taken(self) -> bool:
        # lexists: a dangling symlink holds the name as much as a file does.
        return any(os.path.lexists(p) for p in (self.video, self.sidecar, self.png_dir))


def take_number(name: str, shot: str) -> int | None:
    m = re.fullmatch(re.escape(shot) + rf"_take_(\d{{3,{MAX_NUMBER_DIGITS}}})", name)
    return int(m.group(1)) if m else None


def list_folder(folder: Path) -> list[str]:
    """The names in an output folder; an unreadable folder is the user's to fix (bad_output)."""
    try:
        return os.listdir(folder)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise UserError(
            "bad_output",
            f"Cannot list the output folder {folder} ({exc.strerror}); choose a folder you can read and write.",
        ) from None


def take_numbers(folder: Path, shot: str) -> list[int]:
    """The numbers of every take of `shot` in `folder`, counting any piece of one (its video,
    sidecar, PNG folder or the add-on's job file), so a number is never used twice."""
    numbers = []
    for entry in list_folder(folder):
        for suffix in TAKE_SUFFIXES:
            if entry.endswith(suffix):
                number = take_number(entry[: -len(suffix)], shot)
                if number is not None:
                    numbers.append(number)
                break
    return numbers


def next_take_name(folder: Path, shot: str) -> str:
    """`{shot}_take_{NNN}`, one above the highest take of this shot already in `folder`."""
    number = max(take_numbers(folder, shot), default=0) + 1
    if len(str(number)) > MAX_NUMBER_DIGITS:
        raise UserError("bad_output", f"The take numbers of {shot} in {folder} are used up; choose another folder.")
    return f"{shot}_take_{number:03d}"


# --- the output folder -----------------------------------------------------------------------


def output_error(exc: OSError, folder: Path) -> UserError | None:
    """A write that failed for a reason the user can fix -> the sentence that says so."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return UserError(
            "disk_full",
            f"The disk holding {folder} is full{_free_text(folder)}; nothing was written. "
            "Free some space there or choose another output folder.",
        )
    if exc.errno == errno.EFBIG:
        return UserError("bad_output", file_size_limit_sentence(folder))
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return UserError(
            "bad_output",
            f"Cannot write to the output folder {folder} ({exc.strerror}); choose a folder you can write to.",
        )
    if exc.errno == errno.ENAMETOOLONG:
        return UserError(
            "bad_output",
            f"A path in the output folder {_short(folder)} is too long for the file system; "
            "choose a shorter folder or take name.",
        )
    return None


def file_size_limit_sentence(folder: Path) -> str:
    limit = _file_size_limit()
    what = f" ({format_bytes(limit)})" if limit is not None else ""
    return (
        f"The take could not be written to {folder}: this process may not write files larger than its "
        f"file-size limit{what} (ulimit -f); raise the limit and try again. Nothing was written."
    )


def _file_size_limit() -> int | None:
    try:
        import resource
    except ImportError:
        return None
    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


def file_size_limited() -> bool:
    return _file_size_limit() is not None


def _free_text(folder: Path) -> str:
    try:
        return f" ({format_bytes(shutil.disk_usage(folder).free)} free)"
    except OSError:
        return ""


def disk_nearly_full(folder: Path, need: int = 1 << 20) -> bool:
    try:
        return shutil.disk_usage(folder).free < need
    except OSError:
        return False


def _short(path: Path, limit: int = 120) -> str:
    text = str(path)
    return text if len(text) <= limit else text[: limit // 2] + "…" + text[-limit // 2 :]


def prepare_folder(folder: str | os.PathLike[str]) -> tuple[Path, list[Path]]:
    """Make sure the output folder exists, is listable and writable.

    Returns (folder, the folders created now, deepest first): a failed job removes those again
    (remove_created), so a job that wrote nothing leaves no empty folders behind."""
    if not os.fspath(folder):
        raise UserError("bad_output", "The output folder is empty; name a folder for the take.")
    if "\0" in os.fspath(folder):
        raise UserError("bad_output", "The output folder's path contains a NUL character; name a real folder.")
    path = Path(folder).expanduser().absolute()
    created: list[Path] = []
    try:
        if os.path.lexists(path) and not path.is_dir():
            what = "a broken link" if path.is_symlink() else "a file"
            raise UserError("bad_output", f"The output path {path} is {what}, not a folder; choose a folder.")
        missing = path
        while not os.path.lexists(missing):
            created.append(missing)
            missing = missing.parent
        for p in reversed(created):
            p.mkdir()
    except OSError as exc:
        remove_created(created)
        raise UserError(
            "bad_output",
            f"Cannot create the output folder {_short(path)} ({exc.strerror}); choose a folder you can write to.",
        ) from None
    try:
        list_folder(path)
        with tempfile.NamedTemporaryFile(dir=path, prefix=PROBE_PREFIX, delete=True):
            pass
    except UserError:
        remove_created(created)
        raise
    except OSError as exc:
        remove_created(created)
        raise output_error(exc, path) or UserError(
            "bad_output", f"The output folder {path} is not writable; choose a folder you can write to."
        ) from None
    return path, created


def remove_created(created: list[Path]) -> None:
    """Remove the folders prepare_folder made (deepest first), as long as they are empty."""
    for p in created:
        try:
            p.rmdir()
        except OSError:
            return


# --- the folder lock and the sweep -----------------------------------------------------------


class FolderLock:
    """flock on the folder itself (no lock file to leave behind): shared by every run that is
    writing a take there, exclusive for the sweep. Where flock is missing or refused (Windows,
    some network file systems), holding it is a no-op and the sweep falls back to age."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._fd: int | None = None

    def acquire(self, exclusive: bool = False) -> bool:
        """Shared: waits (a sweep is short). Exclusive: does not wait; False if anyone writes."""
        if fcntl is None:
            return False
        try:
            fd = os.open(self.folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except OSError:
            return False
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX | fcntl.LOCK_NB) if exclusive else fcntl.LOCK_SH)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the lock
            self._fd = None


def sweep_leftovers(folder: Path) -> list[str]:
    """Remove what killed runs left in `folder`: temporary `.trajmaster-*` files and folders, and
    a take's sidecar or PNG folder whose video never appeared. Only while no run is writing there
    (the exclusive folder lock), else nothing is touched. Returns the names removed."""
    lock = FolderLock(folder)
    locked = lock.acquire(exclusive=True)
    if not locked and fcntl is not None:
        return []  # someone is writing here now; the next run sweeps
    min_age = 0 if locked else UNLOCKED_SWEEP_AGE_S
    removed = []
    try:
        names = set(list_folder(folder))
        orphans = {entry[: -len(SIDECAR_SUFFIX)] for entry in names if _orphan_sidecar(folder / entry, names)}
        for entry in sorted(names):
            path = folder / entry
            if _PROBE_NAME.fullmatch(entry):
                if _age(path) < max(min_age, PROBE_AGE_S):
                    continue
            elif not (
                _is_temp(entry)
                or entry.removesuffix(SIDECAR_SUFFIX) in orphans
                or (entry.removesuffix(PNG_SUFFIX) in orphans and _png_dir(path))
            ):
                continue
            if min_age and _age(path) < min_age:
                continue
            _remove(path)
            removed.append(entry)
    finally:
        lock.release()
    return removed


def _is_temp(entry: str) -> bool:
    return bool(_TEMP_NAME.fullmatch(entry))


def _orphan_sidecar(path: Path, names: set[str]) -> bool:
    """A sidecar this backend wrote whose video never appeared (publication was cut short: the
    sidecar is published first, the video last). A user's own .json is never taken for one."""
    entry = path.name
    if not entry.endswith(SIDECAR_SUFFIX) or entry.endswith(JOB_SUFFIX):
        return False
    name = entry[: -len(SIDECAR_SUFFIX)]
    if f"{name}{VIDEO_SUFFIX}" in names or path.is_symlink() or not path.is_file():
        return False
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.loads(f.read(1 << 22))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(doc, dict) and doc.get("format") == "trajmaster-take" and doc.get("name") == name


def _png_dir(path: Path) -> bool:
    """A folder of our frame files only (published after the sidecar, before the video)."""
    if path.is_symlink() or not path.is_dir():
        return False
    try:
        return all(PNG_FRAME.fullmatch(p.name) and p.is_file() for p in path.iterdir())
    except OSError:
        return False


def _age(path: Path) -> float:
    try:
        return time.time() - path.lstat().st_mtime
    except OSError:
        return 0.0


# --- staging and publishing ------------------------------------------------------------------


def _umask() -> int:
    """The process's umask, read without changing it where the system allows (threads run)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class TakeCommit:
    """Stages a take's files under temporary names, then publishes them under a free name.

    Use as a context manager: anything not published when the block exits is removed.
    """

    def __init__(self, folder: Path, shot: str, name: str | None = None, *, durable: bool = True):
        self.folder = folder
        # False: nothing is flushed to the disk (a scratch folder whose files are sent on).
        self.durable = durable
        self.shot = safe_stem(shot)
        self.explicit = name
        if name is not None:
            if not name or safe_stem(name, "") != name:
                raise UserError(
                    "bad_output",
                    f"The take name {clip(repr(name), 80)} cannot be a file name; use 1 to {MAX_NAME} letters, digits, "
                    "'_', '-' and '.' (not at the start or end).",
                )
            if TakePaths(folder, name).taken():
                raise UserError(
                    "bad_output",
                    f"A take named {name!r} already exists in {folder}; "
                    "choose another name (takes are never overwritten).",
                )
        self._temps: list[Path] = []
        self._lock = FolderLock(folder)
        self._locked = False
        self._mask = _umask()
        self.paths: TakePaths | None = None

    def _writing(self) -> None:
        # From the first temporary file on, a sweep by another run must leave this folder alone.
        if not self._locked:
            self._lock.acquire()
            self._locked = True

    def temp_file(self, suffix: str) -> Path:
        self._writing()
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=suffix + TEMP_SUFFIX, dir=self.folder)
        try:
            # mkstemp makes 0600; a take is media like any other: the user's umask decides.
            os.fchmod(fd, 0o666 & ~self._mask)
        except (AttributeError, OSError):
            pass
        os.close(fd)
        self._temps.append(Path(tmp))
        return Path(tmp)

    def temp_dir(self) -> Path:
        self._writing()
        tmp = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=self.folder))
        self._temps.append(tmp)
        try:
            tmp.chmod(0o777 & ~self._mask)
        except OSError:
            pass
        return tmp

    def choose_name(self) -> TakePaths:
        """The final name: the explicit one, or the next free take number of this shot."""
        if self.explicit is not None:
            return TakePaths(self.folder, self.explicit)
        return TakePaths(self.folder, next_take_name(self.folder, self.shot))

    def publish(
        self, video: Path, sidecar_text_for: Callable[[TakePaths], str], png_dir: Path | None = None
    ) -> TakePaths:
        """Give the staged files their final names: sidecar, PNG folder, then the video (the
        commit point). `sidecar_text_for(paths)` renders the sidecar once the name is known. A
        name taken meanwhile by another process moves an automatic name on to the next number;
        an explicit name fails."""
        self._writing()
        if self.durable:
            _sync(video)
        for _ in range(1000):
            paths = self.choose_name()
            side = self.temp_file(SIDECAR_SUFFIX)
            with open(side, "w", encoding="utf-8") as f:
                f.write(sidecar_text_for(paths))
                f.flush()
                if self.durable:
                    os.fsync(f.fileno())
            published: list[Path] = []
            try:
                link_new(side, paths.sidecar)  # claims the name: exclusive, atomic
                published.append(paths.sidecar)
                self._drop_temp(side)
                if png_dir is not None:
                    if os.path.lexists(paths.png_dir):
                        raise FileExistsError(str(paths.png_dir))
                    os.rename(png_dir, paths.png_dir)
                    if png_dir in self._temps:
                        self._temps.remove(png_dir)
                    published.append(paths.png_dir)
                link_new(video, paths.video)  # the commit point: the take now exists
            except FileExistsError:
                for p in reversed(published):
                    _remove(p)
                if self.explicit is not None:
                    raise UserError(
                        "bad_output",
                        f"A take named {self.explicit!r} appeared in {self.folder} meanwhile; choose another name.",
                    ) from None
                continue
            except BaseException:
                for p in reversed(published):
                    _remove(p)
                raise
            self._drop_temp(video)
            if self.durable:
                _sync_folder(self.folder)
            self.paths = paths
            return paths
        raise UserError("bad_output", f"Could not find a free take name in {self.folder}.")

    def _drop_temp(self, tmp: Path) -> None:
        _remove(tmp)
        if tmp in self._temps:
            self._temps.remove(tmp)

    def __enter__(self) -> TakeCommit:
        return self

    def __exit__(self, *exc: object) -> None:
        for tmp in self._temps:
            _remove(tmp)
        self._temps.clear()
        self._lock.release()
        self._locked = False


def _sync(path: Path) -> None:
    """Flush a staged file to the disk before it gets its final name (a power cut must not leave
    a published name on an empty file)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _sync_folder(folder: Path) -> None:
    if os.name == "posix":
        _sync(folder)


def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif os.path.lexists(path):
            path.unlink()
    except OSError:
        pass
