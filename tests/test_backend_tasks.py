"""The add-on's own requests to the backend without Blender (addon/backend_tasks.py): prompt help
on the real worker beside the job queue's takes, the one-shot `expand` and `contact-sheet`
commands, and a request the backend forgot."""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

import pytest
from test_supervisor import ROOT, preview_job, sv

jq = importlib.import_module(sv.__name__.rsplit(".", 1)[0] + ".job_queue")
bt = importlib.import_module(sv.__name__.rsplit(".", 1)[0] + ".backend_tasks")

from backend import video  # noqa: E402
from backend.prompt_help import WORD_RANGE  # noqa: E402


@pytest.fixture
def worker(tmp_path):
    # An empty weights folder: no prompt model, so the backend's offline fallback answers.
    sup = sv.Supervisor(sys.executable, ROOT, engine_args=["--weights", str(tmp_path / "weights")])
    yield sup
    sup.stop(timeout=1.0)


def test_an_expansion_on_the_worker_keeps_its_events_from_the_job_queue_and_the_take_keeps_its_own(worker, tmp_path):
    job = preview_job(tmp_path)
    queue = jq.JobQueue(worker)
    queue.add([jq.QueuedJob(sv.Request(job=str(job), out=str(tmp_path / "takes"), engine="preview"))])
    queue.pump()  # the take goes first; the expansion waits behind it in the worker
    task = bt.Task(worker, bt.ExpandRequest("a dog", "entity", 0))
    seen = []
    deadline = time.monotonic() + 120
    while (queue.busy or not task.done) and time.monotonic() < deadline:
        seen.extend(event for _, event in queue.poll())  # the runner's timer
        task.poll()  # prompt help's timer
        time.sleep(0.02)
    assert not queue.busy and task.done
    assert queue.jobs[0].state == jq.DONE and Path(queue.jobs[0].end["video"]).is_file()
    assert all(e.get("job") != task.id for e in seen), "the job queue never saw the expansion's events"
    result = task.result
    assert result is not None, task.end
    assert result["source"] == "fallback" and result["model_problem"]
    assert result["text"].startswith("a dog ") and WORD_RANGE[0] <= result["words"] <= WORD_RANGE[1]
    assert worker.running, "the worker stays up for the next take"


def test_a_oneshot_expansion_reads_a_description_that_looks_like_a_flag(tmp_path):
    sup = bt.oneshot(sys.executable, ROOT)
    task = bt.Task(sup, bt.ExpandRequest("--help", "entity", 2, weights=str(tmp_path / "weights")), own=True)
    end = task.wait(timeout=60)
    assert end["event"] == "result", end
    assert end["text"].startswith("a --help ") and end["seed"] == 2
    assert not sup.running, "the one-shot process is gone once it answered"


def test_a_description_that_cannot_be_expanded_is_one_sentence(worker):
    task = bt.Task(worker, bt.ExpandRequest("\u00e9t\u00e9 \u65e5\u672c", "location", 0))
    task.wait(timeout=60)
    assert task.result is None and task.end["code"] == "bad_prompt"
    assert task.failure.count(".") == 1 and "English" in task.failure


def test_a_request_the_backend_forgot_ends_with_a_sentence_instead_of_waiting_forever(worker):
    task = bt.Task(worker, bt.ExpandRequest("a cat", "entity", 0))
    worker.stop()  # what the runner does when the preferences change the backend's settings
    assert task.poll() and task.done
    assert task.end["code"] == "backend_lost" and "try again" in task.failure


def test_a_contact_sheet_is_a_oneshot_task_with_progress_and_the_sheet_decodes(tmp_path):
    job = preview_job(tmp_path)
    sup = sv.Supervisor(sys.executable, ROOT, mode=sv.ONESHOT)
    videos = []
    for _ in range(2):
        sup.submit(sv.Request(job=str(job), out=str(tmp_path / "takes"), engine="preview"))
        videos.append(sv.terminal_event(sup.wait(timeout=120))["video"])
    out = tmp_path / "takes" / "Shot_take_001-002_sheet.mp4"
    task = bt.Task(bt.oneshot(sys.executable, ROOT), bt.ContactSheetRequest(videos, str(out), ["one", "two"]), own=True)
    stages = set()
    deadline = time.monotonic() + 120
    while not task.done and time.monotonic() < deadline:
        task.poll()
        stages.add(task.stage)
        time.sleep(0.02)
    assert task.result is not None, task.end
    assert {"reading", "writing"} <= stages
    frames, _ = video.read_mp4(out)
    assert frames.shape == (49, 480, 1444, 3)
    assert [c["label"] for c in task.result["cells"]] == ["one", "two"]


def test_a_contact_sheet_that_is_cancelled_leaves_no_file(tmp_path):
    job = preview_job(tmp_path)
    sup = sv.Supervisor(sys.executable, ROOT, mode=sv.ONESHOT)
    videos = []
    for _ in range(2):
        sup.submit(sv.Request(job=str(job), out=str(tmp_path / "takes"), engine="preview"))
        videos.append(sv.terminal_event(sup.wait(timeout=120))["video"])
    out = tmp_path / "takes" / "sheet.mp4"
    task = bt.Task(bt.oneshot(sys.executable, ROOT), bt.ContactSheetRequest(videos * 4, str(out)), own=True)
    deadline = time.monotonic() + 60
    while task.stage != "reading" and not task.done and time.monotonic() < deadline:
        task.poll()
        time.sleep(0.01)
    task.cancel()
    end = task.wait(timeout=60)
    assert end["event"] == "cancelled", end
    assert not out.exists() and not [p for p in out.parent.iterdir() if p.name.startswith(".trajmaster-")]
