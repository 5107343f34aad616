"""`python -m backend doctor`: can this machine run the cogvideox engine, and with which weights?

Reports the GPU and its free VRAM (and the memory mode auto would pick), torch/CUDA and the
libraries' versions, where the weights were found (or what is missing, in the loader's own
words), and the free disk space where they live. Works without torch installed: it then says so.
"""

from __future__ import annotations

import argparse
import platform
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..prompt_help import model as prompt_model
from . import weights

PACKAGES = (
    "torch",
    "diffusers",
    "transformers",
    "peft",
    "accelerate",
    "safetensors",
    "sentencepiece",
    "huggingface_hub",
)
DOWNLOAD_GIB = {"CogVideoX-5B (without its transformer)": 10.6, "3DTrajMaster (injector + LoRA)": 13.0}
GIB = 1024**3


def doctor(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform()}
    report["packages"] = {name: _version(name) for name in PACKAGES}
    report["gpu"] = _gpu()
    report["speed_options"] = _speed_options()
    report["weights"] = _weights(args)
    folder = Path(args.weights).expanduser() if args.weights else weights.default_weights_dir()
    report["disk"] = _disk(folder)
    # Optional: without it prompt help uses its offline fallback, so it is never a problem here.
    report["prompt_model"] = prompt_model.describe(folder)
    problems = []
    if report["packages"]["torch"] is None:
        problems.append("torch is not installed")
    missing = [p for p in PACKAGES if report["packages"][p] is None]
    if missing:
        problems.append("missing packages: " + ", ".join(missing))
    if not report["gpu"].get("cuda"):
        problems.append("no CUDA GPU: the cogvideox engine would run on the CPU (hours per clip)")
    if not report["weights"]["ok"]:
        problems.append("weights: " + report["weights"]["problem"])
    report["problems"] = problems
    report["ready"] = not problems
    return report


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _gpu() -> dict[str, Any]:
    try:
        import torch
    except ModuleNotFoundError:
        return {"cuda": False, "torch": None}
    out: dict[str, Any] = {
        "torch": torch.__version__,
        "cuda_build": torch.version.cuda,
        "cuda": torch.cuda.is_available(),
    }
    if not out["cuda"]:
        return out
    from . import memory

    device = torch.device("cuda")
    props = torch.cuda.get_device_properties(device)
    free, total = torch.cuda.mem_get_info(device)
    out.update(
        name=props.name,
        compute_capability=f"{props.major}.{props.minor}",
        vram_total_bytes=int(total),
        vram_free_bytes=int(free),
        bf16=torch.cuda.is_bf16_supported(),
        fp8=(props.major, props.minor) >= (8, 9),
        devices=torch.cuda.device_count(),
        auto_memory_mode=memory.choose("auto", device),
    )
    return out


def _speed_options() -> dict[str, Any]:
    """Which --dtype auto means here, and which --attention / --quantize options can run (each
    one that cannot, with the sentence the engine would warn with)."""
    try:
        import torch
    except ModuleNotFoundError:
        return {}
    from . import attention, hardware, precision, speed

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    hw = hardware.of(device)
    out: dict[str, Any] = {}
    try:
        dtype = precision.engine_dtype("auto", hw)
        out["dtype"] = {"auto": str(dtype).removeprefix("torch.")}
    except UserError as exc:
        dtype = torch.float32
        out["dtype"] = {"auto": None, "refused": exc.message, "hint": exc.hint}
    out["attention"] = {}
    for option in attention.OPTIONS[2:]:
        choice = attention.choose(option, hw, dtype, device)
        out["attention"][option] = {"usable": not choice.fallback, "why_not": choice.fallback or None}
    out["quantize"] = {}
    for kind in speed.QUANTIZE[1:]:
        why = speed.quantize_fallback(kind, hw)
        out["quantize"][kind] = {"usable": not why, "why_not": why or None}
    return out


def _weights(args: argparse.Namespace) -> dict[str, Any]:
    try:
        paths = weights.resolve(args.base, args.injector, args.lora, args.weights)
    except UserError as exc:
        return {"ok": False, "problem": exc.message, "hint": exc.hint}
    return {"ok": True, **paths.as_dict()}


def _disk(folder: Path) -> dict[str, Any]:
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    usage = shutil.disk_usage(probe)
    return {"folder": str(folder), "free_bytes": usage.free, "download_needs_gib": round(sum(DOWNLOAD_GIB.values()), 1)}


def format_doctor(report: dict[str, Any]) -> str:
    gpu, w, disk = report["gpu"], report["weights"], report["disk"]
    lines = [f"python      {report['python']} on {report['platform']}"]
    lines.append("packages    " + ", ".join(f"{k} {v or 'MISSING'}" for k, v in report["packages"].items()))
    if gpu.get("cuda"):
        lines.append(
            f"gpu         {gpu['name']} (compute {gpu['compute_capability']}), {gpu['vram_free_bytes'] / GIB:.1f} of "
            f"{gpu['vram_total_bytes'] / GIB:.1f} GiB free; --memory auto would use '{gpu['auto_memory_mode']}'"
        )
    else:
        lines.append(
            f"gpu         none visible (torch {gpu.get('torch') or 'not installed'}, "
            f"CUDA build {gpu.get('cuda_build')})"
        )
    options = report.get("speed_options") or {}
    if options:
        dtype = options["dtype"]
        lines.append(
            f"dtype       auto = {dtype['auto']}" if dtype["auto"] else f"dtype       auto REFUSED: {dtype['refused']}"
        )
        for kind in ("attention", "quantize"):
            usable = [name for name, o in options[kind].items() if o["usable"]]
            lines.append(f"{kind:<12}usable here besides the default: {', '.join(usable) or 'none'}")
            for name, o in options[kind].items():
                if not o["usable"]:
                    lines.append(f"            not {name}: {o['why_not'].split('; ')[0]}")
    if w["ok"]:
        lines.append(
            f"weights     base {w['base']}\n            injector {w['injector']}\n            lora {w['lora']}"
        )
    else:
        lines.append(f"weights     NOT READY: {w['problem']}" + (f" ({w['hint']})" if w.get("hint") else ""))
    prompt = report["prompt_model"]
    if prompt["ok"]:
        lines.append(f"prompts     {prompt['path']} ({prompt['license']})")
    else:
        lines.append(
            f"prompts     offline fallback only: {prompt['problem']} (optional: python -m backend download --only "
            f"prompt, {prompt_model.REPO}, {prompt_model.LICENSE})"
        )
    lines.append(
        f"disk        {disk['free_bytes'] / GIB:.1f} GiB free at {disk['folder']} (a download needs about "
        f"{disk['download_needs_gib']} GiB)"
    )
    lines.append("ready       yes" if report["ready"] else "ready       no: " + "; ".join(report["problems"]))
    return "\n".join(lines)
