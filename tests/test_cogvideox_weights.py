"""Finding and loading the release's folders, and one clear sentence for every wrong one."""

import json
import shutil

import pytest
import tiny_models
import torch
from safetensors.torch import save_file

from backend.cogvideox import weights
from backend.cogvideox.transformer import TrajMasterTransformer3DModel
from backend.errors import UserError


def copy_of(tiny, tmp_path):
    root = tmp_path / "weights"
    shutil.copytree(tiny["weights"], root)
    return {k: root / v.relative_to(tiny["weights"]) for k, v in tiny.items()}


def bad(**kwargs) -> UserError:
    with pytest.raises(UserError) as caught:
        weights.resolve(**kwargs)
    error = caught.value
    assert error.code == "bad_weights"
    assert "\n" not in error.message and "Traceback" not in error.message
    return error


def test_the_weights_folder_is_searched_for_all_three_parts(tiny):
    found = weights.resolve(weights=tiny["weights"])
    assert (found.base, found.injector, found.lora) == (tiny["base"], tiny["injector"], tiny["lora"])


def test_explicit_paths_win_and_a_lora_folder_means_its_file(tiny, tmp_path):
    found = weights.resolve(base=tiny["base"], injector=tiny["injector"], lora=tiny["lora"].parent, weights=tmp_path)
    assert found.lora == tiny["lora"]


def test_a_sharded_injector_with_unknown_config_keys_loads_the_same_weights(tiny, tmp_path):
    sharded = tiny_models.build(tmp_path, shard=True, extra_config={"block_interval": 2, "release_note": "x"})
    assert len(list(sharded["injector"].glob("*.safetensors"))) > 1
    assert list(sharded["injector"].glob("*.safetensors.index.json"))
    found = weights.resolve(weights=tmp_path)
    one = TrajMasterTransformer3DModel.from_pretrained(str(tiny["injector"])).state_dict()
    many = TrajMasterTransformer3DModel.from_pretrained(str(found.injector)).state_dict()
    assert one.keys() == many.keys() and all(torch.equal(one[k], many[k]) for k in one)
    pipe = weights.load_pipeline(found, torch.float32)
    assert pipe.transformer.injector_blocks == [0, 2]
    assert "trajmaster" in pipe.transformer.peft_config


def test_nothing_there(tmp_path):
    error = bad(weights=tmp_path / "nowhere")
    assert "does not exist" in error.message and "python -m backend download" in error.hint


def test_an_empty_weights_folder_names_all_three_missing_parts(tmp_path):
    error = bad(weights=tmp_path)
    assert "CogVideoX-5B folder" in error.message and "injector" in error.message and "LoRA" in error.message


def test_a_stock_transformer_folder_is_not_an_injector(tiny):
    error = bad(base=tiny["base"], injector=tiny["base"] / "transformer", lora=tiny["lora"])
    assert "no 3DTrajMaster injector weights" in error.message
    assert "transformer_blocks.0.attn_injector.to_q.weight" in error.message
    assert "injector/ folder of KwaiVGI/3DTrajMaster" in error.hint


def test_a_base_folder_without_its_text_encoder(tiny, tmp_path):
    paths = copy_of(tiny, tmp_path)
    shutil.rmtree(paths["base"] / "text_encoder")
    error = bad(base=paths["base"], injector=paths["injector"], lora=paths["lora"])
    assert "has no text_encoder" in error.message


def test_a_lora_file_that_is_not_the_lora(tiny, tmp_path):
    other = tmp_path / "pytorch_lora_weights.safetensors"
    save_file({"something.else": torch.zeros(2)}, str(other))
    error = bad(base=tiny["base"], injector=tiny["injector"], lora=other)
    assert "is not the 3DTrajMaster LoRA" in error.message


def test_a_truncated_lora_file(tiny, tmp_path):
    broken = tmp_path / "pytorch_lora_weights.safetensors"
    broken.write_bytes(tiny["lora"].read_bytes()[:100])
    error = bad(base=tiny["base"], injector=tiny["injector"], lora=broken)
    assert "not a readable safetensors file" in error.message


def test_pickle_only_injector_folders_are_refused(tiny, tmp_path):
    paths = copy_of(tiny, tmp_path)
    for f in paths["injector"].glob("*.safetensors"):
        f.rename(f.with_suffix(".bin"))
    error = bad(base=paths["base"], injector=paths["injector"], lora=paths["lora"])
    assert "no .safetensors weights" in error.message and "not loaded for safety" in error.message


def test_a_sharded_injector_with_a_missing_shard(tmp_path):
    paths = tiny_models.build(tmp_path, shard=True)
    index = json.loads(next(paths["injector"].glob("*.index.json")).read_text())
    lost = sorted(set(index["weight_map"].values()))[-1]
    (paths["injector"] / lost).unlink()
    error = bad(weights=tmp_path, injector=paths["injector"])
    assert "incomplete" in error.message and lost in error.message
