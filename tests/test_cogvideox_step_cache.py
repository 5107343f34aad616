"""Quality presets and the step cache on tiny release-layout weights: the cache never touches an
injector step, a threshold of 0 is the uncached video, final is today's path, draft is what it
says, and the take records all of it."""

import io

import numpy as np
import pytest
import tiny_models
import torch

from backend import job as jobfile
from backend.cogvideox import engine, pipeline, weights
from backend.cogvideox.step_cache import StepCache
from backend.events import EventStream
from backend.progress import Report

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


def blocks_per_step(eng, the_job, cache):
    """How many transformer blocks computed their self-attention in each step."""
    calls = [0]
    per_step: list[int] = []
    hooks = [
        block.attn1.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
        for block in eng.pipe.transformer.transformer_blocks
    ]

    def on_step(done, total):
        per_step.append(calls[0])
        calls[0] = 0

    try:
        with torch.no_grad():
            prompts = pipeline.encode(eng.pipe, eng.prompts, the_job, eng.device)
            latents = pipeline.sample(eng.pipe, prompts, pipeline.Sampling.from_job(the_job), on_step, cache=cache)
    finally:
        for hook in hooks:
            hook.remove()
    return per_step, latents


def test_the_cache_is_bypassed_on_every_injector_step(eng):
    """With a threshold no step can stay above, every step the cache sees after its first reuses
    it; the injector steps still compute every block, and so does the first step after them."""
    layers = eng.pipe.transformer.config.num_layers
    the_job = job(seed=3)
    cache = StepCache(eng.pipe.transformer, threshold=1e9)
    per_step, _ = blocks_per_step(eng, the_job, cache)
    assert per_step[: ANNEALED + 1] == [layers] * (ANNEALED + 1)  # the injector steps
    assert per_step[ANNEALED + 1] == layers  # the cache starts empty after them
    assert per_step[ANNEALED + 2 :] == [1] * (STEPS - ANNEALED - 2)  # only the first block
    assert cache.record() == {"threshold": 1e9, "computed_steps": 1, "skipped_steps": STEPS - ANNEALED - 2}
    # The hooks are gone after the job: the next job without a cache computes every block.
    assert not cache.active and eng.pipe.transformer._cache_config is None
    assert blocks_per_step(eng, the_job, None)[0] == [layers] * STEPS


def test_a_threshold_of_zero_reproduces_the_uncached_video_exactly(eng):
    plain = job(seed=9)
    cached = job(seed=9, step_cache=0.0)
    report = quiet()
    assert np.array_equal(eng.render(cached, report), eng.render(plain, quiet()))
    record = report.metrics["speed"]["step_cache"]
    assert record == {"threshold": 0.0, "computed_steps": STEPS - ANNEALED - 1, "skipped_steps": 0}
    # ... and a cache that skips changes it (the comparison above can fail).
    skipping = job(seed=9, step_cache=1.0)
    assert not np.array_equal(eng.render(skipping, quiet()), eng.render(plain, quiet()))


def test_final_is_the_release_schedule_bit_for_bit_with_no_cache(eng):
    """A job that names quality final and leaves the steps out runs exactly what a job from
    before presets (50 steps, annealed 20, no quality field) ran."""
    today = job(seed=2, steps=50, annealed_steps=20)
    final = job(seed=2, quality="final", steps=None, annealed_steps=None)
    jobfile.validate(final)
    with torch.no_grad():
        a = pipeline.sample(
            eng.pipe, pipeline.encode(eng.pipe, eng.prompts, today, eng.device), pipeline.Sampling.from_job(today)
        )
    layers = eng.pipe.transformer.config.num_layers
    per_step, b = blocks_per_step(eng, final, None)
    assert torch.equal(a, b)
    assert per_step == [layers] * 50
    report = quiet()
    eng.render(final, report)
    assert report.metrics["speed"] == {"quality": "final", "steps": 50, "injector_steps": 21, "step_cache": "off"}


def test_draft_runs_twenty_steps_nine_with_the_injector_and_the_cache_after(eng):
    stream = io.StringIO()
    report = Report(EventStream(stream))
    draft = job(seed=4, quality="draft", steps=None, annealed_steps=None)
    frames = eng.render(draft, report)
    assert frames.shape == (49, tiny_models.HEIGHT, tiny_models.WIDTH, 3)
    text = stream.getvalue()
    assert "Sampling 20 steps (9 with the injector)" in text
    assert text.count('"event": "progress"') == 20
    speed = report.metrics["speed"]
    assert (speed["quality"], speed["steps"], speed["injector_steps"]) == ("draft", 20, 9)
    cache = speed["step_cache"]
    assert cache["threshold"] == jobfile.DRAFT_STEP_CACHE
    assert cache["computed_steps"] + cache["skipped_steps"] == 11 and cache["computed_steps"] >= 1
    described = eng.describe()["speed"]
    assert described == {
        "attention": "sdpa",
        "dtype": "float32",
        "memory": "full",
        "compile": False,
        "quantize": "none",
        "gpus": 1,
        "parallel": "none",
    }


def test_a_take_spread_over_several_gpus_runs_draft_without_the_cache_and_says_so(eng):
    """Each rank sees only its half of the guidance batch: a cache deciding per rank could skip
    different steps on each and drift apart, so with several ranks the cache stays off."""
    from backend.cogvideox.engine import job_speed

    draft = job(seed=4, quality="draft", steps=None, annealed_steps=None)
    sampling = pipeline.Sampling.from_job(draft)
    assert eng._step_cache(sampling) is not None
    eng.ranks = object()  # what --gpus 2 gives the engine (ranks.Ranks); only its presence matters here
    try:
        assert eng._step_cache(sampling) is None
    finally:
        eng.ranks = None
    assert job_speed(sampling, None, several_gpus=True)["step_cache"] == (
        "off (not used when a take is spread over several GPUs)"
    )
