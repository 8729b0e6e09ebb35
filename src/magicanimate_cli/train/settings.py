"""Every setting of a training run, resolved and checked before anything is loaded or written.

The run's `config.json` records `TrainSettings.record()`; `--resume` compares it setting by setting, so a resumed
run cannot silently change what it trains.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ..runtime.errors import SettingsError

DEFAULT_IMAGE_PROB = 0.25
"""tau0 when DATA has images (the paper gives no value; ours)."""
DEFAULT_JOINT = (0.1, 0.3)
"""(tau1, tau2) when DATA has images; without images tau1 is 0 (the paper gives no values; ours)."""

MIN_SIZE = 128
STEPS = 10000
"""--steps' default, the one place it is set (Moore-AnimateAnyone trains 30k stage-1 and 10k stage-2 steps)."""
RESUMABLE = frozenset({"run", "steps", "checkpoint_every", "keep_checkpoints", "device", "validate_every",
                       "validation", "quiet", "log", "gradient_checkpointing", "cache_latents",
                       "max_skipped_steps", "val_every", "data_workers"})
"""Settings a resumed run may change: where the run lives, how long it goes on, how it reports and how a step is
computed (recomputing activations, caching latents, data workers: they change when a batch is read, never what
it holds) and how many diverging steps it may skip, never what it trains (held-out: how often it is measured, not
what the set is)."""
PRECISIONS = ("no", "fp16", "bf16")
RECORDED_BEFORE = {"gradient_accumulation": 1, "mixed_precision": "no", "optimizer": "adamw", "lora": 0,
                   "max_skipped_steps": 0, "val_split": 0.0, "val_items": 16,
                   "fit": "crop", "ref_margin": 0}
"""What a run recorded before these settings existed did without them."""
DEFAULT_REF_MARGIN = 30
"""Frames between a reference and its targets: about one second of a 25-30 fps clip (Moore-AnimateAnyone keeps
30, MusePose 128), far enough that the reference is not a near copy of the target to be learnt."""
FIT_MODES = ("pad", "crop", "stretch")
"""`animate --fit`'s choices; training defaults to animate's default, pad (train/batches.py says why)."""


@dataclass(frozen=True)
class StepSettings:
    """The shape of one optimizer step and its memory options: what `train --dry-run` estimates from, and the
    first fields of every run's settings (names as `train`'s options)."""

    stage: int
    batch_size: int = 1
    width: int = 512
    height: int = 512
    frames: int = 16
    ref_dropout: float = 0.1
    optimizer: str = "adamw"
    lora: int = 0  # rank of low-rank adapters; 0: off
    # scale: memory and the global batch (docs/training.md, "Many GPUs" and "Memory")
    gradient_accumulation: int = 1  # micro-batches per optimizer step, each of batch_size samples per process
    mixed_precision: str = "no"  # no | fp16 | bf16: frozen networks cast, trainable weights and AdamW stay fp32
    gradient_checkpointing: bool = False  # recompute activations in backward (UNet, encoder, ControlNet, motion)
    cache_latents: bool = False  # VAE latents of each frame encoded once and reused

    @property
    def clip_frames(self) -> int:
        """Frames per training clip: K in stage 2; stage 1 trains on single frames (no temporal layers)."""
        return self.frames if self.stage == 2 else 1

    def step_record(self) -> dict:
        """The step's settings alone, JSON-ready (the dry run's record)."""
        return {f.name: getattr(self, f.name) for f in fields(StepSettings)}


@dataclass(frozen=True, kw_only=True)
class TrainSettings(StepSettings):
    """What `magicanimate train` was asked to do; paths are absolute."""

    data: Path
    run: Path
    weights: Path
    start_from: Path | None = None  # --from: a folder in the MagicAnimate/ layout
    motion_module: Path | None = None
    steps: int = STEPS
    frame_stride: int = 1
    lr: float = 1e-5
    lr_warmup: int = 0
    weight_decay: float = 1e-2
    max_grad_norm: float = 1.0
    seed: int = 0
    image_prob: float = 0.0  # tau0 (stage 1)
    joint: tuple[float, float] = (0.0, 0.0)  # (tau1, tau2) (stage 2)
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    device: str = "cpu"
    validate_every: int = 0
    validation: Path | None = None
    quiet: bool = False
    log: str | None = None  # the trackers, comma-separated (None: metrics.jsonl only)
    max_skipped_steps: int = 0  # non-finite steps skipped (no update) before the run stops (finite.py)
    # held-out: the denoising loss and condition gains on a fixed set (train/heldout.py)
    val_data: Path | None = None  # another DATA folder
    val_split: float = 0.0  # or this share of DATA's videos and images, by a hash of their names
    val_every: int | None = None  # steps between measurements (None: every checkpoint); also at step 0 and the end
    val_items: int = 16  # items in the fixed set
    # data: what a sample is and how it is read (docs/training.md, "What a sample is")
    fit: str = "pad"  # animate --fit's choices and default: frames and renders shaped as at inference
    ref_margin: int = DEFAULT_REF_MARGIN  # frames between a reference and its targets (0: any other frame)
    data_workers: int = 0  # DataLoader worker processes (0: read in the training process)

    def validate_data(self) -> None:
        _check(self.fit in FIT_MODES, f"--fit {self.fit}: choose one of {', '.join(FIT_MODES)}")
        _check(self.ref_margin >= 0, f"--ref-margin {self.ref_margin}: must be at least 0")
        _check(self.data_workers >= 0, f"--data-workers {self.data_workers}: must be at least 0")

    def validate_scale(self) -> None:
        _check(self.gradient_accumulation >= 1,
               f"--gradient-accumulation {self.gradient_accumulation}: must be at least 1")
        _check(self.mixed_precision in PRECISIONS,
               f"--mixed-precision {self.mixed_precision}: choose one of {', '.join(PRECISIONS)}")
        if self.mixed_precision == "fp16" and self.device.split(":")[0] != "cuda":
            raise SettingsError(f"--mixed-precision fp16 needs a CUDA GPU (device {self.device}: accelerate has no fp16 "
                                "loss scaling there); use bf16 or no")
        if self.mixed_precision != "no" and self.validate_every:
            raise SettingsError("--validate-every runs the engine in fp32 on the trained networks; with "
                                f"--mixed-precision {self.mixed_precision} validate the export with `animate` instead")

    def validate(self) -> None:
        """Every check of a run that trains (`validate_options`, and a temporal start for stage 2)."""
        self.validate_options()
        if self.stage == 2 and self.motion_module is None and self.start_from is None:
            raise SettingsError("--stage 2 needs a temporal start: --motion-module FILE (AnimateDiff's mm_sd_v15.ckpt "
                                "or a temporal_attention.ckpt) or --from DIR with temporal_attention/")

    def validate_options(self) -> None:
        """The checks that need no file: what `--dry-run` asks too (it reads no temporal start)."""
        _check(self.stage in (1, 2), f"--stage {self.stage}: the paper has stages 1 and 2")
        for name, value, low in (("--steps", self.steps, 1), ("--batch-size", self.batch_size, 1),
                                 ("--frames", self.frames, 1), ("--frame-stride", self.frame_stride, 1),
                                 ("--checkpoint-every", self.checkpoint_every, 1),
                                 ("--keep-checkpoints", self.keep_checkpoints, 1), ("--lr-warmup", self.lr_warmup, 0),
                                 ("--validate-every", self.validate_every, 0),
                                 ("--max-skipped-steps", self.max_skipped_steps, 0)):
            _check(value >= low, f"{name} {value}: must be at least {low}")
        _check(self.width % 8 == 0 and self.height % 8 == 0 and min(self.width, self.height) >= MIN_SIZE,
               f"--size {self.width}x{self.height}: width and height must be multiples of 8, at least {MIN_SIZE} "
               "(smaller leaves the UNet's deepest level a single pixel, where GroupNorm has nothing to normalise)")
        _check(self.lr > 0, f"--lr {self.lr}: must be positive")
        _check(0.0 <= self.image_prob <= 1.0, f"--image-prob {self.image_prob}: must be within [0, 1]")
        tau1, tau2 = self.joint
        _check(0.0 <= tau1 <= tau2 <= 1.0, f"--joint {tau1},{tau2}: need 0 <= tau1 <= tau2 <= 1 (tau values out of "
                                           "order)")
        _check(0.0 <= self.ref_dropout <= 1.0, f"--ref-dropout {self.ref_dropout}: must be within [0, 1]")
        if self.stage == 1 and tau1 + tau2 > 0:
            raise SettingsError("--joint is stage 2's image-video mix; stage 1 takes --image-prob")
        if self.stage == 2 and self.image_prob > 0:
            raise SettingsError("--image-prob is stage 1's image share; stage 2 takes --joint tau1,tau2")
        _check(self.optimizer in ("adamw", "adamw8bit"), f"--optimizer {self.optimizer}: adamw or adamw8bit")
        _check(self.lora >= 0, f"--lora {self.lora}: a rank must be at least 1 (0: off)")
        if self.lora and self.stage == 1 and self.start_from is None:
            raise SettingsError("--lora in stage 1 needs --from DIR: a fresh ControlNet's zeroed output "
                                "convolutions pass no gradient to adapters (fine-tune the release or an export)")
        if self.validate_every and self.validation is None:
            raise SettingsError("--validate-every needs --validation DIR")
        self.validate_scale()
        self.validate_held_out()
        self.validate_data()

    def validate_held_out(self) -> None:
        if self.val_data is not None and self.val_split:
            raise SettingsError("--val-data and --val-split each give the held-out set; pass one")
        _check(0.0 <= self.val_split < 1.0, f"--val-split {self.val_split}: must be within [0, 1)")
        _check(self.val_every is None or self.val_every >= 1, f"--val-every {self.val_every}: must be at least 1")
        _check(self.val_items >= 1, f"--val-items {self.val_items}: must be at least 1")

    @property
    def held_out(self) -> bool:
        """Whether the run measures a held-out set."""
        return self.val_data is not None or self.val_split > 0

    @property
    def held_out_every(self) -> int:
        """Steps between held-out measurements: --val-every, else every checkpoint."""
        return self.val_every or self.checkpoint_every

    def record(self) -> dict:
        """JSON-ready settings for config.json (paths as strings, the mix as a list)."""
        out = {}
        for key, value in asdict(self).items():
            out[key] = str(value) if isinstance(value, Path) else (list(value) if isinstance(value, tuple) else value)
        return out


def resolve_mix(stage: int, image_prob: float | None, joint: tuple[float, float] | None,
                has_images: bool, data: Path) -> tuple[float, tuple[float, float]]:
    """tau0 and (tau1, tau2) with the defaults filled in; asking for images that DATA lacks is an error."""
    if stage == 1:
        tau0 = (DEFAULT_IMAGE_PROB if has_images else 0.0) if image_prob is None else image_prob
        if tau0 > 0 and not has_images:
            raise SettingsError(f"{data}: --image-prob {tau0} asks for images, but DATA has no images/ (add some "
                                "with prepare-data --images, or pass --image-prob 0)")
        return tau0, (0.0, 0.0) if joint is None else joint
    if joint is None:
        joint = DEFAULT_JOINT if has_images else (0.0, DEFAULT_JOINT[1] - DEFAULT_JOINT[0])
    if joint[0] > 0 and not has_images:
        raise SettingsError(f"{data}: --joint {joint[0]},{joint[1]} asks for images (tau1 > 0), but DATA has no "
                            "images/ (pass --joint 0,TAU2)")
    return 0.0 if image_prob is None else image_prob, joint


def parse_joint(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    parts = text.split(",")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 2:
        raise SettingsError(f"--joint {text}: expected two numbers TAU1,TAU2, e.g. 0.1,0.3")
    return values  # type: ignore[return-value]


def differing_setting(recorded: dict, current: dict) -> str | None:
    """The first setting (by name) that a resumed run would change, or None."""
    for key in sorted(set(recorded) | set(current)):
        if key in RESUMABLE:
            continue
        if recorded.get(key, RECORDED_BEFORE.get(key)) != current.get(key):
            return key
    return None


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise SettingsError(message)
