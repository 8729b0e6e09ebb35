"""The shipped accelerate config (configs/accelerate/multi-gpu.yaml) parses with accelerate's own loader and its
launcher and selects DDP; a launch under DeepSpeed or FSDP (sharded optimizer states, which train's checkpoints do
not hold) is refused in one line before anything is written. A step on several GPUs is checked on GPUs only."""

from __future__ import annotations

from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import DistributedType, prepare_deepspeed_cmd_env, prepare_multi_gpu_env

from conftest import TINY_BUNDLE, run_cli
from magicanimate_cli.runtime.errors import SettingsError
from magicanimate_cli.train.processes import SHARDING_ENGINES, check_engine
from train_fixtures import data, one_thread  # noqa: F401 (fixtures)

CONFIGS = Path(__file__).parent.parent / "configs" / "accelerate"


def _launch(name: str):
    """accelerate launch's own reading of `--config_file NAME -m magicanimate_cli train ...` (nothing starts)."""
    args = launch_command_parser().parse_args(["--config_file", str(CONFIGS / name), "-m", "magicanimate_cli",
                                               "train", "DATA", "-o", "RUN", "--stage", "1"])
    return _validate_launch_command(args)[0]


def test_every_shipped_config_is_tested():
    assert sorted(p.name for p in CONFIGS.glob("*.yaml")) == ["multi-gpu.yaml"]


def test_the_config_parses_and_leaves_precision_to_the_command():
    config = load_config_from_file(str(CONFIGS / "multi-gpu.yaml"))
    assert config.distributed_type == DistributedType.MULTI_GPU and config.num_processes > 1
    assert config.mixed_precision == "no"
    args = _launch("multi-gpu.yaml")
    assert args.module and args.training_script == "magicanimate_cli" and args.training_script_args[0] == "train"


def test_multi_gpu_config_launches_ddp_without_sharding():
    args = _launch("multi-gpu.yaml")
    assert args.multi_gpu and not args.use_fsdp and not args.use_deepspeed


@pytest.mark.parametrize("engine, flags", [("FSDP", ["--use_fsdp", "--fsdp_sharding_strategy", "SHARD_GRAD_OP"]),
                                           ("DeepSpeed", ["--use_deepspeed", "--zero_stage", "2"])])
def test_a_launch_under_a_sharding_engine_is_refused_in_one_line_before_anything_is_written(engine, flags, data,
                                                                                           tmp_path, capsys,
                                                                                           monkeypatch):
    """accelerate launch with FSDP or DeepSpeed exports its choice to the processes' environment; train refuses
    it (its checkpoints hold full optimizer states) instead of writing checkpoints that would not resume."""
    args = _validate_launch_command(launch_command_parser().parse_args(
        ["--num_processes", "2", "--num_machines", "1", *flags, "-m", "magicanimate_cli", "train"]))[0]
    args.deepspeed_fields_from_accelerate_config = []  # what launch_command sets when no config file is given
    environment = prepare_deepspeed_cmd_env(args)[1] if engine == "DeepSpeed" else prepare_multi_gpu_env(args)
    variable = next(v for v in SHARDING_ENGINES if environment.get(v) == "true")
    with pytest.raises(SettingsError, match=engine):
        check_engine(environment)
    monkeypatch.setenv(variable, "true")
    run = tmp_path / "run"
    code, _, err = run_cli(["train", data, "-o", run, "--stage", "1", "--weights", TINY_BUNDLE, "--size", "128",
                            "--steps", "1", "--device", "cpu", "--quiet"], capsys)
    assert code != 0 and len(err.strip().splitlines()) == 1 and engine in err and "multi-gpu.yaml" in err
    assert not run.exists()
