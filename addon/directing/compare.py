"""Comparing and choosing takes in the sequencer: step through a set, A/B, favourite and reject.

The group a take is compared within is its variation set (directing/variations.py), else every
take of its shot. "Solo" plays one take and mutes the shot's other takes (they lie on top of
each other over the shot's frames, so only one may play). Marks use the strip's colour tag, so
they show in the timeline: favourite green (COLOR_04), reject red (COLOR_01). Every operator
changes only strip and scene data, so Blender's undo covers it (`UNDO`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import bpy
from bpy.props import EnumProperty, IntProperty, StringProperty

from .. import compat, operators, sequencer

MARK_TAGS = {"FAVOURITE": "COLOR_04", "REJECT": "COLOR_01"}
MARK_ITEMS = (
    ("FAVOURITE", "Favourite", "Mark the take as a favourite (green colour tag); again to clear"),
    ("REJECT", "Reject", "Mark the take as rejected (red colour tag); again to clear"),
    ("NONE", "Clear Mark", "Remove the take's mark (its colour tag)"),
)


def editor(context: bpy.types.Context) -> bpy.types.SequenceEditor | None:
    """The sequencer the user looks at (5.x: the workspace's sequencer scene)."""
    if context.scene is None:
        return None
    return compat.sequencer_scene(context, context.scene).sequence_editor


def sequencer_settings(context: bpy.types.Context) -> Any:
    """The directing settings of the scene that holds the takes (A and B live there)."""
    return compat.sequencer_scene(context, context.scene).trajmaster_directing


def group(editor: bpy.types.SequenceEditor, strip: Any) -> list[Any]:
    """The takes `strip` is compared with (itself included): its set in set order, else its shot's."""
    info = sequencer.take_info(strip)
    if info is None:
        return []
    takes = sequencer.shot_takes(editor, str(info.get("shot", "")))
    set_id = info.get("variation_set")
    if not set_id:
        return takes
    members = [(sequencer.take_info(s) or {}, s) for s in takes]
    members = [(int(i.get("variation_index", 0)), s) for i, s in members if i.get("variation_set") == set_id]
    return [s for _, s in sorted(members, key=lambda m: m[0])]


def playing(takes: list[Any]) -> Any | None:
    return next((s for s in takes if not s.mute), None)


def mark_of(strip: Any) -> str:
    """ "FAVOURITE", "REJECT" or "" (from the colour tag)."""
    tag = getattr(strip, "color_tag", "NONE")
    return next((mark for mark, t in MARK_TAGS.items() if t == tag), "")


def solo(editor: bpy.types.SequenceEditor, strip: Any) -> None:
    """Play `strip`, mute the other takes of its shot and its contact sheets (they lie above the
    takes and would hide it), and make it the active strip."""
    shot = str((sequencer.take_info(strip) or {}).get("shot", ""))
    for other in sequencer.shot_takes(editor, shot):
        other.mute = other != strip
        other.select = other == strip
    for sheet in sequencer.shot_sheets(editor, shot):
        sheet.mute = True
    strip.mute = False
    editor.active_strip = strip


def find(editor: bpy.types.SequenceEditor, name: str) -> Any | None:
    return next((s for s in compat.strips(editor) if s.name == name and sequencer.take_info(s)), None) if name else None


def _active(op: bpy.types.Operator, context: bpy.types.Context) -> tuple[Any, Any] | tuple[None, None]:
    strip, info = sequencer.selected_take(context)
    if info is None:
        operators._fail(op, "Select a TrajMaster take in the sequencer first.")
        return None, None
    return editor(context), strip


class TRAJMASTER_OT_take_step(bpy.types.Operator):
    """Play the next (or previous) take of the selected take's set, muting the others"""

    bl_idname = "trajmaster.take_step"
    bl_label = "Next Take"
    bl_options: ClassVar[set[str]] = {"REGISTER", "UNDO"}

    direction: IntProperty(name="Direction", default=1, min=-1, max=1, description="1: next take, -1: previous")

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return sequencer.selected_take(context)[1] is not None

    @classmethod
    def description(cls, context: bpy.types.Context, properties: Any) -> str:
        return "Play the previous take of this set" if properties.direction < 0 else "Play the next take of this set"

    def execute(self, context: bpy.types.Context) -> set[str]:
        ed, strip = _active(self, context)
        if strip is None:
            return {"CANCELLED"}
        takes = group(ed, strip)
        now = playing(takes) or strip
        index = takes.index(now) if now in takes else 0
        target = takes[(index + (self.direction or 1)) % len(takes)]
        solo(ed, target)
        self.report({"INFO"}, f"Playing {target.name}")
        return {"FINISHED"}


class TRAJMASTER_OT_take_solo(bpy.types.Operator):
    """Play this take and mute the shot's other takes"""

    bl_idname = "trajmaster.take_solo"
    bl_label = "Play This Take"
    bl_options: ClassVar[set[str]] = {"REGISTER", "UNDO"}

    strip: StringProperty(name="Strip", options={"SKIP_SAVE"}, description="The take's strip (default: the active one)")

    def execute(self, context: bpy.types.Context) -> set[str]:
        ed = editor(context)
        target = find(ed, self.strip) if ed and self.strip else sequencer.selected_take(context)[0]
        if target is None:
            return operators._fail(self, "Select a TrajMaster take in the sequencer first.")
        solo(ed, target)
        return {"FINISHED"}


class TRAJMASTER_OT_take_ab(bpy.types.Operator):
    """Mark the selected take as A or B, or switch between the two"""

    bl_idname = "trajmaster.take_ab"
    bl_label = "A/B"
    bl_options: ClassVar[set[str]] = {"REGISTER", "UNDO"}

    action: EnumProperty(
        items=(
            ("TOGGLE", "A/B", "Play whichever of A and B is not playing"),
            ("SET_A", "Set A", "Mark the selected take as A"),
            ("SET_B", "Set B", "Mark the selected take as B"),
        ),
        default="TOGGLE",
    )

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return editor(context) is not None

    @classmethod
    def description(cls, context: bpy.types.Context, properties: Any) -> str:
        return {
            "SET_A": "Mark the selected take as A",
            "SET_B": "Mark the selected take as B",
        }.get(properties.action, "Play whichever of A and B is not playing (A first)")

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = sequencer_settings(context)
        ed = editor(context)
        if self.action in ("SET_A", "SET_B"):
            strip, info = sequencer.selected_take(context)
            if info is None:
                return operators._fail(self, "Select a TrajMaster take in the sequencer first.")
            setattr(settings, "ab_a" if self.action == "SET_A" else "ab_b", strip.name)
            return {"FINISHED"}
        a, b = find(ed, settings.ab_a), find(ed, settings.ab_b)
        if a is None or b is None or a == b:
            return operators._fail(
                self, "Mark two takes for A/B first: select a take and press Set A, then another and press Set B."
            )
        target = b if not a.mute else a
        solo(ed, target)
        self.report({"INFO"}, f"Playing {'B' if target == b else 'A'}: {target.name}")
        return {"FINISHED"}


class TRAJMASTER_OT_take_mark(bpy.types.Operator):
    """Mark the selected take as a favourite or rejected (its colour tag in the timeline)"""

    bl_idname = "trajmaster.take_mark"
    bl_label = "Mark Take"
    bl_options: ClassVar[set[str]] = {"REGISTER", "UNDO"}

    mark: EnumProperty(items=MARK_ITEMS, default="FAVOURITE")

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return sequencer.selected_take(context)[1] is not None

    @classmethod
    def description(cls, context: bpy.types.Context, properties: Any) -> str:
        return next(item[2] for item in MARK_ITEMS if item[0] == properties.mark)

    def execute(self, context: bpy.types.Context) -> set[str]:
        _ed, strip = _active(self, context)
        if strip is None:
            return {"CANCELLED"}
        tag = MARK_TAGS.get(self.mark, "NONE")
        strip.color_tag = "NONE" if strip.color_tag == tag else tag  # pressing a mark again clears it
        return {"FINISHED"}


classes = (TRAJMASTER_OT_take_step, TRAJMASTER_OT_take_solo, TRAJMASTER_OT_take_ab, TRAJMASTER_OT_take_mark)
register, unregister = bpy.utils.register_classes_factory(classes)
