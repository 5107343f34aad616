"""Differences between the Blender versions we support (4.2 LTS through 5.x), in one place.

- 5.0 renamed the sequencer's `sequences` to `strips` (and `Sequence` to `Strip`).
- 5.0 shows, in the Video Sequence Editor, the workspace's *sequencer scene* rather than the
  window's scene.
- 5.0 moved a movie strip's end retiming key from its last frame to the end of that frame.
- 4.4 introduced layered actions; 5.0 removed `Action.fcurves`.
- `UILayout.progress` (4.0+) is used when present, a label otherwise.
- 5.0 renamed the sequencer's common keymap "SequencerCommon" to "Video Sequence Editor".
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import bpy

VERSION: tuple[int, int, int] = tuple(bpy.app.version)  # type: ignore[assignment]

# Since 5.0 a movie strip's end retiming key marks the end of its last frame (content index
# `len`); up to 4.5 it sits on the last frame (`len - 1`). Measured by rendering on 4.2, 4.3
# and 5.0 (tests/blender/test_blender_takes.py); 4.4 and 4.5 read the same as 4.3 in Blender's source.
RETIMING_KEY_AFTER_LAST_FRAME = VERSION >= (5, 0, 0)


def strips(editor: bpy.types.SequenceEditor) -> Any:
    """The top-level strips collection (`strips` in 5.0+, `sequences` before)."""
    return editor.strips if hasattr(editor, "strips") else editor.sequences


def all_strips(editor: bpy.types.SequenceEditor) -> Any:
    """Every strip, inside meta strips too (`strips_all` in 5.0+, `sequences_all` before)."""
    return editor.strips_all if hasattr(editor, "strips_all") else editor.sequences_all


def has_sequencer_scene() -> bool:
    return "sequencer_scene" in bpy.types.WorkSpace.bl_rna.properties


def sequencer_scene(context: bpy.types.Context, scene: bpy.types.Scene, *, claim: bool = False) -> bpy.types.Scene:
    """The scene whose sequencer receives takes of `scene`.

    5.x: the workspace's sequencer scene, or `scene` when the workspace has none; with `claim`
    (when a take is added, never while drawing) `scene` then becomes the workspace's sequencer
    scene, so the Video Sequence Editor shows the take. Before 5.0: `scene` itself.
    """
    if not has_sequencer_scene():
        return scene
    workspace = getattr(context, "workspace", None)
    if workspace is None:
        return scene
    if workspace.sequencer_scene is None:
        if not claim:
            return scene
        workspace.sequencer_scene = scene
    return workspace.sequencer_scene


def sequencer_override(scene: bpy.types.Scene) -> dict[str, Any]:
    """Context members for running sequencer operators on `scene`."""
    override: dict[str, Any] = {"scene": scene}
    if has_sequencer_scene():
        override["sequencer_scene"] = scene
    return override


def action_fcurves(action: bpy.types.Action | None) -> Iterator[bpy.types.FCurve]:
    """Every F-curve of an action, layered (4.4+) or not."""
    if action is None:
        return
    layers = getattr(action, "layers", None)
    if layers is not None and len(layers) > 0:
        for layer in layers:
            for strip in layer.strips:
                for bag in getattr(strip, "channelbags", ()):
                    yield from bag.fcurves
        return
    yield from getattr(action, "fcurves", ())


def object_fcurves(obj: bpy.types.Object) -> list[bpy.types.FCurve]:
    """The F-curves of `obj`'s own action that animate it: in a layered action (4.4+) only its own
    slot's channels (other slots animate other objects)."""
    anim = obj.animation_data
    if anim is None or anim.action is None:
        return []
    slot = getattr(anim, "action_slot", None)
    layers = getattr(anim.action, "layers", None)
    if slot is not None and layers:
        found = []
        for layer in layers:
            for strip in layer.strips:
                bag = strip.channelbag(slot) if hasattr(strip, "channelbag") else None
                if bag is not None:
                    found.extend(bag.fcurves)
        return found
    return list(action_fcurves(anim.action))


def draw_progress(layout: bpy.types.UILayout, factor: float, text: str) -> None:
    if hasattr(layout, "progress"):
        layout.progress(factor=factor, type="BAR", text=text)
    else:
        layout.label(text=f"{text} ({factor:.0%})")


def sequencer_keymap() -> str:
    """The keymap of the whole Video Sequence Editor (timeline and preview): "SequencerCommon"
    up to 4.x, "Video Sequence Editor" since 5.0; read from Blender's own keyconfig."""
    default = bpy.context.window_manager.keyconfigs.default
    names = default.keymaps.keys() if default else ()
    return "Video Sequence Editor" if "Video Sequence Editor" in names else "SequencerCommon"
