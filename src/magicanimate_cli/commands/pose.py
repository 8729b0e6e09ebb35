"""`magicanimate pose`: an ordinary video (or a folder of them) → DensePose renders in MagicAnimate's format.

The options that choose and tune the model, and those that select frames, are `animate`'s own declarations
(`common`), so `pose`, `animate --motion-from-video` and `fuse-long` cannot drift apart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..media.reader import FrameSelection
from ..runtime.errors import InputError, MagicAnimateError, SettingsError
from .common import (CRF_OPTION, DEVICE_OPTION, FILL_GAP_OPTION, FORMAT_OPTION, FRAME_STRIDE_OPTION, JSON_HELP,
                     MAX_FRAMES_OPTION, MIN_SCORE_OPTION, PEOPLE_OPTION, POSE_MODEL_OPTION, QUIET_HELP, SHARD_OPTION,
                     SMOOTH_OPTION, SMOOTH_RADIUS_OPTION, START_OPTION, WEIGHTS_DEFAULT, BatchFormat, People, flag,
                     load_pose_model, make_reporter, pose_settings, smooth_settings, usage)

HELP = ("Render VIDEO (an ordinary video or frame folder, or a folder of them) as DensePose in MagicAnimate's "
        "format: body parts in viridis colours on the (68, 1, 84) background.")


def pose(
    video: Path = typer.Argument(..., metavar="VIDEO", show_default=False,
                                 help="Video (mp4/mov/webm/avi/gif/mkv) or folder of frames; or a folder of videos "
                                      "and frame folders (batch)."),
    output: Path = typer.Option(..., "-o", "--output", help="Output .mp4/.webm/.gif, or a folder for PNG frames "
                                                            "(batch: the output folder)."),
    pose_model: str = POSE_MODEL_OPTION,
    min_score: float = MIN_SCORE_OPTION,
    people: People = PEOPLE_OPTION,
    start: int = START_OPTION,
    max_frames: Optional[int] = MAX_FRAMES_OPTION,
    frame_stride: int = FRAME_STRIDE_OPTION,
    weights: Optional[Path] = typer.Option(None, show_default=WEIGHTS_DEFAULT,
                                           help="Weights folder holding DensePose/ (see download-weights --pose)."),
    device: str = DEVICE_OPTION,
    crf: int = CRF_OPTION,
    skip_existing: bool = flag("--skip-existing", "Batch: skip videos whose render exists."),
    shard: Optional[str] = SHARD_OPTION,
    format: BatchFormat = FORMAT_OPTION,
    quiet: bool = flag("--quiet", QUIET_HELP, "-q"),
    as_json: bool = flag("--json", JSON_HELP),
    align_to: Optional[Path] = typer.Option(None, "--align-to", show_default="none",
                                            help="Scale and move the render (one transform) so that its person "
                                                 "covers the person of this reference image (see "
                                                 "docs/alignment.md)."),
    align_frame: int = typer.Option(0, "--align-frame", help="With --align-to: the frame matched to the "
                                                             "reference (0 = the first selected frame)."),
    align_pairs: Optional[str] = typer.Option(None, "--align-pairs", metavar="<M:R,...>", show_default="left to right",
                                              help="With --align-to and several people: pair render person M with "
                                                   "reference person R (counted from the left, from 1)."),
    smooth: bool = SMOOTH_OPTION,
    smooth_radius: Optional[int] = SMOOTH_RADIUS_OPTION,
    fill_gap: Optional[int] = FILL_GAP_OPTION,
) -> None:
    """Render VIDEO as DensePose in MagicAnimate's format."""
    from ..runtime.cluster import resolve_shard_from_process, share_record

    share = share_record(shard)
    shard, device = resolve_shard_from_process(shard, device)
    settings = pose_settings(pose_model, weights, device, min_score, people, crf,
                             smooth_settings(smooth, smooth_radius, fill_gap))
    selection = FrameSelection(start, max_frames, frame_stride)
    if not video.exists():
        raise InputError(f"{video}: video not found")
    if align_to is not None and not align_to.is_file():
        raise InputError(f"{align_to}: --align-to reference image not found")
    if align_frame != 0 and align_to is None:
        raise SettingsError("--align-frame chooses the frame --align-to matches; add --align-to")
    from ..animate.preflight import align_pairs as read_pairs

    pairs = read_pairs(align_pairs, align_to is not None, "--align-to")
    if _is_batch(video):
        if align_to is not None:
            raise SettingsError("--align-to aligns one render; give a single VIDEO")
        _run_batch(settings, selection, video, output, format, skip_existing, shard, quiet, as_json, share)
    else:
        _run_single(settings, selection, video, output, quiet, as_json, align_to, align_frame, pairs)


def _is_batch(video: Path) -> bool:
    """A folder holding frame images is one clip; a folder without any is a batch of videos and frame folders."""
    from ..media.reader import list_frame_files

    return video.is_dir() and not list_frame_files(video)


def _run_single(settings, selection: FrameSelection, video: Path, output: Path, quiet: bool, as_json: bool,
                align_to: Path | None = None, align_frame: int = 0, pairs=None) -> None:
    from ..media.files import check_output_writable
    from ..pose.job import run_pose_job

    check_output_writable(output)
    with make_reporter(quiet, as_json) as reporter:
        model, load_s = load_pose_model(settings, reporter)
        transform, alignment = None, None
        if align_to is not None:
            from ..animate.preflight import align_video_render

            transform, alignment = align_video_render(model, settings, video, align_to, align_frame, selection,
                                                      pairs, reporter)
            alignment = {"reference": str(align_to), **alignment}
        result = run_pose_job(model, settings, video, output, reporter, load_s, selection, transform, alignment)
    if as_json:
        print(json.dumps({"status": "ok", **result.summary()}))
    elif not quiet:
        rate = result.timings["frames_per_s"]
        typer.echo(f"wrote {result.output} ({result.stats.frames} frames, {result.fps} fps, {result.size[0]}×"
                   f"{result.size[1]}, {result.stats.frames_without_people} without people) at "
                   f"{rate} frames/s", err=True)


def _run_batch(settings, selection: FrameSelection, folder: Path, out_dir: Path, extension: str,
               skip_existing: bool, shard: str | None, quiet: bool, as_json: bool, share: dict | None = None) -> None:
    """Every video and frame folder in `folder` → `out_dir/<name>-pose.<format>`; failures are reported, the rest
    go on, and the exit code says whether any failed. `share` (`--shard auto`'s) goes into --json and each
    sidecar."""
    from ..animate.batch import list_motions, parse_shard, take_shard
    from ..pose.job import run_pose_job

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
                done.append(run_pose_job(model, settings, video, output, reporter, load_s, selection,
                                         extra=None if share is None else {"shard": share}).summary())
                load_s = 0.0
            except MagicAnimateError as exc:
                failures.append({"item": video.name, "error": str(exc)})
                typer.echo(f"error: {exc}", err=True)
    if as_json:
        print(json.dumps({"status": "failed" if failures else "ok", "done": len(done), "skipped": skipped,
                          "failed": len(failures), "items": done, "failures": failures,
                          **({"shard": share} if share is not None else {})}))
    elif not quiet:
        typer.echo(f"batch: {len(done)} written, {skipped} skipped, {len(failures)} failed", err=True)
    if failures:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("pose", help=HELP, cls=usage("VIDEO", "-o OUTPUT", "[OPTIONS]"))(pose)
