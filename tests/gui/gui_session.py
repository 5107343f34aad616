"""Runs inside a real Blender window (blender-gui run tests/gui/gui_session.py -- CONFIG.json).

Started by tests/gui/test_gui_window.py, which reads the result file this script writes. The script
installs the built extension with Blender's own installer, opens the TrajMaster tab of the 3D
viewport's sidebar, sets up a shot, presses Generate twice through the operators the panel's
buttons call (the worker + timer path the UI uses, not background Blender's one-shot path),
cancels the first run and lets the second finish, and takes screenshots along the way.

Steps are a generator driven by a bpy.app.timers callback: Blender's event loop keeps running
between steps (redraws, the add-on's own timer, the backend's events), which is the point of a
real-window test. Every step has a deadline; the result file is rewritten at the start of each
step so that a hang is reported by name even when Blender has to be killed from outside.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import bpy

# Blender's stdout is a pipe here: line buffering, or os._exit() would drop the last lines.
sys.stdout.reconfigure(line_buffering=True)

MODULE = "bl_ext.user_default.trajmaster_previz"
CATEGORY = "TrajMaster"
POLL_S = 0.05

PROMPTS = (
    "a tall man in a long grey coat and black boots walking slowly with both hands deep in his pockets",
    "a large brown bear with thick shaggy fur and a heavy build lumbering forward on all four paws",
    "a small red robot with round glowing eyes and short metal legs rolling steadily across the ground",
)
LOCATION = "a quiet cobblestone city square at dusk with old stone buildings"
SHOT_START, SHOT_END = 1, 97

CONFIG: dict[str, Any] = json.loads(Path(sys.argv[sys.argv.index("--") + 1]).read_text())
RESULTS: dict[str, Any] = {"ok": False, "step": "start", "steps": [], "screenshots": {}, "notes": []}
SCREENS = Path(CONFIG["screens"])
WORK = Path(CONFIG["work"])


GRABS: list[subprocess.Popen] = []


class StepFailed(AssertionError):
    pass


def log(message: str) -> None:
    print(f"[gui] {message}", flush=True)


def save_results() -> None:
    path = Path(CONFIG["results"])
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(RESULTS, indent=1, default=str))
    tmp.replace(path)


def check(condition: bool, message: str) -> None:
    if not condition:
        raise StepFailed(message)


# --- the window -------------------------------------------------------------------------------


def window() -> bpy.types.Window:
    return bpy.context.window_manager.windows[0]


def area_of(kind: str) -> bpy.types.Area:
    for area in window().screen.areas:
        if area.type == kind:
            return area
    raise StepFailed(f"no {kind} area in the window")


def region_of(area: bpy.types.Area, kind: str) -> bpy.types.Region:
    for region in area.regions:
        if region.type == kind:
            return region
    raise StepFailed(f"no {kind} region in the {area.type} area")


def override(area: bpy.types.Area | None = None, region: str = "WINDOW") -> Any:
    """The context a click in that area would give an operator."""
    members: dict[str, Any] = {"window": window(), "screen": window().screen}
    if area is not None:
        members.update(area=area, region=region_of(area, region))
    return bpy.context.temp_override(**members)


def screen_xy(region: bpy.types.Region, x: float, y: float) -> tuple[int, int]:
    """Region coordinates (origin bottom left, as Blender has them) to X screen coordinates."""
    win = window()
    return int(win.x + region.x + x), int(win.y + win.height - (region.y + y))


def xdotool(*args: str) -> None:
    subprocess.run(["xdotool", *args], check=True, timeout=10)


def park_mouse() -> None:
    """Away from buttons, so no hover highlight or tooltip ends up in a screenshot: the status
    bar's empty left end, at the bottom of the window."""
    win = window()
    xdotool("mousemove", str(win.x + 4), str(win.y + win.height - 4))


def screenshot(name: str, crop: tuple[int, int, int, int] | None = None, wait: bool = True) -> None:
    """The X screen (or a crop of it: x, y, width, height in screen pixels) to SCREENS/name.png.

    With wait=False the grab runs beside Blender (half a second of `import` would otherwise stall
    the main thread, and with it the timer whose progress the test is watching)."""
    out = SCREENS / f"{name}.png"
    cmd = ["import", "-window", "root"]
    if crop is not None:
        x, y, w, h = crop
        cmd += ["-crop", f"{w}x{h}+{x}+{y}", "+repage"]
    if wait:
        subprocess.run([*cmd, str(out)], check=True, timeout=30)
    else:
        GRABS.append(subprocess.Popen([*cmd, str(out)]))
    RESULTS["screenshots"][name] = str(out)
    log(f"screenshot {out.name}")


def region_crop(region: bpy.types.Region, top: int = 0, bottom: int | None = None) -> tuple[int, int, int, int]:
    """A region's rectangle on screen; `top`/`bottom` cut it to pixel rows counted from its top."""
    x, y = screen_xy(region, 0, region.height)
    height = (region.height if bottom is None else min(bottom, region.height)) - top
    return x, y + top, region.width, height


def area_crop(area: bpy.types.Area) -> tuple[int, int, int, int]:
    win = window()
    return win.x + area.x, win.y + win.height - (area.y + area.height), area.width, area.height


def redraw_all() -> None:
    for area in window().screen.areas:
        area.tag_redraw()


def settle(seconds: float = 0.4, redraw: bool = False) -> Iterator[float]:
    """Let Blender process events and redraw before the next look at the screen. Software OpenGL
    takes a good part of a second for the whole window, so only ask for a full redraw before a
    screenshot; input events redraw what they change by themselves."""
    if redraw:
        redraw_all()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        yield POLL_S


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> Iterator[float]:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise StepFailed(f"timed out after {timeout:.0f} s waiting for {what}")
        yield POLL_S


def show_category(area: bpy.types.Area, category: str) -> Iterator[float]:
    """Open the sidebar of `area` on the tab `category`.

    The UI region's active_panel_category is read-only, and Ctrl+Tab or Ctrl+wheel reach the
    viewport's own keymap (Ctrl+Tab opens the mode pie menu, which then eats the next clicks), so
    the tab is clicked as a user would: down the tab strip, checking after each click (the tabs'
    positions are not in the API)."""
    area.spaces.active.show_region_ui = True
    yield from settle(0.3)
    ui = region_of(area, "UI")
    check(ui.width > 1, f"the sidebar of the {area.type} area did not open")
    seen: list[str] = [ui.active_panel_category]
    tabs_x = ui.width - 10  # the tab strip is the sidebar's right edge
    for y in range(ui.height - 10, 0, -20):  # tabs are taller than 20 px: none is skipped
        if seen[-1] == category:
            break
        sx, sy = screen_xy(ui, tabs_x, y)
        # Blender makes the region under the mouse active on motion: move, let it notice, then click.
        xdotool("mousemove", str(sx), str(sy))
        yield from settle(0.1)
        xdotool("click", "1")
        yield from settle(0.1)
        if ui.active_panel_category != seen[-1]:
            seen.append(ui.active_panel_category)
    park_mouse()
    if seen[-1] == category:
        return
    raise StepFailed(f"could not switch the {area.type} sidebar to the {category} tab (saw {seen})")


def widen_sidebar(area: bpy.types.Area, width: int) -> Iterator[float]:
    """Drag the sidebar's left edge so prompts are readable (best effort: no API sets a region's
    width, and a drag sometimes falls short, so up to three tries)."""
    ui = region_of(area, "UI")
    for _ in range(3):
        if ui.width >= width - 4:
            break
        x, y = screen_xy(ui, 2, ui.height // 2)
        # Blender finds the edge's drag zone on mouse motion: hover it first, then press and drag.
        for dx in (6, 3, 2):
            xdotool("mousemove", str(x + dx - 2), str(y))
            yield from settle(0.1)
        xdotool("mousedown", "1")
        yield from settle(0.1)
        for i in range(1, 11):
            xdotool("mousemove", str(x - (width - ui.width) * i // 10), str(y))
            yield from settle(0.05)
        xdotool("mouseup", "1")
        park_mouse()
        yield from settle(0.3)
    RESULTS["notes"].append(f"sidebar width {ui.width} px (asked for {width})")


# --- sections of the N-panel ---------------------------------------------------------------------
#
# Panel positions are not in Blender's API, so for screenshots of one section the test adds thin
# magenta bars between the sections (its own header-less sub-panels at chosen bl_order values) and
# cuts the sidebar's screenshot at them. They are registered only for those screenshots.

MAIN_PANEL = "TRAJMASTER_PT_main"
# bl_order of each bar: the add-on's sub-panels are Entities 10, Generate 11, Presets 12, Viewport 15,
# Model 20. A bar of the same order as a panel comes after it (Blender keeps registration order
# among equal orders, and the bars are registered last).
MARKERS = (1, 10, 11, 13, 16, 21)
# section screenshot -> (bar above it or None for the sidebar's top, bar below it or None for its bottom)
SECTIONS = {
    "gui-shot": (None, 1),
    "gui-entities": (1, 10),
    "gui-generate": (10, 11),
    "gui-presets": (11, 13),
    "gui-viewport": (13, 16),
    "gui-model": (16, 21),
}
_marker_classes: list[type] = []


def _draw_marker(self: bpy.types.Panel, context: bpy.types.Context) -> None:
    self.layout.prop(context.window_manager, "trajmaster_gui_marker", text="")


def add_markers(orders: tuple[int, ...] = MARKERS) -> None:
    bpy.types.WindowManager.trajmaster_gui_marker = bpy.props.FloatVectorProperty(
        subtype="COLOR", size=3, min=0.0, max=1.0, default=(1.0, 0.0, 1.0)
    )
    for order in orders:
        cls = type(
            f"TRAJMASTERGUI_PT_marker_{order}",
            (bpy.types.Panel,),
            {
                "bl_space_type": "VIEW_3D",
                "bl_region_type": "UI",
                "bl_category": CATEGORY,
                "bl_label": "",
                "bl_parent_id": MAIN_PANEL,
                "bl_order": order,
                "bl_options": {"HIDE_HEADER"},
                "draw": _draw_marker,
            },
        )
        bpy.utils.register_class(cls)
        _marker_classes.append(cls)


def show_markers(ui: bpy.types.Region, timeout: float = 20.0) -> Iterator[float]:
    """Add the bars and wait until the sidebar shows them all: on a busy machine software OpenGL
    can take seconds to redraw the window, and a screenshot taken earlier shows no bars."""
    add_markers()
    probe = SCREENS / "full-markers.png"
    end = time.monotonic() + timeout
    while True:
        yield from settle(0.5, redraw=True)
        screenshot(probe.stem, region_crop(ui))
        if len(magenta_bands(probe)) >= len(MARKERS) or time.monotonic() > end:
            break
    RESULTS["screenshots"].pop(probe.stem, None)
    check(len(magenta_bands(probe)) >= len(MARKERS), f"the section bars did not show within {timeout:.0f} s")


def remove_markers() -> None:
    while _marker_classes:
        bpy.utils.unregister_class(_marker_classes.pop())
    del bpy.types.WindowManager.trajmaster_gui_marker


def magenta_bands(png: Path) -> list[tuple[int, int]]:
    """Rows (top, bottom; from the image's top) of the magenta bars in a sidebar screenshot."""
    import numpy as np  # Blender's own Python has numpy

    image = bpy.data.images.load(str(png), check_existing=False)
    try:
        width, height = image.size
        pixels = np.empty(width * height * 4, dtype=np.float32)
        image.pixels.foreach_get(pixels)
    finally:
        bpy.data.images.remove(image)
    rgb = pixels.reshape(height, width, 4)[::-1, :, :3]  # Blender's rows start at the bottom
    magenta = (rgb[..., 0] > 0.9) & (rgb[..., 1] < 0.1) & (rgb[..., 2] > 0.9)
    rows = magenta.sum(axis=1) > 0.3 * width
    bands: list[tuple[int, int]] = []
    for y in np.flatnonzero(rows):
        if bands and y == bands[-1][1] + 1:
            bands[-1] = (bands[-1][0], int(y))
        else:
            bands.append((int(y), int(y)))
    return bands


def cut_sections(full: Path, names: tuple[str, ...]) -> None:
    """Cut the named sections out of a sidebar screenshot taken with the bars in place."""
    bands = magenta_bands(full)
    check(len(bands) == len(MARKERS), f"found {len(bands)} section bars in {full.name}, expected {len(MARKERS)}")
    row = dict(zip(MARKERS, bands, strict=True))
    height = int(
        subprocess.run(["identify", "-format", "%h", str(full)], capture_output=True, text=True, check=True).stdout
    )
    for name in names:
        above, below = SECTIONS[name]
        top = 0 if above is None else row[above][1] + 4
        bottom = height if below is None else row[below][0] - 4
        if bottom - top < 24:
            RESULTS["notes"].append(f"{name}: that section is empty here")
            continue
        out = SCREENS / f"{name}.png"
        subprocess.run(
            ["convert", str(full), "-crop", f"10000x{bottom - top}+0+{top}", "+repage", str(out)],
            check=True,
            timeout=30,
        )
        RESULTS["screenshots"][name] = str(out)


def toggle_model_panel(ui: bpy.types.Region, want_open: bool) -> Iterator[float]:
    """Click the Model sub-panel's header (closed by default), found just below the bar 16."""
    full = SCREENS / "full-sections.png"
    for _ in range(10):  # the bars were just registered: a busy machine redraws them late
        screenshot(full.stem, region_crop(ui))
        bands = dict(zip(MARKERS, magenta_bands(full), strict=False))
        if len(bands) == len(MARKERS):
            break
        yield from settle(0.5, redraw=True)
    check(16 in bands and 21 in bands, "the section bars around the Model panel are not on screen")
    closed_gap = 60  # a closed panel is a header (about 25 px) and the margins
    if (bands[21][0] - bands[16][1] > closed_gap) == want_open:
        return
    x, top = screen_xy(ui, 60, ui.height)
    # Blender makes the region under the mouse active on motion: move, let it notice, then click.
    xdotool("mousemove", str(x), str(top + bands[16][1] + 22))
    yield from settle(0.3)
    xdotool("click", "1")
    yield from settle(0.2)
    park_mouse()
    # A busy machine's software OpenGL may take seconds to redraw: look again until it shows.
    end = time.monotonic() + 15
    while True:
        yield from settle(0.6, redraw=True)
        screenshot(full.stem, region_crop(ui))
        bands = dict(zip(MARKERS, magenta_bands(full), strict=False))
        # Opened, the panel pushes the bar below it down (or off the bottom of the sidebar).
        is_open = 21 not in bands or bands[21][0] - bands[16][1] > closed_gap
        if is_open == want_open or time.monotonic() > end:
            break
    RESULTS["notes"].append(f"Model panel open: {is_open} (wanted {want_open})")


# --- the add-on ---------------------------------------------------------------------------------


def addon(name: str) -> Any:
    return importlib.import_module(f"{MODULE}.addon.{name}")


def install() -> None:
    user = os.environ.get("BLENDER_USER_EXTENSIONS", "")
    # blender-gui points Blender's user folders at a fresh temporary folder; never install into a real one.
    check(user.startswith("/tmp/"), f"BLENDER_USER_EXTENSIONS is {user!r}, not a temporary folder")
    with override(area_of("VIEW_3D")):
        result = bpy.ops.extensions.package_install_files(
            filepath=CONFIG["zip"], repo="user_default", enable_on_install=True
        )
    check(result == {"FINISHED"}, f"package_install_files returned {result}")
    check(MODULE in bpy.context.preferences.addons, "the extension was installed but is not enabled")


def set_up_backend() -> Iterator[float]:
    """What the user guide tells a new user to do: allow online access, choose Preview Only and
    press Set Up Backend; the managed environment is built with this Blender's own Python while
    the log streams into the preferences."""
    setup_ops, preferences = addon("setup_ops"), addon("preferences")
    os.environ.pop("TRAJMASTER_PYTHON", None)  # it would win over the preference
    bpy.context.preferences.system.use_online_access = True
    check(bpy.app.online_access, "ticking Allow Online Access did not allow it for this session")
    prefs = preferences.preferences()
    prefs.python_source, prefs.env_choice = "MANAGED", "PREVIEW"
    with override(area_of("VIEW_3D")):
        result = bpy.ops.trajmaster.setup_backend()
    activity = setup_ops.activities[setup_ops.SETUP]
    check(result == {"FINISHED"}, f"Set Up Backend returned {result}: {activity.message}")
    seen: list[int] = []  # log lines shown, sampled as the timer runs: the log must stream, not arrive at the end
    area = area_of("VIEW_3D")  # the big area shows the preferences for a while
    area.type = "PREFERENCES"
    show_addon_preferences()
    shot = False
    deadline = time.monotonic() + CONFIG.get("setup_timeout", 300)
    while activity.running:
        check(time.monotonic() < deadline, f"Set Up Backend did not finish: {activity.message}")
        count = len(activity.task.tail.lines(10_000)) if activity.task else 0
        if not seen or count != seen[-1]:
            seen.append(count)
        if count >= 3 and not shot:
            park_mouse()
            yield from settle(0.3, redraw=True)
            screenshot("gui-setup-running", area_crop(area))
            shot = True
        yield POLL_S * 4
    RESULTS["setup"] = {
        "state": activity.state,
        "message": activity.message,
        "log_counts": seen,
        "python": activity.python,
        "log": activity.log_path,
        "seconds": round(time.monotonic() - deadline + CONFIG.get("setup_timeout", 300), 1),
        "max_tick_ms": setup_ops.max_tick_ms,
    }
    check(activity.state == "done", f"Set Up Backend ended {activity.state}: {activity.message}")
    python = preferences.backend_python()
    RESULTS["setup"]["backend_python"] = python
    area.type = "VIEW_3D"
    # Generate runs that Python through paced_backend.py (see there: the preview engine is too quick
    # to watch); the add-on reads TRAJMASTER_PYTHON when Generate starts.
    launcher = WORK / "backend-python"
    launcher.write_text(
        "#!/bin/sh\n"
        f"export TRAJMASTER_GUI_STEP_DELAY={CONFIG.get('step_delay', 0.06)}\n"
        f'exec {python} {Path(__file__).with_name("paced_backend.py")} "$@"\n'
    )
    launcher.chmod(0o755)
    os.environ["TRAJMASTER_PYTHON"] = str(launcher)


def has_operator(idname: str) -> bool:
    category, name = idname.split(".")
    return hasattr(bpy.types, f"{category.upper()}_OT_{name}")


def keyframed_empty(
    scene: bpy.types.Scene, name: str, start: tuple[float, float], end: tuple[float, float], yaw: tuple[float, float]
) -> bpy.types.Object:
    obj = bpy.data.objects.new(name, None)
    obj.empty_display_type = "ARROWS"
    scene.collection.objects.link(obj)
    for frame, (x, y), angle in ((SHOT_START, start, yaw[0]), (SHOT_END, end, yaw[1])):
        obj.location = (x, y, 0.0)
        obj.rotation_euler = (0.0, 0.0, angle)
        obj.keyframe_insert("location", frame=frame)
        obj.keyframe_insert("rotation_euler", frame=frame)
    return obj


def build_shot() -> str:
    """A three-entity shot: from the example presets when the add-on has them, else built here."""
    scene = bpy.context.scene
    scene.render.fps = 24
    scene.frame_start, scene.frame_end = SHOT_START, SHOT_END
    for obj in list(scene.objects):  # the start-up file's cube, light and camera
        bpy.data.objects.remove(obj)
    if has_operator("trajmaster.load_example_shot"):
        try:
            with override(area_of("VIEW_3D"), "UI"):
                bpy.ops.trajmaster.load_example_shot(name="demo")
            if scene.trajmaster.entities:
                return "preset demo"
        except (TypeError, RuntimeError) as exc:
            RESULTS["notes"].append(f"load_example_shot(name='demo') failed ({exc}); built the shot by hand")
    cam = bpy.data.objects.new("ShotCam", bpy.data.cameras.new("ShotCam"))
    scene.collection.objects.link(cam)
    scene.camera = cam
    cam.location = (0.0, -9.0, 1.7)
    cam.rotation_euler = (math.radians(84), 0.0, 0.0)
    # Linear keys: an even pace, inside the 1-3 m/s the model was trained on (no easing peaks).
    bpy.context.preferences.edit.keyframe_new_interpolation_type = "LINEAR"
    walker = keyframed_empty(scene, "Walker", (-2.0, 0.0), (1.5, 1.0), (-math.pi / 2, -math.pi / 2))
    bear = keyframed_empty(scene, "Bear", (2.0, 3.0), (-1.0, 2.5), (math.pi / 2, math.pi / 2))
    robot = keyframed_empty(scene, "Robot", (0.5, -2.0), (2.0, 0.5), (0.0, -math.pi / 4))
    settings = scene.trajmaster
    settings.camera = cam
    settings.location_prompt = LOCATION
    view3d = area_of("VIEW_3D")
    for obj, prompt in zip((walker, bear, robot), PROMPTS, strict=True):
        bpy.context.view_layer.objects.active = obj
        with override(view3d, "UI"):
            # The panel's + button: it picks up the active empty.
            check(bpy.ops.trajmaster.entity_add() == {"FINISHED"}, "Add Entity failed")
        settings.entities[settings.active_entity_index].prompt = prompt
    settings.active_entity_index = 0
    return "built by the test"


def take_strips() -> list[Any]:
    editor = bpy.context.scene.sequence_editor
    if editor is None:
        return []
    strips = editor.strips if hasattr(editor, "strips") else editor.sequences
    return [s for s in strips if "trajmaster" in s]


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# --- the scenario -------------------------------------------------------------------------------


def step(name: str) -> None:
    RESULTS["step"] = name
    RESULTS["steps"].append({"name": name, "t": round(time.monotonic() - T0, 2)})
    save_results()
    log(f"step: {name}")


def generate_and_watch(label: str, stop_after: int | None) -> Iterator[float]:
    """Press Generate; record every change of the status the panel draws until the job ends.
    With `stop_after`, press Cancel once that many frames are rendered; else take the
    mid-generation screenshot half way."""
    runner = addon("runner")
    view3d = area_of("VIEW_3D")
    with override(view3d, "UI"):
        result = bpy.ops.trajmaster.generate("INVOKE_DEFAULT")
    check(result == {"FINISHED"}, f"Generate returned {result}; last error: {runner.status.last_error}")
    check(runner.busy(), "Generate returned but no job is running (did it run synchronously?)")
    samples: list[dict[str, Any]] = []
    started = time.monotonic()
    shot_taken = cancelled = False
    while runner.busy():
        if time.monotonic() - started > CONFIG.get("job_timeout", 90):
            raise StepFailed(
                f"the {label} generation did not end within {CONFIG.get('job_timeout', 90)} s "
                f"(last status: {runner.status.stage} {runner.status.step}/{runner.status.total})"
            )
        s = runner.status
        sample = {
            "t": round(time.monotonic() - started, 2),
            "state": s.state,
            "stage": s.stage,
            "step": s.step,
            "total": s.total,
            "fraction": round(s.fraction, 4),
        }
        if not samples or {k: v for k, v in sample.items() if k != "t"} != {
            k: v for k, v in samples[-1].items() if k != "t"
        }:
            samples.append(sample)
        if stop_after is not None and not cancelled and s.stage == "rendering" and s.step >= stop_after:
            with override(view3d, "UI"):
                check(bpy.ops.trajmaster.cancel("INVOKE_DEFAULT") == {"FINISHED"}, "Cancel did not run")
            cancelled = True
            RESULTS[f"{label}_cancel_at"] = s.step
        if stop_after is None and not shot_taken and s.stage == "rendering" and s.total and s.step >= s.total // 3:
            screenshot("full-progress", region_crop(region_of(view3d, "UI")), wait=False)
            shot_taken = True
            RESULTS["progress_screenshot_step"] = s.step
        yield POLL_S
    for grab in GRABS:
        grab.wait(timeout=30)
    GRABS.clear()
    RESULTS[f"{label}_samples"] = samples
    RESULTS[f"{label}_seconds"] = round(time.monotonic() - started, 2)
    RESULTS[f"{label}_message"] = runner.status.message
    RESULTS[f"{label}_error"] = runner.status.last_error
    yield from settle(0.5, redraw=True)


def scenario() -> Iterator[float]:
    step("install the extension")
    install()

    step("set up the backend")
    yield from set_up_backend()
    runner = addon("runner")
    view3d = area_of("VIEW_3D")

    # A sidebar with its own background (not drawn over the viewport): readable screenshots, and
    # the empty space below the panels can be trimmed off.
    bpy.context.preferences.system.use_region_overlap = False

    step("save the file")
    with override(view3d):
        bpy.ops.wm.save_as_mainfile(filepath=str(WORK / "shot.blend"))

    step("set up the shot")
    RESULTS["shot_source"] = build_shot()
    with override(view3d):
        bpy.ops.wm.save_mainfile()

    step("open the TrajMaster tab")
    yield from show_category(view3d, CATEGORY)
    yield from widen_sidebar(view3d, 380)
    ui = region_of(view3d, "UI")
    RESULTS["sidebar"] = {"category": ui.active_panel_category, "width": ui.width, "height": ui.height}

    step("check the shot")
    with override(view3d, "UI"):
        check(
            bpy.ops.trajmaster.check_shot("INVOKE_DEFAULT") == {"FINISHED"},
            f"Check Shot failed: {runner.status.last_error}",
        )
    RESULTS["findings"] = [f.get("message") for f in runner.findings_for(bpy.context.scene)]
    yield from settle(0.5, redraw=True)
    screenshot("gui-npanel", region_crop(ui))
    screenshot("gui-window")

    step("show the overlay")
    yield from show_overlay(view3d)

    step("screenshot each section")
    yield from show_markers(ui)
    yield from toggle_model_panel(ui, want_open=True)
    cut_sections(
        SCREENS / "full-sections.png", ("gui-shot", "gui-entities", "gui-presets", "gui-viewport", "gui-model")
    )
    # Closed again, so that Generate and its progress bar stay on screen below it.
    yield from toggle_model_panel(ui, want_open=False)

    folder = WORK / "trajmaster" / bpy.context.scene.name
    RESULTS["take_folder"] = str(folder)

    step("generate, then cancel")
    yield from generate_and_watch("cancelled", stop_after=CONFIG.get("cancel_after", 5))
    RESULTS["cancelled_files"] = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
    RESULTS["cancelled_strips"] = [s.name for s in take_strips()]
    RESULTS["worker_pid"] = runner.worker_pid()
    screenshot("full-cancelled", region_crop(ui))
    cut_sections(SCREENS / "full-cancelled.png", ("gui-generate",))
    Path(RESULTS["screenshots"].pop("gui-generate")).replace(SCREENS / "gui-cancelled.png")
    RESULTS["screenshots"]["gui-cancelled"] = str(SCREENS / "gui-cancelled.png")

    step("generate to the end")
    yield from generate_and_watch("finished", stop_after=None)
    RESULTS["finished_files"] = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
    RESULTS["worker_pid_after"] = runner.worker_pid()
    strips = take_strips()
    RESULTS["strips"] = [
        {
            "name": s.name,
            "type": s.type,
            "channel": s.channel,
            "start": s.frame_final_start,
            "end": s.frame_final_end,
            "mute": s.mute,
            "filepath": bpy.path.abspath(s.filepath),
        }
        for s in strips
    ]
    RESULTS["shot_range"] = [bpy.context.scene.trajmaster.frame_start, bpy.context.scene.trajmaster.frame_end]
    RESULTS["max_tick_ms"] = runner.status.max_tick_ms
    RESULTS["max_place_ms"] = runner.status.max_place_ms
    for stage in ("progress", "finished"):
        if stage == "finished":
            screenshot("full-finished", region_crop(ui))
        cut_sections(SCREENS / f"full-{stage}.png", ("gui-generate",))
        Path(RESULTS["screenshots"].pop("gui-generate")).replace(SCREENS / f"gui-{stage}.png")
        RESULTS["screenshots"][f"gui-{stage}"] = str(SCREENS / f"gui-{stage}.png")
    remove_markers()

    step("show the take in the sequencer")
    yield from show_sequencer(strips)

    step("an error stays in view under Generate")
    yield from error_under_generate()

    step("double-click Generate")
    yield from double_click_generate()

    step("edit a prompt in the prompt editor")
    yield from show_prompt_editor()

    step("search the presets for a word of their text")
    yield from search_presets()

    step("show the take fitted to an HD frame")
    yield from show_fitted_take()

    step("show the add-on's preferences")
    yield from show_preferences()

    yield from the_panel_follows_the_file()

    yield from choosing_between_takes()

    step("quit")
    pid = runner.worker_pid()
    runner.shutdown()  # what unregister()/atexit do on a normal quit; os._exit() below skips atexit
    if pid is not None:
        yield from wait_until(lambda: not pid_alive(pid), 10, f"the backend worker (pid {pid}) to exit")
    RESULTS["ok"] = True


def show_overlay(view3d: bpy.types.Area) -> Iterator[float]:
    """The viewport with the add-on's overlay (paths, slots, the model's camera), seen from above
    and behind the camera. Skipped, with a note, by an add-on without the overlay."""
    settings = bpy.context.scene.trajmaster
    if not hasattr(settings, "show_overlay"):
        RESULTS["notes"].append("no overlay in this add-on: no gui-overlay screenshot")
        return
    settings.show_overlay = True
    overlay = addon("overlay")
    yield from wait_until(
        lambda: getattr(overlay.entry(bpy.context.scene), "geometry", None) is not None,
        20,
        "the overlay's geometry to be built",
    )
    from mathutils import Euler, Vector

    points = [e.object.matrix_world.translation for e in settings.entities if e.object is not None]
    camera = settings.camera or bpy.context.scene.camera
    if camera is not None:
        points.append(camera.matrix_world.translation)
    centre = sum(points, Vector()) / len(points)
    view = view3d.spaces.active.region_3d
    view.view_perspective = "PERSP"
    view.view_location = centre
    view.view_rotation = Euler((math.radians(58), 0.0, math.radians(-28))).to_quaternion()
    view.view_distance = 1.8 * max((p - centre).length for p in points) + 6.0
    yield from settle(1.0, redraw=True)
    # The viewport is tall here (a tall screen keeps the whole N-panel on it): keep a 3:2 band of its middle.
    x, y, w, h = region_crop(region_of(view3d, "WINDOW"))
    band = min(h, w * 2 // 3)
    screenshot("gui-overlay", (x, y + (h - band) // 2, w, band))


def show_sequencer(strips: list[Any]) -> Iterator[float]:
    """The 3D viewport's area becomes a sequencer with its preview, the take selected and the
    sidebar on the TrajMaster tab: what a user sees after a take lands."""
    check(len(strips) == 1, f"expected one take strip, found {[s.name for s in strips]}")
    area = area_of("VIEW_3D")
    area.type = "SEQUENCE_EDITOR"
    yield from settle(0.3)
    space = area.spaces.active
    space.view_type = "SEQUENCER_PREVIEW"
    scene = bpy.context.scene
    editor = scene.sequence_editor
    for s in strips:
        s.select = True
    editor.active_strip = strips[0]
    scene.frame_current = (SHOT_START + SHOT_END) // 2
    yield from settle(0.5)
    yield from show_category(area, CATEGORY)
    with override(area):
        bpy.ops.sequencer.view_all()
    yield from settle(0.3)
    # view_all keeps seven channels in view: zoom to the take's channel and two above it.
    strip = strips[0]
    view2d = region_of(area, "WINDOW").view2d
    x0, y0 = view2d.view_to_region(strip.frame_final_start - 4, strip.channel - 0.2, clip=False)
    x1, y1 = view2d.view_to_region(strip.frame_final_end + 4, strip.channel + 3, clip=False)
    with override(area):
        bpy.ops.view2d.zoom_border(xmin=x0, xmax=x1, ymin=y0, ymax=y1, wait_for_input=False)
    yield from settle(0.8, redraw=True)
    # The whole area: its header, the preview, the strips and the take panel.
    screenshot("gui-sequencer", area_crop(area))


def show_addon_preferences() -> None:
    """Edit > Preferences > Add-ons, filtered to the extension and expanded (in an area already
    switched to the Preferences editor)."""
    import addon_utils

    prefs = bpy.context.preferences
    prefs.active_section = "ADDONS"
    bpy.context.window_manager.addon_search = "TrajMaster"
    # The list draws Blender's parsed copies of the add-ons' modules ("fake modules"), not the loaded ones.
    addon_utils.modules(refresh=False)
    fake = addon_utils.addons_fake_modules.get(MODULE)
    check(fake is not None, "the add-on list does not know the extension")
    addon_utils.module_bl_info(fake)["show_expanded"] = True


def show_preferences() -> Iterator[float]:
    """Edit > Preferences > Add-ons, filtered to the extension and expanded, drawn in the big area."""
    area = area_of("SEQUENCE_EDITOR")
    area.type = "PREFERENCES"
    # As a user sees them: the test's TRAJMASTER_PYTHON would show as overriding the preference.
    os.environ.pop("TRAJMASTER_PYTHON", None)
    show_addon_preferences()
    park_mouse()
    yield from settle(1.0, redraw=True)
    screenshot("gui-preferences", area_crop(area))


# --- the panel tells the truth about the open file (issue 12) ----------------------------------------


def status_now() -> dict[str, Any]:
    runner = addon("runner")
    s = runner.status
    return {
        "message": s.message,
        "last_error": s.last_error,
        "info": s.info,
        "findings": [f.get("code") for f in runner.findings_for(bpy.context.scene)],
    }


def redraw_sidebar() -> Iterator[float]:
    """A redraw of the panel (it drops what is no longer true before it draws), as after a click."""
    yield from settle(0.5, redraw=True)


def sidebar_section(name: str, section: str = "gui-entities") -> Iterator[float]:
    """A screenshot of one section of the N-panel, saved as `name` (the bars below it may be off the
    bottom of the sidebar: only the two around the section are needed)."""
    ui = region_of(area_of("VIEW_3D"), "UI")
    add_markers()
    park_mouse()
    full = SCREENS / f"full-{name}.png"
    above, below = SECTIONS[section]
    # Newly registered panels show after a redraw or two, and panels slide into place when one above
    # grows (slowly on a busy machine): wait until the bars are there and stay put.
    last: list[tuple[int, int]] = []
    for _ in range(10):
        yield from settle(0.6, redraw=True)
        screenshot(full.stem, region_crop(ui))
        bands = magenta_bands(full)
        if len(bands) > MARKERS.index(below) and bands == last:
            break
        last = bands
    remove_markers()
    row = dict(zip(MARKERS, bands, strict=False))
    check(above in row and below in row, f"the bars around {section} are not in {full.name}: {bands}")
    top, bottom = row[above][1] + 4, row[below][0] - 4
    out = SCREENS / f"{name}.png"
    subprocess.run(
        ["convert", str(full), "-crop", f"10000x{bottom - top}+0+{top}", "+repage", str(out)], check=True, timeout=30
    )
    RESULTS["screenshots"][name] = str(out)


def eased_walk(scene: bpy.types.Scene, name: str, length: float, y: float) -> bpy.types.Object:
    """An empty keyed at the shot's ends with Blender's default interpolation (Bezier: it eases in and out)."""
    obj = bpy.data.objects.new(name, None)
    obj.empty_display_type = "ARROWS"
    scene.collection.objects.link(obj)
    obj.rotation_euler = (0.0, 0.0, -math.pi / 2)
    for frame, x in ((1, -length / 2), (73, length / 2)):
        obj.location = (x, y, 0.0)
        obj.keyframe_insert("location", frame=frame)
        obj.keyframe_insert("rotation_euler", frame=frame)
    for fcurve in addon("compat").object_fcurves(obj):
        for key in fcurve.keyframe_points:
            key.interpolation = "BEZIER"  # the build_shot step set the preference to Linear
    return obj


def the_panel_follows_the_file() -> Iterator[float]:
    """File > New and opening a file show nothing from the previous file; an unsaved file numbers its
    takes from 001 in its own folder; undoing a take takes its message away; Make Keys Linear clears
    the easing finding; a deleted empty is a red row that Generate refuses."""
    import tempfile

    runner = addon("runner")
    # The paced backend again (the preferences' step showed the preference without it), and the
    # system's temporary folder inside the test's work folder, where another session's unsaved file
    # left two takes (before each unsaved file had its own folder, the next take was number 003).
    os.environ["TRAJMASTER_PYTHON"] = str(WORK / "backend-python")
    tempfile.tempdir = str(WORK / "system-temp")
    shared_old = WORK / "system-temp" / "trajmaster" / "Scene"
    shared_old.mkdir(parents=True)
    for n in (1, 2):
        (shared_old / f"Scene_take_00{n}.mp4").write_bytes(b"another file's take")

    step("file > new: nothing from the previous file")
    RESULTS["before_new"] = status_now()
    # File > New > General, keeping this window's layout (Preferences > Save & Load > Load UI off):
    # the big area goes back to the 3D viewport whose sidebar is already on the TrajMaster tab, which
    # saves finding the tab again by clicking (a minute on a busy machine).
    with override():
        check(bpy.ops.wm.read_homefile(app_template="", load_ui=False) == {"FINISHED"}, "File > New failed")
    area_of("PREFERENCES").type = "VIEW_3D"
    yield from settle(0.5)
    view3d = area_of("VIEW_3D")
    view3d.spaces.active.show_region_ui = True
    yield from show_category(view3d, CATEGORY)
    yield from redraw_sidebar()
    RESULTS["after_new"] = status_now()
    screenshot("gui-file-new", region_crop(region_of(view3d, "UI")))

    step("an unsaved file: findings of an eased move and a forgotten keyframe")
    scene = bpy.context.scene
    for obj in list(scene.objects):
        bpy.data.objects.remove(obj)
    scene.render.fps = 24
    scene.frame_start, scene.frame_end = 1, 73
    cam = bpy.data.objects.new("ShotCam", bpy.data.cameras.new("ShotCam"))
    scene.collection.objects.link(cam)
    scene.camera = cam
    cam.location = (0.0, -9.0, 1.7)
    cam.rotation_euler = (math.radians(84), 0.0, 0.0)
    horse = eased_walk(scene, "Horse", 6.0, 1.0)
    robot = bpy.data.objects.new("Robot", None)  # never keyed: the forgotten I press
    robot.empty_display_type = "ARROWS"
    scene.collection.objects.link(robot)
    robot.location = (1.5, 3.0, 0.0)
    settings = scene.trajmaster
    settings.location_prompt = LOCATION
    horse_prompt = (
        "a muscular chestnut horse with a flowing black mane and four white socks trotting steadily across the ground"
    )
    for obj, prompt in ((horse, horse_prompt), (robot, PROMPTS[2])):
        bpy.context.view_layer.objects.active = obj
        with override(view3d, "UI"):
            check(bpy.ops.trajmaster.entity_add() == {"FINISHED"}, "Add Entity failed")
        settings.entities[settings.active_entity_index].prompt = prompt
    settings.active_entity_index = 0
    with override(view3d, "UI"):
        check(
            bpy.ops.trajmaster.check_shot("INVOKE_DEFAULT") == {"FINISHED"}, f"Check Shot: {runner.status.last_error}"
        )
    RESULTS["eased_findings"] = [(f.get("code"), f.get("severity"), f.get("fix")) for f in runner.findings_for(scene)]
    yield from sidebar_section("gui-findings")
    with override(view3d, "UI"):
        check(bpy.ops.trajmaster.make_keys_linear("INVOKE_DEFAULT", entity=0) == {"FINISHED"}, "Make Keys Linear")
    yield from redraw_sidebar()
    RESULTS["linear_findings"] = [f.get("code") for f in runner.findings_for(scene)]

    step("an unsaved file: its first take is 001, in its own folder")
    with override(view3d, "UI"):
        result = bpy.ops.trajmaster.generate("INVOKE_DEFAULT")
    check(result == {"FINISHED"}, f"Generate returned {result}: {runner.status.last_error}")
    yield from wait_until(lambda: not runner.busy(), CONFIG.get("job_timeout", 90), "the unsaved file's take")
    yield from redraw_sidebar()
    strips = take_strips()
    RESULTS["unsaved_take"] = {
        "message": runner.status.message,
        "error": runner.status.last_error,
        "strips": [s.name for s in strips],
        "video": bpy.path.abspath(strips[0].filepath) if strips else "",
        "temp_root": str(WORK / "system-temp" / "trajmaster"),
    }

    step("undo the take: its message goes with it")
    with override(view3d):
        check(bpy.ops.ed.undo() == {"FINISHED"}, "Undo failed")
    yield from redraw_sidebar()
    RESULTS["after_undo"] = {"message": runner.status.message, "strips": [s.name for s in take_strips()]}
    with override(view3d):
        check(bpy.ops.ed.redo() == {"FINISHED"}, "Redo failed")
    yield from redraw_sidebar()

    step("delete an entity's empty: a red row, and Generate refuses")
    robot = bpy.data.objects["Robot"]
    with override(view3d), bpy.context.temp_override(selected_objects=[robot], active_object=robot):
        check(bpy.ops.object.delete() == {"FINISHED"}, "X > Delete failed")
    bpy.context.scene.trajmaster.active_entity_index = 1
    yield from redraw_sidebar()
    try:
        with override(view3d, "UI"):
            refused = bpy.ops.trajmaster.generate("INVOKE_DEFAULT")
    except RuntimeError:  # the operator's ERROR report, raised in a script
        refused = {"CANCELLED"}
    yield from redraw_sidebar()
    overlay = addon("overlay")
    yield from wait_until(
        lambda: getattr(overlay.entry(bpy.context.scene), "stale", True) is False, 10, "the overlay's rebuild"
    )
    geometry = overlay.entry(bpy.context.scene).geometry
    RESULTS["missing"] = {
        "refused": sorted(refused),
        "error": runner.status.last_error,
        "overlay": [e.name for e in geometry.entities] if geometry else [],
    }
    yield from sidebar_section("gui-missing")

    step("save the unsaved file: its takes are copied")
    second = WORK / "second"
    second.mkdir()
    with override(view3d):
        bpy.ops.wm.save_as_mainfile(filepath=str(second / "second.blend"))
    RESULTS["saved_info"] = runner.status.info
    RESULTS["saved_files"] = sorted(p.name for p in (second / "trajmaster" / "Scene").iterdir())

    step("open the first file again: nothing from the other one")
    with override(view3d):
        bpy.ops.wm.open_mainfile(filepath=str(WORK / "shot.blend"))
    yield from settle(0.5)
    yield from redraw_sidebar()
    RESULTS["reopened"] = status_now()


# --- prompt help and choosing between takes (issue 13) ------------------------------------------------


def changed_crop(before: Path, after: Path, pad: int = 6) -> tuple[int, int, int, int]:
    """The rectangle of what changed between two screenshots (a dialog that opened), padded."""
    import numpy as np

    a, b = region_pixels(before), region_pixels(after)
    changed = np.abs(a - b).max(axis=2) > 0.02

    def longest_run(counts: Any) -> Any:
        # The dialog is one block of rows (columns) that change over a long stretch; elsewhere a
        # line changes here and there (the active area's outline, the status bar's key hints).
        found = np.flatnonzero(counts > 150)
        # A few rows inside the dialog change less (an edge that happens to match what was below).
        runs = np.split(found, np.flatnonzero(np.diff(found) > 12) + 1) if found.size else [found]
        return max(runs, key=len)

    rows, cols = longest_run(changed.sum(axis=1)), longest_run(changed.sum(axis=0))
    check(rows.size > 20 and cols.size > 20, f"no dialog opened between {before.name} and {after.name}")
    height, width = changed.shape
    left, top = max(0, int(cols[0]) - pad), max(0, int(rows[0]) - pad)
    return left, top, min(width, int(cols[-1]) + pad) - left, min(height, int(rows[-1]) + pad) - top


def expand_a_prompt() -> Iterator[float]:
    """Expand beside the first entity's prompt, as a user does: "Expanding..." on the button, the
    dialog when the worker (no prompt model here: the backend's offline fallback) answers, R for
    Retry, Return to accept (undoable), and Escape changing nothing."""
    prompt_help, runner = addon("prompt_help"), addon("runner")
    view3d = area_of("VIEW_3D")
    window_region = region_of(view3d, "WINDOW")
    settings = bpy.context.scene.trajmaster
    settings.active_entity_index = 0
    settings.entities[0].prompt = "a grey horse"
    with override(view3d):
        bpy.ops.ed.undo_push(message="Prompt")  # what typing it into the field pushes
    out: dict[str, Any] = {"worker": runner.worker_pid()}
    RESULTS["expand"] = out

    def press_expand(before: Path | None = None) -> Iterator[float]:
        # The dialog opens where the mouse is: the middle of the viewport.
        xdotool("mousemove", *map(str, screen_xy(window_region, window_region.width // 2, window_region.height // 2)))
        yield from settle(0.5, redraw=True)
        if before is not None:
            screenshot(before.stem)
        with override(view3d, "UI"):
            result = bpy.ops.trajmaster.expand_prompt("INVOKE_DEFAULT", entity=0)
        check(result == {"FINISHED"}, f"Expand returned {result}: {runner.status.last_error}")
        out.setdefault("button_said_expanding", prompt_help.expanding(0))
        yield from wait_until(
            lambda: prompt_help.session is not None and prompt_help.session.opened, 30, "the Expand dialog"
        )
        yield from settle(0.8, redraw=True)

    yield from press_expand(before=SCREENS / "full-before-expand.png")
    field = bpy.context.window_manager.trajmaster_expansion
    out["first"] = field.text
    out["credit"] = prompt_help.session.shown.credit()
    full = SCREENS / "full-expand.png"
    screenshot(full.stem)
    screenshot("gui-expand", changed_crop(SCREENS / "full-before-expand.png", full))
    xdotool("key", "r")  # Retry: its underlined letter
    yield from settle(0.8, redraw=True)
    out["retry"] = field.text
    xdotool("key", "Return")  # Accept
    yield from wait_until(lambda: prompt_help.session is None, 10, "Accept to close the dialog")
    yield from settle(0.3)
    out["accepted"] = settings.entities[0].prompt
    with override(view3d):
        check(bpy.ops.ed.undo() == {"FINISHED"}, "Undo failed")
    out["after_undo"] = bpy.context.scene.trajmaster.entities[0].prompt
    with override(view3d):
        check(bpy.ops.ed.redo() == {"FINISHED"}, "Redo failed")
    out["after_redo"] = bpy.context.scene.trajmaster.entities[0].prompt

    settings = bpy.context.scene.trajmaster
    settings.entities[0].prompt = "a grey horse"
    yield from press_expand()
    xdotool("key", "Escape")  # Cancel
    yield from wait_until(lambda: prompt_help.session is None, 10, "Escape to close the dialog")
    out["after_cancel"] = settings.entities[0].prompt
    out["worker_after"] = runner.worker_pid()
    park_mouse()


def sequencer_view(area: bpy.types.Area, strips: list[Any]) -> Iterator[float]:
    """`area` as a sequencer with its preview, zoomed to `strips`, at the middle of the shot."""
    area.type = "SEQUENCE_EDITOR"
    yield from settle(0.3)
    area.spaces.active.view_type = "SEQUENCER_PREVIEW"
    scene = bpy.context.scene
    scene.frame_current = (scene.trajmaster.frame_start + scene.trajmaster.frame_end) // 2
    yield from settle(0.5)
    with override(area):
        bpy.ops.sequencer.view_all()
    yield from settle(0.3)
    view2d = region_of(area, "WINDOW").view2d
    low, high = min(s.channel for s in strips), max(s.channel for s in strips)
    x0, y0 = view2d.view_to_region(min(s.frame_final_start for s in strips) - 4, low - 0.2, clip=False)
    x1, y1 = view2d.view_to_region(max(s.frame_final_end for s in strips) + 4, high + 1.2, clip=False)
    with override(area):
        bpy.ops.view2d.zoom_border(xmin=x0, xmax=x1, ymin=y0, ymax=y1, wait_for_input=False)
    yield from settle(0.8, redraw=True)


def sequencer_key(area: bpy.types.Area, key: str) -> Iterator[float]:
    """A key pressed with the mouse over the sequencer's timeline (where its keymap applies)."""
    timeline = region_of(area, "WINDOW")
    xdotool("mousemove", *map(str, screen_xy(timeline, timeline.width // 2, timeline.height // 2)))
    yield from settle(0.3)
    xdotool("key", key)
    yield from settle(0.4)


def choosing_between_takes() -> Iterator[float]:
    """Issue 13: Expand with the fallback; four variations of the demo shot with the preview
    engine; stepping through them with the keys, A/B, a favourite; the set's contact sheet."""
    runner, contact_sheet = addon("runner"), addon("directing.contact_sheet")
    view3d = area_of("VIEW_3D")
    view3d.spaces.active.show_region_ui = True
    yield from show_category(view3d, CATEGORY)

    step("expand a prompt")
    yield from expand_a_prompt()

    step("generate four variations")
    directing = bpy.context.scene.trajmaster_directing
    directing.variation_count, directing.variation_varies = 4, "seed"
    before = {s.name for s in take_strips()}
    with override(view3d, "UI"):
        result = bpy.ops.trajmaster.generate_variations("INVOKE_DEFAULT")
    check(result == {"FINISHED"}, f"Generate Variations returned {result}: {runner.status.last_error}")
    queue_seen: list[tuple[int, int]] = []
    deadline = time.monotonic() + 4 * CONFIG.get("job_timeout", 90)
    while runner.busy():
        check(time.monotonic() < deadline, "the four variations did not finish")
        done = (runner.status.jobs_done, runner.status.jobs_total)
        if not queue_seen or queue_seen[-1] != done:
            queue_seen.append(done)
        yield POLL_S
    made = sorted((s for s in take_strips() if s.name not in before), key=lambda s: s.channel)
    out: dict[str, Any] = {
        "queue": queue_seen,
        "message": runner.status.message,
        "error": runner.status.last_error,
        "set": [{"name": s.name, "channel": s.channel, "mute": s.mute} for s in made],
    }
    RESULTS["directing"] = out
    check(len(made) == 4, f"expected four variations, found {[s.name for s in made]}")

    step("compare the takes in the sequencer")
    area = view3d
    editor = bpy.context.scene.sequence_editor
    for s in take_strips():
        s.select = s == made[0]
    editor.active_strip = made[0]
    yield from sequencer_view(area, [*made, *(s for s in take_strips() if s not in made)])
    yield from show_category(area, CATEGORY)

    def playing() -> list[str]:
        return [s.name for s in made if not s.mute]

    out["playing_first"] = playing()
    yield from sequencer_key(area, "alt+Up")
    out["after_next"] = playing()
    yield from sequencer_key(area, "alt+Up")
    out["after_next_next"] = playing()
    yield from sequencer_key(area, "alt+Down")
    out["after_previous"] = playing()
    for strip, action in ((made[0], "SET_A"), (made[2], "SET_B")):
        editor.active_strip = strip
        with override(area, "UI"):
            check(bpy.ops.trajmaster.take_ab(action=action) == {"FINISHED"}, f"{action} failed")
    with override(area, "UI"):
        check(bpy.ops.trajmaster.take_solo(strip=made[0].name) == {"FINISHED"}, "Play This Take failed")
    yield from sequencer_key(area, "alt+b")
    out["after_ab"] = playing()
    yield from sequencer_key(area, "alt+b")
    out["after_ab_again"] = playing()
    editor.active_strip = made[2]
    with override(area, "UI"):
        check(bpy.ops.trajmaster.take_mark(mark="FAVOURITE") == {"FINISHED"}, "Favourite failed")
    out["marks"] = [s.color_tag for s in made]
    park_mouse()
    yield from settle(0.8, redraw=True)
    screenshot("gui-compare", area_crop(area))

    step("make the set's contact sheet")
    with override(area, "UI"):
        result = bpy.ops.trajmaster.make_contact_sheet("INVOKE_DEFAULT")
    check(result == {"FINISHED"}, f"Make Contact Sheet returned {result}: {runner.status.last_error}")
    progress = []
    deadline = time.monotonic() + 120
    while contact_sheet.job is not None:
        check(time.monotonic() < deadline, "the contact sheet did not finish")
        task = contact_sheet.job.task
        if not progress or progress[-1] != (task.stage, task.step):
            progress.append((task.stage, task.step))
        yield POLL_S
    sheets = [s for s in addon("compat").all_strips(editor) if "trajmaster_sheet" in s]
    out["sheet"] = {
        "note": contact_sheet.note.text,
        "progress": progress,
        "strips": [
            {
                "name": s.name,
                "channel": s.channel,
                "mute": s.mute,
                "start": s.frame_final_start,
                "end": s.frame_final_end,
                "file": bpy.path.abspath(s.filepath),
            }
            for s in sheets
        ],
        "takes_muted": all(s.mute for s in made),
        "set_channels": [s.channel for s in made],
        "shot": [bpy.context.scene.trajmaster.frame_start, bpy.context.scene.trajmaster.frame_end],
    }
    yield from sequencer_view(area, [*made, *sheets])
    park_mouse()
    yield from settle(1.0, redraw=True)
    screenshot("gui-contact-sheet", area_crop(area))
    area.type = "VIEW_3D"


# --- issue 12: a double click, the status in view, the prompt editor, the preset search, the fit ---


def region_pixels(png: Path) -> Any:
    """A screenshot as an (height, width, 3) float array, rows from the top."""
    import numpy as np

    image = bpy.data.images.load(str(png), check_existing=False)
    try:
        width, height = image.size
        pixels = np.empty(width * height * 4, dtype=np.float32)
        image.pixels.foreach_get(pixels)
    finally:
        bpy.data.images.remove(image)
    return pixels.reshape(height, width, 4)[::-1, :, :3]


def widget_rows(ui: bpy.types.Region, above: int, below: int | None, theme_colour: Any) -> list[tuple[int, int]]:
    """Rows (top, bottom; region pixels from its top) of the widgets drawn in `theme_colour` in the
    section between two bars, found down the sidebar's left third (the theme says how a button or
    a text field is filled; panel positions are not in the API)."""
    import numpy as np

    full = SCREENS / "full-find.png"
    screenshot(full.stem, region_crop(ui))
    bands = dict(zip(MARKERS, magenta_bands(full), strict=False))
    check(above in bands, f"the bar {above} is not on screen")
    top = bands[above][1] + 1
    bottom = bands[below][0] if below in bands else ui.height
    column = region_pixels(full)[top:bottom, ui.width // 3]
    inside = np.abs(column - np.asarray(theme_colour)[:3]).max(axis=1) < 0.03
    runs: list[tuple[int, int]] = []
    for y in np.flatnonzero(inside):
        if runs and y == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], int(y))
        else:
            runs.append((int(y), int(y)))
    return [(top + a, top + b) for a, b in runs if b - a >= 8]


def double_click_generate() -> Iterator[float]:
    """A real double click on Generate (xdotool), then one more click half a second later where
    Generate was: one take is made and nothing is cancelled. The scene renders 1920 x 1080 for
    this take (Blender's default), which the fit step then looks at."""
    runner = addon("runner")
    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y = 1920, 1080
    view3d = area_of("VIEW_3D")
    ui = region_of(view3d, "UI")
    yield from show_markers(ui)
    buttons = widget_rows(ui, 10, 11, bpy.context.preferences.themes[0].user_interface.wcol_tool.inner)
    check(bool(buttons), "no button found in the Generate section")
    top, bottom = max(buttons, key=lambda run: run[1] - run[0])  # Generate is drawn 1.4 rows tall
    x, y = screen_xy(ui, ui.width // 2, ui.height - (top + bottom) // 2)
    RESULTS["generate_button"] = {"rows": buttons, "at": [x, y]}
    before = [s.name for s in take_strips()]
    xdotool("mousemove", str(x), str(y))
    yield from settle(0.3)
    xdotool("click", "--repeat", "2", "--delay", "120", "1")  # a double click
    seen = [(runner.busy(), runner.status.state)]
    yield from settle(0.5)
    xdotool("click", "1")  # and a click half a second later, where Generate was
    yield from settle(0.3)
    seen.append((runner.busy(), runner.status.state))
    park_mouse()
    yield from wait_until(lambda: not runner.busy(), CONFIG.get("job_timeout", 90), "the double-clicked take to end")
    yield from settle(0.5, redraw=True)
    RESULTS["double_click"] = {
        "before": before,
        "after": [s.name for s in take_strips()],
        "states": seen,
        "message": runner.status.message,
        "error": runner.status.last_error,
        "file": bpy.data.filepath,
    }
    remove_markers()


def error_under_generate() -> Iterator[float]:
    """An error (the location prompt emptied) shows right under Generate, and the bottom of its
    box is in view on a 900 px high screen."""
    runner = addon("runner")
    area_of("SEQUENCE_EDITOR").type = "VIEW_3D"  # the 3D viewport again, its sidebar on the TrajMaster tab
    view3d = area_of("VIEW_3D")
    ui = region_of(view3d, "UI")
    settings = bpy.context.scene.trajmaster
    location = settings.location_prompt
    settings.location_prompt = ""
    with override(view3d, "UI"):
        try:
            bpy.ops.trajmaster.generate("INVOKE_DEFAULT")
        except RuntimeError:
            pass  # the refusal is the point: its sentence is in the panel now
    error = runner.status.last_error
    yield from show_markers(ui)
    full = SCREENS / "full-error.png"
    yield from steady_screenshot(full.stem, region_crop(ui))
    bands = dict(zip(MARKERS, magenta_bands(full), strict=False))
    check(10 in bands and 11 in bands, "the bars around the Generate section are not on screen")
    _, region_top = screen_xy(ui, 0, ui.height)
    RESULTS["error_in_view"] = {
        "error": error,
        "section": [region_top + bands[10][1], region_top + bands[11][0]],
        "window_height": window().height,
    }
    cut_sections(full, ("gui-generate",))
    Path(RESULTS["screenshots"].pop("gui-generate")).replace(SCREENS / "gui-error.png")
    RESULTS["screenshots"]["gui-error"] = str(SCREENS / "gui-error.png")
    remove_markers()
    settings.location_prompt = location
    runner.status.last_error = ""
    yield from settle(0.3, redraw=True)


def steady_screenshot(
    name: str, crop: tuple[int, int, int, int] | None = None, timeout: float = 10.0
) -> Iterator[float]:
    """A screenshot once the picture stops changing: Blender slides panels to their new places
    when a section grows (an error box appearing), and a screenshot mid-slide shows them overlapping."""
    import numpy as np

    end = time.monotonic() + timeout
    previous = None
    while True:
        screenshot(name, crop)
        current = region_pixels(SCREENS / f"{name}.png")
        if previous is not None and previous.shape == current.shape and np.array_equal(previous, current):
            return
        if time.monotonic() > end:
            RESULTS["notes"].append(f"{name}: still changing after {timeout:.0f} s")
            return
        previous = current
        yield from settle(0.4, redraw=True)


def changed_box(before: Path, after: Path, margin: int = 6) -> tuple[int, int, int, int]:
    """The screen rectangle (x, y, w, h) where two screenshots differ: a popup that opened."""
    import numpy as np

    diff = np.abs(region_pixels(before) - region_pixels(after)).max(axis=2) > 0.02
    # A popup changes every pixel of its rectangle; elsewhere only a few lines may have moved (the
    # viewport's overlay redrawn): keep the rows mostly changed, then their mostly changed columns.
    rows = np.flatnonzero(diff.mean(axis=1) > 0.15)
    check(len(rows) > 0, "nothing opened on screen")
    cols = np.flatnonzero(diff[rows].mean(axis=0) > 0.5)
    check(len(cols) > 0, "nothing opened on screen")
    x0, y0 = max(int(cols.min()) - margin, 0), max(int(rows.min()) - margin, 0)
    return x0, y0, int(cols.max()) + margin - x0, int(rows.max()) + margin - y0


def show_prompt_editor() -> Iterator[float]:
    """The pencil button's window for the active entity's prompt: screenshot, then Escape."""
    view3d = area_of("VIEW_3D")
    ui = region_of(view3d, "UI")
    settings = bpy.context.scene.trajmaster
    prompt = settings.entities[settings.active_entity_index].prompt
    x, y = screen_xy(ui, ui.width // 2, ui.height // 2)
    xdotool("mousemove", str(x), str(y))
    yield from settle(0.5, redraw=True)
    yield from steady_screenshot("full-before-editor")  # so that only the window that opens differs
    with override(view3d, "UI"):
        bpy.ops.trajmaster.edit_prompt("INVOKE_DEFAULT", entity=settings.active_entity_index)
    yield from settle(1.0)
    screenshot("full-editor")
    screenshot("gui-prompt-editor", changed_box(SCREENS / "full-before-editor.png", SCREENS / "full-editor.png"))
    xdotool("key", "Escape")  # leaves the text field
    yield from settle(0.3)
    xdotool("key", "Escape")  # closes the window: Cancel keeps the prompt as it was
    yield from settle(0.5, redraw=True)
    RESULTS["prompt_editor"] = {"kept": settings.entities[settings.active_entity_index].prompt == prompt}


def search_presets() -> Iterator[float]:
    """Click the entity prompt search field (Presets), type "dog" (the list shows the Golden
    retriever, found by its prompt, and the Robot dog), then "golden coat" and Enter: the Golden
    retriever fills the entity."""
    view3d = area_of("VIEW_3D")
    ui = region_of(view3d, "UI")
    settings = bpy.context.scene.trajmaster
    yield from show_markers(ui)
    fields = widget_rows(ui, 11, 13, bpy.context.preferences.themes[0].user_interface.wcol_text.inner)
    check(bool(fields), "no text field found in the Presets section")
    top, bottom = fields[0]  # the first: the entity prompt search
    x, y = screen_xy(ui, ui.width // 3, ui.height - (top + bottom) // 2)
    xdotool("mousemove", str(x), str(y))
    yield from settle(0.3, redraw=True)
    yield from steady_screenshot("full-before-search")
    xdotool("click", "1")
    yield from settle(0.5)
    xdotool("type", "--delay", "80", "dog")
    yield from settle(1.5)
    screenshot("full-search")
    screenshot("gui-preset-search", changed_box(SCREENS / "full-before-search.png", SCREENS / "full-search.png"))
    # Words only the Golden retriever's prompt has ("coat" is in no preset's name): the one match.
    xdotool("key", "BackSpace", "BackSpace", "BackSpace")
    xdotool("type", "--delay", "80", "golden coat")
    yield from settle(1.5)
    xdotool("key", "Return")
    yield from settle(0.8, redraw=True)
    park_mouse()
    item = settings.entities[settings.active_entity_index]
    RESULTS["preset_search"] = {"prompt": item.prompt, "height": item.height, "field": settings.entity_preset}
    remove_markers()
    yield from settle(0.3, redraw=True)


def show_fitted_take() -> Iterator[float]:
    """The take made in the 1920 x 1080 scene, fitted: the sequencer's preview and the take panel
    with Set Output to 720 x 480; then that button, after which the take fills the frame."""
    area = area_of("VIEW_3D")
    area.type = "SEQUENCE_EDITOR"
    scene = bpy.context.scene
    strips = take_strips()
    take = strips[-1]
    for s in strips:
        s.select = s == take
    scene.sequence_editor.active_strip = take
    yield from settle(1.0, redraw=True)
    RESULTS["fit"] = {
        "take": take.name,
        "resolution": [scene.render.resolution_x, scene.render.resolution_y],
        "scale": [take.transform.scale_x, take.transform.scale_y],
    }
    screenshot("gui-sequencer-fit", area_crop(area))
    with override(area, "UI"):
        check(bpy.ops.trajmaster.match_model_resolution() == {"FINISHED"}, "Set Output to 720 x 480 did not run")
    yield from settle(0.8, redraw=True)
    RESULTS["fit"]["after"] = {
        "resolution": [scene.render.resolution_x, scene.render.resolution_y],
        "scale": [take.transform.scale_x, take.transform.scale_y],
    }
    screenshot("full-sequencer-fitted", area_crop(area))


# --- the team server (issue 13): a new user, no backend, four variations, compare, mark one ----------
#
# A separate Blender session (config "scenario": "server"): a fresh user folder with no backend set
# up at all, and a TrajMaster server with two preview replicas started by the test on this machine
# (CONFIG["server"]: its url and token, as the person who runs it would hand them out).

# Bars around the N-panel's Generate section and the ones that follow it (order 11: Queue, Variations,
# All Shots, Server).
SERVER_MARKERS = (10, 11)


def cut_between_bars(full: Path, name: str) -> None:
    bands = magenta_bands(full)
    check(len(bands) == 2, f"found {len(bands)} section bars in {full.name}, expected 2")
    top, bottom = bands[0][1] + 4, bands[1][0] - 4
    out = SCREENS / f"{name}.png"
    subprocess.run(
        ["convert", str(full), "-crop", f"10000x{bottom - top}+0+{top}", "+repage", str(out)], check=True, timeout=30
    )
    RESULTS["screenshots"][name] = str(out)


def connect_to_server() -> Iterator[float]:
    """In Edit > Preferences > Add-ons > TrajMaster Previz: Run On: TrajMaster Server, the address
    and the token the server's owner handed out, and Check Server, whose sentence says what it found."""
    server_ui, preferences = addon("server_ui"), addon("preferences")
    area = area_of("VIEW_3D")
    area.type = "PREFERENCES"
    show_addon_preferences()
    yield from settle(0.5, redraw=True)
    prefs = preferences.preferences()
    prefs.run_on = "SERVER"
    prefs.server_url = CONFIG["server"]["url"]
    prefs.server_token = CONFIG["server"]["token"]
    with override(area):
        check(bpy.ops.trajmaster.check_server("INVOKE_DEFAULT") == {"FINISHED"}, "Check Server did not run")
    RESULTS["check_running"] = server_ui.check.running  # asked from a thread: the window stays live
    yield from wait_until(lambda: not server_ui.check.running, 30, "Check Server's answer")
    RESULTS["check"] = {"ok": server_ui.check.ok, "sentence": server_ui.check.sentence}
    park_mouse()
    yield from settle(1.0, redraw=True)
    screenshot("gui-server-preferences", area_crop(area))
    area.type = "VIEW_3D"
    yield from settle(0.3)


def four_variations_on_the_server(view3d: bpy.types.Area) -> Iterator[float]:
    """Generate Variations (4, seed) and watch: two takes run at once on the two replicas, two wait
    in the server's queue; the Server section shows it (the screenshot for the user guide)."""
    runner = addon("runner")
    ui = region_of(view3d, "UI")
    settings = bpy.context.scene.trajmaster_directing
    settings.variation_count, settings.variation_varies = 4, "seed"
    add_markers(SERVER_MARKERS)
    with override(view3d, "UI"):
        result = bpy.ops.trajmaster.generate_variations("INVOKE_DEFAULT")
    check(result == {"FINISHED"}, f"Generate Variations returned {result}: {runner.status.last_error}")
    check(runner.busy(), "Generate Variations returned but nothing runs")
    watch, problem = runner.server_view(bpy.context)
    check(watch is not None, problem)
    busy_most = 0
    shot = False
    samples: list[list[str]] = []
    deadline = time.monotonic() + CONFIG.get("job_timeout", 180)
    while runner.busy():
        check(time.monotonic() < deadline, f"the variations did not finish: {runner.status.message}")
        status = watch.status or {}
        busy = sum(r.get("state") == "busy" for r in status.get("replicas", []))
        busy_most = max(busy_most, busy)
        states = [e.state for e in runner.status.queue]
        if not samples or samples[-1] != states:
            samples.append(states)
        if not shot and busy == 2 and len(status.get("queue", [])) == 2 and states.count("running") == 2:
            yield from settle(0.6, redraw=True)
            screenshot("full-server-queue", region_crop(ui))
            RESULTS["server_queue_shown"] = {
                "replicas": [(r.get("state"), r.get("job") in runner.server_take_names()) for r in status["replicas"]],
                "queued": len(status["queue"]),
                "eta": runner.status.batch_eta_s,
            }
            shot = True
        yield POLL_S
    RESULTS["server_busy_most"] = busy_most
    RESULTS["server_queue_states"] = samples
    RESULTS["variations_message"] = runner.status.message
    RESULTS["variations_error"] = runner.status.last_error
    check(shot, f"the queue never showed two takes running and two waiting: {samples}")
    cut_between_bars(SCREENS / "full-server-queue.png", "gui-server-queue")
    remove_markers()


def compare_and_mark() -> Iterator[float]:
    """In the sequencer: the set's first take plays; Alt+Up (a real key press) plays the next one;
    A and B set on the first two takes and switched both ways; the second marked as the favourite."""
    strips = sorted(take_strips(), key=lambda s: s.channel)
    check(len(strips) == 4, f"expected four takes, found {[s.name for s in strips]}")
    RESULTS["set"] = [{"name": s.name, "channel": s.channel, "mute": s.mute} for s in strips]
    area = area_of("VIEW_3D")
    area.type = "SEQUENCE_EDITOR"
    yield from settle(0.3)
    area.spaces.active.view_type = "SEQUENCER_PREVIEW"
    scene = bpy.context.scene
    editor = scene.sequence_editor
    for s in strips:
        s.select = s == strips[0]
    editor.active_strip = strips[0]
    scene.frame_current = (scene.trajmaster.frame_start + scene.trajmaster.frame_end) // 2
    yield from show_category(area, CATEGORY)
    with override(area):
        bpy.ops.sequencer.view_all()
    yield from settle(0.3)
    # The set's four channels and one above them, over the shot.
    view2d = region_of(area, "WINDOW").view2d
    x0, y0 = view2d.view_to_region(strips[0].frame_final_start - 4, 0.8, clip=False)
    x1, y1 = view2d.view_to_region(strips[0].frame_final_end + 4, 6.0, clip=False)
    with override(area):
        bpy.ops.view2d.zoom_border(xmin=x0, xmax=x1, ymin=y0, ymax=y1, wait_for_input=False)
    yield from settle(0.5, redraw=True)
    playing = lambda: [s.name for s in strips if not s.mute]  # noqa: E731
    RESULTS["playing_first"] = playing()
    # Alt+Up over the timeline: the add-on's key for "play the next take of this set".
    timeline = region_of(area, "WINDOW")
    x, y = screen_xy(timeline, timeline.width // 2, timeline.height // 4)
    xdotool("mousemove", str(x), str(y))
    yield from settle(0.3)
    xdotool("key", "alt+Up")
    yield from wait_until(lambda: playing() == [strips[1].name], 10, "Alt+Up to play the next take")
    RESULTS["playing_after_key"] = playing()
    park_mouse()
    with override(area, "UI"):
        check(bpy.ops.trajmaster.take_ab(action="SET_B") == {"FINISHED"}, "Set B failed")
        editor.active_strip = strips[0]
        check(bpy.ops.trajmaster.take_solo(strip=strips[0].name) == {"FINISHED"}, "playing the first take failed")
        check(bpy.ops.trajmaster.take_ab(action="SET_A") == {"FINISHED"}, "Set A failed")
        check(bpy.ops.trajmaster.take_ab(action="TOGGLE") == {"FINISHED"}, "Switch A/B failed")
    RESULTS["playing_after_ab"] = playing()  # B
    with override(area, "UI"):
        check(bpy.ops.trajmaster.take_mark(mark="FAVOURITE") == {"FINISHED"}, "Favourite failed")
        check(bpy.ops.trajmaster.take_ab(action="TOGGLE") == {"FINISHED"}, "Switch A/B failed")
        RESULTS["playing_after_ab_again"] = playing()  # A
        check(bpy.ops.trajmaster.take_solo(strip=strips[1].name) == {"FINISHED"}, "playing the favourite failed")
    RESULTS["marks"] = {s.name: s.color_tag for s in strips}
    RESULTS["playing_at_the_end"] = playing()
    yield from settle(0.8, redraw=True)
    screenshot("gui-server-compare", area_crop(area))


def server_scenario() -> Iterator[float]:
    step("install the extension")
    install()
    RESULTS["no_backend"] = "TRAJMASTER_PYTHON" not in os.environ
    bpy.context.preferences.system.use_region_overlap = False
    view3d = area_of("VIEW_3D")

    step("connect to the team server in the preferences")
    yield from connect_to_server()

    step("load the example shot")
    with override(view3d):
        bpy.ops.wm.save_as_mainfile(filepath=str(WORK / "team.blend"))
    scene = bpy.context.scene
    for obj in list(scene.objects):  # the start-up file's cube, light and camera
        bpy.data.objects.remove(obj)
    with override(view3d, "UI"):
        check(bpy.ops.trajmaster.load_example_shot(name="demo") == {"FINISHED"}, "Load Example Shot failed")
    with override(view3d):
        bpy.ops.wm.save_mainfile()
    yield from show_category(view3d, CATEGORY)
    yield from widen_sidebar(view3d, 380)

    step("generate four variations on the server")
    yield from four_variations_on_the_server(view3d)
    folder = WORK / "trajmaster" / scene.name
    RESULTS["shot"] = scene.name
    RESULTS["server_files"] = sorted(p.name for p in folder.iterdir()) if folder.exists() else []

    step("compare the takes and mark one")
    yield from compare_and_mark()

    step("quit")
    addon("runner").shutdown()
    RESULTS["ok"] = True


# --- the driver ---------------------------------------------------------------------------------

T0 = time.monotonic()
STEPS = server_scenario() if CONFIG.get("scenario") == "server" else scenario()


def finish(code: int) -> None:
    RESULTS["seconds"] = round(time.monotonic() - T0, 2)
    save_results()
    log(f"done ({'ok' if code == 0 else 'FAILED at ' + RESULTS['step']}) in {RESULTS['seconds']} s")
    try:
        addon("runner").shutdown()
    except Exception:  # the add-on may not have been installed; nothing to stop then
        pass
    os._exit(code)


def drive() -> float | None:
    try:
        return next(STEPS)
    except StopIteration:
        finish(0)
    except Exception as exc:
        RESULTS["error"] = f"{type(exc).__name__}: {exc}"
        RESULTS["traceback"] = traceback.format_exc()
        log(RESULTS["traceback"])
        try:
            screenshot("gui-failure")
        except Exception:
            pass
        finish(1)
    return None


save_results()
# Start once the window exists and has drawn; persistent, so that steps that load a file go on.
bpy.app.timers.register(drive, first_interval=0.5, persistent=True)
