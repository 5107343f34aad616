"""The add-on's job queue without Blender: several takes handed to the real supervisor (stand-in
backends that log what they were asked, and the real `python -m backend serve`), followed by id,
cancelled one at a time or all at once, and the batch's ETA."""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path

import pytest
from test_supervisor import ROOT, WORKER_OK, fake_backend, preview_job, sv

jq = importlib.import_module(sv.__name__.rsplit(".", 1)[0] + ".job_queue")

# The stand-in worker of test_supervisor, slowed down and logging every request it reads.
LOGGING_WORKER = WORKER_OK.replace(
    "    req = json.loads(line)\n",
    "    req = json.loads(line)\n"
    '    open(os.path.join(os.getcwd(), "requests.log"), "a").write(json.dumps(req) + "\\n")\n',
).replace('emit("stage"', 'time.sleep(0.2); emit("stage"')


def requests_seen(root: Path) -> list[dict]:
    log = root / "requests.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def run(queue, seconds: float = 20.0, each=None):
    """Poll like the runner's timer until every job has ended; returns (job, event) pairs."""
    seen = []
    deadline = time.monotonic() + seconds
    while queue.busy and time.monotonic() < deadline:
        seen.extend(queue.poll())
        if each:
            each(queue)
        time.sleep(0.02)
    assert not queue.busy, f"the queue did not finish within {seconds} s: {[(j.name, j.state) for j in queue.jobs]}"
    return seen


def jobs(names, out):
    return [jq.QueuedJob(sv.Request(job=f"{n}.json", out=str(out), name=n), label=n) for n in names]


@pytest.fixture
def worker(tmp_path):
    root = fake_backend(tmp_path, LOGGING_WORKER)
    sup = sv.Supervisor(sys.executable, root)
    yield sup, root
    sup.stop(timeout=1.0)


def test_jobs_run_in_order_and_the_worker_never_holds_more_than_its_capacity(worker, tmp_path):
    sup, root = worker
    queue = jq.JobQueue(sup)
    queue.add(jobs(["t1", "t2", "t3", "t4"], tmp_path))
    held = []
    seen = run(queue, each=lambda q: held.append(len(sup.job_ids)))
    assert max(held) == sup.capacity == 2
    results = [(job.name, event["name"]) for job, event in seen if event["event"] == "result"]
    assert results == [("t1", "t1"), ("t2", "t2"), ("t3", "t3"), ("t4", "t4")]
    assert [r["name"] for r in requests_seen(root) if r["op"] == "generate"] == ["t1", "t2", "t3", "t4"]
    progress = queue.progress()
    assert (progress.done, progress.total, progress.succeeded, progress.eta_s) == (4, 4, 4, 0.0)
    assert len(queue.durations) == 4


def test_cancelling_a_waiting_job_is_instant_and_it_never_reaches_the_backend(worker, tmp_path):
    sup, root = worker
    queue = jq.JobQueue(sup)
    t1, t2, t3, t4 = queue.add(jobs(["t1", "t2", "t3", "t4"], tmp_path))
    queue.poll()  # t1 and t2 handed over
    assert (t1.state, t2.state, t3.state) == (jq.RUNNING, jq.RUNNING, jq.QUEUED)
    ((job, event),) = queue.cancel(t3.key)
    assert job is t3 and event["event"] == "cancelled" and t3.state == jq.CANCELLED
    run(queue)
    assert [j.state for j in (t1, t2, t3, t4)] == [jq.DONE, jq.DONE, jq.CANCELLED, jq.DONE]
    assert "t3" not in [r.get("name") for r in requests_seen(root)]


def test_cancel_all_ends_the_waiting_jobs_at_once_and_asks_the_backend_for_the_others(tmp_path):
    cooperative = """
    emit("hello", pid=os.getpid(), version="fake", engine=None)
    import threading, queue
    q = queue.Queue()
    cancelled = set()
    def read():
        for line in sys.stdin:
            msg = json.loads(line)
            if msg["op"] == "cancel":
                cancelled.add(msg["id"])
            else:
                q.put(msg)
    threading.Thread(target=read, daemon=True).start()
    while True:
        req = q.get()
        for i in range(1, 500):
            if req["id"] in cancelled:
                emit("cancelled", message="Cancelled; no video was written.", job=req["id"])
                break
            emit("progress", stage="sampling", step=i, total=500, fraction=i / 500, eta_s=5.0, job=req["id"])
            time.sleep(0.02)
    """
    sup = sv.Supervisor(sys.executable, fake_backend(tmp_path, cooperative))
    try:
        queue = jq.JobQueue(sup)
        added = queue.add(jobs(["t1", "t2", "t3", "t4"], tmp_path))
        while added[0].step == 0:
            queue.poll()
            time.sleep(0.02)
        at_once = queue.cancel()
        assert [job.name for job, _ in at_once] == ["t3", "t4"]
        assert added[0].state == added[1].state == jq.CANCELLING
        run(queue)
        assert [job.state for job in added] == [jq.CANCELLED] * 4
        assert queue.progress().cancelled == 4
    finally:
        sup.stop(timeout=1.0)


def test_a_backend_crash_fails_the_jobs_it_held_and_stops_the_waiting_ones(tmp_path):
    crash = """
    emit("hello", pid=os.getpid(), version="fake", engine=None)
    json.loads(sys.stdin.readline())
    time.sleep(0.2)
    os._exit(1)
    """
    sup = sv.Supervisor(sys.executable, fake_backend(tmp_path, crash))
    try:
        queue = jq.JobQueue(sup)
        added = queue.add(jobs(["t1", "t2", "t3", "t4"], tmp_path))
        seen = run(queue)
        assert [job.state for job in added] == [jq.FAILED, jq.FAILED, jq.CANCELLED, jq.CANCELLED]
        assert added[0].end["code"] == "backend_crashed"
        assert added[3].end["message"].startswith("Not run: The backend stopped unexpectedly")
        assert len(seen) == 4, "one ending per job"
    finally:
        sup.stop(timeout=1.0)


def test_no_backend_at_all_fails_every_job_with_one_sentence(tmp_path):
    sup = sv.Supervisor(str(tmp_path / "no" / "python"), tmp_path)
    queue = jq.JobQueue(sup)
    added = queue.add(jobs(["t1", "t2"], tmp_path))
    seen = queue.poll()
    assert [job.state for job in added] == [jq.FAILED, jq.FAILED]
    assert {event["message"] for _, event in seen} == {
        f"The backend Python {tmp_path / 'no' / 'python'} does not exist; set the backend Python in the add-on's "
        "preferences or the TRAJMASTER_PYTHON environment variable."
    }
    assert not queue.busy


def test_a_new_batch_starts_when_the_last_one_has_ended(worker, tmp_path):
    sup, _root = worker
    queue = jq.JobQueue(sup)
    queue.add(jobs(["t1", "t2"], tmp_path))
    run(queue)
    queue.add(jobs(["t3"], tmp_path))
    assert [job.name for job in queue.jobs] == ["t3"]
    assert (queue.progress().done, queue.progress().total) == (0, 1)
    run(queue)


def test_oneshot_runs_one_process_per_job(tmp_path):
    body = """
    args = sys.argv[1:]
    emit("hello", pid=os.getpid(), version="fake", engine=None)
    name = args[args.index("--name") + 1]
    emit("result", video=name + ".mp4", sidecar="s.json", frames=49, fps=8, name=name, pid=os.getpid())
    """
    sup = sv.Supervisor(sys.executable, fake_backend(tmp_path, body), mode=sv.ONESHOT)
    try:
        queue = jq.JobQueue(sup)
        queue.add(jobs(["t1", "t2", "t3"], tmp_path))
        seen = run(queue)
        results = [event for _, event in seen if event["event"] == "result"]
        assert [e["name"] for e in results] == ["t1", "t2", "t3"]
        assert len({e["pid"] for e in results}) == 3
    finally:
        sup.stop(timeout=1.0)


def test_real_worker_makes_a_batch_of_preview_takes(tmp_path):
    job = preview_job(tmp_path)
    sup = sv.Supervisor(sys.executable, ROOT)
    try:
        queue = jq.JobQueue(sup)
        names = ["Shot_take_001", "Shot_take_002", "Shot_take_003"]
        queue.add([jq.QueuedJob(sv.Request(str(job), str(tmp_path / "takes"), n, engine="preview")) for n in names])
        etas = []
        seen = run(queue, seconds=180, each=lambda q: etas.append(q.eta()))
        assert [e["name"] for _, e in seen if e["event"] == "result"] == names
        assert any(eta is not None and eta > 0 for eta in etas), "an ETA is shown while the batch runs"
        assert all((tmp_path / "takes" / f"{n}.mp4").is_file() for n in names)
    finally:
        sup.stop(timeout=1.0)


# --- the batch's ETA -------------------------------------------------------------------------


def test_eta_is_unknown_until_a_job_has_progressed():
    assert jq.batch_eta([], [(1.0, None)], waiting=3) is None
    assert jq.batch_eta([], [], waiting=0) == 0.0


def test_eta_from_the_running_job_alone():
    # 10 s into a job that needs 30 s more: each job about 40 s, three waiting after it.
    assert jq.batch_eta([], [(10.0, 30.0)], waiting=3) == pytest.approx(30.0 + 3 * 40.0)


def test_eta_from_the_last_job_done():
    # The first job loaded the model (100 s); the next took 30 s: the engine is warm now.
    assert jq.batch_eta([100.0, 30.0], [(5.0, 20.0)], waiting=2) == pytest.approx(20.0 + 2 * 30.0)
    # A running job without an ETA of its own yet is counted as such a job already under way.
    assert jq.batch_eta([30.0], [(10.0, None)], waiting=1) == pytest.approx(20.0 + 30.0)


def test_eta_with_jobs_running_in_parallel():
    # Two replicas, one job each (10 s and 20 s left), three waiting of 30 s each.
    assert jq.batch_eta([30.0], [(0.0, 10.0), (0.0, 20.0)], waiting=3, parallel=2) == pytest.approx(70.0)
    assert jq.batch_eta([30.0], [], waiting=4, parallel=2) == pytest.approx(60.0)


def test_a_shared_servers_other_jobs_count_in_the_batch_eta():
    """On a team server the jobs of others run and wait ahead of ours (server_executor.others())."""
    # Two replicas, one busy with someone's job half done, three of theirs queued ahead of our two.
    assert jq.batch_eta([10.0], [], 2, parallel=2, others=([0.5], 3)) == pytest.approx(30.0)
    assert jq.batch_eta([10.0], [], 2, parallel=2) == pytest.approx(10.0)
    # Nothing of ours waits: our running jobs decide, whatever the others do.
    assert jq.batch_eta([10.0], [(4.0, 6.0)], 0, parallel=2, others=([0.1], 5)) == pytest.approx(6.0)
