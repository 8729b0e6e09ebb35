"""The export holds exactly the released files' keys and shapes (full size, built on the meta device)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import ControlNetModel, UNet2DConditionModel

from conftest import TINY_BUNDLE
from magicanimate_cli.engine.loader import on_meta
from magicanimate_cli.engine.models import sd15
from magicanimate_cli.engine.models.appearance_encoder import build_appearance_encoder, unet_config_kwargs
from magicanimate_cli.engine.models.unet3d import TemporalUNet, TemporalUNetConfig
from magicanimate_cli.train.export import export_states
from magicanimate_cli.train.model import (APPEARANCE_DIR, CONTROLNET_DIR, MOTION, TEMPORAL_FILE, TrainingModel,
                                          bypass_motion_modules)

MANIFESTS = Path(__file__).parent / "data" / "parity" / "manifest"


def _manifest(name: str) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v) for k, v in json.loads((MANIFESTS / f"{name}.json").read_text()).items()}


def _shapes(state: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


def _full_size_model(with_motion: bool) -> TrainingModel:
    """SD 1.5 sizes on the meta device; the ControlNet made the way a fresh stage 1 makes it (`from_unet`)."""
    def build() -> TrainingModel:
        unet = TemporalUNet(TemporalUNetConfig.from_dict(sd15.UNET))
        if not with_motion:
            bypass_motion_modules(unet)
        controlnet = ControlNetModel.from_unet(UNet2DConditionModel(**unet_config_kwargs(sd15.UNET)))
        return TrainingModel(unet, build_appearance_encoder(sd15.UNET), controlnet)

    return on_meta(build)


def test_stage2_export_has_the_released_keys_and_shapes():
    states = export_states(_full_size_model(with_motion=True), None)
    assert set(states) == {APPEARANCE_DIR, CONTROLNET_DIR, TEMPORAL_FILE}
    assert _shapes(states[APPEARANCE_DIR]) == _manifest("appearance_encoder")
    assert _shapes(states[CONTROLNET_DIR]) == _manifest("controlnet")
    assert _shapes(states[TEMPORAL_FILE]) == _manifest("unet3d_motion")


def test_stage1_export_carries_the_temporal_start_unchanged_and_nothing_without_one():
    model = _full_size_model(with_motion=False)
    motion = {k: torch.empty(s, device="meta") for k, s in _manifest("unet3d_motion").items()}
    states = export_states(model, motion)
    assert _shapes(states[TEMPORAL_FILE]) == _manifest("unet3d_motion")
    assert _shapes(states[CONTROLNET_DIR]) == _manifest("controlnet")
    assert TEMPORAL_FILE not in export_states(model, None)


def test_a_stage1_fine_tune_of_a_from_folder_carries_its_temporal_file_so_the_export_animates():
    """`train --stage 1 --from MagicAnimate/` without --motion-module: the folder's temporal file is the temporal
    start, exported unchanged; --motion-module takes its place."""
    from magicanimate_cli.engine.loader import read_checkpoint
    from magicanimate_cli.train.model import load_parts
    from train_fixtures import MA, TEMPORAL

    parts = load_parts(1, TINY_BUNDLE, MA)
    states = export_states(parts.model, parts.motion_state)
    want = {k: v for k, v in read_checkpoint(TEMPORAL).items() if MOTION in k}
    assert set(states[TEMPORAL_FILE]) == set(want)
    assert all(torch.equal(states[TEMPORAL_FILE][k], want[k]) for k in want)
    assert TEMPORAL in parts.sources
