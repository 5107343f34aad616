"""Modules of addon/ that need no bpy (the executors, the job queue), imported the way Blender
imports them (`..backend` relative to the extension's root) without running the extension's
__init__, which needs bpy."""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "trajmaster_previz_nobpy"


def addon_module(name: str) -> Any:
    if PACKAGE not in sys.modules:
        pkg = types.ModuleType(PACKAGE)
        pkg.__path__ = [str(ROOT)]
        sys.modules[PACKAGE] = pkg
        sub = types.ModuleType(f"{PACKAGE}.addon")
        sub.__path__ = [str(ROOT / "addon")]
        sys.modules[f"{PACKAGE}.addon"] = sub
    return importlib.import_module(f"{PACKAGE}.addon.{name}")
