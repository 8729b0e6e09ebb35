"""The held-out loss and the condition gains: a fixed set, exact zeros where a condition cannot matter, and
measuring that leaves training untouched."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from magicanimate_cli.dataset.reader import DataFolder
from magicanimate_cli.runtime.errors import InputError, SettingsError
from magicanimate_cli.train.heldout import (HeldOut, choose_items, mean_and_error, quantile_timesteps, summarise)
from magicanimate_cli.train.sampling import DataIndex
from magicanimate_cli.train.split import held_out_name, split_data
from train_fixtures import data, make_trainer, one_thread, settings  # noqa: F401 (fixtures)

POOL = DataIndex((("turn", 10), ("walk", 8)), ("photo0", "photo1"))


def _held_out(trainer, count: int = 4) -> HeldOut:
    s = trainer.settings
    folder = DataFolder(s.data)
    contents = folder.check()
    held = choose_items(DataIndex(contents.videos, contents.images), s.stage, s.clip_frames, s.frame_stride, s.seed,
                        trainer.schedule.timesteps, count)
    return HeldOut(held, folder, trainer.parts, trainer.schedule, s.stage, s.width, s.height)


def test_timesteps_are_evenly_spaced_quantiles_over_the_whole_schedule():
    assert quantile_timesteps(8, 1000) == [62, 187, 312, 437, 562, 687, 812, 937]
    assert quantile_timesteps(1, 1000) == [500]


def test_the_set_is_a_function_of_the_data_names_the_stage_and_the_seed():
    one = choose_items(POOL, 1, 1, 1, seed=7, timesteps=1000, count=8)
    assert one == choose_items(POOL, 1, 1, 1, seed=7, timesteps=1000, count=8)
    assert one != choose_items(POOL, 1, 1, 1, seed=8, timesteps=1000, count=8)
    assert [x.timestep for x in one.items] == quantile_timesteps(8, 1000)
    assert {x.sample.name for x in one.items} == {"turn", "walk", "photo0", "photo1"}
    for item in one.items:
        if item.sample.kind == "video":  # a frame's reference is another frame of its video
            assert item.sample.reference != item.sample.frames[0]
    assert len({x.noise_seed for x in one.items}) == 8


def test_stage_two_measures_clips_of_the_videos_long_enough():
    held = choose_items(DataIndex((("short", 3), ("long", 9))), 2, 4, 2, seed=0, timesteps=1000, count=4)
    assert {x.sample.name for x in held.items} == {"long"}
    assert all(x.sample.frames == tuple(range(x.sample.frames[0], x.sample.frames[0] + 7, 2)) for x in held.items)
    with pytest.raises(InputError, match="at least 7 frames"):
        choose_items(DataIndex((("short", 3),)), 2, 4, 2, seed=0, timesteps=1000)


def test_mean_and_standard_error():
    assert mean_and_error([1.0, 2.0, 3.0, 4.0]) == (2.5, pytest.approx(math.sqrt(5 / 3 / 4)))
    assert mean_and_error([2.0]) == (2.0, 0.0)


def test_summary_gains_are_paired_differences_and_bands_cover_the_schedule():
    held = choose_items(POOL, 1, 1, 1, seed=0, timesteps=1000, count=4)
    losses = [{"loss": 1.0 + i, "no_ref": 2.0 + i, "foil_pose": 1.0 + i + (i % 2)} for i in range(4)]
    out = summarise(held, losses)
    assert out["loss"] == 2.5 and out["ref_gain"] == 1.0 and out["ref_gain_se"] == 0.0
    assert out["pose_gain"] == 0.5 and out["pose_gain_se"] == pytest.approx(math.sqrt(1 / 3 / 4))
    assert "temporal_gain" not in out
    assert out["bands"] == {"t0-249": 1.0, "t250-499": 2.0, "t500-749": 3.0, "t750-999": 4.0}


def test_the_split_is_by_name_alone_and_never_empty_on_either_side(tmp_path):
    videos = tuple((f"clip{i}", 10) for i in range(40))
    split = split_data(DataIndex(videos), 0.25, tmp_path)
    held = {name for name, _ in split.held_out.videos}
    assert held == {name for name, _ in videos if held_out_name(f"videos/{name}", 0.25)}
    assert held and not held & {name for name, _ in split.train.videos}
    more = split_data(DataIndex(videos + (("extra", 10),)), 0.25, tmp_path)  # adding a file moves no other
    assert held <= {name for name, _ in more.held_out.videos}
    with pytest.raises(SettingsError, match="holds out none"):
        split_data(DataIndex((("clip0", 10),)), 1e-9, tmp_path)


def test_pose_gain_is_exactly_zero_with_the_zero_initialised_controlnet(data, tmp_path):
    """Stage 1 from SD 1.5: the ControlNet's output convolutions are zero, so no render changes a prediction."""
    trainer = make_trainer(settings(data, tmp_path / "run"))
    out = _held_out(trainer).measure()
    assert out["pose_gain"] == 0.0 and out["pose_gain_se"] == 0.0
    assert out["ref_gain"] != 0.0  # the reference does reach the UNet
    assert "temporal_gain" not in out


def test_temporal_gain_is_exactly_zero_with_identity_motion_modules(data, tmp_path):
    """Stage 2 with every motion module's output projection zeroed (AnimateDiff's start): bypassing them changes
    nothing; with the tiny bundle's own motion weights it does."""
    trainer = make_trainer(settings(data, tmp_path / "run", stage=2))
    held = _held_out(trainer, count=2)
    assert held.measure()["temporal_gain"] != 0.0
    with torch.no_grad():
        for name, param in trainer.parts.model.unet.named_parameters():
            if ".motion_modules." in name and ".proj_out." in name:
                param.zero_()
    out = held.measure()
    assert out["temporal_gain"] == 0.0 and out["temporal_gain_se"] == 0.0


def test_measuring_is_repeatable_and_leaves_the_training_steps_unchanged(data, tmp_path):
    plain, measured = (make_trainer(settings(data, tmp_path / name, steps=2)) for name in ("plain", "measured"))
    held = _held_out(measured, count=2)
    first = held.measure()
    assert held.measure() == first
    want = [plain.train_step()[0] for _ in range(2)]
    got = [measured.train_step()[0]]
    held.measure()  # between two steps, as the loop measures
    got.append(measured.train_step()[0])
    assert got == want
    assert held.measure() != first  # the weights moved


def test_a_split_run_trains_without_its_held_out_names_and_records_them(tmp_path):
    from magicanimate_cli.train.split import held_out_data

    s = settings(tmp_path / "data", tmp_path / "run", val_split=0.7)
    names = [n for n in ("videos/walk", "videos/turn", "images/photo0", "images/photo1") if held_out_name(n, 0.7)]
    train, held = held_out_data(s, POOL, source=None, other=None)
    assert held.record == {"split": 0.7, "videos": [n[7:] for n in names if n.startswith("videos/")],
                           "images": [n[7:] for n in names if n.startswith("images/")]}
    assert not {name for name, _ in train.videos} & set(held.record["videos"])
    assert not set(train.images) & set(held.record["images"])
    assert held_out_data(replace(s, val_split=0.0), POOL, source=None, other=None) == (POOL, None)


def test_held_out_settings_are_checked(tmp_path):
    s = settings(tmp_path, tmp_path / "run")
    for bad, words in (({"val_split": 0.2, "val_data": tmp_path}, "pass one"), ({"val_split": 1.0}, "--val-split"),
                       ({"val_every": 0}, "--val-every"), ({"val_items": 0}, "--val-items")):
        with pytest.raises(SettingsError, match=words):
            replace(s, **bad).validate()


@pytest.mark.parametrize("stage", [1, 2])
def test_the_cards_train_line_is_one_the_command_parses_with_the_runs_settings(stage, tmp_path):
    import shlex

    import typer.main

    from magicanimate_cli.cli import app
    from magicanimate_cli.train.card import train_command

    s = replace(settings(tmp_path / "data", tmp_path / "run", stage, val_data=tmp_path / "held", val_items=5),
                ref_dropout=0.3, gradient_checkpointing=True)
    words = shlex.split(train_command(s.record()))
    assert words[:2] == ["magicanimate", "train"] and words[3:5] == ["-o", "RUN"]
    command = typer.main.get_command(app).commands["train"]
    params = command.make_context("train", words[2:]).params
    assert (params["lr"], params["steps"], params["seed"], params["val_items"]) == (s.lr, s.steps, s.seed, 5)
    assert params["ref_dropout"] == 0.3 and str(params["val_data"]) == str(tmp_path / "held")
    # how the run was checkpointed, watched or computed is left out: a resumed run may change it
    assert "--checkpoint-every" not in words and "--gradient-checkpointing" not in words and "--device" not in words
