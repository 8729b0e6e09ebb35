"""`--shard auto`: this process's share of a batch, and its GPU, from the variables torchrun or Slurm set.

A launcher starts the same command many times; each copy must take a different share of the work list and, on a
machine with several GPUs, a different GPU. torchrun says which copy a process is with RANK / WORLD_SIZE and
LOCAL_RANK; Slurm with SLURM_ARRAY_TASK_* (a job array) or SLURM_PROCID / SLURM_NTASKS and SLURM_LOCALID (the
tasks of one `srun`). Everything here is a pure function of an environment mapping, so every rule is testable
without a launcher; `resolve_shard_from_process` alone reads this process's environment and CUDA device count.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import SettingsError


@dataclass(frozen=True)
class ClusterShare:
    """Share `index` (1-based, as `--shard I/N` counts) of `count`; `local_rank` picks the GPU (None: no launcher
    said)."""

    index: int
    count: int
    local_rank: int | None
    variables: tuple[str, ...] = ()  # the launcher's variables it was read from

    @property
    def shard_text(self) -> str:
        return f"{self.index}/{self.count}"

    def record(self, env: Mapping[str, str]) -> dict:
        """What `--json` and each sidecar say about the share: which, of how many, and from which variables."""
        return {"shard": "auto", "index": self.index, "count": self.count,
                "from": {name: env[name] for name in self.variables if name in env}}


def _refuse(problem: str) -> SettingsError:
    return SettingsError(f"--shard auto: {problem}")


def _integer(env: Mapping[str, str], name: str, minimum: int) -> int | None:
    """The variable as an integer ≥ minimum, None when unset; anything else is refused, naming it."""
    text = env.get(name)
    if text is None:
        return None
    try:
        value = int(text.strip())
    except ValueError:
        raise _refuse(f"{name}={text!r} is not an integer") from None
    if value < minimum:
        raise _refuse(f"{name}={value} is below {minimum}")
    return value


def _rank_in_world(env: Mapping[str, str], rank_name: str, size_name: str) -> tuple[int, int] | None:
    """(rank, size) from a pair of variables that must come together, with 0 ≤ rank < size."""
    rank, size = _integer(env, rank_name, 0), _integer(env, size_name, 1)
    if rank is None and size is None:
        return None
    if rank is None or size is None:
        given, missing = (rank_name, size_name) if size is None else (size_name, rank_name)
        raise _refuse(f"{given}={env[given]} is set but {missing} is not (a launcher sets both)")
    if rank >= size:
        raise _refuse(f"{rank_name}={rank} is not below {size_name}={size}")
    return rank, size


def torchrun_rank(env: Mapping[str, str]) -> tuple[int, int, int | None] | None:
    """(RANK, WORLD_SIZE, LOCAL_RANK) when torchrun (or another launcher of its convention) started us."""
    world = _rank_in_world(env, "RANK", "WORLD_SIZE")
    local = _integer(env, "LOCAL_RANK", 0)
    if world is None:
        if local is not None:
            raise _refuse(f"LOCAL_RANK={local} is set but RANK and WORLD_SIZE are not (torchrun sets all three)")
        return None
    return (*world, local)


def slurm_array_position(env: Mapping[str, str]) -> tuple[int, int] | None:
    """(position, count) of this task in a Slurm job array.

    Task ids need not start at 0 (`--array=1-8` is common, and `--array=0-30:10` steps), so the position is
    (SLURM_ARRAY_TASK_ID − SLURM_ARRAY_TASK_MIN) / SLURM_ARRAY_TASK_STEP, with MIN 0 and STEP 1 when unset. An
    id that does not land on 0…COUNT−1 (an irregular list such as `--array=1,4,9`) is refused rather than
    guessed: a guess could silently leave shares undone.
    """
    task = _integer(env, "SLURM_ARRAY_TASK_ID", 0)
    count = _integer(env, "SLURM_ARRAY_TASK_COUNT", 1)
    if task is None and count is None:
        return None
    if task is None or count is None:
        given, missing = (("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT") if count is None
                          else ("SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_ID"))
        raise _refuse(f"{given}={env[given]} is set but {missing} is not (Slurm sets both)")
    first = _integer(env, "SLURM_ARRAY_TASK_MIN", 0) or 0
    step = _integer(env, "SLURM_ARRAY_TASK_STEP", 1) or 1
    offset = task - first
    if offset < 0 or offset % step or offset // step >= count:
        raise _refuse(f"SLURM_ARRAY_TASK_ID={task} is not one of the {count} ids from SLURM_ARRAY_TASK_MIN="
                      f"{first} in steps of {step}; use a range such as --array=0-{count - 1}")
    return offset // step, count


def slurm_task(env: Mapping[str, str]) -> tuple[int, int, int | None] | None:
    """(SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID) for a task of an `srun` step.

    A batch script run without `--ntasks` may carry SLURM_PROCID=0 alone: that is one task, the whole batch.
    """
    local = _integer(env, "SLURM_LOCALID", 0)
    if "SLURM_PROCID" in env and "SLURM_NTASKS" not in env:
        if _integer(env, "SLURM_PROCID", 0) != 0:
            raise _refuse(f"SLURM_PROCID={env['SLURM_PROCID']} is set but SLURM_NTASKS is not")
        return 0, 1, local
    world = _rank_in_world(env, "SLURM_PROCID", "SLURM_NTASKS")
    return None if world is None else (*world, local)


def cluster_share(env: Mapping[str, str]) -> ClusterShare:
    """This process's share of a batch, from its launcher's variables.

    - torchrun alone: share RANK+1 of WORLD_SIZE, GPU LOCAL_RANK.
    - A Slurm job array: share position+1 of SLURM_ARRAY_TASK_COUNT (see `slurm_array_position`); with torchrun
      inside each array task, each task's torchrun world splits that task's share further: share
      position·WORLD_SIZE + RANK + 1 of COUNT·WORLD_SIZE, GPU LOCAL_RANK.
    - Slurm tasks (`srun`): share SLURM_PROCID+1 of SLURM_NTASKS, GPU SLURM_LOCALID. With torchrun under Slurm
      (`srun torchrun --nnodes ...` with one rendezvous, or torchrun run by the batch script itself), torchrun's
      world is the one that holds every process, and it decides (see `_check_torchrun_spans_slurm_tasks`).
    - Neither: the whole batch, 1/1.
    """
    torch_world = torchrun_rank(env)
    array = slurm_array_position(env)
    tasks = None if array is not None else slurm_task(env)
    if torch_world is not None:
        rank, size, local = torch_world
        if array is not None:
            position, count = array
            return ClusterShare(position * size + rank + 1, count * size, local, _ARRAY + _TORCHRUN)
        if tasks is not None:
            _check_torchrun_spans_slurm_tasks(env, size, *tasks[:2])
        return ClusterShare(rank + 1, size, local, _TORCHRUN)
    if array is not None:
        position, count = array
        return ClusterShare(position + 1, count, _integer(env, "SLURM_LOCALID", 0), _ARRAY + ("SLURM_LOCALID",))
    if tasks is not None:
        rank, size, local = tasks
        return ClusterShare(rank + 1, size, local, ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"))
    return ClusterShare(1, 1, None)


_TORCHRUN = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
_ARRAY = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_STEP")


def _check_torchrun_spans_slurm_tasks(env: Mapping[str, str], world_size: int, task: int, tasks: int) -> None:
    """Refuse the one mix of the two launchers that cannot be resolved: several Slurm tasks, each with a torchrun
    world of its own (`srun --ntasks 2 torchrun --standalone ...`). Every world would hand out the same shares,
    so every item would be done once per task. A later task (SLURM_PROCID > 0) can see it: its torchrun world
    is one machine's alone (GROUP_WORLD_SIZE=1), or smaller than the number of tasks it should span. The first
    task cannot tell this from a batch script that runs one torchrun itself, which is right, and goes on.
    """
    if task == 0 or tasks == 1:
        return
    groups = _integer(env, "GROUP_WORLD_SIZE", 1)
    if groups == 1 or world_size < tasks:
        raise _refuse(f"SLURM_PROCID={task} of SLURM_NTASKS={tasks} runs its own torchrun world (WORLD_SIZE="
                      f"{world_size}, GROUP_WORLD_SIZE={env.get('GROUP_WORLD_SIZE', 'unset')}): every task would "
                      f"take the same shares; give torchrun one rendezvous over all tasks, or leave torchrun out")


def device_for_share(device: str, local_rank: int | None, cuda_devices: int) -> str:
    """The device a process of a launched group uses: `auto` and `cuda` become cuda:<local rank> when CUDA is
    there; a device the user named exactly (cuda:N, mps, cpu) and `auto` without CUDA are kept.

    One visible GPU is every local rank's GPU: Slurm's `--gpus-per-task=1` (or `--gpu-bind`) shows each task only
    its own, as device 0. More local ranks than several visible GPUs is refused: some would share a GPU that
    the launcher meant for one.
    """
    if local_rank is None or device not in ("auto", "cuda") or cuda_devices == 0:
        return device
    if cuda_devices == 1:
        return "cuda:0"
    if local_rank >= cuda_devices:
        raise _refuse(f"local rank {local_rank} (LOCAL_RANK / SLURM_LOCALID) but this machine shows "
                      f"{cuda_devices} CUDA devices")
    return f"cuda:{local_rank}"


def resolve_shard(shard: str | None, device: str, env: Mapping[str, str], cuda_devices: int) -> tuple[str | None, str]:
    """The `--shard` and `--device` words a command runs with: `auto` becomes `I/N` and its device; any other
    `--shard` (or none) leaves both as given."""
    if shard != "auto":
        return shard, device
    share = cluster_share(env)
    return share.shard_text, device_for_share(device, share.local_rank, cuda_devices)


def share_record(shard: str | None) -> dict | None:
    """With `--shard auto`, the record of this process's resolved share (`ClusterShare.record`); else None."""
    if shard != "auto":
        return None
    return cluster_share(os.environ).record(os.environ)


def resolve_shard_from_process(shard: str | None, device: str) -> tuple[str | None, str]:
    """`resolve_shard` with this process's environment and CUDA devices (torch is imported only for `auto`)."""
    if shard != "auto":
        return shard, device
    import torch

    return resolve_shard(shard, device, os.environ, torch.cuda.device_count() if torch.cuda.is_available() else 0)
