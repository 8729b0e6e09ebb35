"""`magicanimate pose`: an ordinary video (or a folder of them) → DensePose renders in MagicAnimate's format.

The options that choose and tune the model are defined here once and reused by `animate --motion-from-video`
(and through it by `fuse-long`), so the three commands cannot drift apart.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer

from ..errors import InputError, MagicAnimateError, SettingsError

HELP = ("Render VIDEO (an ordinary video or frame folder, or a folder of them) as DensePose in MagicAnimate's "
        "format: body parts in viridis colours on the (68, 1, 84) background.")

POSE_MODEL_OPTION = typer.Option(
    "r50", "--pose-model", help="r50 | r101 (files in <weights>/DensePose/, see download-weights --pose), or a "
                                "TorchScript file with the same contract.")
MIN_SCORE_OPTION = typer.Option(0.8, "--min-score", help="Draw people detected with a score above this.")
PEOPLE_OPTION = typer.Option("all", "--people", help="all | largest: draw every person, or only the one with the "
                                                     "largest box.")
SMOOTH_OPTION = typer.Option(False, "--smooth/--no-smooth", help="Steady the render: follow each person, smooth its "
                             "box and part labels over neighbouring frames, fill short misses (docs/smoothing.md).")
SMOOTH_RADIUS_OPTION = typer.Option(None, "--smooth-radius", show_default="3",
                                    help="With --smooth: frames each side combined.")
FILL_GAP_OPTION = typer.Option(None, "--fill-gap", show_default="3",
                               help="With --smooth: longest run of missed frames filled in.")


def pose(
    video: Path = typer.Argument(..., help="Video (mp4/mov/webm/avi/gif/mkv) or folder of frames; or a folder of "
                                           "videos and frame folders (batch)."),
    output: Path = typer.Option(..., "-o", "--output", help="Output .mp4/.webm/.gif, or a folder for PNG frames "
                                                            "(batch: the output folder)."),
    pose_model: str = POSE_MODEL_OPTION,
    min_score: float = MIN_SCORE_OPTION,
    people: str = PEOPLE_OPTION,
    weights: Optional[Path] = typer.Option(None, show_default="$MAGICANIMATE_HOME, else ~/.cache/magicanimate",
                                           help="Weights folder holding DensePose/ (see download-weights --pose)."),
    device: str = typer.Option("auto", help="auto | cuda | cuda:N | mps | cpu."),
    crf: int = typer.Option(18, help="Video quality for mp4/webm (lower is better)."),
    skip_existing: bool = typer.Option(False, "--skip-existing", show_default="off",
                                       help="Batch: skip videos whose render exists."),
    shard: Optional[str] = typer.Option(None, show_default="all", help="Batch: run only share I of N (I/N, 1-based)."),
    format: str = typer.Option("mp4", "--format", help="Batch: output type mp4 | webm | gif | png."),
    quiet: bool = typer.Option(False, "--quiet", "-q", show_default="off", help="No progress display."),
    as_json: bool = typer.Option(False, "--json", show_default="off",
                                 help="Print one machine-readable summary line to stdout."),
    smooth: bool = SMOOTH_OPTION,
    smooth_radius: Optional[int] = SMOOTH_RADIUS_OPTION,
    fill_gap: Optional[int] = FILL_GAP_OPTION,
) -> None:
    """Render VIDEO as DensePose in MagicAnimate's format."""
    settings = pose_settings(pose_model, weights, device, min_score, people, crf,
                             smooth_settings(smooth, smooth_radius, fill_gap))
    if not video.exists():
        raise InputError(f"{video}: video not found")
    if _is_batch(video):
        _run_batch(settings, video, output, format, skip_existing, shard, quiet, as_json)
    else:
        _run_single(settings, video, output, quiet, as_json)


def smooth_settings(smooth: bool, radius: int | None, fill_gap: int | None):
    """SmoothSettings for --smooth (None without it); its tuning options alone are refused."""
    from ..pose.track import SmoothSettings

    if not smooth:
        named = [n for n, v in (("--smooth-radius", radius), ("--fill-gap", fill_gap)) if v is not None]
        if named:
            raise SettingsError(f"{' and '.join(named)} tune --smooth; add --smooth")
        return None
    defaults = SmoothSettings()
    return SmoothSettings(radius=defaults.radius if radius is None else radius,
                          fill_gap=defaults.fill_gap if fill_gap is None else fill_gap)


def pose_settings(model: str, weights: Path | None, device: str, min_score: float, people: str, crf: int,
                  smooth=None):
    """Checked PoseSettings from the command-line words."""
    from ..config import default_weights_dir
    from ..pose.settings import PoseSettings

    settings = PoseSettings(model=model, weights=Path(weights).expanduser() if weights else default_weights_dir(),
                            device=device, min_score=min_score, people=people, crf=crf, smooth=smooth)
    settings.validate()
    return settings


def load_pose_model(settings, reporter):
    """Find and load the DensePose model once per command; returns it and the seconds it took."""
    from ..devices import resolve_device
    from ..pose.model import PoseModel, model_path

    device = resolve_device(settings.device)
    path = model_path(settings.model, settings.weights)
    reporter.note(f"loading DensePose model {path} on {device}")
    started = time.perf_counter()
    model = PoseModel.load(path, device)
    return model, time.perf_counter() - started


def _is_batch(video: Path) -> bool:
    """A folder holding frame images is one clip; a folder without any is a batch of videos and frame folders."""
    from ..media import list_frame_files

    return video.is_dir() and not list_frame_files(video)


def _run_single(settings, video: Path, output: Path, quiet: bool, as_json: bool) -> None:
    from ..job import check_output_writable
    from ..pose.job import run_pose_job
    from .animate import make_reporter

    check_output_writable(output)
    with make_reporter(quiet, as_json) as reporter:
        model, load_s = load_pose_model(settings, reporter)
        result = run_pose_job(model, settings, video, output, reporter, load_s)
    if as_json:
        print(json.dumps({"status": "ok", **result.summary()}))
    elif not quiet:
        rate = result.timings["frames_per_s"]
        typer.echo(f"wrote {result.output} ({result.stats.frames} frames, {result.fps} fps, {result.size[0]}×"
                   f"{result.size[1]}, {result.stats.frames_without_people} without people) at "
                   f"{rate} frames/s", err=True)


def _run_batch(settings, folder: Path, out_dir: Path, extension: str, skip_existing: bool, shard: str | None,
               quiet: bool, as_json: bool) -> None:
    """Every video and frame folder in `folder` → `out_dir/<name>-pose.<format>`; failures are reported, the rest
    go on, and the exit code says whether any failed."""
    from ..batch import list_motions, parse_shard, take_shard
    from ..pose.job import run_pose_job
    from .animate import make_reporter

    if extension not in ("mp4", "webm", "gif", "png"):
        raise SettingsError(f"--format {extension}: expected mp4, webm, gif or png")
    videos = list_motions(folder)
    if not videos:
        raise InputError(f"{folder}: no videos, frame images or frame folders in this folder")
    suffix = "" if extension == "png" else f".{extension}"
    items = take_shard([(v, out_dir / f"{v.stem if v.is_file() else v.name}-pose{suffix}") for v in videos],
                       parse_shard(shard))
    todo = [(v, o) for v, o in items if not (skip_existing and o.exists())]
    skipped = len(items) - len(todo)
    done, failures = [], []
    with make_reporter(quiet, as_json) as reporter:
        if skipped:
            reporter.note(f"skipping {skipped} video(s) whose render exists")
        if todo:  # a missing or broken model stops the whole batch: every item would fail the same way
            model, load_s = load_pose_model(settings, reporter)
        for number, (video, output) in enumerate(todo, start=1):
            reporter.note(f"[{number}/{len(todo)}] {video.name} → {output}")
            try:
                done.append(run_pose_job(model, settings, video, output, reporter, load_s).summary())
                load_s = 0.0
            except MagicAnimateError as exc:
                failures.append({"item": video.name, "error": str(exc)})
                typer.echo(f"error: {exc}", err=True)
    if as_json:
        print(json.dumps({"status": "failed" if failures else "ok", "done": len(done), "skipped": skipped,
                          "failed": len(failures), "items": done, "failures": failures}))
    elif not quiet:
        typer.echo(f"batch: {len(done)} written, {skipped} skipped, {len(failures)} failed", err=True)
    if failures:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("pose", help=HELP)(pose)
