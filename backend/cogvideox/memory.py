"""Where the models live while a job runs: the memory modes, and what an out-of-memory means.

  full       everything on the GPU (fastest; peak 25.3 GiB on an H100)
  balanced   each whole model on the GPU only while it runs (diffusers' model CPU offload): the
             text encoder leaves when sampling starts, the transformer when decoding starts
             (peak 14.8 GiB; each job pays for moving the transformer in, ~9 s on that H100)
  low        diffusers group offloading: transformer blocks, text-encoder and VAE layers are
             streamed to the GPU one group at a time (peak 3.8 GiB, and on that H100 the
             streaming hid behind the compute: sampling ran at about full speed)
  auto       picks from the free VRAM; after an out-of-memory it retries once in the next mode
VAE tiling and slicing are always on, as in the release, so every mode gives the same video.
The thresholds come from the measurements in docs/performance.md.
"""

from __future__ import annotations

import gc
from typing import Any

import torch

MODES = ("auto", "full", "balanced", "low")
ORDER = ("full", "balanced", "low")
GIB = 1024**3
# Free VRAM (GiB) a mode needs to be chosen by auto: measured peaks plus a margin.
NEEDS_GIB = {"full": 30.0, "balanced": 18.0}


def lower(mode: str) -> str | None:
    """The next mode down, or None below low."""
    index = ORDER.index(mode)
    return ORDER[index + 1] if index + 1 < len(ORDER) else None


def free_vram(device: torch.device) -> int | None:
    if device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return int(free)


def choose(requested: str, device: torch.device) -> str:
    """The mode to start in."""
    if requested != "auto":
        return requested
    free = free_vram(device)
    if free is None:
        return "full"
    for mode in ("full", "balanced"):
        if free >= NEEDS_GIB[mode] * GIB:
            return mode
    return "low"


def apply(pipe: Any, mode: str, device: torch.device) -> None:
    """Place the pipeline's models for `mode` (undoing any earlier placement)."""
    from diffusers.hooks import apply_group_offloading

    _reset(pipe)
    pipe.vae.enable_tiling()
    pipe.vae.enable_slicing()
    if device.type == "cpu":
        pipe.to(device)  # offloading from the CPU to the CPU means nothing: every mode is "full"
        return
    if mode == "full":
        pipe.to(device)
    elif mode == "balanced":
        pipe.enable_model_cpu_offload(device=device)
    elif mode == "low":
        cpu = torch.device("cpu")
        pipe.transformer.enable_group_offload(
            onload_device=device,
            offload_device=cpu,
            offload_type="block_level",
            num_blocks_per_group=1,
            use_stream=True,
        )
        for model in (pipe.text_encoder, pipe.vae):
            apply_group_offloading(
                model, onload_device=device, offload_device=cpu, offload_type="leaf_level", use_stream=True
            )
    else:
        raise ValueError(f"unknown memory mode {mode!r}")


def _reset(pipe: Any) -> None:
    # Modes only ever go down (auto's retry), and low is the bottom: group offloading, once on,
    # stays on, so only accelerate's model-offload hooks need undoing here.
    from diffusers.hooks.group_offloading import _is_group_offload_enabled

    if _is_group_offload_enabled(pipe.transformer):
        raise ValueError("the models are already group-offloaded (memory mode low)")
    pipe.remove_all_hooks()
    pipe.to("cpu")
    release()


def release() -> None:
    """Give cached GPU memory back after a job or a failure."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("out of memory" in text.lower() or "ALLOC_FAILED" in text)


def peak_bytes(device: torch.device) -> int | None:
    return int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
