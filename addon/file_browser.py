"""Showing a file in the system's file browser, selected where the system allows it.

No bpy here (the operator in operators.py falls back to Blender's own `wm.path_open` on the
folder), so the command lines are tested without Blender. Blender itself can only open a
folder; selecting the file in it takes the platform's own way, written out here:
Explorer's `/select,`, Finder's `open -R`, and on Linux the freedesktop FileManager1 D-Bus
interface that Nautilus, Dolphin, Nemo, Caja and Thunar implement.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

# How long the D-Bus call may take before the folder is opened without a selection instead.
DBUS_TIMEOUT_S = 2.0


def reveal_command(path: str | Path, platform: str = sys.platform, which=shutil.which) -> list[str] | None:
    """The command that opens the file browser on `path`'s folder with `path` selected, or None
    where there is none (then open the folder itself)."""
    path = Path(path)
    if platform == "win32":
        return ["explorer", "/select,", str(path)]
    if platform == "darwin":
        return ["open", "-R", str(path)]
    if which("dbus-send"):
        return [
            "dbus-send",
            "--session",
            "--print-reply",
            f"--reply-timeout={int(DBUS_TIMEOUT_S * 1000)}",
            "--dest=org.freedesktop.FileManager1",
            "--type=method_call",
            "/org/freedesktop/FileManager1",
            "org.freedesktop.FileManager1.ShowItems",
            f"array:string:{path.as_uri()}",
            "string:",
        ]
    return None


def reveal(path: str | Path, platform: str = sys.platform) -> bool:
    """Show `path` selected in the file browser. False when that did not work (no such command,
    no file manager answering on D-Bus): the caller then opens the folder."""
    command = reveal_command(path, platform)
    if command is None:
        return False
    try:
        if platform == "win32":
            # Explorer exits with 1 even when it worked: start it and do not wait.
            subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            return True
        done = subprocess.run(command, capture_output=True, timeout=DBUS_TIMEOUT_S + 1, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0
