"""What `magicanimate serve` is asked for, as plain data, checked before anything starts."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..animate.settings import DTYPE_CHOICES
from ..runtime.errors import SettingsError
from ..runtime.home import default_weights_dir

DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, option: str = "--keep-results") -> float:
    """Seconds from `90`, `90s`, `30m`, `1h` or `2d`; anything else is refused with the option's name."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text.lower())
    if match is None:
        raise SettingsError(f"{option} {text}: expected a duration like 90s, 30m, 1h or 2d")
    return float(match.group(1)) * DURATION_UNITS[match.group(2) or "s"]


def parse_devices(text: str) -> tuple[str, ...]:
    """`cuda:0,cuda:1` → one entry per device; each must be named once (one job runs on each)."""
    devices = tuple(d.strip() for d in text.split(",") if d.strip())
    if not devices:
        raise SettingsError(f"--devices {text!r}: name at least one device, e.g. cuda:0 or cuda:0,cuda:1")
    repeated = sorted({d for d in devices if devices.count(d) > 1 and d != "cpu"})
    if repeated:
        raise SettingsError(f"--devices {text}: {', '.join(repeated)} named twice; each GPU runs one job at a time")
    return devices


@dataclass(frozen=True)
class ServeSettings:
    """The server's settings; `devices` run one job each (the CPU may be named more than once, for tests)."""

    weights: Path = field(default_factory=default_weights_dir)
    animation_weights: Path | None = None  # --animation-weights: replaces <weights>/MagicAnimate/
    host: str = "127.0.0.1"
    port: int = 7860
    demo: bool = False
    devices: tuple[str, ...] = ("auto",)
    dtype: str = "auto"
    keep_results: float = 3600.0  # seconds a finished job's files are kept
    sweep_every: float = 60.0  # seconds between looks for expired files
    max_upload_mb: int = 200
    max_frames: int = 300
    max_size: int = 1024  # largest working side offered by the page
    max_job_seconds: float | None = None  # refuse jobs estimated to take longer (None: no limit)

    def validate(self) -> None:
        """Refuse settings that cannot work, before the workspace or any model exists."""
        if self.demo and self.animation_weights is not None:
            raise SettingsError("--animation-weights replaces the MagicAnimate part of --weights; --demo serves "
                                "the embedded tiny model instead, leave one out")
        if not 0 < self.port < 65536:
            raise SettingsError(f"--port must be between 1 and 65535 (got {self.port})")
        if self.keep_results <= 0:
            raise SettingsError("--keep-results must be longer than 0 s")
        if self.max_upload_mb < 1:
            raise SettingsError(f"--max-upload-mb must be at least 1 (got {self.max_upload_mb})")
        if self.max_frames < 1:
            raise SettingsError(f"--max-frames must be at least 1 (got {self.max_frames})")
        if self.max_job_seconds is not None and self.max_job_seconds <= 0:
            raise SettingsError(f"--max-job-seconds must be more than 0 (got {self.max_job_seconds:g})")
        if self.dtype not in DTYPE_CHOICES:
            raise SettingsError(f"--dtype must be one of {', '.join(DTYPE_CHOICES)} (got {self.dtype})")

    @property
    def default_size(self) -> int:
        """The page's starting working size: the tiny demo model runs at 128, the release at 512."""
        return 128 if self.demo else 512

    @property
    def default_steps(self) -> int:
        return 2 if self.demo else 25

    @property
    def default_frames(self) -> int:
        """The page's starting frame count: one window of the model (16 frames), not the server's maximum."""
        return min(self.max_frames, 16)

    @property
    def weights_folders(self) -> list[tuple[Path, str]]:
        """The weights folders and how a sidecar names them: by their own names, never where they are on the
        server (--demo's tiny model: `demo`)."""
        folders = [(self.weights, "demo" if self.demo else self.weights.name)]
        if self.animation_weights is not None:
            folders.append((self.animation_weights, self.animation_weights.name))
        return folders
