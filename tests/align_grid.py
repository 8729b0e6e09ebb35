"""The precision grid of `--align` (issue 25): a runner-like figure pasted at 0.4× to 1.5× into 512² photos,
fitted to its 512² render at working sizes 128, 256 and 512. Used by tests/test_align_precision.py and by
benchmarks/align_precision.py, which prints the table docs/alignment.md shows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from magicanimate_cli.demo.inputs import _pose, render_labels
from magicanimate_cli.motion.align import (AlignmentFit, FrameMap, apply_similarity, box_iou, decode_labels,
                                           fit_measured, fit_similarity, majority_filter, measure, person_box)
from magicanimate_cli.motion.fit import Box, resize
from magicanimate_cli.motion.palette import colourise

PHOTO = 512
RENDER_SIDE = 360
"""The figure's box side in its 512² render: the body is then about 0.63 of the frame high, as the runner of the
official running.mp4 is."""
RUNNING = _pose(0.9, 0.03, 1.0)
"""Mid-stride, arms swinging: a running person's proportions (box about 0.6 as wide as high)."""
SCALES = (0.4, 0.55, 0.7, 0.85, 1.0, 1.25, 1.5)
PLACES = ((0.5, 0.5), (0.15, 0.8), (0.85, 0.2))
"""Where the pasted figure sits, as a share of the room left in x and y (at 1.25× and 1.5× it is cut)."""
WORKING = (128, 256, 512)


def figure(side: int, left: int, top: int, frame: int = PHOTO) -> np.ndarray:
    """The running figure drawn in a side×side box at (left, top) of a frame×frame label map, cut at the edges."""
    body = render_labels(RUNNING, side, side)
    canvas = np.zeros((frame, frame), dtype=np.uint8)
    x0, y0 = max(left, 0), max(top, 0)
    x1, y1 = min(left + side, frame), min(top + side, frame)
    canvas[y0:y1, x0:x1] = body[y0 - top:y1 - top, x0 - left:x1 - left]
    return canvas


def nearest(labels: np.ndarray, size: int) -> np.ndarray:
    """A label map brought to size² as `--fit` brings a render (nearest neighbour)."""
    return np.asarray(Image.fromarray(labels).resize((size, size), Image.Resampling.NEAREST))


def motion_render() -> np.ndarray:
    """The motion's 512² render as the aligner reads it back: coloured, moved by coding noise, decoded."""
    rng = np.random.default_rng(0)
    render = colourise(figure(RENDER_SIDE, 80, 70)).astype(np.int16) + rng.integers(-4, 5, (PHOTO, PHOTO, 3))
    return majority_filter(decode_labels(np.clip(render, 0, 255).astype(np.uint8)))


@dataclass(frozen=True)
class Case:
    scale: float  # the true scale: the pasted figure's side over the render's
    work: int
    reference: np.ndarray  # the photo's person as the model gives it, at the photo's resolution
    reference_box: Box  # its box in the working frame


def cases(work: int) -> list[Case]:
    found = []
    for scale in SCALES:
        side = round(RENDER_SIDE * scale)
        for fx, fy in PLACES:
            labels = figure(side, round(fx * (PHOTO - side)), round(fy * (PHOTO - side)))
            found.append(Case(side / RENDER_SIDE, work, labels, person_box(nearest(labels, work))))
    return found


def fit_at_own_resolution(case: Case, motion: np.ndarray) -> AlignmentFit:
    """Both people measured in their 512² pictures, the numbers mapped into the working frame."""
    frame = FrameMap.onto(PHOTO, PHOTO, Box(0, 0, case.work, case.work))
    return fit_measured(measure(case.reference, frame), measure(motion, frame))


def fit_in_working_frame(case: Case, motion: np.ndarray) -> AlignmentFit:
    """The earlier way: both people read in the working frame, the photo resized as a photo (Lanczos), so that
    its small person's borders blend into colours of neighbouring parts."""
    photo = resize(colourise(case.reference), case.work, case.work, "lanczos")
    return fit_similarity(majority_filter(decode_labels(photo)), nearest(motion, case.work))


def outcome(case: Case, motion: np.ndarray, fit: AlignmentFit) -> tuple[float, float]:
    """(relative scale error, box IoU of the aligned working motion with the reference person)."""
    moved = apply_similarity(nearest(motion, case.work), fit.transform)
    return abs(fit.transform.scale / case.scale - 1), box_iou(person_box(moved), case.reference_box)
