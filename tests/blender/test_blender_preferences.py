"""The preferences and the backend setup in real Blender: settings and defaults, drawing, Check
Backend, a managed environment built for real with pip, the download button's online-access rule,
and the memory mode and weights folder reaching the backend's command line."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import bpy
import pytest
import scenes
from conftest import MODULE

from backend.cogvideox.commands import MEMORY_MODES


def module(name):
    return importlib.import_module(f"{MODULE}.addon.{name}")


def prefs():
    return bpy.context.preferences.addons[MODULE].preferences


@pytest.fixture
def setup_ops():
    ops = module("setup_ops")
    p = prefs()
    saved = {
        k: getattr(p, k)
        for k in (
            "python_source",
            "python_path",
            "env_choice",
            "weights_folder",
            "memory_mode",
            "compile_model",
            "show_full_log",
        )
    }
    online = bpy.context.preferences.system.use_online_access
    yield ops
    for activity in ops.activities.values():
        if activity.task is not None:
            activity.task.cancel()
            ops.wait(activity.kind, timeout=30)
        activity.task, activity.state, activity.message, activity.report = None, "idle", "", None
    ops.synchronous = None
    for k, v in saved.items():
        setattr(p, k, v)
    bpy.context.preferences.system.use_online_access = online


def _check_call(function: str, kwargs: dict[str, Any]) -> None:
    """The keyword arguments are the real UILayout function's, with valid enum values (icons)."""
    rna = bpy.types.UILayout.bl_rna.functions.get(function)
    if rna is None:  # UILayout.progress (4.0+) is a Python-visible function of the C API only
        assert hasattr(bpy.types.UILayout, function), f"UILayout has no {function}()"
        return
    for key, value in kwargs.items():
        assert key in rna.parameters, f"UILayout.{function}() has no argument {key!r}"
        param = rna.parameters[key]
        if param.type == "ENUM" and isinstance(value, str):
            assert value in {i.identifier for i in param.enum_items}, f"{function}({key}={value!r}) is not valid"


class FakeLayout:
    """Stands in for bpy.types.UILayout so the preferences' draw code runs headless: it checks each
    call against the real UILayout's arguments and records labels, properties and operator
    buttons (with the `enabled` of the row they are in)."""

    def __init__(self, log: list[tuple[str, Any]] | None = None, parent: FakeLayout | None = None):
        self.log = [] if log is None else log
        self.parent = parent
        self.enabled = True

    def _enabled(self) -> bool:
        return self.enabled and (self.parent is None or self.parent._enabled())

    def row(self, **kwargs) -> FakeLayout:
        _check_call("row", kwargs)
        return FakeLayout(self.log, self)

    def column(self, **kwargs) -> FakeLayout:
        _check_call("column", kwargs)
        return FakeLayout(self.log, self)

    def box(self, **kwargs) -> FakeLayout:
        _check_call("box", kwargs)
        return FakeLayout(self.log, self)

    def grid_flow(self, **kwargs) -> FakeLayout:
        _check_call("grid_flow", kwargs)
        return FakeLayout(self.log, self)

    def label(self, **kwargs) -> None:
        _check_call("label", kwargs)
        self.log.append(("label", kwargs.get("text", "")))

    def prop(self, data, name: str, **kwargs) -> None:
        _check_call("prop", kwargs)
        assert name in data.bl_rna.properties, f"no property {name!r}"
        self.log.append(("prop", name))

    def operator(self, idname: str, **kwargs) -> FakeLayout:
        _check_call("operator", kwargs)
        category, name = idname.split(".")
        assert hasattr(getattr(bpy.ops, category), name), f"no operator {idname}"
        self.log.append(("operator", (idname, self._enabled())))
        return FakeLayout(self.log, self)

    def progress(self, **kwargs) -> None:
        _check_call("progress", kwargs)
        self.log.append(("progress", (kwargs.get("factor"), kwargs.get("text"))))

    def labels(self) -> str:
        return " ".join(v for k, v in self.log if k == "label")  # wrapped sentences read whole again

    def buttons(self) -> dict[str, bool]:
        return dict(v for k, v in self.log if k == "operator")


def draw() -> FakeLayout:
    layout = FakeLayout()
    ops = module("setup_ops")
    ops.draw_backend(prefs(), layout)
    ops.draw_weights(prefs(), layout)
    return layout


# --- settings ------------------------------------------------------------------------------------


def test_preferences_have_the_settings_and_their_defaults():
    p = prefs()
    rna = p.bl_rna.properties
    assert rna["python_source"].default == "MANAGED"
    assert {i.identifier for i in rna["python_source"].enum_items} == {"MANAGED", "CUSTOM"}
    assert {i.identifier for i in rna["env_choice"].enum_items} == {"PREVIEW", "FULL"}
    # The Full Model only where an NVIDIA driver is installed; this machine has none (no GPU here).
    assert rna["env_choice"].default == module("env_setup").default_choice() == "PREVIEW"
    assert tuple(i.identifier for i in rna["memory_mode"].enum_items) == MEMORY_MODES, "the backend's --memory"
    assert rna["memory_mode"].default == "auto"
    assert rna["weights_folder"].subtype == "DIR_PATH" and rna["weights_folder"].default == ""
    assert rna["output_folder"].subtype == "DIR_PATH"
    for op in ("setup_backend", "download_weights", "check_backend", "cancel_setup_task", "open_setup_log"):
        assert hasattr(bpy.ops.trajmaster, op)


def test_default_weights_folder_is_in_the_extension_user_folder(setup_ops, monkeypatch):
    preferences = module("preferences")
    monkeypatch.delenv("TRAJMASTER_WEIGHTS", raising=False)
    prefs().weights_folder = ""
    assert Path(preferences.weights_dir()) == Path(bpy.utils.extension_path_user(MODULE, path="weights"))
    assert preferences.weights_dir().startswith(os.environ["BLENDER_USER_EXTENSIONS"])
    prefs().weights_folder = "/somewhere/else/"
    assert preferences.weights_dir() == os.path.normpath("/somewhere/else")
    monkeypatch.setenv("TRAJMASTER_WEIGHTS", "/from/the/farm")
    assert preferences.weights_dir() == "/from/the/farm", "TRAJMASTER_WEIGHTS wins"


def test_engine_args_pass_memory_only_when_not_auto_and_compile_when_chosen(setup_ops, tmp_path, monkeypatch):
    preferences = module("preferences")
    monkeypatch.delenv("TRAJMASTER_WEIGHTS", raising=False)
    prefs().weights_folder = str(tmp_path)
    assert prefs().compile_model is False, "compiling costs a minute on the first take: off until chosen"
    assert preferences.engine_args() == ["--weights", str(tmp_path)]
    prefs().memory_mode = "balanced"
    assert preferences.engine_args() == ["--weights", str(tmp_path), "--memory", "balanced"]
    prefs().compile_model = True
    assert preferences.engine_args() == ["--weights", str(tmp_path), "--memory", "balanced", "--compile"]


def test_the_environment_variable_wins_and_a_missing_setup_is_one_sentence(setup_ops, monkeypatch, tmp_path):
    preferences = module("preferences")
    assert preferences.backend_python() == sys.executable  # conftest sets TRAJMASTER_PYTHON
    monkeypatch.delenv("TRAJMASTER_PYTHON")
    monkeypatch.setattr(preferences, "user_folder", lambda sub="", create=False: str(tmp_path / sub))
    prefs().python_source = "MANAGED"
    with pytest.raises(preferences.BackendNotConfigured, match=r"^No backend Python is set up yet: press Set Up"):
        preferences.backend_python()
    prefs().python_source = "CUSTOM"
    prefs().python_path = "/opt/py/bin/python3"
    assert preferences.backend_python() == "/opt/py/bin/python3"
    # Windows Explorer's Copy as Path puts quotes around the path it copies.
    prefs().python_path = ' "/opt/py/bin/python3" '
    assert preferences.backend_python() == "/opt/py/bin/python3"


def test_preferences_draw_with_each_state(setup_ops, monkeypatch, tmp_path):
    monkeypatch.setattr(module("preferences"), "user_folder", lambda sub="", create=False: str(tmp_path / sub))
    for source in ("MANAGED", "CUSTOM"):
        prefs().python_source = source
        layout = draw()
        assert "TRAJMASTER_PYTHON is set and used instead" in layout.labels()
        assert "trajmaster.check_backend" in layout.buttons()
    prefs().python_source = "MANAGED"
    assert "Not set up yet" in draw().labels()
    prefs().show_full_log = True
    draw()


def test_running_tasks_draw_progress_and_cancel_ends_them(setup_ops, tmp_path):
    """A setup and a download in flight (stand-in processes): the log tail, the progress bar, the
    Cancel buttons, and Cancel leaving one sentence."""
    env_setup = module("env_setup")
    prefs().python_source = "MANAGED"
    sleeper = [sys.executable, "-c", "import time; print('Collecting numpy', flush=True); time.sleep(60)"]
    for kind in ("SETUP", "DOWNLOAD"):
        activity = setup_ops.activities[kind]
        activity.task = env_setup.Task([env_setup.Step("Installing packages", sleeper)], tmp_path / f"{kind}.log")
        activity.task.start()
        activity.state = "running"
    progress = {"event": "progress", "protocol": 1, "time": 0, "stage": "downloading", "step": 2_000_000_000}
    setup_ops.activities["DOWNLOAD"].progress.feed(json.dumps({**progress, "total": 8_000_000_000, "fraction": 0.25}))
    while not setup_ops.activities["SETUP"].task.tail.lines():
        setup_ops.tick()
    layout = draw()
    labels = layout.labels()
    assert "Installing packages (step 1 of 1" in labels and "Collecting numpy" in labels
    assert ("progress", (0.25, "2.0 GB of 8.0 GB")) in layout.log
    assert [v for k, v in layout.log if k == "operator"].count(("trajmaster.cancel_setup_task", True)) == 2
    assert "trajmaster.download_weights" not in layout.buttons(), "no second download while one runs"
    for kind in ("SETUP", "DOWNLOAD"):
        assert bpy.ops.trajmaster.cancel_setup_task(kind=kind) == {"FINISHED"}
        assert setup_ops.activities[kind].state == "cancelled"
    assert setup_ops.activities["SETUP"].message.startswith("Set Up Backend was cancelled; the environment is not")
    assert setup_ops.activities["DOWNLOAD"].message.startswith("Download cancelled; what was fetched is kept")
    assert "Set Up Backend was cancelled" in draw().labels()


# --- online access ---------------------------------------------------------------------------------


def test_download_is_disabled_without_online_access(setup_ops):
    bpy.context.preferences.system.use_online_access = False
    assert bpy.app.online_access is False  # background bpy's default
    assert setup_ops.online_access() == (False, "Allow Online Access in Preferences > System to download.")
    assert not bpy.ops.trajmaster.download_weights.poll()
    assert not bpy.ops.trajmaster.setup_backend.poll(), "pip needs the network too"
    with pytest.raises(RuntimeError, match="Allow Online Access in Preferences > System"):
        bpy.ops.trajmaster.download_weights()
    layout = draw()
    assert layout.buttons()["trajmaster.download_weights"] is False
    assert "Allow Online Access in Preferences > System to download." in layout.labels()
    bpy.context.preferences.system.use_online_access = True
    assert bpy.ops.trajmaster.download_weights.poll()
    layout = draw()
    assert layout.buttons()["trajmaster.download_weights"] is True
    assert "Allow Online Access" not in layout.labels()


def test_download_without_huggingface_hub_is_one_sentence(setup_ops, tmp_path, monkeypatch):
    """The bpy environment's Python has the preview packages only: the download says what to do."""
    bpy.context.preferences.system.use_online_access = True
    prefs().weights_folder = str(tmp_path / "w")
    with pytest.raises(RuntimeError) as info:
        bpy.ops.trajmaster.download_weights()
    message = setup_ops.activities["DOWNLOAD"].message
    assert message == (
        f"The backend Python {sys.executable} cannot download (huggingface_hub is not installed): set up the "
        "backend with Full Model, or pip install huggingface_hub into that Python."
    )
    assert str(info.value).strip().endswith(message)
    assert "Traceback" not in str(info.value) and "\n" not in message


def test_download_prompt_model_is_its_own_button_and_download(setup_ops, tmp_path):
    """The optional prompt help model has its own button: it runs `download --only prompt` (not
    the 24 GB of weights), says the same sentence when the backend cannot download, and its
    cancel names its own button to resume."""
    bpy.context.preferences.system.use_online_access = True
    prefs().weights_folder = str(tmp_path / "w")
    layout = draw()
    assert [v for k, v in layout.log if k == "operator" and v[0] == "trajmaster.download_weights"] == [
        ("trajmaster.download_weights", True),
        ("trajmaster.download_weights", True),
    ]
    with pytest.raises(RuntimeError):
        bpy.ops.trajmaster.download_weights(what="PROMPT")
    activity = setup_ops.activities["DOWNLOAD"]
    (step,) = activity.task.steps
    assert step.argv[-4:] == ["--dest", str(tmp_path / "w"), "--only", "prompt"]
    assert step.title == "Downloading the prompt model"
    assert activity.message.startswith(f"The backend Python {sys.executable} cannot download (huggingface_hub")
    env_setup = module("env_setup")
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    activity.task = env_setup.Task([env_setup.Step("Downloading the prompt model", sleeper)], tmp_path / "d.log")
    activity.task.start()
    activity.state = "running"
    assert "trajmaster.download_weights" not in draw().buttons(), "one download at a time"
    assert bpy.ops.trajmaster.cancel_setup_task(kind="DOWNLOAD") == {"FINISHED"}
    assert activity.message == "Download cancelled; what was fetched is kept: press Download Prompt Model to resume."


# --- Check Backend ---------------------------------------------------------------------------------


def test_check_backend_reports_no_torch_in_a_clear_sentence(setup_ops, tmp_path):
    prefs().weights_folder = str(tmp_path / "weights")
    assert bpy.ops.trajmaster.check_backend() == {"FINISHED"}
    check = setup_ops.activities["CHECK"]
    assert check.state == "done" and check.python == sys.executable
    facts = dict(module("env_setup").doctor_facts(check.report))
    assert facts["torch"] == "not installed" and facts["GPU"] == "none visible" and facts["Weights"] == "not found"
    assert check.report["disk"]["folder"] == str(tmp_path / "weights"), "the weights folder reaches doctor"
    # A Preview Only Python is ready for previews, and told what the Full Model adds: no warnings.
    layout = draw()
    labels = layout.labels()
    assert "The preview engine is ready: set Engine to Preview in the TrajMaster panel and Generate." in labels
    assert "The Full Model would add the real model" in labels and "NVIDIA GPU" in labels
    assert "torch is not installed" not in labels and "weights were not found" not in labels


def test_check_backend_in_the_background_keeps_ticks_short(setup_ops):
    """As in the UI: the operator returns at once and the timer's tick follows the process."""
    setup_ops.synchronous = False
    setup_ops.max_tick_ms = setup_ops.max_finish_ms = 0.0
    assert bpy.ops.trajmaster.check_backend() == {"FINISHED"}
    check = setup_ops.activities["CHECK"]
    assert check.state == "running"
    assert "Checking the backend" in draw().labels()
    assert draw().buttons().get("trajmaster.cancel_setup_task") is True
    setup_ops.wait("CHECK", timeout=120)
    assert check.state == "done" and check.report is not None
    assert setup_ops.max_tick_ms < 10, f"a tick took {setup_ops.max_tick_ms:.1f} ms"
    assert setup_ops.max_finish_ms < 10, f"the last tick took {setup_ops.max_finish_ms:.1f} ms"


def test_check_backend_with_a_missing_python(setup_ops, monkeypatch, tmp_path):
    monkeypatch.setenv("TRAJMASTER_PYTHON", str(tmp_path / "nowhere" / "python3"))
    with pytest.raises(RuntimeError, match=r"does not exist or cannot be run; set up the managed environment"):
        bpy.ops.trajmaster.check_backend()
    assert "does not exist or cannot be run" in draw().labels()


def test_check_backend_with_a_python_without_the_backend(setup_ops, monkeypatch, tmp_path):
    fake = tmp_path / "python"
    fake.write_text(f'#!/bin/sh\ncd /\nexec {sys.executable} "$@"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("TRAJMASTER_PYTHON", str(fake))
    with pytest.raises(RuntimeError, match="cannot import the TrajMaster backend"):
        bpy.ops.trajmaster.check_backend()


# --- the managed environment, for real ---------------------------------------------------------------


def test_a_setup_that_cannot_start_leaves_a_ready_environment_ready(setup_ops, monkeypatch, tmp_path):
    preferences, env_setup, runner = module("preferences"), module("env_setup"), module("runner")
    user = tmp_path / "user"
    monkeypatch.setattr(preferences, "user_folder", lambda sub="", create=False: str(user / sub))
    monkeypatch.delenv("TRAJMASTER_PYTHON")
    env_dir = user / "backend-env"
    python = env_setup.env_python(env_dir)
    python.parent.mkdir(parents=True)
    python.write_text("")
    env_setup.mark_ready(env_dir, "PREVIEW", str(python), {"packages": {}})
    prefs().python_source = "MANAGED"
    monkeypatch.setattr(runner, "EXTENSION_ROOT", tmp_path / "damaged-extension")  # no pyproject.toml
    with pytest.raises(setup_ops.StartError, match="reinstall"):
        setup_ops.start_setup(bpy.context, "PREVIEW")
    assert preferences.backend_python() == str(python), "nothing ran, so the environment is as ready as before"


def test_set_up_a_preview_environment_then_its_python_runs_the_backend(setup_ops, monkeypatch, tmp_path, blend):
    """Blender's Python makes a venv, pip installs the preview extra (numpy, pillow, imageio-ffmpeg,
    jsonschema: needs the package index), doctor runs there, and the backend Python becomes it."""
    preferences = module("preferences")
    runner = module("runner")
    user = tmp_path / "user"
    monkeypatch.setattr(preferences, "user_folder", lambda sub="", create=False: str(user / sub))
    monkeypatch.delenv("TRAJMASTER_PYTHON")
    bpy.context.preferences.system.use_online_access = True
    prefs().python_source = "MANAGED"
    prefs().env_choice = "PREVIEW"
    try:
        result = bpy.ops.trajmaster.setup_backend()
    except RuntimeError as exc:
        log = user / "logs" / "backend-setup.log"
        tail = log.read_text()[-3000:] if log.exists() else "(no log)"
        pytest.fail(f"Set Up Backend failed (it needs the package index for pip): {exc}\n{tail}")
    assert result == {"FINISHED"}
    setup = setup_ops.activities["SETUP"]
    env_python = module("env_setup").env_python(user / "backend-env")
    assert setup.state == "done" and setup.message == "The Preview Only environment is set up."
    assert preferences.backend_python() == str(env_python), "the backend Python is now the managed one"
    log = (user / "logs" / "backend-setup.log").read_text()
    assert "Successfully installed" in log and "jsonschema" in log and log.rstrip().endswith("# done")
    assert setup_ops.activities["CHECK"].report["packages"]["torch"] is None
    labels = draw().labels()
    assert "Ready (Preview Only)" in labels
    # What it is ready for, and what the Full Model would add, in the preferences' own words.
    assert "The preview engine is ready" in labels and "choose Full Model above and press Update Backend" in labels
    assert "torch is not installed" not in labels and "weights were not found" not in labels

    # That Python runs the preview engine's validation on a job the add-on exported.
    scene = bpy.context.scene
    cam = scenes.camera(scene)
    scenes.shot(scene, cam, [scenes.keyframed(scene, "Walker", 1, 49)], 1, 49)
    job = tmp_path / "shot.json"
    assert bpy.ops.trajmaster.export_job(filepath=str(job)) == {"FINISHED"}
    done = subprocess.run(
        [str(env_python), "-m", "backend", "validate", str(job)],
        cwd=runner.EXTENSION_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "valid job, 1 entity" in done.stderr

    # A cancelled or failed setup leaves it not ready (the marker goes first).
    module("env_setup").mark_not_ready(user / "backend-env")
    with pytest.raises(preferences.BackendNotConfigured):
        preferences.backend_python()


# --- the settings reach the backend ------------------------------------------------------------------


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def test_memory_mode_and_weights_reach_the_backend_command_line(setup_ops, runner, blend, tmp_path, monkeypatch):
    monkeypatch.delenv("TRAJMASTER_WEIGHTS", raising=False)
    scene = bpy.context.scene
    cam = scenes.camera(scene)
    scenes.shot(scene, cam, [scenes.keyframed(scene, "Walker", 1, 49)], 1, 49)
    prefs().weights_folder = str(tmp_path / "weights")
    prefs().memory_mode = "low"

    # Background Blender: one `generate` per job.
    assert bpy.ops.trajmaster.generate() == {"FINISHED"}
    assert runner._supervisor.engine_args == ("--weights", str(tmp_path / "weights"), "--memory", "low")

    # The worker the UI uses: its command line, and a restart when a setting changes.
    runner.use_worker = True
    try:
        assert bpy.ops.trajmaster.generate() == {"FINISHED"}
        runner.wait(timeout=120)
        pid = runner.worker_pid()
        assert pid is not None
        argv = _cmdline(pid)
        assert argv[1:] == ["-m", "backend", "serve", "--weights", str(tmp_path / "weights"), "--memory", "low"]
        prefs().memory_mode = "auto"
        assert bpy.ops.trajmaster.generate() == {"FINISHED"}
        runner.wait(timeout=120)
        assert runner.worker_pid() != pid, "a new memory mode needs a new worker"
        assert _cmdline(runner.worker_pid())[1:] == ["-m", "backend", "serve", "--weights", str(tmp_path / "weights")]
        assert not runner.status.last_error
    finally:
        runner.shutdown()
