"""SIGINT/SIGTERM from the very start of the process, before the slow imports (numpy, the
engines): a signal that arrives while Python is still importing must end as a clean
`cancelled` (or a worker's shutdown), never as a KeyboardInterrupt traceback or no event.

`python -m backend` installs the handlers first thing; the command that runs later says what a
signal means to it with `on_signal`, and one that came earlier is delivered to it at once.
Standard library only, so importing this costs nothing.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable

requested = threading.Event()
# The process that started this one, as it was at start-up (the worker exits when it changes).
parent_pid: int | None = None
_callbacks: list[Callable[[], None]] = []
_lock = threading.Lock()


def _handler(signum: int, frame: object) -> None:
    requested.set()
    with _lock:
        callbacks = list(_callbacks)
    for callback in callbacks:
        callback()


def install() -> None:
    """Catch SIGINT and SIGTERM from now on (call from the main thread, before anything slow)."""
    global parent_pid
    parent_pid = os.getppid()
    for name in ("SIGINT", "SIGTERM"):
        sig = getattr(signal, name, None)
        if sig is not None:
            signal.signal(sig, _handler)


def on_signal(callback: Callable[[], None]) -> None:
    """Run `callback` on SIGINT/SIGTERM; at once if one already came."""
    with _lock:
        _callbacks.append(callback)
    if requested.is_set():
        callback()


def restore_defaults() -> None:
    """Back to Python's own behaviour (KeyboardInterrupt on SIGINT, exit on SIGTERM) for commands
    that have no cancel of their own; a signal that already came takes effect now."""
    if hasattr(signal, "SIGINT"):
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if requested.is_set():
        raise KeyboardInterrupt
