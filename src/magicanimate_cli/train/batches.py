"""From a step's plan to tensors: read the frames, fit them to the training size, stack the batch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from .sampling import StepPlan


class FrameSource(Protocol):
    """Where frames come from (dataset.reader.DataFolder, or a test's stand-in)."""

    def video_frames(self, name: str, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]: ...

    def image(self, name: str) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass
class Batch:
    target: torch.Tensor  # (b, f, 3, H, W) float32 in [-1, 1]
    pose: torch.Tensor  # (b, f, 3, H, W) float32 in [0, 1], as the ControlNet reads a render
    reference: torch.Tensor  # (b, 3, H, W) float32 in [-1, 1]

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(self.target.to(device), self.pose.to(device), self.reference.to(device))


def fit(frames: np.ndarray, width: int, height: int, render: bool = False) -> np.ndarray:
    """Centre-crop uint8 (n, H, W, 3) frames to the aspect of width×height, then resize to it.

    Renders are resized with nearest neighbour so that every pixel keeps a palette colour; photos bilinearly. A
    video and its render get the same crop, so they stay aligned.
    """
    n, h, w, _ = frames.shape
    if (w, h) == (width, height):
        return frames
    if w * height > h * width:  # too wide
        cw, ch = round(h * width / height), h
    else:
        cw, ch = w, round(w * height / width)
    left, top = (w - cw) // 2, (h - ch) // 2
    method = Image.Resampling.NEAREST if render else Image.Resampling.BILINEAR
    out = np.empty((n, height, width, 3), dtype=np.uint8)
    for i in range(n):
        crop = Image.fromarray(frames[i, top:top + ch, left:left + cw])
        out[i] = np.asarray(crop.resize((width, height), method))
    return out


def make_batch(plan: StepPlan, source: FrameSource, width: int, height: int) -> Batch:
    targets, poses, references = [], [], []
    for sample in plan.samples:
        if sample.kind == "image":
            pixels, drawn = source.image(sample.name)
            frames, renders = pixels[None], drawn[None]
            frames, renders = fit(frames, width, height), fit(renders, width, height, render=True)
            reference = frames[0]
        else:
            frames, renders = source.video_frames(sample.name, [*sample.frames, sample.reference])
            frames, renders = fit(frames, width, height), fit(renders[:-1], width, height, render=True)
            reference, frames = frames[-1], frames[:-1]
        targets.append(frames)
        poses.append(renders)
        references.append(reference)
    return Batch(_pixels(np.stack(targets)), _pose(np.stack(poses)), _pixels(np.stack(references)))


def _pixels(x: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float32 (..., 3, H, W) in [-1, 1], as the engine encodes its reference."""
    t = torch.from_numpy(np.ascontiguousarray(x)).movedim(-1, -3)
    return t.to(torch.float32) / 127.5 - 1.0


def _pose(x: np.ndarray) -> torch.Tensor:
    """uint8 renders -> float32 (..., 3, H, W) in [0, 1], as the engine's control_tensor."""
    return torch.from_numpy(np.ascontiguousarray(x)).movedim(-1, -3).to(torch.float32) / 255.0
