"""--cache-latents: each frame's VAE latent encoded once and reused for the rest of the run.

The VAE is frozen and frames are fitted to the training size the same way every time, so a frame's latent (the
mean × 0.18215) is a function of the video, the frame index and the size: computing it again when a later step
draws the same frame repeats work. The cache holds them in memory on the CPU (4 × H/8 × W/8 floats a frame:
64 KiB at 512²), at most `MAX_BYTES` per process: past it the least recently used latent is dropped and encoded
again when drawn, the same way, so the bound changes time, never a result (a resumed run starts with an empty
cache for the same reason). Frames are still read for their DensePose renders. The latents equal the uncached
ones up to float rounding (the VAE sees one frame at a time instead of the step's batch).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from .batches import Batch
from .model import encode_latents
from .sampling import StepPlan


MAX_BYTES = 4 * 2**30
"""A process's cache bound: 65,536 frames at 512² (a day of 30 fps video), a small share of a training host's
memory per GPU."""


class LatentCache:
    def __init__(self, vae: nn.Module, max_bytes: int = MAX_BYTES) -> None:
        self.vae, self.max_bytes, self.bytes = vae, max_bytes, 0
        self.latents: OrderedDict[tuple[str, int], torch.Tensor] = OrderedDict()

    def __len__(self) -> int:
        return len(self.latents)

    def frame(self, name: str, index: int, pixels: torch.Tensor) -> torch.Tensor:
        """The latent (4, h, w) of frame `index` of `name` (an image is its frame 0) from its (1, 3, H, W) pixels,
        on their device. The pixels are a slice of the batch, in the batch's memory layout: convolutions round
        differently on another layout."""
        key = (name, index)
        if key in self.latents:
            self.latents.move_to_end(key)
            return self.latents[key].to(pixels.device)
        latent = encode_latents(self.vae, pixels)[0]
        self._keep(key, latent.to("cpu"))
        return latent

    def _keep(self, key: tuple[str, int], latent: torch.Tensor) -> None:
        """Store a latent, dropping the least recently used ones beyond the bound."""
        size = _size(latent)
        while self.latents and self.bytes + size > self.max_bytes:
            self.bytes -= _size(self.latents.popitem(last=False)[1])
        if size <= self.max_bytes:
            self.latents[key] = latent
            self.bytes += size

    def batch(self, plan: StepPlan, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(b, 4, f, h, w) target latents and (b, 4, h, w) reference latents of a step's samples."""
        targets, references = [], []
        frames = batch.target.flatten(0, 1)
        for i, sample in enumerate(plan.samples):
            name, f = f"{sample.kind}:{sample.name}", len(sample.frames)
            targets.append(torch.stack([self.frame(name, index, frames[i * f + j:i * f + j + 1])
                                        for j, index in enumerate(sample.frames)], dim=1))
            references.append(self.frame(name, sample.reference, batch.reference[i:i + 1]))
        return torch.stack(targets), torch.stack(references)


def _size(latent: torch.Tensor) -> int:
    return latent.numel() * latent.element_size()
