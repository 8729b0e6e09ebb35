"""The noise schedule training adds noise with: the one the engine samples with.

MagicAnimate's inference DDIM (engine/schedulers.py, the official configs/inference/inference.yaml: linear betas
0.00085-0.012 over 1000 steps, epsilon prediction) defines it. Training on any other schedule would teach the model
noise levels the sampler never asks for (AnimateDiff starts with a mismatched schedule give noise:
Moore-AnimateAnyone #110). The weights folder's `scheduler/scheduler_config.json` is not read: SD 1.5 ships its
PNDM sampling config there (scaled_linear betas), which inference does not follow either, and `train` takes the
folder exactly as `download-weights` fetches it. The schedule is recorded in the run's config.json and in every
export's training.json, and compared when a run resumes or a stage builds on another's export.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..engine.schedulers import make_scheduler, scheduler_record
from ..runtime.errors import SettingsError

SCHEDULE_KEYS = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "prediction_type")


@dataclass(frozen=True)
class NoiseSchedule:
    """q(x_t | x_0) of the inference sampler: x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) eps."""

    alphas_cumprod: torch.Tensor  # (T,) float32
    record: dict  # the schedule's defining values, JSON-ready

    @property
    def timesteps(self) -> int:
        return int(self.alphas_cumprod.shape[0])

    def add_noise(self, latents: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Noise `latents` (b, ...) to timesteps `t` (b,), in float32 as diffusers' schedulers do."""
        a = self.alphas_cumprod.to(latents.device)[t].float()
        shape = (-1,) + (1,) * (latents.dim() - 1)
        return (a.sqrt().reshape(shape) * latents.float() + (1 - a).sqrt().reshape(shape) * noise.float()
                ).to(latents.dtype)


def inference_schedule() -> NoiseSchedule:
    """The schedule of the engine's default (official) DDIM sampler."""
    scheduler = make_scheduler("ddim")
    config = scheduler_record("ddim")["config"]
    return NoiseSchedule(scheduler.alphas_cumprod.to(torch.float32).clone(), {k: config[k] for k in SCHEDULE_KEYS})


def check_recorded(schedule: NoiseSchedule, recorded: dict | None, source: Path) -> None:
    """A run or export made with another schedule cannot be continued with this one."""
    if recorded is None:
        return
    for key in SCHEDULE_KEYS:
        if recorded.get(key) != schedule.record[key]:
            raise SettingsError(f"{source}: noise schedule {key} is {recorded.get(key)!r}, this engine samples with "
                                f"{schedule.record[key]!r}")
