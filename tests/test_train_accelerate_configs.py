"""The shipped accelerate configs (configs/accelerate/) parse with accelerate's own loader and its launcher, and
select what their names say. Only parsing and the launcher's choices run here: a step under DeepSpeed, FSDP or
several GPUs is checked on GPUs only (docs/training.md says which)."""

from __future__ import annotations

from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import DistributedType, prepare_multi_gpu_env

CONFIGS = Path(__file__).parent.parent / "configs" / "accelerate"


def _launch(name: str):
    """accelerate launch's own reading of `--config_file NAME -m magicanimate_cli train ...` (nothing starts)."""
    args = launch_command_parser().parse_args(["--config_file", str(CONFIGS / name), "-m", "magicanimate_cli",
                                               "train", "DATA", "-o", "RUN", "--stage", "1"])
    return _validate_launch_command(args)[0]


def test_every_shipped_config_is_tested():
    assert sorted(p.name for p in CONFIGS.glob("*.yaml")) == ["deepspeed-zero2.yaml", "fsdp.yaml", "multi-gpu.yaml"]


@pytest.mark.parametrize("name, kind", [("multi-gpu.yaml", DistributedType.MULTI_GPU),
                                        ("deepspeed-zero2.yaml", DistributedType.DEEPSPEED),
                                        ("fsdp.yaml", DistributedType.FSDP)])
def test_each_config_parses_and_leaves_precision_to_the_command(name, kind):
    config = load_config_from_file(str(CONFIGS / name))
    assert config.distributed_type == kind and config.num_processes > 1 and config.mixed_precision == "no"
    args = _launch(name)
    assert args.module and args.training_script == "magicanimate_cli" and args.training_script_args[0] == "train"


def test_deepspeed_config_is_zero2_with_trains_gradient_clip():
    config = load_config_from_file(str(CONFIGS / "deepspeed-zero2.yaml"))
    assert config.deepspeed_config["zero_stage"] == 2 and config.deepspeed_config["gradient_clipping"] == 1.0
    args = _launch("deepspeed-zero2.yaml")
    assert args.use_deepspeed and args.zero_stage == 2 and not args.use_fsdp


def test_fsdp_config_shards_gradients_and_optimizer_keeping_original_parameters():
    env = prepare_multi_gpu_env(_launch("fsdp.yaml"))
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_SHARDING_STRATEGY"] == "SHARD_GRAD_OP"
    assert env["FSDP_USE_ORIG_PARAMS"] == "true"  # trainable and frozen weights share wrapped modules


def test_multi_gpu_config_launches_ddp_without_sharding():
    args = _launch("multi-gpu.yaml")
    assert args.multi_gpu and not args.use_fsdp and not args.use_deepspeed
