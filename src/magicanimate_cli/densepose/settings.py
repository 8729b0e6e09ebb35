"""The options of one `pose` run, as plain data: the CLI fills them, the job and the renderer read them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..runtime.errors import SettingsError
from ..runtime.home import default_weights_dir
from .track import SmoothSettings

PEOPLE_CHOICES = ("all", "largest")

DEFAULT_MIN_SCORE = 0.8
"""DensePose's own examples (and the exporter's `--min_score`) keep detections above 0.8."""


@dataclass(frozen=True)
class PoseSettings:
    """Everything that decides what a pose render looks like, and where the model comes from."""

    model: str = "r50"  # r50 | r101 | a path to a TorchScript file with the same contract
    weights: Path = field(default_factory=default_weights_dir)
    device: str = "auto"
    min_score: float = DEFAULT_MIN_SCORE
    people: str = "all"
    crf: int = 18
    smooth: SmoothSettings | None = None  # --smooth: steady the render (pose/track.py); None draws each frame alone

    def validate(self) -> None:
        """Refuse settings that cannot work before the model is loaded or a frame decoded."""
        if not 0.0 <= self.min_score <= 1.0:
            raise SettingsError(f"--min-score must be between 0 and 1 (got {self.min_score})")
        if self.people not in PEOPLE_CHOICES:
            raise SettingsError(f"--people must be all or largest (got {self.people})")
        if not 0 <= self.crf <= 63:
            raise SettingsError(f"--crf must be between 0 and 63 (got {self.crf})")
        if self.smooth is not None:
            if not 0 <= self.smooth.radius <= 8:
                raise SettingsError(f"--smooth-radius must be between 0 and 8 frames (got {self.smooth.radius})")
            if not 0 <= self.smooth.fill_gap <= 12:
                raise SettingsError(f"--fill-gap must be between 0 and 12 frames (got {self.smooth.fill_gap})")

    def record(self) -> dict:
        """JSON-ready form for sidecars."""
        return {"model": self.model, "weights": str(self.weights), "device": self.device,
                "min_score": self.min_score, "people": self.people, "crf": self.crf,
                "smooth": None if self.smooth is None else self.smooth.record()}
