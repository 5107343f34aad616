"""The cogvideox engine through `python -m backend`, as the add-on and a farm run it: one-shot
generate, the worker (one load for many jobs, cancel), bad weights, doctor, bench, download."""

import json
import subprocess
import sys
import threading

import imageio_ffmpeg
import tiny_models
from cli import ROOT, backend, write_job
from shots import make_job


def job(steps=4, **sampling):
    settings = {"height": tiny_models.HEIGHT, "width": tiny_models.WIDTH, "steps": steps, "annealed_steps": 1}
    return make_job(engine="cogvideox", sampling={**settings, **sampling})


def model_flags(tiny):
    return ["--weights", str(tiny["weights"]), "--device", "cpu"]


def test_generate_writes_a_49_frame_take_with_the_engine_in_its_sidecar(tiny, tmp_path):
    path = write_job(job(), tmp_path / "shot.json")
    run = backend("generate", path, "--out", tmp_path / "takes", *model_flags(tiny), timeout=300)
    assert run.code == 0, run.stderr
    assert run.stray_lines == 0
    result = run.last("result")
    assert (result["frames"], result["height"], result["width"]) == (49, tiny_models.HEIGHT, tiny_models.WIDTH)
    frames, _seconds = imageio_ffmpeg.count_frames_and_secs(result["video"])
    assert frames == 49
    sidecar = json.loads(open(result["sidecar"], encoding="utf-8").read())
    assert sidecar["engine"]["name"] == "cogvideox"
    assert sidecar["engine"]["weights"]["injector"] == str(tiny["injector"])
    assert sidecar["metrics"]["memory_mode"] == "full" and "peak_vram_bytes" in sidecar["metrics"]
    stages = [e["stage"] for e in run.events if e["event"] == "stage"]
    assert stages.index("loading") < stages.index("encoding") < stages.index("sampling") < stages.index("decoding")
    assert [e["step"] for e in run.events if e["event"] == "progress" and e["stage"] == "sampling"] == [1, 2, 3, 4]


def test_bad_weights_are_one_clear_error_and_exit_code_2(tmp_path):
    path = write_job(job(), tmp_path / "shot.json")
    run = backend("generate", path, "--out", tmp_path / "takes", "--weights", tmp_path / "none", "--device", "cpu")
    assert run.code == 2
    error = run.last("error")
    assert error["code"] == "bad_weights" and "python -m backend download" in error["hint"]
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "takes").exists()


def test_a_job_at_another_size_is_refused_before_anything_is_written(tiny, tmp_path):
    path = write_job(job(height=480, width=720), tmp_path / "shot.json")
    run = backend("generate", path, "--out", tmp_path / "takes", *model_flags(tiny), timeout=300)
    assert run.code == 2
    assert run.last("error")["code"] == "unsupported"
    assert not (tmp_path / "takes").exists() or not list((tmp_path / "takes").iterdir())


class Worker:
    def __init__(self, *args):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "backend", "serve", *map(str, args)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        self.events = []

    def send(self, **request):
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()

    def until(self, predicate, timeout=300):
        def read():
            for line in self.proc.stdout:
                self.events.append(json.loads(line))
                if predicate(self.events[-1]):
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout)
        assert not reader.is_alive(), f"timed out; events so far: {[e['event'] for e in self.events]}"
        return self.events[-1]


def ends(job_id):
    return lambda e: e.get("job") == job_id and e["event"] in ("result", "error", "cancelled")


def test_worker_loads_once_for_two_jobs_and_cancels_a_third(tiny, tmp_path):
    short = write_job(job(), tmp_path / "short.json")
    long = write_job(job(steps=200), tmp_path / "long.json")
    takes = tmp_path / "takes"
    worker = Worker(*model_flags(tiny))
    try:
        worker.send(op="generate", id="a", job=str(short), out=str(takes))
        assert worker.until(ends("a"))["event"] == "result"
        worker.send(op="generate", id="b", job=str(short), out=str(takes))
        assert worker.until(ends("b"))["event"] == "result"
        loading = [e for e in worker.events if e["event"] == "stage" and e["stage"] == "loading"]
        assert len(loading) == 1

        worker.send(op="generate", id="c", job=str(long), out=str(takes))
        worker.until(lambda e: e["event"] == "progress" and e.get("job") == "c")
        worker.send(op="cancel", id="c")
        assert worker.until(ends("c"))["event"] == "cancelled"
        assert sorted(p.name for p in takes.iterdir()) == [
            "Scene_take_001.json",
            "Scene_take_001.mp4",
            "Scene_take_002.json",
            "Scene_take_002.mp4",
        ]
        worker.proc.stdin.close()
        worker.until(lambda e: e["event"] == "bye")
        assert worker.proc.wait(timeout=60) == 0
    finally:
        if worker.proc.poll() is None:
            worker.proc.kill()
    steps_c = [e["step"] for e in worker.events if e["event"] == "progress" and e.get("job") == "c"]
    assert 1 <= len(steps_c) < 200


def test_doctor_reports_the_weights_it_finds(tiny):
    run = backend("doctor", "--json", "--weights", tiny["weights"])
    assert run.code == 0
    report = json.loads(run.stdout)
    assert report["weights"]["ok"] and report["weights"]["injector"] == str(tiny["injector"])
    assert report["packages"]["diffusers"] and "free_bytes" in report["disk"]
    text = backend("doctor", "--weights", tiny["weights"])
    assert text.code == 0 and "weights     base" in text.stdout


def test_bench_on_a_cpu_runs_the_tiny_size_and_both_injector_forms():
    run = backend("bench", "--size", "tiny", "--steps", "1", "--no-decode", "--json", "--device", "cpu", timeout=300)
    assert run.code == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["size"] == "tiny" and result["device"]["type"] == "cpu"
    assert result["steps"]["plain_s"] > 0 and result["steps"]["injector_s"] > 0
    forms = result["injector_forms"]
    assert forms["efficient_ms"] > 0 and forms["literal_ms"] > 0 and forms["max_relative_difference"] < 1e-5
    assert result["projection"]["sampling_s"] > 0


def test_download_offline_says_what_is_missing(tmp_path):
    run = backend("download", "--offline", "--dest", tmp_path / "w")
    assert run.code == 2
    error = run.last("error")
    assert error["code"] == "download_failed" and "--offline" in error["message"]


def test_model_flags_are_in_the_help():
    run = backend("generate", "--help")
    for flag in (
        "--weights",
        "--base",
        "--injector",
        "--lora",
        "--device",
        "--dtype",
        "--memory",
        "--compile",
        "--gpus",
    ):
        assert flag in run.stdout
