"""`magicanimate eval`: compare generated videos with ground truth using MagicAnimate's metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..evaluation.metrics import ALIGN_CHOICES, CLIP_CHOICES, METRICS, PROTOCOL_CHOICES, parse_metrics
from ..evaluation.weights import default_weights_dir
from .common import usage

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")  # evaluation.device's, which imports torch; a test keeps them equal


def run_eval(
    generated: Path = typer.Argument(..., metavar="GENERATED", show_default=False, help="Generated video file, folder of frames, or folder of videos."),
    ground_truth: Path = typer.Argument(..., metavar="GROUND_TRUTH", show_default=False, help="Ground truth in the same form; collections pair by name."),
    metrics: str = typer.Option(
        "all", "--metrics", metavar="<name,...|all>", show_default=True,
        help=f"Comma-separated subset of {', '.join(METRICS)}, or 'all' (every metric the weights on disk "
             "allow; the rest are listed as skipped).",
    ),
    protocol: Literal[PROTOCOL_CHOICES] = typer.Option(
        "gt-size", "--protocol", show_default=True,
        help="gt-size: every metric sees generated frames resized to the ground truth's size; disco: only L1, PSNR "
             "and SSIM do, exactly as DisCo's code (LPIPS then needs equal sizes; FID, FID-VID and FVD resize "
             "the frames as generated)."),
    clips: Literal[CLIP_CHOICES] = typer.Option(
        "16", "--clips", show_default=True,
        help="Samples of FID-VID and FVD: 16 (each non-overlapping 16-frame clip), video (one per video: DisCo "
             "on video files), sliding (every 16-frame window, stride 1: DisCo's newer frame-folder code)."),
    legacy_psnr: bool = typer.Option(
        False, "--legacy-psnr", show_default=True,
        help="DisCo's early uint8 PSNR that overflowed (inflated values, ~29 on TikTok); only to compare "
             "with published tables \\[default: off]",
    ),
    align: Literal[ALIGN_CHOICES] = typer.Option("strict", "--align", show_default=True,
                              help="Frame counts that differ: strict (error) or truncate (compare the first N)."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, show_default=True,
                                   help="Frames per batch (video networks take batch-size // 16 clips, at least 1)."),
    device: Literal[DEVICE_CHOICES] = typer.Option("auto", "--device", show_default=True,
                                                  help="Where the feature networks run."),
    weights: Path = typer.Option(None, "--weights", show_default=False,
                                 help="Weights directory; metric networks are read from its metrics/ folder "
                                      "\\[default: $MAGICANIMATE_HOME, else ~/.cache/magicanimate]"),
    json_path: Path = typer.Option(None, "--json", show_default=False,
                                   help="Also write the results as JSON to this file \\[default: none]"),
    csv_path: Path = typer.Option(None, "--csv", show_default=False,
                                  help="Also write the results as CSV to this file \\[default: none]"),
) -> None:
    """Score generated videos against ground truth: L1, PSNR, SSIM, LPIPS, FID, FID-VID, FVD."""
    # Imported here: they need torch, which every other command (and `--help`) would otherwise pay for.
    from ..evaluation.device import resolve_device
    from ..evaluation.report import table, write_csv, write_json
    from ..evaluation.runner import EvalSettings, evaluate

    settings = EvalSettings(
        weights_dir=weights if weights is not None else default_weights_dir(),
        device=resolve_device(device),
        metrics=parse_metrics(metrics),
        batch_size=batch_size,
        align=align,
        protocol=protocol,
        legacy_psnr=legacy_psnr,
        clips=clips,
    )
    err = Console(stderr=True)
    with Progress(TextColumn("evaluating"), BarColumn(), MofNCompleteColumn(), TextColumn("frames"),
                  TimeRemainingColumn(), console=err, transient=True,
                  disable=not err.is_terminal) as progress:
        task = progress.add_task("frames", total=None)
        report = evaluate(generated, ground_truth, settings,
                          on_start=lambda total: progress.update(task, total=total),
                          on_frames=lambda n: progress.advance(task, n))
    Console().print(table(report))
    for metric, reason in report.skipped.items():
        typer.echo(f"skipped {metric}: {reason}", err=True)
    for metric, note in report.notes.items():
        typer.echo(f"no value for {metric}: {note}", err=True)
    if json_path is not None:
        write_json(report, json_path)
    if csv_path is not None:
        write_csv(report, csv_path)


def register(app: typer.Typer) -> None:
    """Add the `eval` subcommand."""
    app.command(name="eval", cls=usage("GENERATED", "GROUND_TRUTH", "[OPTIONS]"))(run_eval)
