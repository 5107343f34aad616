"""What a language model's answer must be before the panel offers it: the junk small chat models
write is refused with a reason, and answers only a little too long are cut back at a phrase end."""

import pytest

from backend.prompt_help import rules

DOG = rules.subject("a dog", "entity")
DESERT = rules.subject("desert", "location")
GOOD = "a dog with a short black coat, upright pointed ears, a curled bushy tail, a blue nylon collar, and brown eyes"


def test_a_good_caption_passes():
    assert rules.problem(GOOD, DOG) is None
    place = "desert with golden sand dunes, scattered dry shrubs and wind-carved rocks under a clear blue sky at noon"
    assert rules.problem(place, DESERT) is None


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("a dog with a short black coat, upright pointed ears, a curled bushy tail and a blue collar \u2764", "ASCII"),
        (
            "a dog with a short black c\u00f6at, upright pointed ears, a curled bushy tail, and a blue nylon collar",
            "ASCII",
        ),
        ("a dog. Sure! Here is an expanded prompt with a short black coat, pointed ears and a bushy tail", "chatty"),
        ("a dog, here's a detailed description: a short black coat, upright pointed ears, and a curled tail", "chatty"),
        ("a dog with a short black coat, upright ears and a curled tail. I hope this helps with your video", "chatty"),
        (
            "a dog with a short **black** coat, upright pointed ears, a curled bushy tail, and a blue nylon collar",
            "markup",
        ),
        (
            "a dog with a short black coat <|im_end|> upright pointed ears, a curled bushy tail, and a blue collar",
            "markup",
        ),
        (
            "a dog with a short black coat, upright ears. The dog has a curled bushy tail and a blue nylon collar",
            "sentence",
        ),
        ("a dog dog dog dog dog dog dog dog dog dog dog dog dog dog dog dog dog dog dog dog", "repeated"),
        ("a dog with a coat with a coat with a coat with a coat with a coat with a coat with a coat", "repeated"),
        ("a dog with a short black coat, a short black coat, pointed ears, a bushy tail, and a collar", "repeated"),
        ("a puppy with a short black coat, upright pointed ears, a curled bushy tail, and a blue nylon collar", "dog"),
        (
            "a dog with a short black coat, upright pointed ears, walking towards a curled bushy tail and collar",
            "moves",
        ),
        ("a dog with a short black coat facing the camera, upright pointed ears, a bushy tail, and a collar", "camera"),
        (
            "a dog with a short black coat, upright pointed ears, xkqzvbwprt ghh1x2 a curled bushy tail, and a collar",
            "words",
        ),
        (
            "a dog with a short black coat, upright pointed ears, a curledbushytailandabluenylon collar and eyes",
            "words",
        ),
        (
            "a dog with a short black coat, upright pointed ears, a Curled Bushy Tail, and a blue nylon collar",
            "capitals",
        ),
        (
            "a dogfish with a short black coat, upright pointed ears, a curled bushy tail, and a blue nylon collar",
            "dog",
        ),
        (
            "a dog upright pointed ears, horse, a curled bushy tail, a blue nylon collar, and bright brown eyes",
            "runs on",
        ),
        ("a dog with a black coat", "words (needs 15-24)"),
    ],
)
def test_junk_is_refused_with_a_reason(answer, reason):
    why = rules.problem(rules.clean(answer), DOG)
    assert why is not None and reason in why, why


def test_a_location_must_not_start_with_an_article():
    why = rules.problem(
        "the desert with golden sand dunes, scattered dry shrubs and wind-carved rocks under a clear sky", DESERT
    )
    assert why is not None


def test_an_over_long_answer_is_cut_back_at_a_phrase_end():
    long = (
        "a dog with a short black coat, upright pointed ears, a curled bushy tail, a blue nylon collar with a small "
        "silver tag, bright brown eyes, and a pink tongue hanging out"
    )
    assert len(long.split()) > 24
    cut = rules.repair(long, DOG)
    # The longest cut at a phrase end (a comma, or before "with"/"and") that fits: 24 words.
    assert cut == (
        "a dog with a short black coat, upright pointed ears, a curled bushy tail, a blue nylon collar with a small "
        "silver tag"
    )
    assert rules.problem(cut, DOG) is None


def test_a_cut_off_answer_loses_its_unfinished_phrase():
    # Generation stopped at its limit in the middle of a phrase.
    cut_off = "a dog with a short black coat, upright pointed ears, a curled bushy tail, a blue nylon collar, and a"
    assert rules.repair(cut_off, DOG, finished=False) == (
        "a dog with a short black coat, upright pointed ears, a curled bushy tail, a blue nylon collar"
    )


def test_cleaning_keeps_the_first_line_and_drops_quotes_and_the_full_stop():
    raw = '"a dog with a short black coat, upright pointed ears , a curled bushy tail, and brown eyes."\n\nNote: ...'
    assert (
        rules.clean(raw) == "a dog with a short black coat, upright pointed ears, a curled bushy tail, and brown eyes"
    )


def test_what_the_user_wrote_decides_what_is_theirs():
    running = rules.subject("a running dog", "entity")
    answer = "a running dog with a short black coat, upright pointed ears, a curled bushy tail, and a blue collar"
    assert rules.problem(answer, running) is None  # their word, not the model's
    assert rules.subject("Dog", "entity").text == "a Dog"
    assert rules.subject("apple", "entity").text == "an apple"
    assert rules.subject("A unicorn", "entity").text == "a unicorn"
    assert rules.subject("The Beach at sunset.", "location").text == "Beach at sunset"
    assert rules.subject("  a  man\twith a hat ", "entity").has_details
