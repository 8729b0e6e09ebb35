"""MagicAnimate's denoising UNet: SD 1.5's UNet inflated to video, with motion modules.

Spatial layers come from diffusers (Transformer2DModel, Downsample2D, Upsample2D, the timestep embedding) and
keep SD 1.5's state-dict keys, so the SD 1.5 `unet/` checkpoint and `temporal_attention.ckpt` load with no
renaming. The ResNet blocks are ours because the official ones normalise across all frames of a window (a
GroupNorm over the 5-D tensor), which diffusers' image and motion UNets do not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.downsampling import Downsample2D
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from diffusers.models.upsampling import Upsample2D
from torch import nn

from .attention import SharedContextProcessor
from .layers import GroupNorm, fold_frames, unfold_frames
from .motion_module import MotionModule


@dataclass(frozen=True)
class TemporalUNetConfig:
    """SD 1.5's `unet/config.json` plus the motion-module settings of MagicAnimate's inference.yaml."""

    in_channels: int = 4
    out_channels: int = 4
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    down_block_types: tuple[str, ...] = ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",)
    up_block_types: tuple[str, ...] = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3
    layers_per_block: int = 2
    attention_head_dim: tuple[int, ...] = (8, 8, 8, 8)
    cross_attention_dim: int = 768
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    flip_sin_to_cos: bool = True
    freq_shift: int = 0
    downsample_padding: int = 1
    mid_block_scale_factor: float = 1.0
    use_linear_projection: bool = False
    only_cross_attention: bool = False
    upcast_attention: bool = False
    motion_heads: int = 8
    motion_layers: int = 1
    motion_attention_blocks: int = 2
    motion_max_len: int = 24
    extra: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_dict(cls, data: dict) -> "TemporalUNetConfig":
        heads = data.get("num_attention_heads") or data.get("attention_head_dim", 8)
        blocks = tuple(data.get("block_out_channels", cls.block_out_channels))
        if isinstance(heads, int):
            heads = (heads,) * len(blocks)
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data and k not in ("attention_head_dim",)}
        for key in ("block_out_channels", "down_block_types", "up_block_types"):
            if key in known:
                known[key] = tuple(known[key])
        return cls(**{**known, "attention_head_dim": tuple(heads)})

    @classmethod
    def from_json(cls, path: Path) -> "TemporalUNetConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))


class ResnetBlock3D(nn.Module):
    """SD's ResNet block run on a window of frames, normalising over all of them together."""

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, groups: int, eps: float,
                 output_scale_factor: float = 1.0) -> None:
        super().__init__()
        self.norm1 = GroupNorm(groups, in_channels, eps=eps)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2 = GroupNorm(groups, out_channels, eps=eps)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None
        self.output_scale_factor = output_scale_factor

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        frames = x.shape[2]
        h = unfold_frames(self.conv1(fold_frames(F.silu(self.norm1(x)))), frames)
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None, None]
        h = unfold_frames(self.conv2(fold_frames(F.silu(self.norm2(h)))), frames)
        if self.conv_shortcut is not None:
            x = unfold_frames(self.conv_shortcut(fold_frames(x)), frames)
        return (x + h) / self.output_scale_factor


def _spatial_transformer(channels: int, heads: int, cfg: TemporalUNetConfig) -> Transformer2DModel:
    return Transformer2DModel(
        num_attention_heads=heads,
        attention_head_dim=channels // heads,
        in_channels=channels,
        num_layers=1,
        cross_attention_dim=cfg.cross_attention_dim,
        norm_num_groups=cfg.norm_num_groups,
        use_linear_projection=cfg.use_linear_projection,
        only_cross_attention=cfg.only_cross_attention,
        upcast_attention=cfg.upcast_attention,
    )


def _motion_module(channels: int, cfg: TemporalUNetConfig) -> MotionModule:
    return MotionModule(channels, cfg.motion_heads, cfg.motion_layers, cfg.motion_attention_blocks, cfg.motion_max_len)


def _spatial(transformer: Transformer2DModel, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """Run an image transformer on every frame; `context` has one row per video, shared by its frames."""
    frames = x.shape[2]
    out = transformer(fold_frames(x), encoder_hidden_states=context, return_dict=False)[0]
    return unfold_frames(out, frames)


def _repeat(x: torch.Tensor, copies: int) -> torch.Tensor:
    """`copies` copies of a batch along dim 0; a batch of one is only expanded (the consumer's cat copies it)."""
    if copies == 1:
        return x
    if x.shape[0] == 1:
        return x.expand(copies, *x.shape[1:])
    return x.repeat(copies, *([1] * (x.dim() - 1)))


def _per_frame(module: nn.Module, x: torch.Tensor, **kwargs) -> torch.Tensor:
    return unfold_frames(module(fold_frames(x), **kwargs), x.shape[2])


def _maybe_checkpointed(enabled: bool, function, *args):
    """`function(*args)`, with its activations recomputed in backward instead of kept when `enabled` (training's
    --gradient-checkpointing) and autograd is recording; the same arithmetic either way. Non-reentrant, so
    tensors that leave the segment by other ways (the reference bank) keep their gradients."""
    if enabled and torch.is_grad_enabled():
        from torch.utils.checkpoint import checkpoint

        return checkpoint(function, *args, use_reentrant=False)
    return function(*args)


class DownBlock3D(nn.Module):
    """resnet → (spatial transformer) → motion module, per layer; then an optional 2× downsample."""

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, heads: int, cross_attention: bool,
                 add_downsample: bool, cfg: TemporalUNetConfig) -> None:
        super().__init__()
        n = cfg.layers_per_block
        self.resnets = nn.ModuleList(
            ResnetBlock3D(in_channels if i == 0 else out_channels, out_channels, temb_channels,
                          cfg.norm_num_groups, cfg.norm_eps)
            for i in range(n)
        )
        self.attentions = (
            nn.ModuleList(_spatial_transformer(out_channels, heads, cfg) for _ in range(n)) if cross_attention else None
        )
        self.motion_modules = nn.ModuleList(_motion_module(out_channels, cfg) for _ in range(n))
        self.downsamplers = (
            nn.ModuleList([Downsample2D(out_channels, use_conv=True, out_channels=out_channels,
                                        padding=cfg.downsample_padding, name="op")])
            if add_downsample else None
        )

    gradient_checkpointing = False

    def forward(self, x: torch.Tensor, temb: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, list]:
        skips = []
        for i in range(len(self.resnets)):
            x = _maybe_checkpointed(self.gradient_checkpointing, self.layer, i, x, temb, context)
            skips.append(x)
        if self.downsamplers is not None:
            x = _per_frame(self.downsamplers[0], x)
            skips.append(x)
        return x, skips

    def layer(self, i: int, x: torch.Tensor, temb: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Layer i: resnet → (spatial transformer) → motion module."""
        x = self.resnets[i](x, temb)
        if self.attentions is not None:
            x = _spatial(self.attentions[i], x, context)
        return self.motion_modules[i](x)


class MidBlock3D(nn.Module):
    """resnet → spatial transformer → resnet (no motion module, as in MagicAnimate's config)."""

    def __init__(self, channels: int, temb_channels: int, heads: int, cfg: TemporalUNetConfig) -> None:
        super().__init__()
        scale = cfg.mid_block_scale_factor
        self.resnets = nn.ModuleList(
            ResnetBlock3D(channels, channels, temb_channels, cfg.norm_num_groups, cfg.norm_eps, scale)
            for _ in range(2)
        )
        self.attentions = nn.ModuleList([_spatial_transformer(channels, heads, cfg)])

    gradient_checkpointing = False

    def forward(self, x: torch.Tensor, temb: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.tail(self.head(x, temb), temb, context)

    def head(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        """The first ResNet: the last layer before the mid block's attention reads the reference bank."""
        return _maybe_checkpointed(self.gradient_checkpointing, self.resnets[0], x, temb)

    def tail(self, x: torch.Tensor, temb: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return _maybe_checkpointed(self.gradient_checkpointing, self._tail, x, temb, context)

    def _tail(self, x: torch.Tensor, temb: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = _spatial(self.attentions[0], x, context)
        return self.resnets[1](x, temb)


class UpBlock3D(nn.Module):
    """Concatenate a skip, resnet → (spatial transformer) → motion module, per layer; then a 2× upsample."""

    def __init__(self, in_channels: int, prev_channels: int, out_channels: int, temb_channels: int, heads: int,
                 cross_attention: bool, add_upsample: bool, cfg: TemporalUNetConfig) -> None:
        super().__init__()
        n = cfg.layers_per_block + 1
        self.resnets = nn.ModuleList(
            ResnetBlock3D(
                (prev_channels if i == 0 else out_channels) + (in_channels if i == n - 1 else out_channels),
                out_channels, temb_channels, cfg.norm_num_groups, cfg.norm_eps,
            )
            for i in range(n)
        )
        self.attentions = (
            nn.ModuleList(_spatial_transformer(out_channels, heads, cfg) for _ in range(n)) if cross_attention else None
        )
        self.motion_modules = nn.ModuleList(_motion_module(out_channels, cfg) for _ in range(n))
        self.upsamplers = (
            nn.ModuleList([Upsample2D(out_channels, use_conv=True, out_channels=out_channels)]) if add_upsample else None
        )

    gradient_checkpointing = False

    def forward(self, x: torch.Tensor, skips: list, temb: torch.Tensor, context: torch.Tensor,
                upsample_size: tuple[int, int] | None) -> torch.Tensor:
        for i in range(len(self.resnets)):
            x = _maybe_checkpointed(self.gradient_checkpointing, self.layer, i, x, skips.pop(), temb, context)
        if self.upsamplers is not None:
            x = _per_frame(self.upsamplers[0], x, output_size=upsample_size)
        return x

    def layer(self, i: int, x: torch.Tensor, skip: torch.Tensor, temb: torch.Tensor, context: torch.Tensor
              ) -> torch.Tensor:
        """Layer i: concatenate the skip, resnet → (spatial transformer) → motion module."""
        x = self.resnets[i](torch.cat([x, skip], dim=1), temb)
        if self.attentions is not None:
            x = _spatial(self.attentions[i], x, context)
        return self.motion_modules[i](x)


class TemporalUNet(nn.Module):
    """Predicts the noise of a window of video latents (b, 4, f, h, w)."""

    def __init__(self, cfg: TemporalUNetConfig) -> None:
        super().__init__()
        self.config = cfg
        ch = cfg.block_out_channels
        temb_channels = ch[0] * 4
        self.conv_in = nn.Conv2d(cfg.in_channels, ch[0], 3, padding=1)
        self.time_proj = Timesteps(ch[0], cfg.flip_sin_to_cos, cfg.freq_shift)
        self.time_embedding = TimestepEmbedding(ch[0], temb_channels)

        self.down_blocks = nn.ModuleList()
        for i, kind in enumerate(cfg.down_block_types):
            self.down_blocks.append(DownBlock3D(
                ch[i - 1] if i else ch[0], ch[i], temb_channels, cfg.attention_head_dim[i],
                "CrossAttn" in kind, i < len(ch) - 1, cfg,
            ))
        self.mid_block = MidBlock3D(ch[-1], temb_channels, cfg.attention_head_dim[-1], cfg)

        rev, rev_heads = list(reversed(ch)), list(reversed(cfg.attention_head_dim))
        self.up_blocks = nn.ModuleList()
        for i, kind in enumerate(cfg.up_block_types):
            self.up_blocks.append(UpBlock3D(
                rev[min(i + 1, len(ch) - 1)], rev[i - 1] if i else rev[0], rev[i], temb_channels, rev_heads[i],
                "CrossAttn" in kind, i < len(ch) - 1, cfg,
            ))
        self.conv_norm_out = GroupNorm(cfg.norm_num_groups, ch[0], eps=cfg.norm_eps)
        self.conv_out = nn.Conv2d(ch[0], cfg.out_channels, 3, padding=1)
        for module in self.modules():  # the text context is projected once per video, not once per frame
            if isinstance(module, BasicTransformerBlock) and module.attn2 is not None:
                module.attn2.set_processor(SharedContextProcessor())

    @property
    def dtype(self) -> torch.dtype:
        return self.conv_in.weight.dtype

    def enable_gradient_checkpointing(self, enabled: bool = True) -> None:
        """Training: recompute each layer's activations (ResNet, spatial transformer, motion module) in backward
        instead of keeping them. Inference (no autograd) is unaffected either way."""
        for block in [*self.down_blocks, self.mid_block, *self.up_blocks]:
            block.gradient_checkpointing = enabled

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        down_block_additional_residuals: list[torch.Tensor] | None = None,
        mid_block_additional_residual: torch.Tensor | None = None,
        copies: int = 1,
    ) -> torch.Tensor:
        """Noise prediction for `sample` (b, 4, f, h, w); returns (b·copies, 4, f, h, w).

        `copies` > 1 says the batch stands for that many guidance copies that are identical until the first
        layer that reads the reference bank (MagicAnimate's two CFG halves share latents, the empty prompt and the
        ControlNet residuals; only their reference attention differs). The prefix then runs once and its
        activations are repeated, which is the same arithmetic as running every copy.
        """
        prefix = self.prefix(sample, timestep, encoder_hidden_states, down_block_additional_residuals)
        return self.suffix(prefix.repeat(copies), mid_block_additional_residual)

    def prefix(self, sample: torch.Tensor, timestep: torch.Tensor | float | int, encoder_hidden_states: torch.Tensor,
               down_block_additional_residuals: list[torch.Tensor] | None = None) -> "UNetPrefix":
        """Everything before the first reference read: conv_in, the time embedding, the down blocks with their
        motion modules and ControlNet residuals, and the mid block's first ResNet."""
        b, _, _, h, w = sample.shape
        t = torch.as_tensor(timestep, device=sample.device).reshape(-1).expand(b)
        temb = self.time_embedding(self.time_proj(t).to(self.dtype))
        context = encoder_hidden_states  # one row per video: SharedContextProcessor serves every frame from it

        x = _per_frame(self.conv_in, sample)
        skips: list[torch.Tensor] = [x]
        for block in self.down_blocks:
            x, block_skips = block(x, temb, context)
            skips.extend(block_skips)
        if down_block_additional_residuals is not None:
            skips = [s + r for s, r in zip(skips, down_block_additional_residuals, strict=True)]
        return UNetPrefix(self.mid_block.head(x, temb), skips, temb, context, (h, w))

    def suffix(self, prefix: "UNetPrefix", mid_block_additional_residual: torch.Tensor | None = None) -> torch.Tensor:
        """The rest of the UNet, from the mid block's attention (the first reference read) to conv_out."""
        x, skips, temb, context = prefix.x, list(prefix.skips), prefix.temb, prefix.context
        x = self.mid_block.tail(x, temb, context)
        if mid_block_additional_residual is not None:
            x = x + _repeat(mid_block_additional_residual, x.shape[0] // mid_block_additional_residual.shape[0])

        # Odd latent sizes: each upsample must land exactly on the size of the skip it meets next.
        h, w = prefix.latent_size
        factor = 2 ** (len(self.up_blocks) - 1)
        forward_size = h % factor != 0 or w % factor != 0
        for block in self.up_blocks:
            block_skips = skips[-len(block.resnets):]
            skips = skips[: -len(block.resnets)]
            size = tuple(skips[-1].shape[-2:]) if (forward_size and skips) else None
            x = block(x, block_skips, temb, context, size)

        x = F.silu(self.conv_norm_out(x))
        return _per_frame(self.conv_out, x)


@dataclass
class UNetPrefix:
    """The UNet's activations at the fork: what every guidance copy's suffix starts from."""

    x: torch.Tensor  # (b, c, f, h', w') output of the mid block's first ResNet
    skips: list[torch.Tensor]  # down-path skips with the ControlNet residuals added
    temb: torch.Tensor  # (b, c') time embedding
    context: torch.Tensor  # (b, 77, c'') text context, one row per video
    latent_size: tuple[int, int]

    def repeat(self, copies: int) -> "UNetPrefix":
        """`copies` copies along the batch (copy-major), for suffixes that run the copies together."""
        if copies == 1:
            return self
        # x is materialised (the mid block's attention reads it per copy); skips are only expanded where
        # possible, since the up blocks' concatenation copies them anyway.
        return UNetPrefix(self.x.repeat(copies, 1, 1, 1, 1), [_repeat(s, copies) for s in self.skips],
                          self.temb.repeat(copies, 1), self.context.repeat(copies, 1, 1), self.latent_size)
