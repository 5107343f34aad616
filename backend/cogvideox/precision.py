"""Which number type the cogvideox engine computes in (`--dtype`), and where it refuses.

CogVideoX-5B was trained and released in bfloat16 and does not run in float16: its activations
leave float16's range (largest value 65504) and the video comes out NaN, all black. Its authors
say so (their model card at release: "BF16, FP32, does not support FP16"; zai-org/CogVideo
issues 559, a V100 in float16 giving black video, and 637: "we strongly advise against FP16 for
any model but CogVideoX-2B; we trained in BF16"), and users of other 5B ports report the same.
float32 is always correct; bfloat16 is correct where the GPU computes in it (compute 8.0+).

So:
  auto       bfloat16 on a GPU of compute 8.0+ (the release's type), float32 on the CPU, and a
             refusal on an older GPU (T4, V100, RTX 20xx), naming the card's limit: float32 there
             needs twice the memory (about 45 GB of system memory to hold the models) and is many
             times slower, so it is the user's explicit choice (--dtype float32), not a surprise
  bfloat16   refused on an older GPU too (torch only emulates it there; the VAE's 3-D
             convolutions fail on a V100 in bfloat16 by users' reports)
  float16    refused everywhere, with the reason
  float32    always allowed
docs/performance.md has the float16 checks this rests on and what they could and could not show.
"""

from __future__ import annotations

import torch

from ..errors import UserError
from .hardware import Hardware

FLOAT16_REFUSED = (
    "CogVideoX-5B cannot run in float16: it was trained in bfloat16 and overflows float16's range "
    "(NaN, a black video; its authors advise bfloat16)."
)
FLOAT16_HINT = "Use --dtype auto (bfloat16 on a GPU of compute 8.0 or newer) or --dtype float32."


def default_dtype(hw: Hardware) -> torch.dtype:
    """What `auto` means on this hardware (the benchmark's default too)."""
    return torch.bfloat16 if hw.native_bfloat16 else torch.float32


def engine_dtype(requested: str, hw: Hardware) -> torch.dtype:
    """The dtype to load the model in, or UserError('unsupported') with one sentence."""
    if requested == "float16":
        raise UserError("unsupported", FLOAT16_REFUSED, FLOAT16_HINT)
    if requested == "float32":
        return torch.float32
    if hw.cuda and not hw.native_bfloat16:
        raise UserError(
            "unsupported",
            f"{hw.describe()[0].upper()}{hw.describe()[1:]} has no bfloat16 (it needs compute capability 8.0), "
            "and CogVideoX-5B runs correctly only in bfloat16 or float32 (in float16 it overflows to a black video).",
            "Run it on a GPU of compute 8.0 or newer (RTX 30xx/40xx, A10, L4, A100, H100), or pass --dtype float32 "
            "to run on this card in float32: twice the memory (use --memory low and about 45 GB of system memory) "
            "and many times slower.",
        )
    if requested == "auto":
        return default_dtype(hw)
    return getattr(torch, requested)
