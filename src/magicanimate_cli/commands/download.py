"""`magicanimate download-weights`: fetch, check or preview the weights directory the engine loads."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Literal

import typer
from rich.console import Console
from rich.progress import (BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TimeRemainingColumn,
                           TransferSpeedColumn)
from rich.table import Table

from ..runtime.errors import SettingsError, WeightsError

_STATUS_TEXT = {
    "fetch": "to fetch",
    "resume": "to resume",
    "present": "present",
    "fetched": "fetched",
    "resumed": "resumed",
    "if not covered": "fetched only if temporal_attention.ckpt lacks UNet weights",
    "skipped: covered": "skipped: temporal_attention.ckpt carries the whole UNet",
}


def _console(stderr: bool = False) -> Console:
    """Wide enough off a terminal (logs, pipes) that file names are never wrapped or cut."""
    console = Console(stderr=stderr)
    return console if console.is_terminal else Console(stderr=stderr, width=200)


class RichObserver:
    """Per-file and total progress (bytes, rate, ETA) on a terminal; one line per finished file elsewhere."""

    def __init__(self) -> None:
        from ..download import human

        self.human = human
        self.err = _console(stderr=True)
        self.live = self.err.is_terminal
        self.progress = Progress(TextColumn("{task.description}", justify="left"), BarColumn(), DownloadColumn(),
                                 TransferSpeedColumn(), TimeRemainingColumn(), console=self.err, transient=True,
                                 disable=not self.live)
        self.total: TaskID | None = None
        self.current: TaskID | None = None
        self.files: list = []

    def __enter__(self) -> "RichObserver":
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def planned(self, files: Sequence) -> None:
        self.files = list(files)
        todo = [f for f in files if f.status in ("fetch", "resume")]
        size = sum(f.size or 0 for f in todo)
        have = sum(f.have for f in todo)
        if todo:
            self.total = self.progress.add_task("total", total=size, completed=have)

    def started(self, item) -> None:
        if self.total is not None and item.unet_weights:  # decided late: grow the total
            task = self.progress.tasks[self.total]
            self.progress.update(self.total, total=(task.total or 0) + (item.size or 0),
                                 completed=task.completed + item.have)
        elif self.total is None:
            self.total = self.progress.add_task("total", total=(item.size or 0), completed=item.have)
        self.current = self.progress.add_task(item.local, total=item.size, completed=item.have)

    def advanced(self, item, nbytes: int) -> None:
        if self.current is not None:
            self.progress.advance(self.current, nbytes)
        if self.total is not None:
            self.progress.advance(self.total, nbytes)

    def finished(self, item) -> None:
        if self.current is not None:
            self.progress.remove_task(self.current)
            self.current = None
        if item.status in ("fetched", "resumed") or item.status.startswith("failed"):
            verb = item.status if not item.status.startswith("failed") else "failed"
            self.err.print(f"{verb} {item.local} ({self.human(item.transferred)} transferred)", highlight=False)

    def note(self, message: str) -> None:
        self.err.print(message, highlight=False)


def _status(item) -> str:
    if item.status.startswith("failed: "):
        return "failed: " + item.status.removeprefix("failed: ").removeprefix(f"{item.local}: ")
    text = _STATUS_TEXT.get(item.status, item.status)
    if item.status == "resume":
        text += f" ({item.have:,} bytes on disk)"
    if item.status == "resumed":
        text += f" (from byte {item.have - item.transferred:,})"
    return text


def _table(files: Sequence, title: str) -> Table:
    from ..download import human

    table = Table(title=title, title_justify="left")
    table.add_column("File", no_wrap=True)
    table.add_column("Size", justify="right", no_wrap=True)
    table.add_column("Status")
    for item in files:
        table.add_row(item.local, human(item.size), _status(item))
    return table


def _summary(report) -> str:
    from ..download import human

    if report.dry_run:
        line = f"Would transfer {human(report.to_transfer)}"
        if report.conditional:
            line += (f", plus {human(report.conditional)} if temporal_attention.ckpt does not carry the whole UNet "
                     "(it is checked once it is on disk)")
        return line + f", into {report.root}"
    if report.transferred == 0:
        present = sum(1 for f in report.files if f.status == "present")
        return f"Nothing to transfer: the {present} files needed were already in place in {report.root}"
    placed = sum(1 for f in report.files if f.status in ("fetched", "resumed"))
    return f"Transferred {human(report.transferred)} ({placed} files) into {report.root}"


def _check(root: Path, metrics: bool, pose: str | None, motion_module: bool = False) -> None:
    from ..download import check_directory, check_metric_weights
    from ..evaluation.weights import METRIC_WEIGHT_FILES

    problems = (check_metric_weights(root, METRIC_WEIGHT_FILES) if metrics
                else check_directory(root, pose, motion_module))
    what = "metric weight files" if metrics else "weights directory"
    if problems:
        out = _console()
        for problem in problems:
            out.print(f"✗ {problem}", highlight=False, soft_wrap=True)
        raise WeightsError(f"{root}: {len(problems)} problem(s) with the {what}; first: {problems[0]}")
    typer.echo(f"✓ {root}: the {what} is complete" + ("" if metrics else " and the engine can load it")
               + (" (with the DensePose model)" if pose and not metrics else "")
               + (" (with the AnimateDiff motion module)" if motion_module and not metrics else ""))
    if not metrics:
        _echo_sources(root)


def _echo_sources(root: Path) -> None:
    """Name the commit each part came from, as `download-weights` recorded it."""
    from ..engine.sources import MANIFEST, source_summary

    sources = source_summary(root)
    if not sources:
        typer.echo(f"  sources: not recorded ({MANIFEST} is absent: the folder was not filled by download-weights)")
        return
    typer.echo(f"  sources ({root / MANIFEST}):")
    for key, entry in sources.items():
        typer.echo(f"    {key}: {entry['repo']}@{entry['requested']} = commit {entry['commit']}")


def download_weights(
    directory: Path = typer.Option(None, "--dir", show_default=False,
                                   help="Weights directory to fill \\[default: $MAGICANIMATE_HOME, else "
                                        "~/.cache/magicanimate]"),
    sd_repo: str = typer.Option("stable-diffusion-v1-5/stable-diffusion-v1-5", "--sd-repo", metavar="<repo>",
                                show_default=True,
                                help="Stable Diffusion 1.5 repository (unet, text_encoder, tokenizer, scheduler)."),
    vae_repo: str = typer.Option("stabilityai/sd-vae-ft-mse", "--vae-repo", metavar="<repo>", show_default=True,
                                 help="VAE repository."),
    magicanimate_repo: str = typer.Option("zcxu-eric/MagicAnimate", "--magicanimate-repo",
                                          metavar="<repo>", show_default=True,
                                          help="MagicAnimate repository (appearance encoder, controlnet, "
                                               "temporal attention)."),
    revision: list[str] = typer.Option(
        [], "--revision", show_default=False, metavar="PART=REV",
        help="Revision (branch, tag or commit) of one repository, PART one of sd, vae, magicanimate, densepose, "
             "animatediff; "
             "repeatable; the commit each resolves to is recorded in <dir>/.magicanimate/sources.json "
             "\\[default: main for each]"),
    variant: Literal["fp32", "fp16"] = typer.Option("fp32", "--variant", show_default=True,
                                help="fp16: take half-precision files where a repository has them (the engine "
                                     "loads either)."),
    token: str = typer.Option(None, "--token", metavar="<token>", show_default=False,
                              help="Hugging Face token for private or gated repositories \\[default: $HF_TOKEN, "
                                   "else the token saved by `hf auth login`]"),
    check: bool = typer.Option(False, "--check", show_default=False,
                               help="Verify the directory without the network (files present, headers readable, "
                                    "tensor names and shapes as the engine loads them); non-zero exit if not "
                                    "\\[default: off]"),
    dry_run: bool = typer.Option(False, "--dry-run", show_default=False,
                                 help="List what would be fetched and the total size; transfer nothing "
                                      "\\[default: off]"),
    pose: bool = typer.Option(False, "--pose", show_default=False,
                              help="Also fetch the DensePose TorchScript model that `magicanimate pose` runs, into "
                                   "<dir>/DensePose/ (with --check: verify it too) \\[default: off]"),
    pose_backbone: Literal["r50", "r101"] = typer.Option("r50", "--pose-backbone", show_default=True,
                                      help="With --pose: r50 (densepose_r50_fpn_dl.torchscript, 265 MB) or r101 "
                                           "(densepose_r101_fpn_dl.torchscript, 342 MB)."),
    motion_module: bool = typer.Option(False, "--motion-module", show_default=False,
                                       help="Also fetch AnimateDiff's motion module mm_sd_v15.ckpt (guoyww/animatediff, "
                                            "1.7 GB), the temporal layers MagicAnimate's training started from, into "
                                            "<dir>/animatediff/ (with --check: verify it too) \\[default: off]"),
    metrics: bool = typer.Option(False, "--metrics", show_default=False,
                                 help="Fetch (or with --check, verify) the evaluation metric weights into "
                                      "<dir>/metrics/ instead of the animation weights \\[default: off]"),
    metrics_mirror: str = typer.Option(None, "--metrics-mirror", metavar="<url>", show_default=False,
                                       help="With --metrics: fetch each file from URL/<file name> instead of its "
                                            "publisher \\[default: the publishers' URLs]"),
) -> None:
    """Fetch the weights MagicAnimate needs from the Hugging Face Hub (resumable, checked, atomic)."""
    from ..download import POSE_MODELS, DownloadSettings, HubAccess, default_sources, download_metric_weights
    from ..download import download_weights as fetch
    from ..download import parse_revisions
    from ..evaluation.weights import METRIC_WEIGHT_FILES, default_weights_dir

    root = (directory if directory is not None else default_weights_dir()).expanduser()
    if check and dry_run:
        raise SettingsError("--check and --dry-run: choose one")
    if metrics_mirror and not metrics:
        raise SettingsError("--metrics-mirror applies only with --metrics")
    backbone = pose_backbone.strip().lower()
    if backbone not in POSE_MODELS:
        raise SettingsError(f"--pose-backbone {pose_backbone}: choose one of {', '.join(POSE_MODELS)}")
    if backbone != "r50" and not pose:
        raise SettingsError(f"--pose-backbone {backbone} applies only with --pose")
    if (pose or motion_module) and metrics:
        raise SettingsError(f"{'--pose' if pose else '--motion-module'} and --metrics: fetch one kind at a time")
    if check:
        _check(root, metrics, backbone if pose else None, motion_module)
        return
    access = HubAccess.from_env(token=token)
    if metrics:
        _report(partial(download_metric_weights, root, access, metrics_mirror, dry_run=dry_run,
                        specs=METRIC_WEIGHT_FILES), "Metric weights")
        return
    repos = {"sd": sd_repo, "vae": vae_repo, "magicanimate": magicanimate_repo}
    revisions = parse_revisions(revision)
    sources = {k: replace(s, repo_id=repos.get(k, s.repo_id), revision=revisions.get(k, s.revision))
               for k, s in default_sources().items()}
    settings = DownloadSettings(root=root, sources=sources, variant=variant.lower(), access=access,
                                pose=backbone if pose else None, motion_module=motion_module)
    _report(partial(fetch, settings, dry_run=dry_run), "Weights")


def _report(run: Callable, title: str) -> None:
    """Run a download with live progress, then print the closing table (also when some files failed)."""
    observer = RichObserver()
    try:
        with observer:
            report = run(observer)
    except WeightsError:
        if observer.files:
            _console().print(_table(observer.files, title))
        raise
    if not report.files:
        return
    _console().print(_table(report.files, title + (" (dry run)" if report.dry_run else "")))
    typer.echo(_summary(report))


def register(app: typer.Typer) -> None:
    app.command("download-weights")(download_weights)
