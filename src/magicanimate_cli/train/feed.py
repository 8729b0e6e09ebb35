"""Feeding the loop: a torch DataLoader whose items are (step, micro-batch) keys, read by worker processes ahead of
the step that needs them.

What a micro-batch holds is a pure function of its key (the step's plan, sampling.py, and this process's share of
it), and reading is deterministic, so the worker count only changes *when* a batch is ready, never *what* it is:
`--data-workers 0` (read in the training process) and `--data-workers N` give the same run bit for bit, and a
resumed run simply starts its keys at the restored step. Each worker opens its own files (dataset.reader keeps
open files per process) and ignores SIGINT, which the training process handles (a checkpoint after the step in
progress) and which a terminal sends to the whole process group.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .batches import FrameSource, RawBatch, read_batch
from .sampling import DataIndex, Mix, plan_step, share

PREFETCH = 2
"""Micro-batches each worker reads ahead (torch's default): enough to hide a slow read behind the next steps."""
WORKER_START = "spawn"
"""Workers start as fresh interpreters, not forks. A forked worker inherits the training process's FFmpeg objects
(decoders, scalers) with the state of threads that exist only in the parent, and a child that frees or reuses one
waits forever on a condition no thread will signal: seen in the suite, a worker stuck in libswscale's
`avpriv_slicethread_free` inside `to_ndarray`. Spawning costs an import of torch per worker, once per run (workers
live for the whole run), and needs a picklable source (DataFolder pickles its paths and indices)."""
MAX_DEFAULT_WORKERS = 8
"""More workers than this rarely pay: at 8 per GPU the data path outruns the GPU (docs/training.md)."""


@dataclass(frozen=True)
class FeedPlan:
    """Everything that decides this process's micro-batches (no state: every worker holds a copy)."""

    seed: int
    data: DataIndex
    mix: Mix
    global_batch: int
    clip_frames: int
    frame_stride: int
    ref_margin: int
    rank: int
    processes: int
    accumulation: int
    batch_size: int
    width: int
    height: int
    fit: str

    def micro_batch(self, source: FrameSource, step: int, micro: int) -> RawBatch:
        """Process `rank`'s part of micro-batch `micro` of step `step`, read and fitted."""
        plan = plan_step(step, self.seed, self.data, self.mix, self.global_batch, self.clip_frames,
                         self.frame_stride, self.ref_margin)
        mine = share(plan, self.rank, self.processes, micro, self.batch_size)
        return read_batch(mine, source, self.width, self.height, self.fit)


class MicroBatches(Dataset):
    """The map-style dataset of (step, micro) keys."""

    def __init__(self, plan: FeedPlan, source: FrameSource) -> None:
        self.plan, self.source = plan, source

    def __getitem__(self, key: tuple[int, int]) -> tuple[tuple[int, int], RawBatch]:
        return key, self.plan.micro_batch(self.source, *key)


class StepKeys(Sampler):
    """(step, micro) for steps start..end-1, in order; generated, not listed (a run may have millions)."""

    def __init__(self, start: int, end: int, accumulation: int) -> None:
        self.start, self.end, self.accumulation = start, end, accumulation

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((step, micro) for step in range(self.start, self.end) for micro in range(self.accumulation))

    def __len__(self) -> int:
        return max(0, self.end - self.start) * self.accumulation


def default_workers(processes_per_machine: int, cpus: int | None = None) -> int:
    """Worker processes per training process: the machine's cores shared among its training processes, one core
    left to each training process itself, at most MAX_DEFAULT_WORKERS; 0 (read in the training process) on a
    machine with a core or less per process."""
    cpus = cpus if cpus is not None else len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
        else (os.cpu_count() or 1)
    return max(0, min(MAX_DEFAULT_WORKERS, cpus // max(1, processes_per_machine) - 1))


class Feed:
    """The micro-batches of steps start..end-1 in order; `take(step, micro)` returns the next one (the caller
    times the wait: it is the step's data time)."""

    def __init__(self, plan: FeedPlan, source: FrameSource, start: int, end: int, workers: int) -> None:
        self.plan, self.next_key = plan, (start, 0)
        self.loader = DataLoader(MicroBatches(plan, source), batch_size=None,
                                 sampler=StepKeys(start, end, plan.accumulation), num_workers=workers,
                                 prefetch_factor=PREFETCH if workers else None, worker_init_fn=_worker_init,
                                 multiprocessing_context=WORKER_START if workers else None)
        self._batches = iter(self.loader)

    def take(self, step: int, micro: int) -> RawBatch:
        key, batch = next(self._batches)
        if tuple(key) != (step, micro):  # the loop and the feed disagree on what comes next: a bug, not bad data
            raise RuntimeError(f"data feed out of order: step {step} micro-batch {micro} asked for, {key} read")
        self.next_key = (step, micro + 1) if micro + 1 < self.plan.accumulation else (step + 1, 0)
        return batch

    def close(self) -> None:
        """Stop the workers now: dropping the loader's iterator shuts them down (its own finaliser)."""
        self._batches = None


def _worker_init(_worker_id: int) -> None:
    """Workers leave SIGINT to the training process, and read with one thread each (torch's default in workers,
    said here for the numpy and PIL work too)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)
