"""Checkpoints of a denoising run: the latents after a step, so a crash costs one step and not the whole video.

A checkpoint holds the latents, the scheduler's state (a multistep solver's stored model outputs and counters, its
step index) and the state of the run's generator (where an ancestral scheduler's next draw comes from): with the
settings and inputs that produced it, the run from step k onwards then repeats exactly what the uninterrupted run
would have done, for every scheduler. Resuming with anything else is refused.

It is a `torch.save`d dict of tensors, numbers, strings and lists only, so `torch.load(weights_only=True)` reads
it without running pickled code. It is written through a temporary file and renamed, so a kill at any moment
leaves either the previous checkpoint or the new one. Version 1 (latents only) came from DDIM and Euler runs,
whose state follows from the step; it still resumes them.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..engine.schedulers import STATELESS
from ..runtime.errors import InputError, OutputError, SettingsError
from ..runtime.testhooks import pause_point

FORMAT = "magicanimate-cli/fuse-long-checkpoint"
VERSION = 2
READABLE = (1, 2)


@dataclass(frozen=True)
class Checkpoint:
    latents: torch.Tensor  # float32 (1, 4, padded frames, h, w) on the CPU, after `next_step` steps
    next_step: int
    seed: int
    fingerprint: dict[str, str]  # everything that changes the numbers; resuming requires equality
    labels: dict[str, str] = field(default_factory=dict)  # how to name fingerprint entries to the user
    scheduler: dict | None = None  # engine.schedulers.scheduler_state after `next_step` steps (None: version 1)
    generator: torch.Tensor | None = None  # the run's generator state after `next_step` steps (None: version 1)

    def payload(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "latents": self.latents.detach().to("cpu", torch.float32),
                "next_step": int(self.next_step), "seed": int(self.seed), "fingerprint": dict(self.fingerprint),
                "labels": dict(self.labels), "scheduler": self.scheduler, "generator": self.generator}


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Write atomically: a temporary beside `path`, flushed to disk, then renamed over it."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    except OSError as exc:
        raise OutputError(f"{path}: cannot write the checkpoint ({exc.strerror or exc})") from None
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(checkpoint.payload(), file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException as exc:
        Path(temp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise OutputError(f"{path}: cannot write the checkpoint ({exc.strerror or exc})") from None
        raise


def load_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint; anything that is not one of ours is refused in one line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a file that is not a checkpoint
        raise InputError(f"{path}: not a fuse-long checkpoint (torch cannot read it: {type(exc).__name__})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(f"{path}: not a fuse-long checkpoint")
    if data.get("version") not in READABLE:
        raise InputError(f"{path}: checkpoint version {data.get('version')} is not supported (expected "
                         f"{' or '.join(map(str, READABLE))})")
    latents = data.get("latents")
    if not isinstance(latents, torch.Tensor) or latents.ndim != 5:
        raise InputError(f"{path}: the checkpoint holds no latents")
    scheduler, generator = data.get("scheduler"), data.get("generator")
    if data["version"] >= 2 and not (isinstance(scheduler, dict) and isinstance(generator, torch.Tensor)):
        raise InputError(f"{path}: the checkpoint holds no scheduler state")
    return Checkpoint(latents.float(), int(data["next_step"]), int(data["seed"]),
                      {str(k): str(v) for k, v in data["fingerprint"].items()},
                      {str(k): str(v) for k, v in data.get("labels", {}).items()}, scheduler, generator)


def differences(saved: Checkpoint, fingerprint: dict[str, str], labels: dict[str, str]) -> list[str]:
    """What differs between the checkpoint's run and this one, named as the user knows it."""
    found = []
    for key in sorted(set(saved.fingerprint) | set(fingerprint)):
        before, now = saved.fingerprint.get(key, "(unset)"), fingerprint.get(key, "(unset)")
        if before != now:
            found.append(f"{key} {_shown(before, saved.labels.get(key))} "
                         f"(this run: {_shown(now, labels.get(key))})")
    return found


def _shown(value: str, label: str | None) -> str:
    """Content hashes are shown shortened, after the file name they came from."""
    if value.startswith("sha256:"):
        short = value[len("sha256:"):][:12]
        return f"{label} [{short}]" if label else f"[{short}]"
    return value


def check_resumable(path: Path, saved: Checkpoint, fingerprint: dict[str, str], labels: dict[str, str],
                    seed: int | None, latent_shape: tuple[int, ...] | None = None) -> None:
    """Refuse, in one line naming what differs, a checkpoint this run cannot continue."""
    found = differences(saved, fingerprint, labels)
    if seed is not None and seed != saved.seed:
        found.append(f"seed {saved.seed} (this run: {seed})")
    if found:
        raise SettingsError(f"--resume {path}: the checkpoint was made with other settings or inputs: "
                            + "; ".join(found))
    scheduler = fingerprint.get("scheduler", "ddim")
    if saved.scheduler is None and saved.next_step > 0 and scheduler not in STATELESS:
        raise SettingsError(f"--resume {path}: a version 1 checkpoint holds no {scheduler} state "
                            f"(it resumes {' and '.join(sorted(STATELESS))} only)")
    if latent_shape is not None and tuple(saved.latents.shape) != tuple(latent_shape):
        raise SettingsError(f"--resume {path}: the checkpoint's latents are {tuple(saved.latents.shape)}, "
                            f"this run needs {tuple(latent_shape)}")


@dataclass(frozen=True)
class CheckpointWriter:
    """A step callback that saves the run after every step (on the one process that writes)."""

    path: Path
    seed: int
    fingerprint: dict[str, str]
    labels: dict[str, str]

    def __call__(self, step: int, latents: torch.Tensor, scheduler: dict, generator: torch.Tensor) -> None:
        save_checkpoint(self.path, Checkpoint(latents, step + 1, self.seed, self.fingerprint, self.labels,
                                              scheduler, generator))
        pause_point(f"checkpoint:{step + 1}")  # tests kill the run here to resume it
