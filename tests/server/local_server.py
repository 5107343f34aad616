"""A real TrajMaster server for tests that run outside the backend's environment (Blender's own
Python in tests/blender, the real-window session in tests/gui): run by the backend's Python (it
has Ray), controlled from the test through its stdin and stdout.

    python tests/server/local_server.py STATE_DIR [--replicas N]

starts a Ray cluster of its own on 127.0.0.1 (ports chosen by Ray and the OS), deploys the real
application (`backend.server.command.deploy`, the preview engine) with the test faults' pacing
(faults.py: each preview frame waits FAULTS/pace seconds), and prints one JSON line: `url`,
`token`, `faults`. Then it reads commands, one a line, and answers each with a JSON line:

    restart   the application is deleted and deployed again on the same state folder: a server
              restart (a new gateway and new replicas; queued and running jobs are lost)
    stop      (or end of input) Serve and Ray are shut down and the process exits

`LocalServer` is the test's side of it (standard library only, so Blender's Python runs it).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PYTHON_ENV = "TRAJMASTER_TEST_SERVER_PYTHON"


def default_python() -> Path:
    """The backend's environment (`.venv` of the checkout, as dev.py makes it), unless overridden."""
    return Path(os.environ.get(PYTHON_ENV) or ROOT / ".venv" / "bin" / "python")


class LocalServer:
    """A server process for one test session: start it, pace its replicas, restart it, stop it."""

    def __init__(self, state: Path, replicas: int = 2, python: Path | None = None, timeout: float = 300):
        python = python or default_python()
        if not Path(python).is_file():
            raise RuntimeError(
                f"The team-server tests need the backend's Python with Ray ({python}); run `python3 dev.py setup` "
                f"or set {PYTHON_ENV}."
            )
        self.state = Path(state)
        self.log = self.state.parent / f"{self.state.name}-server.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BLENDER_", "PYTHON"))}
        self._log = open(self.log, "w")
        self.proc = subprocess.Popen(
            [str(python), str(Path(__file__).resolve()), str(self.state), "--replicas", str(replicas)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            start_new_session=True,  # its own group: stop() ends Ray's processes with it
        )
        ready = self._answer(timeout)
        self.url, self.token, self.faults = ready["url"], ready["token"], Path(ready["faults"])
        self.port = int(self.url.rsplit(":", 1)[1].split("/")[0])

    def _answer(self, timeout: float) -> dict:
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not line or not line[0].strip():
            self.stop()
            raise RuntimeError(f"the test server did not answer within {timeout:.0f} s:\n{self.log_tail()}")
        answer = json.loads(line[0])
        if "error" in answer:
            raise RuntimeError(f"the test server failed: {answer['error']}\n{self.log_tail()}")
        return answer

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def pace(self, seconds_per_frame: float) -> None:
        tmp = self.faults / "pace.tmp"
        tmp.write_text(str(seconds_per_frame), encoding="ascii")
        os.replace(tmp, self.faults / "pace")

    def restart(self, timeout: float = 240) -> None:
        self.proc.stdin.write("restart\n")
        self.proc.stdin.flush()
        self._answer(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("stop\n")
                self.proc.stdin.flush()
            except OSError:
                pass
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # whatever of Ray is left in its group
        except ProcessLookupError:
            pass
        self.proc.wait()
        self._log.close()


# --- the server process ---------------------------------------------------------------------------


def _say(answer: dict) -> None:
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()


def main() -> int:
    import argparse
    import warnings

    parser = argparse.ArgumentParser()
    parser.add_argument("state")
    parser.add_argument("--replicas", type=int, default=2)
    args = parser.parse_args()
    sys.path[:0] = [str(ROOT), str(HERE)]
    state = Path(args.state)
    faults_dir = state.parent / f"{state.name}-faults"
    faults_dir.mkdir(parents=True, exist_ok=True)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import faults
        import ray
        from ray import cloudpickle, serve

    from harness import free_port

    from backend.server import APP_NAME
    from backend.server.api import token_digest
    from backend.server.app import runtime_env
    from backend.server.command import deploy
    from backend.server.settings import ServerConfig

    faults.set_pace(faults_dir, 0.0)
    cloudpickle.register_pickle_by_value(faults)
    env = runtime_env()
    env["worker_process_setup_hook"] = faults.install
    env["env_vars"] = {faults.FAULTS_ENV: str(faults_dir)}
    token = secrets.token_urlsafe(24)
    port = free_port()
    try:
        ray.init(
            address="local",
            num_cpus=max(2, args.replicas + 1),
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            runtime_env=env,
        )
        config = ServerConfig(
            state_dir=str(state), token_sha256=token_digest(token), engine="preview", replicas=args.replicas
        )
        deploy(config, "127.0.0.1", port)
        _wait_idle(f"http://127.0.0.1:{port}", token, args.replicas)
    except Exception as exc:
        _say({"error": f"{type(exc).__name__}: {exc}"})
        return 1
    _say({"url": f"http://127.0.0.1:{port}", "token": token, "faults": str(faults_dir)})
    try:
        for line in sys.stdin:
            command = line.strip()
            if command == "restart":
                serve.delete(APP_NAME)
                deploy(config, "127.0.0.1", port)
                _wait_idle(f"http://127.0.0.1:{port}", token, args.replicas)
                _say({"restarted": True})
            elif command == "stop":
                break
    finally:
        serve.shutdown()
        ray.shutdown()
    return 0


def _wait_idle(url: str, token: str, replicas: int, timeout: float = 240) -> None:
    from backend.client import Client, ServerError

    client = Client(url, token)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if sum(r["state"] == "idle" for r in client.status()["replicas"]) >= replicas:
                return
        except ServerError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{replicas} replicas were not idle within {timeout} s")
        time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())
