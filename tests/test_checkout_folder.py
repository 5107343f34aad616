"""The checkout works whatever its folder is called (a plain `git clone` makes "trajmaster-previz")."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_extension_root_imports_without_a_parent_package():
    # What pytest does with the root __init__.py when the folder name is not a Python identifier.
    spec = importlib.util.spec_from_file_location("__init__", ROOT / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert callable(module.register) and callable(module.unregister)


def test_tests_collect_in_a_checkout_named_with_a_hyphen(tmp_path):
    clone = tmp_path / "trajmaster-previz"
    clone.mkdir()
    for name in ("__init__.py", "pyproject.toml"):
        shutil.copy(ROOT / name, clone / name)
    shutil.copytree(ROOT / "backend", clone / "backend", ignore=shutil.ignore_patterns("__pycache__"))
    (clone / "tests").mkdir()
    shutil.copy(ROOT / "tests" / "test_timeplan.py", clone / "tests")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_timeplan.py"],
        cwd=clone,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
