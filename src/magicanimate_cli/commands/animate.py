"""`magicanimate animate`: one reference and one motion, or folders of them."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import typer

from ..animate.settings import AnimateSettings
from ..runtime.errors import InputError, MagicAnimateError, SettingsError
from .common import (animation_options, check_animation_weights, load_animator, make_reporter, pose_request,
                     settings_from_options, usage)

HELP = ("Animate REFERENCE (an image) along MOTION (a DensePose video or frame folder) into OUTPUT.\n\n"
        "Batch: REFERENCE and MOTION folders animate every pair into the folder OUTPUT; --pairs CSV -o OUT_DIR "
        "takes the pairs from a CSV instead (REFERENCE and MOTION are then left out).")


def animate(**options) -> None:
    """Animate REFERENCE (an image) along MOTION (a DensePose video or frame folder) into OUTPUT."""
    from ..animate.preflight import motion_check
    from ..runtime.cluster import resolve_shard_from_process, share_record

    share = share_record(options["shard"])
    options["shard"], options["device"] = resolve_shard_from_process(options["shard"], options["device"])
    settings = settings_from_options(**options)
    check_animation_weights(settings)
    pose = pose_request(settings, **options)
    check = motion_check(settings, **options)
    run_command(settings, options["reference"], options["motion"], options["output"], options["pairs"],
                options["skip_existing"], options["shard"], options["format"], options["quiet"],
                options["as_json"], pose, check, share)


animate.__signature__ = inspect.signature(animation_options, eval_str=True)


def run_command(settings: AnimateSettings, reference: Path | None, motion: Path | None, output: Path,
                pairs: Path | None, skip_existing: bool, shard: str | None, extension: str, quiet: bool,
                as_json: bool, pose=None, check=None, share: dict | None = None) -> None:
    """Single item or batch; `pose` (a PoseRequest) renders each motion from an ordinary video first; `check` (a
    preflight.MotionCheck) aligns and previews the motion; `share` is `--shard auto`'s resolved share, recorded
    in the batch's --json and in each item's sidecar."""
    from ..animate.batch import cross_product, parse_shard, read_pairs, take_shard
    from ..animate.preflight import check_preview_path

    batch = pairs is not None or (reference is not None and reference.is_dir())
    if not batch:
        if reference is None or motion is None:
            raise SettingsError("give REFERENCE and MOTION (or folders of them, or --pairs CSV)")
        _check_exists(reference, "reference image")
        _check_exists(motion, "motion")
        if check is not None:
            check_preview_path(check.preview, batch=False)
        _run_single(settings, reference, motion, output, quiet, as_json, pose, check)
        return
    if pose is not None and pose.save is not None:
        raise SettingsError("--save-pose names one render; it works with a single MOTION, not a batch")
    if pairs is not None:
        items = read_pairs(pairs, output, extension)
    else:
        if motion is None or not motion.is_dir():
            raise InputError(f"{motion}: in batch mode MOTION must be a folder of motions")
        items = cross_product(reference, motion, output, extension)
    _run_batch(settings, take_shard(items, parse_shard(shard)), skip_existing, quiet, as_json, pose, check, share)


def _check_exists(path: Path, what: str) -> None:
    if not path.exists():
        raise InputError(f"{path}: {what} not found")


def _run_single(settings: AnimateSettings, reference: Path, motion: Path, output: Path, quiet: bool,
                as_json: bool, pose=None, check=None) -> None:
    from ..animate.job import pick_seed, run_job
    from ..animate.preflight import check_motion, load_pose_model_for
    from ..animate.rendered_motion import animation_motion
    from ..media.files import check_output_writable

    settings = pick_seed(settings)
    check_output_writable(output)
    if pose is not None and pose.save is not None:
        check_output_writable(pose.save)
    with make_reporter(quiet, as_json) as reporter:
        pose_model = load_pose_model_for(pose, check, reporter)
        # the render comes first: a video that cannot be read fails before the animation models load
        with animation_motion(pose_model, pose, settings, motion, output, reporter) as (frames, run_settings, extra):
            checked = check_motion(check, run_settings, reference, frames,
                                   None if check is None else check.preview_path(output, batch=False), pose_model,
                                   reporter, motion, share_frames=check is not None and not check.preview_only)
            if check is not None and check.preview_only:
                _report_preview(checked, as_json, quiet)
                return
            animator, load_s = load_animator(settings, reporter)
            if not quiet and not as_json:
                reporter.note(f"seed {settings.seed}")
            result = run_job(animator, run_settings, reference, frames, output, reporter, load_s,
                             checked.sidecar_extra(extra), checked.transform, checked.inputs)
    if as_json:
        print(json.dumps({"status": "ok", **result.summary()}))
    elif not quiet:
        typer.echo(f"wrote {result.output} ({result.frames} frames, {result.fps} fps, "
                   f"{result.size[0]}×{result.size[1]}, seed {result.seed}) in {result.timings['total_s']:.1f} s",
                   err=True)


def _report_preview(checked, as_json: bool, quiet: bool) -> None:
    """--preview-only: what was written, and nothing else."""
    record = {"status": "ok", "preview": str(checked.preview), "alignment": checked.record}
    if as_json:
        print(json.dumps(record))
    elif not quiet:
        typer.echo(f"wrote preview {checked.preview}", err=True)


def _run_batch(settings, items, skip_existing: bool, quiet: bool, as_json: bool, pose=None, check=None,
               share: dict | None = None) -> None:
    from ..animate.job import pick_seed, run_job
    from ..animate.preflight import check_motion, load_pose_model_for
    from ..animate.rendered_motion import animation_motion

    only = check is not None and check.preview_only
    settings = pick_seed(settings)  # one seed for the whole batch: every item is reproducible with it
    todo = [i for i in items if not (skip_existing and i.output.exists())]
    skipped = len(items) - len(todo)
    failures: list[tuple[str, str]] = []
    done = []
    with make_reporter(quiet, as_json) as reporter:
        if skipped:
            reporter.note(f"skipping {skipped} item(s) whose output exists")
        if todo:  # weights problems stop the whole batch: every item would fail the same way
            pose_model = load_pose_model_for(pose, check, reporter)
            animator, load_s = (None, 0.0) if only else load_animator(settings, reporter)
        for number, item in enumerate(todo, start=1):
            reporter.note(f"[{number}/{len(todo)}] {item.name} → {item.output}")
            try:
                with animation_motion(pose_model, pose, settings, item.motion, item.output,
                                      reporter) as (frames, run_settings, extra):
                    checked = check_motion(check, run_settings, item.reference, frames,
                                           None if check is None else check.preview_path(item.output, batch=True),
                                           pose_model, reporter, item.motion,
                                           share_frames=check is not None and not only)
                    if only:
                        done.append({"preview": str(checked.preview), "alignment": checked.record})
                        continue
                    extra = {**(extra or {}), "shard": share} if share is not None else extra
                    result = run_job(animator, run_settings, item.reference, frames, item.output, reporter, load_s,
                                     checked.sidecar_extra(extra), checked.transform, checked.inputs)
                load_s = 0.0
                done.append(result.summary())
            except MagicAnimateError as exc:
                failures.append((item.name, str(exc)))
                typer.echo(f"error: {exc}", err=True)
    summary = {"status": "ok" if not failures else "failed", "done": len(done), "skipped": skipped,
               "failed": len(failures), "seed": settings.seed, "items": done,
               "failures": [{"item": n, "error": e} for n, e in failures],
               **({"shard": share} if share is not None else {})}
    if as_json:
        print(json.dumps(summary))
    elif not quiet:
        typer.echo(f"batch: {len(done)} written, {skipped} skipped, {len(failures)} failed (seed {settings.seed})",
                   err=True)
    if failures:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("animate", help=HELP, cls=usage("REFERENCE", "MOTION", "-o OUTPUT", "[OPTIONS]"))(animate)
