"""What the server tests share: a deployed application (Server), following a job's events."""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faults

from backend.client import Client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Cluster:
    port: int
    faults: Path

    def pace(self, seconds_per_frame: float) -> None:
        """Hold every preview frame back this long in the replicas (faults.py)."""
        faults.set_pace(self.faults, seconds_per_frame)

    def out_of_memory_next(self) -> None:
        faults.out_of_memory_next(self.faults)


@dataclass
class Server:
    name: str
    url: str
    token: str
    state: Path
    config: Any

    def client(self, **kw) -> Client:
        return Client(self.url, self.token, **kw)

    def request(self, method: str, path: str, body: bytes | None = None, token: str | None = None, headers=None):
        """A raw HTTP request: (status, JSON body or text)."""
        heads = {"Authorization": f"Bearer {self.token if token is None else token}", **(headers or {})}
        if token == "":
            heads.pop("Authorization")
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=heads)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode("utf-8", "replace")

    def wait_replicas(self, count: int, timeout: float = 120) -> list[dict]:
        """Until `count` replicas are up and idle (Serve replaces a killed one)."""
        deadline = time.monotonic() + timeout
        while True:
            replicas = self.client().status()["replicas"]
            if len([r for r in replicas if r["state"] == "idle"]) >= count:
                return replicas
            assert time.monotonic() < deadline, f"replicas: {replicas}"
            time.sleep(0.5)


def start_server(cluster: Cluster, name: str, state: Path, token: str | None = None, **fields: Any) -> Server:
    from backend.server.api import token_digest
    from backend.server.command import deploy
    from backend.server.settings import ServerConfig

    token = token or secrets.token_urlsafe(16)
    config = ServerConfig(state_dir=str(state), token_sha256=token_digest(token), **fields)
    deploy(config, "127.0.0.1", cluster.port, name=name, route_prefix=f"/{name}")
    return Server(name, f"http://127.0.0.1:{cluster.port}/{name}", token, state, config)


def stop_server(server: Server) -> None:
    from ray import serve

    serve.delete(server.name)


def follow(client: Client, job_id: str, after: int = 0, stop=None, timeout: float = 180) -> list[dict]:
    """The job's events (from `after`) until its final event or until `stop(event)` is true."""
    events: list[dict] = []
    failure: list[BaseException] = []

    def read() -> None:
        stream = client.events(job_id, after)
        try:
            for event in stream:
                events.append(event)
                if stop is not None and stop(event):
                    return
        except BaseException as exc:
            failure.append(exc)
        finally:
            stream.close()  # closes the connection: the server sees this client go

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    assert not reader.is_alive(), f"timed out; events so far: {[e['event'] for e in events]}"
    if failure:
        raise failure[0]
    return events


def kinds(events: list[dict]) -> list[str]:
    return [e["event"] for e in events if e["event"] != "heartbeat"]
