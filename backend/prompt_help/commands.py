"""Prompt help's side of the CLI and the worker: `python -m backend expand` and the `expand` op.

Both answer with the same `result` event (Expansion.as_dict(): text, source, kind, seed, words,
refused, model_problem?, license?) or one `error` (code bad_prompt for text that cannot be
expanded, bad_request for a malformed worker request). Importing this module imports no torch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import EXIT_OK
from ..events import EventStream
from ..outcome import report_outcome
from ..progress import Report
from . import KINDS
from .expand import Expander

EXPAND_FIELDS = {"op", "id", "text", "kind", "seed"}


def add_prompt_model_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--prompt-model-dir",
        metavar="DIR",
        help="the prompt help model's folder (default: Qwen2.5-1.5B-Instruct/ in the weights folder)",
    )


def add_expand_arguments(parser: argparse.ArgumentParser) -> None:
    from ..cogvideox.commands import add_device_arguments

    parser.add_argument("text", metavar="TEXT", help="a short description, e.g. 'a dog' or 'desert'")
    parser.add_argument("--kind", choices=KINDS, default="entity", help="an entity prompt (default) or the location")
    parser.add_argument(
        "--seed", type=int, default=0, metavar="N", help="which candidate: 0 first, 1, 2, ... for retries (default 0)"
    )
    parser.add_argument(
        "--weights",
        metavar="DIR",
        help="the weights folder (default: $TRAJMASTER_WEIGHTS, else weights/ in the extension folder)",
    )
    add_prompt_model_argument(parser)
    parser.add_argument(
        "--no-model", action="store_true", help="use the offline fallback only, even with a prompt model installed"
    )
    add_device_arguments(parser)


def _weights_dir(value: str | None) -> Path:
    from ..cogvideox import weights

    return Path(value).expanduser() if value else weights.default_weights_dir()


def expander_for(args: argparse.Namespace, use_model: bool = True) -> Expander:
    """The expander a command's flags ask for (expand's, or serve's weights and device flags)."""
    return Expander(
        _weights_dir(getattr(args, "weights", None)),
        getattr(args, "prompt_model_dir", None),
        device=getattr(args, "device", "auto"),
        dtype=getattr(args, "dtype", "auto"),
        use_model=use_model,
    )


def run_expand(args: argparse.Namespace, report: Report) -> int:
    """`python -m backend expand`: one expansion, then exit."""
    expander = expander_for(args, use_model=not args.no_model)
    try:
        result = expander.expand(args.text, args.kind, args.seed, report)
    except BaseException as exc:
        return report_outcome(report, exc)
    finally:
        expander.close()
    report._emit("result", **result.as_dict())
    print(f"{result.text}\n({result.words} words, {result.source})", file=sys.stderr)
    return EXIT_OK


def request_problem(request: dict[str, Any]) -> str | None:
    unknown = set(request) - EXPAND_FIELDS
    if unknown:
        return f"unknown fields {sorted(unknown)}"
    if not isinstance(request.get("id"), str) or not request["id"]:
        return "'id' must be a non-empty string"
    if not isinstance(request.get("text"), str):
        return "'text' must be a string"
    if request.get("kind", "entity") not in KINDS:
        return f"'kind' must be one of {', '.join(KINDS)}"
    seed = request.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        return "'seed' must be a whole number"
    return None


def serve_expand(expander: Expander, request: dict[str, Any], stream: EventStream) -> None:
    """One `expand` request in the worker: its events carry the request's id as `job`."""
    problem = request_problem(request)
    report = Report(stream, job_id=request.get("id") if isinstance(request.get("id"), str) else None)
    if problem:
        report._emit("error", code="bad_request", message=f"Ignored an expand request: {problem}.", exit_code=2)
        return
    try:
        result = expander.expand(request["text"], request.get("kind", "entity"), request.get("seed", 0), report)
    except Exception as exc:  # one clear error event for this request; the worker stays up
        report_outcome(report, exc)
        return
    report._emit("result", **result.as_dict())
