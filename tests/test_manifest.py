"""Full-size (SD 1.5) models accept exactly the state-dict keys and shapes of the official release."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import ControlNetModel

from magicanimate_cli.engine.loader import fill, on_meta
from magicanimate_cli.engine.models import sd15
from magicanimate_cli.engine.models.appearance_encoder import build_appearance_encoder
from magicanimate_cli.engine.models.unet3d import TemporalUNet, TemporalUNetConfig

MANIFESTS = Path(__file__).parent / "data" / "parity" / "manifest"

SD15_UNET = sd15.UNET
SD15_CONTROLNET = sd15.CONTROLNET


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
    from magicanimate_cli.runtime.errors import WeightsError

    with pytest.raises(WeightsError, match="missing keys"):
        _load_meta(model, manifest, "controlnet")
