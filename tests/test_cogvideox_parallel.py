"""One take over two ranks (--gpus 2, classifier-free-guidance parallel) on the tiny model: two real
processes on the gloo backend give the one-process result, stop together on a cancel, end a job
with one sentence when a rank dies, and live and die with the worker."""

import io
import json
import os
import signal
import time

import numpy as np
import pytest
import tiny_models
import torch
from cli import write_job
from test_cogvideox_cli import Worker

from backend.cogvideox import engine, parallel, weights
from backend.errors import OutOfMemory, RankFailed
from backend.events import EventStream
from backend.progress import Cancelled, Report

STEPS, ANNEALED = 6, 2
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def one(tiny):
    loaded = engine.load(weights.resolve(weights=tiny["weights"]), CPU, torch.float32)
    yield loaded
    loaded.close()


@pytest.fixture(scope="module")
def two(tiny):
    loaded = engine.load(weights.resolve(weights=tiny["weights"]), CPU, torch.float32, gpus=2, explicit_cpu=True)
    yield loaded
    loaded.close()


def job(**sampling):
    return tiny_models.two_entity_job(**{"steps": STEPS, "annealed_steps": ANNEALED, **sampling})


class StepReport(Report):
    """A Report that runs `at_step(step)` after reporting each sampling step."""

    def __init__(self, at_step=None):
        super().__init__(EventStream(io.StringIO()))
        self.at_step = at_step or (lambda step: None)
        self.steps = []

    def progress(self, step, total, stage="sampling"):
        self.steps.append(step)
        self.at_step(step)
        super().progress(step, total, stage)


def child(two):
    (process,) = two.ranks.processes
    return process


def test_two_ranks_on_gloo_give_the_one_process_result(one, two):
    assert two.layout == parallel.Layout(2, "cfg") and child(two).is_alive()
    the_job = job(seed=11, guidance_scale=6.0)
    reference = one.latents(the_job, StepReport())
    batches = []
    watch = two.pipe.transformer.patch_embed.register_forward_pre_hook(lambda m, a: batches.append(a[1].shape[0]))
    try:
        split = two.latents(the_job, StepReport())
    finally:
        watch.remove()
    assert batches == [1] * STEPS  # rank 0 ran its half of the guidance batch only
    assert split.dtype == torch.float32 and split.shape == reference.shape
    assert torch.allclose(split, reference, rtol=0, atol=1e-5), (split - reference).abs().max()
    frames_one, frames_two = one.render(the_job, StepReport()), two.render(the_job, StepReport())
    assert np.abs(frames_one.astype(int) - frames_two.astype(int)).max() <= 1
    assert two.describe()["speed"] | {"gpus": 2, "parallel": "cfg"} == two.describe()["speed"]
    assert one.describe()["speed"] | {"gpus": 1, "parallel": "none"} == one.describe()["speed"]
    assert "gpus_fallback" not in two.describe()["speed"]


def test_without_guidance_both_ranks_compute_the_whole_batch(one, two):
    the_job = job(seed=3, guidance_scale=1.0)
    reference = one.latents(the_job, StepReport())
    assert torch.allclose(two.latents(the_job, StepReport()), reference, rtol=0, atol=1e-5)


def test_a_cancel_stops_both_ranks_and_the_next_job_is_unaffected(one, two):
    report = StepReport(lambda step: step == 2 and report.cancel.set())
    started = time.monotonic()
    with pytest.raises(Cancelled):
        two.latents(job(steps=40, annealed_steps=20), report)
    assert time.monotonic() - started < 60
    # Rank 0 reports step 2 and the ranks stop at the next step's exchange, together.
    assert report.steps == [1, 2]
    assert child(two).is_alive() and not two.ranks.closed
    the_job = job(seed=5)
    assert torch.allclose(two.latents(the_job, StepReport()), one.latents(the_job, StepReport()), rtol=0, atol=1e-5)


def test_a_cancel_on_the_last_step_leaves_the_ranks_in_step(one, two):
    report = StepReport(lambda step: step == STEPS and report.cancel.set())
    with pytest.raises(Cancelled):
        two.latents(job(), report)
    the_job = job(seed=6)
    assert torch.allclose(two.latents(the_job, StepReport()), one.latents(the_job, StepReport()), rtol=0, atol=1e-5)


def test_a_rank_that_dies_mid_job_ends_it_with_one_sentence(two):
    # The last test of the two-rank engine (one per process: torch.distributed's default group).
    eng = two
    try:
        process = child(eng)
        report = StepReport(lambda step: step == 2 and os.kill(process.pid, signal.SIGKILL))
        started = time.monotonic()
        with pytest.raises(RankFailed) as failure:
            eng.latents(job(steps=40, annealed_steps=20), report)
        assert time.monotonic() - started < 60
        message = failure.value.message
        assert message.startswith("The process of rank 1 (cpu) stopped mid-job") and "\n" not in message
        assert failure.value.event_fields()["code"] == "gpu_process_failed"
        with pytest.raises(RankFailed, match="stopped by an earlier failure"):
            eng.latents(job(), StepReport())
    finally:
        eng.close()
    assert not process.is_alive()


def test_fewer_gpus_than_asked_fall_back_with_one_sentence():
    layout = parallel.plan(2, CPU)
    assert (layout.gpus, layout.kind) == (1, "none") and "no GPU is visible" in layout.note
    assert layout.describe() == {"gpus": 1, "parallel": "none", "gpus_fallback": layout.note}
    layout = parallel.plan(8, CPU, explicit_cpu=True)
    assert (layout.gpus, layout.kind) == (2, "cfg") and "rendering on 2" in layout.note
    assert parallel.plan(1, CPU) == parallel.Layout()


def _spawned_children(pid):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
                with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                    spawned = b"spawn_main" in cmdline.read()
            except OSError:
                continue
            if int(fields[1]) == pid and spawned:
                found.append(int(entry))
    return found


def _gone(pid, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except OSError:
            return True
        time.sleep(0.2)
    return False


def test_the_worker_with_two_ranks_renders_cancels_and_takes_its_rank_with_it(tiny, tmp_path):
    short = write_job(job(steps=4, annealed_steps=1), tmp_path / "short.json")
    long = write_job(job(steps=200, annealed_steps=1), tmp_path / "long.json")
    takes = tmp_path / "takes"
    worker = Worker("--weights", tiny["weights"], "--device", "cpu", "--gpus", "2")
    try:
        worker.send(op="generate", id="a", job=str(short), out=str(takes))
        end = worker.until(lambda e: e.get("job") == "a" and e["event"] in ("result", "error", "cancelled"))
        assert end["event"] == "result", end
        sidecar = json.loads((takes / "Scene_take_001.json").read_text())
        speed = sidecar["engine"]["speed"]
        assert (speed["gpus"], speed["parallel"], speed["attention"]) == (2, "cfg", "sdpa")
        (rank1,) = _spawned_children(worker.proc.pid)

        worker.send(op="generate", id="b", job=str(long), out=str(takes))
        worker.until(lambda e: e["event"] == "progress" and e.get("job") == "b")
        worker.send(op="cancel", id="b")
        end = worker.until(lambda e: e.get("job") == "b" and e["event"] in ("result", "error", "cancelled"))
        assert end["event"] == "cancelled"
        worker.send(op="generate", id="c", job=str(short), out=str(takes))
        end = worker.until(lambda e: e.get("job") == "c" and e["event"] in ("result", "error", "cancelled"))
        assert end["event"] == "result", end

        worker.proc.kill()  # the worker dies without a word: its rank goes too
        worker.proc.wait(timeout=30)
        assert _gone(rank1)
    finally:
        if worker.proc.poll() is None:
            worker.proc.kill()


def test_running_out_of_memory_on_rank_0_is_advice_and_stops_the_other_rank(two, tiny):
    # After the dying-rank test: a fresh two-rank engine (the module's one has been stopped).
    eng = engine.load(weights.resolve(weights=tiny["weights"]), CPU, torch.float32, gpus=2, explicit_cpu=True)
    try:
        process = child(eng)

        def out_of_memory(step):
            if step == 2:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

        with pytest.raises(OutOfMemory) as caught:
            eng.render(job(steps=40, annealed_steps=20), StepReport(out_of_memory))
        assert caught.value.suggest_memory == "balanced"  # advice, not a retry in place
        assert eng.ranks.closed and _gone(process.pid, 10)
    finally:
        eng.close()
