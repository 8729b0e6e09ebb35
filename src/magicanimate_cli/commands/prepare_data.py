"""`magicanimate prepare-data`: a folder of videos (and photos) → a DATA folder of (video, DensePose render) pairs.

The DensePose options are `pose`'s own declarations (`common`), so a DATA folder's renders are what `pose` draws.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..runtime.errors import OutputError, SettingsError
from .common import (CRF_OPTION, DEVICE_OPTION, FILL_GAP_OPTION, JSON_HELP, MIN_SCORE_OPTION, PEOPLE_OPTION,
                     POSE_MODEL_OPTION, QUIET_HELP, SHARD_OPTION, SMOOTH_OPTION, SMOOTH_RADIUS_OPTION,
                     WEIGHTS_DEFAULT, People, flag, load_pose_model, make_reporter, pose_settings, smooth_settings,
                     usage)

HELP = ("Prepare training data: render the DensePose of every video (and photo) under SOURCE and write DATA "
        "(videos/, densepose/, images/, images_densepose/, ready/, manifest.json; docs/training-data.md). "
        "With --hand-laid, make the pairs of a DATA folder laid out by hand training-ready, without DensePose.")


def prepare_data(
    source: Path = typer.Argument(..., metavar="SOURCE", show_default=False,
                                  help="Folder of videos and frame folders, at any depth (the TikTok dataset's "
                                       "<id>/images/ counts as the clip <id>)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", show_default=False,
                                          help="The DATA folder to write (created or added to)."),
    images: Optional[Path] = typer.Option(None, "--images", show_default="none",
                                          help="Folder of photos of people, for image-video joint training."),
    min_person_frames: float = typer.Option(0.5, "--min-person-frames",
                                            help="Keep a clip only if a person is found in at least this share of "
                                                 "its frames."),
    max_side: Optional[int] = typer.Option(None, "--max-side", show_default="the source's size",
                                           help="Scale clips and photos down so that their longer side is at most "
                                                "this many pixels."),
    short_side: int = typer.Option(512, "--short-side",
                                   help="Short side of the training-ready frames (ready/), for 512x512 training; "
                                        "smaller sources are kept as they are."),
    hand_laid: bool = flag("--hand-laid", "SOURCE is a DATA folder of pairs laid out by hand (videos/, densepose/): "
                                          "write their training-ready copies (ready/) without DensePose; no -o."),
    pose_model: str = POSE_MODEL_OPTION,
    min_score: float = MIN_SCORE_OPTION,
    people: People = PEOPLE_OPTION,
    smooth: bool = SMOOTH_OPTION,
    smooth_radius: Optional[int] = SMOOTH_RADIUS_OPTION,
    fill_gap: Optional[int] = FILL_GAP_OPTION,
    weights: Optional[Path] = typer.Option(None, show_default=WEIGHTS_DEFAULT,
                                           help="Weights folder holding DensePose/ (see download-weights --pose)."),
    device: str = DEVICE_OPTION,
    crf: int = CRF_OPTION,
    skip_existing: bool = flag("--skip-existing", "Keep the sources already prepared in DATA (resume a run)."),
    shard: Optional[str] = SHARD_OPTION,
    quiet: bool = flag("--quiet", QUIET_HELP, "-q"),
    as_json: bool = flag("--json", JSON_HELP),
) -> None:
    """Render every source's DensePose and write the DATA folder."""
    if hand_laid:
        return make_hand_laid_ready(source, output, short_side, quiet, as_json)
    if output is None:
        raise SettingsError("-o DATA is needed (the folder to write), unless SOURCE is a DATA folder and --hand-laid "
                            "is given")
    from ..animate.batch import parse_shard, take_shard
    from ..runtime.cluster import resolve_shard_from_process
    from ..dataset.layout import DataLayout
    from ..dataset.prepare import PrepareSettings, already_done, plan_sources, prepare

    shard, device = resolve_shard_from_process(shard, device)
    settings = PrepareSettings(pose_settings(pose_model, weights, device, min_score, people, crf,
                                             smooth_settings(smooth, smooth_radius, fill_gap)),
                               min_person_frames, max_side, skip_existing, short_side)
    settings.validate()
    share = parse_shard(shard)
    if output.exists() and not output.is_dir():
        raise OutputError(f"{output}: exists and is not a folder; DATA must be a folder")
    layout = DataLayout(output)
    plan = plan_sources(source, images, output)
    items = take_shard(plan.items, share)
    todo = [item for item in items if not (skip_existing and already_done(layout, item))]
    with make_reporter(quiet, as_json) as reporter:
        if len(items) > len(todo):
            reporter.note(f"keeping {len(items) - len(todo)} source(s) already prepared")
        model = load_pose_model(settings.pose, reporter)[0] if todo else None
        summary = prepare(model, settings, plan, todo, len(items) - len(todo), layout, reporter)
    if as_json:
        print(json.dumps({"status": "ok", **summary.record()}))
    elif not quiet:
        typer.echo(f"prepare-data: {len(summary.prepared)} prepared, {summary.existing} kept, "
                   f"{len(summary.skipped)} skipped; {output} holds {len(summary.manifest['videos'])} video(s) "
                   f"and {len(summary.manifest['images'])} photo(s)", err=True)
        for skipped in summary.skipped:
            typer.echo(f"  skipped {skipped['source']}: {skipped['reason']}", err=True)


def make_hand_laid_ready(data: Path, output: Optional[Path], short_side: int, quiet: bool, as_json: bool) -> None:
    """--hand-laid: DATA's video pairs get their ready copies (those already current are kept)."""
    from ..dataset.layout import DataLayout
    from ..dataset.ready import make_ready

    if output is not None and output.resolve() != data.resolve():
        raise SettingsError("--hand-laid makes SOURCE itself training-ready; leave -o out (or give SOURCE again)")
    if short_side < 16:
        raise SettingsError(f"--short-side must be 16 or more (got {short_side})")
    with make_reporter(quiet, as_json) as reporter:
        summary = make_ready(DataLayout(data), reporter, short_side)
    if as_json:
        print(json.dumps({"status": "ok", "data": str(data), "made_ready": len(summary.made),
                          "already_ready": len(summary.current)}))
    elif not quiet:
        typer.echo(f"prepare-data --hand-laid: {len(summary.made)} pair(s) made training-ready, "
                   f"{len(summary.current)} already were; {data / 'ready'}", err=True)


def register(app: typer.Typer) -> None:
    app.command("prepare-data", help=HELP, cls=usage("SOURCE", "-o DATA", "[OPTIONS]"))(prepare_data)
