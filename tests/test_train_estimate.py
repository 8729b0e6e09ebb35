"""`train --dry-run`: counts that equal the real modules', an activation estimate that grows with the work and
shrinks with checkpointing, and a command that reads no weights and no data."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import pytest

from conftest import TINY_BUNDLE, run_cli
from train_fixtures import MA, OneThread
from dataclasses import replace

from magicanimate_cli.train.estimate import (StepSettings, ModelConfigs, account, count, estimate, mark_trainable,
                                             meta_parts, module_counts)
from magicanimate_cli.train.model import MOTION, load_parts, set_trainable
from magicanimate_cli.train.settings import TrainSettings
from magicanimate_cli.runtime.errors import SettingsError

TINY = ModelConfigs.from_folders(TINY_BUNDLE, MA)
MICRO = replace(ModelConfigs.from_folders(TINY_BUNDLE), unet={
    **ModelConfigs.from_folders(TINY_BUNDLE).unet, "block_out_channels": [32, 64], "layers_per_block": 1,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"], "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"]})
"""Two levels, one layer each: the same kinds of modules as the tiny bundle with a third of their calls."""


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with OneThread():
        yield


def _real_counts(stage: int) -> dict[str, tuple[int, int]]:
    parts = load_parts(stage, TINY_BUNDLE, MA, MA / "temporal_attention" / "temporal_attention.ckpt")
    set_trainable(parts.model, stage)
    counts: Counter = Counter()
    for name, p in parts.model.named_parameters():
        group = ("appearance encoder" if name.startswith("appearance_encoder.") else "ControlNet"
                 if name.startswith("controlnet.") else "motion modules" if MOTION in name else "UNet (spatial)")
        counts[group, p.requires_grad] += p.numel()
    counts["VAE", False] = sum(p.numel() for p in parts.vae.parameters())
    counts["text encoder", False] = sum(p.numel() for p in parts.text_encoder.parameters())
    groups = {g for g, _ in counts}
    return {g: (counts[g, True], counts[g, False]) for g in groups if counts[g, True] or counts[g, False]}


@pytest.mark.parametrize("stage", [1, 2])
def test_counts_equal_the_real_modules_counts_on_the_tiny_bundle(stage):
    """The dry run's counts (meta_parts, the modules `estimate` counts) against the networks a run loads."""
    parts = meta_parts(stage, TINY)
    counts = module_counts(parts, stage, mark_trainable(parts.model, stage, 0))
    assert {m.name: (m.trainable, m.frozen) for m in counts} == _real_counts(stage)


def _activations(**kw) -> tuple[int, int]:
    base = {"stage": 2, "frames": 2, "width": 128, "height": 128, "batch_size": 1}
    result = estimate(StepSettings(**{**base, **kw}), MICRO)
    return result.activations_plain, result.activations_checkpointed


def test_activations_grow_with_batch_frames_and_size_and_shrink_with_checkpointing():
    base = _activations()
    for bigger in (_activations(batch_size=2), _activations(frames=4), _activations(width=192, height=192)):
        assert bigger[0] > base[0] and bigger[1] > base[1]
    stage1 = _activations(stage=1)
    for plain, checkpointed in (base, stage1):
        assert checkpointed < plain


def test_memory_options_change_the_parts_they_should():
    settings = StepSettings(1, width=128, height=128)
    counted = count(settings, MICRO)
    plain = account(settings, counted)
    eight = account(replace(settings, optimizer="adamw8bit"), counted)
    checkpointed = account(replace(settings, gradient_checkpointing=True), counted)
    accumulated = account(replace(settings, gradient_accumulation=3), counted)
    half = estimate(replace(settings, mixed_precision="bf16"), MICRO)
    lora = estimate(replace(settings, lora=4), MICRO)
    assert plain.memory["optimizer"] == 8 * plain.trainable and eight.memory["optimizer"] < plain.memory["optimizer"]
    assert checkpointed.memory["activations"] < plain.memory["activations"]
    assert checkpointed.flops_per_step > plain.flops_per_step  # the recomputed forward
    assert accumulated.flops_per_step == pytest.approx(3 * plain.flops_per_step)
    assert half.memory["activations"] < plain.memory["activations"]
    assert 0 < lora.trainable < plain.trainable / 10 and lora.memory["gradients"] == 4 * lora.trainable
    assert lora.trainable + lora.frozen > plain.trainable + plain.frozen  # the adapters come on top of the base


def test_dry_run_reads_only_config_files_and_writes_nothing(tmp_path, capsys):
    """A weights folder holding only the config files (no tensors), no DATA folder: the dry run still reports,
    and creates no run folder."""
    weights = tmp_path / "weights"
    for config in TINY_BUNDLE.rglob("config.json"):
        target = weights / config.relative_to(TINY_BUNDLE)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(config, target)
    run = tmp_path / "run"
    args = ["train", tmp_path / "no-data", "-o", run, "--weights", weights, "--from", weights / "MagicAnimate",
            "--size", "128", "--frames", "2", "--dry-run"]
    code, out, err = run_cli([*args, "--stage", "2", "--json"], capsys)
    assert code == 0, err
    record = json.loads(out.strip().splitlines()[-1])
    assert record["dry_run"] and record["settings"]["frames"] == 2
    assert record["trainable"] == sum(m["trainable"] for m in record["modules"]) > 0
    assert set(record["memory"]) == {"weights", "gradients", "optimizer", "activations", "working", "peak"}
    code, out, err = run_cli([*args, "--stage", "1"], capsys)
    assert code == 0 and "ControlNet" in out and "peak" in out and "FLOPs per optimizer step" in out
    assert not run.exists()


def test_dry_run_with_a_from_folder_missing_its_config_is_one_line(tmp_path, capsys):
    args = ["train", tmp_path, "-o", tmp_path / "run", "--stage", "1", "--weights", TINY_BUNDLE, "--from",
            tmp_path / "nothing", "--dry-run"]
    code, _, err = run_cli(args, capsys)
    assert code != 0 and len(err.strip().splitlines()) == 1 and "config.json" in err


def test_a_stage2_dry_run_needs_no_temporal_start_but_a_run_does(tmp_path, capsys):
    """--dry-run reads no temporal file, so stage 2 estimates without --motion-module; training still asks for one."""
    args = ["train", tmp_path / "no-data", "-o", tmp_path / "run", "--stage", "2", "--weights", tmp_path / "none",
            "--size", "128", "--frames", "2"]
    code, out, err = run_cli([*args, "--dry-run", "--json"], capsys)
    assert code == 0, err
    record = json.loads(out.strip().splitlines()[-1])
    assert record["settings"]["stage"] == 2 and record["trainable"] > 0
    wanted = TrainSettings(data=tmp_path, run=tmp_path / "run", weights=tmp_path, stage=2)
    wanted.validate_options()
    with pytest.raises(SettingsError, match="temporal start"):
        wanted.validate()
