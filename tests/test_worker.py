"""`python -m backend serve`: the worker the add-on keeps alive between generations."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

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


# --- a worker never goes deaf ----------------------------------------------------------------


def raw_worker(lines: bytes, timeout: float = 10, **popen) -> tuple[int, list[dict], str]:
    """Feed raw bytes to a fresh worker and close its input; it must exit by itself in time."""
    proc = subprocess.run(
        [sys.executable, "-m", "backend", "serve"],
        cwd=ROOT,
        input=lines,
        capture_output=True,
        timeout=timeout,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},  # strict UTF-8 on stdin, as in the add-on
        **popen,
    )
    events = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    return proc.returncode, events, proc.stderr.decode(errors="replace")


@pytest.mark.parametrize(
    "line",
    [
        b"[" * 100000,  # nested past the recursion limit
        b"\xff\xfe not utf-8",
        b'{"op": "cancel", "id": [1]}',  # unhashable ids
        b'{"op": "cancel", "id": {"a": 1}}',
        b'{"op": "ping", "n": ' + b"9" * 5000 + b"}",  # past Python's int digit limit
        b'{"op": "generate", "id": "x", "job": "a\\u0000b", "out": "o"}',  # NUL in a path
        b'{"op": "generate", "id": "x", "job": "j", "out": "o", "name": 7}',
        b'{"op": "generate", "id": "x", "job": "j", "out": "o", "name": ["a"]}',
        b'{"op": "generate", "id": "x", "job": "j", "out": "o", "engine": ["preview"]}',
        b'{"op": "generate", "id": "x", "job": "j", "out": "o", "png": "yes"}',
        b'{"op": ["generate"]}',
        b"{" + b" " * (2 << 20) + b"}",  # longer than any request
    ],
    ids=[
        "deep",
        "not-utf8",
        "list-id",
        "dict-id",
        "huge-int",
        "nul",
        "name-number",
        "name-list",
        "engine-list",
        "png-text",
        "op-list",
        "too-long",
    ],
)
def test_a_bad_line_gets_one_bad_request_and_the_next_is_served(line):
    code, events, stderr = raw_worker(line + b'\n{"op": "ping"}\n')
    assert code == 0, stderr
    assert "Traceback" not in stderr
    kinds = [e["event"] for e in events]
    assert kinds == ["hello", "ready", "error", "ready", "bye"], events
    assert events[2]["code"] == "bad_request" and len(events[2]["message"]) < 300


def test_end_of_input_while_idle_exits_at_once():
    t0 = time.monotonic()
    code, events, _ = raw_worker(b"")
    assert code == 0 and [e["event"] for e in events] == ["hello", "ready", "bye"]
    assert time.monotonic() - t0 < 5


def test_a_reader_that_cannot_read_stops_the_worker_cleanly(tmp_path):
    # stdin is open for writing only: every read fails. The worker must say so and exit, not
    # wait forever.
    fd = os.open(tmp_path / "stdin", os.O_WRONLY | os.O_CREAT)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "backend", "serve"], cwd=ROOT, stdin=fd, capture_output=True, timeout=10
        )
    finally:
        os.close(fd)
    events = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert proc.returncode == 1
    assert [e["event"] for e in events][-2:] == ["error", "bye"]
    assert "can no longer read requests" in events[-2]["message"]


def test_a_wrongly_typed_engine_after_a_job_is_a_bad_request(worker, tmp_path):
    job = write_job(make_job(), tmp_path / "job.json")
    worker.send(op="generate", id="a", job=str(job), out=str(tmp_path / "takes"), engine="preview")
    assert worker.until(ends_job("a"))["event"] == "result"
    worker.send(op="generate", id="b", job=str(job), out=str(tmp_path / "takes"), engine=["preview"])
    error = worker.until(ends_job("b"))
    assert error["event"] == "error" and error["code"] == "bad_request" and "'engine'" in error["message"]
    worker.send(op="generate", id="c", job=str(job), out=str(tmp_path / "takes"))
    assert worker.until(ends_job("c"))["event"] == "result"


def test_a_cancelled_then_rejected_id_does_not_cancel_a_later_job(worker, tmp_path):
    job = write_job(make_job(), tmp_path / "job.json")
    out = str(tmp_path / "takes")
    worker.send(op="generate", id="first", job=str(job), out=out)
    worker.until(lambda e: e["event"] == "progress")
    worker.send(op="generate", id="dup", job=str(job), out=out, colour="red")  # refused
    worker.send(op="cancel", id="dup")
    assert worker.until(ends_job("first"))["event"] == "result"
    worker.send(op="generate", id="dup", job=str(job), out=out)
    assert worker.until(lambda e: e.get("job") == "dup" and e["event"] in ("result", "cancelled"))["event"] == "result"


def test_end_of_input_during_a_job_exits_within_5_seconds(worker, tmp_path):
    job = write_job(make_job(), tmp_path / "job.json")
    worker.send(op="generate", id="x", job=str(job), out=str(tmp_path / "takes"), png=True)
    worker.until(lambda e: e["event"] == "stage" and e.get("stage") == "writing")
    t0 = time.monotonic()
    worker.proc.stdin.close()
    worker.until(lambda e: e["event"] == "bye", timeout=10)
    worker.proc.wait(timeout=10)
    assert time.monotonic() - t0 < 5


ORPHANING_PARENT = """
import subprocess, sys, time
# The worker's stdin is a pipe whose write end this test also holds: no end of input will come.
subprocess.Popen([sys.executable, "-m", "backend", "serve"], stdin=int(sys.argv[1]), pass_fds=[int(sys.argv[1])])
time.sleep(600)
"""


def test_a_worker_whose_parent_died_exits(tmp_path):
    read_end, write_end = os.pipe()
    parent = subprocess.Popen(
        [sys.executable, "-c", ORPHANING_PARENT, str(read_end)],
        cwd=ROOT,
        pass_fds=[read_end],
        stdout=subprocess.PIPE,
    )
    os.close(read_end)
    try:
        hello = json.loads(parent.stdout.readline())
        assert hello["event"] == "hello"
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 10
        while pid_alive(hello["pid"]):
            assert time.monotonic() < deadline, "the orphaned worker is still running"
            time.sleep(0.1)
    finally:
        os.close(write_end)
        parent.stdout.close()
        if pid_alive(hello["pid"]):
            os.kill(hello["pid"], signal.SIGKILL)


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
