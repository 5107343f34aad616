"""Pacing and faults injected into the server's replicas, so a test can act mid-job.

The preview engine draws a take in about a second: too short to cancel it or kill its replica
half way on purpose. `install` is Ray's `worker_process_setup_hook` for the test cluster: every
Ray worker process runs it once at start. From then on:

- each `progress` call of the preview's `rendering` stage first waits the seconds written in
  FOLDER/pace (read at every frame, so a test can change the pace of running replicas);
- while FOLDER/oom exists, the next render claims it (removes it) and fails the way the
  cogvideox engine does when the GPU runs out of memory (`OutOfMemory` with the next lower
  mode), which no CPU can provoke for real.

FOLDER is $TRAJMASTER_TEST_FAULTS. The events, the files and the cancellation points are the
engine's own; tests/gui/paced_backend.py paces the local backend the same way.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

FAULTS_ENV = "TRAJMASTER_TEST_FAULTS"


def install() -> None:
    folder = os.environ.get(FAULTS_ENV)
    if not folder:
        return
    from backend import progress
    from backend.errors import OutOfMemory
    from backend.preview import engine

    pace_file, oom_file = Path(folder) / "pace", Path(folder) / "oom"
    original_progress = progress.Report.progress
    original_render = engine.PreviewEngine.render

    def paced(self, step: int, total: int, stage: str = "sampling") -> None:
        if stage == "rendering":
            try:
                delay = float(pace_file.read_text(encoding="ascii").strip() or 0)
            except (OSError, ValueError):
                delay = 0.0
            time.sleep(delay)
        original_progress(self, step, total, stage)

    def render(self, job, report):
        try:
            oom_file.unlink()  # only one render claims it
        except FileNotFoundError:
            return original_render(self, job, report)
        raise OutOfMemory("The GPU ran out of memory in memory mode 'full'.", suggest_memory="balanced")

    progress.Report.progress = paced
    engine.PreviewEngine.render = render


def set_pace(folder: Path, seconds_per_frame: float) -> None:
    _write(folder / "pace", str(seconds_per_frame))


def out_of_memory_next(folder: Path) -> None:
    _write(folder / "oom", "1")


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="ascii")
    os.replace(tmp, path)
