"""`python -m backend generate` with the preview engine: a take a user can play and reproduce."""

import json
import os
import signal
import subprocess
import sys
import time

import imageio_ffmpeg
from cli import ROOT, backend, write_job
from shots import make_job


def probe(path):
    """What ffprobe-like facts a player relies on, from the ffmpeg that imageio-ffmpeg ships."""
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = reader.__next__()
    frames = sum(1 for _ in reader)
    return meta, frames


def test_generate_writes_a_playable_take_with_a_sidecar(tmp_path):
    job = write_job(make_job([((-2, 0), (2, 0)), ((2, 3), (-2, 3))]), tmp_path / "job.json")
    run = backend("generate", job, "--out", tmp_path / "takes")
    assert run.code == 0, run.stderr
    assert run.stray_lines == 0
    kinds = run.kinds()
    assert kinds[0] == "hello" and kinds[-1] == "result"
    assert "progress" in kinds and "stage" in kinds
    result = run.last("result")
    assert result["name"] == "Scene_take_001"
    assert (result["frames"], result["fps"], result["width"], result["height"]) == (49, 8, 720, 480)
    meta, frames = probe(result["video"])
    assert frames == 49
    assert meta["size"] == (720, 480) and meta["fps"] == 8.0
    assert "h264" in meta["codec"] and "yuv420p" in meta["pix_fmt"]

    side = json.loads((tmp_path / "takes" / "Scene_take_001.json").read_text())
    assert side["job"] == json.loads(job.read_text())
    assert side["engine"]["name"] == "preview"
    assert {"backend", "python", "numpy"} <= set(side["versions"])
    assert side["timings"]["render_s"] > 0 and side["timings"]["total_s"] >= side["timings"]["render_s"]
    assert sorted(p.name for p in (tmp_path / "takes").iterdir()) == ["Scene_take_001.json", "Scene_take_001.mp4"]


def test_a_second_generate_makes_a_new_take_and_keeps_the_first(tmp_path):
    job = write_job(make_job(), tmp_path / "job.json")
    first = backend("generate", job, "--out", tmp_path).last("result")
    before = open(first["video"], "rb").read()
    second = backend("generate", job, "--out", tmp_path).last("result")
    assert second["name"] == "Scene_take_002"
    assert open(first["video"], "rb").read() == before


def test_png_sequence_is_lossless_and_matches_the_video_frames(tmp_path):
    import numpy as np
    from PIL import Image

    job = write_job(make_job(), tmp_path / "job.json")
    result = backend("generate", job, "--out", tmp_path, "--png", "--name", "hero").last("result")
    pngs = sorted((tmp_path / "hero_png").glob("*.png"))
    assert len(pngs) == 49
    first = np.asarray(Image.open(pngs[0]))
    assert first.shape == (480, 720, 3)
    reader = imageio_ffmpeg.read_frames(result["video"])
    reader.__next__()
    video0 = np.frombuffer(next(reader), np.uint8).reshape(480, 720, 3)
    assert np.abs(video0.astype(int) - first.astype(int)).mean() < 4  # the same picture, H.264 aside


def test_warnings_from_the_pose_checks_reach_the_events(tmp_path):
    job = write_job(make_job([((0, 0), (0, 6))]), tmp_path / "job.json")
    run = backend("generate", job, "--out", tmp_path)
    assert run.code == 0
    assert [e["code"] for e in run.events if e["event"] == "warning"] == ["too_far"]
    side = json.loads((tmp_path / "Scene_take_001.json").read_text())
    assert side["warnings"][0]["code"] == "too_far"


def test_interrupt_cancels_at_a_frame_boundary_and_leaves_nothing(tmp_path):
    job = write_job(make_job(), tmp_path / "job.json")
    out = tmp_path / "takes"
    proc = subprocess.Popen(
        [sys.executable, "-m", "backend", "generate", str(job), "--out", str(out)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = []
    for line in proc.stdout:
        seen.append(json.loads(line))
        if seen[-1]["event"] == "progress":
            proc.send_signal(signal.SIGINT)
            break
    rest = [json.loads(line) for line in proc.stdout]
    proc.wait(timeout=60)
    assert proc.returncode == 3
    assert rest[-1]["event"] == "cancelled"
    assert not out.exists() or list(out.iterdir()) == []


def test_the_preview_engine_runs_without_torch(tmp_path):
    # The preview engine is what users without a GPU get: it must not need the model's packages.
    job = write_job(make_job(), tmp_path / "job.json")
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "torch.py").write_text("raise ImportError('torch is not installed here')\n")
    env = {"PYTHONPATH": os.pathsep.join([str(blocker), str(ROOT)])}
    t0 = time.monotonic()
    run = backend("generate", job, "--out", tmp_path / "o", env=env)
    assert run.code == 0, run.stderr
    assert time.monotonic() - t0 < 120


def test_run_job_takes_an_already_validated_job_as_it_is_and_makes_the_same_take(tmp_path, monkeypatch):
    """What a server replica does: the gateway validated the job before queueing it, so run_job
    neither reads a file nor validates again, and the take is the same. A scratch take
    (durable=False) is not flushed to the disk; every other take still is (whole or absent)."""
    import argparse
    import io

    from backend import generate
    from backend import job as jobfile
    from backend.engines import EngineCache
    from backend.events import EventStream
    from backend.progress import Report
    from backend.server.settings import MODEL_ARG_DEFAULTS

    job = make_job()
    path = write_job(job, tmp_path / "job.json")
    report = Report(EventStream(io.StringIO()))
    engines = EngineCache(argparse.Namespace(**MODEL_ARG_DEFAULTS), report)
    validated, synced = [], []
    real_validate, real_fsync = jobfile.validate, os.fsync
    monkeypatch.setattr(jobfile, "validate", lambda doc: validated.append(doc) or real_validate(doc))
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    try:
        from_file = generate.run_job(path, tmp_path / "from_file", engines.get, report)
        assert len(validated) == 1 and len(synced) >= 3  # video, sidecar, folder: before the names appear
        validated.clear(), synced.clear()
        given = generate.run_job(
            None, tmp_path / "given", engines.get, report, validated_job=job, durable=False, name="take"
        )
    finally:
        engines.close()
    assert validated == [] and synced == []
    with open(from_file["video"], "rb") as a, open(given["video"], "rb") as b:
        assert a.read() == b.read()
    sidecar = json.loads(open(given["sidecar"]).read())
    assert sidecar["job"] == job and sidecar["job_file"] is None and sidecar["name"] == "take"
    assert sorted(os.listdir(tmp_path / "given")) == ["take.json", "take.mp4"]


def test_the_sidecar_records_the_quality_the_preview_was_asked_for(tmp_path):
    """The preview draws every quality alike, but its take says which one the job named."""
    job = make_job()
    job["sampling"].update(quality="draft")
    for field in ("steps", "annealed_steps"):
        del job["sampling"][field]
    path = write_job(job, tmp_path / "job.json")
    run = backend("generate", path, "--out", tmp_path / "takes")
    assert run.code == 0, run.stderr
    side = json.loads(open(run.last("result")["sidecar"]).read())
    assert side["speed"] == {"quality": "draft"}
    assert side["job"] == json.loads(path.read_text())  # the job as given, not rewritten
