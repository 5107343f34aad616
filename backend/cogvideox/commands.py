"""The cogvideox engine's side of the CLI: flags, and the entry points the CLI and worker call.

Importing this module imports neither torch nor diffusers, so `python -m backend --help` and
the preview engine work in a Python without them; every entry point imports what it needs.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..progress import Report

MEMORY_MODES = ("auto", "full", "balanced", "low")
QUANTIZE = ("none", "fp8", "int8")
DTYPES = ("auto", "bfloat16", "float16", "float32")
ATTENTION = ("auto", "sdpa", "cudnn", "sage", "fa3")  # attention.OPTIONS, restated: this module imports no torch


def add_weights_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model weights (found automatically in the weights folder)")
    group.add_argument(
        "--weights",
        metavar="DIR",
        help="folder holding the downloaded KwaiVGI/3DTrajMaster and THUDM/CogVideoX-5b snapshots "
        "(default: $TRAJMASTER_WEIGHTS, else weights/ in the extension folder)",
    )
    group.add_argument("--base", metavar="DIR", help="the diffusers CogVideoX-5B folder (model_index.json, ...)")
    group.add_argument("--injector", metavar="DIR", help="the 3DTrajMaster injector transformer folder")
    group.add_argument(
        "--lora", metavar="PATH", help="the 3DTrajMaster LoRA (pytorch_lora_weights.safetensors or its folder)"
    )


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("device")
    group.add_argument(
        "--device", default="auto", metavar="DEV", help="auto (default: the GPU if there is one), cuda, cuda:N or cpu"
    )
    group.add_argument(
        "--dtype",
        default="auto",
        choices=DTYPES,
        help="weights and compute type (default: bfloat16 on a GPU of compute 8.0+, float32 on the CPU; the "
        "cogvideox engine refuses float16, which overflows CogVideoX-5B, and GPUs without bfloat16 unless given "
        "float32)",
    )


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    add_weights_arguments(parser)
    add_device_arguments(parser)
    group = parser.add_argument_group("memory and speed (cogvideox engine)")
    group.add_argument(
        "--memory",
        default="auto",
        choices=MEMORY_MODES,
        help="full: all on the GPU (peak ~25 GiB); balanced: each model on the GPU only while it runs (~15 GiB); "
        "low: streamed in small groups (~4 GiB); auto (default): chosen from free VRAM, retried once lower "
        "after running out",
    )
    group.add_argument("--compile", action="store_true", help="torch.compile the transformer blocks (slow first job)")
    group.add_argument(
        "--quantize",
        default="none",
        choices=QUANTIZE,
        help="quantise the transformer's linear layers with torchao: fp8 compute (Ada/Hopper) or int8 weights; "
        "unmeasured, needs torchao; falls back to none with a warning where it cannot run",
    )
    add_attention_argument(group)


def add_attention_argument(group: argparse._ActionsContainer) -> None:
    group.add_argument(
        "--attention",
        default="auto",
        choices=ATTENTION,
        help="attention kernel: sdpa (torch's choice, today's path), cudnn (torch's cuDNN kernel only), sage "
        "(SageAttention, 8-bit; needs sageattention), fa3 (FlashAttention-3, Hopper; needs flash_attn_interface); "
        "auto (default) = sdpa until the others are measured. One that cannot run here falls back to sdpa "
        "with a warning",
    )
    add_gpus_argument(group)


def add_gpus_argument(group: Any) -> None:
    group.add_argument(
        "--gpus",
        type=_positive_int,
        default=1,
        metavar="N",
        help="spread each take over N GPUs of this machine (cuda:K.. from --device cuda:K): 2 runs the two "
        "halves of classifier-free guidance in parallel; more is not supported yet and uses 2; fewer GPUs "
        "than asked: one, with a warning (default 1)",
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def make_engine(args: argparse.Namespace, report: Report) -> Any:
    """The loaded CogVideoXEngine. Emits a 'loading' stage and heartbeats while loading."""
    from ..events import Heartbeat
    from . import engine, hardware, precision, weights

    paths = weights.resolve(args.base, args.injector, args.lora, args.weights)
    device = resolve_device(args.device)
    hw = hardware.of(device)
    dtype = precision.engine_dtype(args.dtype, hw)
    gpus = getattr(args, "gpus", 1)
    where = f"{gpus} GPUs from {device}" if gpus > 1 else str(device)
    report.stage("loading", f"Loading CogVideoX-5B + 3DTrajMaster on {where} ({str(dtype).removeprefix('torch.')})")
    with Heartbeat(report.stream, "loading"):
        loaded = engine.load(
            paths,
            device,
            dtype,
            memory_mode=args.memory,
            compile_blocks=args.compile,
            quantize=args.quantize,
            attention=args.attention,
            hw=hw,
            gpus=gpus,
            explicit_cpu=str(args.device).startswith("cpu"),
        )
    for option, sentence in loaded.fallbacks.items():
        report.warning("speed_fallback", sentence, option=option)
    if loaded.layout.note:
        report.warning("gpus_fallback", loaded.layout.note)
    return loaded


def resolve_device(text: str) -> Any:
    import torch

    from ..errors import UserError

    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise UserError("unsupported", f"Unknown device {text!r}; use auto, cuda, cuda:N or cpu.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(
            "unsupported",
            "No CUDA GPU is visible to this Python (or its torch is a CPU build).",
            "Install the CUDA build of torch, or use --device cpu (very slow) or the preview engine.",
        )
    if device.type not in ("cuda", "cpu"):
        raise UserError("unsupported", f"The device {text!r} is not supported; use cuda or cpu.")
    return device


def resolve_dtype(text: str, device: Any) -> Any:
    """The benchmark's dtype: what the engine's auto picks (precision.py), or any asked for."""
    import torch

    from . import hardware, precision

    if text == "auto":
        return precision.default_dtype(hardware.of(device))
    return getattr(torch, text)


# ---------------------------------------------------------------- download


def add_download_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dest", metavar="DIR", help="where to put the snapshots (default: the weights folder, see generate --help)"
    )
    parser.add_argument(
        "--only",
        choices=("all", "trajmaster", "base", "prompt"),
        default="all",
        help="download only KwaiVGI/3DTrajMaster, only THUDM/CogVideoX-5b or only the prompt help model",
    )
    parser.add_argument(
        "--prompt-model",
        action="store_true",
        help="also download the optional prompt help model Qwen/Qwen2.5-1.5B-Instruct (Apache-2.0, 3.1 GB)",
    )
    parser.add_argument("--offline", action="store_true", help="do not use the network: check what is already there")
    parser.add_argument("--token", metavar="TOKEN", help="Hugging Face token (default: $HF_TOKEN or the saved login)")


def download(args: argparse.Namespace, report: Report) -> dict[str, Any]:
    from . import download as fetch

    return fetch.download(args, report)


# ---------------------------------------------------------------- doctor


def add_doctor_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    add_weights_arguments(parser)


def doctor(args: argparse.Namespace) -> dict[str, Any]:
    from . import doctor as check

    return check.doctor(args)


def format_doctor(report: dict[str, Any]) -> str:
    from . import doctor as check

    return check.format_doctor(report)


# ---------------------------------------------------------------- bench


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    parser.add_argument(
        "--size",
        choices=("auto", "real", "mid", "tiny"),
        default="auto",
        help="real: CogVideoX-5B's architecture (42 blocks, 480x720x49); tiny: a few-layer model for a CPU; "
        "mid: 8 blocks at 128x192 (whole jobs on a CPU in minutes); auto (default): real on a GPU, tiny otherwise",
    )
    parser.add_argument(
        "--steps", type=int, default=3, metavar="N", help="timed denoising steps of each kind (default 3)"
    )
    parser.add_argument(
        "--modes",
        default="",
        metavar="LIST",
        help="also run a short job through the engine in these memory modes (e.g. full,balanced,low) for their "
        "peak VRAM and speed",
    )
    parser.add_argument("--job-steps", type=int, default=4, metavar="N", help="steps of that short job (default 4)")
    parser.add_argument(
        "--qualities",
        default="",
        metavar="LIST",
        help="also run whole jobs (same seed) at these qualities: final, draft, draft-nocache, final-cache, "
        "final-cache0; each with its seconds, the step cache's skipped steps and its video's drift from final",
    )
    parser.add_argument("--no-decode", action="store_true", help="skip the VAE decode timing")
    parser.add_argument("--compile", action="store_true", help="also time the steps with torch.compile'd blocks")
    options = parser.add_argument_group("speed and precision options (each timed against the default)")
    options.add_argument(
        "--attention",
        default="auto",
        metavar="LIST",
        help=f"also time the steps with these attention kernels, comma-separated ({', '.join(ATTENTION[1:])}, or "
        "all); one this machine cannot run is listed with the reason",
    )
    options.add_argument(
        "--quantize",
        default="none",
        metavar="LIST",
        help="also time the steps with the transformer quantised these ways (fp8, int8, or all)",
    )
    options.add_argument(
        "--precision",
        action="store_true",
        help="one forward in float16 and bfloat16 against float32: the largest values per block, where values "
        "stop being finite, the drift",
    )
    options.add_argument("--layers", type=int, metavar="N", help="transformer blocks (default: the size's own)")
    options.add_argument(
        "--latent-frames", type=int, metavar="N", help="latent frames of the timed video (default 13 = 49 frames)"
    )
    add_device_arguments(parser)
    add_gpus_argument(parser.add_argument_group("several GPUs"))


def bench(args: argparse.Namespace, report: Report) -> dict[str, Any]:
    from . import bench as measure

    return measure.bench(args, report)


def format_bench(result: dict[str, Any]) -> str:
    from . import bench as measure

    return measure.format_bench(result)
