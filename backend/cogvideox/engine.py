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
from . import memory, pipeline
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
    ):
        self.pipe = pipe
        self.paths = paths
        self.device = device
        self.dtype = dtype
        self.requested_memory = memory_mode
        self.memory_mode = memory.choose(memory_mode, device)
        self.compiled = compiled
        self.quantized = quantized
        self.prompts = pipeline.PromptCache()
        self.last_job: dict[str, Any] = {}
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
                if self.requested_memory == "auto" and attempt == 1 and nxt:
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
        sampling = pipeline.Sampling.from_job(job)
        memory.reset_peak(self.device)
        stages: dict[str, float] = {}

        t0 = time.monotonic()
        report.stage("encoding", "Encoding the prompts")
        prompts = pipeline.encode(self.pipe, self.prompts, job, self.device)
        stages["encode_s"] = time.monotonic() - t0

        t0 = time.monotonic()
        report.stage(
            "sampling",
            f"Sampling {sampling.steps} steps ({sampling.injector_steps} with the injector)",
        )
        cache = None
        if sampling.step_cache is not None:
            from .step_cache import StepCache

            cache = StepCache(self.pipe.transformer, sampling.step_cache)
        latents = pipeline.sample(
            self.pipe,
            prompts,
            sampling,
            on_step=lambda done, total: report.progress(done, total, "sampling"),
            cache=cache,
        )
        stages["sample_s"] = time.monotonic() - t0

        t0 = time.monotonic()
        report.stage("decoding", "Decoding the video")
        frames = pipeline.decode(self.pipe, latents)
        stages["decode_s"] = time.monotonic() - t0

        self.last_job = {
            "seconds": {k: round(v, 3) for k, v in stages.items()},
            "peak_vram_bytes": memory.peak_bytes(self.device),
            "memory_mode": self.memory_mode,
            "steps": sampling.steps,
            "prompt_cache": {"hits": self.prompts.hits, "misses": self.prompts.misses},
            "speed": job_speed(sampling, cache),
        }
        report.metrics.update(self.last_job)
        return frames

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
            # Every engine-wide speed option in effect, one key each (the take's strip lists them).
            "speed": {
                "dtype": str(self.dtype).removeprefix("torch."),
                "memory": self.memory_mode,
                "compile": self.compiled,
                "quantize": self.quantized,
            },
            "last_job": self.last_job,
        }

    def close(self) -> None:
        self.prompts.clear()
        self.pipe = None
        memory.release()


def job_speed(sampling: pipeline.Sampling, cache: Any = None) -> dict[str, Any]:
    """The per-job part of the speed record: the quality, its steps and the step cache's work."""
    return {
        "quality": sampling.quality,
        "steps": sampling.steps,
        "injector_steps": sampling.injector_steps,
        "step_cache": cache.record() if cache is not None else "off",
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
) -> CogVideoXEngine:
    """Load the weights (raises UserError for bad folders) and place them per memory mode."""
    from . import speed, weights

    pipe = weights.load_pipeline(paths, dtype)
    speed.quantize_transformer(pipe, quantize, device)
    engine = CogVideoXEngine(pipe, paths, device, dtype, memory_mode, compiled=compile_blocks, quantized=quantize)
    if compile_blocks:
        speed.compile_transformer(pipe)
    return engine
