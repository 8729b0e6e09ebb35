"""`magicanimate animate`: one reference and one motion, or folders of them."""

from __future__ import annotations

import json
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Optional

import typer

from ..engine.schedulers import DEFAULT_SCHEDULER, SchedulerName
from ..config import AnimateSettings, FrameSelection, default_weights_dir
from ..errors import InputError, MagicAnimateError, SettingsError
from .pose import MIN_SCORE_OPTION, PEOPLE_OPTION, POSE_MODEL_OPTION, load_pose_model, pose_settings

HELP = "Animate REFERENCE (an image) along MOTION (a DensePose video or frame folder) into OUTPUT."


def settings_from_options(**o) -> AnimateSettings:
    fps = None
    if o.get("fps") is not None:
        try:
            fps = Fraction(o["fps"]).limit_denominator(1_000_000)
        except (ValueError, ZeroDivisionError):
            raise SettingsError(f"--fps {o['fps']}: expected a number or a fraction like 30000/1001") from None
    settings = AnimateSettings(
        size=o["size"], width=o["width"], height=o["height"], fit=o["fit"],
        selection=FrameSelection(o["start"], o["max_frames"], o["frame_stride"]), fps=fps,
        steps=o["steps"], guidance=o["guidance"], seed=o["seed"], context_frames=o["context_frames"],
        context_overlap=o["context_overlap"], device=o["device"], dtype=o["dtype"],
        weights=Path(o["weights"]).expanduser() if o["weights"] else default_weights_dir(), crf=o["crf"],
        grid=o["grid"], low_vram=o["low_vram"], compile=o["compile"],
        **{k: getattr(o[k], "value", o[k]) for k in ("wrap", "noise", "fusion", "scheduler") if k in o},
    )
    settings.validate()
    return settings


def load_animator(settings: AnimateSettings, reporter):
    """Load the models once (the expensive part); checks the window length against the loaded model."""
    from ..devices import resolve_device, resolve_dtype
    from ..engine.pipeline import Animator

    device = resolve_device(settings.device)
    dtype = resolve_dtype(settings.dtype, device)
    reporter.note(f"loading weights from {settings.weights} on {device} ({str(dtype).replace('torch.', '')})")
    started = time.perf_counter()
    animator = Animator.from_pretrained(settings.weights, device=device, dtype=dtype, low_vram=settings.low_vram)
    if settings.compile:
        animator.compile()
    if settings.context_frames > animator.max_context_frames:
        raise SettingsError(f"--context-frames {settings.context_frames} exceeds the motion module's position "
                            f"table ({animator.max_context_frames})")
    return animator, time.perf_counter() - started


def make_reporter(quiet: bool, as_json: bool):
    from ..progress import Reporter, RichReporter

    return Reporter() if (quiet or as_json) else RichReporter()


def animate(
    reference: Optional[Path] = typer.Argument(None, help="Reference image (PNG/JPEG/WebP), or a folder of them."),
    motion: Optional[Path] = typer.Argument(None, help="DensePose video (mp4/mov/webm/avi/gif) or frame folder; "
                                                       "or a folder of motions."),
    output: Path = typer.Option(..., "-o", "--output", help="Output .mp4/.webm/.gif, or a folder for PNG frames "
                                                            "(animate's batch mode: the output folder)."),
    size: int = typer.Option(512, help="Working size (square); the released model's size is 512."),
    width: Optional[int] = typer.Option(None, show_default="--size", help="Working width (multiple of 8); overrides --size."),
    height: Optional[int] = typer.Option(None, show_default="--size", help="Working height (multiple of 8); overrides --size."),
    fit: str = typer.Option("pad", help="pad | crop | stretch: how non-square inputs meet the working shape."),
    start: int = typer.Option(0, help="First motion frame to use."),
    max_frames: Optional[int] = typer.Option(None, show_default="all", help="Use at most this many motion frames."),
    frame_stride: int = typer.Option(1, help="Use every N-th motion frame."),
    fps: Optional[str] = typer.Option(None, show_default="the motion's", help="Output frame rate, e.g. 25 or 30000/1001."),
    steps: int = typer.Option(25, help="DDIM steps."),
    guidance: float = typer.Option(7.5, help="Classifier-free guidance scale (appearance)."),
    seed: Optional[int] = typer.Option(None, show_default="random, printed and recorded", help="Random seed."),
    context_frames: int = typer.Option(16, help="Frames per window (at most 24)."),
    context_overlap: int = typer.Option(4, help="Frames shared by neighbouring windows."),
    device: str = typer.Option("auto", help="auto | cuda | cuda:N | mps | cpu."),
    dtype: str = typer.Option("auto", help="auto | fp16 | bf16 | fp32 (auto: fp16 on CUDA, fp32 elsewhere)."),
    weights: Optional[Path] = typer.Option(None, show_default="$MAGICANIMATE_HOME, else ~/.cache/magicanimate",
                                           help="Weights folder in the official layout (see download-weights)."),
    crf: int = typer.Option(18, help="Video quality for mp4/webm (lower is better)."),
    low_vram: bool = typer.Option(False, "--low-vram", show_default="off",
                                  help="Fit 8 GB cards at 512²: the VAE waits in host memory while denoising and "
                                       "the guidance copies run one at a time (same output, somewhat slower)."),
    compile: bool = typer.Option(False, "--compile", show_default="off",
                                 help="torch.compile the UNet, ControlNet and VAE decoder (GPU; the first run of "
                                      "each frame size compiles first, shown as a 'compile' phase)."),
    grid: bool = typer.Option(False, "--grid", show_default="off", help="Also write reference | motion | result side by side."),
    pairs: Optional[Path] = typer.Option(None, show_default="none", help="Batch: CSV of reference,motion[,output] rows."),
    skip_existing: bool = typer.Option(False, "--skip-existing", show_default="off", help="Batch: skip items whose output exists."),
    shard: Optional[str] = typer.Option(None, show_default="all", help="Batch: run only share I of N (I/N, 1-based)."),
    format: str = typer.Option("mp4", "--format", help="Batch: output type mp4 | webm | gif | png."),
    motion_from_video: bool = typer.Option(False, "--motion-from-video", show_default="off",
                                           help="MOTION is an ordinary video: render its DensePose first (see "
                                                "`magicanimate pose`), then animate along the render."),
    pose_model: str = POSE_MODEL_OPTION,
    min_score: float = MIN_SCORE_OPTION,
    people: str = PEOPLE_OPTION,
    save_pose: Optional[Path] = typer.Option(None, show_default="none", help="With --motion-from-video: keep the "
                                             "DensePose render here (.mp4/.webm/.gif or a PNG folder)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", show_default="off", help="No progress display."),
    as_json: bool = typer.Option(False, "--json", show_default="off", help="Print one machine-readable summary line to stdout."),
    scheduler: SchedulerName = typer.Option(DEFAULT_SCHEDULER, "--scheduler",
                                  help="Sampler (diffusers' schedulers on MagicAnimate's training schedule); ddim is "
                                       "the official one. See docs/schedulers.md for how many steps each needs."),
) -> None:
    """Animate REFERENCE (an image) along MOTION (a DensePose video or frame folder) into OUTPUT."""
    options = dict(locals())
    settings = settings_from_options(**options)
    pose = pose_request(settings, **options)
    run_command(settings, reference, motion, output, pairs, skip_existing, shard, format, quiet, as_json, pose)


def pose_request(settings: AnimateSettings, **o):
    """`--motion-from-video` and its options as a PoseRequest, or None; the pose options alone are refused."""
    from ..pose.motion import PoseRequest

    if not o["motion_from_video"]:
        if o["save_pose"] is not None:
            raise SettingsError("--save-pose keeps the render of --motion-from-video; add --motion-from-video")
        return None
    return PoseRequest(pose_settings(o["pose_model"], settings.weights, settings.device, o["min_score"],
                                     o["people"], settings.crf), o["save_pose"])


def run_command(settings: AnimateSettings, reference: Path | None, motion: Path | None, output: Path,
                pairs: Path | None, skip_existing: bool, shard: str | None, extension: str, quiet: bool,
                as_json: bool, pose=None) -> None:
    """Single item or batch; `pose` (a PoseRequest) renders each motion from an ordinary video first."""
    from ..batch import cross_product, parse_shard, read_pairs, take_shard

    batch = pairs is not None or (reference is not None and reference.is_dir())
    if not batch:
        if reference is None or motion is None:
            raise SettingsError("give REFERENCE and MOTION (or folders of them, or --pairs CSV)")
        _check_exists(reference, "reference image")
        _check_exists(motion, "motion")
        _run_single(settings, reference, motion, output, quiet, as_json, pose)
        return
    if pose is not None and pose.save is not None:
        raise SettingsError("--save-pose names one render; it works with a single MOTION, not a batch")
    if extension not in ("mp4", "webm", "gif", "png"):
        raise SettingsError(f"--format {extension}: expected mp4, webm, gif or png")
    if pairs is not None:
        items = read_pairs(pairs, output, extension)
    else:
        if motion is None or not motion.is_dir():
            raise InputError(f"{motion}: in batch mode MOTION must be a folder of motions")
        items = cross_product(reference, motion, output, extension)
    _run_batch(settings, take_shard(items, parse_shard(shard)), skip_existing, quiet, as_json, pose)


def _check_exists(path: Path, what: str) -> None:
    if not path.exists():
        raise InputError(f"{path}: {what} not found")


def _run_single(settings: AnimateSettings, reference: Path, motion: Path, output: Path, quiet: bool,
                as_json: bool, pose=None) -> None:
    from ..job import check_output_writable, pick_seed, run_job
    from ..pose.motion import animation_motion

    settings = pick_seed(settings)
    check_output_writable(output)
    if pose is not None and pose.save is not None:
        check_output_writable(pose.save)
    with make_reporter(quiet, as_json) as reporter:
        pose_model = load_pose_model(pose.settings, reporter)[0] if pose is not None else None
        # the render comes first: a video that cannot be read fails before the animation models load
        with animation_motion(pose_model, pose, settings, motion, output, reporter) as (frames, run_settings, extra):
            animator, load_s = load_animator(settings, reporter)
            if not quiet and not as_json:
                reporter.note(f"seed {settings.seed}")
            result = run_job(animator, run_settings, reference, frames, output, reporter, load_s, extra)
    if as_json:
        print(json.dumps({"status": "ok", **result.summary()}))
    elif not quiet:
        typer.echo(f"wrote {result.output} ({result.frames} frames, {result.fps} fps, "
                   f"{result.size[0]}×{result.size[1]}, seed {result.seed}) in {result.timings['total_s']:.1f} s",
                   err=True)


def _run_batch(settings, items, skip_existing: bool, quiet: bool, as_json: bool, pose=None) -> None:
    from ..job import pick_seed, run_job
    from ..pose.motion import animation_motion

    settings = pick_seed(settings)  # one seed for the whole batch: every item is reproducible with it
    todo = [i for i in items if not (skip_existing and i.output.exists())]
    skipped = len(items) - len(todo)
    failures: list[tuple[str, str]] = []
    done = []
    with make_reporter(quiet, as_json) as reporter:
        if skipped:
            reporter.note(f"skipping {skipped} item(s) whose output exists")
        if todo:  # weights problems stop the whole batch: every item would fail the same way
            pose_model = load_pose_model(pose.settings, reporter)[0] if pose is not None else None
            animator, load_s = load_animator(settings, reporter)
        for number, item in enumerate(todo, start=1):
            reporter.note(f"[{number}/{len(todo)}] {item.name} → {item.output}")
            try:
                with animation_motion(pose_model, pose, settings, item.motion, item.output,
                                      reporter) as (frames, run_settings, extra):
                    result = run_job(animator, run_settings, item.reference, frames, item.output, reporter, load_s,
                                     extra)
                load_s = 0.0
                done.append(result.summary())
            except MagicAnimateError as exc:
                failures.append((item.name, str(exc)))
                typer.echo(f"error: {exc}", err=True)
    summary = {"status": "ok" if not failures else "failed", "done": len(done), "skipped": skipped,
               "failed": len(failures), "seed": settings.seed, "items": done,
               "failures": [{"item": n, "error": e} for n, e in failures]}
    if as_json:
        print(json.dumps(summary))
    elif not quiet:
        typer.echo(f"batch: {len(done)} written, {skipped} skipped, {len(failures)} failed (seed {settings.seed})",
                   err=True)
    if failures:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("animate", help=HELP)(animate)
