"""From the words a user gave to a loaded DensePose model: checked settings, then the model, once per command.

The commands (`pose`, `animate --motion-from-video`, `--align`) and the preflight that runs before any diffusion
model loads all come through here, so there is one way to the model. Imports are lazy: `--help` and
`fuse-long --plan` must not pay for torch.
"""

from __future__ import annotations

import time
from pathlib import Path


def pose_settings(model: str, weights: Path | None, device: str, min_score: float, people: str, crf: int,
                  smooth=None):
    """Checked PoseSettings from the command-line words."""
    from ..runtime.home import default_weights_dir
    from .settings import PoseSettings

    settings = PoseSettings(model=model, weights=Path(weights).expanduser() if weights else default_weights_dir(),
                            device=device, min_score=min_score, people=people, crf=crf, smooth=smooth)
    settings.validate()
    return settings


def load_pose_model(settings, reporter):
    """Find and load the DensePose model; returns it and the seconds it took."""
    from ..runtime.devices import resolve_device
    from .model import PoseModel, model_path

    device = resolve_device(settings.device)
    path = model_path(settings.model, settings.weights)
    reporter.note(f"loading DensePose model {path} on {device}")
    started = time.perf_counter()
    model = PoseModel.load(path, device)
    return model, time.perf_counter() - started
