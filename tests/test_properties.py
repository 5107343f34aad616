"""Property-based tests (Hypothesis): valid job files mutated every way a user, a tool or an
attacker might (types, magnitudes, nesting, unicode, missing and extra fields, numbers JSON can
write but floats cannot hold) and worker request lines of every shape. Whatever comes in:

- a job is either run (exit 0, a take whose video decodes to 49 frames and whose sidecar is
  strict JSON) or refused (exit 2, one sentence, no traceback, nothing under a final name);
- every request line gets exactly one reply, or is a job's events, and the worker exits on end
  of input within 5 s.

Example counts are bounded so the whole file takes about a minute on two cores: most examples
go through one worker process or in-process; a few through the one-shot command line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from cli import ROOT, backend
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shots import make_job

from backend import job as jobfile
from backend import video

BASE = make_job([((-2.0, 0.0), (2.0, 0.0)), ((1.0, 3.0), (-1.0, 2.0))])
SETTINGS = {"deadline": None, "suppress_health_check": list(HealthCheck), "database": None}

# Numbers JSON can write that a float cannot hold, and text that is not a value at all: put in
# the document as raw tokens.
RAW_TOKENS = ["1e309", "-1e309", "1" + "0" * 400, "9" * 5000, "NaN", "Infinity", "-Infinity", "1E-400"]


class Raw:
    def __init__(self, token: str):
        self.token = token


def json_values() -> st.SearchStrategy:
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**70), max_value=2**70)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.floats(min_value=-1e4, max_value=1e4)
        | st.text(max_size=40)
        | st.sampled_from(["", "preview", "cogvideox", "rig", "exact", "trajmaster-job", "\x00", "\ud800", "É" * 70])
        | st.sampled_from(RAW_TOKENS).map(Raw)
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
        max_leaves=8,
    )


@st.composite
def mutated_jobs(draw: st.DrawFn) -> str:
    """The base job with 1-3 mutations at random places; returned as the file's text."""
    job = json.loads(json.dumps(BASE))
    for _ in range(draw(st.integers(1, 3))):
        parent, key = _walk(draw, job)
        kind = draw(st.sampled_from(["replace", "scale", "delete", "extra", "nest", "unicode"]))
        here = parent[key]
        if kind == "replace":
            parent[key] = draw(json_values())
        elif kind == "scale" and isinstance(here, (int, float)) and not isinstance(here, bool):
            factor = draw(st.sampled_from([-1, 0, 1e-6, 1e-3, 10, 1e3, 1e6, 1e100, 1e300]))
            parent[key] = here * factor if isinstance(here, float) else int(here * factor)
        elif kind == "delete" and isinstance(parent, dict):
            del parent[key]
        elif kind == "extra" and isinstance(here, dict):
            here[draw(st.text(min_size=1, max_size=10))] = draw(json_values())
        elif kind == "nest":
            for _ in range(draw(st.integers(1, 40))):
                here = [here]
            parent[key] = here
        elif kind == "unicode" and isinstance(here, str):
            parent[key] = here + draw(st.text(min_size=1, max_size=10))
        else:
            parent[key] = draw(json_values())
    return _dumps(job)


@st.composite
def plausible_jobs(draw: st.DrawFn) -> str:
    """The base job with values changed within what the schema allows (anywhere in range, any
    unicode in names, any provenance): mostly valid jobs, which must then render."""
    job = json.loads(json.dumps(BASE))
    metres = st.floats(min_value=-10000, max_value=10000)
    for _ in range(draw(st.integers(1, 4))):
        what = draw(st.sampled_from(["scene", "names", "source", "frames", "fps", "heights", "moves", "colour"]))
        if what == "scene":
            job["shot"]["scene_name"] = draw(st.text(min_size=1, max_size=63))
        elif what == "names":
            for k, name in enumerate(draw(st.lists(st.text(min_size=1, max_size=63), min_size=2, max_size=2))):
                job["entities"][k]["name"] = name
        elif what == "source":
            job["source"] = draw(st.dictionaries(st.text(max_size=8), json_values(), max_size=4))
        elif what == "frames":
            start = draw(st.integers(-1048574, 1048573))
            job["shot"]["frame_start"] = start
            job["shot"]["frame_end"] = draw(st.integers(start + 1, 1048574))
        elif what == "fps":
            job["shot"]["scene_fps"] = draw(st.floats(min_value=1e-9, max_value=1000, exclude_min=True))
        elif what == "heights":
            for row in job["camera"][draw(st.sampled_from(["context", "video_context"]))]:
                row[3] = draw(metres)
        elif what == "moves":
            ent = job["entities"][draw(st.integers(0, 1))]
            rows = ent[draw(st.sampled_from(["poses", "video_poses"]))]
            for row in draw(st.lists(st.sampled_from(rows), min_size=1, max_size=len(rows))):
                row[9:12] = [draw(metres), draw(metres), draw(metres | st.sampled_from([0.0, -0.0, 1e-300]))]
        else:
            job["entities"][0]["color"] = draw(st.lists(st.floats(0, 1), min_size=3, max_size=3))
    return _dumps(job)


def any_jobs() -> st.SearchStrategy:
    return st.one_of(mutated_jobs(), plausible_jobs())


def _walk(draw: st.DrawFn, job: dict) -> tuple[Any, Any]:
    """A random (container, key) in the document, shallow places as likely as deep ones."""
    parent: Any = job
    key: Any = draw(st.sampled_from(sorted(job)))
    while isinstance(parent[key], (dict, list)) and parent[key] and draw(st.booleans()):
        parent = parent[key]
        key = (
            draw(st.sampled_from(sorted(parent))) if isinstance(parent, dict) else draw(st.integers(0, len(parent) - 1))
        )
    return parent, key


def _dumps(job: Any) -> str:
    tokens: list[str] = []

    def plain(value: Any) -> Any:
        if isinstance(value, Raw):
            tokens.append(value.token)
            return f"@@RAW{len(tokens) - 1}@@"
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    text = json.dumps(plain(job), indent=1)
    for i, token in enumerate(tokens):
        text = text.replace(f'"@@RAW{i}@@"', token)
    return text


def _strict_json(path: Path) -> dict:
    def refuse(token: str) -> None:
        raise AssertionError(f"{path.name} holds {token}, which is not JSON")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def _one_sentence(message: str) -> None:
    assert message and "\n" not in message and "Traceback" not in message, message
    assert len(message) < 1000, len(message)


# --- in-process: reading and validating never raise anything but JobError -------------------


@settings(max_examples=100, **SETTINGS)
@given(any_jobs())
def test_reading_a_job_either_refuses_it_in_words_or_gives_what_the_engines_can_use(text):
    from backend.generate import shot_findings
    from backend.preview import motion

    try:
        job = jobfile.parse(text)
        jobfile.validate(job)
    except jobfile.JobError as exc:
        _one_sentence(str(exc))
        return
    # Accepted: the pose checks and the preview's geometry work on it, for the first, a middle
    # and the last frame, and the sidecar can hold it as strict JSON.
    shot_findings(job)
    shot = motion.shot_motion(job)
    engine = _engine()
    for j in (0, 24, 48):
        frame = engine.render_frame(shot, j)
        assert frame.shape == (480, 720, 3)
    json.dumps(job, allow_nan=False)


_ENGINE: list = []


def _engine():
    if not _ENGINE:
        from backend.preview.engine import PreviewEngine

        _ENGINE.append(PreviewEngine())
    return _ENGINE[0]


# --- one worker, many jobs -------------------------------------------------------------------


class Worker:
    """A real `python -m backend serve`; events are read by a thread into a list."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "backend", "serve"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        )
        self.events: list[dict] = []
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            event = json.loads(line)
            with self.cond:
                self.events.append(event)
                self.cond.notify_all()

    def send(self, line: bytes) -> None:
        self.proc.stdin.write(line + b"\n")
        self.proc.stdin.flush()

    def wait_for(self, predicate, start: int, timeout: float = 120) -> int:
        """Index of the first event from `start` on that satisfies `predicate`."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for i in range(start, len(self.events)):
                    if predicate(self.events[i]):
                        return i
                left = deadline - time.monotonic()
                assert left > 0 and self.proc.poll() is None, f"no answer; events: {self.events[start:]}"
                self.cond.wait(left)

    def close(self) -> float:
        t0 = time.monotonic()
        self.proc.stdin.close()
        self.proc.wait(timeout=5)
        return time.monotonic() - t0


@pytest.fixture(scope="module")
def worker():
    w = Worker()
    w.wait_for(lambda e: e["event"] == "ready", 0)
    yield w
    if w.proc.poll() is None:
        assert w.close() < 5
    assert w.proc.returncode == 0


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("properties")


_COUNTER = iter(range(10**9))


@settings(max_examples=10, **SETTINGS)
@given(text=any_jobs())
def test_the_worker_runs_or_refuses_every_mutated_job(worker, scratch, text):
    n = next(_COUNTER)
    job, out = scratch / f"job{n}.json", scratch / f"out{n}"
    job.write_text(text, encoding="utf-8", errors="surrogatepass")
    start = len(worker.events)
    # The preview engine whatever the job says (the model's weights are not here).
    request = {"op": "generate", "id": f"j{n}", "job": str(job), "out": str(out), "engine": "preview"}
    worker.send(json.dumps(request).encode())
    end = worker.wait_for(lambda e: e.get("job") == f"j{n}" and e["event"] in ("result", "error", "cancelled"), start)
    final = worker.events[end]
    if final["event"] == "result":
        _assert_take(Path(final["video"]), Path(final["sidecar"]))
    else:
        assert final["event"] == "error" and final["code"] == "bad_job" and final["exit_code"] == 2, final
        _one_sentence(final["message"])
        assert not out.exists()


def _assert_take(video_path: Path, sidecar: Path) -> None:
    assert video.count_frames(video_path) == 49
    side = _strict_json(sidecar)
    assert side["frames"] == 49 and side["video"] == video_path.name


@settings(max_examples=3, **SETTINGS)
@given(text=any_jobs())
def test_the_command_line_runs_or_refuses_every_mutated_job(scratch, text):
    n = next(_COUNTER)
    job, out = scratch / f"cli{n}.json", scratch / f"cli-out{n}"
    job.write_text(text, encoding="utf-8", errors="surrogatepass")
    run = backend("generate", job, "--out", out, "--engine", "preview", timeout=120)
    assert run.stray_lines == 0 and "Traceback" not in run.stderr
    if run.code == 0:
        result = run.last("result")
        _assert_take(Path(result["video"]), Path(result["sidecar"]))
    else:
        assert run.code == 2, run.stderr
        error = run.last("error")
        assert error["code"] == "bad_job"
        _one_sentence(error["message"])
        assert run.stderr.startswith("error: ") and run.stderr.strip().count("\n") == 0, run.stderr
        assert not out.exists()


# --- request lines ---------------------------------------------------------------------------

FIELDS = ["op", "id", "job", "out", "name", "png", "engine"]


@st.composite
def request_lines(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["bytes", "json", "request", "request"]))
    if kind == "bytes":
        line = draw(st.binary(max_size=60))
    elif kind == "json":
        line = _dumps(draw(json_values())).encode("utf-8", "surrogatepass")
    else:
        request: dict[str, Any] = {"op": draw(st.sampled_from(["generate", "cancel", "ping", "frobnicate"]))}
        for field in draw(st.lists(st.sampled_from(FIELDS[1:]), max_size=6, unique=True)):
            request[field] = draw(json_values() | st.sampled_from(["x", "nowhere.json", "preview"]))
        if draw(st.booleans()):
            request["op"] = draw(json_values())
        line = _dumps(request).encode("utf-8", "surrogatepass")
    return line.replace(b"\n", b" ").replace(b"\r", b" ")


def _is_shutdown(line: bytes) -> bool:
    try:
        request = json.loads(line)
    except (ValueError, RecursionError):
        return False
    return isinstance(request, dict) and request.get("op") == "shutdown"


@settings(max_examples=150, **SETTINGS)
@given(line=request_lines())
def test_every_request_line_gets_exactly_one_answer(worker, line):
    if _is_shutdown(line) or not line.strip():
        return
    start = len(worker.events)
    worker.send(line)
    worker.send(b'{"op": "ping"}')  # its `ready` closes the answer to `line`
    end = worker.wait_for(lambda e: e["event"] == "ready", start, timeout=20)
    answer = worker.events[start:end]
    try:
        request = json.loads(line)
    except (ValueError, RecursionError):
        request = None
    op = request.get("op") if isinstance(request, dict) else None
    if op == "ping":
        assert answer == []  # its `ready` is the one that ended the wait; the ping's own follows
        worker.wait_for(lambda e: e["event"] == "ready", end + 1, timeout=20)
        return
    if op == "cancel" and not [e for e in answer if e["event"] == "error"]:
        assert answer == []  # nothing was running: a cancel has nothing to say
        return
    served = answer and answer[-1]["event"] in ("result", "error", "cancelled") and answer[-1].get("job")
    if served and answer[-1].get("code") != "bad_request":
        # A generate that was served: its events, then the `ready` after it, then the ping's.
        assert all(e.get("job") == answer[-1]["job"] for e in answer), answer
        worker.wait_for(lambda e: e["event"] == "ready", end + 1, timeout=20)
        if answer[-1]["event"] == "error":
            _one_sentence(answer[-1]["message"])
        return
    assert [e["event"] for e in answer] == ["error"], (line[:200], answer)
    assert answer[0]["code"] == "bad_request"
    _one_sentence(answer[0]["message"])


def test_the_worker_exits_on_end_of_input_within_5_seconds_after_all_that(worker):
    worker.send(b'{"op": "ping"}')
    assert worker.close() < 5
    assert worker.proc.returncode == 0
    assert worker.events[-1]["event"] == "bye"
