"""A tiny random instruct model saved in the layout `python -m backend download --only prompt`
produces (weights/Qwen2.5-1.5B-Instruct/): a Qwen2 causal LM config and safetensors weights, a
byte-level BPE tokenizer trained here with the `tokenizers` library and saved with
save_pretrained, with a ChatML chat template as Qwen's, and a model card naming the licence.

Random weights write junk. `teach` sets the tiny model up to answer given conversations with
given text, so a test can make it answer well, too long or chattily and watch what the backend
does with each answer, all through the real transformers path.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

FOLDER = "Qwen2.5-1.5B-Instruct"
CHATML = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def _corpus() -> list[str]:
    from backend.prompt_help import model

    root = Path(__file__).resolve().parent.parent / "presets"
    lines = list(model.SYSTEM.values()) + [c for _, c in model.LOCATION_EXAMPLES]
    for name, key in (("entities.json", "entities"), ("locations.json", "locations")):
        lines += [e["prompt"] for e in json.loads((root / name).read_text(encoding="utf-8"))[key]]
    lines += ["Sure! Here is an expanded prompt for you:", "user assistant system", "0123456789 ,.'-!?:;()[]{}<>#*"]
    return lines


def build(weights: Path, seed: int = 0) -> Path:
    """weights/Qwen2.5-1.5B-Instruct/ with a random tiny model; returns that folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GenerationConfig, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    folder = weights / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=900,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_corpus(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>", chat_template=CHATML
    )
    tokenizer.save_pretrained(folder)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL}
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=False,  # so `teach` can set the output layer alone
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]], pad_token_id=ids["<|endoftext|>"]
    )
    model.save_pretrained(folder, safe_serialization=True)
    (folder / "README.md").write_text("---\nlicense: apache-2.0\n---\n# A tiny random test model\n", encoding="utf-8")
    return folder


def teach(folder: Path, lessons: list[tuple[str, str]], margin: float = 40.0) -> None:
    """Make the model in `folder` answer each (whole input text, answer) pair with that answer and
    the end of its turn, then save it in place.

    Rather than minutes of gradient descent, the output layer is solved for: the final hidden
    states at the answer's positions (teacher-forced, exactly what generation will see) are
    mapped by least squares onto logits `margin` higher for the next answer token. With at most
    hidden_size such positions this is exact, so sampling reproduces the answers.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float64)
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    states, targets = [], []
    with torch.no_grad():
        for prompt, answer in lessons:
            # Tokenised apart, as generation sees them: the input, then the answer's own tokens.
            p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            a = tokenizer(answer, add_special_tokens=False)["input_ids"] + [end]
            hidden = model.model(input_ids=torch.tensor([p + a[:-1]])).last_hidden_state[0]
            states.append(hidden[len(p) - 1 :])
            targets += a
    h = torch.cat(states)
    if h.shape[0] > h.shape[1]:
        raise ValueError(f"{h.shape[0]} answer tokens exceed the hidden size {h.shape[1]}; teach fewer")
    wanted = torch.zeros(h.shape[0], model.config.vocab_size, dtype=torch.float64)
    wanted[torch.arange(h.shape[0]), torch.tensor(targets)] = margin
    weight = torch.linalg.lstsq(h, wanted).solution.T  # (vocab, hidden)
    model.lm_head.weight.data = weight.to(torch.float32)
    model.to(torch.float32).save_pretrained(folder, safe_serialization=True)
