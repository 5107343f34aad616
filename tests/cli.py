"""Running `python -m backend` the way the add-on and a farm do: a subprocess from the repo root."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from backend.events import parse_line

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Run:
    code: int
    events: list[dict]
    stdout: str
    stderr: str
    stray_lines: int  # stdout lines that are not events (only --help should produce any)

    def kinds(self) -> list[str]:
        return [e["event"] for e in self.events]

    def last(self, kind: str) -> dict:
        found = [e for e in self.events if e["event"] == kind]
        assert found, f"no {kind} event in {self.kinds()}\nstderr:\n{self.stderr}"
        return found[-1]


def backend(
    *args: str,
    timeout: float = 600,
    env: dict | None = None,
    python: str | None = None,
    cwd: Path | None = None,
    shell: str | None = None,
    user: int | None = None,
) -> Run:
    """Run `python -m backend ARGS`. `cwd`: another working folder (the repository is put on
    PYTHONPATH); `shell`: bash commands run first in the same process (e.g. "ulimit -f 100");
    `user`: the uid to run as (root only)."""
    command = [python or sys.executable, "-m", "backend", *map(str, args)]
    if shell is not None:
        command = ["bash", "-c", f'{shell}; exec "$@"', "bash", *command]
    extra = {"PYTHONPATH": str(ROOT)} if cwd is not None else {}
    proc = subprocess.run(
        command,
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **extra, **(env or {})},
        user=user,
        group=user,
        extra_groups=[] if user is not None else None,
    )
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    events = [e for e in map(parse_line, lines) if e is not None]
    return Run(proc.returncode, events, proc.stdout, proc.stderr, len(lines) - len(events))


def write_job(job: dict, path: Path) -> Path:
    from backend import job as jobfile

    path.write_text(jobfile.dumps(job), encoding="utf-8")
    return path
