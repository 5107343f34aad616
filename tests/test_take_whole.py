"""A take is whole or absent at every instant, whatever stops the process, and a write that fails
(a file-size limit, a full disk, an output folder that cannot be used) is one sentence with
nothing left under a final name. Real processes, real signals, a real `ulimit` and a real small
file system."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from cli import ROOT, backend, write_job
from shots import make_job

from backend import video


def final_names(folder: Path) -> list[str]:
    """What a user sees in the folder: every name that is not hidden."""
    return sorted(p for p in os.listdir(folder) if not p.startswith(".")) if folder.exists() else []


def assert_whole(folder: Path, name: str, png: bool = False) -> dict:
    """The take `name` is complete: a video that decodes to 49 frames and a strict-JSON sidecar."""
    assert video.count_frames(folder / f"{name}.mp4") == 49
    side = json.loads((folder / f"{name}.json").read_text(), parse_constant=_refuse)
    assert side["name"] == name and side["frames"] == 49
    if png:
        assert len(list((folder / f"{name}_png").glob("frame_*.png"))) == 49
    return side


def _refuse(text):
    raise AssertionError(f"the sidecar holds {text}, which is not JSON")


def assert_error(run, code: str, *words: str) -> dict:
    assert run.code == 2, run.stderr
    error = run.last("error")
    assert error["code"] == code, error
    for w in words:
        assert w in error["message"], error["message"]
    assert "Traceback" not in run.stderr
    assert run.stderr.strip().count("\n") == 0, run.stderr
    return error


def start_generate(job: Path, out: Path, *extra: str, stdout=subprocess.PIPE) -> subprocess.Popen:
    """`generate` in its own process group (so the test can kill the group, as a farm would)."""
    return subprocess.Popen(
        [sys.executable, "-m", "backend", "generate", str(job), "--out", str(out), *extra],
        cwd=ROOT,
        stdout=stdout,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )


@pytest.fixture
def job(tmp_path):
    return write_job(make_job(), tmp_path / "job.json")


# --- killed while publishing -------------------------------------------------------------------


def test_killed_the_moment_the_video_appears_the_take_is_whole(tmp_path, job):
    out = tmp_path / "takes"
    for attempt in range(3):
        proc = start_generate(job, out, "--png", stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while not [p for p in final_names(out) if p.endswith(".mp4")][attempt:]:
            assert proc.poll() is None, "generate ended before its video appeared"
            assert time.monotonic() < deadline
            time.sleep(0.001)
        os.killpg(proc.pid, signal.SIGKILL)  # the whole process group, at once
        proc.wait()
        # Whoever sees the video sees a whole take: sidecar and PNG frames are already there.
        assert_whole(out, f"Scene_take_{attempt + 1:03d}", png=True)
    # The next run leaves no temporary piece behind, its own or a killed run's.
    run = backend("generate", job, "--out", out)
    assert run.code == 0, run.stderr
    assert_whole(out, "Scene_take_004")
    assert [p for p in os.listdir(out) if p.startswith(".")] == []


def test_killed_at_any_moment_of_writing_nothing_half_is_ever_visible(tmp_path, job):
    # Kills spread over the writing stage: whatever is visible afterwards is whole takes only,
    # once the next run has swept what the killed ones left.
    out = tmp_path / "takes"
    for delay in (0.0, 0.15, 0.3, 0.45, 0.6):
        proc = start_generate(job, out, "--png")
        for line in proc.stdout:
            if '"stage": "writing"' in line:
                break
        time.sleep(delay)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        for mp4 in [p for p in final_names(out) if p.endswith(".mp4")]:
            assert_whole(out, mp4[: -len(".mp4")], png=True)
    run = backend("generate", job, "--out", out)
    assert run.code == 0, run.stderr
    videos = {p[: -len(".mp4")] for p in final_names(out) if p.endswith(".mp4")}
    for name in videos:
        assert_whole(out, name, png=name != run.last("result")["name"])
    # Nothing but whole takes: no sidecar or PNG folder without its video, no hidden piece.
    for p in final_names(out):
        assert p.removesuffix(".mp4").removesuffix(".json").removesuffix("_png") in videos, p
    assert [p for p in os.listdir(out) if p.startswith(".")] == []


def test_the_next_run_sweeps_a_killed_runs_leftovers_and_nothing_else(tmp_path, job):
    out = tmp_path / "takes"
    assert backend("generate", job, "--out", out, "--png").code == 0
    # What a run killed halfway through publishing take 002 leaves: its sidecar and PNG frames
    # (the video, published last, never appeared) and its temporary files, one a hard link.
    side = json.loads((out / "Scene_take_001.json").read_text())
    side["name"] = "Scene_take_002"
    (out / "Scene_take_002.json").write_text(json.dumps(side))
    os.rename(out / "Scene_take_001_png", out / "Scene_take_002_png")
    (out / "Scene_take_001_png").mkdir()
    for p in (out / "Scene_take_002_png").iterdir():
        os.link(p, out / "Scene_take_001_png" / p.name)
    os.link(out / "Scene_take_001.mp4", out / ".trajmaster-abcd1234.mp4.part")
    (out / ".trajmaster-efgh5678.part").mkdir()
    # The user's own files and the add-on's reservation of take 003 are not leftovers.
    (out / "notes.json").write_text('{"format": "trajmaster-take", "name": "other"}')
    (out / "refs_png").mkdir()
    (out / "refs_png" / "frame_0001.png").write_bytes(b"mine")
    (out / "Scene_take_003.job.json").write_text("{}")

    run = backend("generate", job, "--out", out)
    assert run.code == 0, run.stderr
    assert run.last("result")["name"] == "Scene_take_004"
    assert final_names(out) == [
        "Scene_take_001.json",
        "Scene_take_001.mp4",
        "Scene_take_001_png",
        "Scene_take_003.job.json",
        "Scene_take_004.json",
        "Scene_take_004.mp4",
        "notes.json",
        "refs_png",
    ]
    assert [p for p in os.listdir(out) if p.startswith(".")] == []
    assert_whole(out, "Scene_take_001", png=True)


LIVE_WRITER = """
import sys, time
from pathlib import Path
from backend.takes import TakeCommit
with TakeCommit(Path(sys.argv[1]), "Scene") as take:
    take.temp_file(".mp4").write_bytes(b"being encoded")
    print("staged", flush=True)
    time.sleep(600)
"""


def test_a_live_runs_pieces_are_never_swept(tmp_path, job):
    out = tmp_path / "takes"
    out.mkdir()
    writer = subprocess.Popen(
        [sys.executable, "-c", LIVE_WRITER, str(out)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout.readline() == "staged\n"
        staged = [p for p in os.listdir(out) if p.endswith(".mp4.part")]
        assert len(staged) == 1
        assert backend("generate", job, "--out", out).code == 0
        assert (out / staged[0]).read_bytes() == b"being encoded"  # still writing: left alone
    finally:
        writer.kill()
        writer.wait()
        writer.stdout.close()
    assert backend("generate", job, "--out", out).code == 0
    assert not (out / staged[0]).exists()  # its writer is gone: swept


def test_concurrent_runs_get_unique_numbers_and_whole_takes(tmp_path, job):
    out = tmp_path / "takes"
    procs = [start_generate(job, out) for _ in range(6)]
    names = []
    for proc in procs:
        stdout, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0
        names.append(json.loads(stdout.strip().splitlines()[-1])["name"])
    assert sorted(names) == [f"Scene_take_{n:03d}" for n in range(1, 7)]
    for name in names:
        assert_whole(out, name)
    assert [p for p in os.listdir(out) if p.startswith(".")] == []


# --- writes that fail ------------------------------------------------------------------------


def test_a_file_size_limit_is_an_error_not_a_broken_take(tmp_path, job):
    out = tmp_path / "takes"
    run = backend("generate", job, "--out", out, shell="ulimit -f 100")  # 100 KiB: the video is ~200 KB
    assert_error(run, "bad_output", "file-size limit", "ulimit -f", str(out))
    assert "result" not in run.kinds()
    assert not out.exists()  # nothing under any name, not even the folder it created
    out.mkdir()
    run = backend("generate", job, "--out", out, shell="ulimit -f 100")
    assert_error(run, "bad_output", "file-size limit")
    assert os.listdir(out) == []


@pytest.fixture
def small_disk():
    """A real 160 KiB file system (tmpfs), mounted for the test: room for a sidecar, not a video."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    where = Path(tempfile.mkdtemp(prefix="trajmaster-small-disk-"))
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(where)], capture_output=True)
    if mounted.returncode != 0:
        where.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode(errors='replace').strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False)
        where.rmdir()


def test_a_full_disk_is_one_sentence_that_says_where(small_disk, job):
    out = small_disk / "takes"
    run = backend("generate", job, "--out", out, "--png")
    assert_error(run, "disk_full", "full", str(out))
    assert "result" not in run.kinds()
    assert os.listdir(small_disk) == []  # not even the folder it created


def test_an_empty_out_or_name_is_refused_and_nothing_lands_in_the_working_folder(tmp_path, job):
    here = tmp_path / "cwd"
    here.mkdir()
    assert_error(backend("generate", job, "--out", "", cwd=here), "bad_output", "output folder is empty")
    assert_error(backend("generate", job, "--out", here / "o", "--name", "", cwd=here), "bad_output", "cannot be")
    assert os.listdir(here) == []


def test_a_failed_job_removes_every_folder_it_created(tmp_path, job):
    run = backend("generate", job, "--out", tmp_path / "a" / "b" / "c", "--name", "bad/name")
    assert_error(run, "bad_output", "cannot be a file name")
    assert not (tmp_path / "a").exists()


def test_unusable_output_paths_are_bad_output(tmp_path, job):
    out = tmp_path / "takes"
    out.mkdir()
    # A path component longer than file systems allow.
    assert_error(backend("generate", job, "--out", tmp_path / ("x" * 300)), "bad_output")
    # A dangling symlink where the take goes holds the name: an explicit name is refused ...
    (out / "hero.mp4").symlink_to(tmp_path / "nowhere.mp4")
    assert_error(backend("generate", job, "--out", out, "--name", "hero"), "bad_output", "already exists")
    # ... and an automatic one moves on; so does one pushed past any length by a stranger's file.
    (out / "Scene_take_001.json").symlink_to(tmp_path / "nowhere.json")
    (out / ("Scene_take_" + "9" * 240 + ".mp4")).write_bytes(b"")
    run = backend("generate", job, "--out", out)
    assert run.code == 0, run.stderr
    assert run.last("result")["name"] == "Scene_take_002"
    # The output path is a dangling symlink.
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere")
    assert_error(backend("generate", job, "--out", tmp_path / "gone"), "bad_output", "broken link")


def test_a_folder_that_is_writable_but_not_listable_is_bad_output(job):
    shared = Path(tempfile.mkdtemp(prefix="trajmaster-unlistable-"))
    out = shared / "takes"
    try:
        shared.chmod(0o755)
        job_copy = shared / "job.json"
        job_copy.write_bytes(job.read_bytes())
        job_copy.chmod(0o644)
        out.mkdir()
        user = None
        if os.geteuid() == 0:  # root lists anything: run as nobody, who owns the folder
            user = 65534
            os.chown(out, user, user)
        out.chmod(0o300)  # write and enter, not read
        run = backend("generate", job_copy, "--out", out, user=user)
        if not run.events:
            pytest.skip(f"the backend cannot run as user {user} here: {run.stderr.strip()[-200:]}")
        if run.code == 0:
            pytest.skip("this user can list the folder anyway")
        assert_error(run, "bad_output", "Cannot list the output folder")
        out.chmod(0o700)
        assert os.listdir(out) == []
    finally:
        if out.exists():
            out.chmod(0o700)
        shutil.rmtree(shared)


def test_takes_get_the_users_umask_permissions(tmp_path, job):
    out = tmp_path / "takes"
    run = backend("generate", job, "--out", out, "--png", shell="umask 027")
    assert run.code == 0, run.stderr
    name = run.last("result")["name"]
    assert stat.S_IMODE((out / f"{name}.mp4").stat().st_mode) == 0o640
    assert stat.S_IMODE((out / f"{name}.json").stat().st_mode) == 0o640
    assert stat.S_IMODE((out / f"{name}_png").stat().st_mode) == 0o750
    assert stat.S_IMODE(next((out / f"{name}_png").iterdir()).stat().st_mode) == 0o640


# --- the job path ----------------------------------------------------------------------------


def test_a_fifo_or_a_device_as_the_job_is_refused_at_once(tmp_path):
    fifo = tmp_path / "job.fifo"
    os.mkfifo(fifo)
    for path, words in ((fifo, "not a regular file"), ("/dev/zero", "not a regular file")):
        run = backend("generate", path, "--out", tmp_path / "o", timeout=60)
        assert_error(run, "bad_job", words)
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (5 * 1024 * 1024))
    assert_error(backend("validate", big, timeout=60), "bad_job", "larger than")


# --- signals during start-up -----------------------------------------------------------------


def _catches_sigterm(pid: int) -> bool:
    with open(f"/proc/{pid}/status") as f:
        caught = next(int(line.split()[1], 16) for line in f if line.startswith("SigCgt:"))
    return bool(caught & (1 << (signal.SIGTERM - 1)))


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads signal masks from /proc")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_during_start_up_is_a_clean_cancel(tmp_path, job, sig):
    import select

    proc = subprocess.Popen(
        [sys.executable, "-m", "backend", "generate", str(job), "--out", str(tmp_path / "o")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not _catches_sigterm(proc.pid):  # the backend's own code has started
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.0005)
    # Still importing (numpy, the engines): nothing said yet.
    assert select.select([proc.stdout], [], [], 0)[0] == []
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    events = [json.loads(line) for line in stdout.splitlines()]
    assert proc.returncode == 3, stderr
    assert events[-1]["event"] == "cancelled"
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    assert not (tmp_path / "o").exists()
