"""Prompt encoding (cached) and annealed sampling on diffusers' own CogVideoXPipeline.

Sampling is the stock pipeline's loop, unchanged: DPM solver on trailing timesteps, the stock
dynamic classifier-free guidance, latents and scheduler noise from a CPU generator seeded with
the job's seed. The trajectory reaches the transformer through attention_kwargs; a step-end
callback reports progress (and so is the cancellation point) and, after step
`annealed_steps` (0-based, inclusive, as the release counts), switches the injector off and
disables the LoRA adapter. One transformer therefore gives what the release gets from two (a
copy made before the LoRA, and the LoRA fused at the job's scale). A job with a step cache
(sampling.step_cache, step_cache.py) has it started at that same moment and stopped at the end.

With several ranks (parallel.py) every rank runs this same function; `stop` is then the rank's
stop flag for the per-step exchange, which is where the ranks stop together.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..job import resolve_sampling
from ..progress import Cancelled
from . import parallel
from .step_cache import StepCache
from .transformer import TRAJECTORY_KEY, TrajectoryCondition
from .weights import ADAPTER

NEGATIVE_PROMPT = ""  # the release's negative prompt; also the injector's "empty prompt"


@dataclass(frozen=True)
class Sampling:
    seed: int
    steps: int
    guidance_scale: float
    lora_scale: float
    annealed_steps: int
    height: int
    width: int
    frames: int
    quality: str = "custom"
    step_cache: float | None = None  # First Block Cache threshold after the injector; None: off

    @classmethod
    def from_job(cls, job: dict[str, Any]) -> Sampling:
        s = resolve_sampling(job["sampling"])
        cache = s.get("step_cache")
        return cls(
            int(s["seed"]),
            int(s["steps"]),
            float(s["guidance_scale"]),
            float(s["lora_scale"]),
            int(s["annealed_steps"]),
            int(s["height"]),
            int(s["width"]),
            int(s["frames"]),
            str(s["quality"]),
            None if cache is None else float(cache),
        )

    @property
    def injector_steps(self) -> int:
        return min(self.annealed_steps + 1, self.steps)


class PromptCache:
    """T5 encodings (and tokenizer masks) by text, kept on the sampling device between jobs.

    Each text is encoded on its own, exactly as the stock pipeline encodes a prompt (padded to
    the model's text length, no attention mask given to T5), so a cached encoding is the one
    the pipeline would have made.
    """

    def __init__(self, capacity: int = 64):
        self.capacity = capacity
        self._items: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        self._items.clear()

    def encode(self, pipe: Any, texts: list[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(embeds (n, T, C), mask (n, T)) for `texts`, encoding only those not seen before."""
        length = pipe.transformer.config.max_text_seq_length
        for text in texts:
            if text in self._items:
                self._items.move_to_end(text)
                self.hits += 1
                continue
            self.misses += 1
            embeds, _ = pipe.encode_prompt(
                prompt=text,
                do_classifier_free_guidance=False,
                max_sequence_length=length,
                device=device,
                dtype=pipe.transformer.dtype,
            )
            mask = pipe.tokenizer(
                text,
                padding="max_length",
                max_length=length,
                truncation=True,
                add_special_tokens=True,
                return_tensors="pt",
            ).attention_mask
            self._items[text] = (embeds.to(device), mask.to(device))
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        embeds = torch.cat([self._items[t][0] for t in texts])
        masks = torch.cat([self._items[t][1] for t in texts])
        return embeds, masks


@dataclass
class Prompts:
    """Everything the text encoder gives one job."""

    prompt: torch.Tensor  # (1, T, C) the global prompt
    negative: torch.Tensor  # (1, T, C) the negative prompt ""
    condition: TrajectoryCondition


def encode(pipe: Any, cache: PromptCache, job: dict[str, Any], device: torch.device) -> Prompts:
    entity_texts = [e["prompt"] for e in job["entities"]]
    global_text = job["prompt"]["text"]
    embeds, masks = cache.encode(pipe, [global_text, NEGATIVE_PROMPT, *entity_texts], device)
    poses = torch.tensor(np.asarray([e["poses"] for e in job["entities"]], dtype=np.float32), device=device)
    condition = TrajectoryCondition(
        poses=poses[None],
        entity_embeds=embeds[2:][None],
        entity_mask=masks[2:][None],
        empty_embeds=embeds[1:2],
    )
    return Prompts(prompt=embeds[0:1], negative=embeds[1:2], condition=condition)


def sample(
    pipe: Any,
    prompts: Prompts,
    sampling: Sampling,
    on_step: Callable[[int, int], None] | None = None,
    stop: Callable[[], bool] | None = None,
    cache: StepCache | None = None,
) -> torch.Tensor:
    """The job's final latents (1, F, C, h, w). `on_step(done, total)` runs after every step.

    `stop` (several ranks only) turns on the guidance split; a cancel that on_step raises before
    the last step then waits for the next step's exchange, which stops every rank at once.
    `cache` (made for the job's sampling.step_cache) runs on the steps after the injector only.
    """
    transformer = pipe.transformer
    condition = prompts.condition
    condition.active = True
    transformer.enable_lora()
    transformer.set_adapters([ADAPTER], weights=[sampling.lora_scale])

    def step_end(pipeline: Any, index: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        if cache is not None:
            cache.step_done()
        if index == sampling.annealed_steps:
            condition.active = False
            transformer.disable_lora()
            if cache is not None:
                cache.start()
        if on_step is not None:
            try:
                on_step(index + 1, sampling.steps)
            except Cancelled:
                if stop is None or index + 1 == sampling.steps:
                    raise
        return {}

    split = parallel.split_guidance(transformer, stop) if stop is not None else nullcontext()
    try:
        with split:
            return pipe(
                prompt_embeds=prompts.prompt,
                negative_prompt_embeds=prompts.negative,
                height=sampling.height,
                width=sampling.width,
                num_frames=sampling.frames,
                num_inference_steps=sampling.steps,
                guidance_scale=sampling.guidance_scale,
                use_dynamic_cfg=True,
                generator=torch.Generator().manual_seed(sampling.seed),
                output_type="latent",
                return_dict=False,
                attention_kwargs={TRAJECTORY_KEY: condition},
                callback_on_step_end=step_end,
                max_sequence_length=transformer.config.max_text_seq_length,
            )[0]
    finally:
        if cache is not None:
            cache.stop()
        condition.active = True
        transformer.enable_lora()


def decode(pipe: Any, latents: torch.Tensor) -> np.ndarray:
    """uint8 RGB frames (F, H, W, 3), rounded as the release's PIL export rounds them."""
    video = pipe.decode_latents(latents)
    frames = pipe.video_processor.postprocess_video(video=video, output_type="np")[0]
    pipe.maybe_free_model_hooks()
    return np.clip(np.round(frames * 255.0), 0, 255).astype(np.uint8)
