"""`--log tensorboard`: loss, learning rate, samples/s and validation scores through accelerate's tracker API.

The run's Accelerator is made with `log_with` and `project_dir=RUN` (logs under RUN/logs/), so another tracker
accelerate knows (wandb, mlflow, ...) plugs in the same way. metrics.jsonl stays the run's own record; the tracker
is a view of it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..runtime.errors import SettingsError
from .metrics import StepRecord

TRACKERS = {"tensorboard": ("tensorboard", "tensorboardX")}
"""Tracker -> the packages accelerate accepts for it (any one will do)."""
LOGS = "logs"
PROJECT = "train"


def check_tracker(name: str | None) -> None:
    """Refuse, in one line, a tracker whose package is missing (before the run folder is touched)."""
    if name is None:
        return
    if name not in TRACKERS:
        raise SettingsError(f"--log {name}: expected one of {', '.join(TRACKERS)}")
    if not any(importlib.util.find_spec(p) is not None for p in TRACKERS[name]):
        raise SettingsError(f"--log {name} needs the {TRACKERS[name][0]} package, which is not installed "
                            "(pip install 'magicanimate-cli[train]')")


def accelerator_options(name: str | None, run: Path) -> dict:
    """Keyword arguments for the run's Accelerator: the tracker and where it writes."""
    if name is None:
        return {}
    from accelerate.utils import ProjectConfiguration

    return {"log_with": name, "project_config": ProjectConfiguration(project_dir=str(run),
                                                                     logging_dir=str(Path(run) / LOGS))}


def start(accelerator, name: str | None, settings: dict) -> None:
    """Open the trackers with the run's settings as their hyperparameters (numbers and strings only)."""
    if name is None:
        return
    config = {k: v for k, v in settings.items() if isinstance(v, (int, float, str, bool))}
    accelerator.init_trackers(PROJECT, config=config)


def log_step(accelerator, name: str | None, record: StepRecord, seconds: float, batch_size: int) -> None:
    if name is None:
        return
    values = {"loss": record.loss, "lr": record.lr, "grad_norm": record.grad_norm,
              "samples_per_s": batch_size / seconds if seconds > 0 else 0.0}
    accelerator.log(values, step=record.step)


def log_validation(accelerator, name: str | None, entry: dict) -> None:
    """A validation record's scores (l1, psnr, ...) as `validation/<video>/<metric>`."""
    if name is None or "validation" not in entry:
        return
    values = {f"validation/{entry['validation']}/{k}": v for k, v in entry.items()
              if k not in ("step", "validation") and isinstance(v, (int, float)) and not isinstance(v, bool)}
    if values:
        accelerator.log(values, step=entry["step"])


def finish(accelerator, name: str | None) -> None:
    if name is not None:
        accelerator.end_training()
