"""Optional speed-ups, off by default until measured (docs/performance.md).

--compile       torch.compile of the transformer blocks (diffusers' regional compilation: one
                graph per block class, compiled once and reused by all 42 blocks)
--quantize      the transformer's linear layers through torchao: fp8 computes in fp8 (weights
                and activations, Ada/Hopper GPUs), int8 stores int8 weights (memory, not
                speed); the LoRA's own small layers stay in the model's dtype
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import UserError

QUANTIZE = ("none", "fp8", "int8")


def compile_transformer(pipe: Any) -> None:
    pipe.transformer.compile_repeated_blocks()


def quantize_transformer(pipe: Any, kind: str, device: torch.device) -> None:
    if kind == "none":
        return
    try:
        from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, Int8WeightOnlyConfig, quantize_
    except ModuleNotFoundError:
        raise UserError(
            "missing_dependency",
            f"--quantize {kind} needs the package 'torchao', which this Python does not have.",
            "pip install torchao in the backend's Python, or run without --quantize.",
        ) from None
    if kind == "fp8" and (device.type != "cuda" or torch.cuda.get_device_capability(device) < (8, 9)):
        raise UserError(
            "unsupported", "--quantize fp8 needs an NVIDIA GPU with fp8 support (Ada or Hopper); try --quantize int8."
        )
    config = Float8DynamicActivationFloat8WeightConfig() if kind == "fp8" else Int8WeightOnlyConfig()

    def wanted(module: torch.nn.Module, name: str) -> bool:
        return isinstance(module, torch.nn.Linear) and "transformer_blocks" in name and "lora_" not in name

    quantize_(pipe.transformer, config, filter_fn=wanted)
