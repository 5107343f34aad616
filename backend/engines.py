"""Engine factory: the name in a job ("preview", "cogvideox") -> a loaded engine.

Imports are deferred so that `python -m backend --help`, `validate` and the preview engine work
in an environment without torch.
"""

from __future__ import annotations

import argparse

from .errors import UserError
from .progress import Engine, Report

ENGINE_NAMES = ("preview", "cogvideox")

_FULL_SET = (
    "install the backend's full set of packages (the add-on's preferences: Set up backend; or "
    "pip install -e '.[full]' in the backend's Python) and try again"
)


def make_engine(name: str, args: argparse.Namespace, report: Report) -> Engine:
    if name == "preview":
        try:
            from .preview.engine import PreviewEngine
        except ModuleNotFoundError as exc:
            raise UserError(
                "missing_dependency",
                f"The preview engine needs the package '{exc.name}', which this Python does not have; "
                "install the backend's preview set (pip install -e '.[preview]').",
            ) from None
        return PreviewEngine()
    if name == "cogvideox":
        try:
            from .cogvideox import commands

            return commands.make_engine(args, report)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.split(".")[0] in ("backend",):
                raise
            raise UserError(
                "missing_dependency",
                f"The cogvideox engine needs the package '{exc.name}', which this Python does not have; {_FULL_SET}.",
            ) from None
    raise UserError("bad_job", f"Unknown engine {name!r}; use one of {', '.join(ENGINE_NAMES)}.")


class EngineCache:
    """Keeps engines loaded between jobs (the worker) and closes them at the end."""

    def __init__(self, args: argparse.Namespace, report_for_loading: Report):
        self._args = args
        self._report = report_for_loading
        self._engines: dict[str, Engine] = {}

    def get(self, name: str, report: Report | None = None) -> Engine:
        if name not in self._engines:
            self._engines[name] = make_engine(name, self._args, report or self._report)
        return self._engines[name]

    def drop(self, name: str) -> None:
        engine = self._engines.pop(name, None)
        if engine is not None:
            engine.close()

    def close(self) -> None:
        for name in list(self._engines):
            self.drop(name)
