"""A finished server job -> a local take, by the same code that publishes a local take.

The files are downloaded into the take folder under temporary names (each checked against the
size and SHA-256 the server announced), then `backend.takes.TakeCommit` gives them their final
names exactly as `python -m backend generate` does: never over an existing take, the next free
`{shot}_take_NNN` when no name is given, whole or absent whatever happens meanwhile. The
sidecar is the server's, with the local names, the local job file and where it came from.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from .transport import ServerError

_FRAME = re.compile(r"frame_[0-9]{4,6}\.png")
_BLOCK = 1 << 20
# The take's files, in the order they are asked for, and their temporary names' suffixes.
_SUFFIXES = {"video": ".mp4", "sidecar": ".json", "png": ".zip"}


def fetch_take(
    client: Any,
    info: dict[str, Any],
    folder: str | os.PathLike[str],
    name: str | None,
    *,
    job_file: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    from ..errors import UserError
    from ..takes import TakeCommit, prepare_folder, remove_created, sweep_leftovers

    files, outcome, job_id = info.get("files") or {}, info.get("outcome") or {}, info["id"]
    if "video" not in files or "sidecar" not in files:
        raise ServerError("not_a_server", f"The server listed no video for job {job_id}; fetch it again later.")
    try:
        target, created = prepare_folder(folder)
    except UserError as exc:
        raise ServerError(exc.code, exc.message, exc.hint) from None
    sweep_leftovers(target)  # what a killed fetch or run left here, as generate does
    try:
        with TakeCommit(target, info.get("shot") or "shot", name) as take:
            staged = {role: take.temp_file(suffix) for role, suffix in _SUFFIXES.items() if role in files}
            _download_all(client, job_id, files, staged)
            video = staged["video"]
            server_sidecar = json.loads(staged["sidecar"].read_text(encoding="utf-8"))
            png_dir = None
            if "png" in staged:
                png_dir = take.temp_dir()
                _unpack_frames(staged["png"], png_dir)

            def sidecar_text(paths: Any) -> str:
                doc = dict(server_sidecar)
                doc.update(
                    name=paths.name,
                    video=paths.video.name,
                    png_dir=paths.png_dir.name if png_dir is not None else None,
                    job_file=str(Path(job_file).absolute()) if job_file else None,
                    command=None,
                    server={
                        "url": client.url,
                        "job": job_id,
                        "attempts": info.get("attempts"),
                        "replica": {k: (info.get("replica") or {}).get(k) for k in ("replica", "node", "device")},
                    },
                )
                return json.dumps(doc, indent=1) + "\n"

            paths = take.publish(video, sidecar_text, png_dir)
    except UserError as exc:
        remove_created(created)
        raise ServerError(exc.code, exc.message, exc.hint) from None
    except BaseException:
        remove_created(created)
        raise
    return {
        "name": paths.name,
        "video": str(paths.video),
        "sidecar": str(paths.sidecar),
        "png_dir": str(paths.png_dir) if png_dir is not None else None,
        **{k: outcome.get(k) for k in ("frames", "fps", "width", "height", "seconds")},
    }


def _download_all(client: Any, job_id: str, files: dict[str, Any], staged: dict[str, Path]) -> None:
    """Download the take's files at the same time (each request's round trip through the server
    is waited for once, not once per file); the first failure stops the others and is raised."""
    stop = threading.Event()
    roles = list(staged)
    with ThreadPoolExecutor(max_workers=max(len(roles) - 1, 1), thread_name_prefix="trajmaster-fetch") as pool:
        others = [pool.submit(_download, client, job_id, r, files[r], staged[r], stop) for r in roles[1:]]
        try:
            _download(client, job_id, roles[0], files[roles[0]], staged[roles[0]], stop)
        except BaseException:
            stop.set()
            raise
        finally:
            wait(others)  # none may still write into the take's temporary files after this
    for future in others:
        future.result()


def _download(
    client: Any, job_id: str, role: str, expected: dict[str, Any], path: Path, stop: threading.Event | None = None
) -> None:
    digest, size = hashlib.sha256(), 0
    with client.http.open("GET", f"/jobs/{job_id}/files/{role}") as response, open(path, "wb") as out:
        while True:
            if stop is not None and stop.is_set():
                raise ServerError("bad_download", f"The take's {role} file was not downloaded; nothing was written.")
            try:
                block = response.read(_BLOCK)
            except OSError as exc:
                raise client.http.network_error(exc) from None
            if not block:
                break
            digest.update(block)
            size += len(block)
            out.write(block)
    if size != expected.get("bytes") or digest.hexdigest() != expected.get("sha256"):
        raise ServerError(
            "bad_download",
            f"The take's {role} file arrived incomplete or damaged ({size} of {expected.get('bytes')} bytes); "
            "nothing was written, fetch it again.",
        )


def _unpack_frames(archive: Path, folder: Path) -> None:
    """The PNG zip -> frame files; only plain frame names are accepted (nothing else is written)."""
    try:
        with zipfile.ZipFile(archive) as z:
            for member in z.infolist():
                if member.is_dir() or not _FRAME.fullmatch(member.filename):
                    raise ServerError(
                        "bad_download", "The take's PNG archive holds unexpected files; nothing was written."
                    )
                with z.open(member) as src, open(folder / member.filename, "xb") as dst:
                    shutil.copyfileobj(src, dst, _BLOCK)
    except zipfile.BadZipFile:
        raise ServerError(
            "bad_download", "The take's PNG archive is damaged; nothing was written, fetch it again."
        ) from None
