"""`python -m backend submit | fetch | server-status`: the client side of the team server.

    submit JOB... --server URL --out DIR [--wait]   queue job files; with --wait follow them (in
                                                    parallel) and fetch each take into DIR
    fetch ID... --server URL --out DIR              wait for jobs submitted earlier and fetch them
    server-status --server URL                      the replicas and the queue (exit 0: the
                                                    server answers and accepts the token)

Events go to stdout as JSON lines, as `generate` writes them: the server's events (each with
`job` and `seq`), then, for each take written here, a `result` with the local paths. Exit codes
as `generate`: 0 every take written, 2 bad input (a job, the output folder, the token), 1 a
failure (server unreachable, a job failed or was lost), 3 cancelled (Ctrl-C cancels the jobs
still running on the server).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import Any

from ..errors import EXIT_BAD_INPUT, EXIT_CANCELLED, EXIT_INTERNAL, EXIT_OK, UserError
from ..events import EventStream
from .client import TOKEN_ENV, Client
from .transport import ServerError

SERVER_ENV = "TRAJMASTER_SERVER"
# The exit code of a failure, by code; anything else is EXIT_INTERNAL.
_BAD_INPUT_CODES = ("bad_job", "bad_output", "bad_request", "bad_url", "bad_token_file", "unauthorized", "unsupported")


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server",
        default=os.environ.get(SERVER_ENV),
        required=not os.environ.get(SERVER_ENV),
        metavar="URL",
        help=f"the server, e.g. http://gpu-box:8765 (default: ${SERVER_ENV})",
    )
    parser.add_argument(
        "--token-file", metavar="F", help=f"the server's token file (default: ${TOKEN_ENV} holds the token)"
    )


def add_submit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("jobs", nargs="+", metavar="JOB", help="job files (.json); they run in parallel")
    add_server_arguments(parser)
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the takes (created if missing)")
    parser.add_argument("--wait", action="store_true", help="follow the jobs and fetch each take into --out")
    parser.add_argument("--name", metavar="NAME", help="take name (one job only; default: SHOT_take_NNN)")
    parser.add_argument("--png", action="store_true", help="also make the lossless PNG sequence")


def add_fetch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ids", nargs="+", metavar="ID", help="job ids that `submit` printed")
    add_server_arguments(parser)
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the takes (created if missing)")
    parser.add_argument("--name", metavar="NAME", help="take name (one job only; default: SHOT_take_NNN)")


def add_status_arguments(parser: argparse.ArgumentParser) -> None:
    add_server_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the status as one JSON document")


def _client(args: argparse.Namespace) -> Client:
    return Client(args.server, token_file=args.token_file)


def _fail(stream: EventStream, exc: ServerError | UserError, job: str | None = None) -> int:
    code = exc.code
    fields: dict[str, Any] = {"code": code, "message": exc.message}
    if exc.hint:
        fields["hint"] = exc.hint
    exit_code = EXIT_BAD_INPUT if code in _BAD_INPUT_CODES else EXIT_INTERNAL
    stream.emit("error", exit_code=exit_code, **fields, **({"job": job} if job else {}))
    print(f"error: {exc}" + (f" (job {job})" if job else ""), file=sys.stderr)
    return exit_code


def _worst(codes: list[int]) -> int:
    """One exit code for many jobs: a failure outranks bad input, which outranks a cancel."""
    for code in (EXIT_INTERNAL, EXIT_BAD_INPUT, EXIT_CANCELLED):
        if code in codes:
            return code
    return EXIT_OK


# ---------------------------------------------------------------- server-status


def server_status(args: argparse.Namespace, stream: EventStream) -> int:
    try:
        status = _client(args).status()
    except ServerError as exc:
        return _fail(stream, exc)
    if args.json:
        import json

        stream.write_raw(json.dumps(status, indent=1) + "\n")
    else:
        print(format_status(args.server, status), file=sys.stderr)
    return EXIT_OK


def format_status(url: str, status: dict[str, Any]) -> str:
    scaling = status.get("scaling") or {}
    scale = (
        f"{scaling.get('min_replicas')} to {scaling.get('max_replicas')} replicas on demand"
        if scaling.get("mode") == "auto"
        else f"{scaling.get('replicas')} replicas"
    )
    lines = [
        f"{url}: TrajMaster server {status.get('version')} (API {status.get('api')}), {status.get('engine')}, {scale}"
    ]
    for r in status.get("replicas") or []:
        device = (r.get("device") or {}).get("name") or (r.get("device") or {}).get("type")
        job = f" job {r['job']}" if r.get("job") else ""
        warm = "warm" if r.get("warm") else "not loaded"
        lines.append(f"  replica {r.get('replica')} on {r.get('node')}: {r.get('state')}{job}, {warm}, {device}")
    if not status.get("replicas"):
        lines.append("  no replica is up yet")
    running, queue = status.get("running") or [], status.get("queue") or []
    for job in running:
        fraction = job.get("fraction")
        done = f" {round(100 * fraction)}%" if isinstance(fraction, (int, float)) else ""
        lines.append(f"  running {job['id']} ({job.get('shot')}): {job.get('stage')}{done}")
    lines.append(f"  {len(queue)} job{'s' if len(queue) != 1 else ''} waiting")
    return "\n".join(lines)


# ---------------------------------------------------------------- submit and fetch


def submit(args: argparse.Namespace, stream: EventStream) -> int:
    from ..generate import load_job  # the same validation as `generate`, before anything is sent

    if args.name and len(args.jobs) > 1:
        return _fail(stream, UserError("bad_output", "--name names one take; give one job with it."))
    try:
        client = _client(args)
        jobs = [load_job(path) for path in args.jobs]
    except (ServerError, UserError) as exc:
        return _fail(stream, exc)
    submitted: list[tuple[str, str]] = []
    for path, job in zip(args.jobs, jobs, strict=True):
        try:
            reply = client.submit(job, png=args.png, detach=not args.wait)
        except ServerError as exc:
            for job_id, _ in submitted:  # nobody will follow these: do not leave them to run
                _quietly(client.cancel, job_id)
            return _fail(stream, exc)
        submitted.append((reply["id"], path))
        stream.emit(
            "log", message=f"Submitted {path} as job {reply['id']}", job=reply["id"], position=reply.get("position")
        )
        print(f"job {reply['id']}: {path} (position {reply.get('position')})", file=sys.stderr)
    if not args.wait:
        ids = " ".join(job_id for job_id, _ in submitted)
        print(
            f"Fetch the takes with: python -m backend fetch {ids} --server {client.url} --out {args.out}",
            file=sys.stderr,
        )
        return EXIT_OK
    return _follow_and_fetch(
        client, [job_id for job_id, _ in submitted], args, stream, dict((i, p) for i, p in submitted)
    )


def fetch(args: argparse.Namespace, stream: EventStream) -> int:
    if args.name and len(args.ids) > 1:
        return _fail(stream, UserError("bad_output", "--name names one take; give one job with it."))
    try:
        client = _client(args)
    except ServerError as exc:
        return _fail(stream, exc)
    return _follow_and_fetch(client, args.ids, args, stream, {})


def _follow_and_fetch(
    client: Client, ids: list[str], args: argparse.Namespace, stream: EventStream, job_files: dict[str, str]
) -> int:
    """Follow every job in its own thread (they run in parallel on the server) and fetch each
    take as it finishes. SIGINT/SIGTERM cancel the unfinished jobs on the server."""
    codes: dict[str, int] = {}
    lock = threading.Lock()
    interrupted = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        interrupted.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    def follow(job_id: str) -> None:
        code = _follow_one(client, job_id, args, stream, lock, job_files.get(job_id))
        codes[job_id] = code

    threads = [threading.Thread(target=follow, args=(i,), daemon=True) for i in ids]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        if interrupted.wait(0.2):
            for job_id in ids:
                if job_id not in codes:
                    _quietly(client.cancel, job_id)
            for t in threads:
                t.join(timeout=60)
            return EXIT_CANCELLED
    return _worst(list(codes.values()))


def _follow_one(
    client: Client,
    job_id: str,
    args: argparse.Namespace,
    stream: EventStream,
    lock: threading.Lock,
    job_file: str | None,
) -> int:
    try:
        final = client.wait(job_id, on_event=lambda e: e.get("event") != "result" and _relay(stream, e))
        if final.get("event") == "cancelled":
            print(f"job {job_id}: {final.get('message')}", file=sys.stderr)
            return EXIT_CANCELLED
        if final.get("event") == "error":
            print(f"error: {final.get('message')} (job {job_id})", file=sys.stderr)
            return int(final.get("exit_code") or EXIT_INTERNAL)
        with lock:  # takes of one shot get their numbers one after the other
            take = client.fetch(job_id, args.out, args.name, job_file=job_file)
    except ServerError as exc:
        return _fail(stream, exc, job_id)
    stream.emit("result", job=job_id, **take)
    print(f"job {job_id}: wrote {take['video']}", file=sys.stderr)
    return EXIT_OK


def _relay(stream: EventStream, event: dict[str, Any]) -> bool:
    fields = {k: v for k, v in event.items() if k not in ("event", "protocol", "time")}
    try:
        stream.emit(event["event"], **fields)
    except ValueError:
        pass  # an event kind this client does not know: readers ignore those anyway
    return True


def _quietly(action: Any, *args: Any) -> None:
    try:
        action(*args)
    except ServerError:
        pass
