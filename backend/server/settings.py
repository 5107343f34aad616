"""The server's settings: plain data, handed from the `server` command (or a Serve config file)
to the gateway and the model replicas."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# Enough for the largest valid job (3 entities with 49 video poses each is about 60 kB).
DEFAULT_MAX_REQUEST_BYTES = 1 << 20
DEFAULT_MAX_JOBS = 1000
DEFAULT_DISCONNECT_GRACE_S = 30.0
DEFAULT_KEEP_HOURS = 24.0
DEFAULT_PORT = 8765
# The engine options of `python -m backend generate` (backend/cogvideox/commands.py), as their defaults.
MODEL_ARG_DEFAULTS: dict[str, Any] = {
    "weights": None,
    "base": None,
    "injector": None,
    "lora": None,
    "device": "auto",
    "dtype": "auto",
    "memory": "auto",
    "compile": False,
    "quantize": "none",
    "attention": "auto",
    "gpus": 1,
}


@dataclass
class ServerConfig:
    engine: str = "preview"
    # The engine's options as `python -m backend generate` takes them (weights, device, memory...).
    model_args: dict[str, Any] = field(default_factory=dict)
    state_dir: str = ""
    token_sha256: str = ""
    replicas: int | None = 1
    min_replicas: int | None = None
    max_replicas: int | None = None
    replica_gpus: float = 0.0
    replica_cpus: float = 1.0
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_jobs: int = DEFAULT_MAX_JOBS
    disconnect_grace_s: float = DEFAULT_DISCONNECT_GRACE_S
    keep_hours: float = DEFAULT_KEEP_HOURS
    # Silent event streams get a heartbeat line this often, so proxies and clients see a live link.
    stream_heartbeat_s: float = 10.0
    # How often replicas tell the gateway their state; a replica not heard from for 4 periods is gone.
    replica_report_s: float = 2.0
    # The Ray node resource the gateway is pinned to (its state folder is on that machine).
    gateway_resource: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServerConfig:
        return cls(**data)

    @property
    def autoscaling(self) -> bool:
        return self.min_replicas is not None or self.max_replicas is not None

    def scaling(self) -> dict[str, Any]:
        if self.autoscaling:
            return {"mode": "auto", "min_replicas": self.min_replicas, "max_replicas": self.max_replicas}
        return {"mode": "fixed", "replicas": self.replicas}
