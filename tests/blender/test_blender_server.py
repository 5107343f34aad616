"""Takes made on a real TrajMaster team server, from real Blender (Run On: TrajMaster Server).

One server for this module: a Ray cluster of its own on 127.0.0.1 with the real application and
two preview replicas, run by the backend's Python (tests/server/local_server.py; Blender's Python
has no Ray), stopped when the module ends. The add-on has no backend at all here: no
TRAJMASTER_PYTHON, and the preferences point the local backend at a Python that does not exist.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import stat
import sys
import time
from pathlib import Path

import bpy
import pytest
import scenes
from conftest import MODULE

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))

from local_server import LocalServer
from proxy import Relay


def module(name):
    return importlib.import_module(f"{MODULE}.addon.{name}")


def prefs():
    return bpy.context.preferences.addons[MODULE].preferences


@pytest.fixture(scope="module")
def team_server(tmp_path_factory):
    server = LocalServer(tmp_path_factory.mktemp("team-server") / "state", replicas=2)
    yield server
    server.stop()


@pytest.fixture
def on_server(team_server, runner, monkeypatch):
    """The preferences set as a user sets them: Run On the server, its address, the token typed."""
    monkeypatch.delenv("TRAJMASTER_PYTHON", raising=False)
    monkeypatch.delenv("TRAJMASTER_TOKEN", raising=False)
    monkeypatch.delenv("TRAJMASTER_SERVER", raising=False)
    p = prefs()
    saved = p.python_source, p.python_path
    p.python_source, p.python_path = "CUSTOM", "/nonexistent/no-backend-here/python"
    p.run_on, p.server_url, p.server_token, p.server_token_file = "SERVER", team_server.url, team_server.token, ""
    team_server.pace(0.0)
    yield team_server
    runner.wait(timeout=120)
    runner.shutdown()
    team_server.pace(0.0)
    p.run_on, p.server_url, p.server_token, p.server_token_file = "LOCAL", "", "", ""
    p.python_source, p.python_path = saved


def one_entity_shot(start=1, end=49):
    scene = bpy.context.scene
    return scenes.shot(scene, scenes.camera(scene), [scenes.keyframed(scene, "Walker", start, end, y=2.0)], start, end)


def takes():
    compat = module("compat")
    editor = compat.sequencer_scene(bpy.context, bpy.context.scene).sequence_editor
    strips = compat.strips(editor) if editor else []
    return sorted((s for s in strips if "trajmaster" in s), key=lambda s: s.name)


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def follow(runner, each, seconds=180.0):
    """Tick like the UI's timer until the batch ends, calling each() between ticks."""
    deadline = time.monotonic() + seconds
    runner.status.max_tick_ms = 0.0
    while runner.busy():
        runner.tick()
        each()
        assert time.monotonic() < deadline, f"still running: {runner.status.stage} {runner.status.message}"
        time.sleep(0.05)
    # The ticks that only follow the server (not the ones that place a take) never wait on it.
    assert runner.status.max_tick_ms < 100, f"a timer tick took {runner.status.max_tick_ms:.0f} ms"


def test_a_take_is_made_on_the_server_with_no_local_backend_and_the_token_stays_out_of_files(
    on_server, blend, runner, capfd
):
    one_entity_shot(10, 58)
    assert bpy.ops.trajmaster.generate() == {"FINISHED"}
    folder = blend.parent / "trajmaster" / "Scene"
    assert files(folder) == ["Scene_take_001.job.json", "Scene_take_001.json", "Scene_take_001.mp4"]
    (strip,) = takes()
    assert strip.name == "Scene_take_001" and (strip.frame_final_start, strip.frame_final_end) == (10, 59)
    sidecar = json.loads((folder / "Scene_take_001.json").read_text())
    assert sidecar["server"]["url"] == on_server.url and sidecar["frames"] == 49
    assert sidecar["job_file"] == str(folder / "Scene_take_001.job.json")
    assert runner.status.message == "Added Scene_take_001" and runner.status.last_error == ""

    # Regenerate goes to the server too.
    module("compat").sequencer_scene(bpy.context, bpy.context.scene).sequence_editor.active_strip = strip
    assert bpy.ops.trajmaster.regenerate(new_seed=True) == {"FINISHED"}
    assert [s.name for s in takes()] == ["Scene_take_001", "Scene_take_002"]

    # The token is in none of the user's files, nor in what Blender printed; the typed one is in
    # its own file, readable by the user only, and not in Blender's saved preferences.
    bpy.ops.wm.save_mainfile()
    bpy.ops.wm.save_userpref()
    token = on_server.token.encode()
    userpref = Path(bpy.utils.user_resource("CONFIG")) / "userpref.blend"
    for path in [blend, userpref, *folder.iterdir()]:
        assert token not in path.read_bytes(), f"the token is in {path}"
    out, err = capfd.readouterr()
    assert on_server.token not in out + err
    token_file = Path(module("preferences").token_path())
    assert token_file.read_text().strip() == on_server.token
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600


def test_four_variations_run_two_at_a_time_on_the_two_replicas(on_server, blend, runner):
    one_entity_shot()
    bpy.context.scene.trajmaster_directing.variation_count = 4
    bpy.context.scene.trajmaster_directing.variation_varies = "seed"
    on_server.pace(0.05)
    runner.use_worker = True  # the UI's path: the operator returns at once, the timer follows
    assert bpy.ops.trajmaster.generate_variations() == {"FINISHED"}
    seen = {"busy": 0, "eta": [], "states": set(), "asked": 0.0}
    view = module("runner").server_view(bpy.context)[0]
    from backend.client import Client

    server = Client(on_server.url, on_server.token)

    def watch():
        view.want()  # the panel's own view keeps polling meanwhile (it must not get in the way)
        # The panel's view refreshes every few seconds, too seldom to catch a short overlap: ask
        # the server itself a few times a second.
        if time.monotonic() - seen["asked"] > 0.2:
            seen["asked"] = time.monotonic()
            replicas = server.status().get("replicas", [])
            seen["busy"] = max(seen["busy"], sum(r["state"] == "busy" for r in replicas))
        if runner.status.batch_eta_s is not None:
            seen["eta"].append(runner.status.batch_eta_s)
        seen["states"].add(tuple(e.state for e in runner.status.queue))

    follow(runner, watch)
    made = takes()
    assert [s.channel for s in made] == [1, 2, 3, 4] and [s.mute for s in made] == [False, True, True, True]
    assert runner.status.message == "Added 4 takes" and runner.status.last_error == ""
    assert seen["busy"] == 2, "the two replicas never ran two takes at once"
    # Two run at a time; the others wait in the server's queue and show as waiting, not running.
    # (A take whose replica has finished still shows as running while its files download, so a
    # third "running" may briefly overlap the next take's start: only the waiting ones are exact.)
    assert any(s.count("running") == 2 and s.count("queued") == 2 for s in seen["states"]), seen["states"]
    assert seen["eta"], "the batch showed no ETA"
    names = module("runner").server_take_names()
    assert names == {}, "nothing runs any more"
    folder = blend.parent / "trajmaster" / "Scene"
    sidecars = [json.loads((folder / f"Scene_take_00{k}.json").read_text()) for k in range(1, 5)]
    assert len({s["server"]["replica"]["replica"] for s in sidecars}) == 2


def test_generate_all_shots_on_the_server_puts_each_take_into_its_own_scene(on_server, blend, runner):
    one_entity_shot()
    alley = bpy.data.scenes.new("Alley")
    alley.render.fps, alley.render.fps_base = 24, 1.0
    scenes.shot(alley, scenes.camera(alley), [scenes.keyframed(alley, "Cat", 101, 172, y=4.0)], 101, 172)
    assert bpy.ops.trajmaster.generate_all_shots() == {"FINISHED"}
    for scene, name, span in ((alley, "Alley_take_001", (101, 173)), (bpy.context.scene, "Scene_take_001", (1, 50))):
        (strip,) = [s for s in module("compat").strips(scene.sequence_editor) if "trajmaster" in s]
        assert strip.name == name and (strip.frame_final_start, strip.frame_final_end) == span
        sidecar = json.loads((blend.parent / "trajmaster" / scene.name / f"{name}.json").read_text())
        assert sidecar["server"]["url"] == on_server.url
    assert runner.status.message == "Added 2 takes"


def test_cancel_stops_the_take_on_the_server_and_leaves_nothing(on_server, blend, runner):
    one_entity_shot()
    on_server.pace(0.3)
    runner.use_worker = True
    assert bpy.ops.trajmaster.generate() == {"FINISHED"}
    cancelled = []

    def cancel_when_rendering():
        if not cancelled and runner.status.stage == "rendering" and runner.status.step >= 2:
            assert bpy.ops.trajmaster.cancel() == {"FINISHED"}
            cancelled.append(time.monotonic())

    follow(runner, cancel_when_rendering)
    assert cancelled and time.monotonic() - cancelled[0] < 10
    assert "cancelled" in runner.status.message.lower() and runner.status.last_error == ""
    assert takes() == [] and files(blend.parent / "trajmaster" / "Scene") == []


def test_quitting_cancels_the_takes_on_the_server(on_server, blend, runner):
    """Blender quits (atexit and unregister call runner.shutdown()): nobody would place these takes,
    so they stop holding the team's replicas, and their reserved names are freed."""
    from backend.client import Client

    one_entity_shot()
    on_server.pace(0.3)
    runner.use_worker = True
    variations = bpy.context.scene.trajmaster_directing
    variations.variation_count, variations.variation_varies = 3, "seed"
    assert bpy.ops.trajmaster.generate_variations() == {"FINISHED"}
    deadline = time.monotonic() + 60
    while not (runner.status.stage == "rendering" and runner.status.step >= 2):
        runner.tick()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    ids = list(module("runner")._server.server_ids().values())
    assert len(ids) == 3
    t0 = time.monotonic()
    runner.shutdown()
    assert time.monotonic() - t0 < 4, "quitting waited on the server"
    client = Client(on_server.url, on_server.token)
    assert {client.job(i)["state"] for i in ids} == {"cancelled"}
    assert not runner.busy() and takes() == []
    assert files(blend.parent / "trajmaster" / "Scene") == []


def test_a_wrong_token_and_an_unreachable_server_are_one_sentence(on_server, blend, runner, tmp_path):
    one_entity_shot()
    server_ui = module("server_ui")
    assert bpy.ops.trajmaster.check_server() == {"FINISHED"}
    assert server_ui.check.ok
    assert server_ui.check.sentence.startswith(f"The server at {on_server.url} accepted the token: 2 preview replicas")

    prefs().server_token = "not-the-token"
    assert server_ui.check.sentence == "", "what Check Server said was about the previous token"
    wrong = (
        f"The server at {on_server.url} did not accept the token in the add-on's preferences; use the token in the "
        "server's token file."
    )
    assert bpy.ops.trajmaster.check_server() == {"FINISHED"}
    assert (server_ui.check.ok, server_ui.check.sentence) == (False, wrong)
    with pytest.raises(RuntimeError, match=re.escape(wrong)):
        bpy.ops.trajmaster.generate()
    assert runner.status.last_error == wrong
    assert files(blend.parent / "trajmaster" / "Scene") == [], "the reserved job file is removed"

    # A token file wins over the typed token, and says which token was refused.
    (tmp_path / "token").write_text("also-wrong\n")
    prefs().server_token_file = str(tmp_path / "token")
    assert bpy.ops.trajmaster.check_server() == {"FINISHED"}
    assert f"did not accept the token in {tmp_path / 'token'};" in server_ui.check.sentence
    (tmp_path / "token").write_text(on_server.token + "\n")
    assert bpy.ops.trajmaster.check_server() == {"FINISHED"} and server_ui.check.ok
    # $TRAJMASTER_TOKEN wins over both, and is named when refused.
    os.environ["TRAJMASTER_TOKEN"] = "from-the-environment"
    try:
        assert bpy.ops.trajmaster.check_server() == {"FINISHED"}
        assert "did not accept the token in $TRAJMASTER_TOKEN;" in server_ui.check.sentence
    finally:
        del os.environ["TRAJMASTER_TOKEN"]

    relay = Relay(on_server.port)
    relay.cut()  # nothing listens there any more: connection refused
    try:
        prefs().server_url = f"http://127.0.0.1:{relay.port}"
        unreachable = (
            f"The server at http://127.0.0.1:{relay.port} is not answering (connection refused); check the address "
            "and that the server is running."
        )
        assert bpy.ops.trajmaster.check_server() == {"FINISHED"}
        assert server_ui.check.sentence == unreachable
        with pytest.raises(RuntimeError, match=re.escape(unreachable)):
            bpy.ops.trajmaster.generate()
        assert runner.status.last_error == unreachable
    finally:
        relay.close()
    # The server's refusal of another engine, in the panel's words.
    prefs().server_url = on_server.url
    bpy.context.scene.trajmaster.engine = "COGVIDEOX"
    engine = "This server runs the preview engine; the job asks for cogvideox. Set Engine in the Model section"
    with pytest.raises(RuntimeError, match=re.escape(engine)):
        bpy.ops.trajmaster.generate()
    bpy.context.scene.trajmaster.engine = "PREVIEW"
    prefs().server_url = ""
    with pytest.raises(RuntimeError, match="No TrajMaster server is set: enter its address in Edit > Preferences"):
        bpy.ops.trajmaster.generate()
    assert takes() == []


def test_a_connection_lost_mid_take_is_rejoined_and_the_take_arrives(on_server, blend, runner):
    relay = Relay(on_server.port)
    prefs().server_url = f"http://127.0.0.1:{relay.port}"
    one_entity_shot()
    on_server.pace(0.1)
    runner.use_worker = True
    assert bpy.ops.trajmaster.generate() == {"FINISHED"}
    cut, messages = [], []

    def interrupt():
        if not cut and runner.status.stage == "rendering" and runner.status.step >= 5:
            relay.cut()
            cut.append(time.monotonic())
        elif len(cut) == 1 and time.monotonic() - cut[0] > 4:
            relay.restore()
            cut.append(time.monotonic())
        if runner.status.stage == "reconnecting":
            messages.append(runner.status.message)

    try:
        follow(runner, interrupt)
    finally:
        relay.close()
    assert len(cut) == 2
    assert messages and "the job goes on there, trying to reach it again" in messages[0], messages[:1]
    assert runner.status.message == "Added Scene_take_001" and runner.status.last_error == ""
    (strip,) = takes()
    assert Path(bpy.path.abspath(strip.filepath)).is_file()


def test_a_server_restart_that_lost_the_take_says_so(on_server, blend, runner):
    # Last: the server restarts.
    one_entity_shot()
    on_server.pace(0.3)
    runner.use_worker = True
    assert bpy.ops.trajmaster.generate() == {"FINISHED"}
    restarted = []

    def restart():
        if not restarted and runner.status.stage == "rendering" and runner.status.step >= 2:
            restarted.append(True)
            on_server.restart()

    follow(runner, restart, seconds=300)
    assert restarted
    assert "restarted" in runner.status.last_error and "submit it again" in runner.status.last_error
    assert takes() == [] and files(blend.parent / "trajmaster" / "Scene") == []
    assert os.environ.get("TRAJMASTER_PYTHON") is None
