"""Prompt help through a real transformers model: a tiny Qwen2 saved where `download --only
prompt` puts the real one (tests/tiny_llm.py). Random weights write junk, which must be refused
with the fallback answering; a model set up to answer well, too long, chattily or too briefly
shows each answer handled as the panel needs: offered, cut back, or refused."""

import io
import json
import queue
import subprocess
import sys
import threading

import pytest
import tiny_llm
import torch
from cli import ROOT, backend
from transformers import AutoTokenizer

from backend.events import EventStream
from backend.progress import Report
from backend.prompt_help import WORD_RANGE, expand, fallback, model, rules

PRESETS = ROOT / "presets"
LESSONS = {
    "a dog": " with a short black coat, upright pointed ears, a curled bushy tail, a blue nylon collar, and bright "
    "brown eyes",
    # 30 words: too long, to be cut back at a phrase end.
    "a cat": " with sleek gray fur, a white chest, long white whiskers, green eyes, a thin tail, soft pink paws, a red "
    "collar with a small bell, and tiny pointed ears",
    "a horse": ", sure, here is a description of a horse with a brown coat and a black mane, I hope this helps you",
    "a fox": " with red fur",
}


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory):
    weights = tmp_path_factory.mktemp("random")
    tiny_llm.build(weights)
    return weights


@pytest.fixture(scope="module")
def taught_weights(tmp_path_factory):
    weights = tmp_path_factory.mktemp("taught")
    folder = tiny_llm.build(weights, seed=1)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    lessons = [
        (model.prompt_text(tokenizer, rules.subject(text, "entity"), PRESETS), answer)
        for text, answer in LESSONS.items()
    ]
    tiny_llm.teach(folder, lessons)
    return weights


def quiet_report():
    return Report(EventStream(io.StringIO()))


@pytest.fixture(scope="module")
def taught(taught_weights):
    expander = expand.Expander(taught_weights, device="cpu")
    yield expander
    expander.close()


def test_the_downloaded_layout_is_found_and_loaded_with_its_chat_template(random_weights):
    folder = model.find(random_weights)
    assert folder == random_weights / "Qwen2.5-1.5B-Instruct"
    assert model.describe(random_weights) == {
        "ok": True,
        "path": str(folder),
        "license": "apache-2.0",
        "repo": "Qwen/Qwen2.5-1.5B-Instruct",
    }
    loaded = model.PromptModel(folder, torch.device("cpu"), torch.float32, PRESETS)
    subj = rules.subject("dog", "entity")
    text = loaded.prompt_text(subj)
    # The model's own template (ChatML, as Qwen's), the instructions, three examples from the
    # presets, then the user's words, which also open the answer.
    assert text.startswith("<|im_start|>system\n" + model.SYSTEM["entity"] + "<|im_end|>\n")
    horse = json.loads((PRESETS / "entities.json").read_text())["entities"][7]["prompt"]
    assert f"<|im_start|>user\na horse<|im_end|>\n<|im_start|>assistant\n{horse}<|im_end|>" in text
    assert text.endswith("<|im_start|>user\na dog<|im_end|>\n<|im_start|>assistant\na dog")
    # Only caption characters can be generated, and the ends of a turn (generation_config's, as Qwen's).
    tokenizer = loaded.tokenizer
    assert not loaded.allowed[tokenizer.convert_tokens_to_ids("<|im_start|>")]
    for token in ("<|im_end|>", "<|endoftext|>"):
        assert loaded.allowed[tokenizer.convert_tokens_to_ids(token)]
    for i in torch.nonzero(loaded.allowed).flatten().tolist():
        piece = tokenizer.decode([i])
        assert i in loaded.eos_ids or set(piece) <= model.CAPTION_CHARS, repr(piece)
    first = loaded.candidates(subj, seed=0)
    assert len(first) == model.CANDIDATES and all(c.text.startswith("a dog") for c in first)
    assert all(c.text.isascii() and "\n" not in c.text for c in first)
    assert [c.text for c in loaded.candidates(subj, seed=1)] != [c.text for c in first]
    loaded.close()


def test_random_weights_write_junk_that_is_refused_and_the_fallback_answers(random_weights):
    loaded = model.PromptModel(model.find(random_weights), torch.device("cpu"), torch.float32, PRESETS)
    subj = rules.subject("a dog", "entity")
    for candidate in loaded.candidates(subj, seed=0):
        assert candidate.unsure, candidate  # the model's own probabilities say noise
        # ... and the text checks alone refuse it too.
        assert rules.problem(rules.repair(candidate.text, subj, candidate.finished), subj) is not None
    loaded.close()
    run = backend("expand", "a dog", "--weights", random_weights, "--device", "cpu", timeout=300)
    assert run.code == 0 and run.stray_lines == 0, run.stderr
    result = run.last("result")
    assert result["source"] == "fallback" and "license" not in result
    assert result["refused"] and all("noise" in why for why in result["refused"])
    assert result["text"] == fallback.expand("a dog", "entity").text
    low, high = WORD_RANGE
    assert low <= result["words"] <= high and "dog" in rules.word_list(result["text"])
    stages = [e["stage"] for e in run.events if e["event"] == "stage"]
    assert stages == ["loading", "expanding"]


def test_a_good_answer_is_offered_with_the_models_name_and_licence(taught):
    result = taught.expand("a dog", "entity", 0, quiet_report())
    assert result.source == "Qwen2.5-1.5B-Instruct" and result.license == "apache-2.0"
    assert result.text == "a dog" + LESSONS["a dog"] and result.refused == []
    assert taught.expand("a dog", "entity", 0, quiet_report()) == result  # the same seed, the same answer


def test_an_over_long_answer_is_cut_back_at_a_phrase_end(taught):
    result = taught.expand("a cat", "entity", 0, quiet_report())
    whole = "a cat" + LESSONS["a cat"]
    assert len(whole.split()) > WORD_RANGE[1]
    assert result.source == "Qwen2.5-1.5B-Instruct"
    assert WORD_RANGE[0] <= result.words <= WORD_RANGE[1]
    assert whole.startswith(result.text) and whole[len(result.text)] in ", "


def test_a_chatty_or_too_short_answer_is_refused_and_the_fallback_answers(taught):
    chatty = taught.expand("a horse", "entity", 0, quiet_report())
    assert chatty.source == "fallback" and any("chatty" in why for why in chatty.refused)
    assert chatty.text == fallback.expand("a horse", "entity").text
    short = taught.expand("a fox", "entity", 3, quiet_report())
    assert short.source == "fallback" and "5 words (needs 15-24)" in short.refused
    assert short.text == fallback.expand("a fox", "entity", 3).text  # Retry 3, from the fallback too


def test_the_worker_keeps_the_model_loaded_between_expansions(taught_weights):
    proc = subprocess.Popen(
        [sys.executable, "-m", "backend", "serve", "--weights", str(taught_weights), "--device", "cpu"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    requests = [
        {"op": "expand", "id": "e1", "text": "a dog", "kind": "entity"},
        {"op": "expand", "id": "e2", "text": "a dog", "kind": "entity", "seed": 1},
        {"op": "expand", "id": "e3", "text": "desert", "kind": "location"},
        {"op": "expand", "id": "e4", "text": "a dog", "kind": "vehicle"},
        {"op": "expand", "id": "e5", "text": ""},
        {"op": "ping"},
    ]
    for r in requests:
        proc.stdin.write(json.dumps(r) + "\n")
    proc.stdin.flush()
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(json.loads(line)) for line in proc.stdout], daemon=True).start()
    events: list[dict] = []

    def answered() -> bool:
        done = {e.get("job") for e in events if e["event"] in ("result", "error")}
        # e4 is refused as it is read (never queued); the others each end with `ready`.
        return {"e1", "e2", "e3", "e4", "e5"} <= done and [e["event"] for e in events].count("ready") == 6

    while not answered():
        events.append(lines.get(timeout=300))
    # Only now end the input: on end of input the worker exits at once (its client is gone), without
    # running what is still queued.
    proc.stdin.close()
    proc.wait(30)
    while not lines.empty():
        events.append(lines.get())
    final = {e["job"]: e for e in events if e["event"] in ("result", "error") and "job" in e}
    assert final["e1"]["event"] == "result" and final["e1"]["source"] == "Qwen2.5-1.5B-Instruct"
    assert final["e2"]["event"] == "result" and final["e2"]["seed"] == 1
    assert final["e3"]["event"] == "result" and final["e3"]["text"].startswith("desert")
    assert final["e4"]["code"] == "bad_request" and "kind" in final["e4"]["message"]
    assert final["e5"]["code"] == "bad_prompt"
    loads = [e for e in events if e["event"] == "stage" and e["stage"] == "loading"]
    assert len(loads) == 1 and loads[0]["job"] == "e1"  # loaded once, kept warm
    assert events[-1]["event"] == "bye" and proc.returncode == 0


def test_doctor_and_download_name_the_prompt_model_and_its_licence(taught_weights, tmp_path):
    found = json.loads(backend("doctor", "--json", "--weights", taught_weights).stdout)["prompt_model"]
    assert found["ok"] and found["license"] == "apache-2.0" and found["path"].endswith("Qwen2.5-1.5B-Instruct")
    text = backend("doctor", "--weights", tmp_path / "none").stdout
    assert "prompts     offline fallback only" in text and "Apache-2.0" in text
    run = backend("download", "--only", "prompt", "--offline", "--dest", tmp_path / "w")
    assert run.code == 2
    assert any("Qwen/Qwen2.5-1.5B-Instruct is licensed Apache-2.0" in e.get("message", "") for e in run.events)
    error = run.last("error")
    assert error["code"] == "download_failed" and "Qwen/Qwen2.5-1.5B-Instruct" in error["message"]
    incomplete = tmp_path / "w" / "Qwen2.5-1.5B-Instruct"
    incomplete.mkdir(parents=True, exist_ok=True)
    (incomplete / "config.json").write_text("{}")
    missing = expand.Expander(tmp_path / "w", device="cpu").expand("a dog", "entity", 0, quiet_report())
    assert missing.source == "fallback" and "incomplete" in missing.model_problem
