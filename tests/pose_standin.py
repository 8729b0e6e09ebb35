"""A TorchScript stand-in for the DensePose model, with the released file's input/output contract.

It "detects" solid blocks of pure red, green and blue in a BGR (3, H, W) uint8 image (the layout and channel
order `pose` must pass), one person per colour, with a fixed score per colour. Each person's coarse map is an
ellipse inscribed in its box (so box corners are background) and its fine map is one part label everywhere,
so a render shows who was drawn where by colour alone. People are listed most confident first, as detectron2
lists them. Scripted with `torch.jit.script`, saved and loaded like the released file.

Synthetic clips for it: `blob_frame` paints the blocks on a dark grey ground.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch
from torch import nn

RED, GREEN, BLUE = 0, 1, 2
COLOURS_RGB = {RED: (255, 0, 0), GREEN: (0, 255, 0), BLUE: (0, 0, 255)}
LABELS = {RED: 5, GREEN: 17, BLUE: 11}
"""The part label each colour's person is drawn with."""
SCORES = {RED: 0.95, GREEN: 0.85, BLUE: 0.7}
GROUND = (40, 40, 40)
SEGM_SIZE = 8


class BlobDensePose(nn.Module):
    """Dict output, as the exporter's `detector_postprocess` returns it."""

    def __init__(self, scores: List[float], labels: List[int], size: int = SEGM_SIZE) -> None:
        super().__init__()
        self.register_buffer("person_scores", torch.tensor(scores, dtype=torch.float32))
        self.labels = labels
        centres = (torch.arange(size, dtype=torch.float32) * 2 + 1) / size - 1
        inside = centres[:, None] ** 2 + centres[None, :] ** 2 <= 0.8
        coarse = torch.stack([torch.zeros(size, size), torch.where(inside, 4.0, -4.0)])
        self.register_buffer("coarse_map", coarse)
        self.size = size

    def forward(self, image: torch.Tensor) -> Dict[str, torch.Tensor]:
        if image.dim() != 3 or image.shape[0] != 3 or image.dtype != torch.uint8:
            raise RuntimeError("expected a (3, H, W) uint8 BGR image")
        pixels = image.to(torch.int32)
        total = pixels.sum(0)
        boxes: List[torch.Tensor] = []
        found: List[int] = []
        for person in range(3):
            channel = 2 - person  # BGR: red is channel 2
            mask = (pixels[channel] > 160) & (total - pixels[channel] < 160)
            where = torch.nonzero(mask)
            if where.shape[0] > 0:
                y0, x0 = where[:, 0].min(), where[:, 1].min()
                y1, x1 = where[:, 0].max() + 1, where[:, 1].max() + 1
                boxes.append(torch.stack([x0, y0, x1, y1]).to(torch.float32))
                found.append(person)
        count = len(found)
        fine = torch.zeros(count, 25, self.size, self.size)
        scores = torch.zeros(count)
        for slot, person in enumerate(found):
            fine[slot, self.labels[person]] = 4.0
            scores[slot] = self.person_scores[person]
        order = torch.argsort(scores, descending=True)
        box_tensor = torch.stack(boxes) if count > 0 else torch.zeros(0, 4)
        coarse = self.coarse_map[None].expand(count, 2, self.size, self.size).contiguous()
        return {
            "pred_boxes": box_tensor[order], "scores": scores[order],
            "pred_classes": torch.zeros(count, dtype=torch.int64),
            "pred_densepose_coarse_segm": coarse, "pred_densepose_fine_segm": fine[order],
            "pred_densepose_u": torch.zeros(count, 25, self.size, self.size),
            "pred_densepose_v": torch.zeros(count, 25, self.size, self.size),
        }


class BlobDensePoseTuple(nn.Module):
    """Tuple output without scores, as the Hub file's users unpack it: (boxes, coarse, fine, u, v)."""

    def __init__(self, scores: List[float], labels: List[int]) -> None:
        super().__init__()
        self.inner = BlobDensePose(scores, labels)

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                                                    torch.Tensor]:
        out = self.inner(image)
        return (out["pred_boxes"], out["pred_densepose_coarse_segm"], out["pred_densepose_fine_segm"],
                out["pred_densepose_u"], out["pred_densepose_v"])


def save_standin(path: Path, scores: Dict[int, float] = SCORES, as_tuple: bool = False) -> Path:
    ordered = [scores[RED], scores[GREEN], scores[BLUE]]
    labels = [LABELS[RED], LABELS[GREEN], LABELS[BLUE]]
    module = BlobDensePoseTuple(ordered, labels) if as_tuple else BlobDensePose(ordered, labels)
    torch.jit.script(module.eval()).save(str(path))
    return path


def blob_frame(width: int, height: int, blocks: Dict[int, Tuple[int, int, int, int]]) -> np.ndarray:
    """An RGB frame with a solid block (x, y, w, h) of each colour, painted in the order given."""
    frame = np.empty((height, width, 3), dtype=np.uint8)
    frame[:] = GROUND
    for colour, (x, y, w, h) in blocks.items():
        frame[y:y + h, x:x + w] = COLOURS_RGB[colour]
    return frame


def moving_blobs(count: int, width: int = 64, height: int = 48) -> list[np.ndarray]:
    """A clip of red, green and blue blocks sliding across the frame (every colour in every frame)."""
    frames = []
    for index in range(count):
        shift = index % 8
        frames.append(blob_frame(width, height, {RED: (4 + shift, 4, 20, 30), GREEN: (34 - shift, 10, 18, 28),
                                                 BLUE: (24, 30 + shift % 3, 14, 12)}))
    return frames


MARKER = (255, 0, 255)
"""A frame whose top-left pixel has this RGB colour makes `FailingDensePose` fail (magenta: no blob colour)."""


class FailingDensePose(nn.Module):
    """Fails inside forward, as a real model does on an input it asserts against: on frames marked with MARKER."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = BlobDensePose([0.95, 0.85, 0.7], [5, 17, 11])

    def forward(self, image: torch.Tensor) -> Dict[str, torch.Tensor]:
        corner = image[:, 0, 0].to(torch.int32)  # BGR
        assert not (int(corner[0]) > 200 and int(corner[1]) < 50 and int(corner[2]) > 200), \
            "input image must not be magenta in its corner"
        return self.inner(image)


class WarningDensePose(nn.Module):
    """Raises a third-party UserWarning while it runs, as the exported model's torch.meshgrid call does."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = BlobDensePose([0.95, 0.85, 0.7], [5, 17, 11])

    def forward(self, image: torch.Tensor) -> Dict[str, torch.Tensor]:
        grid = torch.meshgrid([torch.arange(2), torch.arange(3)])  # no indexing argument: torch warns
        out = self.inner(image)
        out["grid"] = grid[0]
        return out


def save_module(path: Path, module: nn.Module) -> Path:
    torch.jit.script(module.eval()).save(str(path))
    return path
