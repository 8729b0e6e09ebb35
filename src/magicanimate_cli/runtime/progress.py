"""Progress display: denoising (steps × windows) with rate and ETA, then decode/encode. Silent when quiet."""

from __future__ import annotations

import sys
from contextlib import AbstractContextManager

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.text import Text


class RateColumn(ProgressColumn):
    """Units per second (windows/s while denoising, frames/s while decoding), or per unit when slower."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if not speed:
            return Text("  ?/s", style="progress.data.speed")
        if speed >= 1:
            return Text(f"{speed:5.2f}/s", style="progress.data.speed")
        return Text(f"{1 / speed:5.1f}s/it", style="progress.data.speed")


class Reporter(AbstractContextManager):
    """What a job tells the user; the base class says nothing (`--quiet`, `--json`, tests)."""

    def phase(self, name: str, total: int) -> None:
        """Start a phase of `total` units (windows, frames)."""

    def advance(self, units: int = 1) -> None:
        """Mark units of the current phase done."""

    def note(self, message: str) -> None:
        """A one-line message (not an error)."""

    def warn(self, message: str) -> None:
        """A one-line warning on stderr: shown even when quiet, since the result may not be what was meant."""
        print(f"warning: {message}", file=sys.stderr, flush=True)

    def __exit__(self, *exc) -> None:
        return None


class RichReporter(Reporter):
    """A rich progress bar on stderr, one line per phase."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(file=sys.stderr)
        self.progress = Progress(
            TextColumn("{task.description:<10}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[progress.percentage]{task.percentage:>3.0f}%"),
            RateColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.task = None

    def __enter__(self) -> "RichReporter":
        self.progress.start()
        return self

    def phase(self, name: str, total: int) -> None:
        if self.task is not None:
            self.progress.update(self.task, completed=self.progress.tasks[self.task].total)
        self.task = self.progress.add_task(name, total=total)

    def advance(self, units: int = 1) -> None:
        if self.task is not None:
            self.progress.advance(self.task, units)

    def note(self, message: str) -> None:
        self.progress.console.print(message)

    def warn(self, message: str) -> None:
        self.progress.console.print(f"warning: {message}", markup=False, highlight=False, soft_wrap=True)

    def __exit__(self, *exc) -> None:
        self.progress.stop()
        return None
