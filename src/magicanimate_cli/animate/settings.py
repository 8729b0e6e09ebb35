"""Settings of one animation run, as plain data. The CLI fills them; the job and the engine read them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

from ..media.reader import FrameSelection
from ..runtime.errors import SettingsError
from ..runtime.home import default_weights_dir

MAX_CONTEXT_FRAMES = 24
"""The released motion module's position table has 24 rows: no window may be longer."""



FIT_CHOICES = ("pad", "crop", "stretch")
NOISE_CHOICES = ("shared", "independent")
FUSION_CHOICES = ("mean", "pyramid", "none")
DTYPE_CHOICES = ("auto", "fp16", "bf16", "fp32")
BATCH_FORMATS = ("mp4", "webm", "gif", "png")
"""The words each choice option takes; the command line offers exactly these, the settings check them again for
callers of the Python API."""


@dataclass(frozen=True)
class AnimateSettings:
    """Everything that decides what `animate` (and `fuse-long`) produces."""

    size: int = 512
    width: int | None = None
    height: int | None = None
    fit: str = "pad"
    selection: FrameSelection = field(default_factory=FrameSelection)
    fps: Fraction | None = None
    steps: int = 25
    guidance: float = 7.5
    seed: int | None = None
    context_frames: int = 16
    context_overlap: int = 4
    wrap: bool = True
    noise: str = "shared"
    fusion: str = "mean"
    scheduler: str = "ddim"
    device: str = "auto"
    dtype: str = "auto"
    weights: Path = field(default_factory=default_weights_dir)
    animation_weights: Path | None = None  # a MagicAnimate/-layout folder replacing <weights>/MagicAnimate/
    crf: int = 18
    grid: bool = False
    low_vram: bool = False
    compile: bool = False

    def validate(self) -> None:
        """Refuse settings that cannot work, before any model is loaded."""
        if self.steps < 1:
            raise SettingsError(f"--steps must be at least 1 (got {self.steps})")
        if not 1 <= self.context_frames <= MAX_CONTEXT_FRAMES:
            raise SettingsError(
                f"--context-frames must be between 1 and {MAX_CONTEXT_FRAMES}, the released motion module's "
                f"position table (got {self.context_frames})"
            )
        if not 0 <= self.context_overlap < self.context_frames:
            raise SettingsError(
                f"--context-overlap must be at least 0 and smaller than --context-frames "
                f"(got {self.context_overlap} with {self.context_frames} frames)"
            )
        for name, value in (("--size", self.size), ("--width", self.width), ("--height", self.height)):
            if value is not None and (value <= 0 or value % 8):
                raise SettingsError(f"{name} must be a positive multiple of 8 (got {value})")
        if self.fit not in FIT_CHOICES:
            raise SettingsError(f"--fit must be pad, crop or stretch (got {self.fit})")
        if self.noise not in NOISE_CHOICES:
            raise SettingsError(f"--noise must be shared or independent (got {self.noise})")
        if self.fusion not in FUSION_CHOICES:
            raise SettingsError(f"--fusion must be mean, pyramid or none (got {self.fusion})")
        from ..engine.schedulers import SCHEDULER_NAMES

        if self.scheduler not in SCHEDULER_NAMES:
            raise SettingsError(f"--scheduler must be one of {', '.join(SCHEDULER_NAMES)} (got {self.scheduler})")
        if not 0 <= self.crf <= 63:
            raise SettingsError(f"--crf must be between 0 and 63 (got {self.crf})")
        if self.selection.start < 0 or self.selection.stride < 1:
            raise SettingsError("--start must be ≥ 0 and --frame-stride ≥ 1")
        if self.selection.max_frames is not None and self.selection.max_frames < 1:
            raise SettingsError(f"--max-frames must be at least 1 (got {self.selection.max_frames})")
        if self.fps is not None and self.fps <= 0:
            raise SettingsError(f"--fps must be positive (got {self.fps})")

    def sampler_config(self):
        """What the denoising loop is asked to do (engine.sampler_config.SamplerConfig, importable without torch)."""
        from ..engine.sampler_config import SamplerConfig

        return SamplerConfig(self.steps, self.guidance, self.context_frames, self.context_overlap, self.wrap,
                             self.fusion, scheduler=self.scheduler)

    def record(self) -> dict:
        """JSON-ready form for sidecars."""
        data = asdict(self)
        data["weights"] = str(self.weights)
        data["animation_weights"] = None if self.animation_weights is None else str(self.animation_weights)
        data["fps"] = None if self.fps is None else str(self.fps)
        return data



