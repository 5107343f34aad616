"""The other ranks of a take spread over several GPUs (--gpus): child processes of the engine's.

Rank 0 is the engine's own process (the CLI's or the worker's: the add-on still talks to one
process). Ranks 1.. are torch.multiprocessing 'spawn' children, each a whole CogVideoXEngine on
its own device (cuda:k+r for --device cuda:k; on --device cpu, processes on the CPU), joined to
rank 0 in one torch.distributed process group (NCCL on GPUs, gloo on the CPU) through a TCPStore
on 127.0.0.1 at a port the OS picks. Per job, rank 0 sends the job over a pipe; every rank then
encodes and samples it (parallel.py splits the guidance batch between them) and the children
answer "done", "cancelled" or one sentence saying why they failed; rank 0 alone decodes.

They live and die with rank 0: a child exits when its pipe closes or its parent is gone
(reparented), and ignores SIGINT (a Ctrl-C in a terminal reaches the whole process group; rank
0 decides what it means). A child that fails mid-job says why and exits, and any child that
exits mid-job ends the job on rank 0 with one sentence (RankFailed), never a hang: gloo fails
rank 0's collective when the connection closes; for NCCL a watcher thread aborts rank 0's
process group when a child's process ends; the group's timeout bounds anything else.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from multiprocessing.connection import Connection, wait
from typing import Any, TypeVar

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ..errors import OutOfMemory, RankFailed, UserError, clip
from ..progress import Cancelled
from . import memory

T = TypeVar("T")
HOST = "127.0.0.1"
# A child imports torch and diffusers before it joins: slow on a loaded machine, bounded anyway.
JOIN_TIMEOUT_S = 300.0
# Loading the weights on the child's device (minutes for CogVideoX-5B from a slow disk).
LOAD_TIMEOUT_S = 1800.0
# One collective (a step's exchange) never takes this long unless a rank is lost.
COLLECTIVE_TIMEOUT_S = 600.0
# After rank 0's last exchange a child only finishes its scheduler step before it answers.
ANSWER_TIMEOUT_S = 120.0
PARENT_POLL_S = 0.5
STOP_GRACE_S = 5.0


def rank_device(device: torch.device, rank: int) -> torch.device:
    if device.type == "cpu":
        return device
    return torch.device("cuda", (device.index or 0) + rank)


class Ranks:
    """Ranks 1..world-1 of this engine, started and joined to rank 0's process group."""

    def __init__(self, world: int, device: torch.device, loader: Callable[..., Any], load_args: dict[str, Any]):
        """`loader(device=..., **load_args)` builds a child's engine (a module-level function:
        spawn pickles it by name), e.g. engine.load."""
        if dist.is_initialized():
            raise RuntimeError("a process holds one multi-rank engine at a time (torch.distributed's default group)")
        self.world = world
        self.device = device
        self.backend = "gloo" if device.type == "cpu" else "nccl"
        self.closed = False
        self.processes: list[Any] = []
        self.pipes: list[Connection] = []
        store = dist.TCPStore(HOST, 0, world, True, timedelta(seconds=JOIN_TIMEOUT_S), wait_for_workers=False)
        context = mp.get_context("spawn")
        try:
            for rank in range(1, world):
                ours, theirs = context.Pipe()
                process = context.Process(
                    target=_child_main,
                    args=(
                        rank,
                        world,
                        store.port,
                        self.backend,
                        str(rank_device(device, rank)),
                        loader,
                        load_args,
                        os.getpid(),
                    ),
                    kwargs={"pipe": theirs},
                    name=f"trajmaster-rank{rank}",
                    daemon=True,
                )
                process.start()
                theirs.close()
                self.processes.append(process)
                self.pipes.append(ours)
            for rank in range(1, world):
                self._expect(rank, ("joining",), JOIN_TIMEOUT_S, "start")
            options: dict[str, Any] = {}
            if device.type == "cuda":
                torch.cuda.set_device(rank_device(device, 0))
                options["device_id"] = rank_device(device, 0)
            dist.init_process_group(
                self.backend,
                store=store,
                rank=0,
                world_size=world,
                timeout=timedelta(seconds=COLLECTIVE_TIMEOUT_S),
                **options,
            )
        except BaseException:
            self.close()
            raise

    def name(self, rank: int) -> str:
        kind = "GPU process" if self.device.type == "cuda" else "process"
        return f"The {kind} of rank {rank} ({rank_device(self.device, rank)})"

    def wait_ready(self) -> None:
        """Wait until every child has loaded the model (rank 0 loads its own meanwhile)."""
        try:
            for rank in range(1, self.world):
                self._expect(rank, ("ready",), LOAD_TIMEOUT_S, "load the model")
        except BaseException:
            self.close()
            raise

    def run(self, job: dict[str, Any], sample: Callable[[], T]) -> T:
        """Rank 0's `sample()` for `job`, with every child sampling it alongside."""
        if self.closed:
            raise RankFailed("The GPU processes of this engine were stopped by an earlier failure; run the job again.")
        for pipe in self.pipes:
            pipe.send(("job", job))
        watcher = _Watcher(self.processes, self._abort if self.backend == "nccl" else None)
        try:
            with watcher:
                result = sample()
        except Cancelled:
            # Every child saw the same stop flag (or, on the last step, had finished).
            for rank in range(1, self.world):
                self._expect(rank, ("cancelled", "done"), ANSWER_TIMEOUT_S, "stop")
            raise
        except BaseException:
            # The children are mid-job in an unknown state: stop them, and say why if one failed.
            why = self._failure()
            self.close()
            if why:
                raise RankFailed(why) from None
            raise  # rank 0's own failure (out of memory, a crash), reported as on one GPU
        for rank in range(1, self.world):
            self._expect(rank, ("done",), ANSWER_TIMEOUT_S, "finish")
        return result

    def close(self) -> None:
        """Stop the children (politely, then by force) and leave the process group."""
        if self.closed:
            return
        self.closed = True
        for pipe in self.pipes:
            try:
                pipe.send(("close",))
            except OSError:
                pass
        deadline = time.monotonic() + STOP_GRACE_S
        for process in self.processes:
            process.join(max(deadline - time.monotonic(), 0.1))
            if process.is_alive():
                process.kill()
                process.join(STOP_GRACE_S)
        for pipe in self.pipes:
            pipe.close()
        if dist.is_initialized():
            try:
                dist.destroy_process_group()
            except Exception:  # a group broken by a lost rank cannot always be left cleanly
                pass

    # ------------------------------------------------------------ internals

    def _abort(self) -> None:
        try:
            dist.distributed_c10d._abort_process_group()
        except Exception:  # older torch: the group's timeout ends the wait instead
            pass

    def _failure(self) -> str | None:
        """Why a child failed or stopped, if one did (its own sentence if it sent one)."""
        for rank, (process, pipe) in enumerate(zip(self.processes, self.pipes, strict=True), start=1):
            sentence = None
            process.join(1.0 if not process.is_alive() else 0.0)
            try:
                while pipe.poll(0.5 if not process.is_alive() else 0.0):
                    message = pipe.recv()
                    if message[0] == "error":
                        sentence = message[1]
            except (EOFError, OSError):
                pass
            if sentence:
                return f"{self.name(rank)} failed: {sentence}"
            if not process.is_alive():
                return f"{self.name(rank)} stopped mid-job (exit code {process.exitcode})."
        return None

    def _expect(self, rank: int, wanted: tuple[str, ...], timeout: float, doing: str) -> None:
        process, pipe = self.processes[rank - 1], self.pipes[rank - 1]
        deadline = time.monotonic() + timeout
        while True:
            ready = wait([pipe, process.sentinel], timeout=max(deadline - time.monotonic(), 0.0))
            if pipe in ready:
                try:
                    message = pipe.recv()
                except (EOFError, OSError):
                    message = None
                if message and message[0] in wanted:
                    return
                if message and message[0] == "error":
                    self.close()
                    raise RankFailed(f"{self.name(rank)} could not {doing}: {message[1]}")
                if message:
                    continue
            if not process.is_alive() or pipe in ready:
                process.join(1.0)
                self.close()
                raise RankFailed(f"{self.name(rank)} stopped before it could {doing} (exit code {process.exitcode}).")
            if time.monotonic() >= deadline:
                self.close()
                raise RankFailed(f"{self.name(rank)} did not {doing} within {timeout:.0f} s.")


class _Watcher:
    """While a job runs: when a child's process ends, call `on_lost` (NCCL's abort)."""

    def __init__(self, processes: list[Any], on_lost: Callable[[], None] | None):
        self.processes, self.on_lost = processes, on_lost
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="trajmaster-ranks", daemon=True)

    def _run(self) -> None:
        sentinels = [p.sentinel for p in self.processes]
        while not self.done.is_set():
            if wait(sentinels, timeout=0.2):
                if not self.done.is_set() and self.on_lost is not None:
                    self.on_lost()
                return

    def __enter__(self) -> _Watcher:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join(timeout=1.0)


# ---------------------------------------------------------------- the child's side


def _describe_failure(exc: BaseException) -> str:
    if isinstance(exc, UserError):
        return exc.message + (f" ({exc.hint})" if exc.hint else "")
    if isinstance(exc, OutOfMemory) or memory.is_out_of_memory(exc):
        return "its GPU ran out of memory."
    from ..outcome import crash_log

    return f"{type(exc).__name__}: {clip(str(exc), 120)} (details in {crash_log(exc)})."


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(PARENT_POLL_S)
        if os.getppid() != parent:
            os._exit(1)


def _child_main(
    rank: int,
    world: int,
    port: int,
    backend: str,
    device_name: str,
    loader: Callable[..., Any],
    load_args: dict[str, Any],
    parent: int,
    pipe: Connection,
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    device = torch.device(device_name)
    try:
        pipe.send(("joining",))
        store = dist.TCPStore(HOST, port, world, False, timedelta(seconds=JOIN_TIMEOUT_S))
        options: dict[str, Any] = {}
        if device.type == "cuda":
            torch.cuda.set_device(device)
            options["device_id"] = device
        dist.init_process_group(
            backend,
            store=store,
            rank=rank,
            world_size=world,
            timeout=timedelta(seconds=COLLECTIVE_TIMEOUT_S),
            **options,
        )
        follower = loader(device=device, **load_args)
        pipe.send(("ready",))
    except BaseException as exc:
        _fail(pipe, exc)
    while True:
        try:
            message = pipe.recv()
        except (EOFError, OSError):
            os._exit(0)
        if message[0] != "job":
            break
        try:
            follower.follow(message[1])
            pipe.send(("done",))
        except Cancelled:
            pipe.send(("cancelled",))
        except BaseException as exc:
            _fail(pipe, exc)
    follower.close()
    dist.destroy_process_group()


def _fail(pipe: Connection, exc: BaseException) -> None:
    """Say why in one sentence and exit: rank 0, waiting in a collective, sees the exit."""
    try:
        pipe.send(("error", _describe_failure(exc)))
    finally:
        os._exit(1)
