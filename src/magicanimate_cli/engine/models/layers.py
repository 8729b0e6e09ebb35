"""Small building blocks shared by the video models: frame-folding and precision-safe normalisation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def fold_frames(x: torch.Tensor) -> torch.Tensor:
    """(b, c, f, h, w) -> (b·f, c, h, w): lets image layers run on every frame at once."""
    b, c, f, h, w = x.shape
    return x.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)


def unfold_frames(x: torch.Tensor, frames: int) -> torch.Tensor:
    """(b·f, c, h, w) -> (b, c, f, h, w), the inverse of `fold_frames`."""
    bf, c, h, w = x.shape
    return x.reshape(bf // frames, frames, c, h, w).permute(0, 2, 1, 3, 4)


def _float32(x: torch.Tensor, norm, weight: torch.Tensor | None, bias: torch.Tensor | None) -> torch.Tensor:
    """Apply `norm(x, weight, bias)` in float32 and return the input's dtype."""
    as_float = (lambda t: None if t is None else t.float())
    return norm(x.float(), as_float(weight), as_float(bias)).to(x.dtype)


class GroupNorm(nn.GroupNorm):
    """GroupNorm whose statistics are always taken in float32.

    Given a 5-D (b, c, f, h, w) tensor it normalises over (c/g, f, h, w) — across all frames of the
    window — which is what the official ResNet blocks, mid block and `conv_norm_out` do. Low-precision
    inputs are upcast so fp16/bf16 runs keep the same statistics as fp32 ones.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype in (torch.float32, torch.float64):
            return super().forward(x)
        return _float32(x, lambda v, w, b: F.group_norm(v, self.num_groups, w, b, self.eps), self.weight, self.bias)


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 for low-precision inputs (see GroupNorm)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype in (torch.float32, torch.float64):
            return super().forward(x)
        return _float32(x, lambda v, w, b: F.layer_norm(v, self.normalized_shape, w, b, self.eps), self.weight,
                        self.bias)
