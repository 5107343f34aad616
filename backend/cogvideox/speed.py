"""Optional speed-ups, off by default until measured (docs/performance.md).

--compile       torch.compile of the transformer blocks (diffusers' regional compilation: one
                graph per block class, compiled once and reused by all 42 blocks)
--quantize      the transformer's linear layers through torchao: fp8 computes in fp8 (weights
                and activations, Ada/Hopper GPUs), int8 stores int8 weights (memory, not
                speed); the LoRA's own small layers stay in the model's dtype. Where the
                package or the GPU cannot do it, the model runs unquantised and the sentence
                saying why becomes a warning (as --attention's fallbacks do, attention.py)
--attention     attention.py
"""

from __future__ import annotations

from typing import Any

import torch

from .hardware import Hardware

QUANTIZE = ("none", "fp8", "int8")


def compile_transformer(pipe: Any) -> None:
    pipe.transformer.compile_repeated_blocks()


def quantize_fallback(kind: str, hw: Hardware) -> str:
    """Why `--quantize kind` cannot run on this machine (one sentence), or "" when it can."""
    if kind == "none":
        return ""
    if kind == "fp8" and not hw.fp8:
        return (
            f"--quantize fp8 needs an NVIDIA GPU with fp8 (Ada or Hopper, compute 8.9+), which {hw.describe()} "
            "is not; the transformer runs unquantised (--quantize int8 saves memory on any GPU)."
        )
    if "torchao" not in hw.packages:
        return (
            f"--quantize {kind} needs the package torchao, which this Python does not have (pip install torchao); "
            "the transformer runs unquantised."
        )
    return ""


def quantize_transformer(pipe: Any, kind: str, hw: Hardware) -> tuple[str, str]:
    """Quantise in place. Returns (what is in effect, the fallback sentence or "")."""
    why = quantize_fallback(kind, hw)
    if kind == "none" or why:
        return "none", why
    try:
        from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, Int8WeightOnlyConfig, quantize_
    except ImportError as exc:
        return "none", f"--quantize {kind} could not import torchao ({exc}); the transformer runs unquantised."
    config = Float8DynamicActivationFloat8WeightConfig() if kind == "fp8" else Int8WeightOnlyConfig()

    def wanted(module: torch.nn.Module, name: str) -> bool:
        return isinstance(module, torch.nn.Linear) and "transformer_blocks" in name and "lora_" not in name

    quantize_(pipe.transformer, config, filter_fn=wanted)
    return kind, ""
