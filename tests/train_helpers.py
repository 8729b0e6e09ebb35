"""Tiny DATA folders for the training tests: a moving "person" and its DensePose render in the motion palette."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from media_helpers import encode_video
from magicanimate_cli.motion.palette import colourise


def person_labels(index: int, size: int, phase: int = 0) -> np.ndarray:
    """Part labels (0 = background) of a box-shaped body that walks right by 4 px a frame, 3 parts stacked."""
    labels = np.zeros((size, size), dtype=np.int64)
    left = (8 + 4 * index + 7 * phase) % (size // 2)
    top, h, w = size // 6, size * 2 // 3, size // 4
    for part, rows in enumerate(np.array_split(np.arange(top, top + h), 3), start=1):
        labels[rows[0]:rows[-1] + 1, left:left + w] = part * 5 + phase
    return labels


def person_frame(labels: np.ndarray, phase: int = 0) -> np.ndarray:
    """A photo-like frame of the same body: a shaded figure on a plain background."""
    rgb = np.empty((*labels.shape, 3), dtype=np.uint8)
    rgb[:] = (200, 190 - 20 * phase, 170)
    body = labels > 0
    rgb[body] = np.stack([60 + 6 * labels[body], 90 + 20 * phase + 0 * labels[body], 150 - 4 * labels[body]], -1)
    return rgb


def make_data(root: Path, videos: dict[str, int], images: int = 0, size: int = 128) -> Path:
    """DATA/videos/NAME.mp4 + DATA/densepose/NAME.mp4 (frame counts as given), and `images` image pairs."""
    for v, (name, count) in enumerate(sorted(videos.items())):
        labels = [person_labels(i, size, v) for i in range(count)]
        for folder, frames in (("videos", [person_frame(x, v) for x in labels]),
                               ("densepose", [colourise(x) for x in labels])):
            path = root / folder / f"{name}.mp4"
            path.parent.mkdir(parents=True, exist_ok=True)
            encode_video(path, frames)
    for i in range(images):
        labels = person_labels(i, size, 2)
        for folder, pixels in (("images", person_frame(labels, 2)), ("images_densepose", colourise(labels))):
            path = root / folder / f"photo{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(path)
    return root


def make_validation(root: Path, size: int = 128, frames: int = 3) -> Path:
    """A validation folder: one pair (reference, DensePose motion) with its ground-truth video."""
    root.mkdir(parents=True, exist_ok=True)
    labels = [person_labels(i, size, 1) for i in range(frames)]
    Image.fromarray(person_frame(labels[0], 1)).save(root / "dancer.png")
    encode_video(root / "dancer.mp4", [colourise(x) for x in labels])
    encode_video(root / "dancer.truth.mp4", [person_frame(x, 1) for x in labels])
    return root
