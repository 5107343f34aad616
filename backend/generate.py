"""One job, start to finish: validate, check, render, write the take, report.

Shared by `python -m backend generate` (one job per process) and the worker (many jobs, engines
kept loaded). Nothing is written under a final name until the take is complete.
"""

from __future__ import annotations

import errno
import json
import math
import os
import platform
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__, checks, poses, takes, timeplan, video
from . import job as jobfile
from .errors import UserError
from .progress import Engine, Report
from .takes import TakeCommit, TakePaths, prepare_folder


def load_job(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        return jobfile.read(path)
    except jobfile.JobError as exc:
        raise UserError("bad_job", f"Job file {Path(path).name}: {exc}", hint=_job_hint(exc)) from None


def _job_hint(exc: jobfile.JobError) -> str | None:
    if len(exc.problems) > 1:
        return "All problems: " + "; ".join(exc.problems)
    return None


def shot_findings(job: dict[str, Any]) -> list[checks.Finding]:
    """The pose checks on a job's own numbers (the add-on runs them on the scene too)."""
    camera = job.get("camera")
    context = np.asarray(camera["context"] if camera else [poses.rig_camera_context()] * timeplan.POSE_SLOTS)
    return checks.check_shot(
        [e["name"] for e in job["entities"]],
        [np.asarray(e["poses"]) for e in job["entities"]],
        context,
        job["pose_mapping"],
    )


def _versions() -> dict[str, str]:
    return {
        "backend": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
    }


def run_job(
    job_path: str | os.PathLike[str] | None,
    out_dir: str | os.PathLike[str],
    get_engine: Callable[[str], Engine],
    report: Report,
    *,
    name: str | None = None,
    png: bool = False,
    engine_name: str | None = None,
    validated_job: dict[str, Any] | None = None,
    durable: bool = True,
) -> dict[str, Any]:
    """Run one job file and publish its take. Returns the result event's fields.

    `validated_job`: the job itself, already parsed and validated by `job.parse` and
    `job.validate` (a server's gateway does that before a job reaches a replica); it is used as
    it is, and `job_path` (then only recorded in the sidecar, or None) is not read.
    `durable=False` skips flushing the take to the disk before it is published: only for a
    scratch folder whose files are sent on and published again elsewhere (a server replica's).

    Raises UserError (bad input), OutOfMemory, Cancelled, or anything else for an internal failure;
    in every case nothing is left in `out_dir` but what was there before (folders it created
    are removed again), and the take is whole or absent whatever kills the process (takes.py).
    """
    t0 = time.monotonic()
    report.check_cancel()  # cancelled while queued in the worker: do not even load the engine
    report.stage("validating", "Checking the job")
    if validated_job is not None:
        job = validated_job
    elif job_path is None:
        raise TypeError("run_job needs a job file or a validated job")
    else:
        job = load_job(job_path)
    engine_name = engine_name or job["engine"]
    findings = shot_findings(job)
    for f in findings:
        report.warning(f.code, f.message, entity=f.entity, slots=f.slots, severity=f.severity)
    folder, created = prepare_folder(out_dir)
    try:
        takes.sweep_leftovers(folder)  # what a killed run left here (never a live run's pieces)
        with TakeCommit(folder, job["shot"]["scene_name"], name, durable=durable) as take:
            t_loaded = time.monotonic()
            engine = get_engine(engine_name)
            report.check_cancel()  # loading can take minutes; a cancel during it counts
            t_render = time.monotonic()
            frames = engine.render(job, report)
            t_rendered = time.monotonic()
            report.stage("writing", "Writing the video")
            with _write_errors(folder):
                staged_video = take.temp_file(".mp4")
                video.write_mp4(frames, staged_video, fps=timeplan.VIDEO_FPS)
                staged_png = None
                if png:
                    staged_png = take.temp_dir()
                    # Frame files are named the same in every take; the folder carries the take name.
                    video.write_png_sequence(frames, staged_png, "frame")
                report.check_cancel()
                t_written = time.monotonic()
                timings = {
                    "validate_s": round(t_loaded - t0, 3),
                    "engine_ready_s": round(t_render - t_loaded, 3),
                    "render_s": round(t_rendered - t_render, 3),
                    "write_s": round(t_written - t_rendered, 3),
                }

                def sidecar(paths: TakePaths) -> str:
                    described = engine.describe()
                    doc = {
                        "format": "trajmaster-take",
                        "version": 1,
                        "name": paths.name,
                        "video": paths.video.name,
                        "png_dir": paths.png_dir.name if png else None,
                        "frames": int(frames.shape[0]),
                        "fps": timeplan.VIDEO_FPS,
                        "width": int(frames.shape[2]),
                        "height": int(frames.shape[1]),
                        "created": datetime.now(UTC).isoformat(timespec="seconds"),
                        "job_file": str(Path(job_path).absolute()) if job_path is not None else None,
                        "job": job,
                        "engine": described,
                        "speed": take_speed(described, report.metrics),
                        "versions": _versions(),
                        "timings": {**timings, "total_s": round(time.monotonic() - t0, 3)},
                        "metrics": report.metrics,
                        "warnings": [f.as_dict() for f in findings],
                        "command": sys.argv,
                    }
                    # Strict JSON: any reader can load it (no NaN or Infinity, which json.dumps writes).
                    return json.dumps(_strict(doc), indent=1, default=_jsonable, allow_nan=False) + "\n"

                paths = take.publish(staged_video, sidecar, staged_png)
    except BaseException:
        takes.remove_created(created)
        raise
    return {
        "name": paths.name,
        "video": str(paths.video),
        "sidecar": str(paths.sidecar),
        "png_dir": str(paths.png_dir) if png else None,
        "frames": int(frames.shape[0]),
        "fps": timeplan.VIDEO_FPS,
        "width": int(frames.shape[2]),
        "height": int(frames.shape[1]),
        "seconds": round(time.monotonic() - t0, 3),
    }


def take_speed(described: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
    """Every speed setting a take was made with, one key each: the job's (its quality, steps and
    step cache, from the engine's metrics) then the engine's options (describe()["speed"])."""
    return {**(metrics.get("speed") or {}), **(described.get("speed") or {})}


@contextmanager
def _write_errors(folder: Path) -> Iterator[None]:
    """A take that cannot be written for a reason the user can fix (a full disk, a file-size
    limit, a path too long) -> that reason as one sentence; anything else stays internal."""
    try:
        yield
    except video.EncodeError as exc:
        raise _encode_failure(exc, folder) from None
    except OSError as exc:
        error = takes.output_error(exc, folder)
        if error is None:
            raise
        raise error from None


def _encode_failure(exc: video.EncodeError, folder: Path) -> Exception:
    detail = exc.detail.lower()
    xfsz = getattr(signal, "SIGXFSZ", None)
    if (xfsz is not None and exc.returncode == -xfsz) or "file too large" in detail:
        return UserError("bad_output", takes.file_size_limit_sentence(folder))
    if "no space left" in detail or "quota" in detail or takes.disk_nearly_full(folder):
        return takes.output_error(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), folder) or exc
    return exc


def _strict(value: Any) -> Any:
    """NaN and infinities (an engine's metric that had no value) -> null, so the sidecar stays JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "__fspath__"):
        return os.fspath(value)
    return str(value)
