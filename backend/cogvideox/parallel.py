"""One take on two GPUs: classifier-free-guidance parallelism, and how many GPUs a take gets.

The stock CogVideoXPipeline stacks the guidance batch as [negative, prompt] and calls the
transformer once per step on both. Under GuidanceSplit (a diffusers hook on the transformer) each
rank runs the transformer on its own half only (rank 0 the negative, rank 1 the prompt, both
with the job's trajectory condition, exactly as the one-GPU batch has it), and one all-gather per
step gives every rank the whole prediction. Everything else is the stock loop running unchanged
on every rank: the same seed, latents and scheduler noise (a CPU generator), the same dynamic
guidance, the same step-end callback and so the same injector/LoRA switch after
`annealed_steps`. The ranks therefore hold identical latents at every step and rank 0 decodes.

Cancellation rides on the same exchange: each rank adds a stop flag (rank 0's is the job's
cancel request) and all ranks raise Cancelled together, so no rank is ever left waiting in a
collective for one that stopped.

Sequence parallelism (4-8 GPUs) is not offered: no library shards this transformer's injector
attention without a fork (docs/performance.md, "Several GPUs"); --gpus above 2 runs on 2.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from diffusers.hooks import HookRegistry, ModelHook
from diffusers.models.modeling_outputs import Transformer2DModelOutput

from ..progress import Cancelled

HOOK = "trajmaster_guidance_split"
CFG_RANKS = 2  # the guidance batch has two halves
BATCHED = ("hidden_states", "encoder_hidden_states", "timestep")


@dataclass(frozen=True)
class Layout:
    """How one take is spread: `gpus` ranks (processes) of the `kind` of parallelism, and the
    sentence explaining why it is fewer than asked, if it is."""

    gpus: int = 1
    kind: str = "none"  # "none" or "cfg"
    note: str | None = None

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"gpus": self.gpus, "parallel": self.kind}
        if self.note:
            out["gpus_fallback"] = self.note
        return out


def plan(requested: int, device: torch.device, explicit_cpu: bool = False) -> Layout:
    """The layout for `--gpus requested` on `device`. On the CPU, ranks are processes on the gloo
    backend, offered only for `--device cpu` (it tests the parallel path without a GPU)."""
    if requested < 1:
        raise ValueError("--gpus must be at least 1")
    if requested == 1:
        return Layout()
    if device.type == "cpu":
        if not explicit_cpu:
            return Layout(note=f"--gpus {requested} asked for, but no GPU is visible: rendering in one process.")
        available = CFG_RANKS
    else:
        first = device.index or 0
        available = max(torch.cuda.device_count() - first, 1)
        if available < CFG_RANKS:
            return Layout(
                note=f"--gpus {requested} asked for, but only {available} GPU from cuda:{first} on is visible: "
                "rendering on one."
            )
    if requested > CFG_RANKS:
        return Layout(
            CFG_RANKS,
            "cfg",
            f"--gpus {requested} asked for, but only classifier-free-guidance parallelism (2 GPUs) is available "
            "for this model (no sequence parallelism: docs/performance.md): rendering on 2.",
        )
    return Layout(CFG_RANKS, "cfg")


class GuidanceSplit(ModelHook):
    """Runs this rank's half of the guidance batch and all-gathers the halves (see the module
    docstring). A batch of one (guidance scale 1: no guidance) is computed whole on every rank;
    only the stop flags are exchanged then."""

    def __init__(self, stop: Callable[[], bool]):
        super().__init__()
        self.stop = stop
        self.rank = dist.get_rank()
        self.world = dist.get_world_size()
        self._split = False

    def pre_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> tuple[tuple[Any], dict[str, Any]]:
        if args:
            raise TypeError("GuidanceSplit expects the pipeline's keyword call of the transformer")
        batch = kwargs["hidden_states"].shape[0]
        self._split = batch == self.world
        if self._split:
            for key in BATCHED:
                if kwargs.get(key) is not None:
                    kwargs[key] = kwargs[key][self.rank : self.rank + 1]
        return args, kwargs

    def post_forward(self, module: torch.nn.Module, output: Any) -> Any:
        sample = output[0] if isinstance(output, tuple) else output.sample
        flag = torch.full((1,), 1.0 if self.stop() else 0.0, dtype=sample.dtype, device=sample.device)
        mine = torch.cat([sample.reshape(-1), flag]) if self._split else flag
        parts = [torch.empty_like(mine) for _ in range(self.world)]
        dist.all_gather(parts, mine)  # the step's one exchange
        if any(bool(part[-1] != 0) for part in parts):
            raise Cancelled()
        if self._split:
            sample = torch.cat([part[:-1].view_as(sample) for part in parts])
        return (sample,) if isinstance(output, tuple) else Transformer2DModelOutput(sample=sample)


@contextmanager
def split_guidance(transformer: torch.nn.Module, stop: Callable[[], bool]) -> Iterator[None]:
    """GuidanceSplit on `transformer` for one job (removed after it, so the memory modes'
    offloading hooks are never stacked on top of it)."""
    registry = HookRegistry.check_if_exists_or_initialize(transformer)
    registry.register_hook(GuidanceSplit(stop), HOOK)
    try:
        yield
    finally:
        registry.remove_hook(HOOK, recurse=False)
