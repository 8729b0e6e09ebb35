"""The denoising loop: a diffusers scheduler (DDIM by default) with classifier-free guidance over overlapping windows of frames.

Per step, in the order the official pipeline does it:
1. the appearance encoder runs once on the clean reference latent and fills the reference bank;
2. every window of K frames is denoised by the UNet (guidance batch [unconditional, conditional]) with the
   ControlNet residuals of its frames; predictions are summed per frame with their fusion weights;
3. per-frame averages are guided (u + g·(c − u)) and the scheduler takes one step for the whole video.

The ControlNet runs once per frame per step: its residuals are cached for the windows that need them and freed
as soon as no later window of the step does, so memory does not grow with the length of the video.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..runtime.errors import MagicAnimateError
from ..runtime.model_guard import ModelRunError, failure_reason
from .models.reference_attention import ReferenceBank
from .sampler_config import SamplerConfig
from .schedulers import ANCESTRAL, load_scheduler_state, make_scheduler
from .windows import WindowPlan, window_weights


def start_scheduler(config: SamplerConfig, device: torch.device | str, state: dict | None = None):
    """The run's scheduler with its timesteps set: fresh, or continued from a checkpoint's saved `state`."""
    scheduler = make_scheduler(config.scheduler)
    scheduler.set_timesteps(config.steps, device=device)
    if state is not None:
        load_scheduler_state(scheduler, state, device)
    return scheduler


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
    split_copies: bool = False  # run the guidance copies after the fork one at a time: half the activations
    unet_prefix: Callable | None = None  # the UNet's two halves as called (compiled ones after `compile`)
    unet_suffix: Callable | None = None

    def __post_init__(self) -> None:
        self.unet_prefix = self.unet_prefix or self.unet.prefix
        self.unet_suffix = self.unet_suffix or self.unet.suffix

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


def reference_features(models: SamplerModels, cond: Conditioning, timesteps: Sequence[torch.Tensor]
                       ) -> list[list[torch.Tensor]]:
    """The reference bank of every step to come, one appearance-encoder pass (batch 1) each.

    The encoder sees the clean reference latent and the empty prompt, so its features depend only on the
    timestep: computing them all before denoising lets the encoder leave the device for the whole loop
    (≈14 MB per step in fp16 at 512², against 1.7 GB of encoder weights).
    """
    banks = []
    for t in timesteps:
        models.bank.clear()
        models.appearance_encoder(cond.reference_latents.to(models.dtype), t,
                                  encoder_hidden_states=cond.text.to(models.dtype), return_dict=False)
        if not models.bank.complete:
            raise RuntimeError("the appearance encoder did not fill every reference slot")
        banks.append(list(models.bank.features))
    models.bank.clear()
    return banks


def _predict(models: SamplerModels, sample: torch.Tensor, t: torch.Tensor, context: torch.Tensor,
             down: list[torch.Tensor], mid: torch.Tensor, copies: int) -> torch.Tensor:
    """One window through the UNet: the prefix once, then the copies' suffixes together or one by one."""
    prefix = models.unet_prefix(sample, t, context, down)
    if not models.split_copies or copies == 1:
        return models.unet_suffix(prefix.repeat(copies), mid)
    preds = []
    for rows in ("uncond", "cond"):
        models.bank.rows = rows
        preds.append(models.unet_suffix(prefix, mid))
    models.bank.rows = "uncond+cond"
    return torch.cat(preds)


def predict_windows(models: SamplerModels, cond: Conditioning, latents: torch.Tensor, t: torch.Tensor,
                    plan: WindowPlan, run: Sequence[int], config: SamplerConfig, stats: StepStats,
                    features: list[torch.Tensor], on_window: Callable[[], None] | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted sums of noise predictions over the windows `run` (indices into the plan) and their weights.

    `features` is this step's reference bank. Returns (copies, 4, F, h, w) float32 sums and (F,) float32
    weights; a caller that splits windows over processes adds these up across processes before `guide`.
    """
    copies = 2 if config.guided else 1
    _, c, frames, h, w = latents.shape
    noise_sum = torch.zeros((copies, c, frames, h, w), dtype=torch.float32, device=latents.device)
    weight_sum = torch.zeros(frames, dtype=torch.float32, device=latents.device)
    windows = [plan.windows[i] for i in run]
    if not windows:
        return noise_sum, weight_sum
    models.bank.features = list(features)
    models.bank.rows = "uncond+cond" if config.guided else "cond"
    controlnet = ControlNetCache(models, cond, latents, t, windows, stats)
    # The copies share latents, text and residuals, so the UNet runs its prefix once and forks (see TemporalUNet).
    batch = 1 if config.shared_prefix else copies
    context = cond.text.to(models.dtype).expand(batch, -1, -1)
    for i, window in enumerate(windows):
        index = torch.tensor(window, device=latents.device)
        sample = latents[:, :, index].to(models.dtype).expand(batch, -1, -1, -1, -1)
        try:
            down, mid = controlnet.residuals(window, batch)
            pred = _predict(models, sample, t, context, down, mid, copies // batch)
        except MagicAnimateError:
            raise
        except Exception as exc:
            raise EngineFailure(run[i], len(plan.windows), window, latents.device, failure_reason(exc)) from exc
        weights = window_weights(len(window), config.fusion).to(latents.device)
        noise_sum.index_add_(2, index, pred.float() * weights[None, None, :, None, None])
        weight_sum.index_add_(0, index, weights)
        controlnet.release_after(i)
        stats.unet_windows += 1
        if on_window is not None:
            on_window()
    models.bank.clear()
    return noise_sum, weight_sum


class EngineFailure(ModelRunError):
    """A network of the animation engine raised while denoising one window: the one line names the window, its
    frames, the step (added by `denoise`, which knows it) and the device, as a DensePose failure names the frame.
    The traceback stays on the cause (printed with --debug)."""

    def __init__(self, window: int, windows: int, frames: Sequence[int], device: torch.device, reason: str,
                 step: str = "") -> None:
        self.window, self.windows, self.frames = window, windows, list(frames)
        self.device, self.reason, self.step = device, reason, step
        where = f"window {window + 1}/{windows} (frames {min(frames)}-{max(frames)})"
        super().__init__(f"the animation engine failed on {where}{step}, on {device}: {reason}")

    def at_step(self, step: int, steps: int) -> EngineFailure:
        return EngineFailure(self.window, self.windows, self.frames, self.device, self.reason,
                             f", step {step + 1}/{steps}")


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
            on_window: Callable[[], None] | None = None, stats: list[StepStats] | None = None,
            banks: list[list[torch.Tensor]] | None = None, generator: torch.Generator | None = None,
            noise: str = "shared", scheduler=None) -> torch.Tensor:
    """Run the configured scheduler from `start_step` to the end; latents are float32 (1, 4, F, h, w).

    At `start_step` 0 the latents are the unit-variance initial noise and are scaled by the scheduler's
    `init_noise_sigma` here (1 for DDIM); from a later step they are the saved latents as they were. Each
    step the windows see `scale_model_input` of the latents and the fused, guided prediction goes through one
    `scheduler.step` for the whole video. An ancestral scheduler's fresh noise comes from `generator` (the
    run's seeded CPU generator, so every process of a --nproc run draws the same), laid out as `noise` lays out
    the initial noise (`take_step`).

    `scheduler` is one continued from a checkpoint (`start_scheduler` with its saved state); without it a fresh
    one is made. `run` restricts this process to some windows and `reduce` sums the partial predictions across
    processes, so several GPUs share a step and still take the same scheduler step. `banks` are the reference
    features of the steps from `start_step` on (`reference_features`); without them they are computed here first.
    The list is consumed: each step's bank is removed from it once used, so its memory goes with it.
    """
    if scheduler is None:
        scheduler = start_scheduler(config, latents.device)
    if start_step == 0:
        latents = latents * scheduler.init_noise_sigma
    if config.scheduler in ANCESTRAL and generator is None:
        raise ValueError(f"the {config.scheduler} scheduler needs the run's generator for its noise")
    timesteps = scheduler.timesteps[start_step:]
    run = list(range(len(plan.windows))) if run is None else list(run)
    if banks is None:
        banks = reference_features(models, cond, timesteps)
    if len(banks) != len(timesteps):
        raise ValueError(f"{len(banks)} reference banks for {len(timesteps)} steps")
    for step in range(start_step, len(scheduler.timesteps)):
        t = scheduler.timesteps[step]
        step_stats = StepStats(appearance_passes=1)  # its bank's pass, made up front
        features = banks.pop(0)
        model_input = scheduler.scale_model_input(latents, t)
        try:
            noise_sum, weight_sum = predict_windows(models, cond, model_input, t, plan, run, config, step_stats,
                                                    features, on_window)
        except EngineFailure as exc:
            raise exc.at_step(step, len(scheduler.timesteps)) from exc.__cause__
        del features
        if reduce is not None:
            noise_sum, weight_sum = reduce(noise_sum, weight_sum)
        prediction = guide(noise_sum, weight_sum, config.guidance_scale)
        latents = take_step(scheduler, config, prediction, t, latents, generator, noise)
        if stats is not None:
            stats.append(step_stats)
        if callback is not None:
            callback(step, latents)
    return latents


def take_step(scheduler, config: SamplerConfig, prediction: torch.Tensor, t: torch.Tensor, latents: torch.Tensor,
              generator: torch.Generator | None, noise: str = "shared") -> torch.Tensor:
    """One `scheduler.step` for the whole video.

    An ancestral scheduler adds a fresh draw the shape of what it is given. Under `independent` noise that is the
    whole video, one draw per frame. Under `shared` noise the video (a whole number of K-frame blocks) is handed
    over as a batch of blocks, each with its own copy of the run's generator: diffusers draws one block per
    generator, so every block gets the same K-frame draw, tiled over the video as the initial noise is; the run's
    generator then moves on by that one draw. The other schedulers' steps are element-wise and draw nothing.
    """
    if config.scheduler not in ANCESTRAL:
        options = {"eta": 0.0} if config.scheduler == "ddim" else {}
        return scheduler.step(prediction, t, latents, return_dict=False, **options)[0]
    if noise == "independent":
        return scheduler.step(prediction, t, latents, generator=generator, return_dict=False)[0]
    if noise != "shared":
        raise ValueError(f"unknown noise mode {noise!r} (shared or independent)")
    _, channels, frames, h, w = latents.shape
    k = config.context_frames
    if frames % k:
        raise ValueError(f"{frames} frames are not a whole number of {k}-frame blocks")

    def blocks(x: torch.Tensor) -> torch.Tensor:  # (1, C, F, h, w) -> (F / K, C, K, h, w)
        return x.reshape(channels, frames // k, k, h, w).transpose(0, 1)

    copies = [torch.Generator(generator.device).set_state(generator.get_state()) for _ in range(frames // k)]
    stepped = scheduler.step(blocks(prediction), t, blocks(latents), generator=copies, return_dict=False)[0]
    generator.set_state(copies[0].get_state())
    return stepped.transpose(0, 1).reshape(1, channels, frames, h, w)
