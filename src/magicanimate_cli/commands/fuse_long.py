"""`magicanimate fuse-long`: one long motion with the long-video controls exposed, flat memory, several
processes (GPUs) sharing every step, and checkpoints to resume from.

The input and output options are `animate`'s own declarations (`common.animation_options`, batch options aside),
so the two commands cannot drift apart; this module adds only the long-video options.
"""

from __future__ import annotations

import inspect
import json
import shutil
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from ..animate.settings import AnimateSettings
from ..runtime.errors import InputError, SettingsError
from .common import (Fusion, Noise, animation_options, check_animation_weights, flag, load_animator,
                     load_pose_model, make_reporter, pose_request, settings_from_options, usage)

if TYPE_CHECKING:
    from ..long.distributed import RankGroup
    from ..long.job import LongRequest

HELP = ("Animate REFERENCE along a long MOTION: windows fused over the whole video with flat memory, "
        "several GPUs (--nproc or torchrun) and checkpoints (--checkpoint, --resume).")

BATCH_OPTIONS = ("pairs", "skip_existing", "shard", "format")
"""`animate` options that only make sense for folders of inputs; a long run is one reference and one motion."""


def _long_parameters() -> list[inspect.Parameter]:
    """The options `fuse-long` adds to `animate`'s."""
    def option(name: str, annotation: Any, default: Any) -> inspect.Parameter:
        return inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default,
                                 annotation=annotation)

    return [
        option("wrap", bool, typer.Option(
            True, "--wrap/--no-wrap",
            help="The last window wraps onto the first frames (official); --no-wrap aligns it to the video's end.")),
        option("noise", Noise, typer.Option(
            "shared", help="shared: one K-frame noise tiled over the video (the paper); independent: fresh noise "
                           "for every frame (the paper's ablation).")),
        option("fusion", Fusion, typer.Option(
            "mean", help="mean: average overlapping windows (the paper); pyramid: weights falling toward a "
                         "window's edges; none: back-to-back windows, no overlap (the paper's w/o fusion).")),
        option("plan", bool, flag("--plan", "Print the window layout and its cost in model passes, then exit "
                                            "without loading models.")),
        option("nproc", int, typer.Option(
            1, "--nproc", min=1, help="Start N local processes (one GPU each on CUDA) that share every step; "
                                      "under torchrun leave it out.")),
        option("checkpoint", Optional[Path], typer.Option(
            None, help="Save the latents here after every step (atomically) \\[default: none]", show_default=False)),
        option("resume", Optional[Path], typer.Option(
            None, help="Continue the run saved in this checkpoint; it keeps being updated unless --checkpoint "
                       "names another file \\[default: none]", show_default=False)),
    ]


def _signature() -> inspect.Signature:
    """REFERENCE and MOTION (single files here), `animate`'s other options bar batch ones, and ours."""
    def argument(name: str, help: str) -> inspect.Parameter:
        return inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Path,
                                 default=typer.Argument(..., metavar=name.upper(), help=help, show_default=False))

    inputs = [argument("reference", "Reference image (PNG/JPEG/WebP)."),
              argument("motion", "DensePose motion: a video (mp4/mov/webm/avi/gif) or a folder of frame images.")]
    shared = [p for name, p in inspect.signature(animation_options, eval_str=True).parameters.items()
              if name not in ("reference", "motion", *BATCH_OPTIONS)]
    # --plan writes nothing, so -o is checked in `fuse_long` rather than required by the parser.
    output = inspect.Parameter("output", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Optional[Path],
                               default=typer.Option(None, "-o", "--output", show_default="required unless --plan",
                                                    help="Output .mp4/.webm/.gif, or a folder for PNG frames."))
    shared = [output if p.name == "output" else p for p in shared]
    return inspect.Signature([*inputs, *shared, *_long_parameters()])


@dataclass(frozen=True)
class Launch:
    """What every process of the run gets (picklable, for --nproc)."""

    request: LongRequest
    frames: int
    quiet: bool
    as_json: bool


def fuse_long(**options: Any) -> None:
    settings = settings_from_options(**options)
    motion: Path = options["motion"]
    if options["plan"]:
        _print_plan(settings, motion, options["nproc"], options["as_json"])
        return
    if options["output"] is None:
        raise SettingsError("-o/--output is required (only --plan runs without it)")
    check_animation_weights(settings)
    from ..long.distributed import group_from_environment, launch_local

    group = group_from_environment()
    processes = options["nproc"]
    if group is not None and processes not in (1, group.size):
        raise SettingsError(f"--nproc {processes}: this process was started by torchrun with {group.size} "
                            "processes; leave --nproc out under torchrun")
    if group is None and processes > 1:
        _check_devices(settings, processes)
    pose = pose_request(settings, **options)
    if pose is not None and group is not None:
        raise SettingsError("--motion-from-video renders the motion once, before the processes start; under "
                            "torchrun render it first with `magicanimate pose` (or use --nproc)")
    from ..animate.preflight import check_preview_path, motion_check

    check = motion_check(settings, **options)
    if check is not None:
        check_preview_path(check.preview, batch=False)
    writes = group is None or group.writes
    launch = _prepare(settings, options, writes=writes, pose=pose, check=check)
    with _motion_rendered(launch, pose) as launch:
        launch = _motion_checked(launch, check, pose, writes, motion)
        if launch is None:  # --preview-only
            return
        if group is None and processes > 1:
            launch_local(processes, run_process, launch)
        else:
            run_process(launch, group)


fuse_long.__signature__ = _signature()
fuse_long.__doc__ = HELP


@contextmanager
def _motion_rendered(launch: Launch, pose) -> Iterator[Launch]:
    """With --motion-from-video: the launch reading the video's DensePose render (removed afterwards)."""
    from ..animate.rendered_motion import animation_motion

    if pose is None:
        yield launch
        return
    request = launch.request
    if pose.save is not None:
        from ..media.files import check_output_writable

        check_output_writable(pose.save)
    with ExitStack() as stack:
        with make_reporter(launch.quiet, launch.as_json) as reporter:
            model = load_pose_model(pose.settings, reporter)[0]
            frames, settings, extra = stack.enter_context(
                animation_motion(model, pose, request.settings, request.motion, request.output, reporter))
        yield replace(launch, request=replace(request, motion=frames, settings=settings, sidecar_extra=extra))


def _motion_checked(launch: Launch, check, pose, writes: bool, motion_name: Path) -> Launch | None:
    """With --align or --preview: fit the alignment and write the preview once, before any process starts;
    None after --preview-only."""
    from ..animate.preflight import check_motion, load_pose_model_for

    if check is None:
        return launch
    request = launch.request
    preview = check.preview_path(request.output, batch=False) if writes else None
    with make_reporter(launch.quiet, launch.as_json) as reporter:
        model = load_pose_model_for(pose, check, reporter) if check.align else None
        checked = check_motion(check, request.settings, request.reference, request.motion, preview, model,
                               reporter, motion_name)
    if check.preview_only:
        if launch.as_json:
            print(json.dumps({"status": "ok", "preview": str(checked.preview), "alignment": checked.record}))
        elif not launch.quiet:
            typer.echo(f"wrote preview {checked.preview}", err=True)
        return None
    return replace(launch, request=replace(request, transform=checked.transform,
                                           sidecar_extra=checked.sidecar_extra(request.sidecar_extra)))


def _check_devices(settings: AnimateSettings, processes: int) -> None:
    """Refuse a device that cannot hold `processes` processes before any of them starts."""
    from ..long.distributed import RankGroup, rank_device
    from ..runtime.devices import resolve_device

    last = processes - 1
    rank_device(resolve_device(settings.device), RankGroup(last, processes, last))


def _probe_frames(settings: AnimateSettings, motion: Path) -> int:
    from ..media.reader import open_motion

    sel = settings.selection
    return len(open_motion(motion, start=sel.start, max_frames=sel.max_frames, stride=sel.stride))


def _print_plan(settings: AnimateSettings, motion: Path, processes: int, as_json: bool) -> None:
    from ..long.layout import Layout, plan_record, render_plan

    config = settings.sampler_config()
    layout = Layout(_probe_frames(settings, motion), config, processes)
    if as_json:
        print(json.dumps(plan_record(layout)))
        return
    width = shutil.get_terminal_size((100, 24)).columns - 8
    typer.echo(render_plan(layout, width), nl=False)


def _prepare(settings: AnimateSettings, options: dict[str, Any], writes: bool, pose=None, check=None) -> Launch:
    """Everything decided once, before any model loads or process starts: inputs, output, seed, resume.

    Under torchrun every process gets here; only the one that writes checks the output folder (by creating a
    file there), and the seed is settled among them once they have joined (`run_process`).
    """
    from ..animate.job import pick_seed
    from ..long.checkpoint import check_resumable, load_checkpoint
    from ..long.fingerprint import pose_fingerprint, run_fingerprint
    from ..long.job import LongRequest
    from ..media.files import check_output_writable
    from ..runtime.devices import dtype_name, resolve_device, resolve_dtype

    reference, motion, output = options["reference"], options["motion"], options["output"]
    for path, what in ((reference, "reference image"), (motion, "motion")):
        if not path.exists():
            raise InputError(f"{path}: {what} not found")
    frames = _probe_frames(settings, motion)
    checkpoint, resume = options["checkpoint"], options["resume"]
    fingerprint: dict[str, str] = {}
    labels: dict[str, str] = {}
    if checkpoint is not None or resume is not None:
        dtype = dtype_name(resolve_dtype(settings.dtype, resolve_device(settings.device)))
        fingerprint, labels = run_fingerprint(settings, dtype, frames, reference, motion)
        if pose is not None:  # the motion is the video's render: what makes the render is part of the run
            fingerprint.update(pose_fingerprint(pose.settings))
        if check is not None and check.align:  # the alignment moves the motion: what fits it is part of the run
            fingerprint.update({**pose_fingerprint(check.pose), "align-frame": str(check.align_frame)})
            if check.pairs is not None:
                fingerprint["align-pairs"] = ",".join(f"{m + 1}:{r + 1}" for m, r in check.pairs)
    if resume is not None:
        saved = load_checkpoint(resume)
        check_resumable(resume, saved, fingerprint, labels, settings.seed)
        settings = replace(settings, seed=saved.seed)
    if writes:  # only now, so that a refused --resume leaves nothing behind (not even the output's folder)
        check_output_writable(output)
    settings = pick_seed(settings)
    request = LongRequest(settings, reference, motion, output, fingerprint, labels,
                          checkpoint=checkpoint if checkpoint is not None else resume, resume=resume)
    return Launch(request, frames, options["quiet"], options["as_json"])


def run_process(launch: Launch, group: RankGroup | None) -> None:
    """One process of the run (the only one without --nproc/torchrun): load, sample its share, maybe write."""
    from ..long.distributed import agree, joined, rank_device
    from ..long.job import run_long_job
    from ..runtime.devices import resolve_device

    settings = launch.request.settings
    device = resolve_device(settings.device)
    writes = group is None or group.writes
    with ExitStack() as stack:
        if group is not None:
            device = rank_device(device, group)
            stack.enter_context(joined(group, device))
            settings = replace(settings, seed=agree(settings.seed))
        settings = replace(settings, device=str(device))
        reporter = stack.enter_context(make_reporter(launch.quiet or not writes, launch.as_json))
        animator, load_s = load_animator(settings, reporter)
        if writes and not (launch.quiet or launch.as_json):
            reporter.note(f"seed {settings.seed}")
        request = replace(launch.request, settings=settings)
        result = run_long_job(animator, request, reporter, group, load_s, launch.frames)
    if result is None:
        return
    if launch.as_json:
        print(json.dumps({"status": "ok", **result.summary()}), flush=True)
    elif not launch.quiet:
        typer.echo(f"wrote {result.output} ({result.frames} frames, {result.fps} fps, {result.size[0]}×"
                   f"{result.size[1]}, seed {result.seed}) in {result.timings['total_s']:.1f} s", err=True)


def register(app: typer.Typer) -> None:
    app.command("fuse-long", help=HELP, cls=usage("REFERENCE", "MOTION", "-o OUTPUT", "[OPTIONS]"))(fuse_long)
