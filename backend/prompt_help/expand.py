"""Choosing between the two sources: the model's checked answers, else the fallback.

An Expander keeps the prompt model loaded between requests (the worker holds one for its whole
life). Each expansion asks the model for a batch of candidates, repairs and checks them
(rules.py) and offers the first that passes; after ROUNDS batches without one, or without a
model, the offline fallback answers, and the result says why (`refused`, `model_problem`).
A batch that is all noise (the model unsure of its own words) ends the search at once.
`seed` is the Retry counter: the same text and seed give the same result, another seed another
candidate, from either source.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import UserError
from ..events import Heartbeat
from ..progress import Report
from . import FALLBACK, Expansion, fallback, model, rules

ROUNDS = 2


class Expander:
    def __init__(
        self,
        weights_dir: Path,
        model_dir: str | Path | None = None,
        device: str = "auto",
        dtype: str = "auto",
        use_model: bool = True,
        presets_dir: Path | None = None,
    ):
        self.weights_dir = weights_dir
        self.model_dir = model_dir
        self.device = device
        self.dtype = dtype
        self.use_model = use_model
        self.presets_dir = presets_dir or fallback.PRESETS_DIR
        self._model: model.PromptModel | None = None
        self._problem: str | None = None  # why the model is not used; remembered, not retried

    def expand(self, text: str, kind: str, seed: int, report: Report) -> Expansion:
        """Raises UserError (bad_prompt) for text that cannot be expanded; otherwise always answers."""
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
            raise UserError("bad_prompt", f"The seed must be a whole number from 0 to {2**31 - 1}, got {seed!r}.")
        subj = rules.subject(text, kind)
        loaded = self._load(report) if self.use_model else None
        refused: list[str] = []
        if loaded is not None:
            report.stage("expanding", f"Expanding {subj.text!r} with {loaded.name}")
            for round_ in range(ROUNDS):
                try:
                    answers = loaded.candidates(subj, seed=seed * ROUNDS + round_)
                except Exception as exc:  # out of memory, a broken model: the fallback still answers
                    self._problem = f"the prompt model failed ({type(exc).__name__}: {exc})"
                    self.close()
                    break
                for answer in answers:
                    candidate = rules.repair(answer.text, subj, answer.finished)
                    why = "unsure of its own words (noise)" if answer.unsure else rules.problem(candidate, subj)
                    if why is None:
                        return Expansion(candidate, loaded.name, kind, seed, refused, license=loaded.license)
                    if why not in refused:
                        refused.append(why)
                if all(answer.unsure for answer in answers):
                    break  # noise (random or broken weights): another batch would be noise too
                report.check_cancel()
        else:
            report.stage("expanding", f"Expanding {subj.text!r} with the offline fallback")
        return Expansion(fallback.compose(subj, seed, self.presets_dir), FALLBACK, kind, seed, refused, self._problem)

    def _load(self, report: Report) -> model.PromptModel | None:
        if self._model is not None or self._problem is not None:
            return self._model
        try:
            folder = model.find(self.weights_dir, self.model_dir)
        except UserError as exc:
            self._problem = exc.message
            return None
        try:
            from ..cogvideox.commands import resolve_device, resolve_dtype

            device = resolve_device(self.device)
            dtype = resolve_dtype(self.dtype, device)
        except ModuleNotFoundError as exc:
            self._problem = f"the prompt model needs the package '{exc.name}', which this Python does not have"
            return None
        report.stage("loading", f"Loading the prompt model {folder.name} on {device}")
        try:
            with Heartbeat(report.stream, "loading"):
                self._model = model.PromptModel(folder, device, dtype, self.presets_dir)
        except UserError as exc:
            self._problem = exc.message
        except (OSError, ValueError, RuntimeError, ImportError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self._problem = f"the prompt model in {folder} could not be loaded ({first})"
        return self._model

    def describe(self) -> dict[str, Any]:
        if self._model is None:
            return {"loaded": False, "problem": self._problem}
        return {
            "loaded": True,
            "name": self._model.name,
            "license": self._model.license,
            "path": str(self._model.folder),
        }

    def close(self) -> None:
        if self._model is not None:
            self._model.close()
            self._model = None
