"""The offline prompt expander: deterministic, instant, standard library only.

    expand("a dog", "entity")           -> "a dog with a long golden coat, floppy ears, ..."
    expand("desert", "location", 2)     -> another candidate for the same words

The user's text opens the prompt unchanged (an entity gains "a"/"an" if it had none; a location
loses its article, as it is read after "in the"). Details come from the built-in presets: a
description naming a preset's thing ("a dog", "a knight", "a taxi") starts from that preset's
details, then from the slots in vocabulary.py for its kind (person, animal, bird, robot,
vehicle, ...), leaving out what the user already described ("a man in a suit" gets no second
suit) and a colour that would contradict theirs ("a black dog" gets no golden coat). `attempt`
picks another candidate (a UI's Retry): the same text and attempt always give the same prompt.

The add-on imports this module inside Blender when no backend is set up (a team-server user);
it reads only presets/entities.json next to the backend package.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from . import FALLBACK, WORD_RANGE, Expansion
from . import vocabulary as vocab
from .rules import MOTION_WORDS, Subject, repeats, singular, subject, word_list

PRESETS_DIR = Path(__file__).resolve().parents[2] / "presets"
# How long a fallback prompt aims to be: the presets' own lengths (18-24 words for entities).
TARGET_WORDS = (17, 22)


def expand(text: str, kind: str, attempt: int = 0, presets_dir: str | Path | None = None) -> Expansion:
    """A 15-24-word prompt for `text`. Raises UserError (code bad_prompt) for text that cannot be
    expanded (empty, not ASCII-writable, already over 24 words)."""
    subj = subject(text, kind)
    return Expansion(compose(subj, attempt, presets_dir), FALLBACK, kind, attempt)


def compose(subj: Subject, attempt: int = 0, presets_dir: str | Path | None = None) -> str:
    """The fallback's prompt for an already normalised subject."""
    rng = _rng(subj, attempt)
    if subj.kind == "entity":
        return _entity(subj, attempt, rng, _entity_presets(str(presets_dir or PRESETS_DIR)))
    return _location(subj, attempt, rng)


def _rng(subj: Subject, attempt: int) -> random.Random:
    # A hash of the words, not Python's salted hash(): the same on every run and machine. Only
    # Random.random() is used, whose sequence for a given seed Python keeps stable across versions.
    digest = hashlib.sha256(f"{subj.kind}\0{subj.text.lower()}\0{attempt}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _pick(rng: random.Random, options: tuple[str, ...] | list[str]) -> str:
    return options[min(int(rng.random() * len(options)), len(options) - 1)]


def _shuffled(rng: random.Random, items: list[str]) -> list[str]:
    return [item for _, item in sorted((rng.random(), item) for item in items)]


def _join(phrases: list[str], oxford: bool) -> str:
    if len(phrases) <= 2:
        return " and ".join(phrases)
    return ", ".join(phrases[:-1]) + ("," if oxford else "") + " and " + phrases[-1]


def _words(text: str) -> int:
    return len(text.split())


# ---------------------------------------------------------------- entities


@dataclass(frozen=True)
class PresetEntity:
    family: str  # the preset's category: human, animal, robot, vehicle, abstract
    subject: frozenset[str]  # the words naming it, singular ("a grizzly bear" -> grizzly, bear)
    noun: str
    connector: str  # how the first detail attaches: "with", "in", "of", "shaped from"
    phrases: tuple[str, ...]


_CONNECTORS = (" with ", " in ", " shaped from ", " made of ", " of ")


@lru_cache(maxsize=4)
def _entity_presets(folder: str) -> tuple[PresetEntity, ...]:
    """The built-in entity presets as details to reuse; unreadable files give none."""
    try:
        data = json.loads((Path(folder) / "entities.json").read_text(encoding="utf-8"))
        items = [(str(e["prompt"]), str(e.get("category", ""))) for e in data["entities"]]
    except (OSError, ValueError, KeyError, TypeError):
        return ()
    found = []
    for prompt, category in items:
        parts = [p.strip().removeprefix("and ") for p in prompt.split(",")]
        first = parts[0]
        at = [(first.find(c), c) for c in _CONNECTORS if c in first]
        if not at:
            continue
        index, connector = min(at)
        head = first[:index].split()
        phrases = [first[index + len(connector) :], *parts[1:]]
        found.append(
            PresetEntity(
                category,
                frozenset(singular(w.lower()) for w in head if w.lower() not in ("a", "an", "the")),
                singular(head[-1].lower()),
                connector.strip(),
                tuple(p for p in phrases if p and not MOTION_WORDS & set(word_list(p))),
            )
        )
    return tuple(found)


def _kind_of(word: str) -> str | None:
    for name, (_, _, nouns) in vocab.ENTITY_KINDS.items():
        if word in nouns or singular(word) in nouns:
            return name
    return None


def entity_kind(subj: Subject) -> str:
    """human, mammal, bird, reptile, robot, vehicle, cycle, abstract, or "" (anything else)."""
    kind = _kind_of(subj.noun) or next((k for w in reversed(subj.head) if (k := _kind_of(w))), None)
    if kind in ("human", "mammal", "bird", "reptile"):
        # "a robot dog", "a ghost horse": what it is made of decides its details.
        modifier = next((vocab.MODIFIER_KINDS[w] for w in subj.head[:-1] if w in vocab.MODIFIER_KINDS), None)
        kind = modifier or kind
    return kind or ""


def _matching_presets(subj: Subject, family: str | None, presets: tuple[PresetEntity, ...]) -> list[PresetEntity]:
    head = {singular(w) for w in subj.head}
    scored = []
    for order, p in enumerate(presets):
        if family is not None and p.family != family:
            continue
        if p.noun != subj.noun and subj.noun not in p.subject:
            continue
        scored.append(((p.noun != subj.noun, -len(head & p.subject), len(p.subject), order), p))
    return [p for _, p in sorted(scored, key=lambda item: item[0])]


class _Filter:
    """Which details a user's description leaves room for."""

    def __init__(self, subj: Subject, slots: tuple[vocab.Slot, ...] = ()):
        self.words = set(word_list(subj.text)) | {singular(w) for w in word_list(subj.text)}
        # Parts the user described ("in a suit"): no detail of the same part ("a purple hoodie").
        self.covered = frozenset().union(*(s.covers for s in slots if s.covers & self.words))
        # A colour before the noun is the thing's own ("a black dog"); one in the details is a
        # part's ("a man in a red jacket").
        self.own_colour = any(w in vocab.COLOURS for w in subj.head)

    def allows(self, phrase: str, slot: vocab.Slot | None = None) -> bool:
        words = word_list(phrase)
        if singular(words[-1]) in self.words or words[-1] in self.words:
            return False  # the user already named this part
        if slot is not None and (slot.covers & self.words or (slot.colour and self.own_colour)):
            return False
        if self.covered & (set(words) | {singular(w) for w in words}):
            return False
        if self.own_colour and vocab.COLOURS & set(words) and vocab.SURFACES & set(words):
            return False
        return not MOTION_WORDS & set(words)


def _entity(subj: Subject, attempt: int, rng: random.Random, presets: tuple[PresetEntity, ...]) -> str:
    kind = entity_kind(subj)
    family, slots = (vocab.ENTITY_KINDS[kind][0], vocab.ENTITY_KINDS[kind][1]) if kind else (None, vocab.THING)
    matches = _matching_presets(subj, family, presets)
    if not kind and matches:
        family = matches[0].family
        kind = next(k for k, v in vocab.ENTITY_KINDS.items() if v[0] == family)
        slots = vocab.ENTITY_KINDS[kind][1]
    allowed = _Filter(subj, slots)
    connector = "with"
    chosen: list[str] = []
    if attempt < len(matches):
        preset = matches[attempt]
        for i, phrase in enumerate(preset.phrases):
            if allowed.allows(phrase):
                if not chosen and i == 0:
                    connector = preset.connector
                chosen.append(phrase)
    else:
        chosen.extend(p for p in vocab.EXTRAS.get(subj.noun, ()) if allowed.allows(p))
    body = vocab.ABSTRACT_BODIES.get(subj.noun) or next(
        (vocab.ABSTRACT_BODIES[w] for w in subj.head if w in vocab.ABSTRACT_BODIES), None
    )
    # A part the chosen details already describe ("floppy ears") gets no second phrase.
    described = {singular(w) for p in chosen for w in word_list(p)} | {w for p in chosen for w in word_list(p)}
    slot_phrases = []
    for k, slot in enumerate(slots):
        options = body if (kind == "abstract" and k == 0 and body) else slot.options
        if slot.covers & (allowed.words | described) or (
            slot.colour and (allowed.own_colour or (k == 0 and bool(chosen)))
        ):
            continue
        phrase = _pick(rng, options)
        if allowed.allows(phrase, slot) and phrase not in chosen:
            slot_phrases.append(phrase)
    if attempt >= len(matches) and len(slot_phrases) > 3:
        # A generic candidate often leaves out one part, so retries differ in shape too.
        drop = int(rng.random() * len(slot_phrases))
        slot_phrases = slot_phrases[:drop] + slot_phrases[drop + 1 :] if drop > 0 else slot_phrases
    pool = chosen + [p for p in slot_phrases if p not in chosen]

    def text_for(phrases: list[str]) -> str:
        if not phrases:
            return subj.text
        lead = ", " if subj.has_details else f" {connector if phrases[0] == pool[0] else 'with'} "
        return subj.text + lead + _join(phrases, oxford=True)

    return _fit(subj, pool, list(vocab.ENTITY_FILL), rng, text_for, keep=len(chosen))


def _fit(subj: Subject, pool: list[str], fill: list[str], rng: random.Random, text_for: Callable, keep: int = 0) -> str:
    """Take details from `pool` in order while the prompt stays within the range, stopping at a
    target length (the first `keep`, a preset's own, whenever they fit); reach the range's floor
    from `fill` if the pool runs short."""
    low, high = WORD_RANGE
    target = TARGET_WORDS[0] + int(rng.random() * (TARGET_WORDS[1] - TARGET_WORDS[0] + 1))
    kept: list[str] = []
    for k, phrase in enumerate(pool):
        if k >= keep and _words(text_for(kept)) >= target:
            break
        if _fits(subj, text_for([*kept, phrase])):
            kept.append(phrase)
    for strict in (True, False):  # the floor matters more than a repeated word
        for phrase in fill:
            if _words(text_for(kept)) >= low:
                break
            candidate = text_for([*kept, phrase])
            if phrase not in kept and (_fits(subj, candidate) if strict else _words(candidate) <= high):
                kept.append(phrase)
    text = text_for(kept)
    if not low <= _words(text) <= high:  # unreachable: a subject has at most 24 words, a fill phrase 5
        raise AssertionError(f"fallback made {_words(text)} words for {subj.text!r}")
    return text


def _fits(subj: Subject, text: str) -> bool:
    return _words(text) <= WORD_RANGE[1] and repeats(text, subj) is None


# ---------------------------------------------------------------- locations


def _places(subj: Subject) -> list[vocab.Place]:
    words = [subj.noun, *reversed(subj.head), *subj.required]
    found: list[vocab.Place] = []
    for w in words:
        for place in vocab.PLACES:
            if (w in place.nouns or singular(w) in place.nouns) and place not in found:
                found.append(place)
    return found or [vocab.OPEN_GROUND]


def _location(subj: Subject, attempt: int, rng: random.Random) -> str:
    places = _places(subj)
    allowed = _Filter(subj)
    allowed.own_colour = False  # a "red canyon" still has sky and grass of other colours
    # The place's own features first, a second kind's ("snowy" of "snowy forest") between them.
    lists = []
    for k, place in enumerate(places[:2]):
        mine = [f for f in place.features if allowed.allows(f)]
        lists.append(mine if attempt == 0 and k == 0 else _shuffled(rng, mine))
    features = [f for group in itertools.zip_longest(*lists) for f in group if f is not None]
    setting = places[0].setting
    time = next((t for t, words in vocab.TIMES.items() if words & allowed.words), "")
    endings = vocab.ENDINGS.get((setting, time)) or vocab.ENDINGS[(setting, "")]
    endings = tuple(e for e in endings if allowed.allows(e))
    ending = (endings[0] if attempt == 0 else _pick(rng, endings)) if endings else ""

    def text_for(phrases: list[str]) -> str:
        text = subj.text
        if phrases:
            text += (", " if subj.has_details else " with ") + _join(phrases, oxford=False)
        return f"{text} {ending}" if ending else text

    return _fit(subj, features, list(vocab.LOCATION_FILL), rng, text_for)
