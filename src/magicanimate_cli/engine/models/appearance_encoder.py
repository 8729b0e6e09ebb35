"""The appearance encoder: SD's image UNet, of which MagicAnimate uses only the reference features.

It is a diffusers `UNet2DConditionModel` with the modules the released checkpoint does not carry taken out:
`conv_norm_out`/`conv_out` and, in the last transformer block of `up_blocks.3`, everything after `norm1`
(see `BankOnlyTransformerBlock`). What remains has exactly the 662 keys of the official class.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

from diffusers import UNet2DConditionModel
from torch import nn

from .reference_attention import BankOnlyTransformerBlock


def unet_config_kwargs(config: dict) -> dict:
    """Keep the keys `UNet2DConditionModel` understands (the release names its own class in `_class_name`)."""
    accepted = inspect.signature(UNet2DConditionModel.__init__).parameters
    return {k: v for k, v in config.items() if k in accepted and not k.startswith("_")}


def build_appearance_encoder(config: dict | Path) -> UNet2DConditionModel:
    if not isinstance(config, dict):
        config = json.loads(Path(config).read_text())
    model = UNet2DConditionModel(**unet_config_kwargs(config))
    last = model.up_blocks[-1].attentions[-1]
    dim = last.transformer_blocks[0].norm1.normalized_shape[0]
    last.transformer_blocks[0] = BankOnlyTransformerBlock(dim)
    last.proj_out = nn.Identity()
    model.conv_norm_out = None
    model.conv_out = nn.Identity()
    return model
