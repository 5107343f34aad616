"""`python -m backend`, with every progress step of the render held back a little (real-window tests).

The preview engine draws its 49 frames in about a second, which is too short to watch a progress
bar move over several of the add-on's 0.1 s timer ticks (or to press Cancel half way) on a fast
machine. gui_session.py points TRAJMASTER_PYTHON at a small shell script that runs this file
instead of `-m backend`: it waits TRAJMASTER_GUI_STEP_DELAY seconds before each `progress` event
and then runs the real backend unchanged. Only the pace changes; the events, the files and the
cancellation points are the backend's own.
"""

from __future__ import annotations

import os
import runpy
import sys
import time

# The supervisor runs `PYTHON -m backend ARGS` in the extension's folder; the wrapper script
# passes `paced_backend.py -m backend ARGS`: drop the `-m backend` and import from that folder.
args = sys.argv[1:]
if args[:2] == ["-m", "backend"]:
    args = args[2:]
sys.argv = ["backend", *args]
sys.path.insert(0, os.getcwd())

from backend import progress  # noqa: E402  (after the path is set)

DELAY_S = float(os.environ.get("TRAJMASTER_GUI_STEP_DELAY", "0.06"))
_progress = progress.Report.progress


def _paced(self: progress.Report, step: int, total: int, stage: str = "sampling") -> None:
    if stage == "rendering":
        time.sleep(DELAY_S)
    _progress(self, step, total, stage)


progress.Report.progress = _paced
runpy.run_module("backend", run_name="__main__", alter_sys=True)
