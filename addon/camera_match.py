"""Match Model Camera: make the shot camera see what the model renders.

The model renders 720 x 480 through a 35 mm lens on a 23.76 mm wide sensor (backend/poses.py,
MODEL_*), centred. With `rig_pose` the camera also takes the training rig's attitude: pitch
-5.356 degrees and no roll, keeping its position and heading, which is the camera the Rig mapping
substitutes (poses.rig_camera) except for its height: the rig's camera stands at eye height.

A camera high above the action, pitched like the rig, looks over it: the action leaves the
camera view. The operator then warns (and the panel lists it: checks.check_camera_view) rather
than moving the camera down: the position is the user's composition, the option promises to keep
it, and in the Rig mapping the model frames the action from eye height anyway, so the take is not
affected; the warning says how high the camera is and that about 1.6 m shows the model's framing.
"""

from __future__ import annotations

from typing import ClassVar

import bpy
import numpy as np
from bpy.props import BoolProperty
from mathutils import Matrix

from ..backend import poses
from . import compat, job_export, runner, sequencer


def rig_pose_matrix(camera_matrix: np.ndarray) -> np.ndarray:
    """A Blender camera world matrix turned to the rig's pitch and roll; position, heading and
    scale kept. Raises poses.PoseError for a degenerate matrix."""
    m = np.asarray(camera_matrix, dtype=np.float64)
    frame = poses.rig_camera(poses.camera_frame(m))
    scale = np.linalg.norm(m[:3, :3], axis=0)
    out = np.eye(4)
    # A Blender camera looks down its local -Z with +Y up: columns right, up, -forward.
    out[:3, 0], out[:3, 1], out[:3, 2] = frame[0] * scale[0], frame[1] * scale[1], -frame[2] * scale[2]
    out[:3, 3] = m[:3, 3]
    return out


def _rotation_driven(camera: bpy.types.Object) -> bool:
    """True when something other than the camera's own rotation values sets where it points."""
    anim = camera.animation_data
    curves = [*compat.action_fcurves(anim.action), *anim.drivers] if anim else []
    if any(f.data_path.startswith(("rotation", "delta_rotation")) for f in curves):
        return True
    return any(c.enabled and c.influence > 0 for c in camera.constraints)


def set_model_resolution(context: bpy.types.Context, scene: bpy.types.Scene) -> int:
    """Make `scene` render the model's frame (720 x 480 at 100 %, square pixels) and fit its takes
    to it again. Returns how many takes were fitted."""
    render = scene.render
    render.resolution_x, render.resolution_y = poses.MODEL_WIDTH, poses.MODEL_HEIGHT
    render.resolution_percentage = 100
    render.pixel_aspect_x = render.pixel_aspect_y = 1.0
    return sequencer.fit_takes(context, scene)


class TRAJMASTER_OT_match_model_resolution(bpy.types.Operator):
    """Make the scene render the model's frame size, 720 x 480 at 100 %, so each take fills the \
frame (other cameras of the scene render at that size too)"""

    bl_idname = "trajmaster.match_model_resolution"
    bl_label = "Set Output to 720 x 480"
    bl_options: ClassVar[set[str]] = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return context.scene is not None

    def execute(self, context: bpy.types.Context) -> set[str]:
        # The scene whose sequencer holds the takes (5.x: the workspace's sequencer scene).
        scene = compat.sequencer_scene(context, context.scene)
        fitted = set_model_resolution(context, scene)
        takes = f"; {fitted} take{'s' if fitted != 1 else ''} now fill the frame" if fitted else ""
        self.report({"INFO"}, f"'{scene.name}' renders {poses.MODEL_WIDTH} x {poses.MODEL_HEIGHT}{takes}.")
        return {"FINISHED"}


class TRAJMASTER_OT_match_model_camera(bpy.types.Operator):
    """Set the shot camera to the model's lens, sensor and frame size (35 mm, 23.76 mm, 720 x 480),
    optionally with the training rig's pitch (-5.356 degrees) and no roll"""

    bl_idname = "trajmaster.match_model_camera"
    bl_label = "Match Model Camera"
    bl_options: ClassVar[set[str]] = {"REGISTER", "UNDO"}

    rig_pose: BoolProperty(
        name="Rig Pitch",
        default=False,
        description="Also pitch the camera -5.356 degrees with no roll, like the training rig "
        "(position and heading are kept)",
    )

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return context.scene is not None

    def execute(self, context: bpy.types.Context) -> set[str]:
        scene = context.scene
        camera = job_export.shot_camera(scene)
        if camera is None or camera.type != "CAMERA":
            self.report({"ERROR"}, "The shot has no camera; pick one in the TrajMaster panel or set the scene camera.")
            return {"CANCELLED"}
        new_matrix = None
        if self.rig_pose:
            try:
                new_matrix = rig_pose_matrix(np.array(camera.matrix_world))
            except poses.PoseError as exc:
                self.report({"ERROR"}, f"'{camera.name}' cannot be turned: {exc}.")
                return {"CANCELLED"}
        data = camera.data
        data.type = "PERSP"
        data.lens = poses.MODEL_LENS_MM
        data.sensor_width = poses.MODEL_SENSOR_WIDTH_MM
        data.sensor_fit = "HORIZONTAL"
        # The model's principal point is the image centre; a lens shift would move the frame.
        data.shift_x = data.shift_y = 0.0
        set_model_resolution(context, scene)
        text = (
            f"'{camera.name}' now sees what the model renders: {poses.MODEL_LENS_MM:g} mm lens, "
            f"{poses.MODEL_SENSOR_WIDTH_MM:g} mm sensor, {poses.MODEL_WIDTH} x {poses.MODEL_HEIGHT}"
        )
        if new_matrix is not None:
            camera.matrix_world = Matrix(new_matrix.tolist())
            text += f", pitched {poses.RIG_PITCH_DEG:.3f} degrees with no roll"
            if _rotation_driven(camera):
                self.report(
                    {"WARNING"},
                    f"{text}; its rotation is animated or constrained, so the pitch holds only until the "
                    "animation or constraint sets it again.",
                )
                return {"FINISHED"}
            missed = _missed_action(context, scene)
            if missed:
                self.report({"WARNING"}, f"{text}. " + " ".join(missed))
                return {"FINISHED"}
        self.report({"INFO"}, text + ".")
        return {"FINISHED"}


def _missed_action(context: bpy.types.Context, scene: bpy.types.Scene) -> list[str]:
    """Check the shot through the turned camera (the panel lists the findings, as after Check Shot)
    and return what says the camera view, or the model's, misses an entity."""
    try:
        found = job_export.shot_findings(context, scene)
    except job_export.ShotError:
        return []  # no shot to frame yet
    runner.set_findings(scene, found)
    return [f.message for f in found if f.code in ("camera_view", "out_of_view")]


classes = (TRAJMASTER_OT_match_model_camera, TRAJMASTER_OT_match_model_resolution)


# Blender's own helper: registers in order, unregisters in reverse.
register, unregister = bpy.utils.register_classes_factory(classes)
