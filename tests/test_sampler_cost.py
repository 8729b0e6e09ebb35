"""The sampler's cost does not grow with waste: each frame's ControlNet pass runs once per step, the appearance
encoder once per step, and the memory held beyond the latents does not grow with the number of frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.profiler import ProfilerActivity, profile, record_function

from conftest import load_case
from magicanimate_cli.engine.pipeline import initial_noise
from magicanimate_cli.engine.sampler import SamplerConfig, denoise
from magicanimate_cli.engine.windows import padded_length, plan_windows


def _count_batch(module: torch.nn.Module, counter: list[int]):
    return module.register_forward_pre_hook(lambda m, args, kwargs: counter.append(args[0].shape[0]),
                                            with_kwargs=True)


def test_controlnet_runs_once_per_padded_frame_and_appearance_encoder_once_per_step(animator):
    case = load_case("public_b")  # 30 frames -> 32 padded, three overlapping windows with wrap-around
    controlnet_batches: list[int] = []
    appearance_batches: list[int] = []
    unet_down_batches: list[int] = []
    unet_up_batches: list[int] = []
    handles = [
        _count_batch(animator.components.controlnet, controlnet_batches),
        _count_batch(animator.components.appearance_encoder, appearance_batches),
        _count_batch(animator.components.unet.down_blocks[0], unet_down_batches),
        _count_batch(animator.components.unet.up_blocks[-1], unet_up_batches),
    ]
    steps = 2
    try:
        animator(case.array("reference_image"), case.array("control_frames"), steps=steps, seed=2)
    finally:
        for h in handles:
            h.remove()
    padded = padded_length(case.frames, 16)
    assert sum(controlnet_batches) == steps * padded
    assert appearance_batches == [1] * steps  # one pass, batch 1: the two guidance copies are equal
    # Per window the down path runs once and the up path on [unconditional, conditional]: the UNet forks.
    assert unet_down_batches == [1] * (steps * 3)
    assert unet_up_batches == [2] * (steps * 3)


def _sampler_memory(animator, frames: int) -> tuple[int, int]:
    """(peak bytes, peak bytes held between windows) allocated while sampling, beyond the inputs and latents.

    The first includes each window's transient UNet activations; the second is what the sampler keeps from one
    window to the next (ControlNet residuals, accumulators), which is where a leak would show.
    """
    case = load_case("public_b")
    control = np.resize(case.array("control_frames"), (frames, 128, 128, 3))
    config = SamplerConfig(steps=1, context_frames=16, context_overlap=4)
    cond = animator.prepare(case.array("reference_image"), control, config)
    latents = initial_noise(1, frames, 128, 128, 16)
    plan = plan_windows(frames, 16, 4)

    def mark_window_end() -> None:
        with record_function("window-end"):
            pass

    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        denoise(animator.models, cond, latents, plan, config, on_window=mark_window_end)
    live = peak = held = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        live += event.self_cpu_memory_usage
        peak = max(peak, live)
        if event.name == "window-end":
            held = max(held, live)
    return peak, held


def test_sampler_peak_memory_is_flat_in_the_number_of_frames(animator):
    short_peak, short_held = _sampler_memory(animator, 2 * 16)
    long_peak, long_held = _sampler_memory(animator, 8 * 16)
    mib = 2**20
    assert long_peak <= 1.25 * short_peak, f"peak {long_peak / mib:.1f} MiB for 8K frames vs {short_peak / mib:.1f}"
    assert long_held <= 1.25 * short_held, f"held {long_held / mib:.1f} MiB for 8K frames vs {short_held / mib:.1f}"


def test_controlnet_residuals_are_released_after_their_last_window(animator):
    from magicanimate_cli.engine.sampler import StepStats

    case = load_case("public_b")
    control = np.resize(case.array("control_frames"), (128, 128, 128, 3))
    stats: list[StepStats] = []
    config = SamplerConfig(steps=1, context_frames=16, context_overlap=4)
    cond = animator.prepare(case.array("reference_image"), control, config)
    with torch.no_grad():
        denoise(animator.models, cond, initial_noise(1, 128, 128, 128, 16), plan_windows(128, 16, 4), config,
                stats=stats)
    # At most the current window, the frames it shares with the next one, and the frames the last
    # (wrapping) window takes from the start of the video.
    assert stats[0].controlnet_frames == 128
    assert stats[0].peak_cached_frames <= 2 * 16
