"""Attention kernels, quantisation and the number type of the cogvideox engine: what each option
needs, the sentence when this machine cannot run it (and that the video is then the default's),
that a chosen kernel really computes both attentions, and the refusal of float16."""

import io
import json
from collections import Counter

import numpy as np
import pytest
import tiny_models
import torch
from cli import backend, write_job
from shots import make_job
from torch.profiler import profile

from backend.cogvideox import attention, engine, precision, speed, weights
from backend.cogvideox.hardware import Hardware
from backend.errors import UserError
from backend.events import EventStream
from backend.progress import Report

CPU = Hardware(cuda=False)
H100 = Hardware(
    cuda=True, name="NVIDIA H100 80GB HBM3", capability=(9, 0), cudnn=91002, packages=frozenset({"sageattention"})
)
A100 = Hardware(cuda=True, name="NVIDIA A100-SXM4-80GB", capability=(8, 0), cudnn=91002)
T4 = Hardware(cuda=True, name="Tesla T4", capability=(7, 5), cudnn=91002, packages=frozenset({"sageattention"}))
MATH_KERNEL = "aten::_scaled_dot_product_attention_math"
CPU_FLASH_KERNEL = "aten::_scaled_dot_product_flash_attention_for_cpu"


@pytest.fixture(scope="module")
def default(tiny):
    loaded = engine.load(weights.resolve(weights=tiny["weights"]), torch.device("cpu"), torch.float32)
    yield loaded
    loaded.close()


def job(steps=4):
    settings = {"height": tiny_models.HEIGHT, "width": tiny_models.WIDTH, "steps": steps, "annealed_steps": 1}
    return make_job([((-2.0, 0.0), (2.0, 1.0)), ((1.0, 2.0), (-1.0, -1.0))], engine="cogvideox", sampling=settings)


def render(eng, the_job=None):
    return eng.render(the_job or job(), Report(EventStream(io.StringIO())))


def attention_kernels(fn) -> Counter:
    with profile() as prof:
        fn()
    return Counter(e.name for e in prof.events() if "scaled_dot_product" in e.name and e.name.startswith("aten::_"))


# ---------------------------------------------------------------- the decisions


@pytest.mark.parametrize(
    ("option", "hw", "dtype", "used", "says"),
    [
        ("auto", H100, torch.bfloat16, "sdpa", ""),
        ("sdpa", CPU, torch.float32, "sdpa", ""),
        ("fa3", H100, torch.bfloat16, "sdpa", "flash_attn_interface is not installed"),
        ("fa3", A100, torch.bfloat16, "sdpa", "A100-SXM4-80GB (compute 8.0) is not a Hopper GPU"),
        ("sage", H100, torch.bfloat16, "sage", ""),
        ("sage", A100, torch.bfloat16, "sdpa", "sageattention is not installed"),
        ("sage", T4, torch.float16, "sdpa", "Tesla T4 (compute 7.5) is older"),
        ("sage", H100, torch.float32, "sdpa", "runs in float32"),
        ("cudnn", A100, torch.bfloat16, "cudnn", ""),
        ("cudnn", Hardware(cuda=True, name="X", capability=(9, 0), cudnn=8907), torch.bfloat16, "sdpa", "cuDNN 8907"),
        ("cudnn", CPU, torch.float32, "sdpa", "there is no NVIDIA GPU here"),
    ],
)
def test_each_attention_option_runs_only_where_the_gpu_and_packages_allow(option, hw, dtype, used, says):
    choice = attention.choose(option, hw, dtype)  # no device: the decision alone, without a trial run
    assert choice.used == used
    if says:
        assert says in choice.fallback
        assert choice.fallback.startswith(f"--attention {option} needs ") and choice.fallback.count(". ") == 0
        assert choice.fallback.endswith("using torch's default attention (sdpa).")
    else:
        assert choice.fallback == ""


@pytest.mark.parametrize(
    ("kind", "hw", "says"),
    [
        ("fp8", A100, "Ada or Hopper"),
        ("fp8", CPU, "the CPU is not"),
        ("fp8", Hardware(cuda=True, name="NVIDIA L40S", capability=(8, 9)), "needs the package torchao"),
        ("int8", CPU, "needs the package torchao"),
        ("int8", Hardware(cuda=False, packages=frozenset({"torchao"})), ""),
        ("fp8", Hardware(cuda=True, name="H100", capability=(9, 0), packages=frozenset({"torchao"})), ""),
    ],
)
def test_quantize_runs_only_where_the_gpu_and_torchao_allow(kind, hw, says):
    why = speed.quantize_fallback(kind, hw)
    if says:
        assert says in why and why.endswith(("the transformer runs unquantised.", "saves memory on any GPU)."))
    else:
        assert why == ""


@pytest.mark.parametrize(
    ("requested", "hw", "dtype"),
    [
        ("auto", H100, torch.bfloat16),
        ("auto", A100, torch.bfloat16),
        ("auto", CPU, torch.float32),
        ("float32", T4, torch.float32),
        ("bfloat16", CPU, torch.bfloat16),
    ],
)
def test_the_dtype_the_engine_runs_in(requested, hw, dtype):
    assert precision.engine_dtype(requested, hw) == dtype


@pytest.mark.parametrize("requested", ["auto", "bfloat16"])
@pytest.mark.parametrize("card", [T4, Hardware(cuda=True, name="Tesla V100-SXM2-32GB", capability=(7, 0))])
def test_a_gpu_without_bfloat16_is_refused_naming_its_limit_unless_float32_is_asked_for(requested, card):
    with pytest.raises(UserError) as caught:
        precision.engine_dtype(requested, card)
    error = caught.value
    assert error.code == "unsupported"
    assert f"{card.name} (compute {card.capability[0]}.{card.capability[1]}) has no bfloat16" in error.message
    assert "--dtype float32" in error.hint


@pytest.mark.parametrize("hw", [CPU, A100, H100, T4])
def test_float16_is_refused_everywhere(hw):
    with pytest.raises(UserError) as caught:
        precision.engine_dtype("float16", hw)
    assert "cannot run in float16" in caught.value.message and "--dtype auto" in caught.value.hint


# ---------------------------------------------------------------- on the tiny model


def test_options_this_machine_cannot_run_fall_back_to_the_default_video(tiny, default):
    asked = engine.load(
        weights.resolve(weights=tiny["weights"]), torch.device("cpu"), torch.float32, quantize="fp8", attention="fa3"
    )
    try:
        speed_record = asked.describe()["speed"]
        assert speed_record["attention"] == "sdpa" and speed_record["quantize"] == "none"
        assert "Hopper" in speed_record["attention_fallback"] and "Ada or Hopper" in speed_record["quantize_fallback"]
        assert np.array_equal(render(asked), render(default))
    finally:
        asked.close()


def test_sdpa_is_todays_path_bit_for_bit(tiny, default):
    assert default.describe()["speed"] == {
        "attention": "sdpa",
        "quantize": "none",
        "compile": False,
        "dtype": "float32",
        "memory": default.memory_mode,
        "gpus": 1,
        "parallel": "none",
    }
    asked = engine.load(weights.resolve(weights=tiny["weights"]), torch.device("cpu"), torch.float32, attention="sdpa")
    try:
        assert np.array_equal(render(asked), render(default))  # (both have their prompts' encodings from here on)
        assert attention_kernels(lambda: render(asked)) == attention_kernels(lambda: render(default))
    finally:
        asked.close()


def test_a_routed_kernel_computes_both_attentions(default):
    """The route hands every attention of a forward (attn1 of each block and attn_injector of
    each injector block) to diffusers' dispatcher: with its math backend (the one that runs on a
    CPU) the profiler sees only torch's math kernel, once per attention, and the same numbers."""
    transformer = default.pipe.transformer
    blocks = len(transformer.transformer_blocks)
    injectors = len(transformer.injector_blocks)
    the_job = job(steps=3)  # steps 0 and 1 (annealed_steps 1) with the injector and the LoRA, step 2 without
    render(default, the_job)  # the prompts' encodings are cached from here on
    plain = attention_kernels(lambda: render(default, the_job))
    assert set(plain) == {CPU_FLASH_KERNEL}
    with attention.routed("_native_math") as route:
        routed = attention_kernels(lambda: render(default, the_job))
    assert routed == {MATH_KERNEL: 2 * (blocks + injectors) + blocks}
    assert route.calls == 2 * (blocks + injectors) + blocks


def test_the_engine_samples_inside_its_chosen_kernel(default, monkeypatch):
    """The engine's choice reaches the sampler: with the cudnn choice pointed at the math
    backend (no cuDNN here), every attention of the job runs there, and the sidecar says so."""
    before = render(default)
    monkeypatch.setattr(attention, "BACKENDS", {**attention.BACKENDS, "cudnn": "_native_math"})
    monkeypatch.setattr(default, "attention", attention.Choice("cudnn", "cudnn"))
    kernels = attention_kernels(lambda: render(default))
    assert set(kernels) == {MATH_KERNEL}
    assert default.describe()["speed"]["attention"] == "cudnn"
    assert np.abs(render(default).astype(int) - before.astype(int)).max() <= 2  # another kernel, same video


# ---------------------------------------------------------------- through the command


def test_generate_warns_once_per_fallback_and_records_it_in_the_sidecar(tiny, tmp_path):
    path = write_job(job(), tmp_path / "shot.json")
    flags = ["--weights", str(tiny["weights"]), "--device", "cpu"]
    run = backend(
        "generate", path, "--out", tmp_path / "takes", *flags, "--attention", "sage", "--quantize", "int8", timeout=300
    )
    assert run.code == 0, run.stderr
    warnings = [e for e in run.events if e["event"] == "warning" and e["code"] == "speed_fallback"]
    assert sorted(w["option"] for w in warnings) == ["attention", "quantize"]
    assert all(w["message"].count(";") == 1 and w["message"].endswith(".") for w in warnings)
    sidecar = json.loads(open(run.last("result")["sidecar"], encoding="utf-8").read())
    recorded = sidecar["engine"]["speed"]
    assert recorded["attention"] == "sdpa" and recorded["quantize"] == "none" and recorded["dtype"] == "float32"
    assert {recorded["attention_fallback"], recorded["quantize_fallback"]} == {w["message"] for w in warnings}


def test_generate_refuses_float16_before_loading_anything(tiny, tmp_path):
    path = write_job(job(), tmp_path / "shot.json")
    run = backend(
        "generate", path, "--out", tmp_path / "takes", "--weights", str(tiny["weights"]), "--device", "cpu",
        "--dtype", "float16", timeout=300,
    )  # fmt: skip
    assert run.code == 2
    error = run.last("error")
    assert error["code"] == "unsupported" and "float16" in error["message"] and "--dtype" in error["hint"]
    assert "loading" not in [e.get("stage") for e in run.events if e["event"] == "stage"]
    assert "Traceback" not in run.stderr and not (tmp_path / "takes").exists()


def test_doctor_says_which_options_this_machine_can_use():
    run = backend("doctor", "--json")
    options = json.loads(run.stdout)["speed_options"]
    assert set(options["attention"]) == {"cudnn", "sage", "fa3"} and set(options["quantize"]) == {"fp8", "int8"}
    if not torch.cuda.is_available():
        assert options["dtype"]["auto"] == "float32"
        assert not any(o["usable"] for o in options["attention"].values())
        assert all("no NVIDIA GPU" in o["why_not"] for o in options["attention"].values())
    text = backend("doctor").stdout
    assert "attention   usable here besides the default" in text and "dtype       auto = " in text


def test_bench_times_each_option_or_says_why_not():
    run = backend(
        "bench", "--size", "tiny", "--steps", "1", "--no-decode", "--json", "--device", "cpu", "--layers", "2",
        "--attention", "sdpa,fa3", "--quantize", "int8", "--precision", timeout=300,
    )  # fmt: skip
    assert run.code == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["layers"] == 2
    assert result["attention"]["sdpa"]["max_relative_difference"] == 0.0
    assert result["attention"]["sdpa"]["plain_s"] > 0
    if not torch.cuda.is_available():
        assert "Hopper" in result["attention"]["fa3"]["fallback"]
    assert set(result["quantize"]) == {"int8"}
    checked = result["precision"]
    assert len(checked["float32_largest_value_per_block"]) == 2
    for name in ("float16", "bfloat16"):
        assert checked[name]["finite"] and 0 < checked[name]["max_relative_difference"] < 0.1
