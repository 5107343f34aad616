"""`python -m backend download`: fetch the weights from the Hugging Face hub with huggingface_hub.

Into the weights folder (or --dest):
  3DTrajMaster/   KwaiVGI/3DTrajMaster: the injector and LoRA folders (and, if the snapshot
                  carries one, a CogVideoX-5B folder)
  CogVideoX-5b/   THUDM/CogVideoX-5b, without its transformer/ (the injector folder holds a full
                  transformer), skipped when the first snapshot already has a CogVideoX-5B folder
  Qwen2.5-1.5B-Instruct/   optional (--prompt-model or --only prompt): the prompt help model,
                  Qwen/Qwen2.5-1.5B-Instruct, Apache-2.0 (backend/prompt_help/model.py)
Downloads resume where they stopped (huggingface_hub keeps partial files); HF_TOKEN or a saved
`hf auth login` is used for gated or private access; --offline only checks what is there.
Pickle files are never fetched: this backend loads safetensors only.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..progress import Report
from . import weights

TRAJMASTER = ("KwaiVGI/3DTrajMaster", "3DTrajMaster")
BASE = ("THUDM/CogVideoX-5b", "CogVideoX-5b")
IGNORE = ["*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.mp4", "*.gif", "*.png", "*.jpg"]
BASE_IGNORE = [*IGNORE, "transformer/*"]


def download(args: argparse.Namespace, report: Report) -> dict[str, Any]:
    dest = Path(args.dest).expanduser() if args.dest else weights.default_weights_dir()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError("bad_output", f"Cannot create the weights folder {dest} ({exc.strerror}).") from None
    fetched: dict[str, str] = {}
    video = args.only != "prompt"
    prompt = args.only == "prompt" or getattr(args, "prompt_model", False)
    if args.only in ("all", "trajmaster"):
        fetched[TRAJMASTER[0]] = _fetch(TRAJMASTER, dest, IGNORE, args, report)
    if args.only in ("all", "base"):
        bundled = weights.find_base(dest / TRAJMASTER[1]) if args.only == "all" else None
        if bundled:
            report.log(f"{TRAJMASTER[0]} already holds a CogVideoX-5B folder ({bundled}); not fetching {BASE[0]}.")
        else:
            fetched[BASE[0]] = _fetch(BASE, dest, BASE_IGNORE, args, report)
    result: dict[str, Any] = {"dest": str(dest), "repos": fetched, "licenses": {}}
    ready = True
    if prompt:
        from ..prompt_help import model as prompt_model

        report.log(
            f"{prompt_model.REPO} is licensed {prompt_model.LICENSE} (see its model card); it is optional: prompt "
            "help works without it, with its offline fallback."
        )
        fetched[prompt_model.REPO] = _fetch((prompt_model.REPO, prompt_model.FOLDER), dest, IGNORE, args, report)
        result["licenses"][prompt_model.REPO] = prompt_model.LICENSE
        result["prompt_model"] = prompt_model.describe(dest)
        ready = result["prompt_model"]["ok"]
        if not ready:
            result["problem"] = result["prompt_model"]["problem"]
    if video:
        try:
            result["weights"] = weights.resolve(weights=dest).as_dict()
        except UserError as exc:
            ready = False
            result["problem"] = exc.message
    result["ready"] = ready  # everything this command was asked for is there and usable
    return result


def _fetch(repo: tuple[str, str], dest: Path, ignore: list[str], args: argparse.Namespace, report: Report) -> str:
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import (
            GatedRepoError,
            HfHubHTTPError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
        )
    except ImportError:
        raise UserError(
            "missing_dependency",
            "Downloading the weights needs the package 'huggingface_hub', which this Python does not have.",
            "Set up the backend with the full model (pip install trajmaster-previz[full]), or pip install "
            "huggingface_hub.",
        ) from None

    repo_id, folder = repo
    report.stage("downloading", f"{'Checking' if args.offline else 'Downloading'} {repo_id} into {dest / folder}")
    try:
        return snapshot_download(
            repo_id=repo_id,
            local_dir=dest / folder,
            token=args.token or None,
            local_files_only=args.offline,
            ignore_patterns=ignore,
            tqdm_class=_progress_class(report, repo_id),
        )
    except GatedRepoError:
        raise UserError(
            "download_failed",
            f"{repo_id} needs you to accept its terms on huggingface.co first.",
            "Accept them on the model's page, then set HF_TOKEN (or run `hf auth login`) and try again.",
        ) from None
    except RepositoryNotFoundError:
        raise UserError(
            "download_failed", f"{repo_id} was not found on the hub (or needs a token).", "Set HF_TOKEN and try again."
        ) from None
    except LocalEntryNotFoundError:
        if args.offline:
            raise UserError(
                "download_failed",
                f"{repo_id} is not (completely) in {dest / folder}, and --offline forbids fetching it.",
                "Run the download again without --offline.",
            ) from None
        raise UserError(
            "download_failed",
            f"{repo_id} could not be reached (no network, or the hub is down); what was fetched is kept.",
            "Run the same command again to resume.",
        ) from None
    except (HfHubHTTPError, OSError) as exc:
        raise UserError(
            "download_failed",
            f"Downloading {repo_id} failed ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
            "what was fetched is kept.",
            "Run the same command again to resume.",
        ) from None


def _progress_class(report: Report, repo_id: str) -> Any:
    """A tqdm class for huggingface_hub that turns its progress into progress events (at most one a
    second); huggingface_hub's own bars then stay off the terminal."""
    from tqdm.auto import tqdm

    class Progress(tqdm):
        def __init__(self, *args: Any, **kwargs: Any):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)
            self._last = 0.0

        def update(self, n: float | None = 1) -> bool | None:
            self.n += n or 0
            now = time.monotonic()
            if self.total and (now - self._last >= 1.0 or self.n >= self.total):
                self._last = now
                report.progress(int(self.n), int(self.total), "downloading")
            return None

    Progress.__name__ = f"Progress[{repo_id}]"
    return Progress
