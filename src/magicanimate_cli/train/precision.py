"""Memory options of a run: frozen networks in half precision, and activations recomputed in backward.

With `--mixed-precision bf16|fp16` the networks that do not train (the VAE, the frozen parts of the model) hold
their weights in that type and the step runs under autocast; the trained weights, their gradients and AdamW's
moments stay float32 (accelerate's loss scaling guards fp16's gradients). The frozen tensors the export writes
(stage 2's encoder and ControlNet) are kept as they were loaded, so the export is never rounded.
"""

from __future__ import annotations

import torch
from torch import nn

from .model import TrainingParts, TrainingModel

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def apply_memory_options(parts: TrainingParts, precision: str, gradient_checkpointing: bool
                         ) -> dict[str, torch.Tensor]:
    """The run's memory options on its networks (after the trainable parameters are chosen: casting skips them);
    returns the frozen tensors as loaded, for the export (`cast_frozen`)."""
    originals = cast_frozen(parts, precision)
    if gradient_checkpointing:
        enable_gradient_checkpointing(parts.model)
    return originals


def cast_frozen(parts: TrainingParts, precision: str) -> dict[str, torch.Tensor]:
    """Cast every frozen parameter of the model, and the VAE, to `precision`'s type; returns the frozen tensors as
    they were (name -> float32 tensor on the CPU) for the export. "no" casts nothing."""
    dtype = DTYPES.get(precision)
    if dtype is None:
        return {}
    originals = {}
    for name, param in parts.model.named_parameters():
        if not param.requires_grad:
            originals[name] = param.data.to("cpu")
            param.data = param.data.to(dtype)
    nn.Module.to(parts.vae, dtype=dtype)  # the VAE is frozen whole (diffusers' own .to() warns about this)
    return originals


def enable_gradient_checkpointing(model: TrainingModel) -> None:
    """Recompute activations in backward instead of keeping them: the diffusers networks (appearance encoder,
    ControlNet) through their own switch, the engine's UNet (ResNets, transformers, motion modules) through its
    own. The numbers are those of the plain step; only memory and time change."""
    model.appearance_encoder.enable_gradient_checkpointing()
    model.controlnet.enable_gradient_checkpointing()
    model.unet.enable_gradient_checkpointing()
    model.keep_bank_for_backward(True)
