"""From a step's plan to tensors: read the sample's frames, fit them to the training size as `animate` does, stack
the batch, and (on the training device) draw the renders through MagicAnimate's palette and scale to floats.

Reading and fitting (`read_batch`) run in the data workers and hand over bytes: the frames as uint8 RGB and the
renders as one-byte part labels, a quarter of the float batch to pass between processes. Turning them into the
float tensors the model reads (`RawBatch.to`) is a few elementwise operations and a palette lookup, which cost a
CPU core more than all the decoding (0.16 s for a 16-frame clip at 512²) and a GPU next to nothing.

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

from ..motion.fit import fit_reference, plan_fit, resize
from ..motion.palette import PART_COLOURS
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


@dataclass
class RawBatch:
    """A batch as read: bytes, fitted to the training size."""

    target: torch.Tensor  # (b, f, H, W, 3) uint8 RGB
    labels: torch.Tensor  # (b, f, H, W) uint8 part labels 0..24
    reference: torch.Tensor  # (b, H, W, 3) uint8 RGB

    def to(self, device: torch.device | str) -> Batch:
        """The float batch on `device`: renders drawn through the palette, pictures scaled to [-1, 1]."""
        palette = torch.from_numpy(PART_COLOURS).to(device)
        pose = palette[self.labels.to(device).long()]
        return Batch(_pixels(self.target.to(device)), _pose(pose), _pixels(self.reference.to(device)))


def fit_labels(labels: np.ndarray, width: int, height: int, mode: str) -> np.ndarray:
    """A (H, W) part-label map fitted like its frame, with nearest neighbour (labels stay labels) and label 0,
    the background, around it (drawn, that is the render's background colour)."""
    fit = plan_fit(labels.shape[1], labels.shape[0], width, height, mode)
    box = fit.working_box
    canvas = np.zeros((height, width), dtype=np.uint8)
    canvas[box.slices()] = resize(labels[fit.source_box.slices()], box.width, box.height, "nearest")
    return canvas


def make_batch(plan: StepPlan, source: FrameSource, width: int, height: int, mode: str = DEFAULT_FIT) -> Batch:
    """The plan's float batch on the CPU."""
    return read_batch(plan, source, width, height, mode).to("cpu")


def read_batch(plan: StepPlan, source: FrameSource, width: int, height: int, mode: str = DEFAULT_FIT) -> RawBatch:
    """Read and fit the plan's samples; only their frames are read."""
    targets, poses, references = [], [], []
    for sample in plan.samples:
        if sample.kind == "image":
            pixels, labels = source.image(sample.name)
            frames, label_maps, reference = pixels[None], labels[None], pixels
        else:
            frames, label_maps, reference = source.video_sample(sample.name, sample.frames, sample.reference)
        targets.append(np.stack([fit_reference(x, width, height, mode) for x in frames]))
        poses.append(np.stack([fit_labels(x, width, height, mode) for x in label_maps]))
        references.append(fit_reference(reference, width, height, mode))
    return RawBatch(*(torch.from_numpy(np.stack(x)) for x in (targets, poses, references)))


def _pixels(x: torch.Tensor) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float32 (..., 3, H, W) in [-1, 1], as the engine encodes its reference."""
    return x.movedim(-1, -3).to(torch.float32) / 127.5 - 1.0


def _pose(x: torch.Tensor) -> torch.Tensor:
    """uint8 renders -> float32 (..., 3, H, W) in [0, 1], as the engine's control_tensor."""
    return x.movedim(-1, -3).to(torch.float32) / 255.0
