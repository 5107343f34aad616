"""Finding, checking and loading the release's weights.

Three things are needed (model reference, section 6):
  base      the stock diffusers CogVideoX-5B folder (model_index.json, tokenizer/, text_encoder/,
            vae/, scheduler/; its transformer/ is not used: the injector folder replaces it)
  injector  a full transformer folder (config.json + safetensors, sharded or not) holding the
            base weights plus the injector keys
  lora      pytorch_lora_weights.safetensors (diffusers format), or the folder holding it
Each can be given explicitly; otherwise they are found inside a weights folder (`--weights`,
$TRAJMASTER_WEIGHTS, or weights/ in the extension folder) holding snapshots of
KwaiVGI/3DTrajMaster and THUDM/CogVideoX-5b as `python -m backend download` lays them out.

Checks here read only file names, JSON and safetensors headers, so a wrong folder is reported
in one sentence before anything large is loaded. Weights are read with safetensors only.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError

BASE_PARTS = ("model_index.json", "tokenizer", "text_encoder", "vae", "scheduler")
LORA_FILE = "pytorch_lora_weights.safetensors"
INJECTOR_NAMES = ("attn_injector.to_q.weight", "pose_fuse_layer.weight", "attn_null_feature")
LORA_TARGETS = ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0")
ADAPTER = "trajmaster"
SEARCH_DEPTH = 3  # how deep inside a weights folder the snapshots' folders are looked for
DOWNLOAD_HINT = (
    "download them with `python -m backend download`, or give the folders with --base, --injector and --lora"
)


def default_weights_dir() -> Path:
    env = os.environ.get("TRAJMASTER_WEIGHTS")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2] / "weights"


@dataclass(frozen=True)
class WeightPaths:
    base: Path
    injector: Path
    lora: Path

    def as_dict(self) -> dict[str, str]:
        return {"base": str(self.base), "injector": str(self.injector), "lora": str(self.lora)}


def _bad(message: str, hint: str | None = None) -> UserError:
    return UserError("bad_weights", message, hint)


# ---------------------------------------------------------------- finding


def _folders(root: Path, depth: int = SEARCH_DEPTH) -> list[Path]:
    found, level = [], [root]
    for _ in range(depth + 1):
        found.extend(level)
        level = sorted(c for p in level for c in _children(p) if not c.name.startswith("."))
    return found


def _children(path: Path) -> list[Path]:
    try:
        return [c for c in path.iterdir() if c.is_dir()]
    except OSError:
        return []


def find_base(root: Path) -> Path | None:
    for folder in _folders(root):
        if (folder / "model_index.json").is_file() and "cogvideox" in _pipeline_class(folder).lower():
            return folder
    return None


def find_injector(root: Path) -> Path | None:
    candidates = [f for f in _folders(root) if (f / "config.json").is_file() and _safetensors_files(f)]
    named = [f for f in candidates if "injector" in f.name.lower()]
    for folder in named + candidates:
        if not missing_injector_keys(folder):
            return folder
    return named[0] if named else None


def find_lora(root: Path) -> Path | None:
    for folder in _folders(root):
        if (folder / LORA_FILE).is_file():
            return folder / LORA_FILE
    return None


def resolve(
    base: str | os.PathLike[str] | None = None,
    injector: str | os.PathLike[str] | None = None,
    lora: str | os.PathLike[str] | None = None,
    weights: str | os.PathLike[str] | None = None,
) -> WeightPaths:
    """Explicit paths win; the rest are found in the weights folder. Raises UserError(bad_weights)."""
    root = Path(weights).expanduser() if weights else default_weights_dir()
    searched = root.is_dir()
    found = {
        "base": Path(base).expanduser() if base else (find_base(root) if searched else None),
        "injector": Path(injector).expanduser() if injector else (find_injector(root) if searched else None),
        "lora": Path(lora).expanduser() if lora else (find_lora(root) if searched else None),
    }
    missing = [name for name, path in found.items() if path is None]
    if missing:
        where = f"in {root}" if searched else f"({root} does not exist)"
        raise _bad(f"The model weights were not found {where}: no {_describe(missing)}.", DOWNLOAD_HINT)
    paths = WeightPaths(found["base"], found["injector"], _lora_file(found["lora"]))
    check(paths)
    return paths


def _describe(missing: list[str]) -> str:
    words = {
        "base": "CogVideoX-5B folder (model_index.json)",
        "injector": "3DTrajMaster injector folder",
        "lora": f"3DTrajMaster LoRA ({LORA_FILE})",
    }
    return ", no ".join(words[m] for m in missing)


def _lora_file(path: Path) -> Path:
    return path / LORA_FILE if path.is_dir() else path


# ---------------------------------------------------------------- checking


def check(paths: WeightPaths) -> None:
    check_base(paths.base)
    check_injector(paths.injector)
    check_lora(paths.lora)


def check_base(folder: Path) -> None:
    if not folder.is_dir():
        raise _bad(f"The CogVideoX-5B folder {folder} does not exist.", DOWNLOAD_HINT)
    missing = [part for part in BASE_PARTS if not (folder / part).exists()]
    if missing:
        raise _bad(
            f"{folder} is not a diffusers CogVideoX-5B folder: it has no {', '.join(missing)}.",
            "Use the folder of THUDM/CogVideoX-5b (it holds model_index.json, tokenizer/, text_encoder/, vae/ "
            "and scheduler/).",
        )
    for part in ("text_encoder", "vae"):
        if not _safetensors_files(folder / part):
            raise _bad(f"{folder / part} holds no .safetensors weights.", DOWNLOAD_HINT)


def check_injector(folder: Path) -> None:
    if not folder.is_dir():
        raise _bad(f"The injector folder {folder} does not exist.", DOWNLOAD_HINT)
    if not (folder / "config.json").is_file():
        raise _bad(
            f"The injector folder {folder} has no config.json.", "Use the injector/ folder of KwaiVGI/3DTrajMaster."
        )
    if not _safetensors_files(folder):
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
        extra = f" (only {', '.join(pickles)}, which is not loaded for safety)" if pickles else ""
        raise _bad(f"The injector folder {folder} holds no .safetensors weights{extra}.", DOWNLOAD_HINT)
    absent = _missing_shards(folder)
    if absent:
        raise _bad(f"The injector folder {folder} is incomplete: {', '.join(absent)} missing.", DOWNLOAD_HINT)
    missing = missing_injector_keys(folder)
    if missing:
        raise _bad(
            f"{folder} has no 3DTrajMaster injector weights (no {', '.join(missing[:3])}"
            f"{' ...' if len(missing) > 3 else ''}); it looks like a stock transformer folder.",
            "Point --injector at the injector/ folder of KwaiVGI/3DTrajMaster.",
        )


def check_lora(path: Path) -> None:
    if not path.is_file():
        raise _bad(f"The LoRA file {path} does not exist.", DOWNLOAD_HINT)
    keys = _safetensors_keys(path)
    if not any(target in key and "lora_A" in key for key in keys for target in LORA_TARGETS):
        raise _bad(
            f"{path} is not the 3DTrajMaster LoRA: it has no attn1 LoRA weights (lora_A/lora_B).",
            f"Use lora/{LORA_FILE} of KwaiVGI/3DTrajMaster.",
        )


def read_config(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _bad(f"{folder / 'config.json'} cannot be read ({exc}).") from None


def missing_injector_keys(folder: Path) -> list[str]:
    """Injector parameter names the folder's weights lack (empty when it is a real injector folder)."""
    layers = int(read_config(folder).get("num_layers", 0))
    keys = set(_weight_keys(folder))
    wanted = [f"transformer_blocks.{i}.{name}" for i in range(0, layers, 2) for name in INJECTOR_NAMES]
    return [key for key in wanted if key not in keys] if layers else list(INJECTOR_NAMES)


def _pipeline_class(folder: Path) -> str:
    try:
        return str(json.loads((folder / "model_index.json").read_text(encoding="utf-8")).get("_class_name", ""))
    except (OSError, ValueError):
        return ""


def _safetensors_files(folder: Path) -> list[Path]:
    try:
        return sorted(folder.glob("*.safetensors"))
    except OSError:
        return []


def _index(folder: Path) -> dict[str, str] | None:
    indexes = sorted(folder.glob("*.safetensors.index.json"))
    if not indexes:
        return None
    try:
        return json.loads(indexes[0].read_text(encoding="utf-8"))["weight_map"]
    except (OSError, ValueError, KeyError) as exc:
        raise _bad(f"{indexes[0]} cannot be read ({exc}).") from None


def _missing_shards(folder: Path) -> list[str]:
    index = _index(folder)
    return sorted({f for f in index.values() if not (folder / f).is_file()}) if index else []


def _weight_keys(folder: Path) -> list[str]:
    index = _index(folder)
    if index is not None:
        return list(index)
    return [key for path in _safetensors_files(folder) for key in _safetensors_keys(path)]


def _safetensors_keys(path: Path) -> list[str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return list(f.keys())
    except Exception as exc:  # a truncated or foreign file: safetensors raises its own error types
        raise _bad(f"{path} is not a readable safetensors file ({exc}).", DOWNLOAD_HINT) from None


# ---------------------------------------------------------------- loading


def load_pipeline(paths: WeightPaths, dtype: Any) -> Any:
    """The stock CogVideoXPipeline with the injector transformer, the LoRA as an adapter named
    'trajmaster' (not fused: later steps disable it) and the release's scheduler, on the CPU."""
    from diffusers import CogVideoXDPMScheduler, CogVideoXPipeline

    from .transformer import TrajMasterTransformer3DModel

    # diffusers >= 0.42 prefers `dtype=`; `torch_dtype=` works on every version this supports.
    warnings.filterwarnings("ignore", message=".*torch_dtype.*is deprecated", category=FutureWarning)
    try:
        transformer = TrajMasterTransformer3DModel.from_pretrained(str(paths.injector), torch_dtype=dtype)
    except (OSError, ValueError, RuntimeError) as exc:
        raise _bad(f"The injector weights in {paths.injector} could not be loaded ({_first_line(exc)}).") from None
    try:
        pipe = CogVideoXPipeline.from_pretrained(str(paths.base), transformer=transformer, torch_dtype=dtype)
    except (OSError, ValueError, RuntimeError) as exc:
        raise _bad(f"The CogVideoX-5B folder {paths.base} could not be loaded ({_first_line(exc)}).") from None
    try:
        pipe.load_lora_weights(str(paths.lora.parent), weight_name=paths.lora.name, adapter_name=ADAPTER)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise _bad(f"The LoRA {paths.lora} could not be loaded ({_first_line(exc)}).") from None
    # The release samples with the DPM solver on trailing timesteps (model reference, section 1).
    pipe.scheduler = CogVideoXDPMScheduler.from_config(pipe.scheduler.config, timestep_spacing="trailing")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
