"""`train --optimizer` and `--log`: what a machine cannot run is refused in one line before anything is written;
`--log tensorboard` writes loss, lr and samples/s through accelerate's tracker."""

from __future__ import annotations

import json

import pytest

from conftest import TINY_BUNDLE, run_cli
from train_fixtures import MA, data, one_thread  # noqa: F401 (fixtures)


def _args(data, run, *extra) -> list:
    return ["train", data, "-o", run, "--stage", "1", "--weights", TINY_BUNDLE, "--size", "128", "--steps", "2",
            "--device", "cpu", "--quiet", *extra]


def test_adamw8bit_off_cuda_is_one_line_and_writes_nothing(data, tmp_path, capsys):
    run = tmp_path / "run"
    code, out, err = run_cli(_args(data, run, "--optimizer", "adamw8bit"), capsys)
    assert code != 0 and len(err.strip().splitlines()) == 1
    assert "adamw8bit" in err and "CUDA only" in err and "cpu" in err
    assert not run.exists()


def test_log_tensorboard_writes_loss_lr_and_samples_per_second_per_step(data, tmp_path, capsys):
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    run = tmp_path / "run"
    code, _, err = run_cli(_args(data, run, "--log", "tensorboard", "--lr", "1e-3"), capsys)
    assert code == 0, err
    reader = event_accumulator.EventAccumulator(str(run / "logs" / "train"))  # accelerate's tracker: RUN/logs/<project>
    reader.Reload()
    scalars = reader.Tags()["scalars"]
    assert {"loss", "lr", "samples_per_s"} <= set(scalars)
    assert [e.step for e in reader.Scalars("loss")] == [1, 2]
    assert reader.Scalars("lr")[0].value == pytest.approx(1e-3)
    assert all(e.value > 0 for e in reader.Scalars("samples_per_s"))


def test_lora_through_the_command_records_the_rank_and_keeps_the_adapters_beside_the_export(data, tmp_path, capsys):
    pytest.importorskip("peft")
    run = tmp_path / "run"
    args = ["train", data, "-o", run, "--stage", "2", "--from", MA, "--weights", TINY_BUNDLE, "--size", "128",
            "--frames", "2", "--joint", "0,0", "--steps", "1", "--device", "cpu", "--quiet", "--lora", "2"]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    assert json.loads((run / "config.json").read_text())["settings"]["lora"] == 2
    adapters = run / "export" / "lora" / "temporal_attention"
    assert json.loads((adapters / "adapter_config.json").read_text())["r"] == 2
    assert (run / "export" / "temporal_attention" / "temporal_attention.ckpt").is_file()
