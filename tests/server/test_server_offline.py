"""The parts of the team server that need no Ray: the job book across restarts, the client's
failures as sentences, the client in a Python without numpy, the token file, the published
OpenAPI description."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from cli import ROOT, backend
from harness import free_port
from shots import make_job

from backend.client import Client, ServerError
from backend.server.book import JobBook

# ---------------------------------------------------------------- the job book


def test_a_restarted_book_reports_unfinished_jobs_as_lost_and_keeps_finished_ones(tmp_path):
    book = JobBook(tmp_path, keep_hours=24)
    done = book.new(make_job(), engine="preview", png=False, detach=False)
    book.emit(done, "stage", stage="queued", message="Waiting")
    book.finish(done, "done", "result", name="take", frames=49)
    running = book.new(make_job(), engine="preview", png=False, detach=True)
    running.state = "running"
    book.save(running)
    for k in range(3):
        book.emit(running, "progress", stage="rendering", step=k + 1, total=49)
    (book.staging_dir(running)).mkdir()
    with open(book.job_dir(running) / "events.jsonl", "a") as f:
        f.write('{"event": "progress", "seq": 5, "ste')  # cut short by the crash

    again = JobBook(tmp_path, keep_hours=24)
    lost = again.load()
    assert [r.id for r in lost] == [running.id]
    record = again.get(running.id)
    assert record.state == "lost"
    assert [e["seq"] for e in record.events] == [1, 2, 3, 4]
    assert record.events[-1]["event"] == "error" and record.events[-1]["code"] == "job_lost"
    assert "submit it again" in record.events[-1]["message"]
    assert not list(again.job_dir(record).glob("attempt-*"))
    assert again.get(done.id).state == "done" and again.get(done.id).events[-1]["event"] == "result"
    # Loading twice changes nothing more: the lost job is reported once.
    assert JobBook(tmp_path, keep_hours=24).load() == []


def test_finished_jobs_are_forgotten_after_the_retention_time(tmp_path):
    book = JobBook(tmp_path, keep_hours=1)
    old = book.new(make_job(), engine="preview", png=False, detach=False)
    book.finish(old, "cancelled", "cancelled", message="Cancelled")
    active = book.new(make_job(), engine="preview", png=False, detach=False)
    assert book.sweep(now=time.time() + 3599) == []
    assert book.sweep(now=time.time() + 3601) == [old.id]
    assert not book.job_dir(old).exists() and book.get(active.id) is not None


def test_job_ids_are_made_by_the_server_and_never_taken_from_a_client(tmp_path):
    book = JobBook(tmp_path, keep_hours=1)
    job = make_job()
    job["shot"]["scene_name"] = "../../etc"
    record = book.new(job, engine="preview", png=False, detach=False)
    assert len(record.id) == 32 and int(record.id, 16) >= 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [record.id]
    assert book.get("../" + record.id) is None and book.get(record.id) is record


# ---------------------------------------------------------------- the client, standard library only


def test_the_client_imports_and_runs_without_numpy_or_any_installed_package():
    blocked = ["numpy", "jsonschema", "PIL", "imageio_ffmpeg", "ray", "fastapi", "pydantic", "torch", "starlette"]
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {blocked!r}:\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from backend.client import Client, ServerError\n"
        "c = Client('http://127.0.0.1:9', 'token')\n"
        "try:\n"
        "    c.status()\n"
        "except ServerError as exc:\n"
        "    print(exc.code)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "unreachable"


def test_an_unreachable_server_is_one_sentence_without_the_token():
    port = free_port()
    with pytest.raises(ServerError) as failed:
        Client(f"127.0.0.1:{port}", "s3cret-token").status()
    assert failed.value.code == "unreachable"
    message = str(failed.value)
    assert f"http://127.0.0.1:{port}" in message and "s3cret" not in message and message.count(". ") == 0


def test_a_silent_server_times_out_with_a_sentence():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # accepts the connection, never answers
        with pytest.raises(ServerError) as failed:
            Client(f"http://127.0.0.1:{listener.getsockname()[1]}", "t", timeout=1.0).status()
    assert failed.value.code == "timeout"


class _NotOurs(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"<html><body>Welcome to nginx</body></html>"
        self.send_response(404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_something_else_at_the_address_is_named_as_such():
    httpd = HTTPServer(("127.0.0.1", 0), _NotOurs)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        with pytest.raises(ServerError) as failed:
            Client(f"http://127.0.0.1:{httpd.server_port}", "t").status()
    finally:
        httpd.shutdown()
    assert failed.value.code == "not_a_server"
    assert "is a TrajMaster server running there" in str(failed.value)


@pytest.mark.parametrize("url", ["ftp://host/x", "http://", "http://host:port", ""])
def test_a_bad_address_is_refused_before_any_connection(url):
    with pytest.raises(ServerError) as failed:
        Client(url, "t")
    assert failed.value.code == "bad_url"


def test_a_missing_or_empty_token_file_is_one_sentence(tmp_path):
    with pytest.raises(ServerError) as missing:
        Client("http://127.0.0.1:1", token_file=tmp_path / "none")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ServerError) as empty:
        Client("http://127.0.0.1:1", token_file=tmp_path / "empty")
    assert missing.value.code == empty.value.code == "bad_token_file"
    assert "empty" in str(empty.value)


def test_following_a_job_on_a_server_that_went_away_gives_up_with_a_sentence():
    started = time.monotonic()
    with pytest.raises(ServerError) as failed:
        list(Client(f"http://127.0.0.1:{free_port()}", "t").events("0" * 32, after=7, reconnect_s=2))
    assert 1.5 < time.monotonic() - started < 30
    assert "after event 7" in str(failed.value) and "may still be running" in str(failed.value)


def test_server_status_of_an_unreachable_server_exits_1_with_one_error_event(tmp_path):
    (tmp_path / "token").write_text("t\n")
    run = backend("server-status", "--server", f"http://127.0.0.1:{free_port()}", "--token-file", tmp_path / "token")
    assert run.code == 1 and run.kinds() == ["error"] and run.last("error")["code"] == "unreachable"
    assert "Traceback" not in run.stderr


# ---------------------------------------------------------------- the server's own files


def test_the_token_file_is_made_once_private_and_printed_only_then(tmp_path, capsys):
    from backend.cli import build_parser
    from backend.server import command

    args = build_parser().parse_args(["server", "--engine", "preview", "--state", str(tmp_path / "state")])
    first = command._config(args)
    printed = capsys.readouterr().err
    token = (tmp_path / "state" / "token").read_text().strip()
    assert token in printed and oct((tmp_path / "state" / "token").stat().st_mode & 0o777) == "0o600"
    second = command._config(args)
    assert token not in capsys.readouterr().err
    assert first.token_sha256 == second.token_sha256 and token not in json.dumps(first.as_dict())


def test_the_published_openapi_description_is_the_one_the_server_generates(tmp_path):
    run = backend("server", "--openapi", tmp_path / "openapi.json", timeout=60)
    assert run.code == 0, run.stderr
    generated = json.loads((tmp_path / "openapi.json").read_text())
    published = json.loads((ROOT / "docs" / "openapi.json").read_text())
    assert published == generated, "docs/openapi.json is stale: python -m backend server --openapi docs/openapi.json"
    assert set(generated["paths"]) >= {"/v1/jobs", "/v1/jobs/{job_id}/events", "/v1/status"}
    assert generated["security"] == [{"token": []}]
    job = generated["components"]["schemas"]["Job"]
    assert job["properties"]["entities"]["items"]["properties"]["poses"]["items"] == {
        "$ref": "#/components/schemas/Job_pose"
    }


def test_bad_weights_stop_the_server_command_before_ray_starts(tmp_path):
    run = backend(
        "server", "--state", tmp_path / "state", "--weights", tmp_path / "none", "--port", str(free_port()), timeout=120
    )
    assert run.code == 2
    assert run.last("error")["code"] == "bad_weights" and "Traceback" not in run.stderr
    assert "ready" not in run.kinds()


def test_replicas_map_to_ray_serve_one_job_each_fixed_or_autoscaled_on_the_queue():
    from backend.server.app import model_options
    from backend.server.settings import ServerConfig

    fixed = model_options(ServerConfig(engine="cogvideox", replicas=4, replica_gpus=1.0))
    assert fixed["num_replicas"] == 4 and fixed["max_ongoing_requests"] == 1
    assert fixed["ray_actor_options"]["num_gpus"] == 1.0 and "autoscaling_config" not in fixed
    auto = model_options(ServerConfig(engine="cogvideox", min_replicas=1, max_replicas=8, replica_gpus=1.0))
    assert "num_replicas" not in auto and auto["max_ongoing_requests"] == 1
    assert auto["autoscaling_config"]["min_replicas"] == 1 and auto["autoscaling_config"]["max_replicas"] == 8
    assert auto["autoscaling_config"]["target_ongoing_requests"] == 1  # queued jobs count: one job per replica
    preview = model_options(ServerConfig(engine="preview", replicas=2))
    assert preview["ray_actor_options"] == {"num_cpus": 1.0, "num_gpus": 0.0}


def test_the_local_backend_needs_no_ray_nor_fastapi(tmp_path):
    from cli import write_job

    path = write_job(make_job(), tmp_path / "shot.json")
    blocked = ["ray", "fastapi", "starlette", "pydantic", "uvicorn"]
    code = (
        "import runpy, sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {blocked!r}:\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        f"sys.argv = ['backend', 'generate', {str(path)!r}, '--out', {str(tmp_path / 'takes')!r}]\n"
        "runpy.run_module('backend', run_name='__main__', alter_sys=True)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert sorted(p.suffix for p in (tmp_path / "takes").iterdir()) == [".json", ".mp4"]


# ---------------------------------------------------------------- the take's files, the benchmark


def test_a_take_file_from_a_replica_is_checked_as_its_pieces_arrive(tmp_path):
    import hashlib
    import os

    from backend.server.gateway import _receive_chunk

    data = os.urandom(10_000)
    digest = hashlib.sha256(data).hexdigest()

    def piece(offset, chunk, sha):
        return {"role": "video", "name": "../take.mp4", "offset": offset, "data": chunk, "size": 10_000, "sha256": sha}

    received, digests = {}, {}
    _receive_chunk(tmp_path, piece(0, data[:4000], None), received, digests)
    assert received == {}  # not complete yet
    _receive_chunk(tmp_path, piece(4000, data[4000:], digest), received, digests)
    assert received == {"video": {"name": "take.mp4", "bytes": 10_000, "sha256": digest}}
    assert (tmp_path / "take.mp4").read_bytes() == data  # a plain name in the staging folder only

    received = {}
    _receive_chunk(tmp_path, piece(0, data[:4000], None), received, digests)
    with pytest.raises(RuntimeError, match="video file arrived damaged"):
        _receive_chunk(tmp_path, piece(4000, data[4000:-1] + b"!", digest), received, digests)
    assert received == {}
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(RuntimeError, match="out of order"):
        _receive_chunk(tmp_path / "elsewhere", piece(4000, data[4000:], digest), received, digests)


def test_the_benchmarks_local_side_is_the_add_ons_worker_process(tmp_path):
    """`bench --server` measures the server against what the add-on runs on its own machine: a
    `python -m backend serve` worker, the job file on disk, a request on its stdin, the take
    published by the worker, the result event read from its stdout."""
    import argparse
    import os

    from backend.server.bench import _LocalWorker

    local = _LocalWorker(make_job(), argparse.Namespace(), tmp_path / "local")
    try:
        seconds = [local.run(), local.run()]
        worker = local.process.pid
    finally:
        local.close()
    assert local.process.returncode == 0 and worker != os.getpid()
    assert all(s > 0 for s in seconds)
    assert sorted(os.listdir(tmp_path / "local")) == [
        "Scene_take_001.json",
        "Scene_take_001.mp4",
        "Scene_take_002.json",
        "Scene_take_002.mp4",
        "bench.job.json",
    ]
