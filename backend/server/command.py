"""`python -m backend server`: start the team server on this machine's Ray cluster (or a new one).

Prints its address and (the first time) its token to stderr, emits `hello` and `ready` events on
stdout, and runs until SIGINT or SIGTERM; then it removes its application, and stops the Ray
cluster if it started it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Any

from .. import __version__
from ..engines import ENGINE_NAMES
from ..errors import EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_OK, UserError
from ..events import EventStream
from . import APP_NAME, settings

STATE_ENV = "TRAJMASTER_SERVER_STATE"


def default_state_dir() -> Path:
    if os.environ.get(STATE_ENV):
        return Path(os.environ[STATE_ENV]).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "trajmaster-server"


def add_arguments(parser: argparse.ArgumentParser, add_model_arguments: Any) -> None:
    parser.add_argument(
        "--engine", choices=ENGINE_NAMES, default="cogvideox", help="what the replicas run (default: cogvideox)"
    )
    scale = parser.add_argument_group("replicas (one per GPU; a preview replica uses one CPU)")
    scale.add_argument("--replicas", type=int, metavar="N", help="a fixed number (default: one per GPU; preview: 1)")
    scale.add_argument("--min-replicas", type=int, metavar="N", help="autoscale on queue length from N ...")
    scale.add_argument("--max-replicas", type=int, metavar="M", help="... to M replicas")
    net = parser.add_argument_group("network and access")
    net.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    net.add_argument("--port", type=int, default=settings.DEFAULT_PORT, help=f"port (default {settings.DEFAULT_PORT})")
    net.add_argument(
        "--token-file", metavar="F", help="the access token; made (mode 0600) on the first start (default: STATE/token)"
    )
    net.add_argument(
        "--address",
        metavar="ADDR",
        help="join a running Ray cluster ('auto' or HOST:PORT, as `ray start` printed) instead of starting one",
    )
    net.add_argument(
        "--dashboard-port",
        type=int,
        default=8265,
        metavar="P",
        help="the Ray dashboard's port on 127.0.0.1 for a cluster this command starts (0: no dashboard)",
    )
    keep = parser.add_argument_group("jobs")
    keep.add_argument(
        "--state",
        metavar="DIR",
        help=f"the server's folder: jobs, takes, token (default: ${STATE_ENV} or ~/.local/state/trajmaster-server)",
    )
    keep.add_argument(
        "--keep-hours",
        type=float,
        default=settings.DEFAULT_KEEP_HOURS,
        metavar="H",
        help=f"keep a finished job's events and take this long (default {settings.DEFAULT_KEEP_HOURS:g})",
    )
    keep.add_argument(
        "--disconnect-grace",
        type=float,
        default=settings.DEFAULT_DISCONNECT_GRACE_S,
        metavar="S",
        help="cancel a job nobody follows after this many seconds, unless submitted with detach (default 30)",
    )
    keep.add_argument(
        "--max-jobs", type=int, default=settings.DEFAULT_MAX_JOBS, metavar="N", help="jobs waiting or running at most"
    )
    keep.add_argument(
        "--max-request-bytes",
        type=int,
        default=settings.DEFAULT_MAX_REQUEST_BYTES,
        metavar="B",
        help="the largest request accepted (default 1 MiB)",
    )
    parser.add_argument(
        "--openapi", metavar="FILE", help="write the API's OpenAPI description to FILE ('-': stdout) and exit"
    )
    add_model_arguments(parser)


def main(args: argparse.Namespace, stream: EventStream) -> int:
    if args.openapi:
        return _write_openapi(args.openapi, stream)
    try:
        config = _config(args)
    except UserError as exc:
        stream.emit("error", **exc.event_fields())
        print(f"error: {exc.message}" + (f" ({exc.hint})" if exc.hint else ""), file=sys.stderr)
        return EXIT_BAD_INPUT
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    stream.emit("hello", pid=os.getpid(), version=__version__, engine=config.engine)
    started_ray = False
    try:
        _check_port_free(args.host, args.port)
        started_ray = start_ray(args.address, args.dashboard_port)
        if stop.is_set():
            return EXIT_OK
        deploy(config, args.host, args.port)
    except UserError as exc:
        stream.emit("error", **exc.event_fields())
        print(f"error: {exc.message}" + (f" ({exc.hint})" if exc.hint else ""), file=sys.stderr)
        stop_ray(started_ray)
        return EXIT_BAD_INPUT
    except Exception as exc:
        message = f"The server could not start ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})."
        stream.emit("error", code="internal", message=message, exit_code=EXIT_INTERNAL)
        print(f"error: {message}", file=sys.stderr)
        stop_ray(started_ray)
        return EXIT_INTERNAL
    url = f"http://{_url_host(args.host)}:{args.port}"
    stream.emit("ready", engine=config.engine, url=url, scaling=config.scaling())
    print(f"TrajMaster server: {url} ({config.engine}, {_describe_scaling(config)}); Ctrl-C stops it.", file=sys.stderr)
    stop.wait()
    print("Stopping the server...", file=sys.stderr)
    stop_ray(started_ray)
    stream.emit("bye")
    return EXIT_OK


def _write_openapi(target: str, stream: EventStream) -> int:
    from .api import create_app

    text = json.dumps(create_app(None).openapi(), indent=1, sort_keys=True) + "\n"
    if target == "-":
        stream.write_raw(text)
    else:
        Path(target).write_text(text, encoding="utf-8")
    return EXIT_OK


# ---------------------------------------------------------------- settings


def _config(args: argparse.Namespace) -> settings.ServerConfig:
    from .api import token_digest
    from .tokens import ensure_token, loose_permissions

    if args.replicas is not None and (args.min_replicas is not None or args.max_replicas is not None):
        raise UserError("bad_request", "Give either --replicas or --min-replicas/--max-replicas, not both.")
    for name in ("replicas", "min_replicas", "max_replicas"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "min_replicas" else 1):
            raise UserError(
                "bad_request", f"--{name.replace('_', '-')} must be at least {0 if name == 'min_replicas' else 1}."
            )
    if args.min_replicas is not None and args.max_replicas is not None and args.max_replicas < args.min_replicas:
        raise UserError("bad_request", "--max-replicas must not be below --min-replicas.")
    if not 0 < args.port < 65536:
        raise UserError("bad_request", f"--port {args.port} is not a port number (1-65535).")
    state = Path(args.state).expanduser() if args.state else default_state_dir()
    try:
        state.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise UserError(
            "bad_output", f"Cannot create the server's folder {state} ({exc.strerror}); use --state."
        ) from None
    token_file = Path(args.token_file).expanduser() if args.token_file else state / "token"
    token, made = ensure_token(token_file)
    if made:
        print(
            f"Made a new access token in {token_file.absolute()} (readable by you only). Give it to the people "
            f"who use this server; it is not shown again:\n\n    {token}\n",
            file=sys.stderr,
        )
    elif loose_permissions(token_file):
        print(f"warning: the token file {token_file} is readable by others; chmod 600 it.", file=sys.stderr)
    model_args = {k: getattr(args, k, v) for k, v in settings.MODEL_ARG_DEFAULTS.items()}
    on_gpu = args.engine == "cogvideox" and str(args.device).split(":")[0] != "cpu"
    if args.engine == "cogvideox":
        model_args.update(absolute_weights(args, check=args.address is None))
    return settings.ServerConfig(
        engine=args.engine,
        model_args=model_args,
        state_dir=str(state.absolute()),
        token_sha256=token_digest(token),
        replicas=args.replicas,
        min_replicas=args.min_replicas,
        max_replicas=args.max_replicas,
        replica_gpus=float(getattr(args, "gpus", 1)) if on_gpu else 0.0,  # --gpus: each replica's take spans N
        replica_cpus=1.0,
        max_request_bytes=args.max_request_bytes,
        max_jobs=args.max_jobs,
        disconnect_grace_s=args.disconnect_grace,
        keep_hours=args.keep_hours,
    )


def absolute_weights(args: argparse.Namespace, check: bool) -> dict[str, Any]:
    """The replicas run from Ray's copy of the package, so 'weights/ next to the extension' must
    be resolved here. On one machine the folders are checked now, before any replica starts."""
    from ..cogvideox import weights

    found = {
        "weights": str(Path(args.weights).expanduser().absolute())
        if args.weights
        else str(weights.default_weights_dir().absolute())
    }
    for key in ("base", "injector", "lora"):
        value = getattr(args, key, None)
        found[key] = str(Path(value).expanduser().absolute()) if value else None
    if check:
        weights.resolve(found["base"], found["injector"], found["lora"], found["weights"])
    return found


# ---------------------------------------------------------------- Ray


def start_ray(address: str | None, dashboard_port: int = 0) -> bool:
    """Join the cluster at `address`, or start a local one with Ray's token authentication on.
    Returns True when this process started it (and so stops it)."""
    if address is None:
        # Ray's ports run arbitrary code for whoever can reach them: a cluster we start requires
        # Ray's own token (kept in ~/.ray/auth_token), whatever the environment said.
        os.environ["RAY_AUTH_MODE"] = "token"
    import ray

    from .app import runtime_env

    options: dict[str, Any] = {
        "log_to_driver": False,
        "configure_logging": True,
        "logging_level": "WARNING",
        "runtime_env": runtime_env(),
    }
    if address is None:
        options.update(address="local", include_dashboard=dashboard_port > 0)
        if dashboard_port > 0:
            options.update(dashboard_host="127.0.0.1", dashboard_port=dashboard_port)
    else:
        options["address"] = address
    try:
        ray.init(**options)
    except ConnectionError as exc:
        raise UserError(
            "unsupported", f"Cannot join the Ray cluster at {address} ({str(exc).splitlines()[0]})."
        ) from None
    return address is None


def deploy(
    config: settings.ServerConfig,
    host: str,
    port: int,
    *,
    name: str = APP_NAME,
    route_prefix: str = "/",
) -> None:
    """Run the application on the connected cluster (Serve's HTTP proxy on host:port, on the
    head node only: clients need one address). Fills in the replica count and the gateway's node."""
    import ray
    from ray import serve

    from .app import build

    gpus = int(ray.cluster_resources().get("GPU", 0))
    if config.replica_gpus and gpus == 0:
        raise UserError(
            "unsupported",
            "This Ray cluster has no GPU for the model's replicas.",
            "Start the server on a machine with an NVIDIA GPU (or join GPU machines with `ray start`), or use "
            "--device cpu (very slow) or --engine preview.",
        )
    if not config.autoscaling and config.replicas is None:
        config.replicas = max(int(gpus // config.replica_gpus), 1) if config.replica_gpus else 1
    if config.replica_gpus and not config.autoscaling and config.replicas * config.replica_gpus > gpus:
        print(
            f"warning: {config.replicas} replicas of {config.replica_gpus:g} GPU(s) asked for, {gpus} GPU(s) in the "
            "cluster: the others start when GPUs join.",
            file=sys.stderr,
        )
    config.gateway_resource = config.gateway_resource or f"node:{ray.util.get_node_ip_address()}"
    serve.start(
        proxy_location="HeadOnly",
        http_options={"host": host, "port": port},
        logging_config={"enable_access_log": False},
    )
    try:
        serve.run(build(config), name=name, route_prefix=route_prefix)
    except RuntimeError as exc:
        raise UserError("unsupported", f"The server's replicas could not start: {_deploy_failure(exc, name)}") from None


def _deploy_failure(exc: Exception, name: str) -> str:
    """The sentence a replica's constructor raised (Serve reports it with its traceback)."""
    from ray import serve

    try:
        app = serve.status().applications.get(name)
        messages = [d.message for d in app.deployments.values() if d.message] if app else []
    except Exception:
        messages = []
    for message in [*messages, str(exc)]:
        for line in reversed(message.splitlines()):
            if line.startswith("RuntimeError: "):
                return line.removeprefix("RuntimeError: ")
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"{first}; see Ray's logs (ray/session_latest/logs/serve)."


def stop_ray(started_ray: bool, name: str = APP_NAME) -> None:
    """Remove the application; stop Serve and Ray too when this process started the cluster."""
    try:
        import ray
        from ray import serve

        if not ray.is_initialized():
            return
        if started_ray:
            serve.shutdown()
        else:
            serve.delete(name)
        ray.shutdown()
    except Exception as exc:  # stopping must not turn into a traceback
        print(f"warning: stopping Ray: {exc}", file=sys.stderr)


def _check_port_free(host: str, port: int) -> None:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise UserError("bad_request", f"--host {host!r} is not an address of this machine.") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        try:
            probe.bind(address)
        except OSError:
            raise UserError(
                "bad_request", f"The port {port} on {host} is in use or not allowed; choose another with --port."
            ) from None


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::"):
        return socket.gethostname()
    return f"[{host}]" if ":" in host else host


def _describe_scaling(config: settings.ServerConfig) -> str:
    if config.autoscaling:
        return f"{config.min_replicas} to {config.max_replicas} replicas on demand"
    return f"{config.replicas} replica{'s' if config.replicas != 1 else ''}"
