"""Random-weight MagicAnimate components at the released (SD 1.5) sizes, for speed and memory benchmarks.

The numbers a benchmark measures depend on shapes, not on weight values, so nothing needs downloading.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, ControlNetModel

from magicanimate_cli.engine.loader import Components
from magicanimate_cli.engine.models import sd15
from magicanimate_cli.engine.models.appearance_encoder import build_appearance_encoder
from magicanimate_cli.engine.models.clip_text import CLIPTextConfig, CLIPTextEncoder, EmptyPromptTokens
from magicanimate_cli.engine.models.unet3d import TemporalUNet, TemporalUNetConfig


def random_components(device: torch.device, dtype: torch.dtype, seed: int = 0) -> Components:
    torch.manual_seed(seed)

    def ready(model: torch.nn.Module) -> torch.nn.Module:
        return torch.nn.Module.to(model, dtype=dtype).eval().requires_grad_(False)

    with torch.device(device):
        unet = ready(TemporalUNet(TemporalUNetConfig.from_dict(sd15.UNET)))
        appearance = ready(build_appearance_encoder(sd15.UNET))
        controlnet = ready(ControlNetModel.from_config(sd15.CONTROLNET))
        vae = ready(AutoencoderKL.from_config(sd15.VAE))
        text = ready(CLIPTextEncoder(CLIPTextConfig.from_dict(sd15.TEXT_ENCODER)))
    return Components(unet, appearance, controlnet, vae, text, EmptyPromptTokens(49406, 49407, 49407, 77))


def add_model_arguments(parser) -> None:
    """The options every benchmark shares: which weights, where, in which precision, at which size."""
    from pathlib import Path

    parser.add_argument("--weights", type=Path, help="weights directory (official layout)")
    parser.add_argument("--full-size", action="store_true", help="random SD 1.5-size weights instead")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--context-frames", type=int, default=16)
    parser.add_argument("--context-overlap", type=int, default=4)
    parser.add_argument("--low-vram", action="store_true", help="as animate --low-vram")
    parser.add_argument("--compile", action="store_true", help="as animate --compile")


def animator_from_args(args):
    """An Animator on the chosen device: from a weights directory, or random at the released sizes."""
    from magicanimate_cli.engine.pipeline import Animator
    from magicanimate_cli.runtime.devices import resolve_device, resolve_dtype

    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    if args.full_size:
        animator = Animator(random_components(device, dtype), device, dtype, low_vram=args.low_vram)
    else:
        animator = Animator.from_pretrained(args.weights, device, dtype, low_vram=args.low_vram)
    if args.compile:
        animator.compile()
    return animator
