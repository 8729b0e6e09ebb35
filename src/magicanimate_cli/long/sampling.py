"""Denoising a long video: the engine's loop with control frames on disk, a share of the windows per process,
and a start from a checkpoint.

With one process, the default settings and no checkpoint this is exactly `Animator.sample`: the same noise, the
same windows in the same order, the same reductions.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..engine.pipeline import Animator, initial_noise, run_generator
from ..engine.sampler import Conditioning, SamplerConfig, start_scheduler
from ..engine.schedulers import scheduler_state
from ..engine.windows import validate_context
from .checkpoint import Checkpoint
from .distributed import RankGroup, all_reduce_sum
from .frames import PaddedFrames
from .layout import split_windows

StepSaver = Callable[[int, torch.Tensor, dict, torch.Tensor], None]


def sample_long(animator: Animator, reference: np.ndarray, control: PaddedFrames, config: SamplerConfig,
                seed: int, noise: str = "shared", *, group: RankGroup | None = None,
                resume: Checkpoint | None = None, on_step: StepSaver | None = None,
                on_window: Callable[[], None] | None = None) -> torch.Tensor:
    """Final latents over the padded video, (1, 4, len(control), h, w) float32 on the animator's device.

    `control` must already be padded to a multiple of the context length. `on_step(step, latents, scheduler
    state, generator state)` runs after each step on every process it is given to (save checkpoints from one);
    `resume` continues a checkpoint's latents, scheduler and generator.
    """
    validate_context(config.context_frames, config.context_overlap, animator.max_context_frames)
    frames = len(control)
    if frames % config.context_frames:
        raise ValueError(f"{frames} control frames are not a multiple of {config.context_frames}")
    height, width = reference.shape[:2]
    with torch.no_grad(), animator.precision():
        cond = Conditioning(animator.text_embedding(), animator.encode_reference(reference), control)
        generator = run_generator(seed)
        scheduler = start_scheduler(config, animator.device, None if resume is None else resume.scheduler)
        if resume is None:
            latents = initial_noise(seed, frames, height, width, config.context_frames, noise, generator)
            start = 0
        else:
            latents, start = resume.latents, resume.next_step
            if resume.generator is not None:
                generator.set_state(resume.generator)
        callback = None
        if on_step is not None:
            def callback(step: int, latents: torch.Tensor) -> None:
                on_step(step, latents, scheduler_state(scheduler), generator.get_state())
        plan = config.window_plan(frames)
        run = None if group is None else split_windows(len(plan.windows), group.size)[group.rank]
        return animator.denoise(cond, latents.to(animator.device), plan, config, start_step=start, run=run,
                                reduce=None if group is None else all_reduce_sum, callback=callback,
                                on_window=on_window, generator=generator, noise=noise, scheduler=scheduler)
