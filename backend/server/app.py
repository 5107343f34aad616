"""The Ray Serve application: the gateway (ingress, one replica) in front of the model deployment.

`build(config)` is what `python -m backend server` runs; `from_args` is the same application for
a Serve config file (`import_path: backend.server.app:from_args`), which is how a KubeRay
RayService or `serve deploy` runs it (docs/server.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import engines
from .settings import ServerConfig

BACKEND_DIR = Path(__file__).resolve().parents[1]


def runtime_env() -> dict[str, Any]:
    """The backend package travels to every node through Ray (its Python packages must be
    installed there: the same environment on every machine). It is the Ray job's runtime
    environment (`ray.init(runtime_env=...)`), which the application's deployments inherit."""
    return {"py_modules": [str(BACKEND_DIR)], "excludes": ["__pycache__", "*.pyc"]}


def model_options(config: ServerConfig) -> dict[str, Any]:
    options: dict[str, Any] = {
        "name": "Model",
        # One job at a time per replica: the engine owns the whole GPU while it renders.
        "max_ongoing_requests": 1,
        "ray_actor_options": {"num_cpus": config.replica_cpus, "num_gpus": config.replica_gpus},
        # A model that cannot load (bad weights) fails the start instead of being retried forever.
        "max_constructor_retry_count": 3,
        "health_check_period_s": 10.0,
        "graceful_shutdown_timeout_s": 5.0,
    }
    if config.autoscaling:
        options["autoscaling_config"] = {
            "min_replicas": config.min_replicas if config.min_replicas is not None else 1,
            "max_replicas": config.max_replicas if config.max_replicas is not None else config.min_replicas,
            # Ongoing requests include the queued ones: one job per replica is the target.
            "target_ongoing_requests": 1,
            "upscale_delay_s": 5.0,
            "downscale_delay_s": 600.0,
        }
    else:
        options["num_replicas"] = config.replicas
    return options


def gateway_options(config: ServerConfig) -> dict[str, Any]:
    actor: dict[str, Any] = {"num_cpus": 0}
    if config.gateway_resource:
        # The job book lives in a folder on one machine: the gateway always runs there.
        actor["resources"] = {config.gateway_resource: 0.001}
    return {
        "name": "Gateway",
        "num_replicas": 1,
        # Every client following a job holds a request open here.
        "max_ongoing_requests": 10_000,
        "ray_actor_options": actor,
        "graceful_shutdown_timeout_s": 2.0,
    }


def build(config: ServerConfig) -> Any:
    from ray import serve

    from .gateway import Gateway
    from .replica import ModelReplica

    if config.engine not in engines.ENGINE_NAMES:
        raise ValueError(f"unknown engine {config.engine!r}")
    model = serve.deployment(ModelReplica, **model_options(config))
    gateway = serve.deployment(serve.ingress()(Gateway), **gateway_options(config))
    data = config.as_dict()
    return gateway.bind(model.bind(data), data)


def from_args(args: dict[str, Any]) -> Any:
    """A Serve config file's application builder. `args` are ServerConfig's fields, with
    `token_file` (read here) instead of `token_sha256`; the state folder must be on the node the
    gateway runs on (the head node, by default)."""
    from .api import token_digest
    from .tokens import ensure_token

    data = dict(args)
    token, _ = ensure_token(data.pop("token_file"))
    data["token_sha256"] = token_digest(token)
    data.setdefault("gateway_resource", "node:__internal_head__")
    return build(ServerConfig.from_dict(data))
