"""Prompt help's offline fallback on the short descriptions people type: 15-24 words, plain
ASCII, the user's words kept, the presets' style, the same answer every time, another on Retry;
and importable with the standard library alone (the add-on uses it inside Blender)."""

import json
import os
import subprocess
import sys

import pytest
from cli import ROOT, backend
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.errors import UserError
from backend.prompt_help import WORD_RANGE, fallback, rules

ENTITIES = [
    "a dog",
    "dog",
    "a black dog with a red collar",
    "an old man with a cane",
    "a woman in a yellow raincoat",
    "a knight",
    "a robot dog",
    "red sports car",
    "a parrot",
    "a dragon",
    "a ghost",
    "a delivery drone",
    "a bicycle",
    "a samurai warrior",
    "a lamp",
]
LOCATIONS = [
    "desert",
    "a desert at night",
    "the beach at sunset",
    "forest",
    "snowy forest",
    "city street",
    "parking lot",
    "abandoned factory",
    "moon surface",
    "a kitchen",
    "swamp",
    "foggy harbor",
    "somewhere quiet",
]
LOW, HIGH = WORD_RANGE


def user_words(text: str, kind: str) -> list[str]:
    words = rules.word_list(text)
    return [w for w in words if w not in ("a", "an", "the")] if kind == "location" else words


@pytest.mark.parametrize(("text", "kind"), [(t, "entity") for t in ENTITIES] + [(t, "location") for t in LOCATIONS])
def test_a_short_description_becomes_15_to_24_plain_words_that_keep_what_the_user_wrote(text, kind):
    subj = rules.subject(text, kind)
    for attempt in range(4):
        result = fallback.expand(text, kind, attempt)
        assert LOW <= result.words <= HIGH, (attempt, result.text)
        assert all(" " <= c <= "~" for c in result.text), result.text  # the job schema's printable ASCII
        words = rules.word_list(result.text)
        assert set(user_words(text, kind)) <= set(words), result.text
        # The user's words open the prompt, as they wrote them.
        assert result.text.lower().startswith(subj.text.lower()), result.text
        # The same checks a model's answer must pass (no repeats, no motion, no run-on, ...).
        assert rules.problem(result.text, subj) is None, (rules.problem(result.text, subj), result.text)
        assert result.source == "fallback" and result.seed == attempt


def test_entities_read_like_the_presets():
    for text in ENTITIES:
        result = fallback.expand(text, "entity")
        first = result.text.split()[0]
        assert first in ("a", "an"), result.text
        # "subject with detail, detail, and detail": the presets' shape.
        rest = result.text[len(rules.subject(text, "entity").text) :]
        assert rest.startswith((" with ", " in ", ", ", " of ")), result.text
        assert result.text.count(",") >= 1 and " and " in result.text, result.text
        assert result.text == result.text.rstrip(".") and "  " not in result.text
        assert not set(rules.word_list(result.text)) & {"walking", "running", "moving", "towards", "camera"}


def test_a_description_naming_a_preset_starts_from_that_presets_details():
    presets = {e["name"]: e["prompt"] for e in json.loads((ROOT / "presets/entities.json").read_text())["entities"]}
    assert fallback.expand("a dog", "entity").text == presets["Golden retriever"]
    assert fallback.expand("a horse", "entity").text == presets["Chestnut horse"]
    assert fallback.expand("a knight", "entity").text.startswith("a knight in dented steel plate armor")


def test_details_never_contradict_or_repeat_what_the_user_said():
    black = fallback.expand("a black dog", "entity").text
    assert "golden coat" not in black and black.startswith("a black dog with ")
    for attempt in range(4):  # the presets of men first (one wears a hoodie), then generic details
        suit = fallback.expand("a man in a suit", "entity", attempt).text
        for clothing in ("hoodie", "jacket", "trousers", "jeans", "shorts", "tights", "vest", "sweater"):
            assert clothing not in suit, suit
    collar = fallback.expand("a dog with a blue collar", "entity").text
    assert rules.word_list(collar).count("collar") == 1, collar
    night = fallback.expand("desert at night", "location").text
    assert "blue sky" not in night and "afternoon" not in night, night


def test_locations_read_after_in_the():
    for text in LOCATIONS:
        result = fallback.expand(text, "location")
        assert result.text.split()[0] not in ("a", "an", "the"), result.text
        assert " with " in result.text or "," in result.text, result.text


def test_the_same_words_give_the_same_prompt_in_another_process_and_retries_give_others():
    here = [fallback.expand(t, "entity", a).text for t in ("a cat", "a robot") for a in range(3)]
    code = (
        "import json; from backend.prompt_help import fallback; "
        "print(json.dumps([fallback.expand(t, 'entity', a).text for t in ('a cat', 'a robot') for a in range(3)]))"
    )
    # Another process, another hash seed: nothing may depend on Python's salted hash().
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        check=True,
    )
    assert json.loads(out.stdout) == here
    for text, kind in [("a cat", "entity"), ("a robot", "entity"), ("desert", "location"), ("a woman", "entity")]:
        tries = [fallback.expand(text, kind, a).text for a in range(4)]
        assert len(set(tries)) == 4, tries


def test_what_cannot_be_expanded_is_one_clear_sentence():
    cases = {
        "": "Type a few words",
        "   ": "Type a few words",
        "a " + "very " * 24 + "big dog": "already has 27 words",
        "a 犬": "cannot be written that way",
    }
    for text, fragment in cases.items():
        with pytest.raises(UserError) as info:
            fallback.expand(text, "entity")
        assert info.value.code == "bad_prompt" and fragment in info.value.message, info.value.message
    with pytest.raises(UserError):
        fallback.expand("a dog", "vehicle")
    # Accents and typographic quotes become their ASCII letters rather than failing.
    cafe = fallback.expand("a café waiter’s apron", "entity")
    assert cafe.text.startswith("a cafe waiter's apron") and cafe.text.isascii()


def test_the_user_words_survive_even_when_already_long():
    text = "a tall woman with curly red hair, a long green wool coat, brown leather boots and a wicker basket"
    result = fallback.expand(text, "entity")
    assert result.text.startswith(text.rstrip(".")) and LOW <= result.words <= HIGH
    twenty = "an " + " ".join(["old"] * 1) + " man with " + ", ".join(["a grey hat", "a red scarf", "a long coat"])
    assert fallback.expand(twenty, "entity").text.startswith(twenty)


def test_it_imports_with_the_standard_library_alone():
    # The add-on imports it inside Blender, where the backend's packages may not exist: -S leaves
    # out every site-packages folder.
    code = (
        "import sys; from backend.prompt_help import fallback, rules; "
        "print(fallback.expand('a dog', 'entity').words); "
        "print(sorted(m for m in ('numpy', 'torch', 'transformers', 'PIL', 'jsonschema') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-S", "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["21", "[]"]


def test_the_cli_expands_offline_with_events_and_a_result(tmp_path):
    run = backend("expand", "a wolf", "--weights", tmp_path / "empty", "--seed", "2")
    assert run.code == 0 and run.stray_lines == 0, run.stderr
    result = run.last("result")
    assert result["source"] == "fallback" and result["seed"] == 2
    assert LOW <= result["words"] == len(result["text"].split()) <= HIGH
    assert result["text"] == fallback.expand("a wolf", "entity", 2).text
    assert "No prompt model" in result["model_problem"]
    assert [e["stage"] for e in run.events if e["event"] == "stage"] == ["expanding"]
    location = backend("expand", "the harbor", "--kind", "location", "--no-model")
    assert location.last("result")["text"].startswith("harbor with ")
    assert "model_problem" not in location.last("result")
    bad = backend("expand", "", "--no-model")
    assert bad.code == 2 and bad.last("error")["code"] == "bad_prompt" and "Traceback" not in bad.stderr


PRESET_WORDS = sorted(
    {
        w.strip(",").lower()
        for name, key in (("entities.json", "entities"), ("locations.json", "locations"))
        for e in json.loads((ROOT / "presets" / name).read_text(encoding="utf-8"))[key]
        for w in e["prompt"].split()
    }
)


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(st.sampled_from(PRESET_WORDS), st.text("abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=9)),
        min_size=1,
        max_size=14,
    ),
    st.sampled_from(["entity", "location"]),
    st.integers(0, 6),
)
def test_any_description_of_up_to_14_words_lands_in_the_range_and_passes_the_checks(words, kind, attempt):
    text = " ".join(words)
    try:
        subj = rules.subject(text, kind)
    except UserError:
        assert all(w in ("a", "an", "the") for w in words)  # only articles: nothing to expand
        return
    result = fallback.expand(text, kind, attempt)
    assert LOW <= result.words <= HIGH and result.text.startswith(subj.text), result.text
    assert rules.problem(result.text, subj) is None, (rules.problem(result.text, subj), result.text)
