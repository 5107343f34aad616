"""`python -m backend contact-sheet`: a set's takes side by side in one video, for choosing.

    python -m backend contact-sheet A.mp4 B.mp4 C.mp4 D.mp4 --out SHEET.mp4 [--labels ...] [--columns N]

Every input must be a take (the video and its sidecar, as `generate` writes them) and all must
have the same number of frames and frame rate (a set's takes do: 49 frames at 8 fps); the sheet
has the same. Each cell is labelled with what differs between the takes (read from their
sidecars: seed, LoRA scale, injector steps, ...), or with --labels. Encoding is
backend/video.py's, so the sheet plays like a take; it is written under a temporary name and
appears whole, and never replaces an existing file.

The grid fits its cells into SHEET_LIMIT (1440 x 960): twice a take's size each way, so up to
four takes keep their full 720 x 480 (no detail lost when comparing), and the sheet stays a
1080p-class H.264 video that Blender's sequencer plays in real time. The layout is the one with
the biggest cells (2: 2 x 1, 3-4: 2 x 2 at full size, 5-6: 3 x 2, 7-8: 3 x 3 at 480 x 320).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import EXIT_OK, UserError
from .job import link_new, resolve_sampling
from .outcome import report_outcome
from .progress import Report

TAKES = (2, 8)
SHEET_LIMIT = (1440, 960)  # the cells' area; the gutters between them come on top
GUTTER = 4  # pixels of dark gray between cells, so neighbouring takes do not blend together
GUTTER_COLOUR = 40
LABEL_MARGIN = 6
# What a set's takes may differ in, as the sidecar's job.sampling names it, and how to say it.
DIFFERENCES = (
    ("seed", "seed {}"),
    ("lora_scale", "LoRA {:g}"),
    ("annealed_steps", "injector steps {}"),
    ("steps", "{} steps"),
    ("guidance_scale", "guidance {:g}"),
)


@dataclass(frozen=True)
class Layout:
    columns: int
    rows: int
    cell_width: int
    cell_height: int

    @property
    def width(self) -> int:
        return self.columns * self.cell_width + (self.columns - 1) * GUTTER

    @property
    def height(self) -> int:
        return self.rows * self.cell_height + (self.rows - 1) * GUTTER

    def origin(self, index: int) -> tuple[int, int]:
        """Top-left pixel (x, y) of cell `index`, filled row by row."""
        row, column = divmod(index, self.columns)
        return column * (self.cell_width + GUTTER), row * (self.cell_height + GUTTER)


def _even(value: float) -> int:
    return max(2, int(value) // 2 * 2)


def layout(count: int, take_size: tuple[int, int], columns: int | None = None) -> Layout:
    """The grid for `count` takes of `take_size` (width, height): the biggest cells that fit
    SHEET_LIMIT, never bigger than the takes; ties go to fewer empty cells, then more columns."""
    width, height = take_size
    aspect = width / height
    options = [columns] if columns else range(1, count + 1)
    best = None
    for cols in options:
        rows = math.ceil(count / cols)
        cell_w = min(width, SHEET_LIMIT[0] / cols, SHEET_LIMIT[1] / rows * aspect)
        key = (_even(cell_w), -(cols * rows - count), cols)
        if best is None or key > best[0]:
            best = (key, cols, rows)
    _, cols, rows = best
    cell_w = _even(best[0][0])
    return Layout(cols, rows, cell_w, _even(cell_w / aspect))


# ---------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Take:
    video: Path
    sidecar: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.sidecar.get("name") or self.video.stem)


def read_take(path: str | os.PathLike[str]) -> Take:
    """A take's video path and sidecar; UserError (bad_take) for anything that is not a take."""
    video = Path(path).expanduser().absolute()
    if not video.is_file():
        raise UserError("bad_take", f"{video} does not exist; give the takes' .mp4 files.")
    sidecar = video.with_suffix(".json")
    try:
        doc = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise UserError(
            "bad_take",
            f"{video.name} is not a take: it has no readable sidecar {sidecar.name} next to it "
            "(a contact sheet compares takes made by Generate).",
        ) from None
    if not isinstance(doc, dict) or doc.get("format") != "trajmaster-take":
        raise UserError("bad_take", f"{video.name} is not a take: {sidecar.name} is not a take sidecar.")
    return Take(video, doc)


def labels_for(takes: list[Take]) -> list[str]:
    """What differs between the takes ("seed 124, LoRA 0.4"), from their sidecars; a take's name
    when nothing recorded there differs (or for a take whose value is missing)."""
    sampling = [t.sidecar.get("job", {}).get("sampling", {}) if isinstance(t.sidecar.get("job"), dict) else {}
                for t in takes]  # fmt: skip
    # A job that names a quality preset may leave the preset's steps out.
    sampling = [resolve_sampling(s) if isinstance(s, dict) else {} for s in sampling]
    engines = [t.sidecar.get("job", {}).get("engine") if isinstance(t.sidecar.get("job"), dict) else None
               for t in takes]  # fmt: skip
    differing = [(key, text) for key, text in DIFFERENCES if len({json.dumps(s.get(key)) for s in sampling}) > 1]
    labels = []
    for take, values, engine in zip(takes, sampling, engines, strict=True):
        parts = []
        for key, text in differing:
            value = values.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                parts.append(text.format(value))
        if len(set(engines)) > 1 and engine:
            parts.insert(0, str(engine))
        labels.append(", ".join(parts) or take.name)
    return labels


# ---------------------------------------------------------------- drawing


def _fit_frames(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """Frames scaled to fit (width, height), centred on black when their shape differs."""
    from PIL import Image

    n, h, w, _ = frames.shape
    scale = min(width / w, height / h)
    fw, fh = max(1, round(w * scale)), max(1, round(h * scale))
    out = np.zeros((n, height, width, 3), np.uint8)
    x, y = (width - fw) // 2, (height - fh) // 2
    for j, frame in enumerate(frames):
        image = Image.fromarray(frame, "RGB")
        if (fw, fh) != (w, h):
            # Area averaging: the right filter for shrinking (no aliasing on thin lines).
            image = image.resize((fw, fh), Image.Resampling.BOX)
        out[j, y : y + fh, x : x + fw] = np.asarray(image)
    return out


def label_patch(text: str, cell_height: int) -> tuple[np.ndarray, np.ndarray]:
    """The label as (RGB, alpha) arrays: white text on a translucent dark box, sized to the cell."""
    from PIL import Image, ImageDraw, ImageFont

    size = max(12, cell_height // 20)
    font = ImageFont.load_default(size=size)
    pad = max(3, size // 3)
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    left, top, right, bottom = probe.textbbox((0, 0), text, font=font)
    width, height = right - left + 2 * pad, bottom - top + 2 * pad
    rgba = Image.new("RGBA", (width, height), (0, 0, 0, 210))
    ImageDraw.Draw(rgba).text((pad - left, pad - top), text, font=font, fill=(255, 255, 255, 255))
    arr = np.asarray(rgba)
    return arr[..., :3], arr[..., 3:].astype(np.float32) / 255.0


def label_box(text: str, cell_width: int, cell_height: int) -> tuple[int, int, int, int]:
    """Where a cell's label goes (x, y, width, height): its top-right corner, where neither the
    model's video nor the preview engine's own captions (top-left, bottom-left) put anything."""
    rgb, _ = label_patch(text, cell_height)
    h, w = min(rgb.shape[0], cell_height), min(rgb.shape[1], cell_width)
    margin = min(LABEL_MARGIN, cell_width - w)
    return cell_width - w - margin, min(LABEL_MARGIN, cell_height - h), w, h


def _draw_label(cells: np.ndarray, text: str) -> None:
    rgb, alpha = label_patch(text, cells.shape[1])
    x, y, w, h = label_box(text, cells.shape[2], cells.shape[1])
    region = cells[:, y : y + h, x : x + w].astype(np.float32)
    blended = region * (1 - alpha[:h, :w]) + rgb[:h, :w] * alpha[:h, :w]
    cells[:, y : y + h, x : x + w] = blended.round().astype(np.uint8)


# ---------------------------------------------------------------- the command


def make_sheet(
    inputs: list[str],
    out: str | os.PathLike[str],
    report: Report,
    labels: list[str] | None = None,
    columns: int | None = None,
) -> dict[str, Any]:
    """Write the contact sheet of `inputs` at `out`; returns the result event's fields.

    Raises UserError for bad input (not 2-8 takes, a missing or non-take input, lengths or frame
    rates that differ, an existing `out`), Cancelled if asked to stop; leaves nothing behind
    unless it succeeded."""
    from . import video

    low, high = TAKES
    if not low <= len(inputs) <= high:
        raise UserError("bad_take", f"A contact sheet shows {low}-{high} takes; {len(inputs)} were given.")
    if labels is not None and len(labels) != len(inputs):
        raise UserError(
            "bad_take", f"Give one label per take: {len(inputs)} takes but {len(labels)} labels were given."
        )
    if columns is not None and not 1 <= columns <= len(inputs):
        raise UserError("bad_take", f"--columns must be 1-{len(inputs)} for {len(inputs)} takes, not {columns}.")
    target = Path(out).expanduser().absolute()
    if target.suffix.lower() != ".mp4":
        raise UserError("bad_output", f"The contact sheet is an MP4 video; name it SHEET.mp4, not {target.name}.")
    if target.exists():
        raise UserError(
            "bad_output", f"{target} already exists; choose another name (a contact sheet never replaces a file)."
        )
    report.stage("validating", "Checking the takes")
    takes = [read_take(p) for p in inputs]
    labels = labels if labels is not None else labels_for(takes)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError("bad_output", f"Cannot create the folder {target.parent} ({exc.strerror}).") from None

    report.stage("reading", f"Reading {len(takes)} takes")
    sheet = None
    grid = None
    first: tuple[str, int, float] | None = None
    for k, take in enumerate(takes):
        try:
            frames, info = video.read_mp4(take.video)
        except (OSError, RuntimeError, StopIteration, ValueError) as exc:
            raise UserError("bad_take", f"{take.video.name} cannot be read as a video ({exc}).") from None
        fps = float(info.get("fps") or 0)
        if first is None:
            first = (take.video.name, len(frames), fps)
            grid = layout(len(takes), (frames.shape[2], frames.shape[1]), columns)
            sheet = np.full((len(frames), grid.height, grid.width, 3), GUTTER_COLOUR, np.uint8)
        elif len(frames) != first[1]:
            raise UserError(
                "bad_take",
                f"The takes differ in length ({first[0]} has {first[1]} frames, {take.video.name} {len(frames)}); "
                "a contact sheet plays takes of the same length side by side.",
            )
        elif abs(fps - first[2]) > 1e-3:
            raise UserError(
                "bad_take",
                f"The takes differ in frame rate ({first[0]} at {first[2]:g} fps, {take.video.name} at {fps:g}).",
            )
        cells = _fit_frames(frames, grid.cell_width, grid.cell_height)
        if labels[k]:
            _draw_label(cells, labels[k])
        x, y = grid.origin(k)
        sheet[:, y : y + grid.cell_height, x : x + grid.cell_width] = cells
        del frames, cells
        report.progress(k + 1, len(takes), "reading")
    for k in range(len(takes), grid.columns * grid.rows):
        x, y = grid.origin(k)
        sheet[:, y : y + grid.cell_height, x : x + grid.cell_width] = 0

    report.stage("writing", f"Writing the {grid.width} x {grid.height} contact sheet")
    fd, tmp = tempfile.mkstemp(prefix=".trajmaster-", suffix=".mp4.part", dir=target.parent)
    os.close(fd)
    try:
        video.write_mp4(sheet, tmp, fps=first[2])
        report.check_cancel()
        try:
            link_new(tmp, target)
        except FileExistsError:
            raise UserError(
                "bad_output", f"{target} appeared meanwhile; choose another name (nothing was replaced)."
            ) from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    cells_out = []
    for k, (take, label) in enumerate(zip(takes, labels, strict=True)):
        x, y = grid.origin(k)
        cells_out.append({"take": str(take.video), "name": take.name, "label": label, "x": x, "y": y})
    return {
        "video": str(target),
        "frames": int(sheet.shape[0]),
        "fps": first[2],
        "width": grid.width,
        "height": grid.height,
        "columns": grid.columns,
        "rows": grid.rows,
        "cell_width": grid.cell_width,
        "cell_height": grid.cell_height,
        "cells": cells_out,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("takes", nargs="+", metavar="TAKE", help="2-8 takes' .mp4 files (each with its sidecar)")
    parser.add_argument("--out", required=True, metavar="SHEET.mp4", help="the video to write; must not exist")
    parser.add_argument(
        "--labels",
        nargs="+",
        metavar="LABEL",
        help="one label per take, in order (default: what differs between them, from their sidecars)",
    )
    parser.add_argument("--columns", type=int, metavar="N", help="columns of the grid (default: the biggest cells)")


def run(args: argparse.Namespace, report: Report) -> int:
    def on_signal(signum: int, frame: object) -> None:
        report.cancel.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        result = make_sheet(args.takes, args.out, report, args.labels, args.columns)
    except BaseException as exc:
        return report_outcome(report, exc)
    report._emit("result", **result)
    print(f"Wrote {result['video']} ({result['columns']} x {result['rows']} takes)", file=sys.stderr)
    return EXIT_OK
