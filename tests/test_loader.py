"""Loading a weights directory in the official layout: formats accepted, and errors that name the file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from magicanimate_cli.errors import WeightsError
from magicanimate_cli.engine.loader import (
    WeightsLayout,
    check_weights,
    checkpoint_covers_unet,
    load_components,
    read_state_dict,
)


@pytest.fixture
def bundle(tmp_path: Path, tiny_bundle: Path) -> WeightsLayout:
    """A private, writable copy of the tiny bundle."""
    root = tmp_path / "weights"
    shutil.copytree(tiny_bundle, root)
    return WeightsLayout(root)


def _unet_state(layout: WeightsLayout) -> dict[str, torch.Tensor]:
    return load_components(layout.root).unet.state_dict()


def test_missing_file_names_the_path_and_the_download_command(bundle):
    target = bundle.controlnet / "diffusion_pytorch_model.safetensors"
    target.unlink()
    with pytest.raises(WeightsError) as err:
        load_components(bundle.root)
    message = str(err.value)
    assert str(target) in message and "magicanimate download-weights" in message
    assert "\n" not in message


def test_truncated_safetensors_file_is_an_error_naming_it(bundle):
    target = bundle.appearance_encoder / "diffusion_pytorch_model.safetensors"
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError) as err:
        load_components(bundle.root)
    assert str(target) in str(err.value) and "\n" not in str(err.value)
    assert any(str(target) in p for p in check_weights(bundle.root))


def test_checkpoint_with_a_wrong_shape_is_an_error_naming_file_and_key(bundle):
    ckpt = bundle.temporal_checkpoint
    state = torch.load(ckpt, weights_only=True)
    key = next(k for k in state if k.endswith("proj_in.weight"))
    state[key] = torch.zeros(3, 3)
    torch.save(state, ckpt)
    with pytest.raises(WeightsError) as err:
        load_components(bundle.root)
    assert str(ckpt) in str(err.value) and key in str(err.value)
    assert any(key in p for p in check_weights(bundle.root))


def test_unexpected_checkpoint_key_is_not_dropped_silently(bundle):
    ckpt = bundle.temporal_checkpoint
    state = torch.load(ckpt, weights_only=True)
    state["down_blocks.0.motion_modules.9.stray.weight"] = torch.zeros(1)
    torch.save(state, ckpt)
    with pytest.raises(WeightsError, match="unexpected keys: down_blocks.0.motion_modules.9.stray.weight"):
        load_components(bundle.root)


def test_checkpoint_missing_motion_keys_leaves_unet_keys_unset(bundle):
    ckpt = bundle.temporal_checkpoint
    state = torch.load(ckpt, weights_only=True)
    dropped = sorted(state)[0]
    del state[dropped]
    torch.save(state, ckpt)
    with pytest.raises(WeightsError, match="UNet keys missing"):
        load_components(bundle.root)


def test_complete_bundle_checks_clean(tiny_bundle):
    assert check_weights(tiny_bundle) == []


def test_pickled_unet_is_used_when_it_is_the_only_file(bundle, tiny_bundle):
    reference = _unet_state(WeightsLayout(tiny_bundle))
    (bundle.unet / "diffusion_pytorch_model.safetensors").unlink()
    loaded = _unet_state(bundle)
    assert all(torch.equal(loaded[k], reference[k]) for k in reference)


def test_fp16_variant_files_load(bundle):
    folder = bundle.controlnet
    state = load_file(folder / "diffusion_pytorch_model.safetensors")
    save_file({k: v.half() for k, v in state.items()}, folder / "diffusion_pytorch_model.fp16.safetensors")
    (folder / "diffusion_pytorch_model.safetensors").unlink()
    controlnet = load_components(bundle.root).controlnet.state_dict()
    assert controlnet.keys() == state.keys()
    assert all(torch.equal(controlnet[k], state[k].half().float()) for k in state)


def test_checkpoint_wrapped_in_state_dict_with_prefixes_loads(bundle, tiny_bundle):
    reference = _unet_state(WeightsLayout(tiny_bundle))
    ckpt = bundle.temporal_checkpoint
    state = torch.load(ckpt, weights_only=True)
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "global_step": 1000}, ckpt)
    loaded = _unet_state(bundle)
    assert all(torch.equal(loaded[k], reference[k]) for k in reference)


def test_full_unet_checkpoint_overrides_sd15_spatial_weights(bundle):
    """The released checkpoint carries the whole temporal UNet; its spatial weights win over SD 1.5's."""
    spatial = load_file(bundle.unet / "diffusion_pytorch_model.safetensors")
    motion = torch.load(bundle.temporal_checkpoint, weights_only=True)
    changed = {k: v + 1.0 for k, v in spatial.items()}
    torch.save({**changed, **motion}, bundle.temporal_checkpoint)
    assert checkpoint_covers_unet(bundle.root)
    loaded = _unet_state(bundle)
    assert all(torch.equal(loaded[k], changed[k]) for k in spatial)
    assert all(torch.equal(loaded[k], motion[k]) for k in motion)
    # ... and the SD 1.5 unet weights are then not needed at all.
    for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"):
        (bundle.unet / name).unlink()
    assert check_weights(bundle.root) == []
    reloaded = _unet_state(bundle)
    assert all(torch.equal(reloaded[k], changed[k]) for k in spatial)


def test_motion_only_checkpoint_needs_the_sd15_unet(bundle):
    assert not checkpoint_covers_unet(bundle.root)
    for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"):
        (bundle.unet / name).unlink()
    with pytest.raises(WeightsError, match="download-weights"):
        load_components(bundle.root)


def test_checkpoint_is_memory_mapped_not_read_into_ram(tiny_bundle):
    path = WeightsLayout(tiny_bundle).temporal_checkpoint
    state = read_state_dict(path)
    maps = Path("/proc/self/maps").read_text()
    assert str(path.resolve()) in maps
    assert len(state) == 560


def test_flat_checkpoint_with_a_global_step_entry_loads(bundle, tiny_bundle):
    reference = _unet_state(WeightsLayout(tiny_bundle))
    ckpt = bundle.temporal_checkpoint
    state = torch.load(ckpt, weights_only=True)
    torch.save({**{f"unet.{k}": v for k, v in state.items()}, "global_step": 1000}, ckpt)
    loaded = _unet_state(bundle)
    assert all(torch.equal(loaded[k], reference[k]) for k in reference)
