"""The denoising loop: DDIM with classifier-free guidance over overlapping windows of frames.

Per step, in the order the official pipeline does it:
1. the appearance encoder runs once on the clean reference latent and fills the reference bank;
2. every window of K frames is denoised by the UNet (guidance batch [unconditional, conditional]) with the
   ControlNet residuals of its frames; predictions are summed per frame with their fusion weights;
3. per-frame averages are guided (u + g·(c − u)) and DDIM takes one step for the whole video.

The ControlNet runs once per frame per step: its residuals are cached for the windows that need them and freed
as soon as no later window of the step does, so memory does not grow with the length of the video.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .models.reference_attention import ReferenceBank
from .sampler_config import SamplerConfig
from .windows import WindowPlan, window_weights

# DDIM as MagicAnimate's inference.yaml and AnimationPipeline configure it (not SD 1.5's scheduler file, whose
# set_alpha_to_one differs): eta 0, "leading" spacing, steps_offset 1, no sample clipping.
OFFICIAL_DDIM = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "linear",
    "steps_offset": 1,
    "clip_sample": False,
    "set_alpha_to_one": True,
    "timestep_spacing": "leading",
    "prediction_type": "epsilon",
}


def make_scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(**OFFICIAL_DDIM)


@dataclass
class Conditioning:
    """Everything that stays fixed while sampling one video."""

    text: torch.Tensor  # (1, 77, C) embedding of the empty prompt (uncond and cond are the same)
    reference_latents: torch.Tensor  # (1, 4, h, w): VAE mean × scaling factor
    control: Sequence | np.ndarray  # (F, H, W, 3) uint8 indexable by frame lists: padded DensePose frames


@dataclass
class SamplerModels:
    unet: nn.Module
    appearance_encoder: nn.Module
    controlnet: nn.Module
    bank: ReferenceBank

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype


@dataclass
class StepStats:
    """Work done in one step; tests and benchmarks read it."""

    controlnet_frames: int = 0
    unet_windows: int = 0
    appearance_passes: int = 0
    peak_cached_frames: int = 0


def control_tensor(control: Sequence | np.ndarray, frames: Sequence[int], device, dtype) -> torch.Tensor:
    """DensePose frames as the ControlNet expects them: RGB in [0, 1], (n, 3, H, W)."""
    batch = np.ascontiguousarray(np.asarray(control[list(frames)] if isinstance(control, np.ndarray)
                                            else [control[f] for f in frames]))
    x = torch.from_numpy(batch).to(device=device).permute(0, 3, 1, 2)
    return (x.to(torch.float32) / 255.0).to(dtype)


class ControlNetCache:
    """ControlNet residuals per frame for one step, computed on first use and released after last use."""

    def __init__(self, models: SamplerModels, cond: Conditioning, latents: torch.Tensor, t: torch.Tensor,
                 windows: Sequence[Sequence[int]], stats: StepStats) -> None:
        self.models, self.cond, self.latents, self.t, self.stats = models, cond, latents, t, stats
        self.last_use: dict[int, int] = {}
        for i, window in enumerate(windows):
            for f in window:
                self.last_use[f] = i
        self.cache: dict[int, tuple[list[torch.Tensor], torch.Tensor]] = {}

    def _compute(self, frames: list[int]) -> None:
        m = self.models
        n = len(frames)
        sample = self.latents[0][:, frames].permute(1, 0, 2, 3).to(m.dtype)
        context = self.cond.text.to(m.dtype).expand(n, -1, -1)
        image = control_tensor(self.cond.control, frames, m.device, m.dtype)
        down, mid = m.controlnet(sample, self.t, encoder_hidden_states=context, controlnet_cond=image,
                                 conditioning_scale=1.0, return_dict=False)
        for j, f in enumerate(frames):
            self.cache[f] = ([d[j] for d in down], mid[j])
        self.stats.controlnet_frames += n

    def residuals(self, window: Sequence[int], copies: int) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Residuals for a window as (copies, C, K, h, w) tensors (one copy per guidance half)."""
        missing = [f for f in window if f not in self.cache]
        if missing:
            self._compute(missing)
        self.stats.peak_cached_frames = max(self.stats.peak_cached_frames, len(self.cache))
        levels = len(self.cache[window[0]][0])
        down = [torch.stack([self.cache[f][0][i] for f in window], dim=1) for i in range(levels)]
        mid = torch.stack([self.cache[f][1] for f in window], dim=1)
        expand = lambda r: r.unsqueeze(0).expand(copies, *r.shape)  # noqa: E731
        return [expand(d) for d in down], expand(mid)

    def release_after(self, window_index: int) -> None:
        for f in [f for f in self.cache if self.last_use[f] <= window_index]:
            del self.cache[f]


def fill_reference_bank(models: SamplerModels, cond: Conditioning, t: torch.Tensor, stats: StepStats) -> None:
    """One appearance-encoder pass: the two guidance copies of the official batch are identical."""
    models.bank.clear()
    models.appearance_encoder(cond.reference_latents.to(models.dtype), t,
                              encoder_hidden_states=cond.text.to(models.dtype), return_dict=False)
    if not models.bank.complete:
        raise RuntimeError("the appearance encoder did not fill every reference slot")
    stats.appearance_passes += 1


def predict_windows(models: SamplerModels, cond: Conditioning, latents: torch.Tensor, t: torch.Tensor,
                    plan: WindowPlan, run: Sequence[int], config: SamplerConfig, stats: StepStats,
                    on_window: Callable[[], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted sums of noise predictions over the windows `run` (indices into the plan) and their weights.

    Returns (copies, 4, F, h, w) float32 sums and (F,) float32 weights; a caller that splits windows over
    processes adds these up across processes before `guide`.
    """
    copies = 2 if config.guided else 1
    _, c, frames, h, w = latents.shape
    noise_sum = torch.zeros((copies, c, frames, h, w), dtype=torch.float32, device=latents.device)
    weight_sum = torch.zeros(frames, dtype=torch.float32, device=latents.device)
    windows = [plan.windows[i] for i in run]
    if not windows:
        return noise_sum, weight_sum
    fill_reference_bank(models, cond, t, stats)
    models.bank.unconditional_first_half = config.guided
    controlnet = ControlNetCache(models, cond, latents, t, windows, stats)
    context = cond.text.to(models.dtype).expand(copies, -1, -1)
    for i, window in enumerate(windows):
        index = torch.tensor(window, device=latents.device)
        sample = latents[:, :, index].to(models.dtype).expand(copies, -1, -1, -1, -1)
        down, mid = controlnet.residuals(window, copies)
        pred = models.unet(sample, t, context, down_block_additional_residuals=down,
                           mid_block_additional_residual=mid)
        weights = window_weights(len(window), config.fusion).to(latents.device)
        noise_sum.index_add_(2, index, pred.float() * weights[None, None, :, None, None])
        weight_sum.index_add_(0, index, weights)
        controlnet.release_after(i)
        stats.unet_windows += 1
        if on_window is not None:
            on_window()
    models.bank.clear()
    return noise_sum, weight_sum


def guide(noise_sum: torch.Tensor, weight_sum: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """Average the window predictions per frame, then apply classifier-free guidance (in float32)."""
    if torch.any(weight_sum == 0):
        raise RuntimeError("some frames are covered by no window")
    noise = noise_sum / weight_sum[None, None, :, None, None]
    if noise.shape[0] == 1:
        return noise
    uncond, cond = noise[:1], noise[1:]
    return uncond + guidance_scale * (cond - uncond)


StepCallback = Callable[[int, torch.Tensor], None]
Reducer = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def denoise(models: SamplerModels, cond: Conditioning, latents: torch.Tensor, plan: WindowPlan,
            config: SamplerConfig, *, start_step: int = 0, run: Sequence[int] | None = None,
            reduce: Reducer | None = None, callback: StepCallback | None = None,
            on_window: Callable[[], None] | None = None, stats: list[StepStats] | None = None) -> torch.Tensor:
    """Run DDIM from `start_step` to the end; latents are float32 (1, 4, F, h, w) throughout.

    `run` restricts this process to some windows and `reduce` sums the partial predictions across processes,
    so several GPUs share a step and still take the same DDIM step.
    """
    scheduler = make_scheduler()
    scheduler.set_timesteps(config.steps, device=latents.device)
    run = list(range(len(plan.windows))) if run is None else list(run)
    for step in range(start_step, len(scheduler.timesteps)):
        t = scheduler.timesteps[step]
        step_stats = StepStats()
        noise_sum, weight_sum = predict_windows(models, cond, latents, t, plan, run, config, step_stats, on_window)
        if reduce is not None:
            noise_sum, weight_sum = reduce(noise_sum, weight_sum)
        noise = guide(noise_sum, weight_sum, config.guidance_scale)
        latents = scheduler.step(noise, t, latents, eta=0.0, return_dict=False)[0]
        if stats is not None:
            stats.append(step_stats)
        if callback is not None:
            callback(step, latents)
    return latents
