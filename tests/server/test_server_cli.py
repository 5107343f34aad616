"""`python -m backend server`, `submit`, `fetch` and `server-status` as a team runs them: the real
command starts its own Ray cluster on this machine, and stops it on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest
from cli import ROOT, backend, write_job
from harness import free_port
from shots import make_job

from backend.events import parse_line


class ServerProcess:
    def __init__(self, *args: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "backend", "server", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # Ctrl-C in the test runner must not reach it; we send our own
        )
        self.events: list[dict] = []
        self.stderr: list[str] = []
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()

    def _read_stdout(self) -> None:
        for line in self.proc.stdout:
            event = parse_line(line)
            if event is not None:
                self.events.append(event)

    def wait_for(self, kind: str, timeout: float = 240) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.events if e["event"] in (kind, "error")]
            if found:
                assert found[0]["event"] == kind, f"{found[0]}\n{''.join(self.stderr)}"
                return found[0]
            assert self.proc.poll() is None, f"the server exited {self.proc.returncode}:\n{''.join(self.stderr)}"
            assert time.monotonic() < deadline, "".join(self.stderr)
            time.sleep(0.2)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                return self.proc.wait(90)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(30)
                raise
        return self.proc.returncode


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    state = tmp_path_factory.mktemp("server-state")
    port = free_port()
    process = ServerProcess(
        "--engine", "preview", "--replicas", "1", "--port", str(port), "--state", str(state), "--dashboard-port", "0"
    )
    try:
        ready = process.wait_for("ready")
        process.url, process.port, process.state = ready["url"], port, state
        process.ray = [p for p in psutil.Process(process.proc.pid).children(recursive=True)]
        yield process
    finally:
        code = process.stop()
        assert code == 0, "".join(process.stderr)


def test_the_first_start_makes_a_private_token_and_prints_it_once(server):
    token_file = server.state / "token"
    assert oct(token_file.stat().st_mode & 0o777) == "0o600"
    token = token_file.read_text().strip()
    assert len(token) >= 32
    assert sum(token in line for line in server.stderr) == 1
    assert server.url == f"http://127.0.0.1:{server.port}"


def test_it_listens_on_127_0_0_1_only_and_its_ray_cluster_requires_a_token(server):
    listening = [
        c for c in psutil.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN and c.laddr.port == server.port
    ]
    assert listening and {c.laddr.ip for c in listening} == {"127.0.0.1"}
    gcs = [p for p in server.ray if p.name().startswith("gcs_server")]
    assert gcs, [p.name() for p in server.ray]
    assert gcs[0].environ().get("RAY_AUTH_MODE") == "token"


def test_server_status_exits_0_with_the_token_and_2_without(server, tmp_path):
    ok = backend("server-status", "--server", server.url, "--token-file", server.state / "token", timeout=60)
    assert ok.code == 0, ok.stderr
    assert "replica" in ok.stderr and "preview" in ok.stderr
    (tmp_path / "wrong").write_text("not-the-token\n")
    refused = backend("server-status", "--server", server.url, "--token-file", tmp_path / "wrong", timeout=60)
    assert refused.code == 2
    error = refused.last("error")
    assert error["code"] == "unauthorized" and "not-the-token" not in refused.stderr + refused.stdout
    assert "Traceback" not in refused.stderr


def test_submit_wait_runs_several_jobs_and_writes_their_takes(server, tmp_path):
    jobs = [write_job(make_job(), tmp_path / f"shot{k}.json") for k in range(2)]
    token = ("--token-file", server.state / "token")
    run = backend("submit", *jobs, "--server", server.url, *token, "--out", tmp_path / "takes", "--wait", timeout=300)
    assert run.code == 0, run.stderr
    results = [e for e in run.events if e["event"] == "result"]
    assert sorted(r["name"] for r in results) == ["Scene_take_001", "Scene_take_002"]
    assert all(os.path.isfile(r["video"]) and os.path.isfile(r["sidecar"]) for r in results)
    sidecar = json.loads(open(results[0]["sidecar"]).read())
    assert sidecar["job_file"] in {str(j) for j in jobs}
    assert any(e["event"] == "progress" for e in run.events)  # the server's events, relayed

    # Without --wait: the jobs are queued detached, and `fetch` picks them up later.
    queued = backend("submit", jobs[0], "--server", server.url, *token, "--out", tmp_path / "takes", timeout=60)
    assert queued.code == 0, queued.stderr
    job_id = queued.last("log")["job"]
    fetched = backend("fetch", job_id, "--server", server.url, *token, "--out", tmp_path / "takes", timeout=300)
    assert fetched.code == 0, fetched.stderr
    assert fetched.last("result")["name"] == "Scene_take_003"


def test_a_bad_job_file_is_refused_before_anything_is_sent(server, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "trajmaster-job", "version": 1}')
    token = ("--token-file", server.state / "token")
    run = backend("submit", bad, "--server", server.url, *token, "--out", tmp_path / "takes", "--wait", timeout=60)
    assert run.code == 2
    assert run.last("error")["code"] == "bad_job"
    assert not (tmp_path / "takes").exists()


def test_ctrl_c_stops_the_server_and_its_ray_cluster(server):
    # Last in this module: stops the server the others used.
    assert server.stop() == 0
    assert server.events[-1]["event"] == "bye"
    deadline = time.monotonic() + 30
    while [p for p in server.ray if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]:
        assert time.monotonic() < deadline, [p.name() for p in server.ray if p.is_running()]
        time.sleep(0.5)
