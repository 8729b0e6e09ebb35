"""A tiny random-weight model in the official on-disk layout, for demos and smoke tests.

It has SD 1.5's structure at toy widths (every block 32 channels), so the real loading code, the real model
classes and the real sampler run end to end in seconds on a CPU with nothing downloaded. Seeded: the same
seed writes the same bytes. Its output is not a picture of anything — it exercises the machinery.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from ..engine.loader import MA_DIR, SD_DIR, VAE_DIR
from ..engine.models import sd15
from . import released

WIDTHS = [32, 32, 32, 32]

# SD 1.5's structure with every block 32 channels wide (the parity bundle's shapes).
UNET_CONFIG = {**sd15.UNET, "block_out_channels": WIDTHS, "cross_attention_dim": 32, "sample_size": 16}
CONTROLNET_CONFIG = {**sd15.CONTROLNET, "block_out_channels": WIDTHS, "cross_attention_dim": 32,
                     "conditioning_embedding_out_channels": [16, 16, 32, 32]}
VAE_CONFIG = {**sd15.VAE, "block_out_channels": WIDTHS, "layers_per_block": 1, "sample_size": 128}
TEXT_CONFIG = {**sd15.TEXT_ENCODER, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
               "num_attention_heads": 4, "vocab_size": 514, "bos_token_id": 512, "eos_token_id": 513,
               "pad_token_id": 513}


def randomise(model: nn.Module, seed: int) -> None:
    """Redraw every parameter: fan-in scaled normals for weights, small biases, norm scales near 1.

    Unlike a training init nothing is zero (zero-initialised ControlNet and motion-module outputs would make
    those paths invisible), so every path of the network visibly affects the output.
    """
    generator = torch.Generator("cpu").manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if name.endswith("bias"):
                param.copy_(0.05 * noise)
            elif param.ndim == 1:  # norm scales
                param.copy_(1.0 + 0.1 * noise)
            else:
                fan_in = param[0].numel()
                param.copy_(noise / fan_in**0.5)


def _byte_vocab() -> dict[str, int]:
    """A valid byte-level BPE vocabulary: 256 symbols, the same with `</w>`, then the two specials."""
    symbols = [chr(c) for c in range(33, 127)] + [chr(c) for c in range(161, 173)] + [chr(c) for c in range(174, 256)]
    extra = 0
    while len(symbols) < 256:
        symbols.append(chr(256 + extra))
        extra += 1
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab.update({f"{s}</w>": 256 + i for i, s in enumerate(symbols)})
    vocab["<|startoftext|>"] = 512
    vocab["<|endoftext|>"] = 513
    return vocab


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def _save(model: nn.Module, path: Path, keep=lambda key: True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items() if keep(k)}, str(path))


def build_tiny_weights(root: str | Path, seed: int = 0) -> Path:
    """Write a complete tiny weights directory under `root` and return it."""
    from diffusers import AutoencoderKL, ControlNetModel

    from ..engine.models.appearance_encoder import build_appearance_encoder
    from ..engine.models.clip_text import CLIPTextConfig, CLIPTextEncoder
    from ..engine.models.unet3d import TemporalUNet, TemporalUNetConfig

    root = Path(root)
    sd, ma = root / SD_DIR, root / MA_DIR

    for name, contents in released.FILES.items():  # the release's own files where no shape depends on them
        (sd / name).parent.mkdir(parents=True, exist_ok=True)
        (sd / name).write_text(released.file_text(contents))
    _write_json(sd / "tokenizer" / "vocab.json", _byte_vocab())
    (sd / "tokenizer" / "merges.txt").write_text("#version: 0.2\n")

    text = CLIPTextEncoder(CLIPTextConfig.from_dict(TEXT_CONFIG))
    randomise(text, seed + 600)
    _write_json(sd / "text_encoder" / "config.json", TEXT_CONFIG)
    _save(text, sd / "text_encoder" / "model.safetensors")

    unet = TemporalUNet(TemporalUNetConfig.from_dict(UNET_CONFIG))
    randomise(unet, seed + 100)
    _write_json(sd / "unet" / "config.json", UNET_CONFIG)
    _save(unet, sd / "unet" / "diffusion_pytorch_model.safetensors", lambda k: ".motion_modules." not in k)
    motion = {k: v.contiguous() for k, v in unet.state_dict().items() if ".motion_modules." in k}
    # The pos_encoder tables are fixed sinusoids in the release; keep them so.
    motion.update({k: v for k, v in TemporalUNet(TemporalUNetConfig.from_dict(UNET_CONFIG)).state_dict().items()
                   if k.endswith("pos_encoder.pe")})
    (ma / "temporal_attention").mkdir(parents=True, exist_ok=True)
    torch.save(motion, ma / "temporal_attention" / "temporal_attention.ckpt")

    appearance = build_appearance_encoder(UNET_CONFIG)
    randomise(appearance, seed + 300)
    _write_json(ma / "appearance_encoder" / "config.json", {**UNET_CONFIG, "_class_name": "AppearanceEncoderModel"})
    _save(appearance, ma / "appearance_encoder" / "diffusion_pytorch_model.safetensors")

    controlnet = ControlNetModel.from_config(CONTROLNET_CONFIG)
    randomise(controlnet, seed + 400)
    with torch.no_grad():  # make the pose signal strong enough to see in a toy model
        controlnet.controlnet_cond_embedding.conv_out.weight.mul_(16.0)
    _write_json(ma / "densepose_controlnet" / "config.json", CONTROLNET_CONFIG)
    _save(controlnet, ma / "densepose_controlnet" / "diffusion_pytorch_model.safetensors")

    vae = AutoencoderKL.from_config(VAE_CONFIG)
    randomise(vae, seed + 500)
    with torch.no_grad():  # keep decoded pixels in range
        vae.decoder.conv_out.weight.mul_(0.5)
    _write_json(root / VAE_DIR / "config.json", VAE_CONFIG)
    _save(vae, root / VAE_DIR / "diffusion_pytorch_model.safetensors")
    return root
