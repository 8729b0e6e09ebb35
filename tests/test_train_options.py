"""`train --optimizer` and `--log`: what a machine cannot run is refused in one line before anything is written."""

from __future__ import annotations

from conftest import TINY_BUNDLE, run_cli
from train_fixtures import write_data


def test_adamw8bit_off_cuda_is_one_line_and_writes_nothing(tmp_path, capsys):
    data = write_data(tmp_path / "data")
    run = tmp_path / "run"
    args = ["train", data, "-o", run, "--stage", "1", "--weights", TINY_BUNDLE, "--size", "128", "--steps", "1",
            "--device", "cpu", "--optimizer", "adamw8bit"]
    code, out, err = run_cli(args, capsys)
    assert code != 0 and len(err.strip().splitlines()) == 1
    assert "adamw8bit" in err and "CUDA only" in err and "cpu" in err
    assert not run.exists()
