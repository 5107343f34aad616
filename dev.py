#!/usr/bin/env python3
"""Developer entry point: set up the environments, run the demo, run the whole test suite.

    python3 dev.py demo     set everything up, then generate the demo shot through the add-on in
                            headless Blender with the preview engine (out/demo/)
    python3 dev.py test     set everything up, then lint and run every test (what CI runs)
    python3 dev.py setup    only set up the environments

Needs only Python 3.11 and the package registries. Environments live in the repository:
  .venv                 the backend's Python: torch (CPU here), diffusers, ... + pytest, ruff
  .venv-blender-4.2     Blender 4.2 LTS as a Python module (bpy), for the add-on tests
  .venv-blender-5.0     Blender 5.0, likewise
Each is rebuilt only when its requirements change (a stamp file records them).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
# The CPU build of torch on CI machines; on a developer machine with a GPU pip picks the build
# for that platform. Users' backends are set up by the add-on (docs/backend.md).
TORCH = "torch==2.13.0"
BLENDERS = {"4.2": "bpy==4.2.23", "5.0": "bpy==5.0.1"}
MIN_PYTHON = (3, 11)


def say(message: str) -> None:
    print(f"[dev] {message}", flush=True)


def extra(name: str) -> list[str]:
    """Requirements of a pyproject extra, with the project's self-references expanded."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    own = project["name"]
    out: list[str] = []
    for req in project["optional-dependencies"][name]:
        if req.startswith(own + "["):
            for sub in req[len(own) + 1 : -1].split(","):
                out.extend(r for r in extra(sub.strip()) if r not in out)
        elif req not in out:
            out.append(req)
    return out


def python_of(env: Path) -> Path:
    return env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_env(env: Path, requirements: list[str], first: list[str] | None = None) -> Path:
    """Create or update a virtual environment; skip pip when the stamp matches."""
    wanted = "\n".join([sys.version.split()[0], *(first or []), *requirements])
    stamp = env / ".trajmaster-requirements"
    py = python_of(env)
    if py.exists() and stamp.exists() and stamp.read_text() == wanted:
        return py
    say(f"setting up {env.name} ({len(requirements)} requirements; this takes a few minutes the first time)")
    if not py.exists():
        venv.EnvBuilder(with_pip=True, clear=True).create(env)
    pip = [str(py), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    if first:
        subprocess.run([*pip, *first], check=True)
    subprocess.run([*pip, *requirements], check=True)
    stamp.write_text(wanted)
    return py


def setup() -> dict[str, Path]:
    if sys.version_info[:2] < MIN_PYTHON:
        sys.exit(f"dev.py needs Python {'.'.join(map(str, MIN_PYTHON))} or newer (this is {sys.version.split()[0]}).")
    envs = {"main": ensure_env(ROOT / ".venv", extra("test"), first=[TORCH])}
    for version, bpy in BLENDERS.items():
        envs[version] = ensure_env(ROOT / f".venv-blender-{version}", [bpy, *extra("preview"), "pytest>=8"])
    return envs


def run(cmd: list[str | Path], **kw) -> int:
    say("$ " + " ".join(map(str, cmd)))
    return subprocess.run([str(c) for c in cmd], cwd=ROOT, check=False, **kw).returncode


def test(envs: dict[str, Path], quick: bool) -> int:
    failures = []
    if run([envs["main"], "-m", "ruff", "check", "."]) != 0:
        failures.append("ruff")
    if run([envs["main"], "-m", "pytest", "tests", "--ignore=tests/blender", "--ignore=tests/gui"]) != 0:
        failures.append("backend tests")
    for version in BLENDERS:
        if quick and version != "5.0":
            continue
        env = {**os.environ, "TRAJMASTER_PYTHON": str(envs[version])}
        if run([envs[version], "-m", "pytest", "tests/blender"], env=env) != 0:
            failures.append(f"Blender {version} tests")
    if (ROOT / "tests" / "gui").is_dir() and not quick:
        if run([envs["main"], "-m", "pytest", "tests/gui"]) != 0:
            failures.append("real-window tests")
    if failures:
        say("FAILED: " + ", ".join(failures))
        return 1
    say("all tests passed")
    return 0


DEMO_SCRIPT = r"""
import importlib, os, re, shutil, sys, tempfile
root, out = sys.argv[1], sys.argv[2]
# A scratch Blender user folder (set before bpy loads), so the user's own Blender stays untouched.
user = tempfile.mkdtemp(prefix="trajmaster-demo-user-")
for k in ("CONFIG", "SCRIPTS", "EXTENSIONS", "DATAFILES"):
    os.environ["BLENDER_USER_" + k] = os.path.join(user, k.lower())
sys.path.insert(0, os.path.join(root, "tests", "blender"))
import bpy
from extension_install import build_and_install  # Blender's own builder and installer
module = build_and_install(root, os.path.join(out, "build"))
runner = importlib.import_module(module + ".addon.runner")
compat = importlib.import_module(module + ".addon.compat")
bpy.ops.wm.read_homefile(use_empty=True)
bpy.context.scene.name = "demo"  # takes are named after the scene: demo_take_001
blend = os.path.join(out, "demo.blend")
bpy.ops.wm.save_as_mainfile(filepath=blend)  # takes go next to it, in trajmaster/demo/
bpy.ops.trajmaster.load_example_shot(name="demo")
try:
    bpy.ops.trajmaster.generate()  # background Blender: returns when the take is in the sequencer
except RuntimeError as exc:
    sys.exit("[dev] the demo generation failed: " + (runner.status.last_error or str(exc)))
bpy.ops.wm.save_mainfile()
scene = bpy.context.scene
editor = compat.sequencer_scene(bpy.context, scene).sequence_editor
takes = [s for s in compat.strips(editor) if re.fullmatch(r".+_take_[0-9]{3}", s.name)] if editor else []
if not takes:
    sys.exit("[dev] the demo generation finished but no take is in the sequencer")
strip = max(takes, key=lambda s: s.name)
print("[dev] demo take:", bpy.path.abspath(strip.filepath))
print("[dev] demo scene:", blend)
shutil.rmtree(user, ignore_errors=True)
"""


def demo(envs: dict[str, Path]) -> int:
    out = ROOT / "out" / "demo"
    out.mkdir(parents=True, exist_ok=True)
    py = envs["5.0"]
    env = {**os.environ, "TRAJMASTER_PYTHON": str(envs["main"])}
    return run([py, "-c", DEMO_SCRIPT, ROOT, out], env=env)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["setup", "demo", "test"])
    parser.add_argument("--quick", action="store_true", help="test: only Blender 5.0, no real-window tests")
    args = parser.parse_args()
    envs = setup()
    if args.command == "setup":
        say("environments ready: " + ", ".join(str(p) for p in envs.values()))
        return 0
    if args.command == "demo":
        return demo(envs)
    return test(envs, args.quick)


if __name__ == "__main__":
    sys.exit(main())
