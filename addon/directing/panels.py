"""The directing sections: in the N-panel, the running batch (Queue), Variations and All Shots;
in the sequencer's take panel, Compare (the set's takes, stepping, A/B, marks).

Each is a sub-panel of its own (panel.MAIN or the take panel), so the main panels' `draw()`
stay untouched (docs/addon.md, extension points).
"""

from __future__ import annotations

from typing import ClassVar

import bpy

from .. import compat, job_export, panel, runner, sequencer
from . import batches, compare, contact_sheet, variations

STATE_ICONS = {
    "queued": "TIME",
    "running": "PLAY",
    "cancelling": "CANCEL",
    "done": "CHECKMARK",
    "failed": "ERROR",
    "cancelled": "X",
}
MARK_ICONS = {"FAVOURITE": "SEQUENCE_COLOR_04", "REJECT": "SEQUENCE_COLOR_01", "": "BLANK1"}


def _wrapped(layout: bpy.types.UILayout, context: bpy.types.Context, text: str, icon: str = "NONE") -> None:
    panel._wrapped(layout, context, text, icon=icon)


class _View3DSubPanel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = panel.CATEGORY
    bl_parent_id = panel.MAIN


class TRAJMASTER_PT_queue(_View3DSubPanel, bpy.types.Panel):
    """The running batch: takes done out of takes queued, the ETA, and each take with its Cancel."""

    bl_label = "Queue"
    # Right under Generate (the same order, registered after it): the batch's progress is its status.
    bl_order = 11
    bl_options: ClassVar[set[str]] = {"HIDE_HEADER"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return runner.busy() and runner.status.jobs_total > 1

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        status = runner.status
        running = next((e for e in status.queue if e.state in ("running", "cancelling")), None)
        fraction = (status.jobs_done + (running.fraction if running else 0.0)) / max(1, status.jobs_total)
        title = status.batch_title or "Takes"
        text = f"{title}: {status.jobs_done} of {status.jobs_total} done{panel._eta(status.batch_eta_s)}"
        compat.draw_progress(layout, fraction, text)
        col = layout.column(align=True)
        for entry in status.queue:
            row = col.row(align=True)
            label = f"{entry.name}{sequencer.LABEL_SEPARATOR}{entry.label}" if entry.label else entry.name
            row.label(text=label, icon=STATE_ICONS.get(entry.state, "DOT"))
            if entry.state in ("queued", "running"):
                row.operator("trajmaster.cancel_take", text="", icon="X").key = entry.key


class TRAJMASTER_PT_variations(_View3DSubPanel, bpy.types.Panel):
    bl_label = "Variations"
    bl_order = 33
    bl_options: ClassVar[set[str]] = {"DEFAULT_CLOSED"}

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        scene = context.scene
        settings = scene.trajmaster_directing
        shot = scene.trajmaster
        col = layout.column()
        col.use_property_split = True
        col.use_property_decorate = False
        col.prop(settings, "variation_count")
        col.prop(settings, "variation_varies")
        _wrapped(layout.column(align=True), context, _values_text(shot, settings), icon="SEQ_STRIP_DUPLICATE")
        if shot.engine == "PREVIEW":
            _wrapped(layout.column(align=True), context, batches.PREVIEW_NOTE, icon="INFO")
        row = layout.row()
        row.enabled = not runner.busy()
        row.operator("trajmaster.generate_variations", icon="RENDER_ANIMATION")


def _values_text(shot: bpy.types.PropertyGroup, settings: bpy.types.PropertyGroup) -> str:
    """What the takes will be, before pressing: the sweep's values, or new seeds."""
    varies, count = settings.variation_varies, settings.variation_count
    if varies == variations.SEED:
        return f"{count} takes, each with a new random seed"
    sampling = {"lora_scale": shot.lora_scale, **job_export.quality_sampling(shot)}
    try:
        values = variations.sweep_values(varies, sampling, count)
    except variations.VariationError as exc:
        return str(exc)
    if varies == variations.LORA_SCALE:
        return "LoRA scale " + ", ".join(f"{v:.2f}" for v in values) + " (seed kept)"
    return "Annealed steps " + ", ".join(str(v) for v in values) + f" of {sampling['steps']} (seed kept)"


class TRAJMASTER_PT_all_shots(_View3DSubPanel, bpy.types.Panel):
    bl_label = "All Shots"
    bl_order = 36
    bl_options: ClassVar[set[str]] = {"DEFAULT_CLOSED"}

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        scenes = batches.shot_scenes()
        col = layout.column(align=True)
        if not scenes:
            col.label(text="No scene has a shot yet", icon="INFO")
        for scene in scenes:
            shot = scene.trajmaster
            n = len(shot.entities)
            text = f"{scene.name}: frames {shot.frame_start}-{shot.frame_end}, {n} entit{'ies' if n > 1 else 'y'}"
            col.label(text=text, icon="SCENE_DATA")
        check = batches.last_check
        if check.problems or check.findings:
            box = layout.box().column(align=True)
            for problem in check.problems:
                _wrapped(box, context, problem, icon="ERROR")
            for finding in check.findings:
                _wrapped(box, context, finding, icon="INFO")
        row = layout.row()
        row.enabled = bool(scenes) and not runner.busy()
        row.operator("trajmaster.generate_all_shots", text=f"Generate All Shots ({len(scenes)})", icon="SEQUENCE")


class TRAJMASTER_PT_compare(bpy.types.Panel):
    """The selected take's set in the sequencer: which plays, stepping, A/B and marks."""

    bl_space_type = "SEQUENCE_EDITOR"
    bl_region_type = "UI"
    bl_category = panel.CATEGORY
    bl_parent_id = "TRAJMASTER_PT_take"
    bl_label = "Compare"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return sequencer.selected_take(context)[1] is not None

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        strip, info = sequencer.selected_take(context)
        editor = compare.editor(context)
        takes = compare.group(editor, strip)
        if info.get("variation_set"):
            varies = info.get("variation_varies", "")
            layout.label(text=batches.variation_title(int(info.get("variation_count", len(takes))), varies))
        else:
            layout.label(text=f"Takes of {info.get('shot')}")
        col = layout.column(align=True)
        for take in takes:
            take_info = sequencer.take_info(take) or {}
            row = col.row(align=True)
            text = take_info.get("variation_label") or take.name
            if take_info.get("variation_label"):
                text = f"{text} ({take.name.split(sequencer.LABEL_SEPARATOR)[0]})"
            row.operator(
                "trajmaster.take_solo", text=text, icon="PLAY" if not take.mute else "BLANK1", depress=take == strip
            ).strip = take.name
            row.label(text="", icon=MARK_ICONS[compare.mark_of(take)])
        row = layout.row(align=True)
        row.operator("trajmaster.take_step", text="Previous", icon="TRIA_DOWN").direction = -1
        row.operator("trajmaster.take_step", text="Next", icon="TRIA_UP").direction = 1
        settings = compare.sequencer_settings(context)
        box = layout.box().column(align=True)
        row = box.row(align=True)
        row.label(text=f"A: {settings.ab_a or '-'}")
        row.operator("trajmaster.take_ab", text="Set A").action = "SET_A"
        row = box.row(align=True)
        row.label(text=f"B: {settings.ab_b or '-'}")
        row.operator("trajmaster.take_ab", text="Set B").action = "SET_B"
        box.operator("trajmaster.take_ab", text="Switch A/B", icon="ARROW_LEFTRIGHT").action = "TOGGLE"
        mark = compare.mark_of(strip)
        row = layout.row(align=True)
        for kind, text in (("FAVOURITE", "Favourite"), ("REJECT", "Reject")):
            button = row.operator("trajmaster.take_mark", text=text, icon=MARK_ICONS[kind], depress=mark == kind)
            button.mark = kind
        # Actions on the whole set go below.
        contact_sheet.draw(layout, context, strip)


classes = (TRAJMASTER_PT_queue, TRAJMASTER_PT_variations, TRAJMASTER_PT_all_shots, TRAJMASTER_PT_compare)
register, unregister = bpy.utils.register_classes_factory(classes)
