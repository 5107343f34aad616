"""Step caching on the steps after the injector, through diffusers' First Block Cache.

First Block Cache (diffusers.hooks.first_block_cache) runs the first transformer block every
step and compares its residual with the previous step's; when the relative change is below the
threshold, the other blocks are skipped and their previous residual is reused. Of diffusers'
three stock caches it is the one that fits the injector-free steps: it decides from the model's
own state step by step, so a short run of steps (11 of draft's 20) gets what it can without a
schedule tuned to 50 steps (Pyramid Attention Broadcast and FasterCache skip on fixed timestep
ranges and block intervals, and PAB would also hook attn_injector, an Attention under
transformer_blocks).

It is never on during an injector step: the sampler starts it in its step-end callback right
after the last injector step (when it switches the injector and the LoRA off) and stops it when
the job ends, so its state begins empty on the first step without the injector (that step
computes every block) and no residual from an injector step is ever reused.

The hooks find a block's outputs through diffusers' TransformerBlockRegistry, keyed by the exact
class; TrajMasterBlock returns what CogVideoXBlock returns and is registered the same way.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers.hooks import FirstBlockCacheConfig
from diffusers.hooks._helpers import TransformerBlockMetadata, TransformerBlockRegistry

from .injector import TrajMasterBlock

# (hidden_states, encoder_hidden_states), as CogVideoXBlock's own registration says.
TransformerBlockRegistry.register(
    TrajMasterBlock, TransformerBlockMetadata(return_hidden_states_index=0, return_encoder_hidden_states_index=1)
)


class StepCache:
    """First Block Cache on one transformer for the steps of one job after the injector.

    Counts the steps that ran every block and those that reused the cache (the last block's
    self-attention runs only when a step computes the blocks), for the take's sidecar.
    """

    def __init__(self, transformer: Any, threshold: float):
        self.transformer = transformer
        self.threshold = float(threshold)
        self.computed = 0
        self.skipped = 0
        self._on = False
        self._ran = False
        self._counter: Any = None

    @property
    def active(self) -> bool:
        return self._on

    def start(self) -> None:
        if self._on:
            return
        self.transformer.enable_cache(FirstBlockCacheConfig(threshold=self.threshold))
        last = self.transformer.transformer_blocks[-1].attn1
        self._counter = last.register_forward_pre_hook(self._tail_ran)
        self._on = True

    def _tail_ran(self, module: torch.nn.Module, args: Any) -> None:
        self._ran = True

    def step_done(self) -> None:
        """Call at the end of every step while the cache is on."""
        if not self._on:
            return
        if self._ran:
            self.computed += 1
        else:
            self.skipped += 1
        self._ran = False

    def stop(self) -> None:
        if not self._on:
            return
        self._counter.remove()
        self.transformer.disable_cache()
        self._on = False

    def record(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "computed_steps": self.computed, "skipped_steps": self.skipped}
