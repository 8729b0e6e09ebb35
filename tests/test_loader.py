"""Loading a weights directory in the official layout: formats accepted, and errors that name the file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from conftest import load_case
from safetensors.torch import load_file, save_file

from magicanimate_cli.engine.loader import (WeightsLayout, check_weights, checkpoint_covers_unet, load_components,
                                            read_state_dict)
from magicanimate_cli.runtime.errors import WeightsError


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
    with pytest.raises(WeightsError, match="motion-module keys match no UNet key.*: "
                                           "down_blocks.0.motion_modules.9.stray.weight") as err:
        load_components(bundle.root)
    assert str(ckpt) in str(err.value) and "\n" not in str(err.value)
    assert any("down_blocks.0.motion_modules.9.stray.weight" in p for p in check_weights(bundle.root))


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


# ------------------------------------------------------------------------- the official rule for temporal checkpoints
# MagicAnimate's loader (magicanimate/pipelines/animation.py; demo/animate.py alike) strips `module.` and loads the
# checkpoint with load_state_dict(strict=False); if anything is then unexpected it loads again only the entries
# whose name contains `motion_modules`, `unet.` stripped. `official_rule` replays those steps with torch's own
# load_state_dict on a real UNet, so the side effects of the first, failed load are torch's, not ours.


def official_rule(layout: WeightsLayout, entries: dict) -> dict[str, torch.Tensor]:
    """The UNet state the official steps produce: SD 1.5's unet, then the checkpoint loaded as the official code does."""
    import json
    from collections import OrderedDict

    from magicanimate_cli.engine.models.unet3d import TemporalUNet, TemporalUNetConfig

    unet = TemporalUNet(TemporalUNetConfig.from_dict(json.loads((layout.unet / "config.json").read_text())))
    unet.load_state_dict(load_file(layout.unet / "diffusion_pytorch_model.safetensors"), strict=False)
    named = OrderedDict((k.split("module.")[-1] if k.startswith("module.") else k, v) for k, v in entries.items())
    try:
        assert not unet.load_state_dict(named, strict=False).unexpected_keys
    except (AssertionError, RuntimeError):
        motion = OrderedDict((k.split("unet.")[-1] if k.startswith("unet.") else k, v)
                             for k, v in named.items() if "motion_modules" in k)
        assert not unet.load_state_dict(motion, strict=False).unexpected_keys
    return unet.state_dict()


@pytest.fixture(scope="module")
def released(tiny_bundle) -> tuple[dict, dict, dict]:
    """(motion modules as released, SD 1.5's spatial weights, spatial weights that differ from SD 1.5's)."""
    layout = WeightsLayout(tiny_bundle)
    motion = torch.load(layout.temporal_checkpoint, weights_only=True)
    spatial = load_file(layout.unet / "diffusion_pytorch_model.safetensors")
    changed = {k: v * 1.5 + 0.01 for k, v in spatial.items()}
    return motion, spatial, changed


def _with_checkpoint(root: Path, tiny_bundle: Path, entries: dict) -> WeightsLayout:
    shutil.copytree(tiny_bundle, root)
    layout = WeightsLayout(root)
    torch.save(entries, layout.temporal_checkpoint)
    return layout


def _equal_states(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _animate(animator) -> torch.Tensor:
    case = load_case("public_b")
    return animator(case.array("reference_image"), case.array("control_frames")[:16], steps=2, seed=3,
                    context_frames=16, context_overlap=4).latents


def test_unet_prefixed_full_checkpoint_animates_as_its_motion_modules_alone(tmp_path, tiny_bundle, animator, released):
    """A whole UNet saved with `unet.` prefixes: the official loader applies its motion modules only."""
    from magicanimate_cli import Animator

    motion, _, changed = released
    full = {**changed, **motion}
    prefixed = _with_checkpoint(tmp_path / "prefixed", tiny_bundle, {f"unet.{k}": v for k, v in full.items()})
    everything = _with_checkpoint(tmp_path / "everything", tiny_bundle, full)

    ours = _animate(Animator.from_pretrained(prefixed.root))
    motion_only = _animate(animator)  # the tiny bundle: SD 1.5's unet + the released motion modules
    all_applied = _animate(Animator.from_pretrained(everything.root))
    assert torch.equal(ours, motion_only)
    assert (ours - all_applied).abs().max() / all_applied.abs().max() > 1e-2


def test_unet_prefixed_full_checkpoint_does_not_cover_the_unet(tmp_path, tiny_bundle, released):
    motion, _, changed = released
    layout = _with_checkpoint(tmp_path / "w", tiny_bundle, {f"unet.{k}": v for k, v in {**changed, **motion}.items()})
    assert not checkpoint_covers_unet(layout.root)
    assert check_weights(layout.root) == []
    for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"):
        (layout.unet / name).unlink()
    assert any("download-weights" in p for p in check_weights(layout.root))
    with pytest.raises(WeightsError, match="download-weights"):
        load_components(layout.root)


@pytest.mark.parametrize("case", [
    "module-prefixed full UNet",
    "module-prefixed spatial + unet-prefixed motion",
    "unet-prefixed spatial + plain motion + global_step",
    "plain full UNet + a stray non-motion key",
    "plain full UNet + a mis-shaped spatial key",
])
def test_mixed_prefixes_load_exactly_as_the_official_steps(tmp_path, tiny_bundle, released, case):
    motion, spatial, changed = released
    some = sorted(spatial)[0]
    entries = {
        "module-prefixed full UNet": {f"module.{k}": v for k, v in {**changed, **motion}.items()},
        "module-prefixed spatial + unet-prefixed motion": {**{f"module.{k}": v for k, v in changed.items()},
                                                           **{f"unet.{k}": v for k, v in motion.items()}},
        "unet-prefixed spatial + plain motion + global_step": {**{f"unet.{k}": v for k, v in changed.items()},
                                                                **motion, "global_step": 1000},
        "plain full UNet + a stray non-motion key": {**changed, **motion, "ema.decay": torch.tensor(0.999)},
        "plain full UNet + a mis-shaped spatial key": {**changed, **motion, some: torch.zeros(2, 2)},
    }[case]
    layout = _with_checkpoint(tmp_path / "w", tiny_bundle, entries)
    loaded = load_components(layout.root).unet.state_dict()
    assert _equal_states(loaded, official_rule(layout, entries))
    assert check_weights(layout.root) == []


def test_mixed_prefix_outcomes_are_the_ones_the_rule_states(tmp_path, tiny_bundle, released):
    """The rule in words: prefixes `module.` apply everything; `unet.` spatial entries are ignored."""
    motion, spatial, changed = released
    applied = _with_checkpoint(tmp_path / "a", tiny_bundle,
                               {**{f"module.{k}": v for k, v in changed.items()},
                                **{f"unet.{k}": v for k, v in motion.items()}})
    state = load_components(applied.root).unet.state_dict()
    assert all(torch.equal(state[k], changed[k]) for k in spatial) and checkpoint_covers_unet(applied.root)
    ignored = _with_checkpoint(tmp_path / "i", tiny_bundle,
                               {**{f"unet.{k}": v for k, v in changed.items()}, **motion, "global_step": 1000})
    state = load_components(ignored.root).unet.state_dict()
    assert all(torch.equal(state[k], spatial[k]) for k in spatial) and not checkpoint_covers_unet(ignored.root)
    assert all(torch.equal(state[k], motion[k]) for k in motion)


def test_checkpoint_of_no_unet_weights_is_refused_in_one_line(bundle):
    torch.save({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(3)}, bundle.temporal_checkpoint)
    with pytest.raises(WeightsError, match="none of its 1 entries is a UNet weight") as err:
        load_components(bundle.root)
    assert str(bundle.temporal_checkpoint) in str(err.value) and "\n" not in str(err.value)
    assert any("none of its 1 entries" in p for p in check_weights(bundle.root))


def test_unet_prefixed_motion_module_that_fits_nowhere_is_refused_naming_it(bundle, released):
    motion, _, _ = released
    stray = "unet.mid_block.motion_modules.0.temporal_transformer.proj_in.weight"  # no mid-block motion module here
    torch.save({**{f"unet.{k}": v for k, v in motion.items()}, stray: torch.zeros(4)}, bundle.temporal_checkpoint)
    with pytest.raises(WeightsError, match="1 motion-module keys match no UNet key") as err:
        load_components(bundle.root)
    assert "mid_block.motion_modules.0.temporal_transformer.proj_in.weight" in str(err.value)


# ------------------------------------------------------------------------- unreadable checkpoints


class RunsCode:
    """Pickled, this asks the unpickler to call os.getcwd: harmless, but code all the same."""

    def __reduce__(self):
        import os

        return (os.getcwd, ())


def _corrupt(path: Path, how: str) -> None:
    good = path.read_bytes()
    if how == "empty":
        path.write_bytes(b"")
    elif how == "truncated zip":
        path.write_bytes(good[: len(good) // 2])
    elif how == "random bytes":
        path.write_bytes(bytes(range(7, 255)) * 40)
    elif how == "truncated legacy pickle":
        torch.save(torch.load(path, weights_only=True), path, _use_new_zipfile_serialization=False)
        path.write_bytes(path.read_bytes()[:200])
    elif how == "pickle that runs code":
        torch.save({"state_dict": torch.load(path, weights_only=True), "hook": RunsCode()}, path)
    elif how == "git lfs pointer":
        path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:" + "0" * 64 + "\nsize 1234\n")


@pytest.mark.parametrize("how, says", [
    ("empty", "the file is empty (0 bytes)"),
    ("truncated zip", "truncated zip archive"),
    ("random bytes", "not a PyTorch checkpoint: neither a zip archive nor a pickle"),
    ("truncated legacy pickle", "truncated pickle: it ends after 200 bytes"),
    ("pickle that runs code", "pickle runs code when loaded (it calls "),
    ("git lfs pointer", "Git LFS pointer"),
])
def test_unreadable_checkpoint_says_what_is_wrong_and_never_suggests_unsafe_loading(bundle, how, says):
    ckpt = bundle.temporal_checkpoint
    _corrupt(ckpt, how)
    with pytest.raises(WeightsError) as err:
        load_components(bundle.root)
    message = str(err.value)
    assert message.startswith(f"{ckpt}: cannot read the weights: ") and says in message
    assert "\n" not in message and "weights_only" not in message
    problems = [p for p in check_weights(bundle.root) if str(ckpt) in p]
    assert problems and says in problems[0] and "weights_only" not in problems[0]
