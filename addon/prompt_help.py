"""Expand, beside each entity prompt and the location prompt: a short description ("a dog")
becomes a 15-24-word prompt (backend/prompt_help), offered in a dialog to accept, edit or retry.

The dialog shows the proposal in an editable field, its word count and who wrote it (the prompt
model by name and licence, or the offline fallback and why); Accept sets the prompt (one undo
step), Retry shows another candidate, Cancel changes nothing. Nothing changes until Accept.

Who answers:
- the local worker's `expand` op, when it is idle: the prompt model when it is installed (loaded
  at the first expansion and kept), else the backend's offline fallback. The request runs beside
  Blender's UI: the Expand button says "Expanding..." and the dialog opens when the answer comes.
- the offline fallback inside Blender (backend/prompt_help/fallback.py, standard library only),
  at once: when the worker is busy with a take (it serves requests in order, so an expansion
  would wait for the take), when there is no backend on this computer, and for Retry once the
  backend said it has no model (the same code gives the same candidates, without the round trip).
- in background Blender (scripts, tests), the same requests, waited for: the worker when
  runner.use_worker is set, else a one-shot `python -m backend expand`.

Blender redraws a dialog's contents only on the user's own input (a click, a key, the mouse
crossing a button), never from a timer, so the dialog opens once the first answer is there; a
Retry that has to wait for the model says "Expanding another candidate" until the mouse moves
over the dialog after the answer came. To make that rare, the model's next candidate is asked
for as soon as one is shown.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field
from typing import Any, ClassVar

import bpy
from bpy.app.handlers import persistent
from bpy.props import IntProperty, PointerProperty, StringProperty

from ..backend.errors import UserError
from ..backend.prompt_help import FALLBACK, WORD_RANGE, fallback, rules
from . import backend_tasks, operators, preferences, redraw, runner, ui_text
from .executor import BackendUnavailable, Busy, event

TICK_S = 0.1
# A one-shot `expand` loads the prompt model each time (when there is one): minutes on a CPU.
ONESHOT_TIMEOUT_S = 600.0
BUSY = "the backend is busy with a take"
NO_BACKEND = "no backend is set up on this computer"
DIALOG_WIDTH = 560  # pixels at UI scale 1: about 70 characters a line
DIALOG_CHARS = 70
FIELD_CHARS = 100  # about what the dialog's text field shows without scrolling


@dataclass
class Proposal:
    """One candidate, as the dialog shows it."""

    text: str
    seed: int
    source: str  # the model's name, or "fallback"
    license: str = ""
    why: str = ""  # why the offline fallback answered

    @property
    def words(self) -> int:
        return len(self.text.split())

    def credit(self) -> str:
        if self.source != FALLBACK:
            return f"Written by the prompt model {self.source}" + (f" ({self.license})" if self.license else "")
        return "Written by the offline fallback" + (f": {self.why}" if self.why else "")


@dataclass
class Session:
    """One press of Expand, until Accept or Cancel: the prompt it expands and its candidates."""

    scene: str
    entity: int  # -1: the location prompt
    original: str  # the prompt when Expand was pressed
    window: int = 0  # as_pointer() of the window it was pressed in (the dialog opens there)
    seed: int = -1  # the candidate in the dialog's field (-1: none yet)
    wanted: int = 0  # the candidate asked for (Retry: the next one); awaited until it is in `proposals`
    proposals: dict[int, Proposal] = field(default_factory=dict)
    task: backend_tasks.Task | None = None
    task_seed: int = -1
    local: str = ""  # when set, the fallback inside Blender answers from now on, and this says why
    opened: bool = False  # the dialog was opened

    @property
    def kind(self) -> str:
        return "location" if self.entity < 0 else "entity"

    @property
    def waiting(self) -> bool:
        """An answer is awaited: the first one (before the dialog) or a Retry's."""
        return self.wanted not in self.proposals

    @property
    def shown(self) -> Proposal | None:
        return self.proposals.get(self.seed)


session: Session | None = None


# --- the prompt it expands ------------------------------------------------------------------------


def _target(scene: bpy.types.Scene | None, entity: int) -> tuple[Any, str] | None:
    """(the property group, the property name) holding the prompt, or None when it is gone."""
    if scene is None:
        return None
    settings = scene.trajmaster
    if entity < 0:
        return settings, "location_prompt"
    if entity < len(settings.entities):
        return settings.entities[entity], "prompt"
    return None


def target_label(scene: bpy.types.Scene | None, entity: int) -> str:
    if entity < 0:
        return "Location"
    target = _target(scene, entity)
    obj = getattr(target[0], "object", None) if target else None
    return obj.name if obj is not None else f"Entity {entity + 1}"


def _current(s: Session) -> str | None:
    target = _target(bpy.data.scenes.get(s.scene), s.entity)
    return getattr(target[0], target[1]) if target else None


# --- asking for candidates ------------------------------------------------------------------------


def _local(s: Session, seed: int, why: str) -> Proposal:
    expansion = fallback.expand(s.original, s.kind, seed)
    return Proposal(expansion.text, seed, FALLBACK, why=why)


def _short_paths(text: str) -> str:
    """Folders in a sentence cut to their last two names (the dialog is narrow)."""
    return re.sub(r"(?:[A-Za-z]:)?[\\/]\S*[\\/](\S+[\\/]\S+)", lambda m: ".../" + m.group(1), text)


def _from_result(seed: int, result: dict[str, Any]) -> Proposal:
    why = _short_paths(str(result.get("model_problem") or ""))
    why = why[:1].lower() + why[1:]  # it follows a colon
    refused = result.get("refused") or []
    if not why and refused:
        why = f"the prompt model's candidates were refused ({refused[0]})"
    return Proposal(str(result["text"]), seed, str(result["source"]), str(result.get("license") or ""), why)


def _ask(context: bpy.types.Context, s: Session, seed: int, *, prefetch: bool = False) -> None:
    """Get candidate `seed`: at once from the fallback inside Blender, or from the backend (a
    task, which background Blender waits for). A prefetch never waits behind a take."""
    if seed in s.proposals or (s.task is not None and s.task_seed == seed):
        return
    if s.local:
        s.proposals[seed] = _local(s, seed, s.local)
        return
    if runner.busy():
        if not prefetch:
            s.proposals[seed] = _local(s, seed, BUSY)
        return
    if s.task is not None:
        return  # one request at a time: the one in flight is answered first
    request = backend_tasks.ExpandRequest(s.original, s.kind, seed)
    try:
        worker = runner.local_worker(context)
        if worker is not None:
            task = backend_tasks.Task(worker, request)
        else:
            request.weights = preferences.weights_dir(context)
            supervisor = backend_tasks.oneshot(runner.local_python(context), runner.EXTENSION_ROOT)
            task = backend_tasks.Task(supervisor, request, own=True)
    except (runner.RunError, BackendUnavailable, Busy):
        s.local = NO_BACKEND
        if not prefetch:
            s.proposals[seed] = _local(s, seed, s.local)
        return
    s.task, s.task_seed = task, seed
    if bpy.app.background:  # no timers there: wait, as Generate does
        task.wait(timeout=ONESHOT_TIMEOUT_S)
        _take_answer(s)


def _take_answer(s: Session) -> None:
    """The task ended: keep its candidate (or the fallback's, when the backend failed)."""
    task, seed = s.task, s.task_seed
    s.task, s.task_seed = None, -1
    if task is None or task.end is None:
        return
    result = task.result
    if result is not None:
        proposal = _from_result(seed, result)
        if proposal.source == FALLBACK and result.get("model_problem"):
            s.local = proposal.why  # no model in the backend: the same fallback answers here, at once
    elif task.end.get("event") == "cancelled":
        return  # stopped waiting on purpose
    else:
        # The description passed the same checks here before it was sent, so the fallback answers.
        proposal = _local(s, seed, f"the backend did not answer ({task.failure.rstrip('.')})")
    s.proposals[seed] = proposal


def _show(context: bpy.types.Context, s: Session) -> None:
    """Put the wanted candidate into the dialog's field once it is there (never again: the user
    may be editing it), and ask the model for the next one meanwhile."""
    if s.wanted not in s.proposals or s.seed == s.wanted:
        return
    s.seed = s.wanted
    context.window_manager.trajmaster_expansion.text = s.proposals[s.seed].text
    if s.shown.source != FALLBACK and not bpy.app.background:
        _ask(context, s, s.seed + 1, prefetch=True)
        if s.task is not None:
            _ensure_timer()


# --- the timer ----------------------------------------------------------------------------------


def tick() -> float | None:
    """Follow the backend's answer; open the dialog when the first one is there."""
    global session
    s = session
    if s is None or s.task is None:
        return None
    try:
        s.task.poll()
    except Exception as exc:  # a bug here must not leave the button saying Expanding forever
        s.task.end = event("error", message=f"the add-on failed while waiting ({type(exc).__name__}: {exc})")
    if s.task.done:
        _take_answer(s)
        if not s.opened and s.wanted in s.proposals:
            if _current(s) != s.original:
                session = None  # the prompt was edited (or is gone) meanwhile: the answer is for old words
            else:
                _show(bpy.context, s)
                _open_dialog(s)
        elif s.opened:
            _show(bpy.context, s)  # a Retry's candidate: the dialog shows it at its next redraw
        redraw.tag("VIEW_3D", "UI")
    return TICK_S if session is not None and session.task is not None else None


def _open_dialog(s: Session) -> None:
    wm = bpy.context.window_manager
    windows = list(wm.windows) if wm else []
    window = next((w for w in windows if w.as_pointer() == s.window), windows[0] if windows else None)
    if window is None or window.screen is None:
        return
    areas = list(window.screen.areas)
    area = next((a for a in areas if a.type == "VIEW_3D"), max(areas, key=lambda a: a.width * a.height, default=None))
    region = next((r for r in area.regions if r.type == "WINDOW"), None) if area else None
    with bpy.context.temp_override(window=window, screen=window.screen, area=area, region=region):
        bpy.ops.trajmaster.expand_review("INVOKE_DEFAULT")


def _ensure_timer() -> None:
    if not bpy.app.timers.is_registered(tick):
        bpy.app.timers.register(tick, first_interval=TICK_S, persistent=True)


def end() -> None:
    """Forget the expansion (Cancel, Accept, a file loaded): an answer still on its way is dropped."""
    global session
    if session is not None and session.task is not None:
        session.task.abandon()
    session = None


# --- operators ----------------------------------------------------------------------------------


def expanding(entity: int) -> bool:
    """Whether the Expand button of this prompt waits for its first answer."""
    s = session
    return s is not None and not s.opened and s.entity == entity and s.scene == bpy.context.scene.name and s.waiting


class TRAJMASTER_OT_expand_prompt(bpy.types.Operator):
    """Turn a short description (e.g. 'a dog') into a 15-24-word prompt; you see it, and can edit or retry it, \
before anything changes"""

    bl_idname = "trajmaster.expand_prompt"
    bl_label = "Expand"
    bl_options: ClassVar[set[str]] = {"REGISTER"}

    entity: IntProperty(name="Entity", default=-1, min=-1, description="The entity's index; -1: the location")

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return context.scene is not None

    @classmethod
    def description(cls, context: bpy.types.Context, properties: Any) -> str:
        if session is not None and expanding(properties.entity):
            return "Stop waiting for this expansion (the prompt stays as it is)"
        return cls.__doc__

    def invoke(self, context: bpy.types.Context, event: Any) -> set[str]:
        result = self.execute(context)
        if result == {"FINISHED"} and session is not None and not session.waiting:
            session.opened = True
            bpy.ops.trajmaster.expand_review("INVOKE_DEFAULT")
        return result

    def execute(self, context: bpy.types.Context) -> set[str]:
        global session
        scene = context.scene
        if expanding(self.entity):
            end()
            self.report({"INFO"}, "Stopped expanding; the prompt is unchanged.")
            return {"CANCELLED"}
        target = _target(scene, self.entity)
        if target is None:
            return operators._fail(self, "That entity is gone; select an entity and press Expand beside its prompt.")
        text = getattr(target[0], target[1])
        kind = "location" if self.entity < 0 else "entity"
        try:
            rules.subject(text, kind)  # refused at once, in one sentence: empty, not ASCII, too long
        except UserError as exc:
            return operators._fail(self, exc.message)
        end()
        window = context.window
        session = Session(scene.name, self.entity, text, window=window.as_pointer() if window else 0)
        _ask(context, session, 0)
        if session.waiting:
            _ensure_timer()
            self.report({"INFO"}, f"Expanding '{text.strip()}'")
            return {"FINISHED"}
        _show(context, session)
        proposal = session.shown
        self.report({"INFO"}, f"Proposed {proposal.words} words ({proposal.credit()}); Accept, edit or Retry it.")
        return {"FINISHED"}


class TRAJMASTER_OT_expand_review(bpy.types.Operator):
    """Set the prompt to this text"""

    bl_idname = "trajmaster.expand_review"
    bl_label = "Expanded Prompt"
    # UNDO: Accept is one undo step. Not REGISTER: there is nothing to adjust afterwards.
    bl_options: ClassVar[set[str]] = {"UNDO", "INTERNAL"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return session is not None and session.shown is not None

    def invoke(self, context: bpy.types.Context, event: Any) -> set[str]:
        session.opened = True
        title = f"Expand: {target_label(bpy.data.scenes.get(session.scene), session.entity)}"
        wm = context.window_manager
        try:
            return wm.invoke_props_dialog(self, width=DIALOG_WIDTH, title=title, confirm_text="Accept")
        except TypeError:  # title and confirm_text came in 4.1; kept for older builds
            return wm.invoke_props_dialog(self, width=DIALOG_WIDTH)

    def draw(self, context: bpy.types.Context) -> None:
        s = session
        layout = self.layout
        if s is None:
            layout.label(text="This expansion has ended.", icon="INFO")
            return
        text = context.window_manager.trajmaster_expansion.text
        col = layout.column()
        ui_text.wrapped(col, f"You wrote: {s.original.strip()}", icon="GREASEPENCIL", width=DIALOG_CHARS)
        if len(text) > FIELD_CHARS:  # longer than the field shows: the whole text above it, wrapped
            lines = col.box().column(align=True)
            for line in textwrap.wrap(text, DIALOG_CHARS):
                lines.label(text=line)
        col.prop(context.window_manager.trajmaster_expansion, "text", text="")
        words = len(text.split())
        low, high = WORD_RANGE
        row = col.row()
        row.alert = not low <= words <= high
        row.label(
            text=f"{words} words" + ("" if low <= words <= high else f": the model follows {low}-{high}"),
            icon="CHECKMARK" if low <= words <= high else "ERROR",
        )
        if s.shown is not None:
            ui_text.wrapped(col, s.shown.credit(), icon="INFO", width=DIALOG_CHARS)
        if s.waiting:
            col.label(text="Expanding another candidate...", icon="SORTTIME")
        row = col.row()
        row.enabled = not s.waiting
        row.operator("trajmaster.expand_retry", text="Retry", icon="FILE_REFRESH")

    def execute(self, context: bpy.types.Context) -> set[str]:
        s = session
        text = " ".join(context.window_manager.trajmaster_expansion.text.split())
        target = _target(bpy.data.scenes.get(s.scene), s.entity)
        if target is None:
            end()
            return operators._fail(self, "The prompt this expansion was for is gone; nothing was changed.")
        if not text:
            end()
            return operators._fail(self, "The expanded prompt was empty; nothing was changed.")
        setattr(target[0], target[1], text)
        label = target_label(bpy.data.scenes.get(s.scene), s.entity)
        end()
        low, high = WORD_RANGE
        words = len(text.split())
        level = "INFO" if low <= words <= high else "WARNING"
        self.report({level}, f"Set the prompt of {label} ({words} words)")
        return {"FINISHED"}

    def cancel(self, context: bpy.types.Context) -> None:
        end()


class TRAJMASTER_OT_expand_retry(bpy.types.Operator):
    """Show another candidate for the same description (your edits to this one are replaced)"""

    bl_idname = "trajmaster.expand_retry"
    bl_label = "Retry"
    bl_options: ClassVar[set[str]] = {"INTERNAL"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return session is not None and not session.waiting

    def execute(self, context: bpy.types.Context) -> set[str]:
        s = session
        s.wanted = s.seed + 1
        _ask(context, s, s.wanted)
        if s.waiting:
            _ensure_timer()
        else:
            _show(context, s)
        return {"FINISHED"}


class TRAJMASTER_PG_expansion(bpy.types.PropertyGroup):
    """The dialog's editable proposal (window-manager data: outside undo, so editing it is no undo step)."""

    text: StringProperty(name="Prompt", description="The proposed prompt; edit it before you accept it")


def expand_button(layout: bpy.types.UILayout, entity: int) -> None:
    """The Expand button beside a prompt (`entity`: its index, -1 for the location); it says
    "Expanding..." while the answer is awaited (pressing it then stops waiting)."""
    busy = expanding(entity)
    op = layout.operator(
        "trajmaster.expand_prompt",
        text="Expanding..." if busy else "Expand",
        icon="SORTTIME" if busy else "WORDWRAP_ON",
        depress=busy,
    )
    op.entity = entity


@persistent
def _forget_expansion_on_load(*_args: Any) -> None:
    end()  # about the previous file's prompts


classes = (
    TRAJMASTER_PG_expansion,
    TRAJMASTER_OT_expand_prompt,
    TRAJMASTER_OT_expand_review,
    TRAJMASTER_OT_expand_retry,
)
_register_classes, _unregister_classes = bpy.utils.register_classes_factory(classes)


def register() -> None:
    _register_classes()
    bpy.types.WindowManager.trajmaster_expansion = PointerProperty(type=TRAJMASTER_PG_expansion)
    bpy.app.handlers.load_post.append(_forget_expansion_on_load)


def unregister() -> None:
    if _forget_expansion_on_load in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(_forget_expansion_on_load)
    if bpy.app.timers.is_registered(tick):
        bpy.app.timers.unregister(tick)
    end()
    del bpy.types.WindowManager.trajmaster_expansion
    _unregister_classes()
