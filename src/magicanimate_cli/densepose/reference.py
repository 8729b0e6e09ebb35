"""The reference person as DensePose sees it: the part labels of one person in the reference picture.

`--align` compares the motion's person with this one. The picture goes through the same model and the same
per-person rendering as a `pose` frame (`render.person_labels` in the person's clipped box); of the people
above `--min-score`, the one `--people` selects is kept: the largest box with `largest`, else the most
confident (several people in the photo must not blend into one silhouette).
"""

from __future__ import annotations

import numpy as np

from .model import PoseModel
from .render import drawing_order, person_labels, pixel_boxes


def reference_person(model: PoseModel, image: np.ndarray, min_score: float, people: str,
                     where: str = "the reference image") -> np.ndarray | None:
    """(H, W) uint8 part labels of the chosen person in an RGB (H, W, 3) picture, or None when nobody is found;
    `where` names the picture if the model fails on it."""
    height, width = image.shape[:2]
    detections = model.detect(image, where)
    boxes = pixel_boxes(detections.boxes, width, height)
    order = drawing_order(detections, boxes, min_score, "largest" if people == "largest" else "all")
    if not order:
        return None
    chosen = order[-1]  # drawing order is least confident first
    x, y, w, h = boxes[chosen]
    canvas = np.zeros((height, width), dtype=np.uint8)
    canvas[y:y + h, x:x + w] = person_labels(detections.coarse[chosen], detections.fine[chosen], w, h)
    return canvas if canvas.any() else None


def reference_people(model: PoseModel, image: np.ndarray, min_score: float, people: str,
                     where: str = "the reference image") -> list[np.ndarray]:
    """(H, W) uint8 part labels of every person above `min_score` (only the largest with `largest`), each on its
    own map, ordered left to right by box centre: `--align` with several people pairs them by place."""
    height, width = image.shape[:2]
    detections = model.detect(image, where)
    boxes = pixel_boxes(detections.boxes, width, height)
    found = []
    for index in drawing_order(detections, boxes, min_score, "largest" if people == "largest" else "all"):
        x, y, w, h = boxes[index]
        canvas = np.zeros((height, width), dtype=np.uint8)
        canvas[y:y + h, x:x + w] = person_labels(detections.coarse[index], detections.fine[index], w, h)
        if canvas.any():
            found.append((x + w / 2, index, canvas))
    return [canvas for _, _, canvas in sorted(found, key=lambda f: (f[0], f[1]))]
