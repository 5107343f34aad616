"""The prompt model: a small instruction-tuned language model through transformers.

Qwen/Qwen2.5-1.5B-Instruct (1.5 B parameters, Apache-2.0; about 3.1 GB in bfloat16): it runs
beside CogVideoX-5B on the same GPU (about 3.5 GiB) or, slowly, on the CPU. `python -m backend
download --only prompt` puts it in the weights folder as Qwen2.5-1.5B-Instruct/, where it is
found; `--prompt-model DIR` names another folder in the same layout (config.json, safetensors
weights, a tokenizer with a chat template). Nothing is loaded with trust_remote_code and only
safetensors weights are read.

How the answer is held to a caption (backend/prompt_help/rules.py checks it afterwards):
  - the chat template with a system message describing the captions and three examples from
    the presets, as the model's own conversation format;
  - the answer is started with the user's words (the assistant turn is prefilled with them), so
    it cannot open with a preamble or drop them;
  - tokens that could only make something other than a plain caption (non-ASCII, newlines,
    quotes, markup, special tokens other than the end of the turn) are masked out;
  - generation stops after MAX_WORDS words (the checks then cut it back to a phrase end).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError
from .rules import Subject

REPO = "Qwen/Qwen2.5-1.5B-Instruct"
FOLDER = "Qwen2.5-1.5B-Instruct"
LICENSE = "Apache-2.0"
DOWNLOAD_GIB = 3.1
# A caption has at most 24 words; past this many the rest would be cut anyway.
MAX_WORDS = 32
MAX_NEW_TOKENS = 48  # 32 words of English are about 40 tokens
CANDIDATES = 3  # sampled together, one batch
SAMPLING = {"do_sample": True, "temperature": 0.7, "top_p": 0.9, "top_k": 50, "repetition_penalty": 1.05}
# The characters a caption is written with; every token holding any other is masked out.
CAPTION_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ,.'-")
# An answer whose tokens the model itself found this unlikely on average (natural-log probability
# per token among the caption tokens, before temperature and top-p; -4 is a choice among ~55
# equally likely tokens at every step) is noise, however word-like: random or broken weights.
# A working model writing a caption is far surer than that.
MIN_MEAN_LOGPROB = -4.0

SYSTEM = {
    "entity": (
        "You write prompts for a video model. The user gives a short description of one thing that "
        "will move through a scene: a person, an animal, a robot, a vehicle or something else. Expand it "
        "into one description of 15 to 24 words in the style of the examples. Keep all of the user's "
        "words, in order, at the start. Describe only how it looks: body, colours, materials, clothing, "
        "parts. Say nothing about where it goes, how it moves, the place or the camera. Write plain "
        "lowercase English, details separated by commas, no full stop, no quotes, nothing else."
    ),
    "location": (
        "You write prompts for a video model. The user gives a short description of a place where a "
        "scene happens. Expand it into one description of 15 to 24 words in the style of the examples. "
        "Keep all of the user's words, in order, at the start; start with the place itself, without "
        "'a' or 'the'. Describe the ground, what stands around and the light or the sky. No people, "
        "animals or vehicles, nothing about a camera. Write plain lowercase English, details separated "
        "by commas, no full stop, no quotes, nothing else."
    ),
}
# Entity examples are the built-in presets of these names (their prompts are 15-24 words).
ENTITY_EXAMPLES = ("Chestnut horse", "Businessman", "Silver humanoid robot")
# The location presets are shorter than the range, so these are written for it, in their style.
LOCATION_EXAMPLES = (
    (
        "snowy tundra",
        "snowy tundra with flat white plains, scattered frozen shrubs and distant frozen mountains under a pale "
        "winter sky",
    ),
    (
        "harbor quay",
        "harbor quay with moored fishing boats, stacked wooden crates, coiled ropes and calm gray water on an "
        "overcast morning",
    ),
    (
        "city square at night",
        "city square at night glowing with neon signs, wet reflective pavement, a stone fountain and rows of "
        "parked bicycles",
    ),
)


def default_folder(weights_dir: Path) -> Path:
    return weights_dir / FOLDER


def find(weights_dir: Path, explicit: str | Path | None = None) -> Path:
    """The prompt model's folder, checked by its file names only. Raises UserError (bad_weights)."""
    folder = Path(explicit).expanduser() if explicit else default_folder(weights_dir)
    if not folder.is_dir():
        raise UserError(
            "bad_weights",
            f"No prompt model in {folder}.",
            "It is optional: download it with `python -m backend download --only prompt` (3.1 GB, Apache-2.0).",
        )
    missing = [
        what
        for what, ok in (
            ("config.json", (folder / "config.json").is_file()),
            ("safetensors weights", any(folder.glob("*.safetensors"))),
            ("a tokenizer", (folder / "tokenizer.json").is_file() or (folder / "tokenizer_config.json").is_file()),
        )
        if not ok
    ]
    if missing:
        raise UserError(
            "bad_weights",
            f"The prompt model folder {folder} has no {', no '.join(missing)}; it is incomplete.",
            "Run `python -m backend download --only prompt` again to finish it.",
        )
    return folder


def license_of(folder: Path) -> str:
    """The licence the model card names (its front matter), else the known one for our default."""
    try:
        card = (folder / "README.md").read_text(encoding="utf-8", errors="replace")[:4000]
    except OSError:
        card = ""
    found = re.search(r"^license:\s*([\w.+-]+)", card, flags=re.MULTILINE)
    if found:
        return found.group(1)
    return LICENSE if folder.name == FOLDER else "unknown (see the model card)"


def describe(weights_dir: Path, explicit: str | Path | None = None) -> dict[str, Any]:
    """For `doctor`: where the prompt model is and under which licence, or why it is not there."""
    try:
        folder = find(weights_dir, explicit)
    except UserError as exc:
        return {"ok": False, "problem": exc.message, "hint": exc.hint, "repo": REPO, "license": LICENSE}
    return {"ok": True, "path": str(folder), "license": license_of(folder), "repo": REPO}


def examples(kind: str, presets_dir: Path) -> list[tuple[str, str]]:
    """(short description, caption) pairs shown to the model before the user's request."""
    if kind == "location":
        return list(LOCATION_EXAMPLES)
    try:
        data = json.loads((presets_dir / "entities.json").read_text(encoding="utf-8"))
        prompts = {e["name"]: e["prompt"] for e in data["entities"]}
    except (OSError, ValueError, KeyError, TypeError):
        return []
    pairs = []
    for name in ENTITY_EXAMPLES:
        prompt = prompts.get(name)
        if prompt and " with " in prompt:
            pairs.append((prompt.split(" with ")[0], prompt))
    return pairs


def messages(subj: Subject, presets_dir: Path) -> list[dict[str, str]]:
    """The conversation: what captions are, three examples, then the user's description."""
    chat = [{"role": "system", "content": SYSTEM[subj.kind]}]
    for short, caption in examples(subj.kind, presets_dir):
        chat += [{"role": "user", "content": short}, {"role": "assistant", "content": caption}]
    chat.append({"role": "user", "content": subj.text})
    return chat


def prompt_text(tokenizer: Any, subj: Subject, presets_dir: Path) -> str:
    """The whole input: the conversation in the model's own chat template, then the start of the
    answer (the user's words), which the model continues."""
    chat = tokenizer.apply_chat_template(messages(subj, presets_dir), tokenize=False, add_generation_prompt=True)
    return chat + subj.text


@dataclass(frozen=True)
class Candidate:
    text: str  # the user's words and the model's continuation
    finished: bool  # False when cut off by the word or token limit rather than ending its turn
    mean_logprob: float  # how sure the model was of its own tokens, on average

    @property
    def unsure(self) -> bool:
        return self.mean_logprob < MIN_MEAN_LOGPROB


class PromptModel:
    """A loaded instruct model that proposes captions. Load once, ask many times."""

    def __init__(self, folder: Path, device: Any, dtype: Any, presets_dir: Path):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.folder = folder
        self.name = folder.name
        self.license = license_of(folder)
        self.presets_dir = presets_dir
        self.device = device
        self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        if not getattr(self.tokenizer, "chat_template", None):
            raise UserError(
                "bad_weights",
                f"The model in {folder} has no chat template, so it is not an instruction-tuned (chat) model.",
                f"Use {REPO} (python -m backend download --only prompt).",
            )
        self.model = AutoModelForCausalLM.from_pretrained(
            folder, dtype=dtype, use_safetensors=True, local_files_only=True
        ).to(device)
        self.model.eval()
        config = self.model.generation_config
        eos = config.eos_token_id if config.eos_token_id is not None else self.tokenizer.eos_token_id
        self.eos_ids = sorted({int(i) for i in (eos if isinstance(eos, list) else [eos]) if i is not None})
        if not self.eos_ids:
            raise UserError("bad_weights", f"The model in {folder} names no end-of-turn token.")
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else self.eos_ids[0]
        self.allowed = self._allowed_tokens(torch)

    def _allowed_tokens(self, torch: Any) -> Any:
        """A mask over the vocabulary: True for tokens made only of caption characters, and the
        end-of-turn tokens. Computed once per load (one decode per vocabulary entry)."""
        size = self.model.get_output_embeddings().weight.shape[0]
        vocab = min(size, len(self.tokenizer))
        texts = self.tokenizer.batch_decode([[i] for i in range(vocab)], clean_up_tokenization_spaces=False)
        special = set(self.tokenizer.all_special_ids)
        allowed = torch.zeros(size, dtype=torch.bool)
        for i, text in enumerate(texts):
            if i not in special and text and CAPTION_CHARS.issuperset(text):
                allowed[i] = True
        allowed[self.eos_ids] = True
        return allowed.to(self.device)

    def prompt_text(self, subj: Subject) -> str:
        return prompt_text(self.tokenizer, subj, self.presets_dir)

    def candidates(self, subj: Subject, seed: int, count: int = CANDIDATES) -> list[Candidate]:
        """`count` sampled answers. The same seed gives the same answers on the same machine."""
        import torch
        from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

        allowed, tokenizer = self.allowed, self.tokenizer

        class CaptionTokens(LogitsProcessor):
            # transformers' suppress_tokens would rebuild a list of ~100k ids per call; a mask
            # made once at load is the same rule, cheaper.
            def __call__(self, input_ids: Any, scores: Any) -> Any:
                width = min(scores.shape[-1], allowed.shape[0])
                scores[:, :width] = scores[:, :width].masked_fill(~allowed[:width], float("-inf"))
                return scores

        encoded = tokenizer(self.prompt_text(subj), return_tensors="pt", add_special_tokens=False).to(self.device)
        start = encoded["input_ids"].shape[1]

        class WordLimit(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                texts = tokenizer.batch_decode(input_ids[:, start:], skip_special_tokens=True)
                return torch.tensor([len(t.split()) > MAX_WORDS for t in texts], device=input_ids.device)

        devices = [self.device] if getattr(self.device, "type", "cpu") == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.inference_mode():
            torch.manual_seed(seed)
            out = self.model.generate(
                **encoded,
                **SAMPLING,
                max_new_tokens=MAX_NEW_TOKENS,
                num_return_sequences=count,
                eos_token_id=self.eos_ids,
                pad_token_id=self.pad_id,
                logits_processor=LogitsProcessorList([CaptionTokens()]),
                stopping_criteria=StoppingCriteriaList([WordLimit()]),
                output_logits=True,
                return_dict_in_generate=True,
            )
            # The raw logits, masked as generation was, so the figure is the model's own belief,
            # not one sharpened by temperature and top-k.
            raw = torch.stack(out.logits, dim=1).float()  # (batch, steps, vocab)
            width = min(raw.shape[-1], allowed.shape[0])
            raw[..., :width] = raw[..., :width].masked_fill(~allowed[:width], float("-inf"))
            chosen = out.sequences[:, start : start + raw.shape[1]].unsqueeze(-1)
            logprobs = torch.log_softmax(raw, dim=-1).gather(-1, chosen).squeeze(-1)
        answers = []
        for row, scores in zip(out.sequences[:, start:].tolist(), logprobs.tolist(), strict=True):
            ends = [row.index(t) for t in self.eos_ids if t in row]
            length = min(ends) if ends else len(row)
            kept = [s for s in scores[: length + 1] if s > float("-inf")]
            mean = sum(kept) / len(kept) if kept else float("-inf")
            text = subj.text + tokenizer.decode(row[:length], skip_special_tokens=True)
            answers.append(Candidate(text, bool(ends), mean))
        return answers

    def close(self) -> None:
        self.model = None
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass
