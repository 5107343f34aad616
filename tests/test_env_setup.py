"""The backend setup's non-Blender half (addon/env_setup.py): command lines per platform and
choice, background processes that stream lines and are cancelled with their children, the log
tail, and reading doctor's report and download's events."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from nobpy import addon_module
from test_supervisor import pid_alive

ROOT = Path(__file__).resolve().parents[1]

es = addon_module("env_setup")


def event(kind: str, **fields) -> str:
    return json.dumps({"event": kind, "protocol": 1, "time": time.time(), **fields})


def script(tmp_path: Path, body: str, name: str = "prog.py") -> list[str]:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return [sys.executable, str(path)]


# --- requirements and command lines ------------------------------------------------------------


def test_requirements_come_from_the_pyproject_extras():
    preview = es.read_requirements(ROOT / "pyproject.toml", "preview")
    assert [es.requirement_name(r) for r in preview] == ["numpy", "pillow", "imageio-ffmpeg", "jsonschema"]
    full = es.read_requirements(ROOT / "pyproject.toml", "full")
    names = [es.requirement_name(r) for r in full]
    assert names[:4] == ["numpy", "pillow", "imageio-ffmpeg", "jsonschema"]  # the self-reference, expanded
    assert {"torch", "diffusers", "transformers", "huggingface_hub"} <= set(names)
    assert not any("trajmaster" in r for r in full)
    assert len(set(full)) == len(full)


def test_requirements_errors_are_one_sentence(tmp_path):
    with pytest.raises(es.SetupError, match="is missing; reinstall"):
        es.read_requirements(tmp_path / "pyproject.toml", "preview")
    bad = tmp_path / "pyproject.toml"
    bad.write_text('[project.optional-dependencies]\npreview = ["numpy"]\n')
    with pytest.raises(es.SetupError, match="no 'full' set"):
        es.read_requirements(bad, "full")
    bad.write_text("not = [toml")
    with pytest.raises(es.SetupError, match="Cannot read"):
        es.read_requirements(bad, "preview")


def test_preview_setup_on_linux(tmp_path):
    steps = es.setup_steps("/blender/python3.11", tmp_path / "env", ROOT, "PREVIEW", platform="linux")
    py = str(tmp_path / "env" / "bin" / "python")
    assert [s.title for s in steps] == ["Creating the environment", "Installing packages", "Checking the backend"]
    assert steps[0].argv == ["/blender/python3.11", "-m", "venv", str(tmp_path / "env")]
    assert steps[1].argv[:4] == [py, "-m", "pip", "install"]
    assert "--progress-bar" in steps[1].argv and "off" in steps[1].argv
    assert steps[1].argv[-4:] == es.read_requirements(ROOT / "pyproject.toml", "preview")
    assert not any("download.pytorch.org" in a for s in steps for a in s.argv)
    assert steps[2].argv == [py, "-m", "backend", "doctor", "--json"]
    assert steps[2].cwd == str(ROOT) and steps[2].capture


@pytest.mark.parametrize("platform", ["linux", "win32"])
def test_full_setup_gets_torch_from_the_cuda_index_on_windows_and_linux(tmp_path, platform, monkeypatch):
    monkeypatch.delenv(es.ENV_TORCH_INDEX, raising=False)
    steps = es.setup_steps("py", tmp_path / "env", ROOT, "FULL", platform=platform, weights="/w")
    py = str(es.env_python(tmp_path / "env", platform))
    assert py.endswith(os.path.join("Scripts", "python.exe") if platform == "win32" else os.path.join("bin", "python"))
    assert [s.title for s in steps][1] == "Installing torch (CUDA build)"
    torch = steps[1].argv
    # --index-url (not --extra-index-url): only PyTorch's CUDA wheels are candidates for torch.
    assert torch[torch.index("--index-url") + 1] == es.TORCH_INDEX
    assert "--extra-index-url" not in torch
    assert [es.requirement_name(a) for a in torch[torch.index("--index-url") + 2 :]] == ["torch"]
    rest = steps[2].argv
    assert "--index-url" not in rest and any(a.startswith("diffusers") for a in rest)
    assert steps[3].argv == [py, "-m", "backend", "doctor", "--json", "--weights", "/w"]


def test_full_setup_on_macos_is_plain_pypi(tmp_path):
    steps = es.setup_steps("py", tmp_path / "env", ROOT, "FULL", platform="darwin")
    assert [s.title for s in steps] == ["Creating the environment", "Installing packages", "Checking the backend"]
    assert any(a.startswith("torch") for a in steps[1].argv)
    assert not any("download.pytorch.org" in a for s in steps for a in s.argv)


def test_torch_index_override_and_rebuild(tmp_path, monkeypatch):
    monkeypatch.setenv(es.ENV_TORCH_INDEX, "https://download.pytorch.org/whl/cu124")
    steps = es.setup_steps("py", tmp_path / "env", ROOT, "FULL", platform="linux", clear=True)
    assert steps[0].argv == ["py", "-m", "venv", "--clear", str(tmp_path / "env")]
    assert "https://download.pytorch.org/whl/cu124" in steps[1].argv
    with pytest.raises(ValueError):
        es.setup_steps("py", tmp_path / "env", ROOT, "EVERYTHING")


def test_download_and_doctor_commands():
    assert es.download_command("/p/python", "/w d") == ["/p/python", "-m", "backend", "download", "--dest", "/w d"]
    assert es.doctor_command("/p/python") == ["/p/python", "-m", "backend", "doctor", "--json"]


def test_child_env_keeps_blenders_python_settings_out():
    env = es.child_env({"PYTHONHOME": "/blender/python", "PYTHONPATH": "/x", "PATH": "/bin", "VIRTUAL_ENV": "/v"})
    assert "PYTHONHOME" not in env and "PYTHONPATH" not in env and "VIRTUAL_ENV" not in env
    assert env["PATH"] == "/bin" and env["PYTHONUNBUFFERED"] == "1" and env["PYTHONNOUSERSITE"] == "1"


def test_marker_says_when_an_environment_is_ready(tmp_path):
    env = tmp_path / "env"
    assert es.env_state(env) == {"ready": False, "exists": False, "python": str(es.env_python(env))}
    assert es.env_state(None)["ready"] is False
    python = es.env_python(env)
    python.parent.mkdir(parents=True)
    python.write_text("")
    assert es.env_state(env)["exists"] and not es.env_state(env)["ready"]
    es.mark_ready(env, "PREVIEW", str(python), {"packages": {"torch": None}})
    state = es.env_state(env)
    assert state["ready"] and state["choice"] == "PREVIEW" and state["python"] == str(python)
    assert not list(env.glob(".*.tmp")), "the marker is written through a temporary file and renamed"
    es.mark_not_ready(env)
    es.mark_not_ready(env)  # twice is fine
    assert not es.env_state(env)["ready"]
    (env / es.MARKER).write_text("{half a file")
    assert not es.env_state(env)["ready"]


# --- the log tail --------------------------------------------------------------------------------


def test_log_tail_keeps_the_last_lines_cut_to_width():
    tail = es.LogTail(5)
    for i in range(12):
        tail.add(f"line {i}\n")
    assert len(tail) == 5
    assert tail.lines() == [f"line {i}" for i in range(7, 12)]
    assert tail.lines(2) == ["line 10", "line 11"]
    assert tail.lines(0) == []
    assert tail.lines(50) == tail.lines()
    tail.add("x" * 5000)
    assert len(tail.lines(1)[0]) == es.LINE_WIDTH and tail.lines(1)[0].endswith("…")
    tail.add("50%\r100%\tdone\r\n")
    assert tail.lines(1) == ["50% 100%    done"]
    tail.clear()
    assert tail.lines() == []


# --- real processes ------------------------------------------------------------------------------


def test_a_task_streams_lines_while_its_process_runs(tmp_path):
    prog = script(
        tmp_path,
        """
        import sys, time
        print("first", flush=True)
        print("to stderr", file=sys.stderr, flush=True)
        time.sleep(1.0)
        print("second", flush=True)
        """,
    )
    task = es.Task([es.Step("Streaming", prog)], tmp_path / "logs" / "task.log").start()
    seen, deadline = [], time.monotonic() + 10
    while not seen and time.monotonic() < deadline:
        seen = task.poll()
        time.sleep(0.02)
    assert [line.text for line in seen] in (["first"], ["first", "to stderr"], ["to stderr", "first"])
    assert not task.finished, "the first line arrives while the process still runs"
    rest = task.wait(timeout=10)
    texts = [line.text for line in seen + rest]
    assert sorted(texts) == ["first", "second", "to stderr"]
    assert {line.stream for line in seen + rest if line.text == "to stderr"} == {"err"}
    assert task.state == es.DONE and task.returncode == 0 and task.message == ""
    log = (tmp_path / "logs" / "task.log").read_text()
    assert "first" in log and "second" in log and "to stderr" in log and "# done" in log
    assert task.tail.lines()[-1] == "second"


def test_poll_hands_over_a_bounded_number_of_lines(tmp_path):
    prog = script(tmp_path, "for i in range(1000):\n    print(i)\n")
    task = es.Task([es.Step("Chatty", prog)], tmp_path / "t.log").start()
    while task._thread.is_alive():
        time.sleep(0.02)
    first = task.poll(max_lines=100)
    assert len(first) == 100 and not task.finished
    t0 = time.perf_counter()
    task.poll()  # the default bound
    assert (time.perf_counter() - t0) < 0.01, "one poll must stay well under a timer tick's budget"
    task.wait(timeout=5)
    assert task.finished and task.state == es.DONE
    assert len(task.tail) == es.LOG_TAIL


def test_steps_run_in_order_and_a_failure_stops_them(tmp_path):
    ok = script(tmp_path, "print('one')", "one.py")
    fails = script(
        tmp_path,
        """
        import sys
        print("Collecting torch>=2.4")
        print("ERROR: Could not find a version that satisfies the requirement torch>=2.4", file=sys.stderr)
        print("ERROR: No matching distribution found for torch>=2.4", file=sys.stderr)
        sys.exit(1)
        """,
        "two.py",
    )
    never = script(tmp_path, "open('ran', 'w')", "three.py")
    task = es.Task(
        [es.Step("First", ok), es.Step("Installing packages", fails), es.Step("Third", never, cwd=str(tmp_path))],
        tmp_path / "t.log",
    ).start()
    task.wait(timeout=10)
    assert task.state == es.FAILED and task.returncode == 1 and task.step == 1
    assert task.message == (
        "Installing packages failed (exit code 1): ERROR: No matching distribution found for torch>=2.4."
    )
    assert not (tmp_path / "ran").exists()


def test_a_missing_program_fails_with_a_sentence(tmp_path):
    task = es.Task([es.Step("Checking the backend", [str(tmp_path / "no" / "python")])], tmp_path / "t.log").start()
    task.wait(timeout=5)
    assert task.state == es.FAILED and "does not exist" in task.message
    assert "does not exist or cannot be run" in es.check_failure("/no/python", None, [], task.message)


def test_failure_sentence_prefers_the_backends_error_event():
    lines = ["loading", event("error", code="missing_dependency", message="huggingface_hub is not installed.")]
    assert (
        es.failure_sentence("Downloading", 2, lines)
        == "Downloading failed (exit code 2): huggingface_hub is not installed."
    )
    assert es.failure_sentence("X", -9, []) == "X failed (signal 9)."


@pytest.mark.skipif(os.name == "nt", reason="process groups and /proc: POSIX")
def test_cancel_ends_the_whole_process_tree_and_keeps_the_log(tmp_path, monkeypatch):
    monkeypatch.setattr(es, "KILL_GRACE_S", 1.0)
    # A parent that starts a child that ignores SIGTERM (as a stuck build might): both must go.
    prog = script(
        tmp_path,
        f"""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c",
            "import signal, time, os; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "open({str(tmp_path / "child.pid")!r}, 'w').write(str(os.getpid())); time.sleep(120)"])
        while True:
            print("installing", flush=True)
            time.sleep(0.1)
        """,
    )
    task = es.Task([es.Step("Installing packages", prog), es.Step("Never", prog)], tmp_path / "logs" / "x.log")
    task.start()
    deadline = time.monotonic() + 10
    while not (tmp_path / "child.pid").exists() or not task.tail.lines():
        task.poll()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.1)
    parent, child = task.pid, int((tmp_path / "child.pid").read_text())
    assert pid_alive(parent) and pid_alive(child)
    t0 = time.perf_counter()
    assert task.cancel()
    assert time.perf_counter() - t0 < 0.1, "cancel returns at once; the controller thread escalates"
    assert not task.cancel(), "a second cancel is a no-op"
    task.wait(timeout=10)
    assert task.state == es.CANCELLED and task.message == "Cancelled."
    assert task.step == 0, "the next step never started"
    for _ in range(50):
        if not pid_alive(parent) and not pid_alive(child):
            break
        time.sleep(0.05)
    assert not pid_alive(parent), "the process was not ended"
    assert not pid_alive(child), "its child (which ignores SIGTERM) was left running"
    log = (tmp_path / "logs" / "x.log").read_text()
    assert "installing" in log and log.rstrip().endswith("# cancelled: Cancelled.")


def test_cancel_before_start_of_next_step_and_after_the_end(tmp_path):
    task = es.Task([es.Step("Quick", script(tmp_path, "print(1)"))], tmp_path / "t.log").start()
    task.wait(timeout=5)
    assert task.state == es.DONE
    assert not task.cancel(), "nothing to cancel once finished"


def test_doctor_of_this_python_parses(tmp_path):
    """The real `python -m backend doctor --json` as the add-on runs it (whatever this Python has)."""
    task = es.Task(
        [es.Step("Checking the backend", es.doctor_command(sys.executable, str(tmp_path / "w")), str(ROOT), True)],
        tmp_path / "check.log",
    ).start()
    task.wait(timeout=120)
    assert task.state == es.DONE, task.message
    report = es.parse_doctor(task.captured[0])
    assert report["disk"]["folder"] == str(tmp_path / "w")
    facts = dict(es.doctor_facts(report))
    assert {"Python", "GPU", "torch", "diffusers", "Weights", "Disk"} <= set(facts)
    assert facts["Weights"] == "not found"
    sentences = es.doctor_sentences(report)
    assert any("Download Weights" in s for _, s in sentences)


# --- doctor's report ---------------------------------------------------------------------------------

NO_TORCH = {
    "python": "3.11.7",
    "platform": "Linux",
    "packages": {"torch": None, "diffusers": None, "huggingface_hub": None},
    "gpu": {"cuda": False, "torch": None},
    "weights": {"ok": False, "problem": "The model weights were not found (/w does not exist): …", "hint": "…"},
    "disk": {"folder": "/w", "free_bytes": 100 * es.GIB, "download_needs_gib": 23.6},
    "problems": ["torch is not installed"],
    "ready": False,
}

GPU = {
    "python": "3.12.3",
    "platform": "Linux",
    "packages": {"torch": "2.7.1+cu128", "diffusers": "0.42.0", "huggingface_hub": "0.30.0"},
    "gpu": {
        "torch": "2.7.1+cu128",
        "cuda_build": "12.8",
        "cuda": True,
        "name": "NVIDIA GeForce RTX 4090",
        "compute_capability": "8.9",
        "vram_total_bytes": 24 * es.GIB,
        "vram_free_bytes": 22 * es.GIB,
        "auto_memory_mode": "balanced",
    },
    "weights": {"ok": True, "base": "/w/CogVideoX-5b", "injector": "/w/3DTrajMaster/injector", "lora": "/w/l"},
    "disk": {"folder": "/w", "free_bytes": 5 * es.GIB, "download_needs_gib": 23.6},
    "problems": [],
    "ready": True,
}


def test_no_torch_report_says_the_preview_is_ready_and_what_the_full_model_would_add():
    """A Preview Only environment is not a broken one: no warnings, but what is ready and what
    the Full Model adds, in the preferences' words."""
    report = es.parse_doctor("\n" + json.dumps(NO_TORCH, indent=1) + "\n")
    facts = dict(es.doctor_facts(report))
    assert facts["GPU"] == "none visible" and facts["torch"] == "not installed" and facts["Weights"] == "not found"
    assert facts["Disk"].startswith("100.0 GiB free at /w")
    (ready, more) = es.doctor_sentences(report)
    assert ready == ("ok", "The preview engine is ready: set Engine to Preview in the TrajMaster panel and Generate.")
    assert more[0] == "next" and more[1].startswith("The Full Model would add the real model")
    assert "choose Full Model above and press Update Backend" in more[1] and "Download Weights" in more[1]
    assert "NVIDIA GPU" in more[1] and "pip" not in more[1]
    # An existing Python of the user's is told to install the packages itself (no Update Backend there).
    (_, (_, custom)) = es.doctor_sentences(report, managed=False)
    assert "install the Full Model's packages into this Python" in custom and "Update Backend" not in custom


@pytest.mark.parametrize(
    ("platform", "on_path", "files", "env", "found"),
    [
        ("linux", True, [], {}, True),  # nvidia-smi on PATH
        ("linux", False, ["/proc/driver/nvidia/version"], {}, True),  # the kernel module is loaded
        ("linux", False, ["/usr/lib/wsl/lib/nvidia-smi"], {}, True),  # WSL
        ("linux", False, [], {}, False),
        ("win32", False, [r"C:\Windows\System32\nvidia-smi.exe"], {"SYSTEMROOT": r"C:\Windows"}, True),
        ("win32", False, [r"C:\Windows\System32\nvidia-smi.exe"], {}, False),  # no SystemRoot: no guess
        ("win32", False, [], {"SYSTEMROOT": r"C:\Windows"}, False),
        ("darwin", True, [], {}, False),  # no CUDA on macOS, whatever is installed
    ],
)
def test_full_model_is_preselected_only_where_an_nvidia_driver_is_installed(platform, on_path, files, env, found):
    probe = {
        "which": lambda name: f"/usr/bin/{name}" if on_path and name == "nvidia-smi" else None,
        "exists": lambda path: path in files,
        "env": env,
    }
    assert es.nvidia_gpu_found(platform, **probe) is found
    assert es.default_choice(platform, **probe) == ("FULL" if found else "PREVIEW")


def test_gpu_report_lists_name_vram_versions_and_weights():
    facts = dict(es.doctor_facts(GPU))
    assert facts["GPU"] == "NVIDIA GeForce RTX 4090 (compute 8.9)"
    assert facts["VRAM"].startswith("22.0 GiB free of 24.0 GiB") and "balanced" in facts["VRAM"]
    assert facts["torch"] == "2.7.1+cu128, CUDA 12.8" and facts["diffusers"] == "0.42.0"
    assert facts["Weights"] == "found: /w/3DTrajMaster"
    levels = es.doctor_sentences(GPU)
    assert levels == [("ok", "Ready: the real model (CogVideoX-5B + 3DTrajMaster) can run with this Python.")]


def test_cpu_torch_and_small_disk_are_explained():
    report = json.loads(json.dumps(GPU))
    report["gpu"] = {"torch": "2.7.1+cpu", "cuda_build": None, "cuda": False}
    report["packages"]["torch"] = "2.7.1+cpu"
    report["weights"] = {"ok": False, "problem": "not found"}
    report["ready"] = False
    sentences = [s for _, s in es.doctor_sentences(report)]
    assert any("this torch is a CPU-only build" in s and "the preview engine works" in s for s in sentences)
    assert any(s.startswith("Only 5.0 GiB free at /w: the download needs about 23.6 GiB") for s in sentences)
    assert dict(es.doctor_facts(report))["torch"] == "2.7.1+cpu, CUDA none (CPU build)"


@pytest.mark.parametrize("text", ["", "Traceback (most recent call last):", '{"half": ', "[1, 2]", '{"a": 1}'])
def test_what_is_not_a_doctor_report_is_refused(text):
    with pytest.raises(ValueError):
        es.parse_doctor(text)


def test_check_failures_are_one_sentence():
    missing = es.check_failure("/x/python", None, [], "Checking the backend failed: /x/python does not exist.")
    assert missing.startswith("The backend Python /x/python does not exist or cannot be run; set up")
    module = es.check_failure("/usr/bin/python3", 1, ["/usr/bin/python3: No module named backend"])
    assert module.startswith("/usr/bin/python3 cannot import the TrajMaster backend; reinstall")
    other = es.check_failure("/p", 1, ["boom", "   ", "Killed"])
    assert other == "The backend check with /p failed (exit code 1): Killed; see the log in the add-on's preferences."
    assert "\n" not in missing + module + other


# --- download's events -------------------------------------------------------------------------------


def test_download_progress_from_events():
    p = es.DownloadProgress()
    assert not p.feed("Fetching 12 files: not an event")
    assert p.feed(event("hello", pid=1, version="x", engine=None))
    p.feed(event("stage", stage="downloading", message="Downloading KwaiVGI/3DTrajMaster into /w/3DTrajMaster"))
    assert p.text() == "Downloading KwaiVGI/3DTrajMaster into /w/3DTrajMaster"
    p.feed(
        event("progress", stage="downloading", step=1_500_000_000, total=13_000_000_000, fraction=0.1154, eta_s=None)
    )
    assert p.text() == "1.5 GB of 13.0 GB" and p.fraction == pytest.approx(0.1154)
    p.feed(event("progress", stage="downloading", step=6_500_000_000, total=13_000_000_000, fraction=0.5, eta_s=150.4))
    assert p.text() == "6.5 GB of 13.0 GB, about 2 min left"
    p.feed(event("stage", stage="downloading", message="Downloading THUDM/CogVideoX-5b"))
    assert p.done == 0 and p.fraction == 0.0
    p.feed(event("progress", stage="downloading", step=3, total=12, fraction=0.25, eta_s=4))
    assert p.text() == "3 of 12, about 4 s left"
    p.feed(event("result", dest="/w", repos={}, ready=True, weights={}))
    assert p.fraction == 1.0 and p.outcome() == "The weights are ready in /w."


def test_download_errors_and_incomplete_results():
    p = es.DownloadProgress()
    p.feed(
        event(
            "error",
            code="download_failed",
            message="THUDM/CogVideoX-5b could not be reached (no network, or the hub is down); "
            "what was fetched is kept.",
            hint="Run the same command again to resume.",
            exit_code=2,
        )
    )
    assert p.outcome().endswith("what was fetched is kept. Run the same command again to resume.")
    q = es.DownloadProgress()
    q.feed(event("result", dest="/w", repos={}, ready=False, problem="no LoRA."))
    assert q.outcome() == "The download finished but the weights are not usable: no LoRA."


def test_eta_and_byte_formats():
    assert es.format_eta(None) == "" and es.format_eta(59.4) == "about 59 s left"
    assert es.format_eta(61) == "about 1 min left" and es.format_eta(3 * 3600 + 5 * 60) == "about 3 h 05 min left"
    assert es.format_bytes(999) == "999 B" and es.format_bytes(2_500_000) == "2.5 MB"


def test_env_python_runs_in_the_venv_layout(tmp_path):
    """A real venv made like the managed environment (without packages): its python is where
    env_python() says, and it is not the Python that created it."""
    env = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True, timeout=120)
    python = es.env_python(env)
    out = subprocess.run([str(python), "-c", "import sys; print(sys.prefix)"], capture_output=True, text=True)
    assert Path(out.stdout.strip()).resolve() == env.resolve()


# --- junk from the backend or the disk never raises -------------------------------------------


JUNK_LINES = [
    "[" * 100000,
    '{"event": "progress", "step": ' + "9" * 5000 + "}",
    '{"event": ' + "[" * 5000 + "]" * 5000 + "}",
    '{"event": ["error"]}',
    '{"event": {"a": 1}}',
    "{" + "x" * 3_000_000,
]


def test_parse_line_never_raises():
    from backend import events

    for line in JUNK_LINES:
        assert events.parse_line(line) is None
    assert events.parse_line(b"\xff\xfe{") is None
    assert events.parse_line(event("ready"))["event"] == "ready"


def test_download_progress_reads_wrongly_typed_fields_as_absent():
    progress = es.DownloadProgress()
    for line in JUNK_LINES:
        assert progress.feed(line) is False
    assert progress.feed(event("progress", step="12", total=[1], fraction="half", eta_s={"s": 1}))
    assert (progress.done, progress.total, progress.fraction, progress.eta_s) == (0, 0, 0.0, None)
    assert progress.feed(event("progress", step=10**400, total=10**400, fraction=1e300, eta_s=10**400))
    assert progress.fraction == 1.0 and progress.eta_s is None
    assert progress.feed(event("stage", message=["not", "text"]))
    assert progress.message == ""
    assert progress.feed(event("error", message={"a": 1}, hint=7))
    assert progress.outcome() == ""
    progress.text()


def test_failure_sentence_survives_junk_lines():
    deep = '{"event": "error", "message": ' + "[" * 100000 + "}"
    sentence = es.failure_sentence("Installing packages", 1, [deep, "ERROR: No matching distribution"])
    assert sentence == "Installing packages failed (exit code 1): ERROR: No matching distribution."
    odd = json.dumps({"event": "error", "message": ["a", "list"]})
    assert es.failure_sentence("Setup", 2, [odd]) == "Setup failed (exit code 2)."


def test_a_corrupt_package_list_is_a_setup_error(tmp_path):
    bad = tmp_path / "pyproject.toml"
    bad.write_text('[project.optional-dependencies]\npreview = "numpy"\n')
    with pytest.raises(es.SetupError, match="the 'preview' set is not a list of package names"):
        es.read_requirements(bad, "preview")
    for text in (
        '[project]\noptional-dependencies = "x"\n',
        "project = 3\n",
        "[project.optional-dependencies]\npreview = [1, 2]\n",
        '[project.optional-dependencies]\npreview = ["trajmaster-previz[full"]\n',
    ):
        bad.write_text(text)
        with pytest.raises(es.SetupError, match="damaged"):
            es.read_requirements(bad, "preview")
    bad.write_bytes(b"\xff\xfe not utf-8")
    with pytest.raises(es.SetupError, match="Cannot read"):
        es.read_requirements(bad, "preview")


def test_a_marker_that_does_not_say_ready_true_is_not_ready(tmp_path):
    python = es.env_python(tmp_path)
    python.parent.mkdir(parents=True)
    python.write_text("")
    for marker in ('{"ready": "false"}', '{"ready": 1}', '{"ready": "yes"}', "[" * 100000, '["ready"]'):
        (tmp_path / es.MARKER).write_text(marker)
        assert es.env_state(tmp_path)["ready"] is False, marker
    (tmp_path / es.MARKER).write_text('{"ready": true}')
    assert es.env_state(tmp_path)["ready"] is True


def test_the_prompt_model_download_is_its_own_command_and_sentence():
    assert es.download_command("py", "/w") == ["py", "-m", "backend", "download", "--dest", "/w"]
    assert es.download_command("py", "/w", "prompt")[-2:] == ["--only", "prompt"]
    p = es.DownloadProgress()
    p.feed(event("result", dest="/w", repos={}, ready=True, prompt_model={"ok": True}, licenses={}))
    assert p.outcome() == "The prompt model is ready in /w: Expand now writes with it."
    q = es.DownloadProgress()
    q.feed(event("result", dest="/w", repos={}, ready=False, prompt_model={"ok": False}, problem="no tokenizer."))
    assert q.outcome() == "The download finished but the prompt model is not usable: no tokenizer."
