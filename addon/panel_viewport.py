"""The "Viewport" sub-panel of the N-panel: the overlay toggle and Match Model Camera.

A sub-panel of panel.MAIN (bl_order 15: between the shot and the entities), so no other panel's
draw() changes.
"""

from __future__ import annotations

import bpy

from . import overlay, panel


class TRAJMASTER_PT_viewport(bpy.types.Panel):
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = panel.CATEGORY
    bl_label = "Viewport"
    bl_parent_id = panel.MAIN
    bl_order = 15

    def draw_header(self, context: bpy.types.Context) -> None:
        self.layout.prop(context.scene.trajmaster, "show_overlay", text="")

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        scene = context.scene
        settings = scene.trajmaster
        col = layout.column(align=True)
        col.prop(settings, "show_overlay", text="Paths, Slots and Model Camera")
        if settings.show_overlay and not overlay.active(scene):
            col.label(text="Add an entity with an empty to see its path", icon="INFO")
        elif settings.show_overlay:
            frustum = "training rig camera" if settings.pose_mapping == "RIG" else "shot camera, model lens"
            col.label(text=f"Frame: {frustum}", icon="CAMERA_DATA")
            cached = overlay.entry(scene)
            geometry = cached.geometry if cached else None
            if geometry is not None:
                slots = sum(bool(codes) for e in geometry.entities for codes in e.slot_codes)
                if slots:
                    col.label(text=f"{slots} slots out of distribution (red: out of view, orange: other)", icon="ERROR")
        row = layout.row(align=True)
        row.operator("trajmaster.match_model_camera", icon="CAMERA_DATA").rig_pose = False
        row.operator("trajmaster.match_model_camera", text="With Rig Pitch").rig_pose = True


classes = (TRAJMASTER_PT_viewport,)


# Blender's own helper: registers in order, unregisters in reverse.
register, unregister = bpy.utils.register_classes_factory(classes)
