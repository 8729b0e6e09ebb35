"""Full-size (SD 1.5) models accept exactly the state-dict keys and shapes of the official release."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import ControlNetModel

from magicanimate_cli.loader import fill, on_meta
from magicanimate_cli.models.appearance_encoder import build_appearance_encoder
from magicanimate_cli.models.unet3d import TemporalUNet, TemporalUNetConfig

MANIFESTS = Path(__file__).parent / "data" / "parity" / "manifest"

SD15_UNET = {
    "_class_name": "UNet2DConditionModel",
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
}

SD15_CONTROLNET = {
    "block_out_channels": [320, 640, 1280, 1280],
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "layers_per_block": 2,
    "conditioning_embedding_out_channels": [16, 32, 96, 256],
    "controlnet_conditioning_channel_order": "rgb",
}


def _manifest(*names: str) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for name in names:
        out.update(json.loads((MANIFESTS / f"{name}.json").read_text()))
    return out


def _load_meta(model: torch.nn.Module, manifest: dict[str, list[int]], name: str) -> None:
    state = {k: torch.empty(shape, device="meta") for k, shape in manifest.items()}
    fill(model, state, Path(name))  # raises on any missing, unexpected or mis-shaped key
    assert set(model.state_dict()) == set(manifest)


@pytest.mark.parametrize("parts", [("unet3d_spatial", "unet3d_motion")])
def test_temporal_unet_takes_the_sd15_unet_plus_motion_module_keys(parts):
    manifest = _manifest(*parts)
    assert len(manifest) == 686 + 560
    model = on_meta(lambda: TemporalUNet(TemporalUNetConfig.from_dict(SD15_UNET)))
    _load_meta(model, manifest, "unet3d")


def test_appearance_encoder_takes_the_official_662_keys():
    manifest = _manifest("appearance_encoder")
    model = on_meta(lambda: build_appearance_encoder(SD15_UNET))
    _load_meta(model, manifest, "appearance_encoder")


def test_controlnet_takes_the_official_densepose_controlnet_keys():
    manifest = _manifest("controlnet")
    model = on_meta(lambda: ControlNetModel.from_config(SD15_CONTROLNET))
    _load_meta(model, manifest, "controlnet")


def test_a_missing_manifest_key_would_be_reported():
    manifest = _manifest("controlnet")
    manifest.pop(next(iter(manifest)))
    model = on_meta(lambda: ControlNetModel.from_config(SD15_CONTROLNET))
    from magicanimate_cli.errors import WeightsError

    with pytest.raises(WeightsError, match="missing keys"):
        _load_meta(model, manifest, "controlnet")
