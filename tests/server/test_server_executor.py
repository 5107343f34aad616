"""The add-on's server executor without Blender (addon/server_executor.py), driven by the add-on's
own job queue as Blender's timer drives it, against a real server (2 preview replicas on the
test cluster): takes in parallel fetched under their reserved names, progress, cancel, a
connection cut and a socket gone silent mid-job, a wrong token, no server, a restart that loses
the job, and quitting."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from harness import start_server, stop_server
from nobpy import addon_module
from proxy import Relay
from shots import make_job

se = addon_module("server_executor")
jq = addon_module("job_queue")
ex = addon_module("executor")

GRACE_S = 2.0


@pytest.fixture(scope="module")
def server(ray_cluster, tmp_path_factory):
    # A short grace: a job submitted without `detach` would be cancelled during the cut below.
    server = start_server(
        ray_cluster,
        "executor",
        tmp_path_factory.mktemp("executor-state"),
        engine="preview",
        replicas=2,
        disconnect_grace_s=GRACE_S,
    )
    server.wait_replicas(2)
    yield server
    stop_server(server)


@pytest.fixture
def relay(server):
    """A relay in front of the server (its `url` is the server's address through it)."""
    port = int(server.url.split(":")[2].split("/")[0])
    relay = Relay(port)
    relay.url = server.url.replace(f":{port}/", f":{relay.port}/")
    yield relay
    relay.close()


@pytest.fixture
def executors():
    made = []

    def make(url, token, **kw):
        made.append(se.ServerExecutor(url, token, status_interval_s=1.0, **kw))
        return made[-1]

    yield make
    for executor in made:
        executor.stop()


def reserve(folder: Path, names: list[str], job: dict | None = None) -> list:
    """What the runner does before anything runs: each take's job file under its name."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name in names:
        path = folder / f"{name}.job.json"
        path.write_text(json.dumps(job or make_job()))
        out.append(jq.QueuedJob(ex.Request(job=str(path), out=str(folder), name=name), label=name))
    return out


def run(queue, seconds=120.0, each=None):
    """Poll like the runner's timer (every 0.1 s) until every job ended; (job, event) pairs."""
    seen = []
    deadline = time.monotonic() + seconds
    while queue.busy:
        t0 = time.perf_counter()
        seen.extend(queue.poll())
        assert time.perf_counter() - t0 < 0.05, "poll() blocked the timer"
        if each is not None:
            each(queue, seen)
        assert time.monotonic() < deadline, [(j.name, j.state, j.stage) for j in queue.jobs]
        time.sleep(0.1)
    return seen


def ends(seen):
    return {job.name: event for job, event in seen if event["event"] in ("result", "error", "cancelled")}


def test_variations_run_in_parallel_on_two_replicas_and_land_under_their_reserved_names(
    server, pace, executors, tmp_path
):
    pace(0.05)
    executor = executors(server.url, server.token)
    queue = jq.JobQueue(executor)
    names = ["Scene_take_004", "Scene_take_005", "Scene_take_006", "Scene_take_007"]
    queue.add(reserve(tmp_path, names))
    busy_replicas = set()
    etas = []

    def watch(queue, seen):
        status = executor.watch.status or {}
        busy = [r["replica"] for r in status.get("replicas", []) if r["state"] == "busy"]
        if len(busy) == 2:
            busy_replicas.update(busy)
        progress = queue.progress()
        if progress.eta_s is not None and progress.done < 4:
            etas.append(progress.eta_s)

    seen = run(queue, each=watch)
    results = ends(seen)
    assert {n: e["event"] for n, e in results.items()} == dict.fromkeys(names, "result")
    # All four were handed to the server at once (its queue, not the add-on's), two ran at a time.
    assert len(busy_replicas) == 2, "the two replicas were never busy at the same time"
    assert executor.parallel == 2
    for name in names:
        assert results[name]["video"] == str(tmp_path / f"{name}.mp4")
        sidecar = json.loads((tmp_path / f"{name}.json").read_text())
        assert sidecar["name"] == name and sidecar["job_file"] == str(tmp_path / f"{name}.job.json")
        assert sidecar["server"]["url"] == server.url
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{n}{ext}" for n in names for ext in (".job.json", ".json", ".mp4")
    )
    # Progress reads as it does locally: every frame of each take, with an ETA, then the result.
    for name in names:
        steps = [e["step"] for j, e in seen if j.name == name and e["event"] == "progress"]
        assert sorted(set(steps)) == list(range(1, 50))
    assert etas and etas[-1] < etas[0]
    replicas = {json.loads((tmp_path / f"{n}.json").read_text())["server"]["replica"]["replica"] for n in names}
    assert len(replicas) == 2


def test_cancel_stops_a_running_take_and_a_queued_one_without_leaving_files(server, pace, executors, tmp_path):
    pace(0.3)
    executor = executors(server.url, server.token)
    queue = jq.JobQueue(executor)
    jobs = queue.add(reserve(tmp_path, ["a", "b", "c"]))  # two run, one waits on the server
    cancelled_at = None

    def cancel_when_running(queue, seen):
        nonlocal cancelled_at
        if cancelled_at is None and sum(j.step >= 2 for j in queue.jobs) == 2:
            cancelled_at = time.monotonic()
            for job in jobs:
                queue.cancel(job.key)

    seen = run(queue, each=cancel_when_running)
    assert cancelled_at is not None
    assert {n: e["event"] for n, e in ends(seen).items()} == dict.fromkeys(("a", "b", "c"), "cancelled")
    assert time.monotonic() - cancelled_at < 10, "the cancel did not stop the running takes at a frame"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.job.json", "b.job.json", "c.job.json"]
    states = {executor.client.job(j)["state"] for j in _server_ids(seen)}
    assert states == {"cancelled"}


def _server_ids(seen):
    return {e["server_job"] for _, e in seen if e.get("server_job")}


def test_a_connection_cut_mid_job_is_rejoined_and_the_take_still_arrives(server, pace, relay, executors, tmp_path):
    pace(0.1)
    executor = executors(relay.url, server.token)
    queue = jq.JobQueue(executor)
    queue.add(reserve(tmp_path, ["Scene_take_001"]))
    cut = []

    def interrupt(queue, seen):
        job = queue.jobs[0]
        if not cut and job.step >= 5:
            relay.cut()  # every connection reset; new ones refused
            cut.append(time.monotonic())
        elif len(cut) == 1 and time.monotonic() - cut[0] > GRACE_S + 2:
            relay.restore()
            cut.append(time.monotonic())

    seen = run(queue, each=interrupt)
    events = [e for _, e in seen]
    assert len(cut) == 2
    reconnecting = [e for e in events if e["event"] == "stage" and e["stage"] == "reconnecting"]
    assert len(reconnecting) == 1 and "the job goes on there" in reconnecting[0]["message"]
    assert events[-1]["event"] == "result" and Path(events[-1]["video"]).is_file()
    # Resumed after the last event seen: no frame missing, none out of order.
    steps = [e["step"] for e in events if e["event"] == "progress"]
    assert steps == sorted(steps) and sorted(set(steps)) == list(range(1, 50))
    # The job kept running on the server while the link was down.
    info = executor.client.job(events[-1]["server_job"])
    assert info["state"] == "done" and info["attempts"] == 1


def test_a_socket_that_goes_silent_is_noticed_and_the_job_followed_again(
    server, pace, relay, executors, tmp_path, monkeypatch
):
    client_module = addon_module("server_executor").Client.__module__
    import sys

    monkeypatch.setattr(sys.modules[client_module], "STREAM_READ_TIMEOUT_S", 2.0)
    pace(0.1)
    executor = executors(relay.url, server.token)
    queue = jq.JobQueue(executor)
    queue.add(reserve(tmp_path, ["Scene_take_001"]))
    stalled = []

    def stall(queue, seen):
        job = queue.jobs[0]
        if not stalled and job.step >= 5:
            relay.stall()
            stalled.append(time.monotonic())
        elif len(stalled) == 1 and job.stage == "reconnecting":
            stalled.append(time.monotonic())  # noticed: the stream timed out instead of waiting forever
            relay.unstall()

    seen = run(queue, each=stall)
    assert len(stalled) == 2 and stalled[1] - stalled[0] < 10
    assert seen[-1][1]["event"] == "result"


def test_a_submission_whose_answer_is_lost_is_sent_again_and_runs_once(server, pace, relay, executors, tmp_path):
    """The POST reaches the server, which queues the job, but its answer never comes back (a
    timeout): the executor sends it again with the same Idempotency-Key, and finds that job
    instead of queueing a second one that would run on, detached, with nobody to place it."""
    from backend.client import Client

    pace(0.05)
    direct = Client(server.url, server.token)
    before = {j["id"] for j in direct.jobs()}
    executor = executors(relay.url, server.token)
    executor.client.http.timeout = 1.5  # the submit's wait for an answer, short for the test
    queue = jq.JobQueue(executor)
    relay.deafen()
    queue.add(reserve(tmp_path, ["Scene_take_001"]))
    deadline = time.monotonic() + 60
    while not {j["id"] for j in direct.jobs()} - before:
        queue.poll()
        assert time.monotonic() < deadline, "the job never reached the server"
        time.sleep(0.1)
    time.sleep(2.0)  # the executor's first submit has timed out meanwhile: its answer was lost
    relay.undeafen()
    seen = run(queue)
    assert ends(seen)["Scene_take_001"]["event"] == "result"
    new = [j for j in direct.jobs() if j["id"] not in before]
    assert len(new) == 1 and new[0]["state"] == "done", new
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "Scene_take_001.job.json",
        "Scene_take_001.json",
        "Scene_take_001.mp4",
    ]


def test_a_wrong_token_and_no_server_are_one_sentence_each(server, executors, tmp_path):
    wrong = jq.JobQueue(executors(server.url, "not-the-token", token_source="the token in the add-on's preferences"))
    wrong.add(reserve(tmp_path / "w", ["a", "b"]))
    (_, first), (_, second) = [p for p in run(wrong) if p[1]["event"] in ("error", "cancelled")]
    assert first["code"] == "unauthorized"
    assert first["message"] == (
        f"The server at {server.url} did not accept the token in the add-on's preferences; use the token in the "
        "server's token file."
    )
    assert "not-the-token" not in json.dumps([first, second])
    assert second["event"] in ("error", "cancelled")  # the other take does not try again

    from harness import free_port

    nobody = jq.JobQueue(executors(f"http://127.0.0.1:{free_port()}", server.token))
    nobody.add(reserve(tmp_path / "n", ["a"]))
    ((_, error),) = [p for p in run(nobody) if p[1]["event"] == "error"]
    assert error["code"] == "unreachable"
    assert error["message"].endswith(
        "is not answering (connection refused); check the address and that the server is running."
    )
    assert sorted(p.name for p in (tmp_path / "n").iterdir()) == ["a.job.json"]

    with pytest.raises(ex.BackendUnavailable, match="user name or password"):
        se.ServerExecutor(f"http://me:{server.token}@127.0.0.1:1", server.token)


def test_a_job_the_server_forgot_is_reported_lost(server, pace, executors, tmp_path):
    pace(0.2)
    executor = executors(server.url, server.token)
    queue = jq.JobQueue(executor)
    queue.add(reserve(tmp_path, ["Scene_take_001"]))

    def forget(queue, seen):
        if queue.jobs[0].step >= 2 and not getattr(forget, "done", False):
            forget.done = True
            executor.client.forget(next(iter(executor.server_ids().values())))

    seen = run(queue, each=forget)
    end = seen[-1][1]
    assert end["event"] in ("error", "cancelled")
    # Forgetting cancels it for its followers first (the server's own word) or the job is gone: never silent.
    assert end["event"] == "cancelled" or end["code"] == "job_lost"


def test_a_cancel_the_server_cannot_hear_ends_here_after_the_grace_and_says_so(
    server, pace, relay, executors, tmp_path
):
    pace(0.2)
    executor = executors(relay.url, server.token, cancel_grace_s=2.0)
    queue = jq.JobQueue(executor)
    (job,) = queue.add(reserve(tmp_path, ["Scene_take_001"]))

    def cut_then_cancel(queue, seen):
        if job.step >= 3 and job.state == jq.RUNNING:
            relay.cut()
            queue.cancel(job.key)

    seen = run(queue, each=cut_then_cancel)
    end = seen[-1][1]
    assert end["event"] == "cancelled"
    assert "could not be reached to stop the job, so it may still run there" in end["message"]
    relay.restore()
    executor.client.cancel(next(e["server_job"] for _, e in seen if e.get("server_job")))


def test_stop_cancels_on_the_server_the_jobs_it_started(server, pace, executors, tmp_path):
    pace(0.3)
    executor = executors(server.url, server.token)
    queue = jq.JobQueue(executor)
    queue.add(reserve(tmp_path, ["a", "b", "c"]))
    deadline = time.monotonic() + 60
    while len(executor.server_ids()) < 3 or not any(j.step for j in queue.jobs):
        queue.poll()
        assert time.monotonic() < deadline
        time.sleep(0.1)
    ids = list(executor.server_ids().values())
    t0 = time.monotonic()
    executor.stop()
    assert time.monotonic() - t0 < se.STOP_S + 0.5
    assert {executor.client.job(i)["state"] for i in ids} == {"cancelled"}


def test_a_restart_that_loses_the_job_says_the_take_is_lost(server, ray_cluster, pace, executors, tmp_path):
    # Last: it restarts the application.
    pace(0.3)
    executor = executors(server.url, server.token)
    queue = jq.JobQueue(executor)
    queue.add(reserve(tmp_path, ["Scene_take_001"]))
    restarted = []

    def restart(queue, seen):
        if not restarted and queue.jobs[0].step >= 2:
            restarted.append(True)
            stop_server(server)
            start_server(
                ray_cluster,
                server.name,
                server.state,
                server.token,
                engine="preview",
                replicas=2,
                disconnect_grace_s=GRACE_S,
            )

    seen = run(queue, seconds=240, each=restart)
    end = seen[-1][1]
    assert end["event"] == "error" and end["code"] == "job_lost"
    assert "restarted" in end["message"] and "submit it again" in end["message"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Scene_take_001.job.json"]
