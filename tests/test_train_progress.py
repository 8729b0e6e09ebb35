"""The training display: step/steps, smoothed loss, lr, samples/s and data wait on a terminal; nothing otherwise."""

from __future__ import annotations

import io

from rich.console import Console

from magicanimate_cli.train.loop import StepTiming
from magicanimate_cli.train.metrics import StepRecord
from magicanimate_cli.train.progress import TrainProgress


def _record(step: int, loss: float) -> StepRecord:
    return StepRecord(step, loss, 1e-5, "frame", 0.5, 0)


def test_a_terminal_shows_step_smoothed_loss_lr_rate_and_data_wait():
    out = io.StringIO()
    display = TrainProgress(10, batch_size=2, console=Console(file=out, force_terminal=True, width=160))
    with display:
        display.update(_record(1, 1.0), StepTiming(0.5, 1.5))
        display.update(_record(2, 0.0), StepTiming(0.25, 0.75))
    text = out.getvalue()
    assert "2/10" in text and "loss 0.9000" in text  # 0.9 * 1.0 + 0.1 * 0.0
    assert "lr 1.00e-05" in text and "2.00 samples/s" in text and "data 0.25s" in text


def test_quiet_shows_nothing():
    out = io.StringIO()
    display = TrainProgress(10, batch_size=1, enabled=False, console=Console(file=out, force_terminal=True))
    with display:
        display.update(_record(1, 1.0), StepTiming(0.1, 0.1))
        display.note("skipped x")
    assert out.getvalue() == ""
