"""Failures the backend reports to the user as one clear sentence (never a traceback).

UserError: the user can fix it (bad job, output folder, weights folder, a job the model cannot
run): exit code 2. OutOfMemory: the GPU ran out; carries the next lower memory mode to try.
RankFailed: one of the processes of a take spread over several GPUs (--gpus) stopped mid-job.
Anything else escaping an engine is an internal failure: exit code 1, code "internal".
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2
EXIT_CANCELLED = 3


def clip(text: str, limit: int = 60) -> str:
    """At most `limit` characters of `text` (an error message never repeats a huge value whole)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def format_bytes(n: float) -> str:
    """'3.2 GB', '512 kB', '80 B'."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


class UserError(Exception):
    def __init__(self, code: str, message: str, hint: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint

    def event_fields(self) -> dict:
        fields = {"code": self.code, "message": self.message, "exit_code": EXIT_BAD_INPUT}
        if self.hint:
            fields["hint"] = self.hint
        return fields


class OutOfMemory(Exception):
    def __init__(self, message: str, suggest_memory: str | None = None, peak_bytes: int | None = None):
        super().__init__(message)
        self.message = message
        self.suggest_memory = suggest_memory
        self.peak_bytes = peak_bytes

    def event_fields(self) -> dict:
        hint = (
            f"Try again with the memory mode '{self.suggest_memory}'."
            if self.suggest_memory
            else "Close other programs using the GPU, or use a GPU with more memory."
        )
        fields = {"code": "out_of_memory", "message": self.message, "hint": hint, "exit_code": EXIT_INTERNAL}
        if self.suggest_memory:
            fields["suggest_memory"] = self.suggest_memory
        return fields


class RankFailed(Exception):
    """A rank of a multi-GPU take (--gpus) died or failed; the message names it and why."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def event_fields(self) -> dict:
        return {
            "code": "gpu_process_failed",
            "message": self.message,
            "hint": "Run the job again (the GPU processes start afresh), or use --gpus 1.",
            "exit_code": EXIT_INTERNAL,
        }
