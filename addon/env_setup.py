"""Setting up the backend from inside Blender, without bpy: command lines, background processes
with cancel, the install log, and reading what `doctor` and `download` say.

No bpy here (paths and choices are passed in), so this is tested with plain pytest
(tests/test_env_setup.py); the Blender side is setup_ops.py and preferences.py.

Three kinds of background work use the same `Task`:
- the managed environment: Blender's own Python runs `-m venv`, the new environment's pip
  installs the extras named in the extension's pyproject.toml, then its Python must run
  `python -m backend doctor --json`; only then a marker file says the environment is ready;
- `python -m backend download --dest DIR` (progress events on stdout);
- `python -m backend doctor --json` (Check Backend: one JSON document on stdout).

A Task runs its steps one after another in a controller thread; one reader thread per pipe
feeds a queue and the log file, so the caller's poll() (Blender's timer tick) only drains what
has arrived and never waits on a process. Arguments are lists and never go through a shell.
"""

from __future__ import annotations

import collections
import contextlib
import json
import math
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..backend import events as protocol
from ..backend.errors import format_bytes

DISTRIBUTION = "trajmaster-previz"
# The extension's choices in the preferences -> the extras of pyproject.toml they install.
EXTRAS = {"PREVIEW": "preview", "FULL": "full"}
# torch for CUDA comes from PyTorch's own index (PyPI's Windows wheels are CPU-only). cu128 wheels
# run on any NVIDIA driver new enough for CUDA 12.8 (570+) and cover RTX 50-series cards;
# TRAJMASTER_TORCH_INDEX overrides it (an older driver: .../whl/cu126 or .../whl/cu124).
TORCH_INDEX = "https://download.pytorch.org/whl/cu128"
ENV_TORCH_INDEX = "TRAJMASTER_TORCH_INDEX"
# Written into the environment's folder after doctor ran there; without it the env is not ready.
MARKER = "trajmaster-env.json"
# Lines kept in memory for the preferences (the log file has them all) and their width.
LOG_TAIL = 200
LINE_WIDTH = 400
# Lines a single poll() hands over; the rest wait for the next tick, keeping each tick short.
POLL_LINES = 200
# Seconds between SIGTERM and SIGKILL for a cancelled process tree.
KILL_GRACE_S = 3.0

RUNNING, DONE, FAILED, CANCELLED = "running", "done", "failed", "cancelled"


class SetupError(RuntimeError):
    """A setup cannot start; the message is one sentence for the user."""


# ----------------------------------------------------------------------------- requirements


def read_requirements(pyproject: Path, extra: str) -> list[str]:
    """The requirements of `extra` in pyproject.toml, with the project's references to its own
    extras (`trajmaster-previz[preview]`) expanded, in order and without duplicates. A missing or
    corrupt file (not TOML, not UTF-8, a set that is not a list of strings) is a SetupError."""
    try:
        data = tomllib.loads(Path(pyproject).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SetupError(
            f"The extension's package list {pyproject} is missing; reinstall the TrajMaster Previz extension."
        ) from None
    except (OSError, ValueError, RecursionError) as exc:  # TOMLDecodeError and UnicodeDecodeError are ValueErrors
        raise SetupError(
            f"Cannot read the extension's package list {pyproject} ({str(exc)[:200]}); reinstall the extension."
        ) from None

    def corrupt(what: str) -> SetupError:
        return SetupError(f"The extension's package list {pyproject} is damaged ({what}); reinstall the extension.")

    project = data.get("project", {})
    extras = project.get("optional-dependencies", {}) if isinstance(project, dict) else None
    if not isinstance(extras, dict):
        raise corrupt("[project.optional-dependencies] is not a table")
    out: list[str] = []

    def expand(name: str, seen: tuple[str, ...]) -> None:
        if name not in extras:
            raise SetupError(f"The extension's package list has no '{name}' set; reinstall the extension.")
        reqs = extras[name]
        # A string here is a damaged file, not a list of one-letter packages.
        if not isinstance(reqs, list) or not all(isinstance(r, str) for r in reqs):
            raise corrupt(f"the '{name}' set is not a list of package names")
        for req in reqs:
            text = req.split(";")[0].strip()
            if text.replace("_", "-").lower().startswith(DISTRIBUTION + "["):
                if "]" not in text:
                    raise corrupt(f"'{req[:80]}' in the '{name}' set")
                for sub in text[text.index("[") + 1 : text.index("]")].split(","):
                    if sub.strip() not in seen:
                        expand(sub.strip(), (*seen, sub.strip()))
            elif req not in out:
                out.append(req)

    expand(extra, (extra,))
    return out


def requirement_name(req: str) -> str:
    """'torch>=2.4' -> 'torch'."""
    for i, ch in enumerate(req):
        if not (ch.isalnum() or ch in "-_."):
            return req[:i].strip()
    return req.strip()


# ----------------------------------------------------------------------------- command lines


def env_python(env_dir: str | os.PathLike[str], platform: str = sys.platform) -> Path:
    """The interpreter inside a venv folder."""
    if platform == "win32":
        return Path(env_dir) / "Scripts" / "python.exe"
    return Path(env_dir) / "bin" / "python"


# Where the NVIDIA driver leaves files that say it is installed (besides nvidia-smi on PATH):
# Linux's kernel module, WSL's driver folder, Windows's System32 and the older NVSMI folder.
_NVIDIA_DRIVER_FILES = {
    "linux": ("/proc/driver/nvidia/version", "/usr/lib/wsl/lib/nvidia-smi"),
    "win32": (
        r"%SystemRoot%\System32\nvidia-smi.exe",
        r"%ProgramFiles%\NVIDIA Corporation\NVSMI\nvidia-smi.exe",
    ),
}


def nvidia_gpu_found(
    platform: str = sys.platform,
    which: Any = shutil.which,
    exists: Any = os.path.exists,
    env: dict[str, str] | None = None,
) -> bool:
    """Whether this computer looks able to run the real model: an NVIDIA driver is installed.

    Blender's Python has no torch to ask, and starting nvidia-smi at every Blender start would
    cost a process (and can hang on a broken driver), so this only looks for the driver's files:
    nvidia-smi on PATH, or the files the driver installs. CUDA cannot run without that driver,
    so a computer without them needs Preview Only. macOS has no CUDA at all."""
    if platform == "darwin":
        return False
    if which("nvidia-smi"):
        return True
    # Windows's variable names are case-insensitive (os.environ has them in upper case).
    upper = {k.upper(): v for k, v in (os.environ if env is None else env).items()}
    key = "win32" if platform == "win32" else "linux" if platform.startswith("linux") else ""
    for pattern in _NVIDIA_DRIVER_FILES.get(key, ()):
        path = re.sub(r"%([^%]+)%", lambda m: upper.get(m.group(1).upper(), m.group(0)), pattern)
        if "%" not in path and exists(path):
            return True
    return False


def default_choice(platform: str = sys.platform, **probe: Any) -> str:
    """What Set Up Backend installs until the user picks: the Full Model only where it can run."""
    return "FULL" if nvidia_gpu_found(platform, **probe) else "PREVIEW"


def wants_cuda_index(platform: str = sys.platform) -> bool:
    """Windows and Linux get torch from PyTorch's CUDA index; macOS has no CUDA (plain PyPI)."""
    return platform == "win32" or platform.startswith("linux")


@dataclass
class Step:
    """One process of a Task."""

    title: str  # "Installing packages": shown while it runs and in a failure sentence
    argv: list[str]
    cwd: str | None = None
    capture: bool = False  # keep stdout for the caller (doctor's JSON)


def _pip(python: Path) -> list[str]:
    # No progress bars (they are carriage-return art, not lines), no prompts, no self-update nag.
    return [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--progress-bar", "off"]


def doctor_command(python: str | os.PathLike[str], weights: str | None = None) -> list[str]:
    argv = [str(python), "-m", "backend", "doctor", "--json"]
    if weights:
        argv += ["--weights", str(weights)]
    return argv


def download_command(python: str | os.PathLike[str], dest: str, only: str | None = None) -> list[str]:
    """`only`: None for the model's weights, "prompt" for the optional prompt help model."""
    argv = [str(python), "-m", "backend", "download", "--dest", str(dest)]
    return [*argv, "--only", only] if only else argv


def setup_steps(
    base_python: str,
    env_dir: str | os.PathLike[str],
    extension_root: str | os.PathLike[str],
    choice: str,
    *,
    platform: str = sys.platform,
    clear: bool = False,
    weights: str | None = None,
    torch_index: str | None = None,
) -> list[Step]:
    """The processes that build the managed environment for `choice` (PREVIEW or FULL)."""
    if choice not in EXTRAS:
        raise ValueError(f"choice must be one of {sorted(EXTRAS)}")
    root = Path(extension_root)
    requirements = read_requirements(root / "pyproject.toml", EXTRAS[choice])
    python = env_python(env_dir, platform)
    venv = [base_python, "-m", "venv", *(["--clear"] if clear else []), str(env_dir)]
    steps = [Step("Creating the environment", venv)]
    torch = [r for r in requirements if requirement_name(r).lower() == "torch"]
    if torch and wants_cuda_index(platform):
        # torch alone, from PyTorch's index (--index-url, not --extra-index-url: with both indexes
        # pip takes the highest version number, which can be PyPI's CPU-only Windows wheel). The
        # next step then finds torch installed and leaves it.
        index = torch_index or os.environ.get(ENV_TORCH_INDEX) or TORCH_INDEX
        steps.append(Step("Installing torch (CUDA build)", [*_pip(python), "--index-url", index, *torch]))
    steps.append(Step("Installing packages", [*_pip(python), *requirements]))
    steps.append(Step("Checking the backend", doctor_command(python, weights), cwd=str(root), capture=True))
    return steps


def python_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for any backend Python started from Blender: unbuffered UTF-8 output, and
    nothing of Blender's or the shell's Python configuration leaking in (PYTHONHOME/PYTHONPATH
    would point the interpreter at another Python's library; a startup file runs arbitrary code)."""
    env = dict(os.environ if base is None else base)
    for key in ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP", "VIRTUAL_ENV", "__PYVENV_LAUNCHER__"):
        env.pop(key, None)
    env.update(PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8")
    return env


def child_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for setup processes: python_env, and user site-packages off so they cannot
    shadow what pip installs into the new environment; pip never waits for input."""
    return {**python_env(base), "PYTHONNOUSERSITE": "1", "PIP_NO_INPUT": "1"}


# ----------------------------------------------------------------------------- the marker


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write next to the target, then rename over it: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def mark_ready(env_dir: str | os.PathLike[str], choice: str, python: str, doctor: dict[str, Any]) -> None:
    write_json_atomic(
        Path(env_dir) / MARKER,
        {
            "ready": True,
            "choice": choice,
            "python": python,
            "created": time.strftime("%Y-%m-%d %H:%M:%S"),
            "packages": doctor.get("packages", {}),
        },
    )


def mark_not_ready(env_dir: str | os.PathLike[str]) -> None:
    with contextlib.suppress(FileNotFoundError):
        (Path(env_dir) / MARKER).unlink()


def env_state(env_dir: str | os.PathLike[str] | None, platform: str = sys.platform) -> dict[str, Any]:
    """{'ready': bool, 'choice': ..., 'python': ...} for a managed environment folder."""
    if not env_dir:
        return {"ready": False, "exists": False}
    python = env_python(env_dir, platform)
    state: dict[str, Any] = {"ready": False, "exists": python.exists(), "python": str(python)}
    try:
        marker = json.loads((Path(env_dir) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return state
    # Only a literal true: a marker saying "false" (a string) is not a ready environment.
    if isinstance(marker, dict) and marker.get("ready") is True and python.exists():
        state.update(ready=True, choice=marker.get("choice"), created=marker.get("created"))
    return state


# ----------------------------------------------------------------------------- the log


class LogTail:
    """The last `size` lines, each cut to LINE_WIDTH characters."""

    def __init__(self, size: int = LOG_TAIL):
        self._lines: collections.deque[str] = collections.deque(maxlen=size)

    def add(self, line: str) -> None:
        line = line.rstrip("\r\n").replace("\r", " ").replace("\t", "    ")
        self._lines.append(line if len(line) <= LINE_WIDTH else line[: LINE_WIDTH - 1] + "…")

    def lines(self, n: int | None = None) -> list[str]:
        lines = list(self._lines)
        return lines if n is None else lines[-n:] if n > 0 else []

    def clear(self) -> None:
        self._lines.clear()

    def __len__(self) -> int:
        return len(self._lines)


@dataclass
class Line:
    stream: str  # "out" or "err"
    text: str
    step: int


# ----------------------------------------------------------------------------- processes


def _popen_kwargs() -> dict[str, Any]:
    # A process group of its own, so cancel reaches pip's children (build backends, compilers).
    if os.name == "nt":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW}
    return {"start_new_session": True}


def kill_tree(popen: subprocess.Popen, sig: int | None = None) -> None:
    """Signal the whole process tree of `popen` (POSIX: its process group; Windows: taskkill /T)."""
    if os.name == "nt":
        subprocess.run(
            ["taskkill", "/PID", str(popen.pid), "/T", "/F"],
            capture_output=True,
            check=False,
            creationflags=subprocess.CREATE_NO_WINDOW,
        )
        with contextlib.suppress(OSError):
            popen.kill()
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(popen.pid, signal.SIGTERM if sig is None else sig)


class Task:
    """Runs `steps` one after another in the background; poll() from the UI thread.

    State (`state`, `message`, `step`, `returncode`) changes only inside poll(), in the order
    things happened, so whoever polls sees every line before the outcome.
    """

    def __init__(
        self,
        steps: list[Step],
        log_path: str | os.PathLike[str],
        *,
        env: dict[str, str] | None = None,
        tail: int = LOG_TAIL,
    ):
        if not steps:
            raise ValueError("a task needs at least one step")
        self.steps = steps
        self.log_path = Path(log_path)
        self.env = child_env() if env is None else env
        self.tail = LogTail(tail)
        self.state = RUNNING
        self.message = ""
        self.step = 0
        self.returncode: int | None = None
        self.captured: dict[int, str] = {}
        self.started = time.monotonic()
        self.ended: float | None = None
        self._queue: queue.Queue = queue.Queue()
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._popen: subprocess.Popen | None = None
        self._log = None
        self._thread: threading.Thread | None = None

    # --- life cycle -------------------------------------------------------------------------

    def start(self) -> Task:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "w", encoding="utf-8", errors="replace")  # closed by _run
        self._thread = threading.Thread(target=self._run, name="trajmaster-task", daemon=True)
        self._thread.start()
        return self

    @property
    def finished(self) -> bool:
        return self.state != RUNNING

    @property
    def pid(self) -> int | None:
        popen = self._popen
        return popen.pid if popen is not None else None

    def cancel(self) -> bool:
        """Stop now: the running process tree gets SIGTERM (SIGKILL after KILL_GRACE_S, from the
        controller thread, so this returns at once). False when nothing runs any more."""
        if self.finished or self._cancel.is_set():
            return False
        self._cancel.set()
        with self._lock:
            if self._popen is not None and self._popen.poll() is None:
                kill_tree(self._popen)
        return True

    def wait(self, timeout: float | None = None, interval: float = 0.05) -> list[Line]:
        """Block until the task ends (scripts, tests, background Blender); returns its lines."""
        deadline = None if timeout is None else time.monotonic() + timeout
        lines: list[Line] = []
        while not self.finished:
            lines += self.poll(max_lines=10_000)
            if self.finished:
                break
            if deadline is not None and time.monotonic() > deadline:
                self.cancel()
                deadline = None
            time.sleep(interval)
        return lines

    # --- the UI side ------------------------------------------------------------------------

    def poll(self, max_lines: int = POLL_LINES) -> list[Line]:
        """The lines that arrived since the last call (at most `max_lines`); never blocks."""
        out: list[Line] = []
        while len(out) < max_lines:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            kind = item[0]
            if kind == "line":
                line = Line(item[1], item[2], item[3])
                self.tail.add(line.text)
                out.append(line)
            elif kind == "step":
                self.step = item[1]
            elif kind == "end":
                _, self.state, self.message, self.returncode = item
                self.ended = time.monotonic()
                break
        return out

    @property
    def title(self) -> str:
        return self.steps[min(self.step, len(self.steps) - 1)].title

    # --- the controller thread --------------------------------------------------------------

    def _write_log(self, text: str) -> None:
        with self._lock:
            if self._log is not None:
                try:
                    self._log.write(text + "\n")
                    self._log.flush()
                except (OSError, ValueError):
                    pass

    def _run(self) -> None:
        state, message, code = DONE, "", 0
        try:
            for index, step in enumerate(self.steps):
                if self._cancel.is_set():
                    break
                self._queue.put(("step", index))
                state, message, code = self._run_step(index, step)
                if state != DONE:
                    break
            if self._cancel.is_set():
                state, message = CANCELLED, "Cancelled."
        except Exception as exc:  # a bug here must not leave the UI waiting forever
            state, message, code = FAILED, f"The setup failed unexpectedly ({type(exc).__name__}: {exc}).", None
        self._write_log(f"# {state}" + (f": {message}" if message else ""))
        with self._lock:
            if self._log is not None:
                self._log.close()
                self._log = None
        self._queue.put(("end", state, message, code))

    def _run_step(self, index: int, step: Step) -> tuple[str, str, int | None]:
        self._write_log(f"# {step.title}: {' '.join(step.argv)}")
        try:
            with self._lock:
                if self._cancel.is_set():
                    return CANCELLED, "Cancelled.", None
                self._popen = subprocess.Popen(
                    step.argv,
                    cwd=step.cwd,
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    **_popen_kwargs(),
                )
        except FileNotFoundError:
            return FAILED, f"{step.title} failed: {step.argv[0]} does not exist.", None
        except PermissionError:
            return FAILED, f"{step.title} failed: {step.argv[0]} cannot be run (permission denied).", None
        except OSError as exc:
            return FAILED, f"{step.title} failed: {step.argv[0]} cannot be started ({exc.strerror or exc}).", None
        popen = self._popen
        captured: list[str] = []
        last_err: collections.deque[str] = collections.deque(maxlen=40)
        readers = [
            threading.Thread(
                target=self._read,
                args=(popen.stdout, "out", index, captured if step.capture else None, last_err),
                daemon=True,
            ),
            threading.Thread(target=self._read, args=(popen.stderr, "err", index, None, last_err), daemon=True),
        ]
        for reader in readers:
            reader.start()
        deadline = None
        while True:
            try:
                popen.wait(timeout=0.1)
                break
            except subprocess.TimeoutExpired:
                pass
            if self._cancel.is_set():
                deadline = deadline or time.monotonic() + KILL_GRACE_S
                if time.monotonic() > deadline:
                    kill_tree(popen, getattr(signal, "SIGKILL", None))
        if self._cancel.is_set() and os.name != "nt":
            # The leader is gone; children that ignored SIGTERM are not.
            kill_tree(popen, signal.SIGKILL)
        for reader in readers:
            reader.join(timeout=2.0)
        with self._lock:
            self._popen = None
        for stream in (popen.stdout, popen.stderr):
            with contextlib.suppress(OSError):
                stream.close()
        if step.capture:
            self.captured[index] = "".join(captured)
        code = popen.returncode
        if self._cancel.is_set():
            return CANCELLED, "Cancelled.", code
        if code != 0:
            return FAILED, failure_sentence(step.title, code, list(last_err)), code
        return DONE, "", code

    def _read(self, stream: Any, name: str, index: int, keep: list[str] | None, last: collections.deque) -> None:
        try:
            for raw in iter(stream.readline, b""):
                text = raw.decode("utf-8", errors="replace")
                if keep is not None:
                    keep.append(text)
                text = text.rstrip("\r\n")
                self._write_log(text)
                if text.strip():
                    last.append(text)
                self._queue.put(("line", name, text, index))
        except (OSError, ValueError):
            pass


def failure_sentence(title: str, code: int | None, last_lines: list[str]) -> str:
    """'Installing packages failed: ERROR: No matching distribution found for torch>=2.4.'"""
    detail = ""
    for line in reversed(last_lines):
        event = protocol.parse_line(line)
        if event is not None and event.get("event") == "error":
            detail = _text(event.get("message"))
            break
    if not detail:
        # Event lines are not sentences for people: the fallback is pip's "ERROR:" or a log line.
        lines = [line.strip() for line in last_lines if line.strip() and protocol.parse_line(line) is None]
        errors = [line for line in lines if line.startswith("ERROR:")]
        detail = errors[-1] if errors else (lines[-1] if lines else "")
    how = f"exit code {code}" if code is None or code >= 0 else f"signal {-code}"
    detail = detail[:300]
    return f"{title} failed ({how})" + (f": {detail}" if detail else "") + ("" if detail.endswith(".") else ".")


# ----------------------------------------------------------------------------- doctor


GIB = 1024**3
# What the real model needs, measured on an H100 (docs/backend.md, memory modes).
GPU_NEED = "an NVIDIA GPU with CUDA (about 4 GiB of VRAM in Low memory mode, 15 GiB in Balanced, 26 GiB in Full)"


def parse_doctor(stdout: str) -> dict[str, Any]:
    """doctor --json's document. Raises ValueError when stdout is not one."""
    text = stdout.strip()
    start = text.find("{")
    if start < 0:
        raise ValueError("no JSON document")
    report = json.loads(text[start:])
    if not isinstance(report, dict) or "packages" not in report or "gpu" not in report:
        raise ValueError("not a doctor report")
    return report


def check_failure(python: str, returncode: int | None, stderr_lines: list[str], message: str = "") -> str:
    """One sentence for a doctor run that gave no report."""
    text = "\n".join(stderr_lines)
    if message and ("does not exist" in message or "cannot be run" in message or "cannot be started" in message):
        return (
            f"The backend Python {python} does not exist or cannot be run; set up the managed environment or "
            "choose an existing Python in the add-on's preferences."
        )
    if "No module named backend" in text or "No module named 'backend'" in text:
        return (
            f"{python} cannot import the TrajMaster backend; reinstall the extension, or check that the backend "
            "Python runs from the extension's folder."
        )
    if "invalid choice: 'doctor'" in text or "SyntaxError" in text:
        return f"{python} is too old or not a Python 3.11+ interpreter; choose a Python 3.11, 3.12 or 3.13."
    if message:
        return message if message.endswith(".") else message + "."
    last = next((line.strip() for line in reversed(stderr_lines) if line.strip()), "")
    return (
        f"The backend check with {python} failed (exit code {returncode})"
        + (f": {last[:300]}" if last else "")
        + "; see the log in the add-on's preferences."
    )


def _gib(value: Any) -> str:
    return f"{float(value) / GIB:.1f} GiB"


def doctor_facts(report: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) rows for the preferences."""
    packages = report.get("packages", {})
    gpu = report.get("gpu", {})
    w = report.get("weights", {})
    disk = report.get("disk", {})
    rows = [("Python", f"{report.get('python', '?')} ({report.get('platform', '?')})")]
    if gpu.get("cuda"):
        rows.append(("GPU", f"{gpu.get('name', '?')} (compute {gpu.get('compute_capability', '?')})"))
        rows.append(
            (
                "VRAM",
                f"{_gib(gpu.get('vram_free_bytes', 0))} free of {_gib(gpu.get('vram_total_bytes', 0))}; "
                f"Auto memory mode would use {gpu.get('auto_memory_mode', '?')}",
            )
        )
    else:
        rows.append(("GPU", "none visible"))
    torch = packages.get("torch")
    cuda = gpu.get("cuda_build")
    rows.append(("torch", f"{torch}, CUDA {cuda or 'none (CPU build)'}" if torch else "not installed"))
    rows.append(("diffusers", packages.get("diffusers") or "not installed"))
    if w.get("ok"):
        rows.append(("Weights", f"found: {Path(str(w.get('injector', ''))).parent}"))
    else:
        rows.append(("Weights", "not found"))
    if disk:
        rows.append(
            (
                "Disk",
                f"{_gib(disk.get('free_bytes', 0))} free at {disk.get('folder', '?')} "
                f"(a download needs about {disk.get('download_needs_gib', '?')} GiB)",
            )
        )
    return rows


def doctor_sentences(report: dict[str, Any], *, managed: bool = True) -> list[tuple[str, str]]:
    """(level, sentence) for each thing that stands between this Python and the real model;
    level is 'ok', 'warning', 'error', 'info' (a detail) or 'next' (what to do for more).

    The preview engine only needs the add-on's own packages: a Python without torch (Preview
    Only) is ready for it, and is told what the Full Model would add rather than warned about
    what it lacks. `managed`: the Python is the extension's managed environment (Set Up Backend
    can give it the Full Model)."""
    packages = report.get("packages", {})
    gpu = report.get("gpu", {})
    w = report.get("weights", {})
    disk = report.get("disk", {})
    out: list[tuple[str, str]] = []
    if report.get("ready"):
        out.append(("ok", "Ready: the real model (CogVideoX-5B + 3DTrajMaster) can run with this Python."))
    if not packages.get("torch"):
        how = (
            "choose Full Model above and press Update Backend (about 6 GB)"
            if managed
            else "install the Full Model's packages into this Python, or use the Managed Environment with Full Model"
        )
        out.append(("ok", "The preview engine is ready: set Engine to Preview in the TrajMaster panel and Generate."))
        out.append(
            (
                "next",
                "The Full Model would add the real model, CogVideoX-5B + 3DTrajMaster: "
                f"{how}, then Download Weights (about 24 GB). It needs {GPU_NEED}.",
            )
        )
        return out
    missing = [name for name, version in packages.items() if not version]
    if missing:
        out.append(
            (
                "error",
                f"Missing packages for the real model ({', '.join(missing)}): set up the backend again with "
                "Full Model, or pip install them into this Python.",
            )
        )
    if not gpu.get("cuda"):
        if gpu.get("cuda_build"):
            what = "torch sees no NVIDIA GPU; check the driver"
        else:
            what = "this torch is a CPU-only build"
        out.append(
            (
                "warning",
                f"No GPU for the real model ({what}): the preview engine works; the real model needs {GPU_NEED}.",
            )
        )
    elif gpu.get("vram_total_bytes", 0) < 4 * GIB:
        out.append(
            (
                "warning",
                f"The GPU has only {_gib(gpu.get('vram_total_bytes', 0))} of VRAM: the real model needs about "
                "4 GiB even in Low memory mode.",
            )
        )
    if not w.get("ok"):
        out.append(
            (
                "warning",
                "The model weights were not found in the weights folder: press Download Weights (about 24 GB), "
                "or point the weights folder at where they are.",
            )
        )
        if w.get("problem"):
            out.append(("info", str(w["problem"])))
    free = disk.get("free_bytes")
    need = disk.get("download_needs_gib")
    if not w.get("ok") and free is not None and need is not None and free < float(need) * GIB:
        out.append(
            (
                "error",
                f"Only {_gib(free)} free at {disk.get('folder')}: the download needs about {need} GiB; free some "
                "space or choose another weights folder.",
            )
        )
    return out


# ----------------------------------------------------------------------------- download


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"about {seconds} s left"
    if seconds < 3600:
        return f"about {seconds // 60} min left"
    return f"about {seconds // 3600} h {seconds % 3600 // 60:02d} min left"


def _text(value: Any, limit: int = 500) -> str:
    return value[:limit] if isinstance(value, str) else ""


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        value = float(value)
    except OverflowError:  # an integer too large for a float
        return None
    return value if math.isfinite(value) else None


def _count(value: Any) -> int:
    number = _number(value)
    return int(number) if number is not None and number >= 0 else 0


@dataclass
class DownloadProgress:
    """What `python -m backend download` has said so far (its events on stdout)."""

    message: str = ""
    done: int = 0
    total: int = 0
    fraction: float = 0.0
    eta_s: float | None = None
    result: dict[str, Any] | None = None
    error: str = ""
    logs: list[str] = field(default_factory=list)

    def feed(self, line: str) -> bool:
        """Fold one stdout line in; True when it was an event. Fields of the wrong type are read
        as absent: a line never raises here."""
        event = protocol.parse_line(line)
        if event is None:
            return False
        kind = event["event"]
        if kind == "stage":
            self.message = _text(event.get("message"))
            self.done = self.total = 0
            self.fraction, self.eta_s = 0.0, None
        elif kind == "progress":
            self.done, self.total = _count(event.get("step")), _count(event.get("total"))
            self.fraction = min(max(_number(event.get("fraction")) or 0.0, 0.0), 1.0)
            self.eta_s = _number(event.get("eta_s"))
        elif kind == "result":
            self.result = {k: v for k, v in event.items() if k not in ("event", "protocol", "time")}
            self.fraction = 1.0
        elif kind == "error":
            message, hint = _text(event.get("message")), _text(event.get("hint"))
            self.error = message + (f" {hint}" if hint and hint not in message else "")
        elif kind == "log":
            self.logs.append(_text(event.get("message")))
        return True

    def text(self) -> str:
        """'3.2 GB of 13.0 GB, about 4 min left'."""
        if not self.total:
            return self.message
        # The protocol counts bytes while downloading; a small total is a count of files.
        amount = (
            f"{format_bytes(self.done)} of {format_bytes(self.total)}"
            if self.total >= 1e6
            else f"{self.done} of {self.total}"
        )
        eta = format_eta(self.eta_s)
        return amount + (f", {eta}" if eta else "")

    def outcome(self) -> str:
        """One sentence when the download ended."""
        if self.error:
            return self.error
        if self.result is None:
            return ""
        prompt_only = "prompt_model" in self.result and "weights" not in self.result
        if self.result.get("ready"):
            if prompt_only:
                return f"The prompt model is ready in {self.result.get('dest')}: Expand now writes with it."
            return f"The weights are ready in {self.result.get('dest')}."
        problem = self.result.get("problem") or "they are incomplete"
        what = "the prompt model is" if prompt_only else "the weights are"
        return f"The download finished but {what} not usable: {problem}"
