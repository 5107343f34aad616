"""What a prompt must be, written once for both sources: normalising what the user typed,
refusing junk candidates, and repairing the ones that are only a little off.

Standard library only (the add-on imports it inside Blender). Word counts are
`len(text.split())`, the count the presets' own checks use.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from dataclasses import dataclass

from ..errors import UserError
from . import KINDS, WORD_RANGE

ARTICLES = ("a", "an", "the")
# Where a noun phrase ends and its details begin: "a dog | with a red collar".
DETAIL_WORDS = frozenset(
    """with in on at near by beside during wearing holding carrying and of that who which from under made shaped
    covered dressed""".split()
)
# Words that say how the entity moves or where the camera is: the trajectory and the shot say
# that, and a prompt that says it too fights the poses (docs/presets.md).
MOTION_WORDS = frozenset(
    """walking walks walk running runs run moving moves move driving drives flying flies jumping jumps
    approaching approaches towards toward rushing racing galloping trotting strolling marching crawling
    sprinting hopping leaping swimming riding""".split()
)
# Small words a caption repeats naturally; any other word three times is a loop.
FUNCTION_WORDS = frozenset(
    "a an the and with of in on its at to from by for or under over near behind between his her their".split()
)
# Lead-ins and asides of a chat model answering instead of captioning.
CHATTY = re.compile(
    r"\b(sure|certainly|of course|here is|here's|here are|as an ai|i can|i cannot|i can't|i'm|i am|i will|"
    r"let me|hope this|feel free|let's|prompt:|description:|caption:|note:|output:|answer:|expanded)\b"
)
# What may follow the user's words: how the captions attach their details ("a dog | with ...",
# "city street | lined with ...", "beach at sunset | with ..."); participles count too.
CONTINUATIONS = frozenset(
    """with in of on at under near by beside along between among wearing dressed covered made shaped lined
    full filled glowing surrounded dotted framed bordered overlooking lit where whose that and""".split()
)
MARKUP = re.compile(r"[*#<>\[\]{}|\\_=~^`@$%&]|https?:|\.\.\.")
WORD_SHAPE = re.compile(r"[A-Za-z0-9]+(?:['-][A-Za-z0-9]+)*")
LONGEST_WORD = 18
VOWELS = frozenset("aeiouy")
# Typographic characters a user (or a model) may type, as the ASCII the schema allows.
_PUNCTUATION = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-"})


def fold_ascii(text: str) -> str:
    """Printable ASCII: accents keep their base letter (cafe), typographic quotes and dashes become
    ASCII ones, control characters become spaces, anything else is dropped."""
    text = unicodedata.normalize("NFKD", text.translate(_PUNCTUATION))
    out = []
    for ch in text:
        if ch in "\t\r\n\v\f":
            out.append(" ")
        elif " " <= ch <= "~":
            out.append(ch)
    return "".join(out)


def word_list(text: str) -> list[str]:
    """Lower-case words without the punctuation around them ("collar," -> "collar")."""
    return [w for w in (t.strip(".,;:!?\"'()").lower() for t in text.split()) if w]


def singular(word: str) -> str:
    """Good enough for matching nouns against a vocabulary (dogs -> dog, boxes -> box)."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("ches", "shes", "xes", "sses")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def article_for(word: str) -> str:
    w = word.lower()
    if w.startswith(("uni", "use", "usu", "eu", "one", "once")):
        return "a"
    if w.startswith(("hour", "honest", "honou", "heir")):
        return "an"
    return "an" if w[:1] in "aeiou" else "a"


@dataclass(frozen=True)
class Subject:
    """What the user typed, as the start of the prompt. `text` opens every candidate; `required`
    are the words every candidate must keep; `head` are the words naming the thing itself
    ("a black dog" of "a black dog with a red collar"); `has_details` says whether the user's
    text already lists details (then a prompt continues the list instead of starting one)."""

    text: str
    kind: str
    required: tuple[str, ...]
    head: tuple[str, ...]
    has_details: bool

    @property
    def words(self) -> int:
        return len(self.text.split())

    @property
    def noun(self) -> str:
        """The head's last word, singular: what the thing is."""
        return singular(self.head[-1]) if self.head else ""


def subject(text: str, kind: str) -> Subject:
    """Normalise a short description. Raises UserError (code bad_prompt) for text that cannot be
    expanded: empty, not writable in ASCII, or already longer than the range."""
    if kind not in KINDS:
        raise UserError("bad_prompt", f"Unknown prompt kind {kind!r}; use entity or location.")
    if not isinstance(text, str):
        raise UserError("bad_prompt", "The description must be text.")
    folded = [fold_ascii(w) for w in text.split()]
    lost = [w for w, f in zip(text.split(), folded, strict=True) if not any(c.isalnum() for c in f)]
    lost = [w for w in lost if any(c.isalnum() for c in w)]  # punctuation alone may go
    if lost:
        raise UserError(
            "bad_prompt",
            f"The model reads plain English (ASCII) prompts, and {lost[0]!r} cannot be written that way; "
            "type it in English letters.",
        )
    words = " ".join(" ".join(folded).split()).strip(" .,;:!?\"'").split()
    words = [w for w in words if any(c.isalnum() for c in w) or w in ("&", "-")]
    if all(w.lower() in ARTICLES for w in words):
        raise UserError("bad_prompt", "Type a few words to expand first (for example 'a dog' or 'desert').")
    while len(words) > 1 and words[0].lower() in ARTICLES and words[1].lower() in ARTICLES:
        words.pop(0)  # "a a dog", "the a beach": one article is what was meant
    if words[0].lower() in ARTICLES:
        words[0] = words[0].lower()
    if kind == "entity":
        if words[0] not in ARTICLES and not words[0].isdigit():
            words.insert(0, article_for(words[0]))
        elif words[0] in ("a", "an") and len(words) > 1:
            words[0] = article_for(words[1])  # "a apple" -> "an apple"
    elif words[0] in ARTICLES and len(words) > 1:
        # The global prompt reads "... moving in the {location}": a location has no article.
        words.pop(0)
    low, high = WORD_RANGE
    if len(words) > high:
        raise UserError(
            "bad_prompt",
            f"The description already has {len(words)} words and the model follows {low}-{high}; "
            "shorten it instead of expanding it.",
        )
    lower = word_list(" ".join(words))
    cut = next((i for i, w in enumerate(lower) if i > 0 and w in DETAIL_WORDS), len(lower))
    required = tuple(w for w in lower if w not in ARTICLES) or tuple(lower)
    return Subject(" ".join(words), kind, required, tuple(lower[:cut]), "with" in lower[1:])


# ---------------------------------------------------------------- candidates


def clean(candidate: str) -> str:
    """The first line, without surrounding quotes, stray spaces or a final full stop."""
    lines = [line for line in candidate.strip().splitlines() if line.strip()]
    text = " ".join(lines[0].split()) if lines else ""
    text = text.strip(" \"'")
    text = re.sub(r"\s+([,;:.])", r"\1", text)
    return text.rstrip(" .;:,")


_BOUNDARY_TAIL = frozenset("and with a an the of in on its at to or".split())


def repair(candidate: str, subj: Subject, finished: bool = True) -> str:
    """Clean a candidate and bring an over-long (or cut-off) one back inside the range by
    dropping whole trailing phrases, never words from inside one. `finished` is False when
    generation stopped at its token limit: the last phrase is then incomplete and goes."""
    text = clean(candidate)
    words = text.split()
    high = WORD_RANGE[1]
    if finished and len(words) <= high:
        return text
    # Phrase ends: after a word ending in a comma, or before "and"/"with" joining phrases.
    ends = [i + 1 for i, w in enumerate(words) if w.endswith(",")]
    ends += [i for i, w in enumerate(words) if w.lower() in ("and", "with") and i > 0]
    best = None
    for end in sorted(set(ends)):
        if subj.words <= end <= high:
            best = end
    if best is None:
        return text
    cut = words[:best]
    while cut and cut[-1].lower().rstrip(",") in _BOUNDARY_TAIL and len(cut) > subj.words:
        cut.pop()
    return " ".join(cut).rstrip(",")


def problem(candidate: str, subj: Subject) -> str | None:
    """Why a (cleaned) candidate cannot be offered, in a few words, or None when it can."""
    low, high = WORD_RANGE
    text = candidate.strip()
    if not text:
        return "empty"
    if not all(" " <= c <= "~" for c in text):
        return "not plain ASCII"
    lower = text.lower()
    found = CHATTY.search(lower)
    if found:
        return f"chatty ({found.group(0)!r})"
    if MARKUP.search(text):
        return "markup or symbols"
    if re.search(r"[.!?]\s+\S", text) or "?" in text or "!" in text:
        return "more than one sentence"
    words = word_list(text)
    missing = [w for w in subj.required if w not in words]
    if missing:
        return f"dropped the user's word {missing[0]!r}"
    repeated = repeats(text, subj)
    if repeated:
        return repeated
    rest = text[len(subj.text) :] if lower.startswith(subj.text.lower()) else ""
    if rest and not rest.startswith(","):
        first = word_list(rest)[0] if word_list(rest) else ""
        if first not in CONTINUATIONS and not first.endswith(("ed", "ing")):
            return f"runs on from the user's words ({subj.text.split()[-1]!r} {first!r})"
    own = set(subj.required) | set(word_list(subj.text))
    for raw in text.split():
        token = raw.strip(",;:()\"'")
        if token.lower() in own:
            continue
        letters = token.replace("-", "").replace("'", "")
        if (
            not WORD_SHAPE.fullmatch(token)
            or len(token) > LONGEST_WORD
            or not letters.isalpha()  # letters and digits mixed, or digits alone
            or (len(letters) >= 4 and not VOWELS & set(letters.lower()))
        ):
            return f"not words ({raw!r})"
        if token[:1].isupper() and token.lower() not in own:
            return f"odd capitals ({raw!r})"
    if "camera" in words and "camera" not in own:
        return "mentions the camera (the shot decides it)"
    if subj.kind == "entity":
        moving = sorted(w for w in set(words) if w in MOTION_WORDS and w not in own)
        if moving:
            return f"says how it moves ({moving[0]!r}; the trajectory does that)"
    elif words[0] in ARTICLES:
        return "starts with an article (a location reads after 'in the')"
    n = len(text.split())
    if not low <= n <= high:
        return f"{n} words (needs {low}-{high})"
    return None


def repeats(text: str, subj: Subject) -> str | None:
    """A loop or a doubled detail: the same word twice in a row, a word (not a small one) three
    times, or the same two words twice ("warm ceiling lights ... bright ceiling lights")."""
    words = word_list(text)
    own = set(word_list(subj.text))
    for a, b in itertools.pairwise(words):
        if a == b and a not in own:
            return f"repeated words ({a!r})"
    for w in set(words):
        if w not in FUNCTION_WORDS and words.count(w) > 2 + word_list(subj.text).count(w):
            return f"repeated words ({w!r})"
    pairs = [p for p in itertools.pairwise(words) if not set(p) <= FUNCTION_WORDS]
    user_pairs = list(itertools.pairwise(word_list(subj.text)))
    for p in set(pairs):
        if pairs.count(p) > max(1, user_pairs.count(p) + (p in user_pairs)):
            return f"repeated phrases ({' '.join(p)!r})"
    return None
