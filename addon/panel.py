"""The N-panel (3D viewport, tab "TrajMaster") and the take panel in the sequencer.

The main panel holds the shot; sub-panels (entities, sampling, generate) hang off it by
`bl_parent_id = MAIN`, which is also how other modules add their own sections.
"""

from __future__ import annotations

from typing import ClassVar

import bpy

from ..backend import job as jobfile
from . import compat, job_export, operators, presence, prompt_help, properties, runner, sequencer, status_scope, ui_text

CATEGORY = "TrajMaster"
MAIN = "TRAJMASTER_PT_main"


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = round(seconds)
    return f", {seconds // 60}:{seconds % 60:02d} left" if seconds >= 60 else f", {seconds} s left"


class _View3DPanel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = CATEGORY


class TRAJMASTER_PT_main(_View3DPanel, bpy.types.Panel):
    bl_idname = MAIN
    bl_label = "TrajMaster Previz"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return context.scene is not None

    def draw(self, context: bpy.types.Context) -> None:
        status_scope.before_draw(context)  # first: the sub-panels below show only what is still true
        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        scene = context.scene
        settings = scene.trajmaster
        col = layout.column()
        col.prop(settings, "shot_name", placeholder=scene.name)
        col.prop(settings, "camera")
        if settings.camera is None:
            col.label(text=f"Scene camera: {scene.camera.name}" if scene.camera else "No scene camera", icon="INFO")
        sub = col.column(align=True)
        sub.prop(settings, "frame_start", text="Shot Start")
        sub.prop(settings, "frame_end", text="End")
        if settings.use_custom_range:
            col.operator("trajmaster.reset_range", icon="LOOP_BACK")
        row = col.row(align=True)
        row.prop(settings, "location_prompt")
        row.operator("trajmaster.edit_prompt", text="", icon="GREASEPENCIL").entity = -1
        prompt_help.expand_button(row, -1)


class TRAJMASTER_UL_entities(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_property, index=0, flt_flag=0):
        row = layout.row(align=True)
        swatch = row.row(align=True)
        swatch.ui_units_x = 1.2
        swatch.prop(item, "color", text="", emboss=True)
        name = properties.entity_name(item) or "(no empty)"
        words = jobfile.word_count(item.prompt)
        scene = data.id_data
        # Blender's convention for something broken in a list: the row in red, saying so.
        missing = item.object is not None and not presence.is_present(
            item.object, scene, presence.shot_view_layer(context, scene)
        )
        row.alert = missing
        row.label(text=name, icon="EMPTY_AXIS" if item.object and not missing else "ERROR")
        count = row.row()
        count.alignment = "RIGHT"
        count.label(text="missing" if missing else f"{words} words" if words else "no prompt")


class TRAJMASTER_PT_entities(_View3DPanel, bpy.types.Panel):
    bl_label = "Entities"
    bl_parent_id = MAIN
    bl_order = 10

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        scene = context.scene
        settings = scene.trajmaster
        row = layout.row()
        row.template_list(
            "TRAJMASTER_UL_entities", "", settings, "entities", settings, "active_entity_index", rows=3, maxrows=3
        )
        col = row.column(align=True)
        col.operator("trajmaster.entity_add", icon="ADD", text="")
        col.operator("trajmaster.entity_remove", icon="REMOVE", text="")
        if len(settings.entities) >= properties.MAX_ENTITIES:
            layout.label(text=f"The model follows at most {properties.MAX_ENTITIES} entities", icon="INFO")
        if settings.entities and 0 <= settings.active_entity_index < len(settings.entities):
            item = settings.entities[settings.active_entity_index]
            box = layout.box()
            box.use_property_split = True
            box.use_property_decorate = False
            box.prop(item, "object")
            if item.object is not None:
                missing = presence.missing_reason(item.object, scene, presence.shot_view_layer(context, scene))
                if missing:
                    alert = box.column()
                    alert.alert = True
                    _wrapped(alert, context, f"'{item.object.name}' {missing}.", icon="ERROR")
            box.prop(item, "display_name", placeholder=item.object.name if item.object else "")
            row = box.row(align=True)
            row.prop(item, "prompt")
            row.operator("trajmaster.edit_prompt", text="", icon="GREASEPENCIL").entity = settings.active_entity_index
            prompt_help.expand_button(row, settings.active_entity_index)
            hint = job_export.word_hint(item.prompt)
            words = jobfile.word_count(item.prompt)
            box.label(text=hint or f"{words} words", icon="INFO" if hint else "CHECKMARK" if words else "BLANK1")
            box.row().prop(item, "forward_axis", expand=True)
            box.prop(item, "height", text="Height (m)")
            box.prop(item, "color")
        findings = runner.findings_for(scene)
        if findings:
            col = layout.column(align=True)
            for finding in findings:
                icon = "INFO" if finding.get("severity") == "info" else "ERROR"
                _wrapped(col, context, finding.get("message", ""), icon=icon)
                if finding.get("fix") == "linear_keys" and finding.get("entity") is not None:
                    col.operator("trajmaster.make_keys_linear", icon="IPO_LINEAR").entity = finding["entity"]
        layout.operator("trajmaster.check_shot", icon="VIEWZOOM")


class TRAJMASTER_PT_sampling(_View3DPanel, bpy.types.Panel):
    bl_label = "Model"
    bl_parent_id = MAIN
    bl_order = 20
    bl_options: ClassVar[set[str]] = {"DEFAULT_CLOSED"}

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        settings = context.scene.trajmaster
        col = layout.column()
        col.prop(settings, "pose_mapping")
        # The preview draws the poses and ignores the seed and the sampler: greyed out, and said.
        real = settings.engine == "COGVIDEOX"
        row = col.row(align=True)
        row.enabled = real
        row.prop(settings, "seed")
        row.operator("trajmaster.randomize_seed", text="", icon="FILE_REFRESH")
        col.prop(settings, "quality")
        sub = col.column(align=True)
        sub.enabled = real
        sub.prop(settings, "guidance_scale")
        sub.prop(settings, "lora_scale")
        if settings.quality == "CUSTOM":
            sub.prop(settings, "steps")
            sub.prop(settings, "annealed_steps")
            sub.prop(settings, "step_cache")
        else:
            # A preset's steps are not the shot's to change: said, not offered as fields.
            sub.label(text=jobfile.preset_summary(settings.quality.lower()).capitalize(), icon="SORTTIME")
        if not real:
            col.label(text="The preview engine ignores the seed and these settings", icon="INFO")


class TRAJMASTER_PT_generate(_View3DPanel, bpy.types.Panel):
    bl_label = "Generate"
    bl_parent_id = MAIN
    # Right after the entities, above the helpers (presets, viewport, model settings): Generate and
    # what it says (progress, the take it added, an error) stay in view on a 900 px high screen.
    bl_order = 11
    bl_options: ClassVar[set[str]] = {"HIDE_HEADER"}

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        status = runner.status
        settings = context.scene.trajmaster
        layout.row().prop(settings, "engine", expand=True)
        if settings.engine == "COGVIDEOX":
            # Draft for a first look, Final for the take that stays: switched where Generate is.
            layout.row().prop(settings, "quality", expand=True)
        row = layout.row(align=True)
        row.scale_y = 1.4
        if runner.busy():
            # The progress bar takes Generate's place, and Cancel goes below it: the second click
            # of a double click on Generate lands on the bar, not on Cancel.
            text = status.message or status.stage.capitalize()
            if status.total:
                text = f"{status.stage.capitalize()} {status.step}/{status.total}{_eta(status.eta_s)}"
            compat.draw_progress(row, status.fraction, text)
            layout.operator("trajmaster.cancel", icon="CANCEL")
        else:
            row.operator("trajmaster.generate", icon="RENDER_ANIMATION")
            if status.message:
                layout.label(text=status.message, icon="CHECKMARK" if status.message.startswith("Added") else "INFO")
        if status.last_error:
            box = layout.box()
            _wrapped(box.column(align=True), context, status.last_error, icon="ERROR")
            row = box.row(align=True)
            row.operator("trajmaster.copy_error", icon="COPYDOWN")
            row.operator("trajmaster.clear_error", icon="X")
        if status.pending:
            layout.operator("trajmaster.add_pending_take", icon="SEQ_SEQUENCER")
        if status.info:
            _wrapped(layout.column(align=True), context, status.info, icon="INFO")
        layout.operator("trajmaster.export_job", icon="EXPORT")


class TRAJMASTER_PT_take(bpy.types.Panel):
    """The selected take in the sequencer: its settings, Regenerate and Open Job."""

    bl_space_type = "SEQUENCE_EDITOR"
    bl_region_type = "UI"
    bl_category = CATEGORY
    bl_label = "TrajMaster Take"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return sequencer.selected_take(context)[1] is not None

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        _strip, info = sequencer.selected_take(context)
        col = layout.column(align=True)
        col.label(text=f"Shot {info['shot']}, take {info['take']}")
        col.label(text=f"Frames {info['frame_start']}-{info['frame_end']}, {info['engine']}, seed {info['seed']}")
        _wrapped(col, context, sequencer.speed_text(info), icon="SORTTIME")
        for ent in operators.entities_text(info):
            _wrapped(col, context, f"{ent.get('name')}: {ent.get('prompt')}", icon="EMPTY_AXIS")
        _wrapped(col, context, f"Location: {info['location']}", icon="WORLD")
        row = layout.row(align=True)
        row.operator("trajmaster.regenerate", icon="FILE_REFRESH").new_seed = True
        if info["engine"] == "preview":
            # Same poses, same picture: a preview take does not depend on the seed.
            _wrapped(layout, context, "The preview ignores the seed: a regenerated preview is the same video.", "INFO")
        else:
            row.operator("trajmaster.regenerate", text="Same Seed").new_seed = False
            if info.get("quality", "final") != "final":
                # The look the artist chose, at the release's quality: same seed, same poses.
                button = layout.operator("trajmaster.regenerate", text="Make Final Take", icon="RENDER_ANIMATION")
                button.new_seed, button.final = False, True
        row = layout.row(align=True)
        row.operator("trajmaster.open_job", icon="TEXT")
        row.operator("trajmaster.show_take_in_folder", icon="FILE_FOLDER")
        target = compat.sequencer_scene(context, context.scene)
        frame = target.render
        if not sequencer.model_frame(target):
            box = layout.box()
            _wrapped(
                box.column(align=True),
                context,
                f"The scene renders {frame.resolution_x} x {frame.resolution_y}: the take is scaled to fit it.",
                icon="INFO",
            )
            box.operator("trajmaster.match_model_resolution", icon="FULLSCREEN_EXIT")
        if runner.status.last_error:
            _wrapped(layout.column(align=True), context, runner.status.last_error, icon="ERROR")


def _wrapped(layout: bpy.types.UILayout, context: bpy.types.Context, text: str, icon: str = "NONE") -> None:
    ui_text.wrapped(layout, text, icon, ui_text.region_chars(context))


classes = (
    TRAJMASTER_UL_entities,
    TRAJMASTER_PT_main,
    TRAJMASTER_PT_entities,
    TRAJMASTER_PT_sampling,
    TRAJMASTER_PT_generate,
    TRAJMASTER_PT_take,
)


# Blender's own helper: registers in order, unregisters in reverse.
register, unregister = bpy.utils.register_classes_factory(classes)
