"""Prompt help: a short description ("a dog", "desert") -> a 15-24-word prompt in the style of
the model's training captions, keeping every word the user wrote.

Two sources, one contract (an Expansion, docs/backend.md "Prompt help"):
  fallback  deterministic, offline, standard library only, built from the presets' vocabulary;
            the add-on imports it inside Blender when there is no backend at all
  model     a small instruction-tuned language model through transformers (Qwen2.5-1.5B-Instruct,
            Apache-2.0), optional, downloaded like the other weights; its answers are checked
            and refused when they are junk, and the fallback answers instead

Modules: rules (normalising what the user typed, checking and repairing candidates; stdlib),
vocabulary and fallback (stdlib), model (transformers), expand (choosing between the two),
commands (the CLI command and the worker op).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# The prompt length the model follows well (model reference, section 1).
WORD_RANGE = (15, 24)
KINDS = ("entity", "location")
FALLBACK = "fallback"


@dataclass(frozen=True)
class Expansion:
    """One expanded prompt. `source` is the model's name or "fallback"; `refused` says why the
    model's candidates were not used (empty when the model answered or was not asked)."""

    text: str
    source: str
    kind: str
    seed: int
    refused: list[str] = field(default_factory=list)
    model_problem: str | None = None  # why no model was used (not installed, ...), for the UI
    license: str | None = None  # the model's licence when it answered

    @property
    def words(self) -> int:
        return len(self.text.split())

    def as_dict(self) -> dict[str, Any]:
        """The fields of the `result` event (docs/protocol.md); the kind is the request's, not
        repeated ("kind" names an event's own kind)."""
        out = {**asdict(self), "words": self.words}
        del out["kind"]
        for optional in ("model_problem", "license"):
            if out[optional] is None:
                del out[optional]
        return out
