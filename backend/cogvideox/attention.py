"""Which kernel computes attention: `--attention auto|sdpa|cudnn|sage|fa3`.

  sdpa   torch's scaled_dot_product_attention picks the kernel: the path of every earlier
         release, bit for bit. On the H100 measured (torch 2.11, docs/performance.md) it picked
         cuDNN, the fastest of torch's kernels there (428 TFLOP/s; flash-2 326, memory-efficient 138)
  cudnn  torch's cuDNN kernel and no other (diffusers' `_native_cudnn` backend): an NVIDIA GPU of
         compute 8.0+ with cuDNN 9; fails loudly where torch would quietly pick another kernel
  sage   SageAttention (diffusers' `sage` backend, package `sageattention`): queries and keys in
         int8, P.V in fp8 or fp16: faster on Ampere/Ada/Hopper, and an approximation (its quality
         cost on this model is not measured)
  fa3    FlashAttention-3 (diffusers' `_flash_3` backend, module `flash_attn_interface`, built from
         flash-attention's hopper/ folder): Hopper GPUs only
  auto   sdpa: the only option measured on a GPU so far; see choose() for why

Both attentions of the model call torch's scaled_dot_product_attention: diffusers' stock
CogVideoX processor (attn1 of every block) and InjectorAttnProcessor (attn_injector). Neither
goes through diffusers' attention dispatcher, so `set_attention_backend` cannot reach them.
Instead, while the transformer runs, a torch function mode (torch's own way to redirect calls
of a torch function within a scope) hands each of those calls to diffusers' dispatcher with the
chosen backend: the same call diffusers' newer processors make, and no processor is copied.

An option this machine cannot run falls back to sdpa with one sentence (choose()), which the
engine emits as a `warning` and records in describe()["speed"].
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from .hardware import Hardware

OPTIONS = ("auto", "sdpa", "cudnn", "sage", "fa3")
DEFAULT = "sdpa"
# The diffusers attention backend each non-default option runs through.
BACKENDS = {"cudnn": "_native_cudnn", "sage": "sage", "fa3": "_flash_3"}
# What each option needs, said once for the fallback sentence.
NEEDS = {
    "cudnn": "an NVIDIA GPU of compute capability 8.0 or newer with cuDNN 9",
    "sage": "an NVIDIA GPU of compute capability 8.0 or newer and the package sageattention",
    "fa3": "a Hopper GPU (compute 9.x, such as the H100) and FlashAttention-3 (flash_attn_interface, built from "
    "flash-attention's hopper/ folder)",
}
HALF = (torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class Choice:
    requested: str
    used: str  # sdpa, cudnn, sage or fa3
    fallback: str = ""  # the sentence saying why `used` is not what was asked for


def missing(option: str, hw: Hardware, dtype: torch.dtype) -> str | None:
    """What this machine lacks for `option` (a clause for the sentence), or None."""
    if option == DEFAULT:
        return None
    if not hw.cuda:
        return "there is no NVIDIA GPU here"
    if hw.capability is None or hw.capability < (8, 0):
        return f"{hw.describe()} is older"
    if option == "fa3" and not hw.hopper:
        return f"{hw.describe()} is not a Hopper GPU"
    if option == "cudnn" and (hw.cudnn or 0) < 90000:
        return f"this torch has cuDNN {hw.cudnn or 'none'}"
    package = {"sage": "sageattention", "fa3": "flash_attn_3"}.get(option)
    if package and package not in hw.packages:
        return f"the package {'sageattention' if option == 'sage' else 'flash_attn_interface'} is not installed"
    if dtype not in HALF:
        return f"the model runs in {str(dtype).removeprefix('torch.')} (these kernels take bfloat16 or float16)"
    return None


def choose(requested: str, hw: Hardware, dtype: torch.dtype, device: torch.device | None = None) -> Choice:
    """The attention this engine will use.

    `auto` is sdpa: on the one GPU measured (an H100) torch's own choice was already the fastest
    of its kernels (cuDNN). FlashAttention-3 and SageAttention publish faster kernels on Hopper
    (see docs/performance.md) but are not measured on this model yet, and Sage's 8-bit
    approximation has a quality cost nobody has looked at here; auto picks them only once a
    benchmark row says so. On a GPU a non-default option is also tried once on a small input,
    so that a kernel the installed build cannot run falls back here rather than mid-job.
    """
    if requested not in OPTIONS:
        raise ValueError(f"unknown attention option {requested!r}")
    if requested in ("auto", DEFAULT):
        return Choice(requested, DEFAULT)
    lack = missing(requested, hw, dtype)
    if lack is None and device is not None and device.type == "cuda":
        lack = _trial(requested, device, dtype)
    if lack is None:
        return Choice(requested, requested)
    return Choice(
        requested,
        DEFAULT,
        f"--attention {requested} needs {NEEDS[requested]}, and {lack}; using torch's default attention (sdpa).",
    )


def _trial(option: str, device: torch.device, dtype: torch.dtype) -> str | None:
    q = torch.randn(1, 2, 128, 64, device=device, dtype=dtype)
    try:
        with routed(BACKENDS[option]):
            out = F.scaled_dot_product_attention(q, q, q)
        if not torch.isfinite(out).all():
            return "a trial run on this GPU gave non-finite numbers"
    except Exception as exc:  # whatever the kernel's build raises, the answer is the same: fall back
        text = str(exc).strip().splitlines()
        return f"a trial run on this GPU failed ({text[0] if text else type(exc).__name__})"
    return None


def applied(choice: Choice) -> contextlib.AbstractContextManager:
    """The scope the transformer runs in for this choice (nothing at all for sdpa)."""
    if choice.used == DEFAULT:
        return contextlib.nullcontext()
    return routed(BACKENDS[choice.used])


@contextlib.contextmanager
def routed(backend: str) -> Iterator[_ToDispatcher]:
    """Within this scope, plain scaled_dot_product_attention calls run on diffusers' `backend`."""
    from diffusers.models.attention_dispatch import AttentionBackendName

    mode = _ToDispatcher(AttentionBackendName(backend))
    with mode:
        yield mode


_SDPA_ARGS = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")


class _ToDispatcher(TorchFunctionMode):
    """Redirects scaled_dot_product_attention to diffusers' dispatcher; counts what it redirected.

    Only the plain form is redirected (no mask, no dropout, not causal: what CogVideoX and the
    injector call); anything else runs as it was called, so no argument is ever dropped.
    """

    def __init__(self, backend: Any):
        super().__init__()
        self.backend = backend
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            call = dict(zip(_SDPA_ARGS, args, strict=False)) | kwargs
            plain = (
                call.get("attn_mask") is None
                and not call.get("dropout_p")
                and not call.get("is_causal")
                and not call.get("enable_gqa")
                and call["query"].ndim == 4
            )
            if plain:
                from diffusers.models.attention_dispatch import dispatch_attention_fn

                self.calls += 1
                # The dispatcher takes (batch, tokens, heads, dim); SDPA takes and gives (batch, heads, tokens, dim).
                q, k, v = (call[name].transpose(1, 2) for name in ("query", "key", "value"))
                out = dispatch_attention_fn(q, k, v, scale=call.get("scale"), backend=self.backend)
                return out.transpose(1, 2)
        return func(*args, **kwargs)
