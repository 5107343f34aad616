"""`python -m backend serve`: the worker the add-on keeps alive between generations."""

import json
import subprocess
import sys
import threading

import pytest
from cli import ROOT, write_job
from shots import make_job


class Worker:
    def __init__(self):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "backend", "serve"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.events = []

    def send(self, **request):
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()

    def until(self, predicate, timeout=120):
        def read():
            for line in self.proc.stdout:
                event = json.loads(line)
                self.events.append(event)
                if predicate(event):
                    return

        t = threading.Thread(target=read, daemon=True)
        t.start()
        t.join(timeout)
        assert not t.is_alive(), f"timed out; events so far: {[e['event'] for e in self.events]}"
        return self.events[-1]

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


@pytest.fixture
def worker():
    w = Worker()
    yield w
    w.close()
    if w.proc.poll() is None:
        w.proc.kill()


def ends_job(job_id):
    return lambda e: e.get("job") == job_id and e["event"] in ("result", "error", "cancelled")


def test_two_jobs_one_process(worker, tmp_path):
    job = write_job(make_job(), tmp_path / "job.json")
    worker.until(lambda e: e["event"] == "ready")
    worker.send(op="generate", id="a", job=str(job), out=str(tmp_path / "takes"))
    first = worker.until(ends_job("a"))
    worker.send(op="generate", id="b", job=str(job), out=str(tmp_path / "takes"))
    second = worker.until(ends_job("b"))
    assert (first["event"], second["event"]) == ("result", "result")
    assert (first["name"], second["name"]) == ("Scene_take_001", "Scene_take_002")
    assert [e["event"] for e in worker.events].count("hello") == 1
    progress = [e for e in worker.events if e["event"] == "progress"]
    assert {e["job"] for e in progress} == {"a", "b"}


def test_cancel_stops_the_running_job_and_the_worker_stays_up(worker, tmp_path):
    job = write_job(make_job(), tmp_path / "job.json")
    worker.send(op="generate", id="long", job=str(job), out=str(tmp_path / "takes"))
    worker.until(lambda e: e["event"] == "progress" and e["job"] == "long")
    worker.send(op="cancel", id="long")
    assert worker.until(ends_job("long"))["event"] == "cancelled"
    assert not (tmp_path / "takes").exists() or list((tmp_path / "takes").iterdir()) == []
    worker.send(op="generate", id="next", job=str(job), out=str(tmp_path / "takes"))
    assert worker.until(ends_job("next"))["event"] == "result"


def test_cancel_of_a_queued_job_is_kept_until_it_comes_up(worker, tmp_path):
    # Blender may cancel a job that the worker has not started yet; it must not run later.
    job = write_job(make_job(), tmp_path / "job.json")
    worker.send(op="generate", id="first", job=str(job), out=str(tmp_path / "takes"))
    worker.send(op="generate", id="queued", job=str(job), out=str(tmp_path / "takes"))
    worker.send(op="cancel", id="queued")
    assert worker.until(ends_job("first"))["event"] == "result"
    assert worker.until(ends_job("queued"))["event"] == "cancelled"
    assert not [e for e in worker.events if e.get("job") == "queued" and e["event"] == "progress"]
    assert sorted(p.name for p in (tmp_path / "takes").iterdir() if p.suffix == ".mp4") == ["Scene_take_001.mp4"]


def test_a_bad_job_is_that_jobs_error_not_the_workers_end(worker, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    worker.send(op="generate", id="bad", job=str(bad), out=str(tmp_path))
    error = worker.until(ends_job("bad"))
    assert error["event"] == "error" and error["code"] == "bad_job"
    worker.send(op="frobnicate")
    assert worker.until(lambda e: e["event"] == "error")["code"] == "bad_request"
    worker.proc.stdin.write("this is not json\n")
    worker.proc.stdin.flush()
    assert worker.until(lambda e: e["event"] == "error")["code"] == "bad_request"
    job = write_job(make_job(), tmp_path / "job.json")
    worker.send(op="generate", id="good", job=str(job), out=str(tmp_path))
    assert worker.until(ends_job("good"))["event"] == "result"


def test_end_of_input_cancels_and_exits(worker, tmp_path):
    job = write_job(make_job(), tmp_path / "job.json")
    worker.send(op="generate", id="x", job=str(job), out=str(tmp_path / "takes"))
    worker.until(lambda e: e["event"] == "progress")
    worker.proc.stdin.close()  # Blender went away
    worker.until(lambda e: e["event"] == "bye")
    assert worker.proc.wait(timeout=30) == 0
    assert any(e["event"] == "cancelled" for e in worker.events)
    assert not (tmp_path / "takes").exists() or list((tmp_path / "takes").iterdir()) == []


def test_shutdown_request(worker):
    worker.until(lambda e: e["event"] == "ready")
    worker.send(op="ping")
    assert worker.until(lambda e: e["event"] == "ready")["event"] == "ready"
    worker.send(op="shutdown")
    worker.until(lambda e: e["event"] == "bye")
    assert worker.proc.wait(timeout=30) == 0
