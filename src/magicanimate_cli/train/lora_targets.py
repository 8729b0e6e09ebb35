"""Which layers `--lora RANK` adapts: the attention projections of the stage's trained modules.

Kept apart from `lora.py` (which needs peft) so that `--dry-run` can count adapter parameters without peft
installed: an adapter of rank r on a Linear(in, out) holds r·(in + out) weights (A: r×in, B: out×r).
"""

from __future__ import annotations

import re

from torch import nn

PROJECTIONS = r"(to_q|to_k|to_v|to_out\.0)"
STAGE_TARGETS = {
    # the appearance encoder's and ControlNet's self- and cross-attention
    1: re.compile(rf"^(appearance_encoder|controlnet)\..*\.attn[12]\.{PROJECTIONS}$"),
    # the motion modules' temporal attention
    2: re.compile(rf"^unet\..*\.motion_modules\..*\.attention_blocks\.\d+\.{PROJECTIONS}$"),
}


def lora_targets(model: nn.Module, stage: int) -> list[str]:
    """Names of the Linear layers that take an adapter in `stage`, in module order."""
    pattern = STAGE_TARGETS[stage]
    return [name for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and pattern.match(name)]


def adapter_parameters(model: nn.Module, stage: int, rank: int) -> dict[str, int]:
    """Target name -> the adapter's parameter count at `rank` (no adapter is built)."""
    modules = dict(model.named_modules())
    return {name: rank * (modules[name].in_features + modules[name].out_features)
            for name in lora_targets(model, stage)}
