"""`python -m backend bench --server`: the HTTP path against the local worker, 1 and K replicas.

Measures, with the same job throughout (the preview engine unless --engine says otherwise):

- latency: one job at a time, alternately through the local worker's path (`run_job` with a
  warm engine in this process, what the add-on's worker does) and through a server with one
  replica, from the POST to the take written by the client (submit, queue, the replica's
  render, the files through Ray, the download, the local publish). The overhead is the median
  of the paired differences, so that both ways meet the same background load;
- throughput: N jobs submitted at once, until the last take is written, with 1 and with K
  replicas; their ratio.

It starts its own local Ray cluster (token authentication on, no dashboard) on free ports on
127.0.0.1 and stops it at the end. docs/performance.md has the results and how to read them.
"""

from __future__ import annotations

import argparse
import math
import os
import secrets
import socket
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..engines import ENGINE_NAMES
from ..errors import EXIT_BAD_INPUT, EXIT_OK, UserError
from ..events import EventStream


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("the team server (--server)")
    group.add_argument("--server", action="store_true", help="benchmark the server's HTTP path instead of the model")
    group.add_argument("--jobs", type=int, default=8, metavar="N", help="jobs for the throughput runs (default 8)")
    group.add_argument("--replicas", type=int, default=2, metavar="K", help="replicas of the second run (default 2)")
    group.add_argument("--repeat", type=int, default=5, metavar="R", help="jobs timed one at a time (default 5)")
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
        import json

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
    started = start_ray(None, 0)
    local = _LocalWorker(job, args, scratch / "local")
    try:
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
                result["local_s"], result["server_s"] = [], []
                for i in range(args.repeat):
                    for way in ("local", "server") if i % 2 == 0 else ("server", "local"):
                        seconds = local.run() if way == "local" else _through_server(client, job, scratch / "latency")
                        result[f"{way}_s"].append(seconds)
            _note(stream, f"throughput: {args.jobs} jobs at once")
            t0 = time.monotonic()
            outs = [scratch / f"tp-{replicas}-{k}" for k in range(args.jobs)]
            with ThreadPoolExecutor(args.jobs) as pool:
                list(pool.map(lambda out: _through_server(client, job, out), outs))
            runs[replicas] = time.monotonic() - t0
        result["throughput_wall_s"] = {str(k): round(v, 3) for k, v in runs.items()}
    finally:
        local.close()
        stop_ray(started)
    local_median = statistics.median(result["local_s"])
    overhead = statistics.median(s - l for s, l in zip(result["server_s"], result["local_s"], strict=True))
    result["local_median_s"] = round(local_median, 3)
    result["server_median_s"] = round(statistics.median(result["server_s"]), 3)
    result["overhead_s"] = round(overhead, 3)
    result["overhead_percent"] = round(100 * overhead / local_median, 1)
    result["jobs_per_minute"] = {k: round(60 * args.jobs / v, 2) for k, v in result["throughput_wall_s"].items()}
    if str(args.replicas) in result["throughput_wall_s"] and args.replicas != 1:
        result["throughput_ratio"] = round(runs[1] / runs[args.replicas], 2)
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return result


def _model_args(args: argparse.Namespace) -> dict[str, Any]:
    from .settings import MODEL_ARG_DEFAULTS

    return {k: getattr(args, k, v) for k, v in MODEL_ARG_DEFAULTS.items()}


class _LocalWorker:
    """What the add-on's worker does for a job: `run_job` with an engine kept loaded."""

    def __init__(self, job: dict[str, Any], args: argparse.Namespace, out: Path):
        from .. import job as jobfile
        from ..engines import EngineCache
        from ..progress import Report

        out.mkdir(parents=True)
        self.out, self.path = out, out / "job.json"
        self.path.write_text(jobfile.dumps(job), encoding="utf-8")
        self._sink = open(os.devnull, "w", encoding="utf-8")  # closed in close()
        self.report = Report(EventStream(self._sink))
        self.engines = EngineCache(argparse.Namespace(**_model_args(args)), self.report)

    def run(self) -> float:
        from ..generate import run_job

        t0 = time.monotonic()
        run_job(self.path, self.out, self.engines.get, self.report)
        return round(time.monotonic() - t0, 3)

    def close(self) -> None:
        self.engines.close()
        self._sink.close()


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
        f"TrajMaster server benchmark ({r['engine']} engine, {r['cpus']} CPU cores, load {r['load_average_before']})",
        f"  local worker path, warm:     {r['local_median_s']:.3f} s a job (median of {r['repeat']})",
        f"  through the server, 1 job:   {r['server_median_s']:.3f} s a job (submit to take written)",
        f"  overhead (paired median):    {r['overhead_s']:+.3f} s ({r['overhead_percent']:+.1f}% of a local job)",
    ]
    for k, v in r["throughput_wall_s"].items():
        lines.append(f"  {r['jobs']} jobs at once, {k} replica(s): {v:.2f} s ({r['jobs_per_minute'][k]} jobs a minute)")
    if "throughput_ratio" in r:
        lines.append(f"  throughput ratio:            {r['throughput_ratio']:.2f}x")
    return "\n".join(lines)
