"""The server with 2 preview replicas on a real local Ray cluster, over HTTP on 127.0.0.1: what a
team sees (parallel jobs, live progress, cancel, a replica killed mid-job, tokens, refusals,
the take itself, re-attaching, a restart)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import pytest
from cli import ROOT, backend, write_job
from harness import follow, kinds, start_server, stop_server
from shots import make_job

from backend.client import ServerError
from backend.events import parse_line
from backend.server.replica import work_root

GRACE_S = 3.0


@pytest.fixture(scope="module")
def preview(ray_cluster, tmp_path_factory):
    server = start_server(
        ray_cluster,
        "preview",
        tmp_path_factory.mktemp("preview-state"),
        engine="preview",
        replicas=2,
        disconnect_grace_s=GRACE_S,
    )
    yield server
    stop_server(server)


def started(event):
    return event["event"] == "progress"


def test_two_jobs_run_at_the_same_time_on_two_replicas(preview, pace, tmp_path):
    preview.wait_replicas(2)
    pace(0.04)
    client = preview.client()
    ids = [client.submit(make_job())["id"] for _ in range(2)]
    results: dict[str, list] = {}
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, follow(client, i))) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    first, second = (results[i] for i in ids)
    assert kinds(first)[-1] == kinds(second)[-1] == "result"
    replicas = {client.job(i)["replica"]["replica"] for i in ids}
    assert len(replicas) == 2, "both jobs ran on the same replica"
    # Each job's rendering started before the other one finished: they ran at once.
    for a, b in ((first, second), (second, first)):
        assert next(e["time"] for e in a if e["event"] == "progress") < b[-1]["time"]
    takes = [client.fetch(i, tmp_path) for i in ids]
    assert sorted(t["name"] for t in takes) == ["Scene_take_001", "Scene_take_002"]


def test_progress_events_stream_before_the_result(preview, pace):
    pace(0.04)
    client = preview.client()
    job_id = client.submit(make_job())["id"]
    arrivals = []
    for event in client.events(job_id):
        arrivals.append((time.monotonic(), event))
    events = [e for _, e in arrivals]
    assert kinds(events)[0] == "stage" and events[0]["stage"] == "queued"
    assert [e["seq"] for e in events if "seq" in e] == list(range(1, len(events) + 1))
    progress = [(t, e) for t, e in arrivals if e["event"] == "progress"]
    assert [e["step"] for _, e in progress] == list(range(1, 50))
    stages = [e["stage"] for e in events if e["event"] == "stage"]
    assert stages == ["queued", "validating", "rendering", "writing"]
    result_at = arrivals[-1][0]
    assert events[-1]["event"] == "result"
    # Streamed as they happened, not delivered in a batch at the end: 48 paced frames lie between.
    assert result_at - progress[0][0] > 1.0
    assert events[-1]["frames"] == 49 and set(events[-1]["files"]) == {"video", "sidecar"}
    assert all(e["job"] == job_id for e in events)


def test_cancel_stops_the_job_on_its_replica_at_a_frame(preview, pace):
    preview.wait_replicas(2)
    pace(0.3)  # 49 frames: about 15 s if it were not stopped
    client = preview.client()
    job_id = client.submit(make_job())["id"]
    follow(client, job_id, stop=started)
    replica = client.job(job_id)["replica"]
    cancelled_at = time.monotonic()
    client.cancel(job_id)
    events = follow(client, job_id)
    assert events[-1]["event"] == "cancelled"
    assert client.job(job_id)["state"] == "cancelled"
    # The replica itself stopped at its next frame (the cancel reached Report.cancel), long before
    # the 15 s the job would have taken, and removed the job's folder.
    while True:
        mine = [r for r in client.status()["replicas"] if r["replica"] == replica["replica"]]
        if mine and mine[0]["state"] == "idle":
            break
        assert time.monotonic() - cancelled_at < 6, f"the replica still runs the cancelled job: {mine}"
        time.sleep(0.1)
    assert not list((work_root() / str(replica["pid"])).glob(f"{job_id}-*"))
    with pytest.raises(ServerError) as refused:
        client.fetch(job_id, tempfile.gettempdir())
    assert refused.value.code == "cancelled"


def test_a_replica_killed_mid_job_hands_the_job_to_the_other_one(preview, pace, tmp_path):
    preview.wait_replicas(2)
    pace(0.1)
    client = preview.client()
    job_id = client.submit(make_job())["id"]
    before = follow(client, job_id, stop=lambda e: e["event"] == "progress" and e["step"] >= 3)
    killed = client.job(job_id)["replica"]
    os.kill(killed["pid"], signal.SIGKILL)
    after = follow(client, job_id, after=before[-1]["seq"])
    events = before + after
    warnings = [e for e in events if e["event"] == "warning"]
    assert [w["code"] for w in warnings] == ["replica_lost"]
    assert "attempt 2 of 3" in warnings[0]["message"]
    assert kinds(events).count("result") == 1 and events[-1]["event"] == "result"
    info = client.job(job_id)
    assert info["attempts"] == 2 and info["state"] == "done"
    assert info["replica"]["pid"] != killed["pid"]
    take = client.fetch(job_id, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{take['name']}.json", f"{take['name']}.mp4"]
    preview.wait_replicas(2)  # Serve started a replacement...
    assert not (work_root() / str(killed["pid"])).exists()  # ...which removed the dead one's job folder


def test_a_wrong_or_missing_token_is_a_401_with_one_sentence(preview):
    for token in ("", "not-the-token", preview.token + "x"):
        for method, path in (("GET", "/v1/status"), ("POST", "/v1/jobs"), ("GET", "/v1/no-such-route")):
            status, body = preview.request(method, path, body=b"{}" if method == "POST" else None, token=token)
            assert status == 401, (token, path, body)
            assert body["code"] == "unauthorized"
            assert body["message"].endswith(".") and body["message"].count(". ") == 0
            assert "Traceback" not in str(body)
    with pytest.raises(ServerError) as refused:
        type(preview.client())(preview.url, "wrong").status()
    assert refused.value.code == "unauthorized" and "wrong" not in str(refused.value)


def test_a_job_sent_again_with_its_idempotency_key_is_queued_once(preview, pace):
    pace(0.2)  # long enough that the first job is still held when it is sent again
    client = preview.client()
    jobs_before = len(client.jobs())
    body, key = json.dumps({"job": make_job(), "detach": True}).encode(), "k" * 20 + "-1_aB"

    def post(data, key):
        headers = {"Content-Type": "application/json", "Idempotency-Key": key}
        return preview.request("POST", "/v1/jobs", body=data, headers=headers)

    first, again = post(body, key), post(body, key)
    assert first[0] == 201 and again[0] == 200 and again[1]["id"] == first[1]["id"]
    assert len(client.jobs()) == jobs_before + 1
    assert "request_key" not in client.job(first[1]["id"]), "another client never sees the key"
    other = make_job()
    other["sampling"]["seed"] += 1
    status, refused = post(json.dumps({"job": other, "detach": True}).encode(), key)
    assert (status, refused["code"]) == (422, "key_reused")
    status, refused = post(body, "short/../key")
    assert (status, refused["code"]) == (400, "bad_request") and "Idempotency-Key" in refused["message"]
    assert len(client.jobs()) == jobs_before + 1
    client.cancel(first[1]["id"])
    # Ended, and its replica idle again, before the next test counts the replicas' jobs.
    assert client.wait(first[1]["id"])["event"] in ("cancelled", "result")
    deadline = time.monotonic() + 30
    while any(r["state"] == "busy" for r in client.status()["replicas"]):
        assert time.monotonic() < deadline, client.status()["replicas"]
        time.sleep(0.1)


def test_oversized_and_malformed_requests_are_refused_before_any_replica(preview):
    client = preview.client()
    done_before = sum(r["jobs_done"] for r in client.status()["replicas"])
    jobs_before = len(client.jobs())
    cases = [
        (b" " * (2 << 20), {}, 413, "too_large"),
        (b" " * (2 << 20), {"Transfer-Encoding": "chunked"}, 413, "too_large"),
        (b"{'job': 1", {}, 400, "bad_request"),
        (b"[1, 2]", {}, 400, "bad_request"),
        (b'{"job": {}, "priority": 1}', {}, 400, "bad_request"),
        (b'{"job": {"format": "trajmaster-job", "version": NaN}}', {}, 400, "bad_request"),
        (b'{"job": ' + b"[" * 50000 + b"]" * 50000 + b"}", {}, 400, "bad_request"),
        (b"\xff\xfe", {}, 400, "bad_request"),
        (b'{"job": {"format": "trajmaster-job", "version": 1}}', {}, 422, "bad_job"),
    ]
    bad_pose = make_job()
    bad_pose["entities"][0]["poses"][3][0] = 5.0
    cases.append((_json(bad_pose), {}, 422, "bad_job"))
    cases.append((_json(make_job(engine="cogvideox")), {}, 422, "unsupported"))
    for body, headers, status, code in cases:
        got, answer = preview.request(
            "POST", "/v1/jobs", body=body, headers={"Content-Type": "application/json", **headers}
        )
        assert (got, answer["code"]) == (status, code), (body[:60], answer)
        assert "Traceback" not in answer["message"] and len(answer["message"]) < 400
    got, answer = preview.request("POST", "/v1/jobs", body=cases[-2][0])
    assert "entities[0].poses[3]" in answer["message"]  # the job's own validator, with the field path
    for path, status, code in (
        ("/v1/jobs/0123456789abcdef0123456789abcdef", 404, "unknown_job"),
        ("/v1/jobs/../../etc/passwd", 404, "not_found"),
        ("/v1/jobs/" + "a" * 500 + "/events", 404, "unknown_job"),
        ("/v1/jobs/0123456789abcdef0123456789abcdef/events?after=-1", 422, "bad_request"),
        ("/v1/jobs/0123456789abcdef0123456789abcdef/files/etc", 404, "unknown_job"),
    ):
        got, answer = preview.request("GET", path)
        assert (got, answer["code"]) == (status, code), (path, answer)
    assert len(client.jobs()) == jobs_before
    assert sum(r["jobs_done"] for r in client.status()["replicas"]) == done_before


def _json(job):
    return json.dumps({"job": job}).encode()


def test_the_servers_take_is_byte_identical_to_the_local_clis(preview, tmp_path):
    job = make_job(paths=[((-3.0, 1.0), (2.0, -1.0)), ((2.0, 2.0), (-1.0, 0.0))])
    local = backend("generate", write_job(job, tmp_path / "shot.json"), "--out", tmp_path / "local", "--png")
    assert local.code == 0, local.stderr
    client = preview.client()
    job_id = client.submit(job, png=True)["id"]
    assert client.wait(job_id)["event"] == "result"
    take = client.fetch(job_id, tmp_path / "server", job_file=tmp_path / "shot.json")
    mine = local.last("result")
    with open(take["video"], "rb") as a, open(mine["video"], "rb") as b:
        assert a.read() == b.read()
    frames = sorted(os.listdir(take["png_dir"]))
    assert frames == sorted(os.listdir(mine["png_dir"])) and len(frames) == 49
    for name in frames:
        with open(os.path.join(take["png_dir"], name), "rb") as a, open(os.path.join(mine["png_dir"], name), "rb") as b:
            assert a.read() == b.read(), name
    assert set(take) == {"name", "video", "sidecar", "png_dir", "frames", "fps", "width", "height", "seconds"}
    assert (take["frames"], take["fps"], take["width"], take["height"]) == (49, 8, 720, 480)


def test_fetch_writes_a_take_with_the_local_rules(preview, tmp_path):
    client = preview.client()
    job_id = client.submit(make_job())["id"]
    assert client.wait(job_id)["event"] == "result"
    folder = tmp_path / "takes"
    folder.mkdir()
    (folder / "Scene_take_003.mp4").write_bytes(b"an earlier take")
    (folder / "Scene_take_003.json").write_text("{}")
    numbered = client.fetch(job_id, folder)
    assert numbered["name"] == "Scene_take_004"
    # The add-on reserves {name}.job.json first: that does not count as a take.
    (folder / "shot_b.job.json").write_text("{}")
    named = client.fetch(job_id, folder, "shot_b", job_file=folder / "shot_b.job.json")
    sidecar = json.loads(open(named["sidecar"]).read())
    assert (sidecar["name"], sidecar["video"]) == ("shot_b", "shot_b.mp4")
    assert sidecar["job_file"] == str(folder / "shot_b.job.json") and sidecar["server"]["job"] == job_id
    with pytest.raises(ServerError) as refused:
        client.fetch(job_id, folder, "Scene_take_003")
    assert refused.value.code == "bad_output"
    assert (folder / "Scene_take_003.mp4").read_bytes() == b"an earlier take"
    # A file damaged on the way is refused and leaves nothing behind.
    stored = preview.state / "jobs" / job_id / "files" / "take.mp4"
    stored.write_bytes(stored.read_bytes()[:-10] + b"0123456789")
    before = sorted(os.listdir(folder))
    with pytest.raises(ServerError) as damaged:
        client.fetch(job_id, folder, "shot_c")
    assert damaged.value.code == "bad_download"
    assert sorted(os.listdir(folder)) == before


def test_take_files_of_any_size_arrive_whole_and_a_damaged_one_among_them_leaves_nothing(preview, tmp_path):
    from backend.server.api import INLINE_FILE_BYTES

    client = preview.client()
    job_id = client.submit(make_job())["id"]
    assert client.wait(job_id)["event"] == "result"
    stored = preview.state / "jobs" / job_id / "files"
    folder = tmp_path / "takes"
    folder.mkdir()
    # The sidecar (downloaded at the same time as the video) damaged: nothing is written.
    (stored / "take.json").write_text((stored / "take.json").read_text().replace('"fps": 8', '"fps": 9'))
    with pytest.raises(ServerError) as damaged:
        client.fetch(job_id, folder)
    assert damaged.value.code == "bad_download" and "sidecar" in damaged.value.message
    assert os.listdir(folder) == []
    # A file larger than those answered in one piece is streamed, whole, with the same headers.
    large = os.urandom(INLINE_FILE_BYTES + 123457)
    for body in (large, large[:1000]):
        (stored / "take.mp4").write_bytes(body)
        request = urllib.request.Request(
            f"{preview.url}/v1/jobs/{job_id}/files/video", headers={"Authorization": f"Bearer {preview.token}"}
        )
        with urllib.request.urlopen(request, timeout=60) as answer:
            assert answer.read() == body
            assert answer.headers["Content-Type"] == "video/mp4" and answer.headers["Cache-Control"] == "no-store"
            assert answer.headers["X-Content-SHA256"] == client.job(job_id)["files"]["video"]["sha256"]
            assert 'filename="take.mp4"' in answer.headers["Content-Disposition"]


def test_a_job_nobody_follows_is_cancelled_after_the_grace_period_unless_detached(preview, pace):
    preview.wait_replicas(2)
    pace(0.3)
    client = preview.client()
    orphan = client.submit(make_job())["id"]
    kept = client.submit(make_job(), detach=True)["id"]
    submitted = time.monotonic()
    deadline = time.monotonic() + GRACE_S + 8
    while client.job(orphan)["state"] != "cancelled":
        assert time.monotonic() < deadline, "a job nobody followed kept running"
        time.sleep(0.2)
    assert "no client followed this job" in client.job(orphan)["outcome"]["message"]
    time.sleep(max(0.0, submitted + GRACE_S + 1 - time.monotonic()))
    assert client.job(kept)["state"] == "running"  # detached: nobody follows it, it goes on
    client.cancel(kept)


def test_a_dropped_event_stream_resumes_where_it_stopped_and_the_job_goes_on(preview, pace):
    pace(0.05)
    client = preview.client()
    job_id = client.submit(make_job())["id"]
    request = urllib.request.Request(
        f"{preview.url}/v1/jobs/{job_id}/events?after=0", headers={"Authorization": f"Bearer {preview.token}"}
    )
    seen = []
    with urllib.request.urlopen(request, timeout=30) as stream:  # the connection drops after 8 events
        while len(seen) < 8:
            event = json.loads(stream.readline())
            if "seq" in event:
                seen.append(event)
    rest = follow(client, job_id, after=seen[-1]["seq"])
    numbers = [e["seq"] for e in seen + rest if "seq" in e]
    assert numbers == list(range(1, len(numbers) + 1)), "events lost or repeated across the reconnection"
    assert rest[-1]["event"] == "result"


def test_a_client_that_disconnects_for_good_gets_its_job_cancelled(preview, pace):
    pace(0.3)
    client = preview.client()
    job_id = client.submit(make_job())["id"]
    follow(client, job_id, stop=started)  # the client goes away after the first frame
    deadline = time.monotonic() + GRACE_S + 6
    while client.job(job_id)["state"] == "running":
        assert time.monotonic() < deadline, "the job kept running without a client"
        time.sleep(0.2)
    assert client.job(job_id)["state"] == "cancelled"


def test_status_lists_the_replicas_and_the_queue_and_a_queued_job_cancels_without_running(preview, pace):
    preview.wait_replicas(2)
    pace(0.3)
    client = preview.client()
    ids = [client.submit(make_job(), detach=True)["id"] for _ in range(3)]
    deadline = time.monotonic() + 30
    while True:
        status = client.status()
        busy = [r for r in status["replicas"] if r["state"] == "busy"]
        if len(busy) == 2:
            break
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
    try:
        assert {r["job"] for r in busy} <= set(ids)
        assert all(r["warm"] and r["device"]["type"] == "cpu" and r["pid"] > 0 for r in status["replicas"])
        assert [q["position"] for q in status["queue"]] == [1]
        assert status["queue"][0]["id"] in ids and status["engine"] == "preview"
        assert status["scaling"] == {"mode": "fixed", "replicas": 2}
        assert {r["id"] for r in status["running"]} == {r["job"] for r in busy}
    finally:
        queued = status["queue"][0]["id"] if status["queue"] else None
        for job_id in sorted(ids, key=lambda i: i != queued):  # the queued one first, before a replica frees up
            client.cancel(job_id)
    info = client.job(queued)
    assert info["state"] == "cancelled" and info["replica"] is None and info["started"] is None
    assert kinds(follow(client, queued)) == ["stage", "cancelled"]


def test_out_of_memory_runs_the_job_again_in_the_next_lower_memory_mode(preview, ray_cluster):
    ray_cluster.out_of_memory_next()
    client = preview.client()
    job_id = client.submit(make_job())["id"]
    events = follow(client, job_id)
    fallbacks = [e for e in events if e["event"] == "warning" and e["code"] == "memory_fallback"]
    assert len(fallbacks) == 1 and "'balanced'" in fallbacks[0]["message"]
    assert events[-1]["event"] == "result"
    assert client.job(job_id)["attempts"] == 1  # the replica retried itself; it was not lost


def test_ctrl_c_in_submit_wait_cancels_the_job_on_the_server(preview, pace, tmp_path):
    pace(0.3)
    (tmp_path / "token").write_text(preview.token + "\n")
    command = [sys.executable, "-m", "backend", "submit", str(write_job(make_job(), tmp_path / "shot.json"))]
    command += ["--server", preview.url, "--token-file", str(tmp_path / "token"), "--out", str(tmp_path), "--wait"]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        events = []
        for line in proc.stdout:
            event = parse_line(line)
            if event:
                events.append(event)
                if event["event"] == "progress":
                    break
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 3
    finally:
        if proc.poll() is None:
            proc.kill()
    job_id = events[0]["job"]
    assert follow(preview.client(), job_id)[-1]["event"] == "cancelled"
    assert not list(tmp_path.glob("*.mp4"))


def test_a_server_restart_reports_unfinished_jobs_as_lost(preview, ray_cluster, pace, tmp_path):
    # Last in this module: it restarts the application (the gateway and the replicas).
    client = preview.client()
    finished = client.submit(make_job())["id"]
    assert client.wait(finished)["event"] == "result"
    pace(0.3)
    running = client.submit(make_job(), detach=True)["id"]
    follow(client, running, stop=started)
    stop_server(preview)
    start_server(
        ray_cluster, "preview", preview.state, preview.token, engine="preview", replicas=1, disconnect_grace_s=GRACE_S
    )
    client = preview.client()
    info = client.job(running)
    assert info["state"] == "lost"
    events = follow(client, running)
    assert events[-1]["event"] == "error" and events[-1]["code"] == "job_lost"
    assert "submit it again" in events[-1]["message"]
    with pytest.raises(ServerError) as lost:
        client.fetch(running, tmp_path)
    assert lost.value.code == "job_lost"
    assert client.fetch(finished, tmp_path)["frames"] == 49  # what was done survives the restart
