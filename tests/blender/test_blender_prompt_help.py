"""Expand beside the prompts, in real Blender: the offline fallback inside Blender (no backend, or
the backend busy with a take), the backend's answer through the real worker (no prompt model
installed, so the backend's fallback answers), Retry, Accept as one undo step, Cancel changing
nothing, and descriptions that cannot be expanded refused in one sentence."""

from __future__ import annotations

import importlib
import os
import subprocess

import bpy
import pytest
import scenes
from conftest import MODULE, ROOT

from backend.prompt_help import WORD_RANGE, fallback

LOW, HIGH = WORD_RANGE
# The backend's full environment (torch, transformers), which `python3 dev.py setup` makes: the
# prompt model runs there, not in the bpy environments.
FULL_PYTHON = ROOT / ".venv" / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
TAUGHT = (
    " with a short black coat, upright pointed ears, a curled bushy tail, a blue nylon collar, and bright brown eyes"
)


def module(name):
    return importlib.import_module(f"{MODULE}.addon.{name}")


@pytest.fixture
def prompt_help():
    ph = module("prompt_help")
    yield ph
    ph.end()


@pytest.fixture
def no_backend(monkeypatch):
    """No backend on this computer: no TRAJMASTER_PYTHON and no managed environment set up."""
    monkeypatch.delenv("TRAJMASTER_PYTHON", raising=False)
    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.python_source = "MANAGED"


@pytest.fixture
def no_prompt_model(monkeypatch, tmp_path):
    """A weights folder without the prompt model (the worker reads it from --weights)."""
    (tmp_path / "weights").mkdir()
    monkeypatch.setenv("TRAJMASTER_WEIGHTS", str(tmp_path / "weights"))


@pytest.fixture(scope="module")
def taught_weights(tmp_path_factory):
    """A weights folder with a tiny prompt model (tests/tiny_llm.py) that answers "a dog" well,
    built by the full environment's Python."""
    if not FULL_PYTHON.is_file():
        pytest.skip(f"needs the backend's full environment {FULL_PYTHON} (python3 dev.py setup makes it)")
    weights = tmp_path_factory.mktemp("taught")
    script = f"""
import sys
from pathlib import Path
sys.path[:0] = [{str(ROOT / "tests")!r}, {str(ROOT)!r}]
import tiny_llm
from transformers import AutoTokenizer
from backend.prompt_help import model, rules
folder = tiny_llm.build(Path({str(weights)!r}), seed=1)
tokenizer = AutoTokenizer.from_pretrained(folder)
prompt = model.prompt_text(tokenizer, rules.subject("a dog", "entity"), Path({str(ROOT / "presets")!r}))
tiny_llm.teach(folder, [(prompt, {TAUGHT!r})])
"""
    subprocess.run([str(FULL_PYTHON), "-c", script], check=True, timeout=900, capture_output=True)
    return weights


def shot(prompt="a dog", location="desert"):
    scene = bpy.context.scene
    cam = scenes.camera(scene)
    walker = scenes.keyframed(scene, "Walker", 1, 49, y=2.0)
    settings = scenes.shot(scene, cam, [walker], 1, 49)
    settings.entities[0].prompt = prompt
    settings.location_prompt = location
    return settings


def field():
    return bpy.context.window_manager.trajmaster_expansion.text


def test_without_a_backend_the_fallback_in_blender_proposes_and_accept_is_one_undo_step(blend, prompt_help, no_backend):
    settings = shot("a dog")
    bpy.ops.ed.undo_push(message="Shot")

    assert bpy.ops.trajmaster.expand_prompt(entity=0) == {"FINISHED"}

    proposal = prompt_help.session.shown
    assert proposal.source == "fallback" and proposal.why == prompt_help.NO_BACKEND
    assert "offline fallback" in proposal.credit() and "no backend" in proposal.credit()
    assert field() == proposal.text == fallback.expand("a dog", "entity", 0).text
    assert field().startswith("a dog ") and LOW <= len(field().split()) <= HIGH
    assert settings.entities[0].prompt == "a dog", "nothing changes until Accept"

    bpy.context.window_manager.trajmaster_expansion.text = field() + " and a red collar"  # edited in the dialog
    edited = field()
    assert bpy.ops.trajmaster.expand_review() == {"FINISHED"}  # Accept
    bpy.ops.ed.undo_push(message="Expanded Prompt")  # what the window manager pushes after an UNDO operator
    assert settings.entities[0].prompt == edited
    assert prompt_help.session is None

    assert bpy.ops.ed.undo() == {"FINISHED"}
    assert bpy.context.scene.trajmaster.entities[0].prompt == "a dog", "undo brings the short description back"
    assert bpy.ops.ed.redo() == {"FINISHED"}
    assert bpy.context.scene.trajmaster.entities[0].prompt == edited


def test_retry_shows_another_candidate_and_cancel_changes_nothing(blend, prompt_help, no_backend):
    settings = shot(location="a desert")
    assert bpy.ops.trajmaster.expand_prompt(entity=-1) == {"FINISHED"}
    first = field()
    assert first.startswith("desert "), "a location loses its article: the prompt reads 'in the desert'"

    assert bpy.ops.trajmaster.expand_retry() == {"FINISHED"}
    second = field()
    assert second != first and second.startswith("desert ") and LOW <= len(second.split()) <= HIGH
    assert prompt_help.session.seed == 1 and second == fallback.expand("a desert", "location", 1).text

    prompt_help.end()  # the dialog's Cancel (or Escape)
    assert settings.location_prompt == "a desert"
    with pytest.raises(RuntimeError):
        bpy.ops.trajmaster.expand_review()  # nothing left to accept


def test_the_worker_answers_with_the_backends_fallback_when_no_prompt_model_is_installed(
    blend, runner, prompt_help, no_prompt_model
):
    settings = shot(location="snowy mountain pass")
    runner.use_worker = True

    assert bpy.ops.trajmaster.expand_prompt(entity=-1) == {"FINISHED"}

    proposal = prompt_help.session.shown
    assert runner.worker_pid() is not None, "the worker answered (and stays up for the next take)"
    assert proposal.source == "fallback"
    assert proposal.why.startswith("no prompt model in .../weights/"), "the backend says why (its folder, shortened)"
    assert proposal.text == fallback.expand("snowy mountain pass", "location", 0).text
    assert prompt_help.session.local == proposal.why, "no model there: Retry needs no round trip"
    pid = runner.worker_pid()

    assert bpy.ops.trajmaster.expand_retry() == {"FINISHED"}
    assert field() == fallback.expand("snowy mountain pass", "location", 1).text
    assert bpy.ops.trajmaster.expand_review() == {"FINISHED"}
    assert settings.location_prompt == field()
    assert runner.worker_pid() == pid


def test_with_the_prompt_model_installed_the_worker_writes_the_proposal_and_retry_asks_it_again(
    blend, runner, prompt_help, taught_weights, monkeypatch
):
    settings = shot("a dog")
    monkeypatch.setenv("TRAJMASTER_PYTHON", str(FULL_PYTHON))
    monkeypatch.setenv("TRAJMASTER_WEIGHTS", str(taught_weights))
    runner.use_worker = True

    assert bpy.ops.trajmaster.expand_prompt(entity=0) == {"FINISHED"}

    proposal = prompt_help.session.shown
    assert (proposal.source, proposal.license.lower()) == ("Qwen2.5-1.5B-Instruct", "apache-2.0")  # its model card's
    assert proposal.credit() == f"Written by the prompt model Qwen2.5-1.5B-Instruct ({proposal.license})"
    assert field() == "a dog" + TAUGHT and prompt_help.session.local == ""
    pid = runner.worker_pid()
    assert bpy.ops.trajmaster.expand_retry() == {"FINISHED"}
    assert prompt_help.session.seed == 1 and runner.worker_pid() == pid, "Retry asked the same worker again"
    assert prompt_help.session.shown.source in ("Qwen2.5-1.5B-Instruct", "fallback")
    assert field().startswith("a dog ") and LOW <= len(field().split()) <= HIGH
    assert bpy.ops.trajmaster.expand_review() == {"FINISHED"}
    assert settings.entities[0].prompt == field()
    runner.shutdown()  # the worker of another Python: the next test starts its own


def test_while_a_take_renders_the_fallback_in_blender_answers_at_once(blend, runner, prompt_help, no_prompt_model):
    settings = shot("a knight in armour")
    runner.use_worker = True
    assert bpy.ops.trajmaster.generate() == {"FINISHED"}
    assert runner.busy()

    assert bpy.ops.trajmaster.expand_prompt(entity=0) == {"FINISHED"}

    assert runner.busy(), "the expansion did not wait for the take"
    proposal = prompt_help.session.shown
    assert proposal.source == "fallback" and proposal.why == prompt_help.BUSY
    assert field().startswith("a knight in armour")
    runner.wait(timeout=120)
    assert settings.entities[0].prompt == "a knight in armour"


@pytest.mark.parametrize(
    ("text", "sentence"),
    [
        ("", "Type a few words to expand first"),
        ("   ", "Type a few words to expand first"),
        ("\u00e9t\u00e9 \u65e5\u672c", "cannot be written that way"),
        ("a " + " ".join(["word"] * 29), "already has 30 words"),
    ],
)
def test_a_description_that_cannot_be_expanded_is_refused_in_one_sentence(blend, runner, prompt_help, text, sentence):
    settings = shot(text)
    with pytest.raises(RuntimeError, match=sentence):
        bpy.ops.trajmaster.expand_prompt(entity=0)
    error = runner.status.last_error
    assert sentence in error and error.count(". ") == 0 and error.endswith(".")
    assert prompt_help.session is None and settings.entities[0].prompt == text


def test_opening_another_file_forgets_the_proposal(blend, prompt_help, no_backend):
    shot()
    assert bpy.ops.trajmaster.expand_prompt(entity=0) == {"FINISHED"}
    bpy.ops.wm.read_homefile(use_empty=True)
    assert prompt_help.session is None
