"""Variations of one job: the plan (which values, which labels) and where a set's takes go.

No bpy here (tests/test_variations.py). A variation set is `count` takes of one shot that
differ in one thing:

- `seed` (the default): a new random seed per take (0 to 2^31 - 1, what the panel's Seed field
  holds), all different; nothing else changes.
- `lora_scale`: the job's seed, and LoRA scales evenly spaced over the current value +- 0.3,
  moved (not cut) to stay inside 0-1 (the schema's range). At the release's 0.6 with four
  takes: 0.3, 0.5, 0.7, 0.9.
- `annealed_steps`: the job's seed, and annealed steps (steps 0..n use the LoRA and the
  trajectory injector) evenly spaced over the current value +- 30 % of the steps, moved to stay
  inside 0 to steps - 1 (from steps - 1 on, every step uses the injector: the same take). At the
  release's 20 of 50 steps with four takes: 5, 15, 25, 35. A window too narrow for `count`
  different whole numbers widens to the whole range; fewer than `count` there is a refusal.

Higher LoRA scale and more annealed steps follow the trajectory more closely and look worse
(the model reference, section 5): a sweep shows that trade-off on the user's own shot.

Each variation is a whole job: its `source.variation` records {set, index, count, varies,
value, label}, and the take's strip carries the same as `variation_*` properties (sequencer.py).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ...backend import job as jobfile

SEED, LORA_SCALE, ANNEALED_STEPS = "seed", "lora_scale", "annealed_steps"
VARIES = (SEED, LORA_SCALE, ANNEALED_STEPS)
MIN_COUNT, MAX_COUNT, DEFAULT_COUNT = 2, 8, 4
MAX_SEED = 2**31 - 1  # Blender's IntProperty; the job itself allows up to 2^32 - 1
LORA_RANGE = (0.0, 1.0)
LORA_SPAN = 0.3
ANNEALED_SPAN = 0.3  # of the steps
# Sampling settings the preview engine ignores: its takes of a set all look the same.
PREVIEW_IGNORES = VARIES


class VariationError(ValueError):
    """The variations cannot be planned; the message is for the user."""


@dataclass(frozen=True)
class Variation:
    index: int  # 0-based, in the set's order (channel order in the sequencer)
    value: int | float
    label: str
    job: dict[str, Any]


def label(varies: str, value: float) -> str:
    """What differs, as the timeline and the panel show it."""
    if varies == SEED:
        return f"seed {int(value)}"
    if varies == LORA_SCALE:
        return f"LoRA {value:.2f}"
    return f"annealed {int(value)}"


def _window(center: float, span: float, low: float, high: float) -> tuple[float, float]:
    """[center - span, center + span], moved to lie inside [low, high] (shrunk only if wider)."""
    lo, hi = center - span, center + span
    if hi - lo >= high - low:
        return low, high
    if lo < low:
        lo, hi = low, low + 2 * span
    if hi > high:
        lo, hi = high - 2 * span, high
    return lo, hi


def _spaced(lo: float, hi: float, count: int) -> list[float]:
    return [lo + (hi - lo) * k / (count - 1) for k in range(count)]


def sweep_values(varies: str, sampling: dict[str, Any], count: int, rng: random.Random | None = None) -> list:
    """The `count` values of `varies` for a job with these sampling settings."""
    if not MIN_COUNT <= count <= MAX_COUNT:
        raise VariationError(f"Choose between {MIN_COUNT} and {MAX_COUNT} variations (not {count}).")
    if varies == SEED:
        rng = rng or random.SystemRandom()
        seeds: list[int] = []
        while len(seeds) < count:
            seed = rng.randint(0, MAX_SEED)
            if seed not in seeds:
                seeds.append(seed)
        return seeds
    if varies == LORA_SCALE:
        lo, hi = _window(float(sampling["lora_scale"]), LORA_SPAN, *LORA_RANGE)
        return [round(v, 2) for v in _spaced(lo, hi, count)]
    if varies == ANNEALED_STEPS:
        steps = int(sampling["steps"])
        top = steps - 1
        if top < 1:
            raise VariationError(
                f"With {steps} step every take uses the injector on every step; raise Steps to sweep annealed steps."
            )
        center = min(int(sampling["annealed_steps"]), top)
        span = max(1, round(ANNEALED_SPAN * steps))
        lo, hi = _window(center, span, 0, top)
        if hi - lo + 1 < count:
            lo, hi = 0, top
        values = sorted({round(v) for v in _spaced(lo, hi, count)})
        if len(values) < count:
            raise VariationError(
                f"Only {top + 1} different annealed-step values fit with {steps} steps; "
                f"ask for at most {top + 1} variations or raise Steps."
            )
        return values
    raise VariationError(f"Unknown kind of variation {varies!r}; choose one of {', '.join(VARIES)}.")


def plan(
    job: dict[str, Any],
    count: int,
    varies: str = SEED,
    set_id: str = "",
    rng: random.Random | None = None,
) -> list[Variation]:
    """`count` jobs that differ from `job` in `varies` only, each marked as a member of the set."""
    values = sweep_values(varies, jobfile.resolve_sampling(job["sampling"]), count, rng)
    out = []
    for index, value in enumerate(values):
        variant = copy.deepcopy(job)
        variant["sampling"][varies] = value
        if varies in jobfile.PRESET_FIELDS and variant["sampling"].get("quality") in jobfile.QUALITY_PRESETS:
            # A preset's own steps, varied, are no longer that preset (its jobs refuse other values):
            # the takes keep every other setting of it and say Custom.
            variant["sampling"] = {**jobfile.resolve_sampling(variant["sampling"]), varies: value, "quality": "custom"}
        text = label(varies, value)
        source = dict(variant.get("source") or {})
        source["variation"] = {
            "set": set_id,
            "index": index,
            "count": count,
            "varies": varies,
            "value": value,
            "label": text,
        }
        variant["source"] = source
        out.append(Variation(index, value, text, variant))
    return out


def of_job(job: dict[str, Any]) -> dict[str, Any] | None:
    """The variation record of a job (None for a plain take)."""
    record = (job.get("source") or {}).get("variation")
    return record if isinstance(record, dict) and record.get("set") else None


# --- where a set lands in the sequencer ---------------------------------------------------------


def set_channel(
    placed: Sequence[tuple[int, int]],
    index: int,
    count: int,
    above: int,
    free: Callable[[int], bool],
    max_channel: int = 128,
) -> int | None:
    """The channel for take `index` of a set: the set occupies `count` consecutive channels over
    the shot, in index order, whatever order its takes finish in.

    `placed`: (index, channel) of the set's takes already in the sequencer; `above`: the highest
    channel of the shot's other takes; `free(channel)`: nothing there over the shot's frames.
    The first take to land reserves the lowest run of `count` free channels above `above`; the
    others go to their place in that run. None when that place is taken (the caller then uses
    the first free channel above everything)."""
    if placed:
        first_index, first_channel = min(placed)
        want = first_channel - first_index + index
        return want if 1 <= want <= max_channel and free(want) else None
    for base in range(above + 1, max_channel - count + 2):
        if all(free(base + k) for k in range(count)):
            return base + index
    return None


def plays(placed_indices: Sequence[int], index: int) -> bool:
    """Whether take `index` of a set plays when it lands: the set's first take plays (and the
    shot's other takes are muted), so the one that plays is the lowest index landed so far."""
    return all(index < other for other in placed_indices)
