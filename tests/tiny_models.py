"""Tiny random CogVideoX + 3DTrajMaster weights, saved in the release's real folder layouts.

    root/CogVideoX-5b/        the stock diffusers pipeline folder (model_index.json, tokenizer/
                              with a sentencepiece model trained here, text_encoder/ (T5), vae/,
                              scheduler/, transformer/ without the injector)
    root/3DTrajMaster/injector/   a full transformer folder with the injector keys, its config
                              carrying a key the stock class does not know (as the release's does)
    root/3DTrajMaster/lora/pytorch_lora_weights.safetensors   diffusers-format LoRA on attn1

Same classes and code paths as the real model, at toy sizes: 3 blocks (two with an injector),
2 heads of 16, a 4-level VAE (8x space, 4x time) making 49 frames of 32 x 48, text length 64.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

HEIGHT, WIDTH = 32, 48
TEXT_LEN = 64
LORA_RANK = 4
CORPUS = [
    "A brown horse with a flowing black mane and a white blaze on its face, muscular and glossy in the sun",
    "A silver humanoid robot with glowing blue eyes, polished metal plates and thin black joints on its arms",
    "A tall fire spirit made of swirling orange flames and drifting sparks with a bright yellow glowing core",
    "is moving in the sunlit desert with golden sand dunes and are moving in the snowy street",
    "a red fox a grey wolf a green parrot walking running jumping flying over the river bank at night",
]
TRANSFORMER = {
    "num_attention_heads": 2,
    "attention_head_dim": 16,
    "in_channels": 4,
    "out_channels": 4,
    "time_embed_dim": 16,
    "text_embed_dim": 32,
    "num_layers": 3,
    "sample_width": WIDTH // 8,
    "sample_height": HEIGHT // 8,
    "max_text_seq_length": TEXT_LEN,
    "use_rotary_positional_embeddings": True,
}
# The CogVideoX-5B scheduler config, as published.
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


def train_tokenizer(folder: Path) -> None:
    """A T5 tokenizer folder as the real one is: spiece.model + tokenizer_config.json."""
    import sentencepiece as spm

    folder.mkdir(parents=True, exist_ok=True)
    sentences = [" ".join(s.split()[i:] + s.split()[:i]) for s in CORPUS for i in range(len(s.split()))]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_prefix=str(folder / "spiece"),
        vocab_size=120,
        hard_vocab_limit=False,
        model_type="unigram",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        character_coverage=1.0,
        minloglevel=2,
    )
    (folder / "spiece.vocab").unlink()
    config = {"tokenizer_class": "T5Tokenizer", "model_max_length": TEXT_LEN, "extra_ids": 0}
    config.update(eos_token="</s>", pad_token="<pad>", unk_token="<unk>")
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")


def _randomize(module: torch.nn.Module, std: float) -> None:
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.normal_(1.0, std)
            else:
                p.normal_(0.0, std)


def build(
    root: Path,
    *,
    seed: int = 0,
    shard: bool = False,
    extra_config: dict | None = None,
) -> dict[str, Path]:
    """Write the three folders under `root`; returns {"weights", "base", "injector", "lora"}."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXPipeline, CogVideoXTransformer3DModel
    from safetensors.torch import save_file
    from transformers import T5Config, T5EncoderModel, T5Tokenizer

    from backend.cogvideox.transformer import TrajMasterTransformer3DModel

    torch.manual_seed(seed)
    base, snapshot = root / "CogVideoX-5b", root / "3DTrajMaster"
    tokenizer_dir = root / "_tokenizer"
    train_tokenizer(tokenizer_dir)
    tokenizer = T5Tokenizer.from_pretrained(str(tokenizer_dir))
    text_encoder = T5EncoderModel(
        T5Config(vocab_size=128, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, dropout_rate=0.0)
    ).eval()
    vae = AutoencoderKLCogVideoX(
        block_out_channels=(8, 8, 8, 8),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=4,
        # diffusers tiles a decode when the latents exceed half the sample size; at toy sizes its
        # tile arithmetic breaks, so these videos stay below one tile.
        sample_height=2 * HEIGHT,
        sample_width=2 * WIDTH,
    )
    stock = CogVideoXTransformer3DModel(**TRANSFORMER)
    pipe = CogVideoXPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        transformer=stock,
        scheduler=CogVideoXDDIMScheduler(**SCHEDULER),
    )
    pipe.save_pretrained(str(base), safe_serialization=True)
    shutil.rmtree(base / "tokenizer")
    shutil.copytree(tokenizer_dir, base / "tokenizer")
    shutil.rmtree(tokenizer_dir)

    # The injector transformer: the base weights plus the injector's, all random and large
    # enough that every part visibly changes the video.
    injector = TrajMasterTransformer3DModel(**TRANSFORMER)
    injector.load_state_dict(stock.state_dict(), strict=False)
    for block in injector.transformer_blocks:
        if block.has_injector:
            _randomize(block.attn_injector, 0.3)
            _randomize(block.pose_fuse_layer, 0.3)
            torch.nn.init.normal_(block.attn_null_feature, 0.0, 0.5)
    injector_dir = snapshot / "injector"
    injector.save_pretrained(str(injector_dir), safe_serialization=True, max_shard_size="40KB" if shard else "10GB")
    config_path = injector_dir / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config.update({"_class_name": "CogVideoXTransformer3DModel", "finetune_init": False, **(extra_config or {})})
    config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")

    width = TRANSFORMER["num_attention_heads"] * TRANSFORMER["attention_head_dim"]
    lora = {}
    for i in range(TRANSFORMER["num_layers"]):
        for target in ("to_q", "to_k", "to_v", "to_out.0"):
            key = f"transformer.transformer_blocks.{i}.attn1.{target}"
            lora[f"{key}.lora_A.weight"] = torch.randn(LORA_RANK, width) * 0.3
            lora[f"{key}.lora_B.weight"] = torch.randn(width, LORA_RANK) * 0.3
    lora_path = snapshot / "lora" / "pytorch_lora_weights.safetensors"
    lora_path.parent.mkdir(parents=True)
    save_file(lora, str(lora_path))
    return {"weights": root, "base": base, "injector": injector_dir, "lora": lora_path}


def two_entity_job(steps: int, annealed_steps: int, **sampling) -> dict:
    """A cogvideox job at the tiny model's size: two entities crossing, `steps` of which
    0..`annealed_steps` with the injector (None drops a field, e.g. for a quality preset)."""
    from shots import make_job

    settings = {"height": HEIGHT, "width": WIDTH, "steps": steps, "annealed_steps": annealed_steps, **sampling}
    settings = {k: v for k, v in settings.items() if v is not None}
    return make_job([((-2.0, 0.0), (2.0, 1.0)), ((1.0, 2.0), (-1.0, -1.0))], engine="cogvideox", sampling=settings)
