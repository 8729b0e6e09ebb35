"""Several processes sharing every denoising step: each runs a block of the windows, and their partial sums of
noise predictions and weights are added with all_reduce, so every process takes the same DDIM step.

Processes come from `torchrun` (which sets RANK, WORLD_SIZE, LOCAL_RANK and a rendezvous address) or from
`launch_local`, which starts N local processes itself and lets them meet through a file. NCCL carries the sums
between GPUs, gloo between CPU processes. Only sums cross processes: no rank gathers the video.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from ..runtime.errors import MagicAnimateError, SettingsError


@dataclass(frozen=True)
class RankGroup:
    """This process's place among the processes of one run."""

    rank: int
    size: int
    local_rank: int
    init_method: str = "env://"

    @property
    def writes(self) -> bool:
        """Rank 0 alone decodes, writes the video and saves checkpoints."""
        return self.rank == 0


def group_from_environment(env: Mapping[str, str] = os.environ) -> RankGroup | None:
    """The group torchrun started this process in, or None for a single process."""
    size = int(env.get("WORLD_SIZE", "1"))
    if size <= 1:
        return None
    rank = int(env["RANK"])
    return RankGroup(rank, size, int(env.get("LOCAL_RANK", rank)))


def rank_device(device: torch.device, group: RankGroup) -> torch.device:
    """One GPU per process (`cuda:LOCAL_RANK`); CPU processes share the CPU; MPS cannot be shared this way."""
    if device.type == "cuda":
        available = torch.cuda.device_count()
        if group.local_rank >= available:
            raise SettingsError(f"process {group.rank} needs cuda:{group.local_rank} but this machine has "
                                f"{available} CUDA device(s); start at most that many processes per machine")
        return torch.device("cuda", group.local_rank)
    if device.type != "cpu":
        raise SettingsError(f"--device {device}: several processes need CUDA GPUs or the CPU")
    return device


@contextmanager
def joined(group: RankGroup, device: torch.device) -> Iterator[None]:
    """Join the process group for the duration of the run (NCCL on CUDA, gloo on the CPU)."""
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, init_method=group.init_method, rank=group.rank, world_size=group.size)
    try:
        yield
    finally:
        dist.destroy_process_group()


def all_reduce_sum(noise_sum: torch.Tensor, weight_sum: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The sampler's reducer: every process ends up with the sums over all processes' windows."""
    dist.all_reduce(noise_sum, op=dist.ReduceOp.SUM)
    dist.all_reduce(weight_sum, op=dist.ReduceOp.SUM)
    return noise_sum, weight_sum


def agree(value: Any) -> Any:
    """Rank 0's `value` on every rank (e.g. a seed drawn at random: each torchrun process would draw its own)."""
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def launch_local(processes: int, entry: Callable[[Any, RankGroup], None], payload: Any) -> None:
    """Run `entry(payload, group)` in `processes` fresh local processes and wait for all of them.

    The processes are spawned (not forked: CUDA cannot be forked) and meet through a file in a private temporary
    folder, so no port has to be free. `entry` and `payload` must be picklable.
    """
    from torch.multiprocessing import ProcessExitedException, ProcessRaisedException, start_processes

    with tempfile.TemporaryDirectory(prefix="magicanimate-rendezvous-") as folder:
        init_method = (Path(folder) / "store").as_uri()
        try:
            start_processes(_child, args=(processes, init_method, entry, payload), nprocs=processes, join=True,
                            start_method="spawn")
        except ProcessRaisedException as exc:
            lines = [line for line in str(exc).splitlines() if line.strip()]
            raise MagicAnimateError(f"process {exc.error_index} of {processes} failed: "
                                    f"{lines[-1].strip() if lines else 'unknown error'}") from None
        except ProcessExitedException as exc:
            raise MagicAnimateError(f"process {exc.error_index} of {processes} stopped with exit code "
                                    f"{exc.exit_code} (its message is above)") from None


def _child(index: int, processes: int, init_method: str, entry: Callable[[Any, RankGroup], None],
           payload: Any) -> None:
    """One launched process: share the CPU fairly, run, and report user errors in one line."""
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // processes))
    try:
        entry(payload, RankGroup(index, processes, index, init_method))
    except MagicAnimateError as exc:
        print(f"error: process {index}: {exc}", file=sys.stderr, flush=True)
        sys.exit(exc.exit_code)
