"""The cogvideox engine on a CUDA GPU, at toy size: the memory modes place the models for real
(diffusers' model offloading and group offloading) and must not change the video.

Skipped where there is no GPU (CI); run on one with `pytest tests/test_cogvideox_gpu.py`.
"""

import io

import numpy as np
import pytest
import tiny_models
import torch

from backend.events import EventStream
from backend.progress import Report

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def job(steps: int = 6) -> dict:
    """A two-entity job built by hand (the GPU machine may lack jsonschema, which shots.py needs)."""

    def poses(x0: float) -> list[list[float]]:
        return [[-1, 0, 0, 0, 1, 0, 0, 0, -1, x0 + 0.2 * k, 2.2, 9.0] for k in range(13)]

    return {
        "prompt": {"text": "A brown horse and a silver robot are moving in the sunlit desert", "location": "desert"},
        "entities": [
            {"name": "A", "prompt": "A brown horse with a flowing black mane", "poses": poses(-2.0)},
            {"name": "B", "prompt": "A silver humanoid robot with glowing blue eyes", "poses": poses(1.0)},
        ],
        "sampling": {
            "seed": 3,
            "steps": steps,
            "guidance_scale": 6.0,
            "lora_scale": 0.6,
            "annealed_steps": 2,
            "height": tiny_models.HEIGHT,
            "width": tiny_models.WIDTH,
            "frames": 49,
        },
    }


def render(tiny, device: str, dtype: torch.dtype, mode: str) -> tuple[np.ndarray, dict]:
    from backend.cogvideox import engine, weights

    eng = engine.load(weights.resolve(weights=tiny["weights"]), torch.device(device), dtype, mode)
    try:
        frames = eng.render(job(), Report(EventStream(io.StringIO())))
        return frames, eng.describe()
    finally:
        eng.close()


@pytest.mark.parametrize("mode", ["balanced", "low"])
def test_offloading_modes_match_full(tiny, mode):
    full, _ = render(tiny, "cuda", torch.bfloat16, "full")
    other, described = render(tiny, "cuda", torch.bfloat16, mode)
    assert described["memory"]["mode"] == mode
    assert described["last_job"]["peak_vram_bytes"] > 0
    assert np.abs(full.astype(int) - other.astype(int)).max() <= 1


def test_gpu_float32_matches_cpu_float32(tiny):
    gpu, _ = render(tiny, "cuda", torch.float32, "full")
    cpu, _ = render(tiny, "cpu", torch.float32, "full")
    assert np.abs(gpu.astype(int) - cpu.astype(int)).mean() < 1.0
