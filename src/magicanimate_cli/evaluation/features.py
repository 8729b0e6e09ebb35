"""Streaming feature extraction for the distribution metrics (FID over frames, FID-VID/FVD over clips).

Each extractor owns one side's running statistics, so features never accumulate in memory. By default clips
are consecutive, non-overlapping 16-frame windows of one video; a shorter last window is completed
by repeating its last frame, as DisCo's FID-VID loader does. ClipFeatures' `sampling` offers DisCo's other
definitions (one sample per whole video; sliding windows).
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


SAMPLINGS = ("clips", "video-mean", "video-whole", "sliding")
"""How a video becomes samples of a video network (see ClipFeatures)."""


class ClipFeatures:
    """FID-VID / FVD: features of 16-frame clips, resized per frame as they arrive.

    `sampling` says what one sample of the distribution is:
      * `clips`: each consecutive, non-overlapping 16-frame clip of a video (a shorter last one completed with
        copies of its last frame);
      * `video-mean`: one per video, the mean of its `clips` features (DisCo's FID-VID on video files:
        DatasetFVDVideoResize in tool/metrics/utils.py cuts padded 16-frame segments and
        compute_3d_video_prediction in tool/metrics/metric_center.py averages their features);
      * `video-whole`: one per video, the network run on all its frames as one clip (DisCo's FVD on video files:
        DatasetFVDVideoResize passes the whole video to the I3D); memory grows with the video's length;
      * `sliding`: every window of 16 consecutive frames, stride 1, no padding (DisCo's newer frame-folder path,
        DatasetFVDVideoFromFramesResize); a video shorter than 16 frames gives none.
    """

    def __init__(self, network: nn.Module, dim: int, device: torch.device, side: int,
                 normalise: Callable[[np.ndarray], np.ndarray], clip_length: int, clips_per_batch: int,
                 sampling: str = "clips") -> None:
        if sampling not in SAMPLINGS:
            raise ValueError(f"unknown sampling {sampling!r}; one of {', '.join(SAMPLINGS)}")
        self.network, self.device, self.side = network, device, side
        self.normalise, self.clip_length, self.clips_per_batch = normalise, clip_length, clips_per_batch
        self.sampling = sampling
        self.stats = FeatureStatistics(dim)
        self._frames: list[np.ndarray] = []
        self._clips: list[np.ndarray] = []
        self._video_features: list[np.ndarray] = []

    def push(self, frames: np.ndarray) -> None:
        for frame in resize_bicubic_float(frames, self.side):
            self._frames.append(frame)
            if self.sampling == "sliding" and len(self._frames) > self.clip_length:
                self._frames.pop(0)
            if len(self._frames) == self.clip_length and self.sampling != "video-whole":
                self._close_clip()

    def end_video(self) -> None:
        """Finish the video's samples; clips never span videos."""
        if self.sampling == "sliding":
            self._frames = []
            return
        if self.sampling == "video-whole":
            if self._frames:
                self._clips.append(np.stack(self._frames))
                self._frames = []
                self._run()
            return
        if self._frames:  # a partial last clip, completed with copies of its last frame
            self._frames += [self._frames[-1]] * (self.clip_length - len(self._frames))
            self._close_clip()
        if self.sampling == "video-mean":
            self._run()
            if self._video_features:
                self.stats.add(np.concatenate(self._video_features).mean(axis=0, keepdims=True))
            self._video_features = []

    def finish(self) -> None:
        self._run()

    def _close_clip(self) -> None:
        self._clips.append(np.stack(self._frames))
        if self.sampling != "sliding":
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
            features = self.network(x).cpu().double().numpy()
        if self.sampling == "video-mean":
            self._video_features.append(features)
        else:
            self.stats.add(features)
