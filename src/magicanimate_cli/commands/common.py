"""What the command modules share: option declarations, the settings they build, the progress display and the
model loaders. Command modules import from here and never from each other, so `animate`, `fuse-long` and `pose`
cannot drift apart and no command pulls in another's code.

Choice options are typed as `Literal[...]`: Typer turns that into a choice parameter, so `--help` lists the
words, the parser refuses any other (a usage error that names them) and shell completion offers them.
"""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path
from typing import Literal, Optional

import typer
from typer.core import TyperCommand

from ..animate.settings import BATCH_FORMATS, DTYPE_CHOICES, FIT_CHOICES, FUSION_CHOICES, NOISE_CHOICES, AnimateSettings
from ..engine.schedulers import DEFAULT_SCHEDULER, SCHEDULER_NAMES
from ..media.reader import FrameSelection
from ..densepose.loading import load_pose_model, pose_settings  # noqa: F401  (the commands' way to the model)
from ..runtime.errors import SettingsError
from ..runtime.home import default_weights_dir

Fit = Literal[FIT_CHOICES]
Dtype = Literal[DTYPE_CHOICES]
Noise = Literal[NOISE_CHOICES]
Fusion = Literal[FUSION_CHOICES]
BatchFormat = Literal[BATCH_FORMATS]
Scheduler = Literal[SCHEDULER_NAMES]
People = Literal["all", "largest"]  # pose.settings.PEOPLE_CHOICES; a test keeps the two equal

WEIGHTS_DEFAULT = "$MAGICANIMATE_HOME, else ~/.cache/magicanimate"


def usage(*pieces: str) -> type[TyperCommand]:
    """A command class whose usage line reads `PROG PIECES...`: what a user must give, in the order they write it.

    Click builds the line from the parameters, which marks REFERENCE and MOTION optional (they are, with --pairs)
    and says nothing of a required -o; the help text below the line explains the other forms.
    """
    class Command(TyperCommand):
        def collect_usage_pieces(self, ctx) -> list[str]:
            return list(pieces)

    return Command


def flag(name: str, help: str, *aliases: str) -> typer.models.OptionInfo:
    """An on/off switch, off by default; the help shows it as a bare flag."""
    return typer.Option(False, name, *aliases, show_default="off", help=help)


# --- frame selection: animate, fuse-long and pose select motion frames the same way -----------------------------
# (the clip reader checks them; the output rate is the input's divided by the stride, so speed stays real-time)
START_OPTION = typer.Option(0, "--start", help="First input frame to use.")
MAX_FRAMES_OPTION = typer.Option(None, "--max-frames", show_default="all", help="Use at most this many frames.")
FRAME_STRIDE_OPTION = typer.Option(1, "--frame-stride", help="Use every N-th frame (the frame rate is divided by N).")


# --- the DensePose model options: pose, and animate / fuse-long with --motion-from-video ------------------------
POSE_MODEL_OPTION = typer.Option(
    "r50", "--pose-model", metavar="<r50|r101|file>",
    help="r50 | r101 (files in <weights>/DensePose/, see download-weights --pose), or a TorchScript file with the "
         "same contract.")
MIN_SCORE_OPTION = typer.Option(0.8, "--min-score", help="Draw people detected with a score above this.")
PEOPLE_OPTION = typer.Option("all", "--people", help="Draw every person, or only the one with the largest box.")
SMOOTH_OPTION = typer.Option(False, "--smooth/--no-smooth", help="Steady the render: follow each person, smooth its "
                             "box and part labels over neighbouring frames, fill short misses (docs/smoothing.md).")
SMOOTH_RADIUS_OPTION = typer.Option(None, "--smooth-radius", show_default="3",
                                    help="With --smooth: frames each side combined.")
FILL_GAP_OPTION = typer.Option(None, "--fill-gap", show_default="3",
                               help="With --smooth: longest run of missed frames filled in.")
DEVICE_OPTION = typer.Option("auto", metavar="<device>", help="auto | cuda | cuda:N | mps | cpu.")
CRF_OPTION = typer.Option(18, help="Video quality for mp4/webm (lower is better).")
SKIP_EXISTING_HELP = "Batch: skip items whose output exists."
SHARD_OPTION = typer.Option(None, metavar="<I/N|auto>", show_default="all",
                            help="Batch: run only share I of N (I/N, 1-based); auto: this process's share and GPU "
                                 "under torchrun or Slurm (docs/cluster.md).")
FORMAT_OPTION = typer.Option("mp4", "--format", help="Batch: output type.")
ANIMATION_WEIGHTS_OPTION = typer.Option(
    None, "--animation-weights", show_default="<weights>/MagicAnimate",
    help="A folder in the MagicAnimate/ layout (appearance_encoder/, densepose_controlnet/, temporal_attention/) "
         "to use instead, e.g. a fine-tuned model; SD 1.5 and the VAE still come from --weights.")
QUIET_HELP = "No progress display."
JSON_HELP = "Print one machine-readable summary line to stdout."


def smooth_settings(smooth: bool, radius: int | None, fill_gap: int | None):
    """SmoothSettings for --smooth (None without it); its tuning options alone are refused."""
    from ..densepose.track import SmoothSettings

    if not smooth:
        named = [n for n, v in (("--smooth-radius", radius), ("--fill-gap", fill_gap)) if v is not None]
        if named:
            raise SettingsError(f"{' and '.join(named)} tune --smooth; add --smooth")
        return None
    defaults = SmoothSettings()
    return SmoothSettings(radius=defaults.radius if radius is None else radius,
                          fill_gap=defaults.fill_gap if fill_gap is None else fill_gap)


def make_reporter(quiet: bool, as_json: bool):
    """The progress display: none with --quiet or --json (stdout then carries only the summary line)."""
    from ..runtime.progress import Reporter, RichReporter

    return Reporter() if (quiet or as_json) else RichReporter()


# --- animate and fuse-long ----------------------------------------------------------------------------------------
def animation_options(
    reference: Optional[Path] = typer.Argument(None, metavar="REFERENCE", show_default=False,
                                               help="Reference image (PNG/JPEG/WebP), or a folder of them."),
    motion: Optional[Path] = typer.Argument(None, metavar="MOTION", show_default=False,
                                            help="DensePose video (mp4/mov/webm/avi/gif) or frame folder; or a "
                                                 "folder of motions."),
    output: Path = typer.Option(..., "-o", "--output", help="Output .mp4/.webm/.gif, or a folder for PNG frames "
                                                            "(animate's batch mode: the output folder)."),
    size: int = typer.Option(512, help="Working size (square); the released model's size is 512."),
    width: Optional[int] = typer.Option(None, show_default="--size", help="Working width (multiple of 8); overrides --size."),
    height: Optional[int] = typer.Option(None, show_default="--size", help="Working height (multiple of 8); overrides --size."),
    fit: Fit = typer.Option("pad", help="How non-square inputs meet the working shape."),
    start: int = START_OPTION,
    max_frames: Optional[int] = MAX_FRAMES_OPTION,
    frame_stride: int = FRAME_STRIDE_OPTION,
    fps: Optional[str] = typer.Option(None, metavar="<rate>", show_default="the motion's",
                                      help="Output frame rate, e.g. 25 or 30000/1001."),
    steps: int = typer.Option(25, help="DDIM steps."),
    guidance: float = typer.Option(7.5, help="Classifier-free guidance scale (appearance)."),
    seed: Optional[int] = typer.Option(None, show_default="random, printed and recorded", help="Random seed."),
    context_frames: int = typer.Option(16, help="Frames per window (at most 24)."),
    context_overlap: int = typer.Option(4, help="Frames shared by neighbouring windows."),
    device: str = DEVICE_OPTION,
    dtype: Dtype = typer.Option("auto", help="Model precision (auto: fp16 on CUDA, fp32 elsewhere)."),
    weights: Optional[Path] = typer.Option(None, show_default=WEIGHTS_DEFAULT,
                                           help="Weights folder in the official layout (see download-weights)."),
    animation_weights: Optional[Path] = ANIMATION_WEIGHTS_OPTION,
    crf: int = CRF_OPTION,
    low_vram: bool = flag("--low-vram", "Fit 8 GB cards at 512²: the VAE waits in host memory while denoising and "
                                        "the guidance copies run one at a time (same output, somewhat slower)."),
    compile: bool = flag("--compile", "torch.compile the UNet, ControlNet and VAE decoder (GPU; the first run of "
                                      "each frame size compiles first, shown as a 'compile' phase)."),
    grid: bool = flag("--grid", "Also write reference | motion | result side by side."),
    pairs: Optional[Path] = typer.Option(None, show_default="none", help="Batch: CSV of reference,motion[,output] rows."),
    skip_existing: bool = flag("--skip-existing", SKIP_EXISTING_HELP),
    shard: Optional[str] = SHARD_OPTION,
    format: BatchFormat = FORMAT_OPTION,
    motion_from_video: bool = flag("--motion-from-video", "MOTION is an ordinary video: render its DensePose first "
                                                          "(see `magicanimate pose`), then animate along the render."),
    pose_model: str = POSE_MODEL_OPTION,
    min_score: float = MIN_SCORE_OPTION,
    people: People = PEOPLE_OPTION,
    save_pose: Optional[Path] = typer.Option(None, show_default="none", help="With --motion-from-video: keep the "
                                             "DensePose render here (.mp4/.webm/.gif or a PNG folder)."),
    quiet: bool = flag("--quiet", QUIET_HELP, "-q"),
    as_json: bool = flag("--json", JSON_HELP),
    align: bool = flag("--align", "Scale and move the whole motion once so that its person covers the reference "
                                  "person (found by the DensePose model; docs/alignment.md)."),
    align_frame: int = typer.Option(0, "--align-frame", help="With --align: the motion frame matched to the "
                                                             "reference (0 = the first selected frame)."),
    align_pairs: Optional[str] = typer.Option(None, "--align-pairs", metavar="<M:R,...>", show_default="left to right",
                                              help="With --align and several people: pair motion person M with "
                                                   "reference person R (counted from the left, from 1)."),
    preview: Optional[Path] = typer.Option(None, "--preview", show_default="none",
                                           help="Write a PNG of the motion's silhouette over the reference (and the "
                                                "motion frames) before loading any model; batch: a folder for them."),
    preview_only: bool = flag("--preview-only", "Stop after the preview (default place: OUTPUT.preview.png)."),
    smooth: bool = SMOOTH_OPTION,
    smooth_radius: Optional[int] = SMOOTH_RADIUS_OPTION,
    fill_gap: Optional[int] = FILL_GAP_OPTION,
    scheduler: Scheduler = typer.Option(DEFAULT_SCHEDULER, "--scheduler",
                                        help="Sampler (diffusers' schedulers on MagicAnimate's training schedule); "
                                             "ddim is the official one (docs/schedulers.md)."),
) -> None:
    """The declaration of animate's options (fuse-long takes them too, its batch ones aside); never called."""


def settings_from_options(**o) -> AnimateSettings:
    """AnimateSettings from animate's (or fuse-long's) options, checked."""
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
        weights=Path(o["weights"]).expanduser() if o["weights"] else default_weights_dir(),
        animation_weights=Path(o["animation_weights"]).expanduser() if o.get("animation_weights") else None,
        crf=o["crf"],
        grid=o["grid"], low_vram=o["low_vram"], compile=o["compile"],
        **{k: o[k] for k in ("wrap", "noise", "fusion", "scheduler") if k in o},
    )
    settings.validate()
    return settings


def check_animation_weights(settings: AnimateSettings) -> None:
    """An --animation-weights folder that lacks a part is refused before any input is read or rendered (imports
    torch, so `fuse-long --plan` calls it only when it runs)."""
    if settings.animation_weights is not None:
        from ..engine.loader import weights_layout

        weights_layout(settings.weights, settings.animation_weights).check_animation_folder()


def pose_request(settings: AnimateSettings, **o):
    """`--motion-from-video` and its options as a PoseRequest, or None; the pose options alone are refused."""
    from ..animate.rendered_motion import PoseRequest

    if not o["motion_from_video"]:
        if o["save_pose"] is not None:
            raise SettingsError("--save-pose keeps the render of --motion-from-video; add --motion-from-video")
        if o["smooth"]:
            raise SettingsError("--smooth steadies the render of --motion-from-video; add --motion-from-video")
        smooth_settings(False, o["smooth_radius"], o["fill_gap"])  # refuses its tuning options alone
        return None
    smooth = smooth_settings(o["smooth"], o["smooth_radius"], o["fill_gap"])
    return PoseRequest(pose_settings(o["pose_model"], settings.weights, settings.device, o["min_score"],
                                     o["people"], settings.crf, smooth), o["save_pose"])


def load_animator(settings: AnimateSettings, reporter):
    """Load the models once (the expensive part); checks the window length against the loaded model."""
    from ..engine.pipeline import Animator
    from ..runtime.devices import resolve_device, resolve_dtype

    device = resolve_device(settings.device)
    dtype = resolve_dtype(settings.dtype, device)
    reporter.note(f"loading weights from {settings.weights} on {device} ({str(dtype).replace('torch.', '')})")
    started = time.perf_counter()
    if settings.animation_weights is not None:
        reporter.note(f"animation weights (MagicAnimate part) from {settings.animation_weights}")
    animator = Animator.from_pretrained(settings.weights, device=device, dtype=dtype, low_vram=settings.low_vram,
                                        animation_weights=settings.animation_weights)
    if settings.compile:
        animator.compile()
    if settings.context_frames > animator.max_context_frames:
        raise SettingsError(f"--context-frames {settings.context_frames} exceeds the motion module's position "
                            f"table ({animator.max_context_frames})")
    return animator, time.perf_counter() - started
