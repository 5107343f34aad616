"""The add-on's backend supervisor, without Blender.

The supervisor is the unit under test, so the backends here are small stand-in programs that
misbehave on purpose (crash, print garbage, ignore a cancel); the last tests drive the real
`python -m backend` with the preview engine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from nobpy import addon_module

ROOT = Path(__file__).resolve().parents[1]

# addon/supervisor.py imports `..backend` relatively, as it does inside Blender.
sv = addon_module("supervisor")

PRELUDE = """
import json, os, sys, time, signal
def emit(kind, **fields):
    sys.stdout.write(json.dumps({"event": kind, "protocol": 1, "time": time.time(), **fields}) + "\\n")
    sys.stdout.flush()
"""


def fake_backend(tmp_path: Path, body: str) -> Path:
    """A folder with a `backend` package whose __main__ runs `body` (cwd for the supervisor)."""
    root = tmp_path / "ext"
    (root / "backend").mkdir(parents=True)
    (root / "backend" / "__init__.py").write_text("")
    (root / "backend" / "__main__.py").write_text(PRELUDE + textwrap.dedent(body))
    return root


WORKER_OK = """
emit("hello", pid=os.getpid(), version="fake", engine=None)
emit("ready")
for line in sys.stdin:
    req = json.loads(line)
    if req["op"] == "shutdown":
        break
    if req["op"] == "generate":
        jid = req["id"]
        emit("stage", stage="sampling", message="Sampling", job=jid)
        for i in range(1, 4):
            emit("progress", stage="sampling", step=i, total=3, fraction=i / 3, eta_s=None, job=jid)
        emit("result", video=os.path.join(req["out"], "shot_take_001.mp4"), sidecar="x.json", frames=49, fps=8,
             name=req.get("name") or "shot_take_001", job=jid)
        emit("ready")
emit("bye")
"""


def drain(sup, seconds: float = 10.0):
    """Poll like Blender's timer does until the job ends."""
    events = []
    deadline = time.monotonic() + seconds
    while sup.busy and time.monotonic() < deadline:
        events.extend(sup.poll())
        time.sleep(0.02)
    assert not sup.busy, f"job did not end within {seconds} s; events so far: {events}"
    return events


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); it is gone for our purposes once reaped
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def stopper():
    made = []
    yield made.append
    for sup in made:
        sup.stop(timeout=1.0)


def test_python_settings_of_the_shell_that_started_blender_do_not_reach_the_backend(tmp_path, stopper):
    # Blender started from a shell set up for another Python: PYTHONHOME names a library that is
    # not this interpreter's and PYTHONPATH shadows the standard library (here `json`); either one
    # would kill the backend before it says hello.
    other = tmp_path / "other-python-lib"
    other.mkdir()
    (other / "json.py").write_text("raise ImportError('this is another Python\\'s json')\n")
    env = {**os.environ, "PYTHONPATH": str(other), "PYTHONHOME": str(tmp_path / "blender" / "python")}
    sup = sv.Supervisor(sys.executable, fake_backend(tmp_path, WORKER_OK), env=env)
    stopper(sup)
    sup.submit(sv.Request(job="a.json", out=str(tmp_path)))
    events = drain(sup)
    assert events[-1]["event"] == "result", events


def test_worker_serves_two_jobs_in_one_process_then_stops(tmp_path, stopper):
    sup = sv.Supervisor(sys.executable, fake_backend(tmp_path, WORKER_OK))
    stopper(sup)
    sup.submit(sv.Request(job="a.json", out=str(tmp_path)))
    first = drain(sup)
    pid = sup.pid
    assert [e["event"] for e in first] == ["stage", "progress", "progress", "progress", "result"]
    assert first[-1]["frames"] == 49
    sup.submit(sv.Request(job="b.json", out=str(tmp_path), name="mine"))
    second = drain(sup)
    assert second[-1]["event"] == "result" and second[-1]["name"] == "mine"
    assert sup.pid == pid, "the worker must be reused between jobs"
    sup.stop()
    assert not pid_alive(pid)
    assert sup.pid is None


def test_worker_takes_several_jobs_and_reports_each_by_id_in_order(tmp_path, stopper):
    slow = WORKER_OK.replace('emit("stage"', 'time.sleep(0.3); emit("stage"')
    sup = sv.Supervisor(sys.executable, fake_backend(tmp_path, slow))
    stopper(sup)
    ids = [sup.submit(sv.Request(job=f"{k}.json", out=str(tmp_path), name=f"take_{k}")) for k in range(3)]
    assert len(set(ids)) == 3 and sup.job_ids == ids and sup.job_id == ids[0]
    events = drain(sup)
    assert all(e["job"] in ids for e in events)
    results = [e for e in events if e["event"] == "result"]
    assert [(e["job"], e["name"]) for e in results] == [(ids[k], f"take_{k}") for k in range(3)]
    for job_id in ids:
        kinds = [e["event"] for e in events if e["job"] == job_id]
        assert kinds == ["stage", "progress", "progress", "progress", "result"], (job_id, kinds)


def test_oneshot_refuses_a_second_job_while_busy(tmp_path, stopper):
    sup = sv.Supervisor(sys.executable, fake_backend(tmp_path, ONESHOT), mode=sv.ONESHOT)
    stopper(sup)
    assert sup.capacity == 1
    sup.submit(sv.Request(job="a.json", out=str(tmp_path), name="a"))
    with pytest.raises(sv.Busy, match="already running"):
        sup.submit(sv.Request(job="b.json", out=str(tmp_path), name="b"))
    assert sv.terminal_event(sup.wait(timeout=10))["event"] == "result"


def test_poll_returns_at_once_while_the_backend_is_silent(tmp_path, stopper):
    silent = """
    emit("hello", pid=os.getpid(), version="fake", engine=None)
    emit("ready")
    time.sleep(30)
    """
    sup = sv.Supervisor(sys.executable, fake_backend(tmp_path, silent))
    stopper(sup)
    sup.submit(sv.Request(job="a.json", out=str(tmp_path)))
    time.sleep(0.5)
    t0 = time.monotonic()
    for _ in range(20):
        assert sup.poll() == []
    # A blocking read would hang here for 30 s.
    assert time.monotonic() - t0 < 5.0
    assert sup.busy


def test_crash_mid_job_becomes_an_error_with_the_last_log_line(tmp_path, stopper):
    crash = """
    emit("hello", pid=os.getpid(), version="fake", engine=None)
    emit("ready")
    req = json.loads(sys.stdin.readline())
    emit("progress", stage="sampling", step=1, total=50, fraction=0.02, eta_s=None, job=req["id"])
    sys.stderr.write("RuntimeError: CUDA driver exploded\\n")
    sys.stderr.flush()
    os._exit(1)
    """
    sup = sv.Supervisor(sys.executable, fake_backend(tmp_path, crash))
    stopper(sup)
    sup.submit(sv.Request(job="a.json", out=str(tmp_path)))
    events = drain(sup)
    end = sv.terminal_event(events)
    assert events[0]["event"] == "progress"
    assert end["event"] == "error" and end["code"] == "backend_crashed"
    assert "exit code 1" in end["message"] and "CUDA driver exploded" in end["message"]
    assert "Traceback" not in end["message"]
    assert not sup.running


def test_killed_backend_is_reported_with_its_signal(tmp_path, stopper):
    killed = """
    emit("hello", pid=os.getpid(), version="fake", engine=None)
    req = json.loads(sys.stdin.readline())
    os.kill(os.getpid(), signal.SIGKILL)
    """
    sup = sv.Supervisor(sys.executable, fake_backend(tmp_path, killed))
    stopper(sup)
    sup.submit(sv.Request(job="a.json", out=str(tmp_path)))
    end = sv.terminal_event(drain(sup))
    assert end["code"] == "backend_crashed" and "signal 9" in end["message"]


def test_worker_that_died_between_jobs_is_restarted(tmp_path, stopper):
    once = WORKER_OK.replace('        emit("ready")\n', '        emit("ready")\n        os._exit(0)\n')
    sup = sv.Supervisor(sys.executable, fake_backend(tmp_path, once))
    stopper(sup)
    sup.submit(sv.Request(job="a.json", out=str(tmp_path)))
    first_pid = sup.pid
    assert drain(sup)[-1]["event"] == "result"
    time.sleep(0.3)
    sup.poll()  # notices the exit between jobs
    sup.submit(sv.Request(job="b.json", out=str(tmp_path)))
    assert drain(sup)[-1]["event"] == "result"
    assert sup.pid != first_pid


@pytest.mark.parametrize("then", ["exit", "keep_printing"])
def test_garbage_on_stdout_is_reported_not_parsed(tmp_path, stopper, then):
    garbage = 'print("Welcome to SomeOtherTool 3.1")\nprint("usage: tool [options]")\n' + (
        "sys.exit(0)\n"
        if then == "exit"
        else "for i in range(1000):\n    print('garbage line', i, flush=True)\ntime.sleep(30)\n"
    )
    sup = sv.Supervisor(sys.executable, fake_backend(tmp_path, garbage))
    stopper(sup)
    sup.submit(sv.Request(job="a.json", out=str(tmp_path)))
    end = sv.terminal_event(drain(sup))
    assert end["event"] == "error" and end["code"] == "backend_garbage"
    assert "Welcome to SomeOtherTool" in end["message"]
    assert "not TrajMaster events" in end["message"]
    assert not sup.running


def test_binary_garbage_does_not_break_the_reader(tmp_path, stopper):
    binary = """
    sys.stdout.buffer.write(bytes(range(256)) * 4 + b"\\n")
    sys.stdout.flush()
    emit("hello", pid=os.getpid(), version="fake", engine=None)
    req = json.loads(sys.stdin.readline())
    emit("result", video="v.mp4", sidecar="s.json", frames=49, fps=8, name="n", job=req["id"])
    time.sleep(5)
    """
    sup = sv.Supervisor(sys.executable, fake_backend(tmp_path, binary))
    stopper(sup)
    sup.submit(sv.Request(job="a.json", out=str(tmp_path)))
    assert sv.terminal_event(drain(sup))["event"] == "result"


def test_backend_that_never_says_hello_times_out(tmp_path, stopper):
    mute = """
    time.sleep(30)
    """
    sup = sv.Supervisor(sys.executable, fake_backend(tmp_path, mute), hello_timeout_s=0.5)
    stopper(sup)
    sup.submit(sv.Request(job="a.json", out=str(tmp_path)))
    pid = sup.pid
    end = sv.terminal_event(drain(sup))
    assert end["code"] == "backend_silent" and "did not start" in end["message"]
    assert not pid_alive(pid)


def test_cancel_asks_the_worker_then_gets_its_cancelled_event(tmp_path, stopper):
    cooperative = """
    emit("hello", pid=os.getpid(), version="fake", engine=None)
    emit("ready")
    import threading, queue
    q = queue.Queue()
    threading.Thread(target=lambda: [q.put(json.loads(l)) for l in sys.stdin], daemon=True).start()
    req = q.get()
    for i in range(1, 1000):
        emit("progress", stage="sampling", step=i, total=1000, fraction=i / 1000, eta_s=None, job=req["id"])
        time.sleep(0.02)
        try:
            msg = q.get_nowait()
        except queue.Empty:
            continue
        if msg["op"] == "cancel" and msg.get("id") == req["id"]:
            emit("cancelled", message="Cancelled; no video was written.", job=req["id"])
            emit("ready")
            break
    q.get()
    """
    sup = sv.Supervisor(sys.executable, fake_backend(tmp_path, cooperative))
    stopper(sup)
    sup.submit(sv.Request(job="a.json", out=str(tmp_path)))
    time.sleep(0.3)
    sup.poll()
    assert sup.cancel()
    end = sv.terminal_event(drain(sup))
    assert end["event"] == "cancelled"
    assert sup.running, "a cooperative worker stays up for the next job"


def test_cancel_kills_a_worker_that_does_not_stop_in_time(tmp_path, stopper):
    stubborn = """
    emit("hello", pid=os.getpid(), version="fake", engine=None)
    emit("ready")
    req = json.loads(sys.stdin.readline())
    emit("stage", stage="loading", message="Loading the model", job=req["id"])
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(60)
    """
    sup = sv.Supervisor(sys.executable, fake_backend(tmp_path, stubborn), cancel_grace_s=0.5)
    stopper(sup)
    sup.submit(sv.Request(job="a.json", out=str(tmp_path)))
    time.sleep(0.3)
    pid = sup.pid
    sup.cancel()
    end = sv.terminal_event(drain(sup))
    assert end["event"] == "cancelled" and "did not stop in time" in end["message"]
    assert not pid_alive(pid)
    assert sup.cancel() is False


def test_crash_ends_every_job_the_worker_held(tmp_path, stopper):
    crash = """
    emit("hello", pid=os.getpid(), version="fake", engine=None)
    first = json.loads(sys.stdin.readline())
    second = json.loads(sys.stdin.readline())
    emit("progress", stage="sampling", step=1, total=50, fraction=0.02, eta_s=None, job=first["id"])
    sys.stderr.write("Segmentation fault in the GPU driver\\n")
    sys.stderr.flush()
    os._exit(139)
    """
    sup = sv.Supervisor(sys.executable, fake_backend(tmp_path, crash))
    stopper(sup)
    first = sup.submit(sv.Request(job="a.json", out=str(tmp_path)))
    second = sup.submit(sv.Request(job="b.json", out=str(tmp_path)))
    events = drain(sup)
    ends = {e["job"]: e for e in events if e["event"] in sv.TERMINAL}
    assert set(ends) == {first, second}
    for end in ends.values():
        assert end["event"] == "error" and end["code"] == "backend_crashed"
        assert "exit code 139" in end["message"] and "Segmentation fault" in end["message"]


def test_events_outside_a_job_belong_to_the_running_job(tmp_path, stopper):
    loose = """
    emit("hello", pid=os.getpid(), version="fake", engine=None)
    req = json.loads(sys.stdin.readline())
    emit("heartbeat", stage="loading")
    emit("error", code="bad_request", message="Ignored a malformed request.", exit_code=2)
    emit("result", video="v.mp4", sidecar="s.json", frames=49, fps=8, name="n", job=req["id"])
    time.sleep(5)
    """
    sup = sv.Supervisor(sys.executable, fake_backend(tmp_path, loose))
    stopper(sup)
    job_id = sup.submit(sv.Request(job="a.json", out=str(tmp_path)))
    events = drain(sup)
    assert [(e["event"], e["job"]) for e in events] == [("heartbeat", job_id), ("result", job_id)]


def test_a_job_that_ignores_its_cancel_is_ended_and_the_next_job_runs_on_a_new_worker(tmp_path, stopper):
    stubborn_once = """
    marker = os.path.join(os.getcwd(), "stubborn-done")
    emit("hello", pid=os.getpid(), version="fake", engine=None)
    first = json.loads(sys.stdin.readline())
    if not os.path.exists(marker):
        open(marker, "w").close()
        emit("stage", stage="loading", message="Loading the model", job=first["id"])
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(60)
    emit("result", video="v.mp4", sidecar="s.json", frames=49, fps=8, name=first.get("name"), job=first["id"],
         pid=os.getpid())
    time.sleep(5)
    """
    sup = sv.Supervisor(sys.executable, fake_backend(tmp_path, stubborn_once), cancel_grace_s=0.5)
    stopper(sup)
    first = sup.submit(sv.Request(job="a.json", out=str(tmp_path), name="first"))
    second = sup.submit(sv.Request(job="b.json", out=str(tmp_path), name="second"))
    time.sleep(0.3)
    old_pid = sup.pid
    assert sup.cancel(first)
    events = drain(sup)
    ends = {e["job"]: e for e in events if e["event"] in sv.TERMINAL}
    assert ends[first]["event"] == "cancelled" and "did not stop in time" in ends[first]["message"]
    assert ends[second]["event"] == "result" and ends[second]["name"] == "second", "never lost to the cancel"
    assert ends[second]["pid"] != old_pid and not pid_alive(old_pid)


def test_missing_interpreter_is_one_clear_sentence(tmp_path):
    sup = sv.Supervisor(str(tmp_path / "no" / "python"), fake_backend(tmp_path, WORKER_OK))
    with pytest.raises(sv.BackendUnavailable, match=r"does not exist.*TRAJMASTER_PYTHON"):
        sup.submit(sv.Request(job="a.json", out=str(tmp_path)))
    assert not sup.busy


def test_interpreter_that_is_not_executable(tmp_path):
    fake = tmp_path / "python"
    fake.write_text("not a program")
    fake.chmod(0o644)
    sup = sv.Supervisor(str(fake), fake_backend(tmp_path, WORKER_OK))
    with pytest.raises(sv.BackendUnavailable, match="cannot be"):
        sup.submit(sv.Request(job="a.json", out=str(tmp_path)))


ONESHOT = """
args = sys.argv[1:]
emit("hello", pid=os.getpid(), version="fake", engine=None)
assert args[0] == "generate" and args[2] == "--out", args
stop = []
signal.signal(signal.SIGINT, lambda *a: stop.append(1))
for i in range(1, 6 if "--name" in args else 200):
    if stop:
        emit("cancelled", message="Cancelled; no video was written.")
        sys.exit(3)
    emit("progress", stage="rendering", step=i, total=5, fraction=i / 5, eta_s=None)
    time.sleep(0.02)
emit("result", video="v.mp4", sidecar="s.json", frames=49, fps=8, name=args[args.index("--name") + 1], argv=args)
"""


def test_oneshot_runs_generate_with_a_list_of_arguments(tmp_path, stopper):
    sup = sv.Supervisor(sys.executable, fake_backend(tmp_path, ONESHOT), mode=sv.ONESHOT)
    stopper(sup)
    job = tmp_path / "job with spaces; rm -rf x.json"
    sup.submit(sv.Request(job=str(job), out=str(tmp_path), name="shot_take_007", engine="preview", png=True))
    events = sup.wait(timeout=10)
    end = sv.terminal_event(events)
    assert end["event"] == "result", events
    assert end["argv"] == [
        "generate",
        str(job),
        "--out",
        str(tmp_path),
        "--name",
        "shot_take_007",
        "--png",
        "--engine",
        "preview",
    ]
    assert sum(e["event"] == "progress" for e in events) == 5
    assert not sup.running, "a one-shot backend exits with its job"


def test_oneshot_cancel_interrupts_the_process(tmp_path, stopper):
    sup = sv.Supervisor(sys.executable, fake_backend(tmp_path, ONESHOT), mode=sv.ONESHOT)
    stopper(sup)
    sup.submit(sv.Request(job="a.json", out=str(tmp_path)))
    time.sleep(0.3)
    sup.poll()
    sup.cancel()
    end = sv.terminal_event(drain(sup))
    assert end["event"] == "cancelled"
    assert not sup.running


def test_events_of_an_abandoned_job_do_not_leak_into_the_next(tmp_path, stopper):
    late = """
    emit("hello", pid=os.getpid(), version="fake", engine=None)
    for line in sys.stdin:
        req = json.loads(line)
        if req["op"] == "generate":
            emit("progress", stage="sampling", step=1, total=1, fraction=1.0, eta_s=None, job="job-old")
            emit("result", video="v.mp4", sidecar="s.json", frames=49, fps=8, name="n", job=req["id"])
    """
    sup = sv.Supervisor(sys.executable, fake_backend(tmp_path, late))
    stopper(sup)
    sup.submit(sv.Request(job="a.json", out=str(tmp_path)))
    events = drain(sup)
    assert [e["event"] for e in events] == ["result"]


def test_request_lines_are_json_with_the_protocol_fields():
    line = sv.Request(job="/j.json", out="/o", name=None, png=False, engine="preview").worker_line("job-1")
    assert json.loads(json.dumps(line)) == {
        "op": "generate",
        "id": "job-1",
        "job": "/j.json",
        "out": "/o",
        "png": False,
        "engine": "preview",
    }


# --- the real backend --------------------------------------------------------------------------


def test_real_worker_exits_when_its_parent_dies(tmp_path):
    """Blender crashing (killed, no cleanup) must not leave the worker running: it sees end of input."""
    child = tmp_path / "blender_stand_in.py"
    child.write_text(
        textwrap.dedent(
            f"""
            import os, sys, time
            sys.path.insert(0, {str(ROOT)!r})
            sys.path.insert(0, {str(Path(__file__).parent)!r})
            from test_supervisor import sv
            sup = sv.Supervisor(sys.executable, {str(ROOT)!r})
            sup.start()
            deadline = time.monotonic() + 60
            while not (sup._proc and sup._proc.hello) and time.monotonic() < deadline:
                sup.poll()
                time.sleep(0.05)
            print(sup.pid, flush=True)
            os.kill(os.getpid(), 9)
            """
        )
    )
    done = subprocess.run([sys.executable, str(child)], capture_output=True, text=True, timeout=90)
    pid = int(done.stdout.strip())
    deadline = time.monotonic() + 10
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(pid), "the worker outlived its parent"


def preview_job(tmp_path) -> Path:
    from backend import job as jobfile
    from backend import poses, timeplan

    cam = np.broadcast_to(poses.look_at_camera((0.0, -10.0, 1.6), (0.0, 0.0, 1.0)), (13, 4, 4))
    walk = np.stack([poses.yaw_matrix(0.3 * k, (-2.0 + 0.3 * k, 2.0, 0.0)) for k in range(13)])
    job = jobfile.build_job(
        scene_name="Shot",
        frame_start=1,
        frame_end=49,
        scene_fps=24.0,
        location="a quiet city square at dusk with old stone buildings",
        entities=[
            {
                "name": "Walker",
                "prompt": "a tall man in a long grey coat walking slowly with both hands in his pockets",
                "poses": poses.model_poses(cam, walk),
            }
        ],
    )
    assert len(job["shot"]["pose_frames"]) == timeplan.POSE_SLOTS
    path = tmp_path / "shot.job.json"
    jobfile.write(job, path)
    return path


def test_real_worker_renders_preview_takes_and_shuts_down(tmp_path, stopper):
    job = preview_job(tmp_path)
    sup = sv.Supervisor(sys.executable, ROOT)
    stopper(sup)
    sup.submit(sv.Request(job=str(job), out=str(tmp_path / "takes"), engine="preview"))
    events = drain(sup, seconds=120)
    end = sv.terminal_event(events)
    assert end["event"] == "result", events
    assert Path(end["video"]).is_file() and end["frames"] == 49 and end["fps"] == 8
    assert any(e["event"] == "progress" for e in events)
    pid = sup.pid
    sup.submit(sv.Request(job=str(job), out=str(tmp_path / "takes"), engine="preview"))
    assert sv.terminal_event(drain(sup, seconds=120))["name"] == "Shot_take_002"
    assert sup.pid == pid
    sup.stop()
    assert not pid_alive(pid)


def test_real_worker_cancels_a_queued_job_without_running_it(tmp_path, stopper):
    job = preview_job(tmp_path)
    sup = sv.Supervisor(sys.executable, ROOT)
    stopper(sup)
    out = str(tmp_path / "takes")
    ids = [sup.submit(sv.Request(job=str(job), out=out, name=f"Shot_take_00{k}", engine="preview")) for k in (1, 2, 3)]
    assert sup.cancel(ids[1])
    events = drain(sup, seconds=180)
    ends = {e["job"]: e for e in events if e["event"] in sv.TERMINAL}
    assert [ends[i]["event"] for i in ids] == ["result", "cancelled", "result"], events
    assert not [e for e in events if e["job"] == ids[1] and e["event"] != "cancelled"], "it never ran"
    assert sorted(p.name for p in (tmp_path / "takes").iterdir()) == [
        "Shot_take_001.json",
        "Shot_take_001.mp4",
        "Shot_take_003.json",
        "Shot_take_003.mp4",
    ]


# --- engine options from the preferences (--weights, --memory) ---------------------------------


def test_engine_args_follow_the_job_arguments_of_a_oneshot_generate(tmp_path, stopper):
    engine_args = ["--weights", str(tmp_path / "my weights"), "--memory", "low"]
    sup = sv.Supervisor(sys.executable, fake_backend(tmp_path, ONESHOT), mode=sv.ONESHOT, engine_args=engine_args)
    stopper(sup)
    sup.submit(sv.Request(job="a.json", out=str(tmp_path), name="shot_take_001"))
    end = sv.terminal_event(sup.wait(timeout=10))
    assert end["event"] == "result", end
    assert end["argv"] == ["generate", "a.json", "--out", str(tmp_path), "--name", "shot_take_001", *engine_args]


def test_engine_args_reach_the_worker_command_line(tmp_path, stopper):
    body = WORKER_OK.replace(
        'name=req.get("name") or "shot_take_001", job=jid)', 'name="n", job=jid, argv=sys.argv[1:])'
    )
    assert "argv=sys.argv[1:]" in body
    sup = sv.Supervisor(
        sys.executable, fake_backend(tmp_path, body), engine_args=("--weights", "/w", "--memory", "full")
    )
    stopper(sup)
    sup.submit(sv.Request(job="a.json", out=str(tmp_path)))
    assert drain(sup)[-1]["argv"] == ["serve", "--weights", "/w", "--memory", "full"]
    assert sup.engine_args == ("--weights", "/w", "--memory", "full")


def test_no_engine_args_by_default(tmp_path, stopper):
    body = WORKER_OK.replace(
        'name=req.get("name") or "shot_take_001", job=jid)', 'name="n", job=jid, argv=sys.argv[1:])'
    )
    sup = sv.Supervisor(sys.executable, fake_backend(tmp_path, body))
    stopper(sup)
    sup.submit(sv.Request(job="a.json", out=str(tmp_path)))
    assert drain(sup)[-1]["argv"] == ["serve"]


def test_real_worker_accepts_the_engine_args_and_renders_a_preview(tmp_path, stopper):
    job = preview_job(tmp_path)
    engine_args = ["--weights", str(tmp_path / "no-weights-here"), "--memory", "balanced"]
    sup = sv.Supervisor(sys.executable, ROOT, engine_args=engine_args)
    stopper(sup)
    sup.submit(sv.Request(job=str(job), out=str(tmp_path / "takes"), engine="preview"))
    end = sv.terminal_event(drain(sup, seconds=120))
    assert end["event"] == "result", end


WORKER_JUNK = """
emit("hello", pid=os.getpid(), version="fake", engine=None)
emit("ready")
for line in sys.stdin:
    req = json.loads(line)
    if req["op"] == "generate":
        jid = req["id"]
        # Lines a broken or hostile backend might print: nested past the recursion limit, numbers
        # past Python's int digit limit, an event kind that is not a string.
        print("{" + '"event": ' + "[" * 100000, flush=True)
        print('{"event": "progress", "job": "' + jid + '", "step": ' + "9" * 5000 + "}", flush=True)
        print('{"event": ["result"], "job": "' + jid + '"}', flush=True)
        emit("result", video="v.mp4", sidecar="x.json", frames=49, fps=8, name="shot_take_001", job=jid)
        emit("ready")
"""


def test_poll_survives_lines_json_cannot_read(tmp_path, stopper):
    sup = sv.Supervisor(sys.executable, fake_backend(tmp_path, WORKER_JUNK))
    stopper(sup)
    sup.submit(sv.Request(job="a.json", out=str(tmp_path)))
    events = drain(sup)
    assert [e["event"] for e in events] == ["result"], events
