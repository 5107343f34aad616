"""The client of a TrajMaster server (docs/server.md, "Client"): submit a job, follow its events
(resuming after a lost connection), cancel it, see the queue and the replicas, and fetch the
finished take into a local take folder with the same rules as a take made locally.

Standard library only at import time; `fetch` uses backend/takes.py (the local take rules),
which needs numpy, as Blender's own Python has.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import time
from collections.abc import Iterator
from typing import Any

from .transport import DEFAULT_TIMEOUT_S, ServerError, Transport, read_token_file

FINAL_EVENTS = ("result", "error", "cancelled")
_FROM_RESULT = ("shot", "files", "attempts", "replica")
TOKEN_ENV = "TRAJMASTER_TOKEN"
# An event stream is silent for at most the server's heartbeat period (10 s); a read that waits
# longer than this means the link is dead.
STREAM_READ_TIMEOUT_S = 35.0


def new_request_key() -> str:
    """A fresh Idempotency-Key for one submission (random, 32 URL-safe characters)."""
    return secrets.token_urlsafe(24)


class Client:
    """One server. `token` (or `token_file`, or $TRAJMASTER_TOKEN) is its access token."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        token_file: str | os.PathLike[str] | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        token_source: str | None = None,
    ):
        """`token_source` names where the token came from in the sentence a refused token gives
        ("did not accept the token in the add-on's preferences"); never the token itself."""
        if token is None and token_file is not None:
            token, source = read_token_file(token_file), f"the token in {token_file}"
        elif token is None and os.environ.get(TOKEN_ENV):
            token, source = os.environ[TOKEN_ENV].strip(), f"the token in ${TOKEN_ENV}"
        elif token is None:
            raise ServerError(
                "bad_token_file", f"No token for the server: give its token file (--token-file) or set ${TOKEN_ENV}."
            )
        else:
            source = "the token"
        self.http = Transport(url, token, timeout, token_source=token_source or source)
        # The last result event seen of each job: it lists the take's files, so `fetch` after
        # `events` needs no request to learn them.
        self._results: dict[str, dict[str, Any]] = {}

    @property
    def url(self) -> str:
        return self.http.url

    # ------------------------------------------------------------ the server

    def status(self) -> dict[str, Any]:
        """The server's engine, replicas (device name, state: loading/idle/busy/cold, current
        job, warm), queue (in order), running jobs, scaling and limits."""
        return self.http.call("GET", "/status")

    # ------------------------------------------------------------ jobs

    def submit(
        self, job: dict[str, Any], *, png: bool = False, detach: bool = False, request_key: str | None = None
    ) -> dict[str, Any]:
        """Queue a job (the job file's JSON). Returns {"id", "state", "position", ...}. Without
        `detach` the server cancels the job when nobody follows its events for its grace period.
        `request_key` (new_request_key()): sending the same job again with the same key after a
        timeout or a dropped connection gives the job queued the first time, never a second one."""
        headers = {"Idempotency-Key": request_key} if request_key else None
        return self.http.call("POST", "/jobs", body={"job": job, "png": png, "detach": detach}, headers=headers)

    def job(self, job_id: str) -> dict[str, Any]:
        """State (queued, running, done, failed, cancelled, lost), attempts, replica, stage,
        fraction, outcome (the final event) and files."""
        return self.http.call("GET", f"/jobs/{job_id}")

    def jobs(self) -> list[dict[str, Any]]:
        return self.http.call("GET", "/jobs")

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Stop the job at its next step boundary (a queued job never starts)."""
        return self.http.call("POST", f"/jobs/{job_id}/cancel")

    def forget(self, job_id: str) -> None:
        """Cancel the job if it runs, and delete it and its files on the server."""
        self.http.call("DELETE", f"/jobs/{job_id}")

    def events(self, job_id: str, after: int = 0, *, reconnect_s: float = 60.0) -> Iterator[dict[str, Any]]:
        """The job's events from number `after` + 1 on, live, ending with its final event
        (result, error or cancelled). Each event has `seq`; heartbeats (no `seq`) come when
        nothing else does. A lost connection is re-opened where it stopped for up to
        `reconnect_s` seconds; after that, or when the server no longer knows the job,
        ServerError. Stop iterating at any time: the job goes on (see `submit`'s `detach`)."""
        last = after
        deadline = None
        while True:
            try:
                for event in self._stream(job_id, last):
                    deadline = None
                    if isinstance(event.get("seq"), int):
                        last = event["seq"]
                    if event.get("event") == "result" and "files" in event:
                        self._results[job_id] = event
                    yield event
                    if event.get("event") in FINAL_EVENTS:
                        return
                if self._ended(job_id, last):
                    return
                problem = ServerError("connection_lost", f"The connection to the server at {self.url} was lost.")
            except ServerError as exc:
                if exc.code not in ("connection_lost", "timeout", "unreachable"):
                    raise
                problem = exc
            now = time.monotonic()
            deadline = deadline or now + reconnect_s
            if now >= deadline:
                raise ServerError(
                    problem.code,
                    f"{problem.message.rstrip('.')}; stopped trying after {reconnect_s:g} s. The job may still be "
                    f"running: follow it again later (job {job_id}, after event {last}).",
                )
            time.sleep(min(2.0, max(deadline - now, 0.0)))

    def _ended(self, job_id: str, last: int) -> bool:
        """A stream that closed without a final event: over, if the job ended at or before `last`."""
        info = self.job(job_id)
        return info.get("state") not in ("queued", "running") and last >= int(info.get("last_seq") or 0)

    def _stream(self, job_id: str, after: int) -> Iterator[dict[str, Any]]:
        response = self.http.open(
            "GET", f"/jobs/{job_id}/events", query={"after": after}, timeout=STREAM_READ_TIMEOUT_S
        )
        with response:
            while True:
                try:
                    line = response.readline(1 << 20)
                except (OSError, http.client.HTTPException) as exc:
                    raise self.http.network_error(exc) from None
                if not line:
                    return
                try:
                    event = json.loads(line)
                except ValueError:
                    continue  # a line cut by a dropped connection; the resume re-reads it
                if isinstance(event, dict) and isinstance(event.get("event"), str):
                    yield event

    def wait(self, job_id: str, after: int = 0, on_event: Any = None, reconnect_s: float = 60.0) -> dict[str, Any]:
        """Follow the job to its final event and return it (calling `on_event` for each)."""
        final: dict[str, Any] = {}
        for event in self.events(job_id, after, reconnect_s=reconnect_s):
            if on_event is not None:
                on_event(event)
            final = event
        return final

    def fetch(
        self,
        job_id: str,
        folder: str | os.PathLike[str],
        name: str | None = None,
        *,
        job_file: str | os.PathLike[str] | None = None,
    ) -> dict[str, Any]:
        """Write a finished job's take into `folder` as a local take: `name` (which must not be
        a take there yet: a reserved `{name}.job.json` is fine), or `{shot}_take_NNN` numbered
        locally. Whole or absent, never over an existing take. Returns the fields of a local
        `result` event: name, video, sidecar, png_dir, frames, fps, width, height, seconds."""
        from .fetch import fetch_take

        result = self._results.get(job_id)
        if result is not None:
            info = {"id": job_id, "state": "done", "outcome": result, **{k: result.get(k) for k in _FROM_RESULT}}
        else:
            info = self.job(job_id)
        if info.get("state") != "done":
            raise _not_done(job_id, info)
        return fetch_take(self, info, folder, name, job_file=job_file)


def _not_done(job_id: str, info: dict[str, Any]) -> ServerError:
    state = info.get("state")
    outcome = info.get("outcome") or {}
    if state in ("queued", "running"):
        return ServerError("not_finished", f"Job {job_id} has not finished yet ({state}).", status=409)
    if state == "lost":
        return ServerError("job_lost", outcome.get("message") or f"Job {job_id} was lost.")
    if outcome.get("message"):
        return ServerError(str(outcome.get("code") or state), outcome["message"], outcome.get("hint"))
    return ServerError("not_finished", f"Job {job_id} has no take ({state}).")
