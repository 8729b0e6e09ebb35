"""From a step's plan to tensors: read the sample's frames, fit them to the training size as `animate` does, draw
the renders through MagicAnimate's palette, stack the batch.

Fitting is `motion/fit.py`'s, with `animate --fit`'s choices and default (pad): a 9:16 phone clip keeps head and
feet instead of losing them to a square centre crop, and the model trains on frames shaped like those it is given
at inference. Padded pixels are what inference puts there: the render's background colour (viridis(0), label 0)
around the pose, and the frame's own edge pixels around the target and the reference (as `fit_reference` pads the
reference photo).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from ..motion.fit import IMAGE_RESAMPLE, plan_fit, resize
from ..motion.palette import colourise
from .sampling import StepPlan

DEFAULT_FIT = "pad"
"""`animate --fit`'s default, so training sees the shapes inference gives."""


class FrameSource(Protocol):
    """Where frames come from (dataset.reader.DataFolder, or a test's stand-in)."""

    def video_sample(self, name: str, frames: Sequence[int], reference: int
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

    def image(self, name: str) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass
class Batch:
    target: torch.Tensor  # (b, f, 3, H, W) float32 in [-1, 1]
    pose: torch.Tensor  # (b, f, 3, H, W) float32 in [0, 1], as the ControlNet reads a render
    reference: torch.Tensor  # (b, 3, H, W) float32 in [-1, 1]

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(self.target.to(device), self.pose.to(device), self.reference.to(device))


def fit_frame(pixels: np.ndarray, width: int, height: int, mode: str) -> np.ndarray:
    """A uint8 (H, W, 3) frame fitted to width×height (pad: edge pixels around it)."""
    fit = plan_fit(pixels.shape[1], pixels.shape[0], width, height, mode)
    box = fit.working_box
    content = resize(pixels[fit.source_box.slices()], box.width, box.height, IMAGE_RESAMPLE)
    pad = ((box.top, height - box.bottom), (box.left, width - box.right), (0, 0))
    return np.pad(content, pad, mode="edge") if any(p for axis in pad for p in axis) else content


def fit_labels(labels: np.ndarray, width: int, height: int, mode: str) -> np.ndarray:
    """A (H, W) part-label map fitted like its frame, with nearest neighbour (labels stay labels) and label 0,
    the background, around it; then drawn as the (height, width, 3) render the ControlNet reads."""
    fit = plan_fit(labels.shape[1], labels.shape[0], width, height, mode)
    box = fit.working_box
    canvas = np.zeros((height, width), dtype=np.uint8)
    canvas[box.slices()] = resize(labels[fit.source_box.slices()], box.width, box.height, "nearest")
    return colourise(canvas)


def make_batch(plan: StepPlan, source: FrameSource, width: int, height: int, mode: str = DEFAULT_FIT) -> Batch:
    targets, poses, references = [], [], []
    for sample in plan.samples:
        if sample.kind == "image":
            pixels, labels = source.image(sample.name)
            frames, label_maps, reference = pixels[None], labels[None], pixels
        else:
            frames, label_maps, reference = source.video_sample(sample.name, sample.frames, sample.reference)
        targets.append(np.stack([fit_frame(x, width, height, mode) for x in frames]))
        poses.append(np.stack([fit_labels(x, width, height, mode) for x in label_maps]))
        references.append(fit_frame(reference, width, height, mode))
    return Batch(_pixels(np.stack(targets)), _pose(np.stack(poses)), _pixels(np.stack(references)))


def _pixels(x: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float32 (..., 3, H, W) in [-1, 1], as the engine encodes its reference."""
    t = torch.from_numpy(np.ascontiguousarray(x)).movedim(-1, -3)
    return t.to(torch.float32) / 127.5 - 1.0


def _pose(x: np.ndarray) -> torch.Tensor:
    """uint8 renders -> float32 (..., 3, H, W) in [0, 1], as the engine's control_tensor."""
    return torch.from_numpy(np.ascontiguousarray(x)).movedim(-1, -3).to(torch.float32) / 255.0
