"""Random-weight MagicAnimate components at the released (SD 1.5) sizes, for speed and memory benchmarks.

The numbers a benchmark measures depend on shapes, not on weight values, so nothing needs downloading.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, ControlNetModel

from magicanimate_cli.loader import Components
from magicanimate_cli.models.appearance_encoder import build_appearance_encoder
from magicanimate_cli.models.clip_text import CLIPTextConfig, CLIPTextEncoder, EmptyPromptTokens
from magicanimate_cli.models.unet3d import TemporalUNet, TemporalUNetConfig

SD15_UNET = {
    "attention_head_dim": 8, "block_out_channels": [320, 640, 1280, 1280], "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"], "in_channels": 4, "out_channels": 4,
    "layers_per_block": 2, "norm_num_groups": 32, "norm_eps": 1e-5, "sample_size": 64,
    "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
}
SD15_CONTROLNET = {"block_out_channels": [320, 640, 1280, 1280], "cross_attention_dim": 768,
                   "attention_head_dim": 8, "conditioning_embedding_out_channels": [16, 32, 96, 256]}
SD_VAE = {"block_out_channels": [128, 256, 512, 512], "layers_per_block": 2, "latent_channels": 4,
          "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
          "norm_num_groups": 32, "sample_size": 256}


def random_components(device: torch.device, dtype: torch.dtype, seed: int = 0) -> Components:
    torch.manual_seed(seed)

    def ready(model: torch.nn.Module) -> torch.nn.Module:
        return torch.nn.Module.to(model, dtype=dtype).eval().requires_grad_(False)

    with torch.device(device):
        unet = ready(TemporalUNet(TemporalUNetConfig.from_dict(SD15_UNET)))
        appearance = ready(build_appearance_encoder(SD15_UNET))
        controlnet = ready(ControlNetModel.from_config(SD15_CONTROLNET))
        vae = ready(AutoencoderKL.from_config(SD_VAE))
        text = ready(CLIPTextEncoder(CLIPTextConfig()))
    return Components(unet, appearance, controlnet, vae, text, EmptyPromptTokens(49406, 49407, 49407, 77))
