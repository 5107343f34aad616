"""Scenes built in the tests: a camera, animated empties, a shot set up in scene.trajmaster."""

from __future__ import annotations

import importlib
import math

import bpy
import numpy as np
from mathutils import Matrix

from backend import poses

MODULE = "bl_ext.user_default.trajmaster_previz"

PROMPTS = (
    "a tall man in a long grey coat and black boots walking slowly with both hands deep in his pockets",
    "a large brown bear with thick shaggy fur and a heavy build lumbering forward on all four paws",
    "a small red robot with round glowing eyes and short metal legs rolling steadily across the ground",
)
LOCATION = "a quiet cobblestone city square at dusk with old stone buildings"


def linear(obj: bpy.types.Object) -> bpy.types.Object:
    """Linear interpolation on every key of the object's action (layered in 4.4+: the add-on's compat)."""
    compat = importlib.import_module(f"{MODULE}.addon.compat")
    for fcurve in compat.action_fcurves(obj.animation_data.action):
        for key in fcurve.keyframe_points:
            key.interpolation = "LINEAR"
    return obj


def link(scene: bpy.types.Scene, obj: bpy.types.Object) -> bpy.types.Object:
    scene.collection.objects.link(obj)
    return obj


def camera(scene: bpy.types.Scene, position=(0.0, -10.0, 1.6), target=(0.0, 0.0, 1.2), active=True):
    obj = link(scene, bpy.data.objects.new("ShotCam", bpy.data.cameras.new("ShotCam")))
    obj.matrix_world = Matrix(poses.look_at_camera(position, target).tolist())
    if active:
        scene.camera = obj
    return obj


def empty(scene: bpy.types.Scene, name: str, location=(0.0, 0.0, 0.0)) -> bpy.types.Object:
    obj = link(scene, bpy.data.objects.new(name, None))
    obj.location = location
    return obj


def keyframed(scene, name, start, end, x0=-2.0, x1=2.0, yaw0=0.0, yaw1=math.pi / 2, y=0.0):
    """An empty moving linearly along X from x0 to x1 while turning about Z, frames start..end."""
    obj = empty(scene, name, (x0, y, 0.0))
    obj.rotation_euler = (0.0, 0.0, yaw0)
    obj.keyframe_insert("location", frame=start)
    obj.keyframe_insert("rotation_euler", frame=start)
    obj.location = (x1, y, 0.0)
    obj.rotation_euler = (0.0, 0.0, yaw1)
    obj.keyframe_insert("location", frame=end)
    obj.keyframe_insert("rotation_euler", frame=end)
    return linear(obj)


def parented(scene, name, start, end):
    """A child empty 2 m off a parent empty that spins a half turn and slides along Y."""
    parent = empty(scene, name + "_parent", (0.0, 1.0, 0.0))
    parent.keyframe_insert("location", frame=start)
    parent.keyframe_insert("rotation_euler", frame=start)
    parent.location = (0.0, 3.0, 0.0)
    parent.rotation_euler = (0.0, 0.0, math.pi)
    parent.keyframe_insert("location", frame=end)
    parent.keyframe_insert("rotation_euler", frame=end)
    linear(parent)
    child = empty(scene, name, (2.0, 0.0, 0.0))
    child.parent = parent
    return child


def on_path(scene, name, start, end):
    """An empty on a Follow Path constraint along a straight 6 m path, its offset keyframed."""
    curve = bpy.data.curves.new(name + "_path", "CURVE")
    curve.dimensions = "3D"
    spline = curve.splines.new("POLY")
    spline.points.add(1)
    spline.points[0].co = (-3.0, 2.0, 0.0, 1.0)
    spline.points[1].co = (3.0, 2.0, 0.0, 1.0)
    path = link(scene, bpy.data.objects.new(name + "_path", curve))
    obj = empty(scene, name)
    follow = obj.constraints.new("FOLLOW_PATH")
    follow.target = path
    follow.use_fixed_location = True
    follow.use_curve_follow = True
    follow.forward_axis = "FORWARD_X"
    follow.offset_factor = 0.0
    follow.keyframe_insert("offset_factor", frame=start)
    follow.offset_factor = 1.0
    follow.keyframe_insert("offset_factor", frame=end)
    return linear(obj)


def shot(scene, cam, empties, start=None, end=None, prompts=PROMPTS):
    """Fill scene.trajmaster for `empties` (one entity each)."""
    settings = scene.trajmaster
    settings.camera = cam
    if start is not None:
        settings.frame_start = start
    if end is not None:
        settings.frame_end = end
    settings.location_prompt = LOCATION
    settings.entities.clear()
    for obj, prompt in zip(empties, prompts, strict=False):
        item = settings.entities.add()
        item.object = obj
        item.prompt = prompt
    return settings


def two_entity_shot(start=10, end=73):
    """A walker and a bear crossing in front of the camera, keyed Linear: a shot inside what the model knows."""
    scene = bpy.context.scene
    cam = camera(scene)
    walker = keyframed(scene, "Walker", start, end, y=2.0)
    bear = keyframed(scene, "Bear", start, end, x0=3.0, x1=-1.0, y=5.0)
    return scene, shot(scene, cam, [walker, bear], start, end)


def takes(scene=None) -> list:
    """The take strips in the sequencer of `scene` (5.x: its sequencer scene), by name."""
    compat = importlib.import_module(f"{MODULE}.addon.compat")
    editor = compat.sequencer_scene(bpy.context, scene or bpy.context.scene).sequence_editor
    strips = compat.strips(editor) if editor else []
    return sorted((s for s in strips if "trajmaster" in s), key=lambda s: s.name)


def matrices_at(scene, objects, times) -> np.ndarray:
    """World matrices of `objects` at fractional frames, read the plain way: frame_set + matrix_world."""
    out = np.empty((len(objects), len(times), 4, 4))
    for t, time in enumerate(times):
        frame = math.floor(time)
        scene.frame_set(frame, subframe=time - frame)
        for k, obj in enumerate(objects):
            out[k, t] = np.array(obj.matrix_world)
    return out


def index_video(path, frames: int = 49, fps: int = 8):
    """A tiny clip whose frame j shows j in binary: six bars, white for a 1 bit (decoded by shown_frame)."""
    import imageio_ffmpeg

    writer = imageio_ffmpeg.write_frames(
        str(path), (64, 48), fps=fps, codec="libx264", pix_fmt_out="yuv420p", output_params=["-crf", "0"]
    )
    writer.send(None)
    for j in range(frames):
        image = np.zeros((48, 64, 3), np.uint8)
        for bit in range(6):
            if j >> bit & 1:
                image[:, bit * 10 + 2 : bit * 10 + 10] = 255
        writer.send(image.tobytes())
    writer.close()
    return path


def shown_frame(scene, frame: int, png) -> int:
    """Render the sequencer of `scene` at `frame` and read back the clip frame it shows."""
    from PIL import Image

    render = scene.render
    render.resolution_x, render.resolution_y, render.resolution_percentage = 64, 48, 100
    render.image_settings.file_format = "PNG"
    render.use_sequencer = True
    render.filepath = str(png)
    scene.frame_set(frame)
    bpy.ops.render.render(write_still=True, scene=scene.name)
    image = Image.open(png).convert("L")
    return sum(1 << bit for bit in range(6) if image.getpixel((bit * 10 + 6, 24)) > 128)
