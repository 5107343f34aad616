"""Turning how a job ended into one event and an exit code (shared by the CLI and the worker)."""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
from typing import Any

from .errors import EXIT_BAD_INPUT, EXIT_CANCELLED, EXIT_INTERNAL, EXIT_OK, OutOfMemory, RankFailed, UserError, clip
from .progress import Cancelled, Report


def crash_log(exc: BaseException) -> str:
    """Write the traceback to a log file for bug reports; the user sees one sentence and this path."""
    fd, path = tempfile.mkstemp(prefix=f"trajmaster-crash-{time.strftime('%Y%m%d-%H%M%S')}-", suffix=".log")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(f"argv: {sys.argv}\n\n")
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=f)
    return path


def report_outcome(report: Report, exc: BaseException | None, result: dict[str, Any] | None = None) -> int:
    """Emit the final event of a job (result, error or cancelled) and return the exit code."""
    emit = report._emit
    if exc is None:
        emit("result", **(result or {}))
        print(f"Wrote {result.get('video') if result else 'the take'}", file=sys.stderr)
        return EXIT_OK
    if isinstance(exc, Cancelled):
        emit("cancelled", message="Cancelled; no video was written.")
        print("Cancelled; no video was written.", file=sys.stderr)
        return EXIT_CANCELLED
    if isinstance(exc, UserError):
        emit("error", **exc.event_fields())
        print(f"error: {exc.message}" + (f" ({exc.hint})" if exc.hint else ""), file=sys.stderr)
        return EXIT_BAD_INPUT
    if isinstance(exc, (OutOfMemory, RankFailed)):
        emit("error", **exc.event_fields())
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_INTERNAL
    if isinstance(exc, KeyboardInterrupt):
        emit("cancelled", message="Interrupted; no video was written.")
        return EXIT_CANCELLED
    log = crash_log(exc)
    # The whole text is in the log.
    message = f"The backend failed unexpectedly ({type(exc).__name__}: {clip(str(exc), 200)}); details are in {log}."
    emit("error", code="internal", message=message, hint="Please report it with that log.", exit_code=EXIT_INTERNAL)
    print(f"error: {message}", file=sys.stderr)
    return EXIT_INTERNAL
