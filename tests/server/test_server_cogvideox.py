"""The server with one replica of the tiny cogvideox model (tests/tiny_models.py: the release's
folder layouts, the real diffusers classes), on the CPU: the model loads once per replica and the
take is the one `python -m backend generate` makes."""

from __future__ import annotations

import json

import pytest
import tiny_models
from cli import backend, write_job
from harness import follow, kinds, start_server, stop_server
from shots import make_job


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_models.build(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def cogvideox(ray_cluster, tiny, tmp_path_factory):
    server = start_server(
        ray_cluster,
        "cogvideox",
        tmp_path_factory.mktemp("cogvideox-state"),
        engine="cogvideox",
        replicas=1,
        model_args={"weights": str(tiny["weights"]), "device": "cpu"},
    )
    yield server
    stop_server(server)


def tiny_job(steps=3):
    sampling = {"height": tiny_models.HEIGHT, "width": tiny_models.WIDTH, "steps": steps, "annealed_steps": 1}
    return make_job(engine="cogvideox", sampling=sampling)


def test_the_model_is_loaded_once_per_replica_and_its_prompt_cache_kept(cogvideox, tmp_path):
    client = cogvideox.client()
    (replica,) = cogvideox.wait_replicas(1)
    assert replica["warm"] and replica["engine"] == "cogvideox" and replica["memory_mode"] == "full"
    sidecars = []
    for _ in range(2):
        job_id = client.submit(tiny_job())["id"]
        events = follow(client, job_id)
        assert kinds(events)[-1] == "result"
        stages = [e["stage"] for e in events if e["event"] == "stage"]
        assert "loading" not in stages  # the replica loaded the model when it started
        assert [e["step"] for e in events if e["event"] == "progress"] == [1, 2, 3]
        take = client.fetch(job_id, tmp_path)
        sidecars.append(json.loads(open(take["sidecar"]).read()))
    first, second = (s["metrics"]["prompt_cache"] for s in sidecars)
    assert second["misses"] == first["misses"] and second["hits"] > first["hits"]  # no prompt encoded twice


def test_the_servers_video_is_byte_identical_to_the_local_clis(cogvideox, tiny, tmp_path):
    job = tiny_job()
    path = write_job(job, tmp_path / "shot.json")
    local = backend("generate", path, "--out", tmp_path / "local", "--weights", tiny["weights"], "--device", "cpu")
    assert local.code == 0, local.stderr
    client = cogvideox.client()
    job_id = client.submit(job)["id"]
    assert client.wait(job_id)["event"] == "result"
    take = client.fetch(job_id, tmp_path / "server", job_file=path)
    with open(take["video"], "rb") as a, open(local.last("result")["video"], "rb") as b:
        assert a.read() == b.read()


def test_a_cluster_without_a_gpu_is_refused_with_a_sentence(ray_cluster, tmp_path):
    from backend.errors import UserError
    from backend.server.command import deploy
    from backend.server.settings import ServerConfig

    config = ServerConfig(engine="cogvideox", state_dir=str(tmp_path), token_sha256="0" * 64, replica_gpus=1.0)
    with pytest.raises(UserError) as refused:
        deploy(config, "127.0.0.1", ray_cluster.port, name="nogpu", route_prefix="/nogpu")
    assert "no GPU" in refused.value.message and "--engine preview" in refused.value.hint
