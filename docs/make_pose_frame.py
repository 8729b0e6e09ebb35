"""Draws docs/pose-frame.png: one frame as `magicanimate pose` renders it, from a synthetic detection.

    PYTHONPATH=src python docs/make_pose_frame.py

A stick figure's part labels (DensePose's fine index I, 1..24) go through the same renderer as the model's
output (`pose.render.render_frame`: box placement, coarse/fine argmax, viridis colours on viridis(0)).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from magicanimate_cli.media.writer import write_image_atomic
from magicanimate_cli.densepose.model import Detections
from magicanimate_cli.densepose.render import render_frame

SIZE = 192
# (part label, polygon or ellipse) in a 100×100 box; labels follow DensePose's fine index
LIMBS = [
    (2, "poly", [(38, 22), (62, 22), (60, 55), (40, 55)]),  # torso back
    (1, "poly", [(41, 24), (59, 24), (57, 52), (43, 52)]),  # torso front
    (15, "poly", [(38, 23), (44, 25), (30, 40), (25, 36)]), (16, "poly", [(62, 23), (56, 25), (70, 40), (75, 36)]),
    (19, "poly", [(25, 36), (30, 40), (20, 52), (15, 48)]), (20, "poly", [(75, 36), (70, 40), (80, 52), (85, 48)]),
    (4, "ellipse", [(11, 46), (19, 55)]), (3, "ellipse", [(81, 46), (89, 55)]),
    (7, "poly", [(40, 54), (50, 54), (47, 75), (38, 75)]), (8, "poly", [(50, 54), (60, 54), (62, 75), (53, 75)]),
    (11, "poly", [(38, 75), (47, 75), (44, 93), (36, 93)]), (12, "poly", [(53, 75), (62, 75), (64, 93), (56, 93)]),
    (5, "poly", [(33, 93), (45, 93), (45, 98), (31, 98)]), (6, "poly", [(55, 93), (67, 93), (69, 98), (55, 98)]),
    (23, "ellipse", [(41, 2), (59, 22)]), (24, "ellipse", [(44, 4), (56, 18)]),
]


def figure_labels(size: int) -> np.ndarray:
    canvas = Image.new("L", (100, 100), 0)
    draw = ImageDraw.Draw(canvas)
    for label, kind, points in LIMBS:
        (draw.polygon if kind == "poly" else draw.ellipse)(points, fill=label)
    return np.asarray(canvas.resize((size, size), Image.Resampling.NEAREST))


def main() -> None:
    box = int(SIZE * 0.8)
    labels = torch.from_numpy(figure_labels(box).astype(np.int64))
    fine = torch.nn.functional.one_hot(labels, 25).permute(2, 0, 1).float()[None]
    coarse = torch.stack([(labels == 0).float(), (labels > 0).float()])[None]
    left = (SIZE - box) / 2
    found = Detections(torch.tensor([[left, left, left + box, left + box]]), torch.tensor([0.99]), coarse, fine)
    image, _ = render_frame(found, SIZE, SIZE, 0.8, "all")
    target = Path(__file__).resolve().parent / "pose-frame.png"
    write_image_atomic(target, image)
    palette = Image.open(target).convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
    palette.save(target, optimize=True)  # 25 colours at most: a palette PNG holds them exactly
    print(f"wrote {target} ({target.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
