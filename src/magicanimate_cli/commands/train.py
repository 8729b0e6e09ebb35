"""`magicanimate train`: the paper's two training stages on a DATA folder (docs/training.md)."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Literal, Optional

import typer

from ..train.settings import STEPS
from .common import JSON_HELP, QUIET_HELP, WEIGHTS_DEFAULT, flag, usage

STOP_CODES = {"SIGINT": 130, "SIGTERM": 143}


def run_train(
    data: Path = typer.Argument(..., metavar="DATA", show_default=False,
                                help="Training data: videos/, densepose/ (and images/, images_densepose/)."),
    output: Path = typer.Option(..., "-o", "--output", help="Run folder: config, metrics, checkpoints, export."),
    stage: Literal["1", "2"] = typer.Option(..., "--stage", help="1: appearance encoder + ControlNet on frames; "
                                                                  "2: temporal layers on clips."),
    weights: Optional[Path] = typer.Option(None, show_default=WEIGHTS_DEFAULT,
                                           help="Weights folder (SD 1.5 and the VAE are read from it)."),
    start_from: Optional[Path] = typer.Option(None, "--from", show_default="SD 1.5 (stage 1)",
                                              help="Start from a folder in the MagicAnimate/ layout (the release, or "
                                                   "a run's export)."),
    motion_module: Optional[Path] = typer.Option(None, "--motion-module", show_default="--from's",
                                                 help="Stage 2's temporal start: AnimateDiff's mm_sd_v15.ckpt or a "
                                                      "temporal_attention.ckpt."),
    steps: int = typer.Option(STEPS, help="Optimizer steps."),
    batch_size: int = typer.Option(1, "--batch-size", help="Samples per step."),
    size: int = typer.Option(512, help="Training size (square), multiple of 8."),
    width: Optional[int] = typer.Option(None, show_default="--size", help="Training width; overrides --size."),
    height: Optional[int] = typer.Option(None, show_default="--size", help="Training height; overrides --size."),
    frames: int = typer.Option(16, help="Stage 2: frames per clip (K)."),
    frame_stride: int = typer.Option(1, "--frame-stride", help="Stage 2: take every N-th frame of a clip."),
    lr: float = typer.Option(1e-5, help="AdamW learning rate."),
    lr_warmup: int = typer.Option(0, "--lr-warmup", help="Steps of linear learning-rate warmup."),
    seed: int = typer.Option(0, help="Seed of the data order, noise, timesteps and dropout."),
    image_prob: Optional[float] = typer.Option(None, "--image-prob", show_default="0.25 with images, else 0",
                                               help="Stage 1: tau0, the share of image samples."),
    joint: Optional[str] = typer.Option(None, "--joint", metavar="<TAU1,TAU2>",
                                        show_default="0.1,0.3 with images, else 0,0.2",
                                        help="Stage 2: TAU1,TAU2 (image below TAU1, one frame below TAU2, else a "
                                             "clip)."),
    ref_dropout: float = typer.Option(0.1, "--ref-dropout", help="Share of samples trained without their "
                                                                  "reference (for classifier-free guidance)."),
    checkpoint_every: int = typer.Option(500, "--checkpoint-every", help="Steps between checkpoints."),
    keep_checkpoints: int = typer.Option(2, "--keep-checkpoints", help="Checkpoints kept (the newest)."),
    validate_every: int = typer.Option(0, "--validate-every", show_default="never",
                                       help="Animate the --validation pairs every N steps (and at no other time)."),
    validation: Optional[Path] = typer.Option(None, "--validation", show_default="none",
                                              help="Folder of NAME.png + NAME.mp4 (+ NAME.truth.mp4) pairs."),
    validation_steps: int = typer.Option(25, "--validation-steps", help="DDIM steps of a validation video."),
    resume: bool = flag("--resume", "Continue the run in -o from its newest checkpoint (same settings)."),
    device: str = typer.Option("auto", metavar="<device>", help="auto | cuda | cpu."),
    quiet: bool = flag("--quiet", QUIET_HELP, "-q"),
    as_json: bool = flag("--json", JSON_HELP),
    # small: memory estimate, optimizer, low-rank adapters, tracking
    dry_run: bool = flag("--dry-run", "Print parameter counts, FLOPs per step and an estimate of peak GPU memory "
                                      "per process, then exit (reads no data and no weights)."),
    optimizer: Literal["adamw", "adamw8bit"] = typer.Option("adamw", "--optimizer",
                                                            help="adamw, or adamw8bit (bitsandbytes, CUDA only)."),
    lora: int = typer.Option(0, "--lora", metavar="RANK", show_default="off",
                             help="Train low-rank adapters of this rank on the stage's attention projections "
                                  "instead of all weights; the export merges them."),
    log: Optional[list[str]] = typer.Option(None, "--log", metavar="TRACKER", show_default="none",
                                            help="Tracker(s) for loss, lr, samples/s and the held-out figures: any of "
                                                 "accelerate's (tensorboard, wandb, mlflow, ...), repeated or "
                                                 "comma-separated; file-based ones write under RUN/logs/."),
    # held-out: the denoising loss and condition gains on a fixed set (docs/training.md, "Is it learning?")
    val_data: Optional[Path] = typer.Option(None, "--val-data", metavar="DATA2", show_default="none",
                                            help="Held-out set: another DATA folder, never trained on."),
    val_split: float = typer.Option(0.0, "--val-split", metavar="F", show_default="none",
                                    help="Held-out set: this share of DATA's videos and images (chosen by a hash of "
                                         "their names), left out of training."),
    val_every: Optional[int] = typer.Option(None, "--val-every", show_default="--checkpoint-every",
                                            help="Steps between held-out measurements (also at step 0 and the end)."),
    val_items: int = typer.Option(16, "--val-items", help="Items of the fixed held-out set (evenly spaced "
                                                          "timesteps)."),
    # scale: memory and the global batch (docs/training.md, "Memory")
    gradient_accumulation: int = typer.Option(1, "--gradient-accumulation",
                                              help="Micro-batches per optimizer step (global batch = batch size x "
                                                   "processes x this)."),
    mixed_precision: Literal["no", "fp16", "bf16"] = typer.Option("no", "--mixed-precision",
                                                                  help="Frozen networks and the step's arithmetic "
                                                                       "in this type; trained weights stay fp32."),
    gradient_checkpointing: bool = flag("--gradient-checkpointing",
                                        "Recompute activations in backward: less memory, one more forward of time."),
    cache_latents: bool = flag("--cache-latents", "Encode each frame's VAE latent once and reuse it (in memory)."),
    max_skipped_steps: int = typer.Option(0, "--max-skipped-steps", metavar="N",
                                          help="Skip up to N steps whose loss or gradients are not finite (no "
                                               "update) instead of stopping at the first."),
    # data: what a sample is and how it is read (docs/training.md, "What a sample is", "Feeding the GPU")
    fit: Literal["pad", "crop", "stretch"] = typer.Option("pad", "--fit",
                                                          help="Fit frames to the training size as animate --fit "
                                                               "does (pad: whole frame, render background "
                                                               "around it)."),
    ref_margin: int = typer.Option(30, "--ref-margin", help="Frames between a reference and its targets (about "
                                                            "one second; 0: any other frame)."),
    data_workers: Optional[int] = typer.Option(None, "--data-workers", show_default="cores per process - 1, at most 8",
                                               help="Worker processes reading data ahead (0: in the training "
                                                    "process); never changes the result."),
    verify_data: bool = flag("--verify-data", "Decode every frame of DATA before training (prepare-data did; "
                                              "by default only headers and records are checked)."),
) -> None:
    """Train MagicAnimate on a DATA folder: stage 1 or 2 of the paper, resumable, exported in the released layout."""
    from ..dataset.reader import DataFolder
    from ..dataset.startup import check_once
    from ..runtime.devices import resolve_device
    from ..runtime.home import default_weights_dir
    from ..train.progress import TrainProgress
    from ..train.run import train
    from ..train.settings import TrainSettings, parse_joint, resolve_mix

    folder = DataFolder(data)
    contents = None if dry_run else check_once(folder, verify_data)  # small: --dry-run reads no data
    stage_n = int(stage)
    tau0, mix = resolve_mix(stage_n, image_prob, parse_joint(joint), contents is None or bool(contents.images), data)
    settings = TrainSettings(
        data=data.resolve(), run=output.resolve(), stage=stage_n,
        weights=(weights.expanduser() if weights else default_weights_dir()).resolve(),
        start_from=start_from.resolve() if start_from else None,
        motion_module=motion_module.resolve() if motion_module else None,
        steps=steps, batch_size=batch_size, width=width or size, height=height or size, frames=frames,
        frame_stride=frame_stride, lr=lr, lr_warmup=lr_warmup, seed=seed, image_prob=tau0, joint=mix,
        ref_dropout=ref_dropout, checkpoint_every=checkpoint_every, keep_checkpoints=keep_checkpoints,
        device=str(resolve_device(device)), quiet=quiet, validate_every=validate_every,
        validation=validation.resolve() if validation else None,
        optimizer=optimizer, lora=lora, log=",".join(log) if log else None,  # small:
        val_data=val_data.resolve() if val_data else None, val_split=val_split, val_every=val_every,
        val_items=val_items,
        gradient_accumulation=gradient_accumulation, mixed_precision=mixed_precision,  # scale:
        gradient_checkpointing=gradient_checkpointing, cache_latents=cache_latents,
        max_skipped_steps=max_skipped_steps,
        fit=fit, ref_margin=ref_margin, data_workers=resolve_workers(data_workers))  # data:
    if dry_run:  # small: estimates without a temporal start (it reads none)
        settings.validate_options()
        return report_dry_run(settings, as_json)
    settings.validate()
    make_validator = None
    if settings.validate_every:
        make_validator = validator_factory(settings, validation_steps)
    main_process = os.environ.get("RANK", "0") == "0"  # scale: under torchrun/accelerate only rank 0 reports
    global_batch = settings.batch_size * settings.gradient_accumulation * int(os.environ.get("WORLD_SIZE", "1"))
    display = TrainProgress(settings.steps, global_batch, enabled=not (quiet or as_json) and main_process)

    def ready(start: int, skipped: list) -> None:
        display.start_at(start)
        for name, reason in skipped:
            display.note(f"skipped {name}: {reason}")

    held = held_out_folder(settings.val_data, verify_data)
    with display:
        result = train(settings, folder, contents.videos, contents.images, contents.fingerprint, resume=resume,
                       on_step=display.update, on_ready=ready, make_validator=make_validator, val_data=held,
                       on_note=lambda line: typer.echo(f"note: {line}", err=True))
    if not result.main:  # scale: the main process prints the summary
        raise typer.Exit(STOP_CODES.get(result.outcome.stopped, 1) if result.outcome.stopped else 0)
    complete = result.export is not None and (result.export / "temporal_attention" / "temporal_attention.ckpt").is_file()
    command = animate_command(settings.weights, result.export) if complete else None
    last = result.outcome.last
    summary = {"run": str(result.run), "stage": stage_n, "steps": result.outcome.steps_done,
               "resumed_from": result.resumed_from, "stopped": result.outcome.stopped,
               "loss": last.loss if last else None, "export": str(result.export) if result.export else None,
               "skipped": [list(s) for s in result.skipped], "animate": command,
               "val": last_held_out(result.run)}
    if as_json:
        typer.echo(json.dumps(summary))
    if result.outcome.stopped:
        typer.echo(f"stopped by {result.outcome.stopped} after step {result.outcome.steps_done}; checkpoint saved; "
                   f"continue with the same command and --resume", err=True)
        raise typer.Exit(STOP_CODES.get(result.outcome.stopped, 1))
    if not as_json:
        typer.echo(f"exported {result.export}")
        if command:
            typer.echo(f"animate with it: {command}")
        else:
            typer.echo("the export has no temporal_attention/ (a stage-1 run without --motion-module): train stage 2 "
                       "on it (--from this export, --motion-module FILE) before animating")


def held_out_folder(folder: Path | None, verify: bool = False):
    """--val-data's DATA folder, checked now (before any output) as DATA is, as the run's held-out data."""
    if folder is None:
        return None
    from ..dataset.reader import DataFolder
    from ..dataset.startup import check_once
    from ..train.split import HeldOutData
    from ..train.sampling import DataIndex

    data = DataFolder(folder)
    contents = check_once(data, verify)
    return HeldOutData(data, DataIndex(contents.videos, contents.images),
                       {"data": str(folder.resolve()), "fingerprint": contents.fingerprint})


def last_held_out(run: Path) -> dict | None:
    """The run's last held-out record (for the --json summary)."""
    from ..train.report import read_run

    val = read_run(run).val
    return val[-1] if val else None


def resolve_workers(asked: int | None) -> int:  # data:
    """--data-workers, or the default from the cores each training process of this machine has."""
    from ..train.feed import default_workers

    return asked if asked is not None else default_workers(int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def report_dry_run(settings, as_json: bool) -> None:  # small:
    """--dry-run: the estimate as a table, or one JSON line."""
    from ..train.dry_run import dry_run, print_report

    result, record = dry_run(settings)
    if as_json:
        typer.echo(json.dumps(record))
    else:
        print_report(result, record)


def validator_factory(settings, steps: int):
    """The run's validator, built once the models are loaded; pairs are checked now (before any output)."""
    from ..train.validation import Validator, find_pairs

    pairs = find_pairs(settings.validation)
    scorer = make_scorer(settings.weights, settings.device) if any(p.truth for p in pairs) else None
    return lambda parts: Validator(parts, settings.stage, settings.frames, settings.width, settings.height,
                                   settings.run, pairs, scorer, steps)


def make_scorer(weights: Path, device: str):
    """Our `eval` on one validation video: L1, PSNR, SSIM, and LPIPS when its weights are in WEIGHTS/metrics/
    (otherwise the record says why it is missing)."""
    import torch

    from ..evaluation.metrics import plan_metrics
    from ..evaluation.runner import EvalSettings, evaluate

    available, skipped = plan_metrics(None, weights)
    wanted = tuple(m for m in ("l1", "psnr", "ssim", "lpips") if m in available)
    eval_settings = EvalSettings(weights_dir=weights, device=torch.device(device), metrics=wanted, align="truncate")

    def score(generated: Path, truth: Path) -> dict:
        report = evaluate(generated, truth, eval_settings)
        values = {k: v for k, v in report.aggregate.items() if k in wanted}
        if "lpips" in skipped:
            values["skipped"] = {"lpips": skipped["lpips"]}
        return values

    return score


def animate_command(weights: Path, export: Path) -> str:
    """The `animate` line that uses the export with SD 1.5 and the VAE from the weights folder."""
    return ("magicanimate animate ref.png motion.mp4 -o out.mp4 "
            f"--weights {shlex.quote(str(weights))} --animation-weights {shlex.quote(str(export))}")


def register(app: typer.Typer) -> None:
    """Add the `train` subcommand."""
    app.command(name="train", cls=usage("DATA", "-o RUN", "--stage 1|2", "[OPTIONS]"))(run_train)
