"""The team server's tests: a real local Ray cluster, the real Serve application, HTTP on 127.0.0.1.

The cluster is started once, by the first test that asks for it (so collecting or running other
tests never starts Ray), on ports Ray and the OS choose at run time (other Ray clusters may run
on this machine at the same time), and shut down when the last test of this folder is done. Each
test module deploys its application (the preview engine with 2 replicas, the tiny cogvideox
model with 1) under its own route prefix, through the same `deploy` the `server` command uses.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: shots, cli, tiny_models

import faults
from harness import Cluster, free_port

_HERE = Path(__file__).resolve().parent
_shutdowns: list = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """Stop Ray as soon as the last server test is done (a session fixture would keep it up, using
    memory and CPU, while the rest of the suite runs); pytest's "package" scope cannot be used
    here: the repository root is itself a package (the extension's __init__.py)."""
    yield
    if nextitem is None or _HERE not in Path(nextitem.path).resolve().parents:
        while _shutdowns:
            _shutdowns.pop()()


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    with warnings.catch_warnings():  # Ray Serve's own pydantic deprecation warnings, not ours
        warnings.simplefilter("ignore", DeprecationWarning)
        import ray
        from ray import cloudpickle, serve

    from backend.server.app import runtime_env

    folder = tmp_path_factory.mktemp("faults")
    faults.set_pace(folder, 0.0)
    cloudpickle.register_pickle_by_value(faults)  # the hook runs in Ray's workers, which cannot import tests/
    env = runtime_env()
    env["worker_process_setup_hook"] = faults.install
    env["env_vars"] = {faults.FAULTS_ENV: str(folder)}
    ray.init(
        address="local",  # always a new cluster of our own, never one found on the machine
        num_cpus=4,  # logical: two preview replicas, one model replica, headroom; the gateways need none
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        runtime_env=env,
    )
    port = free_port()
    serve.start(
        proxy_location="HeadOnly",
        http_options={"host": "127.0.0.1", "port": port},
        logging_config={"enable_access_log": False},
    )

    def shutdown() -> None:
        if ray.is_initialized():
            serve.shutdown()
            ray.shutdown()

    _shutdowns.append(shutdown)
    try:
        yield Cluster(port, folder)
    finally:
        shutdown()


@pytest.fixture
def pace(ray_cluster):
    """Set how long each preview frame takes in the replicas; back to full speed afterwards."""
    yield ray_cluster.pace
    ray_cluster.pace(0.0)
