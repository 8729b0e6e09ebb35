"""`--preview`: one PNG that shows, before any GPU time is spent, how the motion meets the reference.

Each column is one motion frame (the first, the quarter points and the last). The top row draws that frame's
silhouette over the reference in the working frame as the motion came (red); with `--align` a second row draws
it where the alignment moves it (green; with several people, each person in its own colour); the last row is
the motion frame itself, as the engine will receive it. A user sees at a glance whether the fit, the alignment and the render are right.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from ..motion.align import decode_labels
from ..motion.fit import resize

PANEL_HEIGHT = 192
"""Panels are scaled to this height: enough to judge a silhouette, small enough for a quick look."""

CAPTION = 14
BEFORE_COLOUR = (255, 64, 64)
AFTER_COLOUR = (64, 255, 96)
PERSON_COLOURS = (AFTER_COLOUR, (64, 160, 255), (255, 200, 40), (255, 64, 255), (40, 230, 230), (255, 255, 255))
"""With several people, person n (left to right in the anchor frame) is drawn in colour n after --align."""
TINT = 0.45


def preview_frames(count: int) -> list[int]:
    """The frames a preview shows: first, quarter points and last (fewer for short clips)."""
    return sorted({round(q * (count - 1) / 4) for q in range(5)})


def silhouette_overlay(picture: np.ndarray, body: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    """`picture` with the body mask tinted in `colour` and its outline drawn solid, so both the covered area
    and the exact border show over any photo."""
    out = picture.astype(np.float32)
    out[body] = (1 - TINT) * out[body] + TINT * np.array(colour, np.float32)
    inner = body.copy()
    inner[1:] &= body[:-1]
    inner[:-1] &= body[1:]
    inner[:, 1:] &= body[:, :-1]
    inner[:, :-1] &= body[:, 1:]
    out[body & ~inner] = colour
    return np.rint(out).astype(np.uint8)


def after_cell(reference: np.ndarray, index: int, frame: np.ndarray, moved: np.ndarray, transform) -> np.ndarray:
    """The reference with the moved motion's silhouette: one person in green; several, each in its own colour."""
    if not hasattr(transform, "moved_masks"):
        return silhouette_overlay(reference, decode_labels(moved) > 0, AFTER_COLOUR)
    cell = reference
    for person, mask in sorted(transform.moved_masks(index, frame), key=lambda pm: pm[0]):
        cell = silhouette_overlay(cell, mask, PERSON_COLOURS[person % len(PERSON_COLOURS)])
    return cell


def compose_preview(reference: np.ndarray, frames: dict[int, np.ndarray], transform,
                    background: tuple[int, int, int]) -> np.ndarray:
    """The preview picture (RGB uint8) from the working reference and fitted (unaligned) motion frames;
    `transform` is --align's (`align.Similarity` or `people.PeopleAlignment`), or None."""
    height, width = reference.shape[:2]
    panel_w = max(1, round(width * PANEL_HEIGHT / height))
    after = "after --align (a colour per person)" if hasattr(transform, "moved_masks") else "after --align (green)"
    titles = ["motion as it comes (red)", *([after] if transform is not None else []),
              "motion frame the model receives"]
    rows: list[tuple[str, list[np.ndarray]]] = [(title, []) for title in titles]
    for index in sorted(frames):
        frame = frames[index]
        moved = frame if transform is None else transform.move_frame(index, frame, background)
        cells = [silhouette_overlay(reference, decode_labels(frame) > 0, BEFORE_COLOUR)]
        if transform is not None:
            cells.append(after_cell(reference, index, frame, moved, transform))
        cells.append(moved)
        for (_, row), cell in zip(rows, cells):
            row.append(resize(cell, panel_w, PANEL_HEIGHT, "nearest" if cell is moved else "lanczos"))
    columns = len(frames)
    canvas = Image.new("RGB", (columns * (panel_w + 4) + 4, len(rows) * (PANEL_HEIGHT + CAPTION + 4) + 4),
                       (24, 24, 24))
    draw = ImageDraw.Draw(canvas)
    for r, (title, row) in enumerate(rows):
        top = 4 + r * (PANEL_HEIGHT + CAPTION + 4)
        for c, (index, cell) in enumerate(zip(sorted(frames), row)):
            left = 4 + c * (panel_w + 4)
            draw.text((left, top), f"frame {index}" + (f" · {title}" if c == 0 else ""), fill=(230, 230, 230))
            canvas.paste(Image.fromarray(cell), (left, top + CAPTION))
    return np.asarray(canvas)
