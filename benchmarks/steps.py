"""How many steps each scheduler needs, measured on an ODE whose answer is known.

    python benchmarks/steps.py [--frames 32] [--size 256] [--no-tiny]

A random-weight network cannot say how many steps are enough: its prediction is not smooth in t, so a
higher-order solver has nothing to exploit. Here the project's own sampler (windows, fusion, guidance, the
diffusers scheduler calls) runs with an analytic model in place of the UNet: the exact noise predictor for Gaussian
data, x0 ~ N(μ, s²) per latent element,

    ε*(x_t, t) = √(1 − ᾱ_t) · (x_t − √ᾱ_t · μ) / (ᾱ_t · s² + 1 − ᾱ_t).

Its probability-flow ODE keeps (x_t − √ᾱ_t · μ) / √(ᾱ_t · s² + 1 − ᾱ_t) constant, so the exact end point from
the initial noise at a scheduler's first timestep is known in closed form. For each deterministic scheduler and
step count the script prints the relative max error of the final latents against it, and the fewest steps at which
the scheduler is as accurate as DDIM at 25 (the official setting). `euler-a` samples the SDE instead of solving
the ODE, so it has no end point to compare with: its line gives how far the final latents' mean and standard
deviation are from μ and s.

What this measures: how accurately each solver integrates a smooth diffusion ODE through our loop. What it does
not measure: image quality with the released weights (which needs a GPU and the weights, and a perceptual metric).

The tiny random bundle's numbers go beside them for the record (parity case public_a, 25 steps, error against a
200-step DDIM run), showing why a random network cannot answer the question.
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from magicanimate_cli.engine.models.reference_attention import ReferenceBank
from magicanimate_cli.engine.sampler import Conditioning, SamplerConfig, SamplerModels, denoise, start_scheduler
from magicanimate_cli.engine.schedulers import ANCESTRAL, SCHEDULER_NAMES, make_scheduler

MU, S = 0.3, 0.5
STEP_COUNTS = (6, 8, 12, 16, 20, 25)
OFFICIAL = ("ddim", 25)
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class GaussianData:
    """x0 ~ N(mu, s²) per element, diffused with the training schedule's ᾱ_t."""

    mu: float = MU
    s: float = S

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        return make_scheduler("ddim").alphas_cumprod.to(torch.float64)

    def alpha_at(self, t: torch.Tensor | float) -> float:
        """ᾱ at timestep t, linear between integer timesteps (some schedulers step at fractional ones)."""
        table = self.alphas_cumprod
        t = float(t)
        low = min(int(math.floor(t)), len(table) - 1)
        high = min(low + 1, len(table) - 1)
        return float(table[low] + (t - low) * (table[high] - table[low]))

    def epsilon(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        a = self.alpha_at(t)
        return math.sqrt(1 - a) * (x - math.sqrt(a) * self.mu) / (a * self.s ** 2 + 1 - a)

    def solution(self, noise: torch.Tensor, start_alpha: float) -> torch.Tensor:
        """Where the ODE started at `noise` (variance-preserving form) with ᾱ = `start_alpha` ends at t = 0."""
        a = start_alpha
        return self.mu + self.s * (noise - math.sqrt(a) * self.mu) / math.sqrt(a * self.s ** 2 + 1 - a)


def start_alpha(scheduler, data: GaussianData) -> float:
    """ᾱ where a scheduler starts: from its first sigma where it has sigmas (Karras sigmas fall between
    timesteps), else from its first timestep."""
    sigmas = getattr(scheduler, "sigmas", None)
    if sigmas is not None:
        return 1.0 / (1.0 + float(sigmas[0]) ** 2)
    return data.alpha_at(scheduler.timesteps[0])


# ------------------------------------------------------------------------- the analytic model in the loop


@dataclass
class _Fork:
    """What the analytic UNet's prefix hands to its suffix: the window's latents and timestep."""

    sample: torch.Tensor
    t: torch.Tensor

    def repeat(self, copies: int) -> "_Fork":
        return _Fork(self.sample.repeat(copies, 1, 1, 1, 1), self.t)


class AnalyticUNet(nn.Module):
    """The UNet's prefix/suffix interface with ε* as the whole network; conditioning is ignored."""

    def __init__(self, data: GaussianData, dtype: torch.dtype) -> None:
        super().__init__()
        self.data = data
        self.anchor = nn.Parameter(torch.zeros((), dtype=dtype), requires_grad=False)  # the loop's device/dtype

    def prefix(self, sample, t, context, down=None) -> _Fork:
        return _Fork(sample, t)

    def suffix(self, fork: _Fork, mid=None) -> torch.Tensor:
        return self.data.epsilon(fork.sample, fork.t)


class ZeroControlNet(nn.Module):
    """A ControlNet that adds nothing (one residual level of zeros per frame)."""

    def forward(self, sample, t, encoder_hidden_states=None, controlnet_cond=None, conditioning_scale=1.0,
                return_dict=False):
        zeros = sample.new_zeros((sample.shape[0], 1, 1, 1))
        return [zeros], zeros


def analytic_models(data: GaussianData, dtype: torch.dtype = torch.float64) -> SamplerModels:
    return SamplerModels(AnalyticUNet(data, dtype), nn.Identity(), ZeroControlNet(), ReferenceBank(0))


def our_final(models: SamplerModels, noise: torch.Tensor, config: SamplerConfig,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """The project's sampler (windows, fusion, guidance, scheduler calls) from `noise` to the end."""
    frames = noise.shape[2]
    cond = Conditioning(torch.zeros((1, 77, 1), dtype=noise.dtype), torch.zeros((1, 4, 1, 1), dtype=noise.dtype),
                        np.zeros((frames, 8, 8, 3), dtype=np.uint8))
    scheduler = start_scheduler(config, noise.device)
    banks = [[] for _ in scheduler.timesteps]  # the analytic model reads no reference features
    return denoise(models, cond, noise, config.window_plan(frames), config, banks=banks, generator=generator,
                   scheduler=scheduler)


def direct_final(data: GaussianData, noise: torch.Tensor, name: str, steps: int,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """The textbook diffusers loop on the whole sample: set_timesteps, init_noise_sigma, scale_model_input, step."""
    scheduler = make_scheduler(name)
    scheduler.set_timesteps(steps)
    x = noise * scheduler.init_noise_sigma
    options = {"generator": generator} if name in ANCESTRAL else {}
    for t in scheduler.timesteps:
        x = scheduler.step(data.epsilon(scheduler.scale_model_input(x, t), t), t, x, **options).prev_sample
    return x


def relative_error(x: torch.Tensor, exact: torch.Tensor) -> float:
    return float((x.double() - exact).abs().max() / exact.abs().max())


def ode_error(data: GaussianData, noise: torch.Tensor, name: str, steps: int, final: torch.Tensor) -> float:
    scheduler = make_scheduler(name)
    scheduler.set_timesteps(steps)
    return relative_error(final, data.solution(noise, start_alpha(scheduler, data)))


def shared_noise(frames: int, size: int, context_frames: int, seed: int = 0) -> torch.Tensor:
    """Unit-variance initial noise in float64, one K-frame draw tiled as `--noise shared` does."""
    generator = torch.Generator().manual_seed(seed)
    latent = size // 8
    base = torch.randn((1, 4, context_frames, latent, latent), generator=generator, dtype=torch.float64)
    return base.repeat(1, 1, -(-frames // context_frames), 1, 1)[:, :, :frames]


# ------------------------------------------------------------------------------- the tiny random bundle


def tiny_bundle_errors(steps: int = 25, reference_steps: int = 200) -> dict[str, float]:
    """public_a through the tiny random bundle: each scheduler at `steps` against DDIM at `reference_steps`."""
    from magicanimate_cli import Animator

    case = ROOT / "tests" / "data" / "parity" / "cases" / "public_a"
    reference = np.load(case / "reference_image.npy")
    motion = np.load(case / "control_frames.npy")
    animator = Animator.from_pretrained(ROOT / "tests" / "data" / "tiny-bundle")
    config = SamplerConfig(steps=reference_steps)
    with torch.no_grad():
        truth = animator.sample(reference, motion, config, seed=1)
        return {name: relative_error(animator.sample(reference, motion, SamplerConfig(steps=steps, scheduler=name),
                                                     seed=1), truth.double())
                for name in SCHEDULER_NAMES if name not in ANCESTRAL}


# -------------------------------------------------------------------------------------------------- report


def fewest_steps_matching(errors_by_steps: dict[int, float], target: float) -> int | None:
    return next((n for n in sorted(errors_by_steps) if errors_by_steps[n] <= target), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=32, help="video length, a multiple of 16 (windows of 16, "
                        "overlap 4, wrapping)")
    parser.add_argument("--size", type=int, default=256, help="frame size in pixels (latents are 1/8)")
    parser.add_argument("--no-tiny", action="store_true", help="skip the tiny random bundle's column")
    args = parser.parse_args()
    if args.frames % 16:
        parser.error("--frames must be a multiple of 16 (the sampler works on whole windows)")
    # One thread: the work is small tensors, where a second thread costs more than it gives (and on a shared
    # machine OpenMP's waiting threads made the tiny model's steps ten times slower).
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    data = GaussianData()
    models = analytic_models(data)
    noise = shared_noise(args.frames, args.size, 16)
    deterministic = [name for name in SCHEDULER_NAMES if name not in ANCESTRAL]
    scan = range(2, 51)
    errors: dict[str, dict[int, float]] = {}
    worst_gap = 0.0
    for name in deterministic:
        errors[name] = {}
        for steps in sorted(set(scan) | set(STEP_COUNTS)):
            final = our_final(models, noise, SamplerConfig(steps=steps, scheduler=name))
            errors[name][steps] = ode_error(data, noise, name, steps, final)
            if steps in STEP_COUNTS:
                direct = ode_error(data, noise, name, steps, direct_final(data, noise, name, steps))
                worst_gap = max(worst_gap, abs(direct - errors[name][steps]))
    tiny = {} if args.no_tiny else tiny_bundle_errors()
    target = errors[OFFICIAL[0]][OFFICIAL[1]]

    print(f"Gaussian data μ={MU}, s={S}; {args.frames} frames at {args.size}² (latents 4×{args.size // 8}²), "
          "windows of 16 overlapping by 4, guidance 7.5, float64 latents")
    print("relative max error of the final latents against the exact ODE solution from each scheduler's first step")
    head = " | ".join(f"{n} steps" for n in STEP_COUNTS)
    print(f"| scheduler | {head} | steps for DDIM-25's error | tiny bundle, 25 steps vs DDIM-200 |")
    print("|" + " --- |" * (len(STEP_COUNTS) + 3))
    for name in deterministic:
        cells = " | ".join(f"{errors[name][n]:.2e}" for n in STEP_COUNTS)
        fewest = fewest_steps_matching(errors[name], target)
        tiny_cell = f"{tiny[name]:.1%}" if name in tiny else "not run"
        print(f"| {name} | {cells} | {fewest if fewest is not None else '> 50'} | {tiny_cell} |")
    for name in SCHEDULER_NAMES:
        if name in ANCESTRAL:
            final = our_final(models, noise, SamplerConfig(steps=25, scheduler=name),
                              torch.Generator().manual_seed(1))
            print(f"{name} (samples the SDE, no ODE end point), 25 steps: mean {final.mean():.4f} (μ {MU}), "
                  f"std {final.std():.4f} (s {S})")
    print(f"largest difference between an error through our sampler and through a plain diffusers loop: "
          f"{worst_gap:.1e}")
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
