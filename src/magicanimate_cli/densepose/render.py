"""Detections → part labels → one frame in MagicAnimate's DensePose format.

This follows the exporter's visualiser (`dajes/DensePose-TorchScript`, `visualizer.py`, as run by `run.py` with
`alpha=1.0, keep_bg=False`), which is what the Hub's "hint image" renders are:

- the frame is first filled with viridis(0), the background colour;
- a box becomes (x, y, w, h) = (x0, y0, x1 − x0, y1 − y0) in float, each truncated toward zero
  (`box_xywh.long()` there); a box with w or h of 0 draws nothing;
- the coarse and fine maps are resized to (h, w) (bilinear, align_corners False); the label is argmax(fine)
  where argmax(coarse) > 0, else 0;
- labels > 0 are painted into [y, y + h) × [x, x + w) through VIRIDIS at int(I · 255 / 24); label 0 leaves what
  is underneath (background or an earlier person).

The visualiser assumes boxes inside the frame, which detectron2 guarantees by clipping them (`Boxes.clip`); we
clip the same way, to [0, W] × [0, H] before truncating, so any box from any model lands in the frame. Where the
exporter draws in the model's order (most confident first, so the least confident ends on top), we draw in
ascending score, so that where people overlap the most confident one is on top.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from ..motion.palette import colourise
from .model import Detections

PixelBox = tuple[int, int, int, int]
"""(x, y, w, h) in whole pixels."""


def pixel_boxes(boxes: torch.Tensor, width: int, height: int) -> list[PixelBox]:
    """Clip xyxy boxes to the frame, then truncate x, y, w, h toward zero, in float32 like the exporter."""
    b = boxes.detach().to("cpu", torch.float32).reshape(-1, 4)
    x0, x1 = b[:, 0].clamp(0, width), b[:, 2].clamp(0, width)
    y0, y1 = b[:, 1].clamp(0, height), b[:, 3].clamp(0, height)
    xywh = torch.stack([x0, y0, x1 - x0, y1 - y0], dim=1).long()
    return [tuple(row) for row in xywh.tolist()]


def person_labels(coarse: torch.Tensor, fine: torch.Tensor, width: int, height: int) -> np.ndarray:
    """(height, width) uint8 part labels 0..24 of one person, from its (2, S, S) and (25, S, S) logits."""
    size = (max(height, 1), max(width, 1))
    body = F.interpolate(coarse[None], size, mode="bilinear", align_corners=False).argmax(dim=1) > 0
    parts = F.interpolate(fine[None], size, mode="bilinear", align_corners=False).argmax(dim=1)
    return (parts * body)[0].to(torch.uint8).cpu().numpy()


def drawing_order(detections: Detections, boxes: list[PixelBox], min_score: float, people: str) -> list[int]:
    """Indices of the people to draw, least confident first.

    A person is kept when its score is above `min_score` (as detectron2's SCORE_THRESH_TEST keeps them) and its
    box is at least one pixel each way. `largest` keeps only the person with the largest box. Without scores
    the model has thresholded already and listed people most confident first, so that order is reversed.
    """
    scores = None if detections.scores is None else detections.scores.detach().cpu()
    above = [True] * len(boxes) if scores is None else (scores > min_score).tolist()  # in the model's float type
    score = (lambda i: 0.0) if scores is None else (lambda i: float(scores[i]))
    kept = [i for i, (_, _, w, h) in enumerate(boxes) if w > 0 and h > 0 and above[i]]
    if people == "largest" and kept:
        kept = [max(kept, key=lambda i: (boxes[i][2] * boxes[i][3], score(i), -i))]
    return sorted(kept, key=lambda i: (score(i), -i))


def render_labels(detections: Detections, width: int, height: int, min_score: float,
                  people: str, owners: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """The (height, width) label map of one frame and the number of people drawn on it.

    `owners`, a (height, width) uint8 array of zeros if given, receives which person each pixel shows: 1, 2, ...
    in drawing order (the model's instances, which `--align` with several people uses rather than guess them
    from the labels)."""
    canvas = np.zeros((height, width), dtype=np.uint8)
    boxes = pixel_boxes(detections.boxes, width, height)
    order = drawing_order(detections, boxes, min_score, people)
    for number, index in enumerate(order, start=1):
        x, y, w, h = boxes[index]
        labels = person_labels(detections.coarse[index], detections.fine[index], w, h)
        region = canvas[y:y + h, x:x + w]
        np.copyto(region, labels, where=labels > 0)
        if owners is not None:
            owners[y:y + h, x:x + w][labels > 0] = min(number, 255)
    return canvas, len(order)


def render_frame(detections: Detections, width: int, height: int, min_score: float,
                 people: str) -> tuple[np.ndarray, int]:
    """The RGB uint8 (height, width, 3) render of one frame and the number of people on it."""
    labels, count = render_labels(detections, width, height, min_score, people)
    return colourise(labels), count
