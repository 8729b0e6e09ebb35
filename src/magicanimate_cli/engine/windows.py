"""The window planner: which K-frame windows cover a video, and how their predictions are weighted.

MagicAnimate denoises a long video as overlapping windows of K frames. The official layout (the `uniform`
context scheduler at step 0, closed loop) starts a window every K − s frames and lets the last one wrap past
the end onto the first frames. `wrap=False` instead slides the last window back to end on the last frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class WindowPlan:
    frames: int
    context_frames: int
    overlap: int
    windows: tuple[tuple[int, ...], ...]

    def coverage(self) -> list[int]:
        """How many windows cover each frame."""
        counts = [0] * self.frames
        for window in self.windows:
            for f in window:
                counts[f] += 1
        return counts

    @property
    def frame_passes(self) -> int:
        """UNet frame-passes per step (each window costs K frames, twice over with guidance)."""
        return sum(len(w) for w in self.windows)


def validate_context(context_frames: int, overlap: int, max_frames: int | None = None) -> None:
    if context_frames < 1:
        raise ValueError(f"context frames must be at least 1 (got {context_frames})")
    if not 0 <= overlap < context_frames:
        raise ValueError(f"context overlap must be in [0, {context_frames}) (got {overlap})")
    if max_frames is not None and context_frames > max_frames:
        raise ValueError(
            f"context frames {context_frames} exceed the motion module's position table ({max_frames})"
        )


def plan_windows(frames: int, context_frames: int, overlap: int, wrap: bool = True) -> WindowPlan:
    """Windows over `frames` frames; every frame is covered and every window holds `context_frames` frames."""
    validate_context(context_frames, overlap)
    if frames <= context_frames:
        return WindowPlan(frames, context_frames, overlap, (tuple(range(frames)),))
    stride = context_frames - overlap
    if wrap:
        starts = range(0, frames, stride)
        windows = tuple(tuple((j + i) % frames for i in range(context_frames)) for j in starts)
    else:
        starts = list(range(0, frames - context_frames, stride)) + [frames - context_frames]
        windows = tuple(tuple(range(j, j + context_frames)) for j in starts)
    return WindowPlan(frames, context_frames, overlap, windows)


def padded_length(frames: int, context_frames: int) -> int:
    """Videos are padded (with their last frame) to a whole number of windows."""
    return -(-frames // context_frames) * context_frames


def window_weights(length: int, fusion: str = "mean") -> torch.Tensor:
    """Per-frame weights of one window's prediction when windows are fused.

    `mean` is the paper's plain average; `pyramid` trusts the middle of a window more than its edges, where
    the temporal context is one-sided.
    """
    import torch  # here, not at the top: planning windows (`fuse-long --plan`) must not import torch

    if fusion in ("mean", "none"):
        return torch.ones(length)
    if fusion == "pyramid":
        idx = torch.arange(length, dtype=torch.float32)
        return torch.minimum(idx + 1, length - idx) / ((length + 1) // 2)
    raise ValueError(f"unknown fusion {fusion!r} (mean, pyramid or none)")
