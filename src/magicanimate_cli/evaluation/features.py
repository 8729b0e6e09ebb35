"""Streaming feature extraction for the distribution metrics (FID over frames, FID-VID/FVD over clips).

Each extractor owns one side's running statistics, so features never accumulate in memory. Clips
are consecutive, non-overlapping 16-frame windows of one video; a shorter last window is completed
by repeating its last frame, as DisCo's FID-VID loader does.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from .frechet import FeatureStatistics
from .resize import resize_bicubic_float


class FrameFeatures:
    """FID: InceptionV3 pool3 features of every frame, on [0, 1] RGB input."""

    def __init__(self, network: nn.Module, dim: int, device: torch.device) -> None:
        self.network, self.device = network, device
        self.stats = FeatureStatistics(dim)

    def push(self, frames: np.ndarray) -> None:
        """Features of a uint8 batch (N, H, W, 3)."""
        x = torch.from_numpy(frames).to(self.device).permute(0, 3, 1, 2).float() / 255.0
        with torch.no_grad():
            self.stats.add(self.network(x).cpu().double().numpy())

    def end_video(self) -> None:
        """Frames carry no state across videos."""

    def finish(self) -> None:
        """Nothing is pending: every batch is processed on arrival."""


class ClipFeatures:
    """FID-VID / FVD: features of 16-frame clips, resized per frame as they arrive."""

    def __init__(self, network: nn.Module, dim: int, device: torch.device, side: int,
                 normalise: Callable[[np.ndarray], np.ndarray], clip_length: int, clips_per_batch: int) -> None:
        self.network, self.device, self.side = network, device, side
        self.normalise, self.clip_length, self.clips_per_batch = normalise, clip_length, clips_per_batch
        self.stats = FeatureStatistics(dim)
        self._frames: list[np.ndarray] = []
        self._clips: list[np.ndarray] = []

    def push(self, frames: np.ndarray) -> None:
        for frame in resize_bicubic_float(frames, self.side):
            self._frames.append(frame)
            if len(self._frames) == self.clip_length:
                self._close_clip()

    def end_video(self) -> None:
        """Complete a partial last clip with copies of its last frame; clips never span videos."""
        if self._frames:
            self._frames += [self._frames[-1]] * (self.clip_length - len(self._frames))
            self._close_clip()

    def finish(self) -> None:
        self._run()

    def _close_clip(self) -> None:
        self._clips.append(np.stack(self._frames))
        self._frames = []
        if len(self._clips) >= self.clips_per_batch:
            self._run()

    def _run(self) -> None:
        if not self._clips:
            return
        clips = self.normalise(np.stack(self._clips))  # (N, T, H, W, 3)
        self._clips = []
        x = torch.from_numpy(np.ascontiguousarray(clips)).to(self.device).permute(0, 4, 1, 2, 3).float()
        with torch.no_grad():
            self.stats.add(self.network(x).cpu().double().numpy())
