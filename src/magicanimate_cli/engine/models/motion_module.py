"""AnimateDiff-style motion module, as MagicAnimate's `temporal_attention.ckpt` stores it.

State-dict keys follow the official checkpoint (`temporal_transformer.transformer_blocks.0.attention_blocks.0.to_q`, ...)
so it loads without renaming. Two details differ from diffusers' `AnimateDiffTransformer3D` and matter for the numbers:
the input GroupNorm is taken per frame (diffusers takes it across frames), and the sinusoidal position table is a
persistent buffer of the checkpoint.
"""

from __future__ import annotations

import math

import torch
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from torch import nn

from .layers import GroupNorm, LayerNorm


class SinusoidalPositionalEncoding(nn.Module):
    """Adds the fixed sin/cos table of frame positions; `max_len` bounds the window length."""

    def __init__(self, dim: int, max_len: int = 24) -> None:
        super().__init__()
        position = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
        pe = torch.zeros(1, max_len, dim)
        pe[0, :, 0::2] = torch.sin(position * div_term)
        pe[0, :, 1::2] = torch.cos(position * div_term)
        self.register_buffer("pe", pe, persistent=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = x.shape[1]
        if frames > self.pe.shape[1]:
            raise ValueError(
                f"a window of {frames} frames exceeds the motion module's position table ({self.pe.shape[1]})"
            )
        return x + self.pe[:, :frames].to(x.dtype)


class TemporalSelfAttention(Attention):
    """Self-attention along the frame axis, for every spatial position separately.

    A diffusers `Attention` (so any attention processor applies) with the frame position encoding in front.
    """

    def __init__(self, dim: int, heads: int, max_len: int) -> None:
        super().__init__(query_dim=dim, heads=heads, dim_head=dim // heads, bias=False)
        self.pos_encoder = SinusoidalPositionalEncoding(dim, max_len)

    def forward(self, hidden_states: torch.Tensor, frames: int) -> torch.Tensor:  # type: ignore[override]
        bf, tokens, c = hidden_states.shape
        b = bf // frames
        # (b·f, hw, c) -> (b·hw, f, c): the sequence is now the frames of one pixel.
        x = hidden_states.reshape(b, frames, tokens, c).permute(0, 2, 1, 3).reshape(b * tokens, frames, c)
        x = super().forward(self.pos_encoder(x))
        return x.reshape(b, tokens, frames, c).permute(0, 2, 1, 3).reshape(bf, tokens, c)


class TemporalTransformerBlock(nn.Module):
    """Two temporal self-attentions and a GEGLU feed-forward, each pre-normed with a residual."""

    def __init__(self, dim: int, heads: int, attention_blocks: int, max_len: int) -> None:
        super().__init__()
        self.attention_blocks = nn.ModuleList(
            TemporalSelfAttention(dim, heads, max_len) for _ in range(attention_blocks)
        )
        self.norms = nn.ModuleList(LayerNorm(dim) for _ in range(attention_blocks))
        self.ff = FeedForward(dim, activation_fn="geglu")
        self.ff_norm = LayerNorm(dim)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        for attention, norm in zip(self.attention_blocks, self.norms):
            x = attention(norm(x), frames) + x
        return self.ff(self.ff_norm(x)) + x


class TemporalTransformer(nn.Module):
    def __init__(self, channels: int, heads: int, layers: int, attention_blocks: int, max_len: int,
                 norm_groups: int = 32) -> None:
        super().__init__()
        self.norm = GroupNorm(norm_groups, channels, eps=1e-6, affine=True)
        self.proj_in = nn.Linear(channels, channels)
        self.transformer_blocks = nn.ModuleList(
            TemporalTransformerBlock(channels, heads, attention_blocks, max_len) for _ in range(layers)
        )
        self.proj_out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (b, c, f, h, w) -> same shape."""
        b, c, f, h, w = x.shape
        folded = x.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
        # Per-frame GroupNorm (a 4-D input), unlike the ResNet blocks around it.
        hidden = self.norm(folded).permute(0, 2, 3, 1).reshape(b * f, h * w, c)
        hidden = self.proj_in(hidden)
        for block in self.transformer_blocks:
            hidden = block(hidden, f)
        hidden = self.proj_out(hidden)
        hidden = hidden.reshape(b * f, h, w, c).permute(0, 3, 1, 2) + folded
        return hidden.reshape(b, f, c, h, w).permute(0, 2, 1, 3, 4)


class MotionModule(nn.Module):
    """The `VanillaTemporalModule` wrapper: only its `temporal_transformer` holds weights."""

    def __init__(self, channels: int, heads: int = 8, layers: int = 1, attention_blocks: int = 2,
                 max_len: int = 24) -> None:
        super().__init__()
        self.temporal_transformer = TemporalTransformer(channels, heads, layers, attention_blocks, max_len)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.temporal_transformer(x)
