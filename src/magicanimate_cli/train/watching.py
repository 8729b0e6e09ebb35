"""What a run does at each held-out measurement: measure on every process, record it in metrics.jsonl
(`{"step", "val": {...}}`), send it to the trackers and redraw RUN/report.png.

Every process measures its share of the items (heldout.HeldOut) and the shares are joined in item order, so the
record is the same with any process count; only the main process writes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from . import tracking
from .heldout import HeldOut
from .metrics import MetricsLog
from .processes import gather_objects, on_main
from .report import REPORT, read_run, write_report


def held_out_hook(trainer, held: HeldOut, run: Path) -> Callable[[int], dict]:
    """The loop's call at step N: the record, written and drawn by the main process."""
    acc = trainer.accelerator

    def measure(step: int) -> dict:
        val = held.measure(acc.process_index, acc.num_processes, acc.autocast, lambda mine: gather_objects(acc, mine))
        on_main(acc, lambda: record(run, step, val))
        tracking.log_held_out(acc, trainer.settings.log, step, val)
        return val

    return measure


def record(run: Path, step: int, val: dict) -> None:
    """The main process's part: the metrics line, then the report redrawn from the run's files."""
    MetricsLog(run).append({"step": step, "val": val})
    write_report([read_run(run)], run / REPORT)
