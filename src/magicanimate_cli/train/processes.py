"""The run's processes: the accelerator that joins them, and the few things they exchange besides gradients.

`accelerate launch -m magicanimate_cli train ...` and `torchrun ... -m magicanimate_cli train ...` start one
process per GPU (or several CPU processes); accelerate reads the launcher's environment (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR) and joins the group (NCCL between GPUs, gloo between CPU processes), or uses a group
the caller has already joined. A plain `magicanimate train` is accelerate with one process.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any, TypeVar

import torch

from ..runtime.errors import MagicAnimateError, SettingsError
from .settings import TrainSettings


def process_state(device: str):
    """accelerate's view of this process (index, count, device), joining the group if the launcher asked for one;
    available before any model is loaded, so a resume with another process count is refused first."""
    from accelerate import PartialState

    return PartialState(cpu=torch.device(device).type == "cpu")


def make_accelerator(settings: TrainSettings, **options):
    """The run's Accelerator, with the run's precision. accelerate keeps one precision per Python process; a process
    that trains twice (an application, the tests) starts each run from a fresh precision state (the process group
    is kept)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(cpu=torch.device(settings.device).type == "cpu", mixed_precision=settings.mixed_precision,
                       gradient_accumulation_steps=settings.gradient_accumulation, **options)


SHARDING_ENGINES = {"ACCELERATE_USE_DEEPSPEED": "DeepSpeed", "ACCELERATE_USE_FSDP": "FSDP"}
"""accelerate launch's variables for the engines that shard optimizer states (and FSDP the weights)."""


def check_engine(environ: dict[str, str]) -> None:
    """Refuse, in one line and before anything is loaded, a launch under DeepSpeed or FSDP: their optimizer
    states (and FSDP's weights) are sharded over the processes, while train's checkpoints and export are written
    by the main process from its own full tensors and restored exactly; under them a checkpoint would hold one
    shard and a resume would silently differ. Data parallelism (DDP) is what train runs."""
    for variable, engine in SHARDING_ENGINES.items():
        if environ.get(variable, "").lower() in ("1", "true", "yes"):
            raise SettingsError(f"{engine} (accelerate launch with a {engine} config, {variable}) is not supported: "
                                "train's checkpoints and export hold full, unsharded optimizer states and weights; "
                                "launch with configs/accelerate/multi-gpu.yaml (DDP) and fit memory with "
                                "--gradient-checkpointing, --mixed-precision bf16, --optimizer adamw8bit or --lora")


def gather_objects(accelerator, value: Any) -> list[Any]:
    """Every process's `value`, in process order, on every process."""
    if accelerator.num_processes == 1:
        return [value]
    import torch.distributed as dist

    out: list[Any] = [None] * accelerator.num_processes
    dist.all_gather_object(out, value)
    return out


def from_main(accelerator, value: Any) -> Any:
    """The main process's `value`, on every process."""
    if accelerator.num_processes == 1:
        return value
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([value], from_process=0)[0]


def any_process(accelerator, value: str | None) -> str | None:
    """A stop signal's name (SIGTERM, SIGINT) if any process caught one, the same on every process: one all-reduce
    of a one-number tensor on the process's device (the highest signal number wins; no pickling)."""
    number = signal.Signals[value].value if value else 0
    highest = _highest(accelerator, number)
    return signal.Signals(highest).name if highest else None


def any_true(accelerator, flag: bool) -> bool:
    """Whether `flag` is set on any process (one all-reduce), the same on every process."""
    return bool(_highest(accelerator, int(flag)))


def _highest(accelerator, value: int) -> int:
    if accelerator.num_processes == 1:
        return value
    import torch.distributed as dist

    flag = torch.tensor([value], device=accelerator.device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag.item())


class OtherProcessError(MagicAnimateError):
    """Another process stopped with an error: this one stops too (that process's line says why)."""


T = TypeVar("T")


def on_main(accelerator, work: Callable[[], T]) -> T | None:
    """Run `work` (writing the run's files) on the main process alone; every process then learns whether it failed
    (one all-reduce, which is also the barrier), so none waits for ever on a main process that stopped."""
    error, result = None, None
    if accelerator.is_main_process:
        try:
            result = work()
        except MagicAnimateError as exc:
            error = exc
    raise_if_any(accelerator, error)
    return result


def raise_if_any(accelerator, error: BaseException | None) -> None:
    """Raise `error` here, or, when only another process has one, stop with OtherProcessError."""
    if any_true(accelerator, error is not None):
        if error is not None:
            raise error
        raise OtherProcessError("another process of the run stopped with an error (its message says why)")
