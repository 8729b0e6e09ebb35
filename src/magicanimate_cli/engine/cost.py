"""What one denoising step costs in arithmetic, counted on the meta device (no weights, no memory, no GPU).

The sampler's work per step is: one appearance-encoder pass, one ControlNet pass per frame, one UNet call per
window (both guidance copies). For a long video a window starts every K − S frames, so each output frame pays
for (1 / (K − S)) of a window plus its own ControlNet pass. Counting runs the real modules on meta tensors under
`torch.utils.flop_counter`, so the figures follow the code (e.g. the shared UNet prefix) rather than a formula.
On the CPU the counter has no formula for the fused attention kernel; on meta tensors it sees the attention it
would run and counts it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .models.reference_attention import ReferenceBank, attach_reader, attach_writer, reference_blocks
from .sampler import SamplerConfig


@dataclass(frozen=True)
class StepCost:
    """FLOP of the parts of one denoising step."""

    unet_window: float  # one UNet call on a K-frame window, every guidance copy included
    controlnet_frame: float  # one frame through the ControlNet
    appearance_pass: float  # one appearance-encoder pass (once per step, whatever the length)
    context_frames: int
    context_overlap: int

    def per_window_step(self) -> float:
        """A window's UNet call plus the ControlNet passes of its K frames."""
        return self.unet_window + self.context_frames * self.controlnet_frame

    def per_output_frame(self) -> float:
        """FLOP per output frame and step of a long video (the appearance pass spreads to nothing)."""
        stride = self.context_frames - self.context_overlap
        return self.unet_window / stride + self.controlnet_frame


@dataclass(frozen=True)
class MetaModels:
    """The three networks that run every step, on the meta device (their configs decide the cost)."""

    unet: nn.Module
    controlnet: nn.Module
    appearance_encoder: nn.Module


def released_size_models(dtype: torch.dtype = torch.float16) -> MetaModels:
    """UNet, ControlNet and appearance encoder at Stable Diffusion 1.5's sizes, on the meta device."""
    from diffusers import ControlNetModel

    from .models import sd15
    from .models.appearance_encoder import build_appearance_encoder
    from .models.unet3d import TemporalUNet, TemporalUNetConfig

    with torch.device("meta"):
        unet = TemporalUNet(TemporalUNetConfig.from_dict(sd15.UNET))
        controlnet = ControlNetModel.from_config(sd15.CONTROLNET)
        appearance = build_appearance_encoder(sd15.UNET)
    return MetaModels(*(nn.Module.to(m, dtype=dtype).eval() for m in (unet, controlnet, appearance)))


def _flops(run) -> float:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        run()
    return float(counter.get_total_flops())


def count_step_cost(models: MetaModels, height: int, width: int, config: SamplerConfig) -> StepCost:
    """Count one step's parts for `height`×`width` frames with the sampler's own calls and settings."""
    meta = {"device": "meta", "dtype": next(models.unet.parameters()).dtype}
    k, h, w = config.context_frames, height // 8, width // 8
    copies = 2 if config.guided else 1
    batch = 1 if config.shared_prefix else copies
    text = torch.empty(1, 77, models.unet.config.cross_attention_dim, **meta)
    t = torch.tensor(500)
    bank = ReferenceBank(len(reference_blocks(models.unet)))
    attach_writer(models.appearance_encoder, bank)
    attach_reader(models.unet, bank)
    reference = torch.empty(1, 4, h, w, **meta)
    appearance = _flops(lambda: models.appearance_encoder(reference, t, encoder_hidden_states=text,
                                                          return_dict=False))
    bank.rows = "uncond+cond" if config.guided else "cond"
    frames = torch.empty(k, 4, h, w, **meta)
    image = torch.empty(k, 3, height, width, **meta)
    residuals: list = []
    controlnet = _flops(lambda: residuals.extend(models.controlnet(
        frames, t, encoder_hidden_states=text.expand(k, -1, -1), controlnet_cond=image, return_dict=False)))
    down, mid = residuals
    as_window = lambda r: r.reshape(1, k, *r.shape[1:]).transpose(1, 2).expand(batch, -1, -1, -1, -1)  # noqa: E731
    sample = torch.empty(batch, 4, k, h, w, **meta)
    unet = _flops(lambda: models.unet(sample, t, text.expand(batch, -1, -1),
                                      down_block_additional_residuals=[as_window(d) for d in down],
                                      mid_block_additional_residual=as_window(mid), copies=copies // batch))
    bank.clear()
    return StepCost(unet, controlnet / k, appearance, k, config.context_overlap)
