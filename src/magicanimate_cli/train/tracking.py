"""`--log TRACKER[,TRACKER...]`: loss, learning rate, samples/s, the held-out figures and validation scores through
accelerate's tracker API, to every tracker named.

The run's Accelerator is made with `log_with` (the list) and `project_dir=RUN` (file-based trackers write under
RUN/logs/); any tracker accelerate knows plugs in (tensorboard, wandb, mlflow, comet_ml, aim, clearml, dvclive,
swanlab, trackio), each an optional extra of ours. metrics.jsonl stays the run's own record; the trackers are views
of it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..runtime.errors import SettingsError
from .metrics import StepRecord

TRACKERS = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",), "mlflow": ("mlflow",),
            "comet_ml": ("comet_ml",), "aim": ("aim",), "clearml": ("clearml",), "dvclive": ("dvclive",),
            "swanlab": ("swanlab",), "trackio": ("trackio",)}
"""Tracker (accelerate's name) -> the packages accelerate accepts for it (any one will do); our extra of the same
name (comet_ml: comet-ml) installs the first."""
LOGS = "logs"
PROJECT = "train"


def tracker_names(log: str | None) -> list[str]:
    """The trackers of a --log value (comma-separated, repeats dropped, in the order given)."""
    names: list[str] = []
    for name in (log or "").split(","):
        if name.strip() and name.strip() not in names:
            names.append(name.strip())
    return names


def extra(name: str) -> str:
    return name.replace("_", "-")


def check_tracker(log: str | None) -> None:
    """Refuse, in one line, an unknown tracker or one whose package is missing (before the run folder is
    touched), naming the extra that installs it."""
    for name in tracker_names(log):
        if name not in TRACKERS:
            raise SettingsError(f"--log {name}: expected one of {', '.join(TRACKERS)}")
        if not any(importlib.util.find_spec(p) is not None for p in TRACKERS[name]):
            raise SettingsError(f"--log {name} needs the {TRACKERS[name][0]} package, which is not installed "
                                f"(pip install 'magicanimate-cli[{extra(name)}]')")


def accelerator_options(log: str | None, run: Path) -> dict:
    """Keyword arguments for the run's Accelerator: the trackers and where they write."""
    names = tracker_names(log)
    if not names:
        return {}
    from accelerate.utils import ProjectConfiguration

    return {"log_with": names, "project_config": ProjectConfiguration(project_dir=str(run),
                                                                      logging_dir=str(Path(run) / LOGS))}


def start(accelerator, log: str | None, settings: dict) -> None:
    """Open the trackers with the run's settings as their hyperparameters (numbers and strings only)."""
    if not tracker_names(log):
        return
    config = {k: v for k, v in settings.items() if isinstance(v, (int, float, str, bool))}
    accelerator.init_trackers(PROJECT, config=config)


def log_step(accelerator, log: str | None, record: StepRecord, seconds: float, batch_size: int) -> None:
    if not tracker_names(log):
        return
    values = {"loss": record.loss, "lr": record.lr, "grad_norm": record.grad_norm,
              "samples_per_s": batch_size / seconds if seconds > 0 else 0.0}
    accelerator.log(values, step=record.step)


def log_validation(accelerator, log: str | None, entry: dict) -> None:
    """A validation record's scores (l1, psnr, ...) as `validation/<video>/<metric>`."""
    if not tracker_names(log) or "validation" not in entry:
        return
    values = {f"validation/{entry['validation']}/{k}": v for k, v in entry.items()
              if k not in ("step", "validation") and isinstance(v, (int, float)) and not isinstance(v, bool)}
    if values:
        accelerator.log(values, step=entry["step"])


def held_out_values(val: dict) -> dict[str, float]:
    """A held-out record as flat tracker scalars: `val/loss`, `val/ref_gain`, `val/band/t0-249`, ..."""
    values = {f"val/{k}": float(v) for k, v in val.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    values.update({f"val/band/{band}": float(v) for band, v in val.get("bands", {}).items()})
    return values


def log_held_out(accelerator, log: str | None, step: int, val: dict) -> None:
    if tracker_names(log):
        accelerator.log(held_out_values(val), step=step)


def finish(accelerator, log: str | None) -> None:
    if tracker_names(log):
        accelerator.end_training()
