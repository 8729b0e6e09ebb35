"""The run's processes: the accelerator that joins them, and the few things they exchange besides gradients.

`accelerate launch -m magicanimate_cli train ...` and `torchrun ... -m magicanimate_cli train ...` start one
process per GPU (or several CPU processes); accelerate reads the launcher's environment (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR) and joins the group (NCCL between GPUs, gloo between CPU processes), or uses a group
the caller has already joined. A plain `magicanimate train` is accelerate with one process.
"""

from __future__ import annotations

import signal
from typing import Any

import torch

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
                       **options)


def gather_objects(accelerator, value: Any) -> list[Any]:
    """Every process's `value`, in process order, on every process."""
    if accelerator.num_processes == 1:
        return [value]
    import torch.distributed as dist

    out: list[Any] = [None] * accelerator.num_processes
    dist.all_gather_object(out, value)
    return out


def any_process(accelerator, value: str | None) -> str | None:
    """A stop signal's name (SIGTERM, SIGINT) if any process caught one, the same on every process: one all-reduce
    of a one-number tensor on the process's device (the highest signal number wins; no pickling)."""
    if accelerator.num_processes == 1:
        return value
    import torch.distributed as dist

    flag = torch.tensor([signal.Signals[value].value if value else 0], device=accelerator.device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return signal.Signals(int(flag.item())).name if int(flag.item()) else None
