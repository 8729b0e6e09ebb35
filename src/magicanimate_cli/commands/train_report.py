"""`magicanimate train-report RUN [RUN2 ...] -o report.png`: the training report of finished or running runs, several
on one sheet to compare (train/report.py draws it; a run redraws its own RUN/report.png at each held-out
measurement)."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import usage


def run_train_report(
    runs: list[Path] = typer.Argument(..., metavar="RUN...", show_default=False,
                                      help="Run folders of `magicanimate train` (finished or running)."),
    output: Path = typer.Option(..., "-o", "--output", help="The PNG to write."),
) -> None:
    """Draw training loss, held-out loss, condition gains, lr and speed of one or more runs on one sheet."""
    from ..train.report import read_run, write_report

    series = [read_run(run) for run in runs]  # every run is read (and a bad one named) before anything is written
    typer.echo(f"wrote {write_report(series, output)}")


def register(app: typer.Typer) -> None:
    """Add the `train-report` subcommand."""
    app.command(name="train-report", cls=usage("RUN [RUN2 ...]", "-o report.png"))(run_train_report)
