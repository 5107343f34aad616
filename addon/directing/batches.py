"""Several takes in one press: Generate Variations (one shot, `count` takes that differ in one
thing) and Generate All Shots (every scene of the file with a shot), plus cancelling one take of
the queue. The takes go through the runner's queue (runner.submit_batch) like any other.

Generate All Shots checks every shot before anything is written: the blocking problems of all
scenes are one list (a sentence each, naming the scene), and the pose checks' findings another;
`last_check` keeps both for the panel until the next check or file load.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, ClassVar

import bpy
from bpy.app.handlers import persistent
from bpy.props import IntProperty

from .. import job_export, operators, runner
from . import variations

PREVIEW_NOTE = (
    "The Preview engine ignores the seed, the LoRA scale and the steps, so its variations all look the same; "
    "choose the CogVideoX engine in Model to see them differ."
)


@dataclass
class ShotCheck:
    """The last Generate All Shots check: blocking problems and findings, one sentence each."""

    scenes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)


last_check = ShotCheck()


def shot_scenes() -> list[bpy.types.Scene]:
    """The scenes of this file with a TrajMaster shot (at least one entity), in Blender's order (by name).
    Scenes linked from another file are left out: their sequencers are read-only."""
    return [s for s in bpy.data.scenes if s.library is None and len(s.trajmaster.entities) > 0]


def variation_title(count: int, varies: str) -> str:
    what = {variations.SEED: "seed", variations.LORA_SCALE: "LoRA scale", variations.ANNEALED_STEPS: "annealed steps"}
    return f"{count} variations ({what.get(varies, varies)})"


def _submit(op: bpy.types.Operator, context: bpy.types.Context, specs: list, title: str, what: str) -> set[str]:
    """Queue the takes and say so (in background Blender: they are in the sequencer now)."""
    try:
        names = runner.submit_batch(context, specs, title=title)
    except runner.RunError as exc:
        return operators._fail(op, str(exc))
    if runner.status.info:
        op.report({"WARNING"}, runner.status.info)
    if runner.busy():
        op.report({"INFO"}, f"Generating {what}: {names[0]} to {names[-1]}")
    else:
        op.report({"INFO"}, f"Added {what} to the sequencer: {names[0]} to {names[-1]}")
    return {"FINISHED"}


class TRAJMASTER_OT_generate_variations(bpy.types.Operator):
    """Generate several takes of this shot that differ in the seed, the LoRA scale or the annealed steps"""

    bl_idname = "trajmaster.generate_variations"
    bl_label = "Generate Variations"
    bl_options: ClassVar[set[str]] = {"REGISTER"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return context.scene is not None

    def execute(self, context: bpy.types.Context) -> set[str]:
        if runner.busy():
            return operators._busy(self)
        scene = context.scene
        settings = scene.trajmaster_directing
        export = operators._export(self, context)
        if export is None:
            return {"CANCELLED"}
        count, varies = settings.variation_count, settings.variation_varies
        try:
            planned = variations.plan(export.job, count, varies, set_id=uuid.uuid4().hex[:12])
        except variations.VariationError as exc:
            return operators._fail(self, str(exc))
        shot = operators._shot(scene)
        specs = [runner.TakeSpec(scene, shot, v.job, label=v.label) for v in planned]
        if export.job["engine"] == "preview":
            self.report({"WARNING"}, PREVIEW_NOTE)
        return _submit(self, context, specs, variation_title(count, varies), f"{count} variations")


class TRAJMASTER_OT_generate_all_shots(bpy.types.Operator):
    """Check every scene with a TrajMaster shot, then generate a take of each into its own scene's sequencer"""

    bl_idname = "trajmaster.generate_all_shots"
    bl_label = "Generate All Shots"
    bl_options: ClassVar[set[str]] = {"REGISTER"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        global last_check
        if runner.busy():
            return operators._busy(self)
        scenes = shot_scenes()
        if not scenes:
            return operators._fail(
                self, "No scene of this file has a TrajMaster shot; add an entity to a scene's shot first."
            )
        check = ShotCheck(scenes=[s.name for s in scenes])
        for scene in scenes:
            check.problems += [f"{scene.name}: {p}" for p in job_export.shot_problems(scene)]
        exports: list[tuple[bpy.types.Scene, Any]] = []
        if not check.problems:
            # Sampling moves each scene's frame and puts it back; only shots that passed get here.
            for scene in scenes:
                try:
                    export = job_export.build(context, scene)
                except job_export.ShotError as exc:
                    check.problems.append(f"{scene.name}: {exc}")
                    continue
                exports.append((scene, export))
                check.findings += [f"{scene.name}: {f.message}" for f in export.findings]
                if scene == context.scene:
                    runner.set_findings(scene, export.findings)
        last_check = check
        if check.problems:
            for problem in check.problems:
                self.report({"ERROR"}, problem)
            n = len(check.problems)
            runner.status.last_error = (
                f"Generate All Shots found {n} problem{'s' if n > 1 else ''} (listed under All Shots); "
                "fix them and press it again."
            )
            return {"CANCELLED"}
        specs = [
            runner.TakeSpec(scene, operators._shot(scene), export.job, label=scene.name, own_sequencer=True)
            for scene, export in exports
        ]
        if check.findings:
            n = len(check.findings)
            self.report({"WARNING"}, f"{n} warning{'s' if n > 1 else ''} in the shots (listed under All Shots)")
        n = len(specs)
        return _submit(self, context, specs, f"All shots ({n})", f"{n} shot{'s' if n > 1 else ''}")


class TRAJMASTER_OT_cancel_take(bpy.types.Operator):
    """Cancel this take of the queue (the others go on); a take that has not started is dropped at once"""

    bl_idname = "trajmaster.cancel_take"
    bl_label = "Cancel Take"

    key: IntProperty(options={"HIDDEN", "SKIP_SAVE"})

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return runner.busy()

    def execute(self, context: bpy.types.Context) -> set[str]:
        if not runner.cancel(self.key):
            self.report({"INFO"}, "That take has already ended.")
            return {"CANCELLED"}
        return {"FINISHED"}


@persistent
def _forget_check_on_load(*_args: Any) -> None:
    global last_check
    last_check = ShotCheck()  # about the previous file's scenes


classes = (TRAJMASTER_OT_generate_variations, TRAJMASTER_OT_generate_all_shots, TRAJMASTER_OT_cancel_take)
_register_classes, _unregister_classes = bpy.utils.register_classes_factory(classes)


def register() -> None:
    _register_classes()
    bpy.app.handlers.load_post.append(_forget_check_on_load)


def unregister() -> None:
    if _forget_check_on_load in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(_forget_check_on_load)
    _unregister_classes()
