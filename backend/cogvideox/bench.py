"""`python -m backend bench`: the model's speed and memory with random weights (no download).

On a GPU it builds the real architecture (CogVideoX-5B's 42 blocks, 48 heads of 64, the
injector on the 21 even blocks, a rank-32 LoRA on attn1, T5-XXL, the VAE) and times, at the
default job's size (480 x 720 x 49, classifier-free guidance batch of 2):
  - a denoising step without the injector (LoRA off) and with it (LoRA on),
  - one injector in the production form against the literal form of the model reference,
  - T5 encoding of one prompt and the VAE decode,
and projects a default job (50 steps, 21 of them with the injector). FLOPs are counted from the
architecture; "ratio" is the measured time over the time those FLOPs take at the GPU's dense
bf16 peak (1.0 would be perfect). --modes also measures peak VRAM with the models streamed as
the balanced and low memory modes stream them. On a CPU the same runs at a tiny size.
--attention and --quantize take lists and time the steps once per option (an option this
machine cannot run is reported with the sentence saying why); --precision runs one forward in
float16 and bfloat16 against float32 and reports where values leave float16's range.
Random weights time the same kernels as the real ones; only the video is meaningless.
"""

from __future__ import annotations

import argparse
import copy
import gc
import math
import time
from typing import Any

import torch

from ..progress import Report
from . import attention, hardware, speed
from .commands import resolve_device, resolve_dtype
from .injector import ENTITY_TOKENS, MAX_ENTITIES, POSE_DIM
from .transformer import TRAJECTORY_KEY, TrajectoryCondition, TrajMasterTransformer3DModel, release_config
from .weights import ADAPTER

GIB = 1024**3
DEFAULT_STEPS, DEFAULT_ANNEALED = 50, 20
PROMPTS_PER_JOB = 5  # global, "", and up to three entity prompts (each encoded once, then cached)
# Dense bf16 tensor-core peaks from the vendors' data sheets, for the FLOP ratio.
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "RTX 4090": 165e12}

TINY = {
    "transformer": dict(
        num_attention_heads=4,
        attention_head_dim=32,
        in_channels=4,
        out_channels=4,
        time_embed_dim=32,
        text_embed_dim=64,
        num_layers=4,
        sample_height=8,
        sample_width=12,
        max_text_seq_length=64,
        use_rotary_positional_embeddings=True,
    ),
    "t5": dict(vocab_size=256, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4),
    "vae": dict(block_out_channels=(8, 8, 8, 8), latent_channels=4, layers_per_block=1, norm_num_groups=4),
}
# Between the two, for timing whole jobs on a CPU in minutes: 8 blocks of 256, 192 x 128 video.
MID = {
    "transformer": dict(
        TINY["transformer"],
        num_layers=8,
        num_attention_heads=4,
        attention_head_dim=64,
        time_embed_dim=128,
        sample_height=16,
        sample_width=24,
    ),
    "t5": TINY["t5"],
    "vae": TINY["vae"],
}
# --qualities: whole jobs of each quality (and the step cache on and off), same seed, on random
# weights: seconds, the cache's computed and skipped steps, and the video's drift from final.
QUALITY_RUNS: dict[str, dict[str, Any]] = {
    "final": {"quality": "final"},
    "draft": {"quality": "draft"},
    "draft-nocache": {"quality": "custom", "steps": 20, "annealed_steps": 8},
    "final-cache": {"quality": "custom", "steps": 50, "annealed_steps": 20, "step_cache": 0.05},
    "final-cache0": {"quality": "custom", "steps": 50, "annealed_steps": 20, "step_cache": 0.0},
}
REAL = {
    "transformer": release_config(),
    "t5": dict(
        vocab_size=32128,
        d_model=4096,
        d_kv=64,
        d_ff=10240,
        num_layers=24,
        num_heads=64,
        feed_forward_proj="gated-gelu",
        relative_attention_num_buckets=32,
    ),
    "vae": dict(scaling_factor=0.7),
}
LORA_RANK = 32
# The DPM solver the release samples with, on CogVideoX-5B's scheduler config.
SCHEDULER = {
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "prediction_type": "v_prediction",
    "rescale_betas_zero_snr": True,
    "set_alpha_to_one": True,
    "snr_shift_scale": 1.0,
    "steps_offset": 0,
    "timestep_spacing": "trailing",
}


def bench(args: argparse.Namespace, report: Report) -> dict[str, Any]:
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()  # random weights make its dtype advice pointless here
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    size = args.size if args.size != "auto" else ("real" if device.type == "cuda" else "tiny")
    sizes = copy.deepcopy({"real": REAL, "mid": MID}.get(size, TINY))
    if args.layers:
        sizes["transformer"]["num_layers"] = args.layers
    steps = max(1, args.steps)
    config = sizes["transformer"]
    frames = args.latent_frames or 13
    latent_hw = (config["sample_height"], config["sample_width"])
    result: dict[str, Any] = {
        "device": _device_info(device),
        "dtype": str(dtype).removeprefix("torch."),
        "size": size,
        "video": {"frames": (frames - 1) * 4 + 1, "height": latent_hw[0] * 8, "width": latent_hw[1] * 8},
        "layers": config["num_layers"],
        "timed_steps": steps,
        "versions": _versions(),
    }
    hw = hardware.of(device)
    attention_options = _listed(args.attention, attention.OPTIONS, "--attention")
    quantize_options = _listed(args.quantize, speed.QUANTIZE, "--quantize")
    torch.manual_seed(0)

    report.stage("bench", f"T5 encoder ({size})")
    result["t5"] = _t5(sizes["t5"], config["max_text_seq_length"], device, dtype)

    report.stage("bench", f"Transformer with injector and LoRA ({size})")
    model = _transformer(config, device, dtype)
    inputs = _inputs(config, frames, device, dtype)
    result["parameters"] = {
        "transformer": sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n),
        "injector": sum(p.numel() for n, p in model.named_parameters() if _is_injector(n)),
        "lora": sum(p.numel() for n, p in model.named_parameters() if "lora_" in n),
    }
    result["steps"] = _time_steps(model, inputs, steps, device)
    report.stage("bench", "Injector: production form against the literal form")
    result["injector_forms"] = _injector_forms(model, inputs, max(steps, 3), device)
    result["flops"] = _flops(config, frames, result["steps"], device)
    if attention_options != ["auto"]:
        report.stage("bench", f"Attention kernels: {', '.join(attention_options)}")
        result["attention"] = _attention_options(model, inputs, attention_options, steps, device, dtype, hw)

    del model, inputs
    _free()

    if quantize_options != ["none"]:
        report.stage("bench", f"Quantised transformer: {', '.join(quantize_options)}")
        result["quantize"] = _quantize_options(config, frames, quantize_options, steps, device, dtype, hw)
    if args.precision:
        report.stage("bench", "float16 and bfloat16 against float32: overflow and drift")
        result["precision"] = _precision(config, frames, device)

    if not args.no_decode:
        report.stage("bench", "VAE decode")
        result["decode"] = _decode(sizes["vae"], frames, latent_hw, device, dtype)

    if args.compile:
        report.stage("bench", "torch.compile of the transformer blocks")
        model = _transformer(config, device, dtype)
        inputs = _inputs(config, frames, device, dtype)
        t0 = time.perf_counter()
        model.compile_repeated_blocks()
        result["compiled_steps"] = _time_steps(model, inputs, steps, device)
        result["compiled_steps"]["first_calls_s"] = round(time.perf_counter() - t0, 1)
        del model, inputs
        _free()

    result["projection"] = _project(result)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()] if args.modes else []
    if modes:
        report.stage("bench", f"Short jobs through the engine in memory modes {', '.join(modes)}")
        result["memory_modes"] = _engine_modes(sizes, modes, args.job_steps, device, dtype, report)
    gpus = getattr(args, "gpus", 1)
    if gpus > 1:
        report.stage("bench", f"The short job on one GPU and spread over {gpus}")
        result["gpus"] = _engine_gpus(size, gpus, args.job_steps, device, dtype, report, args.device == "cpu")
    qualities = [q.strip() for q in args.qualities.split(",") if q.strip()] if args.qualities else []
    if qualities:
        report.stage("bench", f"Whole jobs at {', '.join(qualities)}")
        result["qualities"] = _engine_qualities(sizes, qualities, device, dtype, report)
    return result


# ---------------------------------------------------------------- building


def _is_injector(name: str) -> bool:
    return any(s in name for s in ("attn_injector", "pose_fuse_layer", "attn_null_feature"))


def _random_(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1 and "norm" in name and name.endswith("weight"):
                p.fill_(1.0)
            else:
                p.normal_(0.0, 0.02)


def _empty(factory: Any, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """Build on the meta device, then allocate on `device` and fill with random numbers (fast
    at real size: no CPU initialisation)."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        model = factory()
    model = model.to(dtype).to_empty(device=device)
    _random_(model)
    return model.eval()


def _transformer(config: dict[str, Any], device: torch.device, dtype: torch.dtype) -> TrajMasterTransformer3DModel:
    from peft import LoraConfig

    model = _empty(lambda: TrajMasterTransformer3DModel(**config), device, dtype)
    targets = ["attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0"]
    model.add_adapter(LoraConfig(r=LORA_RANK, lora_alpha=LORA_RANK, target_modules=targets), adapter_name=ADAPTER)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.normal_(0.0, 0.02)
    return model.to(device=device, dtype=dtype)


def _inputs(config: dict[str, Any], frames: int, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    from diffusers.models.embeddings import get_3d_rotary_pos_embed
    from diffusers.pipelines.cogvideo.pipeline_cogvideox import get_resize_crop_region_for_grid

    text, width = config["max_text_seq_length"], config["text_embed_dim"]
    h, w, p = config["sample_height"], config["sample_width"], config["patch_size"] if "patch_size" in config else 2
    grid = (h // p, w // p)
    crops = get_resize_crop_region_for_grid(grid, grid[1], grid[0])
    rotary = get_3d_rotary_pos_embed(config["attention_head_dim"], crops, grid, frames, device=device)
    mask = torch.zeros(1, MAX_ENTITIES, text, device=device)
    mask[:, :, :30] = 1  # entity prompts of about 30 tokens
    return {
        "hidden_states": torch.randn(2, frames, config["in_channels"], h, w, device=device, dtype=dtype),
        "encoder_hidden_states": torch.randn(2, text, width, device=device, dtype=dtype),
        "timestep": torch.tensor([500, 500], device=device),
        "image_rotary_emb": rotary,
        "condition": TrajectoryCondition(
            poses=torch.randn(1, MAX_ENTITIES, frames, POSE_DIM, device=device),
            entity_embeds=torch.randn(1, MAX_ENTITIES, text, width, device=device, dtype=dtype),
            entity_mask=mask,
            empty_embeds=torch.randn(1, text, width, device=device, dtype=dtype),
        ),
    }


# ---------------------------------------------------------------- timing


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step(model: TrajMasterTransformer3DModel, inputs: dict[str, Any], injector: bool) -> torch.Tensor:
    if injector:
        model.enable_lora()
        kwargs = {TRAJECTORY_KEY: inputs["condition"]}
    else:
        model.disable_lora()
        kwargs = None
    return model(
        hidden_states=inputs["hidden_states"],
        encoder_hidden_states=inputs["encoder_hidden_states"],
        timestep=inputs["timestep"],
        image_rotary_emb=inputs["image_rotary_emb"],
        attention_kwargs=kwargs,
        return_dict=False,
    )[0]


@torch.no_grad()
def _timed(fn: Any, repeats: int, device: torch.device) -> float:
    fn()  # warm-up: kernel selection, allocator, compilation
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / repeats


def _time_steps(model: TrajMasterTransformer3DModel, inputs: dict[str, Any], steps: int, device: torch.device) -> dict:
    out = {}
    for kind, injector in (("plain", False), ("injector", True)):
        _reset_peak(device)
        out[f"{kind}_s"] = round(_timed(lambda injector=injector: _step(model, inputs, injector), steps, device), 4)
        out[f"{kind}_peak_bytes"] = _peak(device)
    return out


@torch.no_grad()
def _injector_forms(model: TrajMasterTransformer3DModel, inputs: dict[str, Any], repeats: int, device: torch.device):
    from .reference_injector import literal_injector_residual

    block = model.transformer_blocks[0]
    injector = model.injector_inputs(inputs["condition"])
    frames = inputs["hidden_states"].shape[1]
    tokens = frames * (inputs["hidden_states"].shape[3] // 2) * (inputs["hidden_states"].shape[4] // 2)
    width = block.attn1.query_dim
    hidden = torch.randn(2, tokens, width, device=device, dtype=block.pose_fuse_layer.weight.dtype)
    temb = torch.randn(2, model.config.time_embed_dim, device=device, dtype=hidden.dtype)
    rotary = inputs["image_rotary_emb"]
    efficient = block.injector_residual(hidden, temb, injector, rotary)
    literal = literal_injector_residual(block, hidden, temb, injector, rotary)
    scale = literal.float().abs().max().item() or 1.0
    t_eff = _timed(lambda: block.injector_residual(hidden, temb, injector, rotary), repeats, device)
    t_lit = _timed(lambda: literal_injector_residual(block, hidden, temb, injector, rotary), repeats, device)
    return {
        "tokens": {"visual": tokens, "entity": frames * MAX_ENTITIES * ENTITY_TOKENS, "text": injector.text.shape[1]},
        "efficient_ms": round(t_eff * 1e3, 3),
        "literal_ms": round(t_lit * 1e3, 3),
        "speedup": round(t_lit / t_eff, 3),
        "max_relative_difference": float((efficient.float() - literal.float()).abs().max().item() / scale),
    }


@torch.no_grad()
def _t5(config: dict[str, Any], length: int, device: torch.device, dtype: torch.dtype) -> dict:
    from transformers import T5Config, T5EncoderModel

    _reset_peak(device)
    encoder = _empty(lambda: T5EncoderModel(T5Config(**config)), device, dtype)
    ids = torch.randint(0, config["vocab_size"], (1, length), device=device)
    seconds = _timed(lambda: encoder(ids)[0], 3, device)
    out = {
        "parameters": sum(p.numel() for p in encoder.parameters()),
        "encode_one_prompt_s": round(seconds, 4),
        "peak_bytes": _peak(device),
    }
    encoder.to("meta")  # free its memory now
    _free()
    return out


@torch.no_grad()
def _decode(config: dict[str, Any], frames: int, latent_hw: tuple[int, int], device: torch.device, dtype) -> dict:
    from diffusers import AutoencoderKLCogVideoX

    vae = _empty(lambda: AutoencoderKLCogVideoX(**config), device, dtype)
    vae.enable_tiling()
    vae.enable_slicing()
    latents = torch.randn(1, vae.config.latent_channels, frames, *latent_hw, device=device, dtype=dtype)
    _reset_peak(device)
    t0 = time.perf_counter()
    vae.decode(latents / vae.config.scaling_factor)
    _sync(device)
    out = {"seconds": round(time.perf_counter() - t0, 3), "peak_bytes": _peak(device)}
    del vae
    _free()
    return out


# ---------------------------------------------------------------- options


def _listed(text: str, allowed: tuple[str, ...], flag: str) -> list[str]:
    from ..errors import UserError

    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    if names == ["all"]:
        return [n for n in allowed if n != "auto"]
    wrong = [n for n in names if n not in allowed]
    if wrong or not names:
        raise UserError("bad_arguments", f"{flag} takes a comma-separated list of {', '.join(allowed)} (or all).")
    return names


@torch.no_grad()
def _difference(a: torch.Tensor, b: torch.Tensor) -> float:
    scale = b.float().abs().max().item() or 1.0
    return float((a.float() - b.float()).abs().max().item() / scale)


def _attention_options(model, inputs, options: list[str], steps: int, device, dtype, hw) -> dict[str, Any]:
    """Steps timed with each attention kernel, and how far one forward moves from sdpa's."""
    with torch.no_grad():
        reference = _step(model, inputs, injector=True)
    out: dict[str, Any] = {}
    for option in options:
        choice = attention.choose(option, hw, dtype, device)
        if choice.fallback:
            out[option] = {"fallback": choice.fallback}
            continue
        with attention.applied(choice):
            timed = _time_steps(model, inputs, steps, device)
            with torch.no_grad():
                output = _step(model, inputs, injector=True)
        out[option] = {**timed, "used": choice.used, "max_relative_difference": _difference(output, reference)}
    return out


def _quantize_options(config, frames: int, options: list[str], steps: int, device, dtype, hw) -> dict[str, Any]:
    """Steps timed with the transformer quantised each way, and the drift of one forward."""
    torch.manual_seed(1)
    model = _transformer(config, device, dtype)
    inputs = _inputs(config, frames, device, dtype)
    with torch.no_grad():
        reference = _step(model, inputs, injector=True)
    out: dict[str, Any] = {}
    for kind in options:
        if kind == "none":
            continue
        quantized = copy.deepcopy(model)
        used, why = speed.quantize_transformer(_Holder(quantized), kind, hw)
        if why:
            out[kind] = {"fallback": why}
            continue
        timed = _time_steps(quantized, inputs, steps, device)
        with torch.no_grad():
            output = _step(quantized, inputs, injector=True)
        out[kind] = {**timed, "used": used, "max_relative_difference": _difference(output, reference)}
        del quantized
        _free()
    del model, inputs
    _free()
    return out


class _Holder:
    """What speed.quantize_transformer takes: something with a .transformer."""

    def __init__(self, transformer: torch.nn.Module):
        self.transformer = transformer


FLOAT16_MAX = 65504.0


@torch.no_grad()
def _precision(config: dict[str, Any], frames: int, device: torch.device) -> dict[str, Any]:
    """One forward with the injector in float32, float16 and bfloat16 on the same random weights:
    the largest value any layer produces in each block (float32), the first block where float16
    or bfloat16 gives a non-finite value, and the drift of the output against float32."""
    torch.manual_seed(2)
    model32 = _transformer(config, device, torch.float32)
    inputs32 = _inputs(config, frames, device, torch.float32)

    def run(model: torch.nn.Module, inputs: dict[str, Any]) -> tuple[torch.Tensor, list[float], list[bool]]:
        largest = [0.0] * len(model.transformer_blocks)
        finite = [True] * len(model.transformer_blocks)
        hooks = []
        for index, block in enumerate(model.transformer_blocks):
            for module in block.modules():

                def record(module, args, output, index=index):
                    for tensor in output if isinstance(output, tuple) else (output,):
                        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point():
                            finite[index] &= bool(torch.isfinite(tensor).all())
                            largest[index] = max(largest[index], float(tensor.float().abs().nan_to_num(0.0).max()))

                hooks.append(module.register_forward_hook(record))
        try:
            output = _step(model, inputs, injector=True)
        finally:
            for hook in hooks:
                hook.remove()
        return output, largest, finite

    reference, largest32, _ = run(model32, inputs32)
    out: dict[str, Any] = {
        "float32_largest_value_per_block": [round(v, 2) for v in largest32],
        "float16_largest_finite": FLOAT16_MAX,
        "headroom_to_float16": round(FLOAT16_MAX / max(*largest32, 1e-30), 1),
    }
    for dtype in (torch.float16, torch.bfloat16):
        model = copy.deepcopy(model32).to(dtype)
        inputs = _cast(inputs32, dtype)
        output, largest, finite = run(model, inputs)
        name = str(dtype).removeprefix("torch.")
        out[name] = {
            "finite": all(finite) and bool(torch.isfinite(output).all()),
            "first_non_finite_block": next((i for i, ok in enumerate(finite) if not ok), None),
            "largest_value": round(max(largest), 2),
            "max_relative_difference": _difference(output, reference),
        }
        del model, inputs
        _free()
    del model32, inputs32
    _free()
    return out


def _cast(inputs: dict[str, Any], dtype: torch.dtype) -> dict[str, Any]:
    out = dict(inputs)
    for key in ("hidden_states", "encoder_hidden_states"):
        out[key] = inputs[key].to(dtype)
    c = inputs["condition"]
    out["condition"] = TrajectoryCondition(
        poses=c.poses,
        entity_embeds=c.entity_embeds.to(dtype),
        entity_mask=c.entity_mask,
        empty_embeds=c.empty_embeds.to(dtype),
    )
    return out


# ---------------------------------------------------------------- accounting


def _flops(config: dict[str, Any], frames: int, steps: dict[str, float], device: torch.device) -> dict:
    """FLOPs of one transformer forward for one video (matmuls only; 2 per multiply-add)."""
    width = config["num_attention_heads"] * config["attention_head_dim"]
    visual = frames * (config["sample_height"] // 2) * (config["sample_width"] // 2)
    text = config["max_text_seq_length"]
    tokens = visual + text
    entity = frames * MAX_ENTITIES * ENTITY_TOKENS
    keys = tokens + entity
    layers = config["num_layers"]
    block_linear = 2 * tokens * width * width * (4 + 8)  # q, k, v, out + the 4x feed-forward
    block_attention = 2 * 2 * tokens * tokens * width
    plain = layers * (block_linear + block_attention)
    injectors = math.ceil(layers / 2)
    # Production form: queries of the visual tokens only; keys and values of every token.
    efficient = 2 * width * width * (2 * visual + 2 * keys) + 2 * 2 * visual * keys * width
    literal = 2 * width * width * 4 * keys + 2 * 2 * keys * keys * width
    out = {
        "forward_plain": plain,
        "forward_injector_extra": injectors * efficient,
        "forward_injector_extra_literal": injectors * literal,
        "default_job": 2 * (DEFAULT_STEPS * plain + (DEFAULT_ANNEALED + 1) * injectors * efficient),
    }
    peak = _peak_flops(device)
    if peak:
        out["peak_flops_per_s"] = peak
        out["ratio_plain"] = round(steps["plain_s"] / (2 * plain / peak), 3)
        out["ratio_injector"] = round(steps["injector_s"] / (2 * (plain + injectors * efficient) / peak), 3)
    return out


def _project(result: dict[str, Any]) -> dict:
    steps = result["steps"]
    sampling = (DEFAULT_ANNEALED + 1) * steps["injector_s"] + (DEFAULT_STEPS - DEFAULT_ANNEALED - 1) * steps["plain_s"]
    encode = PROMPTS_PER_JOB * result["t5"]["encode_one_prompt_s"]
    decode = result.get("decode", {}).get("seconds", 0.0)
    out = {
        "sampling_s": round(sampling, 2),
        "encode_first_job_s": round(encode, 3),
        "decode_s": decode,
        "warm_job_s": round(sampling + decode, 1),
        "first_job_s": round(sampling + decode + encode, 1),
        "note": "warm: the worker already holds the models and the prompts' encodings",
    }
    if "compiled_steps" in result:
        c = result["compiled_steps"]
        compiled = (DEFAULT_ANNEALED + 1) * c["injector_s"] + (DEFAULT_STEPS - DEFAULT_ANNEALED - 1) * c["plain_s"]
        out["warm_job_compiled_s"] = round(compiled + decode, 1)
    return out


def _engine_modes(
    sizes: dict[str, Any], modes: list[str], steps: int, device: torch.device, dtype: torch.dtype, report: Report
) -> dict[str, Any]:
    """A short job through the real engine per memory mode, on random weights of the chosen size:
    peak VRAM, seconds per stage, and whether the video matches the first mode's."""
    import numpy as np

    from . import memory

    config = sizes["transformer"]
    the_job = _job(config, steps)
    engine = _random_job_engine(sizes, the_job, device, dtype, modes[0])
    out: dict[str, Any] = {"job_steps": steps, "annealed_steps": the_job["sampling"]["annealed_steps"]}
    first = None
    for mode in modes:
        if mode not in memory.ORDER:
            continue
        if device.type == "cuda" and mode != engine.memory_mode:
            engine.use_memory_mode(mode)
        frames = engine.render(the_job, report)
        if first is None:
            first = frames
        out[mode] = {
            **engine.last_job["seconds"],
            "peak_bytes": engine.last_job["peak_vram_bytes"],
            "max_level_difference_to_first_mode": int(np.abs(frames.astype(int) - first.astype(int)).max()),
        }
    engine.close()
    _free()
    return out


def _random_engine(device: torch.device, size: str, dtype: torch.dtype) -> Any:
    """An engine on random weights that every rank builds alike (seeded), prompts pre-encoded
    (random, seeded: T5 is timed on its own). Module-level: ranks.py's children call it."""
    sizes = {"real": REAL, "mid": MID}.get(size, TINY)
    torch.manual_seed(0)
    return _random_job_engine(sizes, _job(sizes["transformer"], 1), device, dtype, "auto")


def _random_job_engine(sizes: dict[str, Any], the_job: dict[str, Any], device: torch.device, dtype, mode: str) -> Any:
    """A CogVideoXEngine on random weights whose prompt cache already holds the job's texts
    (random encodings from a seeded generator: T5 is timed on its own)."""
    from .engine import CogVideoXEngine
    from .pipeline import NEGATIVE_PROMPT
    from .weights import WeightPaths

    engine = CogVideoXEngine(
        _random_pipeline(sizes, device, dtype), WeightPaths(*(["random"] * 3)), device, dtype, memory_mode=mode
    )
    config = sizes["transformer"]
    generator = torch.Generator().manual_seed(0)
    width, length = config["text_embed_dim"], config["max_text_seq_length"]
    for text in [the_job["prompt"]["text"], NEGATIVE_PROMPT, *(e["prompt"] for e in the_job["entities"])]:
        mask = torch.zeros(1, length, dtype=torch.long)
        mask[:, :30] = 1
        embeds = torch.randn(1, length, width, generator=generator).to(device, dtype)
        engine.prompts._items[text] = (embeds, mask.to(device))
    return engine
    from .engine import CogVideoXEngine
    from .pipeline import NEGATIVE_PROMPT
    from .weights import WeightPaths


def _engine_gpus(
    size: str, gpus: int, steps: int, device: torch.device, dtype: torch.dtype, report: Report, explicit_cpu: bool
) -> dict[str, Any]:
    """The short job's sampling time on one rank and on `gpus` (the second of two runs each, so
    neither pays for warm-up), and how far the two videos differ."""
    import numpy as np

    from . import parallel
    from .ranks import Ranks

    layout = parallel.plan(gpus, device, explicit_cpu)
    config = (REAL if size == "real" else TINY)["transformer"]
    the_job = _job(config, steps)
    out: dict[str, Any] = {**layout.describe(), "job_steps": steps}
    if layout.gpus == 1:
        return out

    def timed(engine: Any) -> tuple[float, Any]:
        engine.render(the_job, report)
        frames = engine.render(the_job, report)
        return engine.last_job["seconds"]["sample_s"], frames

    single = _random_engine(device, size, dtype)
    out["one_sample_s"], first = timed(single)
    single.close()
    _free()
    ranks = Ranks(layout.gpus, device, _random_engine, {"size": size, "dtype": dtype})
    try:
        spread = _random_engine(device, size, dtype)
        spread.layout, spread.ranks = layout, ranks
        ranks.wait_ready()
        out["spread_sample_s"], frames = timed(spread)
    finally:
        ranks.close()
    out["ratio"] = round(out["spread_sample_s"] / out["one_sample_s"], 3)
    out["max_level_difference"] = int(np.abs(frames.astype(int) - first.astype(int)).max())
    return out


def _engine_qualities(
    sizes: dict[str, Any], names: list[str], device: torch.device, dtype: torch.dtype, report: Report
) -> dict[str, Any]:
    """Each quality run of QUALITY_RUNS in `names` as a whole job (same seed): seconds per stage,
    the step cache's computed/skipped steps, and how far its video is from final's (uint8 levels:
    the mean over all pixels and the worst frame's mean; random weights make this drift a number,
    not a judgement of looks)."""
    import numpy as np

    unknown = [n for n in names if n not in QUALITY_RUNS]
    if unknown:
        from ..errors import UserError

        raise UserError("unsupported", f"Unknown quality run {unknown[0]!r}; use {', '.join(QUALITY_RUNS)}.")
    config = sizes["transformer"]
    base = _job(config, DEFAULT_STEPS)
    engine = _random_job_engine(sizes, base, device, dtype, "full")
    out: dict[str, Any] = {}
    reference = None
    for name in ["final", *(n for n in names if n != "final")]:
        sampling = {k: v for k, v in base["sampling"].items() if k not in ("steps", "annealed_steps")}
        the_job = {**base, "sampling": {**sampling, **QUALITY_RUNS[name]}}
        frames = engine.render(the_job, report).astype(np.int16)
        reference = frames if reference is None else reference
        difference = np.abs(frames - reference).reshape(len(frames), -1).mean(axis=1)
        speed = engine.last_job["speed"]
        out[name] = {
            **engine.last_job["seconds"],
            "steps": speed["steps"],
            "injector_steps": speed["injector_steps"],
            "step_cache": speed["step_cache"],
            "mean_level_difference_to_final": round(float(difference.mean()), 3),
            "worst_frame_level_difference_to_final": round(float(difference.max()), 3),
        }
    engine.close()
    _free()
    return {k: v for k, v in out.items() if k in names}


def _random_pipeline(sizes: dict[str, Any], device: torch.device, dtype: torch.dtype) -> Any:
    """CogVideoXPipeline on random weights of the given size, on the CPU (where loading leaves it)."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDPMScheduler, CogVideoXPipeline
    from transformers import T5Config, T5EncoderModel

    transformer = _transformer(sizes["transformer"], device, dtype).to("cpu")
    text_encoder = _empty(lambda: T5EncoderModel(T5Config(**sizes["t5"])), device, dtype).to("cpu")
    vae = _empty(lambda: AutoencoderKLCogVideoX(**sizes["vae"]), device, dtype).to("cpu")
    scheduler = CogVideoXDPMScheduler(**SCHEDULER)
    pipe = CogVideoXPipeline(
        tokenizer=None, text_encoder=text_encoder, vae=vae, transformer=transformer, scheduler=scheduler
    )
    pipe.set_progress_bar_config(disable=True)
    _free()
    return pipe


def _job(config: dict[str, Any], steps: int) -> dict[str, Any]:
    def poses(x0: float) -> list[list[float]]:
        return [[-1, 0, 0, 0, 1, 0, 0, 0, -1, x0 + 0.2 * k, 2.2, 9.0] for k in range(13)]

    names = ("a brown horse", "a silver robot", "a fire spirit")
    return {
        "prompt": {"text": "a brown horse, a silver robot and a fire spirit are moving in the desert"},
        "entities": [{"prompt": name, "poses": poses(-2.0 + 2 * i)} for i, name in enumerate(names)],
        "sampling": {
            "seed": 0,
            "steps": steps,
            "guidance_scale": 6.0,
            "lora_scale": 0.6,
            "annealed_steps": steps // 2 - 1,
            "height": config["sample_height"] * 8,
            "width": config["sample_width"] * 8,
            "frames": 49,
        },
    }


def _peak(device: torch.device) -> int | None:
    return int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def _device_info(device: torch.device) -> dict[str, Any]:
    import platform

    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return {"type": "cuda", "name": props.name, "vram_bytes": props.total_memory}
    return {"type": "cpu", "name": platform.processor() or platform.machine(), "threads": torch.get_num_threads()}


def _versions() -> dict[str, str]:
    from .engine import _versions as versions

    return versions()


# ---------------------------------------------------------------- text


def format_bench(result: dict[str, Any]) -> str:
    def gib(value: int | None) -> str:
        return f"{value / GIB:.1f} GiB" if value else "n/a"

    d, s, f, p = result["device"], result["steps"], result["flops"], result["projection"]
    forms = result["injector_forms"]
    lines = [
        f"device      {d['name']} ({result['dtype']}), {result['size']} size, "
        f"{result['layers']} blocks, {result['video']['frames']} frames {result['video']['height']}x"
        f"{result['video']['width']}",
        f"step        plain {s['plain_s']:.3f} s, with injector {s['injector_s']:.3f} s (CFG batch 2, "
        f"mean of {result['timed_steps']})",
        f"injector    production {forms['efficient_ms']:.2f} ms, literal {forms['literal_ms']:.2f} ms "
        f"(x{forms['speedup']:.2f}), max relative difference {forms['max_relative_difference']:.1e}",
        f"flops       forward {f['forward_plain']:.3g} + injector {f['forward_injector_extra']:.3g} "
        f"(literal {f['forward_injector_extra_literal']:.3g}); default job {f['default_job']:.3g}",
    ]
    if "ratio_plain" in f:
        lines.append(
            f"vs peak     plain step x{f['ratio_plain']}, injector step x{f['ratio_injector']} of the FLOP limit"
        )
    lines.append(f"t5          one prompt {result['t5']['encode_one_prompt_s']:.3f} s")
    if "decode" in result:
        lines.append(f"decode      {result['decode']['seconds']:.2f} s, peak {gib(result['decode']['peak_bytes'])}")
    lines.append(
        f"default job sampling {p['sampling_s']} s; warm end to end {p['warm_job_s']} s; first job {p['first_job_s']} s"
    )
    if "compiled_steps" in result:
        c = result["compiled_steps"]
        lines.append(
            f"compiled    plain {c['plain_s']:.3f} s, injector {c['injector_s']:.3f} s; warm job "
            f"{p.get('warm_job_compiled_s')} s (first calls {c['first_calls_s']} s)"
        )
    for section, label in (("attention", "attention"), ("quantize", "quantize")):
        for option, r in result.get(section, {}).items():
            if "fallback" in r:
                lines.append(f"{label:<12}{option}: not run: {r['fallback']}")
            else:
                lines.append(
                    f"{label:<12}{option}: plain {r['plain_s']:.3f} s, with injector {r['injector_s']:.3f} s; "
                    f"max relative difference to the default {r['max_relative_difference']:.1e}"
                )
    if "precision" in result:
        pr = result["precision"]
        lines.append(
            f"precision   float32 largest value {max(pr['float32_largest_value_per_block']):.3g} "
            f"(float16 overflows above {pr['float16_largest_finite']:.0f})"
        )
        for name in ("float16", "bfloat16"):
            r = pr[name]
            state = "finite" if r["finite"] else f"NON-FINITE from block {r['first_non_finite_block']}"
            lines.append(
                f"            {name}: {state}; max relative difference to float32 {r['max_relative_difference']:.1e}"
            )
    for name, q in result.get("qualities", {}).items():
        cache = q["step_cache"]
        cached = (
            f", cache {cache['skipped_steps']} of {cache['computed_steps'] + cache['skipped_steps']} skipped"
            if isinstance(cache, dict)
            else ""
        )
        lines.append(
            f"{name:<14}{q['steps']} steps ({q['injector_steps']} injector{cached}): sampling {q['sample_s']:.1f} s; "
            f"video differs from final by {q['mean_level_difference_to_final']} levels on average "
            f"(worst frame {q['worst_frame_level_difference_to_final']})"
        )
    modes = result.get("memory_modes", {})
    for mode in ("full", "balanced", "low"):
        if mode in modes:
            m = modes[mode]
            lines.append(
                f"mode {mode:<9}peak {gib(m['peak_bytes'])}; {modes['job_steps']}-step job: sampling "
                f"{m['sample_s']:.1f} s, decode {m['decode_s']:.1f} s; video differs by <= "
                f"{m['max_level_difference_to_first_mode']} levels"
            )
    g = result.get("gpus")
    if g and "spread_sample_s" in g:
        spread = f"{g['job_steps']}-step job sampling {g['spread_sample_s']:.2f} s"
        lines.append(
            f"gpus        {g['gpus']} ({g['parallel']}): {spread} against {g['one_sample_s']:.2f} s on one "
            f"(x{g['ratio']}); video differs by <= {g['max_level_difference']} levels"
        )
    elif g:
        lines.append(f"gpus        {g.get('gpus_fallback', 'one')}")
    return "\n".join(lines)
