"""The training display: step/steps, smoothed loss, lr, samples/s, data wait and ETA on one rich line."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .loop import StepTiming
from .metrics import StepRecord

SMOOTHING = 0.9
"""Weight of the past in the displayed loss (an exponential moving average: single steps are noisy)."""


class TrainProgress:
    """A context manager; `update` after every step. Silent when `enabled` is False (--quiet, --json)."""

    def __init__(self, total: int, batch_size: int, enabled: bool = True, console: Console | None = None) -> None:
        self.batch_size, self.enabled = batch_size, enabled
        self.console = console or Console(file=sys.stderr)
        self.progress = Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("loss {task.fields[loss]}  lr {task.fields[lr]}  {task.fields[rate]}  "
                                            "data {task.fields[wait]}"),
                                 TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=self.console,
                                 disable=not enabled or not self.console.is_terminal)
        self.task = self.progress.add_task("train", total=total, loss="?", lr="?", rate="?", wait="?")
        self.smoothed: float | None = None

    def __enter__(self) -> "TrainProgress":
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def start_at(self, step: int) -> None:
        self.progress.update(self.task, completed=step)

    def update(self, record: StepRecord, timing: StepTiming) -> None:
        self.smoothed = record.loss if self.smoothed is None else (
            SMOOTHING * self.smoothed + (1 - SMOOTHING) * record.loss)
        seconds = timing.data_s + timing.compute_s
        self.progress.update(self.task, completed=record.step, loss=f"{self.smoothed:.4f}", lr=f"{record.lr:.2e}",
                             rate=f"{self.batch_size / seconds:.2f} samples/s" if seconds > 0 else "?",
                             wait=f"{timing.data_s:.2f}s")

    def note(self, message: str) -> None:
        if self.enabled:
            self.progress.console.print(message, markup=False, highlight=False)
