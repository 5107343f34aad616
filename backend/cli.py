"""`python -m backend`: validate and run jobs, serve as a worker, manage the model, expand
prompts and put takes side by side.

Run from the extension's root folder. Progress goes to stdout as JSON-lines events (see
docs/protocol.md); messages for people go to stderr. Exit codes: 0 success, 2 bad input
(job, output folder, weights), 1 internal failure, 3 cancelled.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from . import __version__, events, interrupts
from .engines import ENGINE_NAMES, make_engine
from .errors import EXIT_CANCELLED, EXIT_OK, UserError
from .generate import load_job, run_job, shot_findings
from .outcome import report_outcome
from .progress import Report


def _model_commands():
    # Kept free of torch at import time, so --help and the preview engine work without it.
    from .cogvideox import commands

    return commands


def _contact_sheet():
    from . import contact_sheet

    return contact_sheet


def _prompt_commands():
    # Prompt help: the fallback needs only the standard library, the model transformers.
    from .prompt_help import commands

    return commands


def build_parser() -> argparse.ArgumentParser:
    model = _model_commands()
    parser = argparse.ArgumentParser(
        prog="python -m backend",
        description="TrajMaster Previz backend: turns job files into takes (preview or CogVideoX-5B + 3DTrajMaster).",
        epilog="Events (JSON lines) go to stdout, messages to stderr. Exit codes: 0 ok, 2 bad input, 1 failure, "
        "3 cancelled. See docs/protocol.md and docs/job-file.md.",
    )
    parser.add_argument("--version", action="version", version=f"trajmaster-previz backend {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "validate",
        help="check a job file and list its problems and warnings",
        description="Check a job file against the schema (docs/job.schema.json) and the pose checks.",
    )
    p.add_argument("job", metavar="JOB", help="the job file (.json)")

    p = sub.add_parser(
        "generate",
        help="render a job into a new take (video + sidecar)",
        description="Render a job into a new take in --out: NAME.mp4, NAME.json (sidecar) and, with "
        "--png, NAME_png/. Never overwrites: without --name the take is SHOT_take_NNN with the next "
        "free number.",
    )
    p.add_argument("job", metavar="JOB", help="the job file (.json)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the take (created if missing)")
    p.add_argument("--name", metavar="NAME", help="take name (default: SHOT_take_NNN); must not exist yet")
    p.add_argument("--engine", choices=ENGINE_NAMES, help="override the job's engine")
    p.add_argument("--png", action="store_true", help="also write a lossless PNG sequence")
    model.add_model_arguments(p)

    p = sub.add_parser(
        "serve",
        help="run as a worker: jobs over stdin, engines kept loaded",
        description="Long-lived worker: reads JSON-lines requests on stdin (generate, cancel, ping, "
        "shutdown; see docs/protocol.md) and keeps the model loaded between jobs. Exits on EOF.",
    )
    model.add_model_arguments(p)
    _prompt_commands().add_prompt_model_argument(p)

    p = sub.add_parser(
        "expand",
        help="expand a short description into a 15-24-word entity or location prompt",
        description="Turn a short description ('a dog', 'desert') into a 15-24-word prompt in the style of the "
        "model's training captions, keeping the words given: with the prompt model if it is installed "
        "(download --only prompt), else (or when its answers are refused) with the offline fallback.",
    )
    _prompt_commands().add_expand_arguments(p)

    p = sub.add_parser(
        "contact-sheet",
        help="put 2-8 takes side by side in one video",
        description="Make one video of several takes side by side in a grid, each cell labelled, for comparing "
        "a set of variations. Never overwrites: OUT must not exist yet.",
    )
    _contact_sheet().add_arguments(p)

    p = sub.add_parser(
        "download",
        help="download the model weights from the Hugging Face hub",
        description="Download THUDM/CogVideoX-5b and KwaiVGI/3DTrajMaster (resumable); with --prompt-model (or "
        "--only prompt) also the optional prompt help model Qwen/Qwen2.5-1.5B-Instruct (Apache-2.0, 3.1 GB).",
    )
    model.add_download_arguments(p)

    p = sub.add_parser(
        "doctor",
        help="report GPU, versions, weights found and free disk",
        description="Report GPU, VRAM, torch/CUDA and diffusers versions, weights found, free disk.",
    )
    model.add_doctor_arguments(p)

    p = sub.add_parser(
        "bench",
        help="benchmark the model at real sizes (random weights)",
        description="Benchmark the transformer and injector with random weights (no download).",
    )
    model.add_bench_arguments(p)
    _add_server_commands(sub, model)
    return parser


def _add_server_commands(sub: argparse._SubParsersAction, model) -> None:
    """The team server and its client (docs/server.md); their code lives in backend/server and
    backend/client, and Ray is imported only by `server` and `bench --server`."""
    from .client import commands as client
    from .server import bench as server_bench
    from .server import command as server

    bench = sub.choices["bench"]
    server_bench.add_arguments(bench)

    p = sub.add_parser(
        "server",
        help="run the team server: a pool of GPU replicas behind HTTP (Ray Serve)",
        description="Start the TrajMaster server on this machine's Ray cluster (or a new one): one model replica "
        "per GPU behind an HTTP API with a bearer token. Needs the [server] extra. See docs/server.md.",
    )
    server.add_arguments(p, model.add_model_arguments)

    p = sub.add_parser(
        "submit",
        help="send job files to a server (and, with --wait, fetch their takes)",
        description="Queue job files on a TrajMaster server; with --wait follow them (they run in parallel) and "
        "write each take into --out as a local take (never over an existing one).",
    )
    client.add_submit_arguments(p)

    p = sub.add_parser(
        "fetch",
        help="wait for jobs on a server and fetch their takes",
        description="Follow jobs submitted earlier (python -m backend submit without --wait) and write each take "
        "into --out.",
    )
    client.add_fetch_arguments(p)

    p = sub.add_parser(
        "server-status",
        help="a server's replicas and queue (exit 0: it answers and accepts the token)",
        description="Ask a TrajMaster server for its replicas (device, state, job) and queue.",
    )
    client.add_status_arguments(p)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    stream = events.install()
    try:
        if args.command not in ("generate", "serve"):
            # These stop on Ctrl-C as any command does (download reports it as cancelled); a
            # signal that came while Python was still importing stops them now.
            interrupts.restore_defaults()
        if args.command == "serve":
            from .worker import serve

            return serve(args, stream)
        if args.command in ("server", "submit", "fetch", "server-status") or (args.command == "bench" and args.server):
            return _server_command(args, stream)
        if args.command in ("doctor", "bench"):
            # Reports for people (or, with --json, one JSON document for tools) on the protected
            # stdout; their progress goes to stderr as event lines.
            return {"doctor": _doctor, "bench": _bench}[args.command](args, stream)
        report = Report(stream)
        stream.emit("hello", pid=os.getpid(), version=__version__, engine=getattr(args, "engine", None))
        commands = {
            "validate": _validate,
            "generate": _generate,
            "download": _download,
            "expand": _prompt_commands().run_expand,
            "contact-sheet": _contact_sheet().run,
        }
        return commands[args.command](args, report)
    except KeyboardInterrupt:
        stream.emit("cancelled", message="Interrupted.")
        print("Interrupted.", file=sys.stderr)
        return EXIT_CANCELLED


def _server_command(args: argparse.Namespace, stream: events.EventStream) -> int:
    from .client import commands as client
    from .server import bench as server_bench
    from .server import command as server

    if args.command == "bench":
        return server_bench.main(args, stream)
    run = {"server": server.main, "submit": client.submit, "fetch": client.fetch, "server-status": client.server_status}
    return run[args.command](args, stream)


def _validate(args: argparse.Namespace, report: Report) -> int:
    try:
        job = load_job(args.job)
    except UserError as exc:
        return report_outcome(report, exc)
    findings = shot_findings(job)
    for f in findings:
        report.warning(f.code, f.message, entity=f.entity, slots=f.slots, severity=f.severity)
        print(f"{f.severity}: {f.message}", file=sys.stderr)
    n = len(job["entities"])
    print(
        f"{args.job}: valid job, {n} entit{'y' if n == 1 else 'ies'}, engine {job['engine']}, "
        f"{len(findings)} warning{'s' if len(findings) != 1 else ''}",
        file=sys.stderr,
    )
    return EXIT_OK


def _generate(args: argparse.Namespace, report: Report) -> int:
    # SIGINT/SIGTERM cancel at the next step boundary (also one that came during start-up).
    interrupts.on_signal(report.cancel.set)
    engines = {}

    def get_engine(name: str):
        if name not in engines:
            engines[name] = make_engine(name, args, report)
        return engines[name]

    try:
        result = run_job(args.job, args.out, get_engine, report, name=args.name, png=args.png, engine_name=args.engine)
    except BaseException as exc:
        return report_outcome(report, exc)
    finally:
        for engine in engines.values():
            engine.close()
    return report_outcome(report, None, result)


def _download(args: argparse.Namespace, report: Report) -> int:
    try:
        result = _model_commands().download(args, report)
    except BaseException as exc:
        return report_outcome(report, exc)
    report._emit("result", **result)
    return EXIT_OK


def _print_report(stream: events.EventStream, args: argparse.Namespace, data: dict, text: str) -> None:
    stream.write_raw((json.dumps(data, indent=1, default=str) if getattr(args, "json", False) else text) + "\n")


def _doctor(args: argparse.Namespace, stream: events.EventStream) -> int:
    model = _model_commands()
    report = Report(events.EventStream(sys.stderr))
    try:
        found = model.doctor(args)
    except BaseException as exc:
        return report_outcome(report, exc)
    _print_report(stream, args, found, model.format_doctor(found))
    return EXIT_OK


def _bench(args: argparse.Namespace, stream: events.EventStream) -> int:
    model = _model_commands()
    report = Report(events.EventStream(sys.stderr))
    try:
        result = model.bench(args, report)
    except BaseException as exc:
        return report_outcome(report, exc)
    _print_report(stream, args, result, model.format_bench(result))
    return EXIT_OK
