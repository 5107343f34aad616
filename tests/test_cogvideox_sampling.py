"""The cogvideox engine on tiny release-layout weights: annealed sampling against the release's
method, what each setting changes, prompt caching, jobs it cannot run, out-of-memory, cancel."""

import copy
import importlib.util
import io
import math

import numpy as np
import pytest
import tiny_models
import torch
from diffusers import CogVideoXDPMScheduler, CogVideoXPipeline, CogVideoXTransformer3DModel
from diffusers.utils.torch_utils import randn_tensor

from backend.cogvideox import commands, engine, hardware, pipeline, speed, weights
from backend.cogvideox.transformer import TrajectoryCondition, TrajMasterTransformer3DModel
from backend.errors import OutOfMemory, UserError
from backend.events import EventStream
from backend.progress import Cancelled, Report

STEPS, ANNEALED = 6, 2


@pytest.fixture(scope="module")
def eng(tiny):
    loaded = engine.load(weights.resolve(weights=tiny["weights"]), torch.device("cpu"), torch.float32, "auto")
    yield loaded
    loaded.close()


def job(**sampling):
    return tiny_models.two_entity_job(**{"steps": STEPS, "annealed_steps": ANNEALED, **sampling})


def quiet() -> Report:
    return Report(EventStream(io.StringIO()))


def release_latents(tiny, the_job) -> torch.Tensor:
    """The release's method, written out as its inference script and pipeline do it: a deep copy
    of the transformer made before the LoRA, the LoRA fused at the job's scale, the copy (no
    LoRA, no injector) for the steps after annealed_steps."""
    s = the_job["sampling"]
    transformer = TrajMasterTransformer3DModel.from_pretrained(str(tiny["injector"]))
    pipe = CogVideoXPipeline.from_pretrained(str(tiny["base"]), transformer=transformer)
    original = copy.deepcopy(pipe.transformer)
    pipe.load_lora_weights(str(tiny["lora"].parent), weight_name=tiny["lora"].name, adapter_name="default")
    pipe.fuse_lora(components=["transformer"], lora_scale=s["lora_scale"])
    scheduler = CogVideoXDPMScheduler.from_config(pipe.scheduler.config, timestep_spacing="trailing")

    def t5(text):
        ids = pipe.tokenizer(
            text,
            padding="max_length",
            max_length=tiny_models.TEXT_LEN,
            truncation=True,
            add_special_tokens=True,
            return_tensors="pt",
        )
        return pipe.text_encoder(ids.input_ids)[0], ids.attention_mask

    with torch.no_grad():
        prompt = torch.cat([t5("")[0], t5(the_job["prompt"]["text"])[0]])
        entities = [t5(e["prompt"]) for e in the_job["entities"]]
        condition = TrajectoryCondition(
            poses=torch.tensor([e["poses"] for e in the_job["entities"]], dtype=torch.float32)[None],
            entity_embeds=torch.stack([e[0][0] for e in entities])[None],
            entity_mask=torch.stack([e[1][0] for e in entities])[None],
            empty_embeds=t5("")[0],
        )
        generator = torch.Generator().manual_seed(s["seed"])
        scheduler.set_timesteps(s["steps"])
        timesteps = scheduler.timesteps
        shape = (1, 13, transformer.config.in_channels, tiny_models.HEIGHT // 8, tiny_models.WIDTH // 8)
        latents = randn_tensor(shape, generator=generator, dtype=prompt.dtype) * scheduler.init_noise_sigma
        rotary = pipe._prepare_rotary_positional_embeddings(tiny_models.HEIGHT, tiny_models.WIDTH, 13, "cpu")
        old = None
        for i, t in enumerate(timesteps):
            model_input = scheduler.scale_model_input(torch.cat([latents] * 2), t)
            if i <= s["annealed_steps"]:
                noise = pipe.transformer(
                    model_input,
                    prompt,
                    timestep=t.expand(2),
                    image_rotary_emb=rotary,
                    attention_kwargs={"trajectory": condition},
                    return_dict=False,
                )[0]
            else:
                noise = original(model_input, prompt, timestep=t.expand(2), image_rotary_emb=rotary, return_dict=False)[
                    0
                ]
            noise = noise.float()
            scale = (
                1 + s["guidance_scale"] * (1 - math.cos(math.pi * ((s["steps"] - t.item()) / s["steps"]) ** 5.0)) / 2
            )
            uncond, text = noise.chunk(2)
            noise = uncond + scale * (text - uncond)
            latents, old = scheduler.step(
                noise, old, t, timesteps[i - 1] if i > 0 else None, latents, generator=generator, return_dict=False
            )
    return latents


def our_latents(eng, the_job) -> torch.Tensor:
    with torch.no_grad():
        prompts = pipeline.encode(eng.pipe, eng.prompts, the_job, eng.device)
        return pipeline.sample(eng.pipe, prompts, pipeline.Sampling.from_job(the_job))


@pytest.mark.parametrize(("lora_scale", "annealed"), [(0.6, ANNEALED), (1.0, 0), (0.3, STEPS - 1)])
def test_annealed_sampling_with_one_transformer_equals_the_release_method(tiny, eng, lora_scale, annealed):
    the_job = job(lora_scale=lora_scale, annealed_steps=annealed, seed=11)
    ours, release = our_latents(eng, the_job), release_latents(tiny, the_job)
    assert release.abs().max() > 0.5
    torch.testing.assert_close(ours, release, atol=2e-4, rtol=2e-4)


def test_the_pose_free_steps_are_exactly_the_stock_transformer(tiny, eng):
    """After annealed_steps the engine's transformer (LoRA loaded but disabled, trajectory off)
    computes what diffusers' own CogVideoXTransformer3DModel computes from the same folder."""
    stock = CogVideoXTransformer3DModel.from_pretrained(str(tiny["injector"])).eval()
    ours = eng.pipe.transformer
    torch.manual_seed(7)
    latents = torch.randn(2, 13, 4, tiny_models.HEIGHT // 8, tiny_models.WIDTH // 8)
    prompt = torch.randn(2, tiny_models.TEXT_LEN, 32)
    rotary = eng.pipe._prepare_rotary_positional_embeddings(tiny_models.HEIGHT, tiny_models.WIDTH, 13, "cpu")
    args = {"timestep": torch.tensor([400, 400]), "image_rotary_emb": rotary, "return_dict": False}
    with torch.no_grad():
        prompts = pipeline.encode(eng.pipe, eng.prompts, job(), eng.device)
        prompts.condition.active = False
        ours.disable_lora()
        try:
            result = ours(latents, prompt, attention_kwargs={"trajectory": prompts.condition}, **args)[0]
        finally:
            ours.enable_lora()
        assert torch.equal(result, stock(latents, prompt, **args)[0])


def test_poses_lora_scale_and_annealed_steps_each_change_the_video(eng):
    base = eng.render(job(seed=5, annealed_steps=4), quiet())
    assert base.shape == (49, tiny_models.HEIGHT, tiny_models.WIDTH, 3) and base.dtype == np.uint8
    assert np.array_equal(eng.render(job(seed=5, annealed_steps=4), quiet()), base)  # deterministic for a seed

    moved = job(seed=5, annealed_steps=4)
    moved["entities"][0]["poses"] = [[*p[:9], p[9] + 1.5, p[10], p[11] - 2.0] for p in moved["entities"][0]["poses"]]
    variants = {
        "poses": moved,
        "lora_scale": job(seed=5, annealed_steps=4, lora_scale=0.1),
        "annealed_steps": job(seed=5, annealed_steps=1),
    }
    for name, variant in variants.items():
        diff = np.abs(eng.render(variant, quiet()).astype(int) - base.astype(int))
        changed = (diff > 2).mean()
        assert changed > 0.1, f"changing {name} changed only {changed:.1%} of the pixels by more than 2 levels"


def test_a_second_job_reuses_the_encoded_prompts(eng):
    first = job(seed=1)
    eng.render(first, quiet())
    misses = eng.prompts.misses
    second = job(seed=2, lora_scale=0.9)
    eng.render(second, quiet())
    assert eng.prompts.misses == misses
    assert eng.last_job["prompt_cache"]["hits"] >= 4


@pytest.mark.parametrize(("height", "width"), [(64, 96), (32, 32)])
def test_a_job_at_another_size_is_rejected_clearly(eng, height, width):
    with pytest.raises(UserError) as caught:
        eng.render(job(height=height, width=width), quiet())
    error = caught.value
    assert error.code == "unsupported"
    assert f"{tiny_models.HEIGHT}x{tiny_models.WIDTH}" in error.message and f"{height}x{width}" in error.message
    assert "\n" not in error.message


def out_of_memory_in(eng, modes):
    """A real out-of-memory error type raised where the GPU would raise it: when the transformer
    allocates, in the listed memory modes."""

    def hook(module, args, kwargs):
        if eng.memory_mode in modes:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    return eng.pipe.transformer.register_forward_pre_hook(hook, with_kwargs=True)


def test_auto_memory_retries_once_in_the_next_lower_mode(eng):
    eng.requested_memory, eng.memory_mode = "auto", "full"
    stream = io.StringIO()
    handle = out_of_memory_in(eng, {"full"})
    try:
        frames = eng.render(job(seed=3), Report(EventStream(stream)))
    finally:
        handle.remove()
        eng.use_memory_mode("full")
    assert frames.shape[0] == 49
    assert '"code": "memory_fallback"' in stream.getvalue()
    assert eng.last_job["memory_mode"] == "balanced"


@pytest.mark.parametrize(
    ("requested", "failing", "suggested"),
    [("full", {"full"}, "balanced"), ("auto", {"full", "balanced"}, "low"), ("low", {"low"}, None)],
)
def test_out_of_memory_becomes_advice_for_the_next_mode(eng, requested, failing, suggested):
    eng.requested_memory, eng.memory_mode = requested, "low" if requested == "low" else "full"
    handle = out_of_memory_in(eng, failing)
    try:
        with pytest.raises(OutOfMemory) as caught:
            eng.render(job(seed=3), quiet())
    finally:
        handle.remove()
        eng.requested_memory = "auto"
        eng.use_memory_mode("full")
    assert caught.value.suggest_memory == suggested
    fields = caught.value.event_fields()
    assert fields["code"] == "out_of_memory" and (suggested is None or suggested in fields["hint"])


def test_cancel_stops_at_a_step_boundary_and_the_next_job_is_unaffected(eng):
    expected = eng.render(job(seed=9), quiet())
    report = quiet()
    steps_seen = []

    class Watch(io.StringIO):
        def write(self, text):
            if '"event": "progress"' in text:
                steps_seen.append(text)
                if len(steps_seen) == 2:
                    report.cancel.set()
            return super().write(text)

    report.stream = EventStream(Watch())
    with pytest.raises(Cancelled):
        eng.render(job(seed=9), report)
    assert len(steps_seen) == 2
    assert eng.pipe.transformer.transformer_blocks[0].attn1.to_q.disable_adapters is False  # LoRA back on
    assert np.array_equal(eng.render(job(seed=9), quiet()), expected)


def test_render_reports_stages_progress_and_metrics(eng):
    stream = io.StringIO()
    report = Report(EventStream(stream))
    eng.render(job(seed=4), report)
    text = stream.getvalue()
    for stage in ("encoding", "sampling", "decoding"):
        assert f'"stage": "{stage}"' in text
    assert text.count('"event": "progress"') == STEPS
    assert set(report.metrics["seconds"]) == {"encode_s", "sample_s", "decode_s"}
    described = eng.describe()
    assert described["name"] == "cogvideox" and described["memory"]["mode"] == "full"
    assert described["last_job"]["steps"] == STEPS


@pytest.mark.skipif(importlib.util.find_spec("torchao") is not None, reason="torchao is installed here")
def test_quantize_without_torchao_names_the_missing_package_and_changes_nothing(eng):
    before = {n: p.clone() for n, p in eng.pipe.transformer.named_parameters()}
    used, why = speed.quantize_transformer(eng.pipe, "int8", hardware.of(eng.device))
    assert used == "none" and "torchao" in why
    assert all(torch.equal(p, before[n]) for n, p in eng.pipe.transformer.named_parameters())


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_asking_for_a_gpu_on_a_machine_without_one():
    with pytest.raises(UserError) as caught:
        commands.resolve_device("cuda")
    assert caught.value.code == "unsupported" and "--device cpu" in caught.value.hint
