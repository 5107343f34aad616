"""What an engine sees while it renders: progress reporting and cancellation.

Engines (preview, cogvideox) call Report.progress() once per step or frame; that emits a
progress event with an ETA and is also the cancellation point: if a cancel was requested, it
raises Cancelled, so cancellation always lands on a step boundary and never inside a kernel.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

import numpy as np

from .events import Eta, EventStream


class Cancelled(Exception):
    """Raised at a step boundary after a cancel request."""


class Report:
    def __init__(self, stream: EventStream, cancel: threading.Event | None = None, job_id: str | None = None):
        self.stream = stream
        self.cancel = cancel or threading.Event()
        self.job_id = job_id
        self.metrics: dict[str, Any] = {}  # engines add peak VRAM, per-stage seconds, ...
        self._eta: dict[str, Eta] = {}

    def _emit(self, kind: str, **fields: Any) -> None:
        if self.job_id is not None:
            fields.setdefault("job", self.job_id)
        self.stream.emit(kind, **fields)

    def stage(self, stage: str, message: str) -> None:
        self.check_cancel()
        self._eta.pop(stage, None)  # a stage can run again (a second download, a retry): time it afresh
        self._emit("stage", stage=stage, message=message)

    def progress(self, step: int, total: int, stage: str = "sampling") -> None:
        """`step` of `total` units of `stage` are done (1-based). Raises Cancelled if asked to."""
        eta = self._eta.get(stage)
        if eta is None or eta.total != total:
            eta = self._eta[stage] = Eta(total)
        remaining = eta.update(step)
        self._emit(
            "progress", stage=stage, step=step, total=total, fraction=round(step / max(total, 1), 4), eta_s=remaining
        )
        self.check_cancel()

    def warning(self, code: str, message: str, **fields: Any) -> None:
        self._emit("warning", code=code, message=message, **fields)

    def log(self, message: str) -> None:
        self._emit("log", message=message)

    def check_cancel(self) -> None:
        if self.cancel.is_set():
            raise Cancelled()


class Engine(Protocol):
    """A way of turning a validated job into frames. Engines are created once and may serve
    many jobs (the worker keeps them loaded)."""

    name: str

    def render(self, job: dict[str, Any], report: Report) -> np.ndarray:
        """Frames as uint8 RGB, shape (49, height, width, 3)."""
        ...

    def describe(self) -> dict[str, Any]:
        """Versions, device and settings for the take's sidecar."""
        ...

    def close(self) -> None: ...
