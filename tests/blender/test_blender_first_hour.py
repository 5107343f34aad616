"""The artist's first hour (issue 12): the take fits the frame, a double click starts one take,
the status sits under Generate, Show in Folder, the prompt editor, names, entity sizes, and the
CogVideoX engine on a Preview Only backend answering in the preferences' words."""

from __future__ import annotations

import importlib
import json
import sys
from types import SimpleNamespace

import bpy
import numpy as np
import pytest
from conftest import MODULE
from test_blender_generate import takes, two_entity_shot
from test_blender_preferences import FakeLayout

from backend import job as jobfile
from backend import poses


def module(name):
    return importlib.import_module(f"{MODULE}.addon.{name}")


class PlacedLayout(FakeLayout):
    """A FakeLayout that also records how tall each row is drawn (`scale_y`), in drawing order:
    the row that holds Generate must hold the progress bar, not Cancel, while a take renders."""

    def _scale(self) -> float:
        scale, layout = 1.0, self
        while layout is not None:
            scale *= getattr(layout, "scale_y", 1.0)
            layout = layout.parent
        return scale

    def row(self, **kwargs):
        super().row(**kwargs)
        return PlacedLayout(self.log, self)

    def column(self, **kwargs):
        super().column(**kwargs)
        return PlacedLayout(self.log, self)

    def box(self, **kwargs):
        super().box(**kwargs)
        self.log.append(("box", None))
        return PlacedLayout(self.log, self)

    def operator(self, idname: str, **kwargs):
        super().operator(idname, **kwargs)
        self.log.append(("placed", (idname, self._scale())))
        return SimpleNamespace()

    def progress(self, **kwargs):
        super().progress(**kwargs)
        self.log.append(("placed", ("progress", self._scale())))

    def template_list(self, *args, **kwargs):
        self.log.append(("template_list", args[0]))

    def label(self, **kwargs):
        super().label(**kwargs)
        self.log.append(("placed", ("label:" + kwargs.get("text", ""), self._scale())))


def draw_panel(cls, context=None) -> list:
    layout = PlacedLayout()
    cls.draw(SimpleNamespace(layout=layout), context or bpy.context)
    return [v for k, v in layout.log if k == "placed"]


def solid_clip(path, size=(96, 64), rgb=(40, 200, 90), frames=49):
    """A clip of one colour, 3:2 like the model's 720 x 480."""
    import imageio_ffmpeg

    writer = imageio_ffmpeg.write_frames(
        str(path), size, fps=8, codec="libx264", pix_fmt_out="yuv420p", output_params=["-crf", "0"]
    )
    writer.send(None)
    frame = np.zeros((size[1], size[0], 3), np.uint8)
    frame[:] = rgb
    for _ in range(frames):
        writer.send(frame.tobytes())
    writer.close()
    return path


def render_sequencer(scene, png):
    """The sequencer's picture at the current frame, at 10 % of the scene's resolution."""
    from PIL import Image

    render = scene.render
    render.resolution_percentage = 10
    render.image_settings.file_format = "PNG"
    render.use_sequencer = True
    render.filepath = str(png)
    bpy.ops.render.render(write_still=True, scene=scene.name)
    return np.asarray(Image.open(png).convert("RGB")).astype(int)


# --- 3. the take fits the scene's frame ----------------------------------------------------------


def test_a_take_fills_the_height_of_a_wider_frame_and_a_button_sets_the_models_frame(blend, tmp_path):
    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y = 1920, 1080  # Blender's default frame
    sequencer = module("sequencer")
    job_export = module("job_export")
    two_entity_shot(1, 49)
    job = job_export.build(bpy.context, scene).job
    clip = solid_clip(tmp_path / "Scene_take_001.mp4")
    shot = sequencer.Shot("Scene", 1, 49, scene.name)
    strip = sequencer.add_take(bpy.context, scene, shot, {"video": str(clip), "name": "Scene_take_001"}, job, "")
    scene.frame_set(25)

    # 96 x 64 in 1920 x 1080: the height fills (16.875 x), the width keeps the aspect (1620 of 1920).
    assert strip.transform.scale_x == pytest.approx(1080 / 64) and strip.transform.scale_y == pytest.approx(1080 / 64)
    picture = render_sequencer(scene, tmp_path / "wide.png")  # 192 x 108
    # The clip's colour as the sequencer shows it (through the scene's view transform): the centre's.
    green = np.abs(picture - picture[54, 96]).sum(axis=-1) < 30
    assert picture[54, 96, 1] > picture[54, 96, 0] + 50, "the centre shows the green take"
    assert green[1, 96] and green[-2, 96], "the take reaches the top and the bottom of the frame"
    assert not green[54, 2] and not green[54, -3], "bars at the sides, the aspect kept"
    assert 158 <= green[54].sum() <= 166, "the take is 1620 / 1920 of the frame's width"

    # The take panel offers the model's frame; the button sets it and fits the takes to it again.
    scene.sequence_editor.active_strip = strip
    placed = draw_panel(bpy.types.TRAJMASTER_PT_take)
    assert ("trajmaster.match_model_resolution", 1.0) in placed
    assert any(text.startswith("label:The scene renders 1920 x 1080") for text, _ in placed)
    assert bpy.ops.trajmaster.match_model_resolution() == {"FINISHED"}
    assert (scene.render.resolution_x, scene.render.resolution_y) == (poses.MODEL_WIDTH, poses.MODEL_HEIGHT)
    assert strip.transform.scale_x == pytest.approx(480 / 64)
    picture = render_sequencer(scene, tmp_path / "model.png")  # 72 x 48
    assert (np.abs(picture - picture[24, 36]).sum(axis=-1) < 30).all(), "the take fills the whole frame"
    assert not any(op == "trajmaster.match_model_resolution" for op, _ in draw_panel(bpy.types.TRAJMASTER_PT_take))

    # Match Model Camera changes the frame too: the takes follow.
    scene.render.resolution_x, scene.render.resolution_y = 1920, 1080
    assert bpy.ops.trajmaster.match_model_camera() == {"FINISHED"}
    assert strip.transform.scale_x == pytest.approx(480 / 64)


# --- 8. a double click on Generate --------------------------------------------------------------


def test_a_double_click_on_generate_makes_one_take_and_cancels_nothing(blend, runner):
    two_entity_shot(1, 49)
    runner.use_worker = True
    generate = bpy.types.TRAJMASTER_PT_generate
    idle = draw_panel(generate)
    big = [what for what, scale in idle if scale > 1.0]
    assert big == ["trajmaster.generate"], idle

    assert bpy.ops.trajmaster.generate() == {"FINISHED"}
    assert runner.busy()
    # The second click of a double click: ignored (said in the status bar), not an error.
    assert bpy.ops.trajmaster.generate() == {"CANCELLED"}
    assert runner.status.last_error == "" and runner.busy()
    # While it renders, Generate's place holds the progress bar; Cancel is below it.
    busy = draw_panel(generate)
    assert [what for what, scale in busy if scale > 1.0] == ["progress"], busy
    names = [what for what, _ in busy]
    assert names.index("trajmaster.cancel") > names.index("progress")
    assert ("trajmaster.cancel", 1.0) in busy
    # A click more than a second later is a real second Generate: refused with the sentence.
    runner._submitted_at -= 2 * runner.DOUBLE_CLICK_S
    with pytest.raises(RuntimeError, match="already running"):
        bpy.ops.trajmaster.generate()
    runner.status.last_error = ""
    runner.wait(timeout=120)
    assert [s.name for s in takes()] == ["Scene_take_001"], "one take, not cancelled"
    assert runner.status.message == "Added Scene_take_001"


# --- 9. where things are --------------------------------------------------------------------------


def test_generate_and_what_it_says_come_right_after_the_entities(blend, runner):
    order = {n: getattr(getattr(bpy.types, n), "bl_order", 0) for n in dir(bpy.types) if n.startswith("TRAJMASTER_PT_")}
    generate, entities = order["TRAJMASTER_PT_generate"], order["TRAJMASTER_PT_entities"]
    helpers = [order[n] for n in ("TRAJMASTER_PT_presets", "TRAJMASTER_PT_viewport", "TRAJMASTER_PT_sampling")]
    assert entities < generate < min(helpers), order
    # Under the button: what happened, then the error box, before anything else.
    runner.status.message = "Failed"
    runner.status.last_error = "The shot has no camera; pick one in the TrajMaster panel or set the scene camera."
    runner.status.info = "The .blend file is not saved, so takes go to a temporary folder (/tmp/x)."
    names = [what for what, _ in draw_panel(bpy.types.TRAJMASTER_PT_generate)]
    at = names.index("trajmaster.generate")
    assert names[at + 1] == "label:Failed"
    assert names[at + 2].startswith("label:The shot has no")
    info = next(i for i, name in enumerate(names) if name.startswith("label:The .blend file"))
    assert names.index("trajmaster.copy_error") < info
    assert names[-1] == "trajmaster.export_job"


def test_show_in_folder_opens_the_takes_folder_with_its_video(blend, runner, tmp_path):
    two_entity_shot(1, 49)
    assert bpy.ops.trajmaster.generate() == {"FINISHED"}
    (strip,) = takes()
    video = blend.parent / "trajmaster" / "Scene" / "Scene_take_001.mp4"
    sequencer, file_browser = module("sequencer"), module("file_browser")
    assert sequencer.take_video(strip) == video
    # What each system is asked to do (the file selected in its folder).
    assert file_browser.reveal_command(video, "win32") == ["explorer", "/select,", str(video)]
    assert file_browser.reveal_command(video, "darwin") == ["open", "-R", str(video)]
    linux = file_browser.reveal_command(video, "linux", which=lambda name: "/usr/bin/" + name)
    assert linux[-2] == f"array:string:{video.as_uri()}" and "org.freedesktop.FileManager1.ShowItems" in linux
    assert file_browser.reveal_command(video, "linux", which=lambda name: None) is None, "then the folder opens"
    # The operator takes a strip by name (the sequencer's take panel passes the active one).
    compat = module("compat")
    compat.sequencer_scene(bpy.context, bpy.context.scene).sequence_editor.active_strip = None
    with pytest.raises(RuntimeError, match="Select a TrajMaster take"):
        bpy.ops.trajmaster.show_take_in_folder()
    runner.status.last_error = ""
    assert bpy.ops.trajmaster.show_take_in_folder(strip="Scene_take_001") == {"FINISHED"}
    compat.sequencer_scene(bpy.context, bpy.context.scene).sequence_editor.active_strip = strip
    assert ("trajmaster.show_take_in_folder", 1.0) in draw_panel(bpy.types.TRAJMASTER_PT_take)
    video.unlink()  # the folder is still shown, with a warning
    assert bpy.ops.trajmaster.show_take_in_folder() == {"FINISHED"}
    for path in video.parent.iterdir():
        path.unlink()
    video.parent.rmdir()
    with pytest.raises(RuntimeError, match=r"The take's folder .* is gone"):
        bpy.ops.trajmaster.show_take_in_folder()


def test_the_prompt_editor_shows_the_whole_prompt_and_counts_its_words(blend):
    scene = bpy.context.scene
    two_entity_shot(1, 49)
    long_prompt = (
        "a muscular chestnut horse with a long flowing black mane, a white blaze, four white socks and a "
        "worn leather saddle"
    )
    assert bpy.ops.trajmaster.edit_prompt(entity=1, text=long_prompt) == {"FINISHED"}
    assert scene.trajmaster.entities[1].prompt == long_prompt
    assert bpy.ops.trajmaster.edit_prompt(entity=-1, text="a windy beach at dawn") == {"FINISHED"}
    assert scene.trajmaster.location_prompt == "a windy beach at dawn"
    with pytest.raises(RuntimeError, match="no such entity"):
        bpy.ops.trajmaster.edit_prompt(entity=5, text="x")
    # Its window: the field, every word of the prompt on wrapped lines, and the word count.
    editor = bpy.types.TRAJMASTER_OT_edit_prompt
    layout = FakeLayout()
    rna = bpy.ops.trajmaster.edit_prompt.get_rna_type()
    editor.draw(SimpleNamespace(layout=layout, text=long_prompt, entity=1, bl_rna=rna), bpy.context)
    lines = [v for k, v in layout.log if k == "label"]
    assert " ".join(lines[:-1]) == long_prompt and all(len(line) <= 100 for line in lines[:-1])
    assert lines[-1] == "21 words"
    # Each prompt field has the editor's button beside it.
    entities = [v for k, v in _log(bpy.types.TRAJMASTER_PT_entities) if k == "operator"]
    assert ("trajmaster.edit_prompt", True) in entities
    assert ("trajmaster.edit_prompt", True) in [v for k, v in _log(bpy.types.TRAJMASTER_PT_main) if k == "operator"]


def _log(cls):
    layout = PlacedLayout()
    cls.draw(SimpleNamespace(layout=layout), bpy.context)
    return layout.log


# --- 10. the CogVideoX engine on a Preview Only backend -------------------------------------------


def test_the_real_engine_on_a_preview_only_backend_names_the_button_to_press(blend, runner, monkeypatch, tmp_path):
    """This Python has no torch, like a Preview Only environment: the answer is in the panel's and
    the preferences' words, never a pip command line."""
    _, settings = two_entity_shot(1, 49)
    settings.engine = "COGVIDEOX"
    with pytest.raises(RuntimeError) as raised:
        bpy.ops.trajmaster.generate()
    said = runner.status.last_error
    assert said in str(raised.value) and "pip" not in said and "\n" not in said
    assert said.startswith("The CogVideoX engine needs the package 'torch', which the backend Python set by "), said
    assert "or set Engine to Preview." in said

    # The managed environment (the add-on's own Set Up Backend, Preview Only): which button to press.
    preferences, env_setup = module("preferences"), module("env_setup")
    env_dir = tmp_path / "backend-env"
    python = env_setup.env_python(env_dir)
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    env_setup.mark_ready(env_dir, "PREVIEW", str(python), {"packages": {}})
    monkeypatch.setattr(preferences, "managed_env_dir", lambda create=False: str(env_dir))
    monkeypatch.delenv("TRAJMASTER_PYTHON")
    assert bpy.context.preferences.addons[MODULE].preferences.python_source == "MANAGED"
    runner.status.last_error = ""
    with pytest.raises(RuntimeError):
        bpy.ops.trajmaster.generate()
    said = runner.status.last_error
    assert said == (
        "The CogVideoX engine needs the Full Model backend, and this one is Preview Only: in Edit > Preferences > "
        "Add-ons > TrajMaster Previz choose Full Model, press Update Backend (about 6 GB) and then Download "
        "Weights, or set Engine to Preview."
    )
    assert takes() == [] and not (blend.parent / "trajmaster" / "Scene" / "Scene_take_001.job.json").exists()


# --- 11. names ----------------------------------------------------------------------------------------


def test_a_shot_name_names_the_takes_and_entity_names_label_them(blend, runner):
    scene, settings = two_entity_shot(1, 49)
    settings.shot_name = "Chase 3"
    settings.entities[0].display_name = "Horse"  # the second keeps its empty's name, Bear
    assert bpy.ops.trajmaster.generate() == {"FINISHED"}
    (strip,) = takes()
    assert strip.name == "Chase_3_take_001"
    folder = blend.parent / "trajmaster" / "Chase_3"
    job = jobfile.read(folder / "Chase_3_take_001.job.json")
    assert job["shot"]["scene_name"] == "Chase 3" and job["source"]["scene"] == "Scene"
    assert [e["name"] for e in job["entities"]] == ["Horse", "Bear"]
    info = module("sequencer").take_info(strip)
    assert info["shot"] == "Chase_3" and [e["name"] for e in json.loads(info["entities"])] == ["Horse", "Bear"]
    sidecar = json.loads((folder / "Chase_3_take_001.json").read_text())
    assert [e["name"] for e in sidecar["job"]["entities"]] == ["Horse", "Bear"]
    # The list shows the names; the overlay labels with them.
    layout = FakeLayout()
    bpy.types.TRAJMASTER_UL_entities.draw_item(
        None, bpy.context, layout, settings, settings.entities[0], 0, settings, "active_entity_index"
    )
    assert "Horse" in [v for k, v in layout.log if k == "label"]
    overlay = module("overlay")
    overlay.invalidate()
    geometry = overlay.refresh(bpy.context, scene)
    assert [e.name for e in geometry.entities] == ["Horse", "Bear"]
    # An empty Shot Name is the scene's again; two entities under one name are refused.
    settings.shot_name = ""
    assert module("outputs").shot_name(scene) == "Scene"
    settings.entities[1].display_name = "Horse"
    with pytest.raises(RuntimeError, match="Entities 1 and 2 are both named 'Horse'; give each its own name"):
        bpy.ops.trajmaster.generate()


# --- 12. entity sizes and the preview's seed -------------------------------------------------------


def test_an_entity_height_travels_in_the_job_and_a_preview_take_says_it_ignores_the_seed(blend, runner):
    scene, settings = two_entity_shot(1, 49)
    assert settings.entities[0].height == pytest.approx(1.7), "a person until a preset or the user says"
    settings.entities[1].height = 0.6
    assert bpy.ops.trajmaster.generate() == {"FINISHED"}
    folder = blend.parent / "trajmaster" / "Scene"
    job = jobfile.read(folder / "Scene_take_001.job.json")
    assert [e["height"] for e in job["entities"]] == [1.7, 0.6]
    # The preview ignores the seed: its take offers no Same Seed, and says why.
    (strip,) = takes()
    module("compat").sequencer_scene(bpy.context, scene).sequence_editor.active_strip = strip
    placed = [what for what, _ in draw_panel(bpy.types.TRAJMASTER_PT_take)]
    assert "trajmaster.regenerate" in placed and placed.count("trajmaster.regenerate") == 1
    assert any(text.startswith("label:The preview ignores the seed") for text in placed)
    # ... and the Model panel greys the seed out for the preview engine, saying so.
    log = _log(bpy.types.TRAJMASTER_PT_sampling)
    assert ("operator", ("trajmaster.randomize_seed", False)) in log
    assert ("label", "The preview engine ignores the seed and these settings") in log
    settings.engine = "COGVIDEOX"
    assert ("operator", ("trajmaster.randomize_seed", True)) in _log(bpy.types.TRAJMASTER_PT_sampling)


def test_entity_heights_reach_the_preview_picture(blend, runner, tmp_path):
    """The same shot with the bear 0.6 m and 2.4 m tall: the bear's block in the take's middle
    frame is taller in the second (the backend reads entities[].height)."""
    import imageio_ffmpeg

    _, settings = two_entity_shot(1, 49)
    settings.entities[1].color = (0.1, 0.45, 0.9)  # blue: the walker keeps the default orange
    tops = []
    for height in (0.6, 2.4):
        settings.entities[1].height = height
        assert bpy.ops.trajmaster.generate() == {"FINISHED"}
        video = sorted((blend.parent / "trajmaster" / "Scene").glob("*.mp4"))[-1]
        reader = imageio_ffmpeg.read_frames(str(video))
        meta = next(reader)
        width, height_px = meta["size"]
        frames = [np.frombuffer(f, np.uint8).reshape(height_px, width, 3) for f in reader]
        frame = frames[24].astype(int)
        # The bear's block, blue (its faces are shaded, so by hue): the sky and ground are grey.
        r, g, b = frame[..., 0], frame[..., 1], frame[..., 2]
        mask = (b > r + 60) & (b > g + 20)
        rows = np.nonzero(mask.sum(axis=1) >= 8)[0]  # wider than a label's colour swatch
        assert len(rows), "the bear is in the picture"
        tops.append(rows.min())
    assert tops[0] - tops[1] > 60, f"the 2.4 m bear stands much taller than the 0.6 m one: tops {tops}"
