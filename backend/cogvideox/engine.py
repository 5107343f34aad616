"""The cogvideox Engine: a validated job in, 49 uint8 frames out.

Loaded once (make_engine) and kept by the worker between jobs: the models stay placed, encoded
prompts stay cached. Raises UserError('unsupported') for a job this model cannot run,
OutOfMemory (with the next lower memory mode) when the GPU runs out, and Cancelled (from
report.progress) at a step boundary.
"""

from __future__ import annotations

import platform
import time
from importlib import metadata
from typing import Any

import numpy as np
import torch

from .. import timeplan
from ..errors import OutOfMemory, UserError
from ..progress import Report
from . import attention, memory, parallel, pipeline
from .weights import WeightPaths

MODEL = "CogVideoX-5B + 3DTrajMaster (injector + LoRA)"


class CogVideoXEngine:
    name = "cogvideox"

    def __init__(
        self,
        pipe: Any,
        paths: WeightPaths,
        device: torch.device,
        dtype: torch.dtype,
        memory_mode: str = "auto",
        compiled: bool = False,
        quantized: str = "none",
        attention_choice: attention.Choice | None = None,
        fallbacks: dict[str, str] | None = None,
        layout: parallel.Layout | None = None,
        ranks: Any = None,
    ):
        self.pipe = pipe
        self.paths = paths
        self.device = device
        self.dtype = dtype
        self.requested_memory = memory_mode
        self.memory_mode = memory.choose(memory_mode, device)
        self.compiled = compiled
        self.quantized = quantized
        self.attention = attention_choice or attention.Choice("auto", attention.DEFAULT)
        # option -> the sentence saying why it is not in effect (emitted as warnings by make_engine)
        self.fallbacks = dict(fallbacks or {})
        if self.attention.fallback:
            self.fallbacks["attention"] = self.attention.fallback
        self.layout = layout or parallel.Layout()
        self.ranks = ranks  # ranks.Ranks: the other GPUs' processes (--gpus), or None
        self.prompts = pipeline.PromptCache()
        self.last_job: dict[str, Any] = {}
        self.job_speed: dict[str, Any] = {}  # the last job's quality, steps and step cache (job_speed)
        memory.apply(pipe, self.memory_mode, device)

    # ------------------------------------------------------------ the job

    def supported_size(self) -> tuple[int, int]:
        config = self.pipe.transformer.config
        scale = self.pipe.vae_scale_factor_spatial
        return config.sample_height * scale, config.sample_width * scale

    def check_job(self, job: dict[str, Any]) -> None:
        s = job["sampling"]
        height, width = self.supported_size()
        if (s["height"], s["width"]) != (height, width):
            raise UserError(
                "unsupported",
                f"This model makes {height}x{width} (height x width) video only; the job asks for "
                f"{s['height']}x{s['width']}.",
                f"Set the job's sampling height to {height} and width to {width}.",
            )
        latent_frames = (s["frames"] - 1) // self.pipe.vae_scale_factor_temporal + 1
        if latent_frames != timeplan.POSE_SLOTS or (s["frames"] - 1) % self.pipe.vae_scale_factor_temporal:
            raise UserError(
                "unsupported",
                f"This model makes {(timeplan.POSE_SLOTS - 1) * self.pipe.vae_scale_factor_temporal + 1}-frame "
                f"video (one pose slot per latent frame); the job asks for {s['frames']} frames.",
            )

    def render(self, job: dict[str, Any], report: Report) -> np.ndarray:
        self.check_job(job)
        for attempt in (1, 2):
            try:
                return self._render_once(job, report)
            except Exception as exc:
                if not memory.is_out_of_memory(exc):
                    raise
                peak = memory.peak_bytes(self.device)
                memory.release()
                nxt = memory.lower(self.memory_mode)
                # Several ranks: the others were stopped mid-job (ranks.py); the next job reloads.
                if self.requested_memory == "auto" and attempt == 1 and nxt and self.ranks is None:
                    report.warning(
                        "memory_fallback",
                        f"The GPU ran out of memory in memory mode '{self.memory_mode}'; retrying in '{nxt}'.",
                    )
                    self.use_memory_mode(nxt)
                    continue
                raise OutOfMemory(
                    f"The GPU ran out of memory in memory mode '{self.memory_mode}'.",
                    suggest_memory=nxt,
                    peak_bytes=peak,
                ) from None
        raise AssertionError("unreachable")

    def use_memory_mode(self, mode: str) -> None:
        memory.apply(self.pipe, mode, self.device)
        self.memory_mode = mode

    @torch.no_grad()
    def _render_once(self, job: dict[str, Any], report: Report) -> np.ndarray:
        memory.reset_peak(self.device)
        stages: dict[str, float] = {}
        latents = self.latents(job, report, stages)

        t0 = time.monotonic()
        report.stage("decoding", "Decoding the video")
        frames = pipeline.decode(self.pipe, latents)
        stages["decode_s"] = time.monotonic() - t0

        self.last_job = {
            "seconds": {k: round(v, 3) for k, v in stages.items()},
            "peak_vram_bytes": memory.peak_bytes(self.device),
            "memory_mode": self.memory_mode,
            "steps": pipeline.Sampling.from_job(job).steps,
            "prompt_cache": {"hits": self.prompts.hits, "misses": self.prompts.misses},
            "speed": self.job_speed,
        }
        report.metrics.update(self.last_job)
        return frames

    @torch.no_grad()
    def latents(self, job: dict[str, Any], report: Report, stages: dict[str, float] | None = None) -> torch.Tensor:
        """The job's final latents (encoding and sampling, on every rank when there are several)."""
        sampling = pipeline.Sampling.from_job(job)
        stages = {} if stages is None else stages

        t0 = time.monotonic()
        report.stage("encoding", "Encoding the prompts")
        prompts = pipeline.encode(self.pipe, self.prompts, job, self.device)
        stages["encode_s"] = time.monotonic() - t0

        t0 = time.monotonic()
        report.stage(
            "sampling",
            f"Sampling {sampling.steps} steps ({sampling.injector_steps} with the injector)",
        )

        def on_step(done: int, total: int) -> None:
            report.progress(done, total, "sampling")

        cache = self._step_cache(sampling)
        with attention.applied(self.attention):
            if self.ranks is None:
                latents = pipeline.sample(self.pipe, prompts, sampling, on_step=on_step, cache=cache)
            else:
                latents = self.ranks.run(
                    job,
                    lambda: pipeline.sample(self.pipe, prompts, sampling, on_step=on_step, stop=report.cancel.is_set),
                )
        self.job_speed = job_speed(sampling, cache, several_gpus=self.ranks is not None)
        stages["sample_s"] = time.monotonic() - t0
        return latents

    @torch.no_grad()
    def follow(self, job: dict[str, Any]) -> None:
        """A rank other than 0 (ranks.py): sample `job` alongside rank 0; rank 0 decodes."""
        prompts = pipeline.encode(self.pipe, self.prompts, job, self.device)
        with attention.applied(self.attention):
            pipeline.sample(self.pipe, prompts, pipeline.Sampling.from_job(job), stop=lambda: False)

    def _step_cache(self, sampling: pipeline.Sampling) -> Any:
        """The job's step cache, or None. Not with several ranks: each would decide on its own
        half of the guidance batch, skip other steps, and the ranks' halves would drift apart."""
        if sampling.step_cache is None or self.ranks is not None:
            return None
        from .step_cache import StepCache

        return StepCache(self.pipe.transformer, sampling.step_cache)

    # ------------------------------------------------------------ the engine

    def describe(self) -> dict[str, Any]:
        device = {"type": self.device.type, "name": platform.processor() or platform.machine()}
        if self.device.type == "cuda":
            props = torch.cuda.get_device_properties(self.device)
            device = {"type": "cuda", "name": props.name, "vram_bytes": props.total_memory}
        return {
            "name": self.name,
            "model": MODEL,
            "versions": _versions(),
            "device": device,
            "dtype": str(self.dtype).removeprefix("torch."),
            "memory": {"requested": self.requested_memory, "mode": self.memory_mode},
            "weights": self.paths.as_dict(),
            "compile": self.compiled,
            "quantize": self.quantized,
            "speed": self.speed(),
            "last_job": self.last_job,
        }

    def speed(self) -> dict[str, Any]:
        """Every engine-wide speed option in effect, and for each fallback the sentence why."""
        out: dict[str, Any] = {
            "attention": self.attention.used,
            "quantize": self.quantized,
            "compile": self.compiled,
            "dtype": str(self.dtype).removeprefix("torch."),
            "memory": self.memory_mode,
        }
        out.update(self.layout.describe())  # gpus, parallel, and gpus_fallback when fewer than asked
        for option, sentence in self.fallbacks.items():
            out[f"{option}_fallback"] = sentence
        return out

    def close(self) -> None:
        if self.ranks is not None:
            self.ranks.close()
        self.prompts.clear()
        self.pipe = None
        memory.release()


def job_speed(sampling: pipeline.Sampling, cache: Any = None, *, several_gpus: bool = False) -> dict[str, Any]:
    """The per-job part of the speed record: the quality, its steps and the step cache's work."""
    off = "off (not used when a take is spread over several GPUs)" if sampling.step_cache and several_gpus else "off"
    return {
        "quality": sampling.quality,
        "steps": sampling.steps,
        "injector_steps": sampling.injector_steps,
        "step_cache": cache.record() if cache is not None else off,
    }


def _versions() -> dict[str, str]:
    out = {"torch": torch.__version__, "cuda": str(torch.version.cuda)}
    for package in ("diffusers", "transformers", "peft", "accelerate", "safetensors"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "missing"
    return out


def load(
    paths: WeightPaths,
    device: torch.device,
    dtype: torch.dtype,
    memory_mode: str = "auto",
    compile_blocks: bool = False,
    quantize: str = "none",
    attention: str = "auto",
    hw: Any = None,
    gpus: int = 1,
    explicit_cpu: bool = False,
) -> CogVideoXEngine:
    """Load the weights (raises UserError for bad folders) and place them per memory mode.

    Speed options this machine cannot run fall back to the default; engine.fallbacks says why.
    `hw` (hardware.Hardware) defaults to what `device` is. With `gpus` > 1 the other ranks start
    first and load theirs meanwhile (parallel.plan decides how many there are:
    `engine.layout.note` says why when fewer than asked).
    """
    from . import attention as attention_options
    from . import hardware, speed, weights

    hw = hw or hardware.of(device)
    choice = attention_options.choose(attention, hw, dtype, device)
    layout = parallel.plan(gpus, device, explicit_cpu)
    ranks = None
    if layout.gpus > 1:
        from .ranks import Ranks

        settings = {"paths": paths, "dtype": dtype, "memory_mode": memory_mode, "attention": attention}
        settings.update(compile_blocks=compile_blocks, quantize=quantize)
        ranks = Ranks(layout.gpus, device, load, settings)
    try:
        pipe = weights.load_pipeline(paths, dtype)
        quantized, why = speed.quantize_transformer(pipe, quantize, hw)
        engine = CogVideoXEngine(
            pipe,
            paths,
            device,
            dtype,
            memory_mode,
            compiled=compile_blocks,
            quantized=quantized,
            attention_choice=choice,
            fallbacks={"quantize": why} if why else None,
            layout=layout,
            ranks=ranks,
        )
        if compile_blocks:
            speed.compile_transformer(pipe)
        if ranks is not None:
            ranks.wait_ready()
    except BaseException:
        if ranks is not None:
            ranks.close()
        raise
    return engine
