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


class GroupNorm(nn.GroupNorm):
    """GroupNorm whose statistics are always taken in float32.

    Given a 5-D (b, c, f, h, w) tensor it normalises over (c/g, f, h, w) — across all frames of the
    window — which is what the official ResNet blocks, mid block and `conv_norm_out` do. Low-precision
    inputs are upcast so fp16/bf16 runs keep the same statistics as fp32 ones.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype in (torch.float32, torch.float64):
            return super().forward(x)
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.group_norm(x.float(), self.num_groups, weight, bias, self.eps).to(x.dtype)


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 for low-precision inputs (see GroupNorm)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype in (torch.float32, torch.float64):
            return super().forward(x)
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).to(x.dtype)
