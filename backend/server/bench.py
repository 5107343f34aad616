"""`python -m backend bench --server`: the HTTP path against the local worker, 1 and K replicas.

Measures, with the same job throughout (the preview engine unless --engine says otherwise):

- latency: one job at a time, alternately through the local worker's path and through a server
  with one replica. The local path is the add-on's: a `python -m backend serve` worker process
  kept running (its engine loaded by a first job), the job file on disk and a `generate`
  request on the worker's stdin, the take published by the worker; a job's time runs from the
  request to its `result` event read from the worker's stdout. The server's runs from the POST
  to the take written by the client (submit and validation, Ray's queue, the replica's render,
  the events and files through Ray, the events stream, the download, the local publish). The
  overhead is the median of the paired differences, so that both ways meet the same background
  load (the order alternates too);
- throughput: N jobs submitted at once, until the last take is written, with 1 and with K
  replicas; their ratio.

It starts its own local Ray cluster (token authentication on, no dashboard) on free ports on
127.0.0.1 and stops it at the end. docs/performance.md has the results and how to read them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import queue
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..engines import ENGINE_NAMES
from ..errors import EXIT_BAD_INPUT, EXIT_OK, UserError
from ..events import EventStream

WORKER_NICENESS_ENV = "RAY_worker_niceness"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("the team server (--server)")
    group.add_argument("--server", action="store_true", help="benchmark the server's HTTP path instead of the model")
    group.add_argument("--jobs", type=int, default=8, metavar="N", help="jobs for the throughput runs (default 8)")
    group.add_argument("--replicas", type=int, default=2, metavar="K", help="replicas of the second run (default 2)")
    group.add_argument(
        "--repeat", type=int, default=15, metavar="R", help="jobs timed one at a time each way (default 15)"
    )
    group.add_argument("--job", metavar="FILE", help="the job to run (default: a built-in one-entity preview shot)")
    group.add_argument(
        "--engine",
        choices=ENGINE_NAMES,
        default="preview",
        help="the engine of the server's replicas (default preview)",
    )
    from ..cogvideox.commands import add_weights_arguments

    add_weights_arguments(parser)


def bench_job() -> dict[str, Any]:
    """A valid one-entity shot for the preview engine: an entity walking across the frame."""
    import numpy as np

    from .. import job as jobfile
    from .. import poses, timeplan

    camera = poses.look_at_camera((0.0, -10.0, 1.6), (0.0, 0.0, 1.0))

    def walk(times: list[float]) -> np.ndarray:
        f = (np.asarray(times) - 1.0) / 72.0
        return np.stack([poses.yaw_matrix(math.pi, (-2.0 + 4.0 * x, 0.0, 0.0)) for x in f])

    pose_t, video_t = timeplan.pose_times(1, 73), timeplan.video_times(1, 73)
    entity = {
        "name": "Runner",
        "prompt": "A brown horse with a flowing black mane and a white blaze on its face, muscular and glossy",
        "poses": poses.model_poses(np.stack([camera] * 13), walk(pose_t), "NEG_Y", "rig"),
        "video_poses": poses.model_poses(np.stack([camera] * 49), walk(video_t), "NEG_Y", "rig"),
    }
    job = jobfile.build_job(
        scene_name="bench",
        frame_start=1,
        frame_end=73,
        scene_fps=24.0,
        location="sunlit desert with golden sand dunes",
        entities=[entity],
        camera={"name": "Camera", "context": poses.camera_context(np.stack([camera] * 13), "rig")},
        video=True,
    )
    return jobfile.parse(jobfile.dumps(job))


def main(args: argparse.Namespace, stream: EventStream) -> int:
    from ..generate import load_job

    try:
        job = load_job(args.job) if args.job else bench_job()
        if args.jobs < 1 or args.replicas < 1 or args.repeat < 1:
            raise UserError("bad_request", "--jobs, --replicas and --repeat must be at least 1.")
        if args.engine == "cogvideox":
            from .command import absolute_weights

            # The replicas run from Ray's copy of the package: the weights' folders must be absolute.
            vars(args).update(absolute_weights(args, check=True))
    except UserError as exc:
        stream.emit("error", **exc.event_fields())
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    job["engine"] = args.engine
    with tempfile.TemporaryDirectory(prefix="trajmaster-bench-") as scratch:
        result = run(job, args, Path(scratch), stream)
    if getattr(args, "json", False):
        stream.write_raw(json.dumps(result, indent=1) + "\n")
    else:
        stream.write_raw(format_result(result) + "\n")
    return EXIT_OK


def _note(stream: EventStream, message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def run(job: dict[str, Any], args: argparse.Namespace, scratch: Path, stream: EventStream) -> dict[str, Any]:
    from ..client import Client
    from .api import token_digest
    from .command import deploy, start_ray, stop_ray
    from .settings import ServerConfig

    result: dict[str, Any] = {
        "engine": args.engine,
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
        "jobs": args.jobs,
        "repeat": args.repeat,
    }
    token = secrets.token_urlsafe(16)
    port = _free_port()
    config = ServerConfig(
        engine=args.engine,
        model_args=_model_args(args),
        state_dir=str(scratch / "state"),
        token_sha256=token_digest(token),
        replica_gpus=1.0 if args.engine == "cogvideox" and args.device != "cpu" else 0.0,
        max_jobs=max(1000, 4 * args.jobs),
    )
    _note(stream, "starting a local Ray cluster")
    # Ray starts its worker processes (the replicas, the gateway, Serve's proxy) at niceness 15,
    # below the local worker's 0: on a machine busy with other work the server's side would lose
    # the CPU to the local side and its overhead would include that (twice as much at load 8 on 2
    # cores). Both ways run at the same priority here unless RAY_worker_niceness says otherwise.
    os.environ.setdefault(WORKER_NICENESS_ENV, "0")
    result["ray_worker_niceness"] = int(os.environ[WORKER_NICENESS_ENV])
    started = start_ray(None, 0)
    local = None
    try:
        local = _LocalWorker(job, args, scratch / "local")
        client = Client(f"http://127.0.0.1:{port}", token)
        runs = {}
        for replicas in sorted({1, args.replicas}):
            config.replicas = replicas
            _note(stream, f"server with {replicas} replica(s)")
            deploy(config, "127.0.0.1", port)
            _through_server(client, job, scratch / f"warm-{replicas}")  # the first request pays for imports
            if replicas == 1:
                # Local and server jobs alternate, so that both meet the same background load.
                _note(stream, f"latency: {args.repeat} jobs one at a time each way, alternating")
                local.run()  # loads the engine
                result["local_s"], result["server_s"], loads = [], [], []
                for i in range(args.repeat):
                    for way in ("local", "server") if i % 2 == 0 else ("server", "local"):
                        seconds = local.run() if way == "local" else _through_server(client, job, scratch / "latency")
                        result[f"{way}_s"].append(seconds)
                    loads.append(os.getloadavg()[0])
                result["load_average_during"] = [round(min(loads), 2), round(max(loads), 2)]
            _note(stream, f"throughput: {args.jobs} jobs at once")
            t0 = time.monotonic()
            outs = [scratch / f"tp-{replicas}-{k}" for k in range(args.jobs)]
            with ThreadPoolExecutor(args.jobs) as pool:
                list(pool.map(lambda out: _through_server(client, job, out), outs))
            runs[replicas] = time.monotonic() - t0
        result["throughput_wall_s"] = {str(k): round(v, 3) for k, v in runs.items()}
    finally:
        if local is not None:
            local.close()
        stop_ray(started)
    local_median = statistics.median(result["local_s"])
    paired = [s - l for s, l in zip(result["server_s"], result["local_s"], strict=True)]
    overhead = statistics.median(paired)
    result["local_median_s"] = round(local_median, 3)
    result["server_median_s"] = round(statistics.median(result["server_s"]), 3)
    result["overhead_s"] = round(overhead, 3)
    result["overhead_percent"] = round(100 * overhead / local_median, 1)
    if len(paired) >= 4:  # the middle half of the paired differences: how much to trust the median
        quartiles = statistics.quantiles(paired, n=4)
        result["overhead_quartiles_s"] = [round(quartiles[0], 3), round(quartiles[2], 3)]
    result["jobs_per_minute"] = {k: round(60 * args.jobs / v, 2) for k, v in result["throughput_wall_s"].items()}
    if str(args.replicas) in result["throughput_wall_s"] and args.replicas != 1:
        result["throughput_ratio"] = round(runs[1] / runs[args.replicas], 2)
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return result


def _model_args(args: argparse.Namespace) -> dict[str, Any]:
    from .settings import MODEL_ARG_DEFAULTS

    return {k: getattr(args, k, v) for k, v in MODEL_ARG_DEFAULTS.items()}


class _LocalWorker:
    """The add-on's local path: a `python -m backend serve` worker (the same Python, the same
    engine options), the job file on disk, one `generate` request a job on its stdin, the events
    read from its stdout (backend/worker.py, docs/protocol.md)."""

    def __init__(self, job: dict[str, Any], args: argparse.Namespace, out: Path):
        from .. import job as jobfile

        out.mkdir(parents=True)
        self.out, self.path = out, out / "bench.job.json"
        jobfile.write(job, self.path)  # as the add-on writes it, before the worker is asked
        self._count = 0
        self._events: queue.Queue = queue.Queue()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "backend", "serve", *_worker_options(args)],
            cwd=Path(__file__).resolve().parents[2],  # where `backend` is importable, as for the add-on
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
        )
        threading.Thread(target=self._read, name="bench-worker-events", daemon=True).start()
        self._until(lambda event: event.get("event") == "ready")

    def _read(self) -> None:
        for line in self.process.stdout:
            try:
                self._events.put(json.loads(line))
            except ValueError:
                continue
        self._events.put(None)

    def _until(self, done: Any) -> dict[str, Any]:
        while True:
            event = self._events.get(timeout=600)
            if event is None:
                raise RuntimeError(f"the local worker exited (status {self.process.wait()})")
            if done(event):
                return event

    def run(self) -> float:
        """One job, from the request to its result event; seconds."""
        self._count += 1
        job_id = f"bench-{self._count}"
        request = {"op": "generate", "id": job_id, "job": str(self.path), "out": str(self.out)}
        t0 = time.monotonic()
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        final = self._until(lambda e: e.get("job") == job_id and e.get("event") in ("result", "error", "cancelled"))
        seconds = round(time.monotonic() - t0, 3)
        if final["event"] != "result":
            raise RuntimeError(f"a benchmark job ended with {final['event']}: {final.get('message')}")
        return seconds

    def close(self) -> None:
        try:
            self.process.stdin.close()  # end of input: the worker exits
            self.process.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()


def _worker_options(args: argparse.Namespace) -> list[str]:
    """The engine options of the bench as `serve` takes them (those left at their defaults are
    not passed)."""
    from .settings import MODEL_ARG_DEFAULTS

    options = []
    for key, default in MODEL_ARG_DEFAULTS.items():
        value = getattr(args, key, default)
        if value is None or value == default or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        options += [flag] if value is True else [flag, str(value)]
    return options


def _through_server(client: Any, job: dict[str, Any], out: Path) -> float:
    t0 = time.monotonic()
    job_id = client.submit(job)["id"]
    final = client.wait(job_id)
    if final.get("event") != "result":
        raise RuntimeError(f"a benchmark job ended with {final.get('event')}: {final.get('message')}")
    client.fetch(job_id, out)
    return round(time.monotonic() - t0, 3)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def format_result(r: dict[str, Any]) -> str:
    lines = [
        f"TrajMaster server benchmark ({r['engine']} engine, {r['cpus']} CPU cores, load {r['load_average_before']}, "
        f"Ray's workers at niceness {r['ray_worker_niceness']})",
        f"  local worker (serve), warm:  {r['local_median_s']:.3f} s a job (median of {r['repeat']}, to its result)",
        f"  through the server, 1 job:   {r['server_median_s']:.3f} s a job (submit to take written)",
        f"  overhead (paired median):    {r['overhead_s']:+.3f} s ({r['overhead_percent']:+.1f}% of a local job)",
    ]
    if "overhead_quartiles_s" in r:
        low, high = r["overhead_quartiles_s"]
        lines.append(f"  middle half of the pairs:    {low:+.3f} to {high:+.3f} s")
    lines.append(f"  load average during:         {r['load_average_during'][0]} to {r['load_average_during'][1]}")
    for k, v in r["throughput_wall_s"].items():
        lines.append(f"  {r['jobs']} jobs at once, {k} replica(s): {v:.2f} s ({r['jobs_per_minute'][k]} jobs a minute)")
    if "throughput_ratio" in r:
        lines.append(f"  throughput ratio:            {r['throughput_ratio']:.2f}x")
    return "\n".join(lines)
