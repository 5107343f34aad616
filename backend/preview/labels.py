"""Text on a preview frame: entity labels, pointer labels, the frame counter and the legend.

The font is the one Pillow ships (Aileron, scalable since Pillow 10.1), so no system font is
needed; without FreeType Pillow falls back to its small bitmap font and the labels still work.
Labels are placed so they stay inside the frame and do not cover each other or the counter.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

from .. import checks

Color = tuple[int, int, int]
Rect = tuple[float, float, float, float]  # x0, y0, x1, y1

PROMPT_WORDS = 6
MAX_LABEL_WIDTH = 300
PAD = 5
GAP = 3  # between panels
EDGE = 4  # how close to the frame's edge a label may go
BOX = (14, 16, 20, 170)  # translucent dark panel behind text
TEXT = (244, 246, 248)
TEXT_DIM = (186, 192, 200)

AnyFont = ImageFont.FreeTypeFont | ImageFont.ImageFont


@dataclass(frozen=True)
class Fonts:
    title: AnyFont
    body: AnyFont
    description: str


def load_fonts() -> Fonts:
    title = ImageFont.load_default(size=15)
    body = ImageFont.load_default(size=13)
    if isinstance(title, ImageFont.FreeTypeFont):
        family, style = title.getname()
        description = f"{family} {style} (Pillow's built-in font), 15/13 px"
    else:
        description = "Pillow's built-in bitmap font (Pillow without FreeType)"
    return Fonts(title, body, description)


def prompt_excerpt(prompt: str, words: int = PROMPT_WORDS) -> str:
    parts = prompt.split()
    return " ".join(parts[:words]) + (" …" if len(parts) > words else "")


def range_note(distance: float) -> str:
    """A word on distances the model was not trained on (backend.checks gives the details)."""
    if distance < checks.MIN_DISTANCE:
        return "  ·  too close"
    if distance > checks.MAX_DISTANCE:
        return "  ·  too far"
    return ""


def _fit(text: str, font: AnyFont, width: float) -> str:
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "…") > width:
        text = text[:-1]
    return text.rstrip() + "…"


def _line_height(font: AnyFont) -> int:
    if isinstance(font, ImageFont.FreeTypeFont):
        ascent, descent = font.getmetrics()
        return ascent + descent
    return font.getbbox("Ag")[3] + 2


def _overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


Point = tuple[float, float]
Segment = tuple[Point, Point]

# What a spot costs beyond its distance from the preferred one (pixels of distance): covering an
# entity's block, and a leader line crossing another label (or another label's leader crossing
# this one), both of which make close entities hard to tell apart.
COVER_COST = 300.0
CROSS_COST = 1000.0


def leader(rect: Rect, anchor: Point) -> Segment | None:
    """The line from a label to its anchor, or None when the label sits right above the anchor
    (or on it)."""
    ax, ay = anchor
    x0, y0, x1, y1 = rect
    if x0 <= ax <= x1 and y0 <= ay <= y1 + 12:  # right above it, or on it (crowded: on its block)
        return None
    if y0 <= ay <= y1:  # beside the anchor: from the near side
        return (x1 if ax > x1 else x0, min(max(ay, y0 + 4), y1 - 4)), (ax, ay)
    cx = min(max(ax, x0 + 6), x1 - 6)
    return ((cx, y1) if ay > y1 else (cx, y0)), (ax, ay)


def crosses(segment: Segment, rect: Rect) -> bool:
    """Whether a line segment passes through the inside of a rectangle (Liang-Barsky clipping)."""
    (px, py), (qx, qy) = segment
    dx, dy = qx - px, qy - py
    low, high = 0.0, 1.0
    # Shrunk by a pixel: a line that only touches an edge (its own label's) does not count.
    x0, y0, x1, y1 = rect[0] + 1, rect[1] + 1, rect[2] - 1, rect[3] - 1
    for p, q in ((-dx, px - x0), (dx, x1 - px), (-dy, py - y0), (dy, y1 - py)):
        if p == 0:
            if q < 0:
                return False
            continue
        t = q / p
        if p < 0:
            low = max(low, t)
        else:
            high = min(high, t)
        if low > high:
            return False
    return True


class Layout:
    """Places text panels on one frame inside the frame, without overlaps: a panel never covers
    another, and avoids covering the entities' blocks (`avoid`) and crossing leader lines."""

    def __init__(self, frame: Image.Image, fonts: Fonts):
        self.frame = frame
        self.fonts = fonts
        self.pen = ImageDraw.Draw(frame, "RGBA")
        self.taken: list[Rect] = []
        self.avoid: list[Rect] = []
        self.leaders: list[Segment] = []
        self.anchored: list[tuple[Rect, Point]] = []  # each entity label and the point it labels

    def _clamp(self, x: float, y: float, w: float, h: float) -> tuple[float, float]:
        width, height = self.frame.size
        return min(max(x, EDGE), width - EDGE - w), min(max(y, EDGE), height - EDGE - h)

    def _place(self, x: float, y: float, w: float, h: float, anchor: Point | None = None) -> tuple[float, float]:
        """The free spot nearest the preferred one: there, beside the anchor, or next to, above
        or below the panels and blocks already there. Moving down costs more, as below the anchor
        is the entity itself; covering a block or crossing a leader line costs more still."""
        xs, ys = [x], [y]
        if anchor is not None:
            xs += [anchor[0] + 3 * GAP, anchor[0] - 3 * GAP - w]
            ys += [anchor[1] - h / 2]
        for x0, y0, x1, y1 in (*self.taken, *self.avoid):
            xs += [x1 + GAP, x0 - GAP - w]
            ys += [y0 - GAP - h, y1 + GAP]
        best, best_cost = self._clamp(x, y, w, h), float("inf")
        for cx, cy in {self._clamp(a, b, w, h) for a in xs for b in ys}:
            rect = (cx, cy, cx + w, cy + h)
            if any(_overlaps(rect, other) for other in self.taken):
                continue
            cost = abs(cx - x) + (abs(cy - y) * (1.5 if cy <= y else 4.0))
            if cost > best_cost:
                continue  # the costs below only add
            cost += COVER_COST * sum(_overlaps(rect, block) for block in self.avoid)
            line = leader(rect, anchor) if anchor is not None else None
            hits = sum(crosses(line, other) for other in self.taken) if line is not None else 0
            hits += sum(crosses(other, rect) for other in self.leaders)
            cost += CROSS_COST * hits
            if cost < best_cost or (cost == best_cost and (cx, cy) < best):
                best, best_cost = (cx, cy), cost
        return best

    def panel(
        self,
        lines: list[tuple[str, AnyFont, Color]],
        anchor: tuple[float, float],
        swatch: Color | None = None,
        align: str = "above",
        max_width: float = MAX_LABEL_WIDTH,
    ) -> Rect:
        """Draw lines of text on a dark panel. `align`: "above" centres the panel over the anchor
        (and joins them with a leader line when it had to move away), "at" puts its top-left
        corner there. Returns where it went."""
        bar = 4 if swatch else 0
        texts = [(_fit(t, f, max_width), f, c) for t, f, c in lines]
        w = max(f.getlength(t) for t, f, _ in texts) + 2 * PAD + bar + (3 if bar else 0)
        heights = [_line_height(f) for _, f, _ in texts]
        h = sum(heights) + 2 * PAD - 2
        if align == "above":
            x, y = anchor[0] - w / 2, anchor[1] - h
            x, y = self._place(x, y, w, h, anchor)
        else:
            x, y = self._place(*anchor, w, h)
        rect = (x, y, x + w, y + h)
        self.taken.append(rect)
        self.pen.rounded_rectangle(rect, radius=4, fill=BOX)
        if swatch:
            self.pen.rounded_rectangle((x + 3, y + 3, x + 3 + bar, y + h - 3), radius=2, fill=swatch)
        ty = y + PAD - 1
        for (text, font, color), lh in zip(texts, heights, strict=True):
            self.pen.text((x + PAD + bar + (3 if bar else 0), ty), text, font=font, fill=color)
            ty += lh
        if align == "above":
            self.anchored.append((rect, anchor))
            line = leader(rect, anchor)
            if line is not None:
                self.leaders.append(line)
                self.pen.line(list(line), fill=(*(swatch or TEXT), 200), width=1)
        return rect

    def entity_label(self, name: str, prompt: str, distance: float, color: Color, anchor: tuple[float, float]) -> Rect:
        """Name and distance, then the prompt's first words, centred above `anchor`; a leader
        line joins them when the panel had to move away from it."""
        return self.panel(
            [
                (f"{name}  ·  {distance:.1f} m{range_note(distance)}", self.fonts.title, TEXT),
                (prompt_excerpt(prompt), self.fonts.body, TEXT_DIM),
            ],
            anchor,
            swatch=color,
        )

    def pointer_label(self, name: str, distance: float, color: Color, at: tuple[float, float]) -> Rect:
        """A one-line label next to an edge pointer, pulled into the frame."""
        width, height = self.frame.size
        text = f"{name}  ·  {distance:.1f} m  ·  out of view"
        w = self.fonts.body.getlength(text) + 2 * PAD + 7
        h = _line_height(self.fonts.body) + 2 * PAD - 2
        # Put the panel on the frame's side of the pointer.
        x = at[0] + 10 if at[0] < width / 2 else at[0] - 10 - w
        y = at[1] - h / 2 if 40 < at[1] < height - 40 else (at[1] + 12 if at[1] <= 40 else at[1] - 12 - h)
        return self.panel([(text, self.fonts.body, TEXT)], (x, y), swatch=color, align="at")


def draw_hud(layout: Layout, frame_index: int, frames: int, fps: float, scene_frame: float, mapping: str) -> None:
    """The frame counter (top left) and the legend (bottom left)."""
    fonts = layout.fonts
    counter = f"frame {frame_index + 1}/{frames}  ·  {frame_index / fps:.2f} s  ·  scene frame {scene_frame:.1f}"
    wide = layout.frame.size[0] - 2 * (EDGE + 4)
    layout.panel([(counter, fonts.title, TEXT)], (EDGE + 4, EDGE + 4), align="at", max_width=wide)
    legend = f"preview  ·  pose mapping: {mapping}  ·  lighter ground: 3-13 m from the camera"
    h = _line_height(fonts.body) + 2 * PAD - 2
    layout.panel(
        [(legend, fonts.body, TEXT_DIM)], (EDGE + 4, layout.frame.size[1] - EDGE - 4 - h), align="at", max_width=wide
    )
