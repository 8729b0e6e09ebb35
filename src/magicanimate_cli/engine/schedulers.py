"""The samplers `--scheduler` offers: each name is one of diffusers' schedulers, configured with the schedule
MagicAnimate was trained with.

Kept free of torch and diffusers at import time so that option parsing and `fuse-long --plan` stay light.
Every scheduler is driven only through diffusers' own calls (`set_timesteps`, `init_noise_sigma`,
`scale_model_input`, `step`), so what a name means is what diffusers means by it.
"""

from __future__ import annotations

DEFAULT_SCHEDULER = "ddim"

# The training schedule (linear betas 0.00085–0.012 over 1000 steps, epsilon prediction) with the official
# DDIM's timestep placement ("leading" spacing, steps_offset 1) for every scheduler that has those options.
_TRAINING = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "linear",
    "prediction_type": "epsilon",
    "steps_offset": 1,
    "timestep_spacing": "leading",
}

# name -> (diffusers class, options beyond the training schedule)
_SCHEDULERS: dict[str, tuple[str, dict]] = {
    # MagicAnimate's inference.yaml: eta 0, no sample clipping, alpha at t=0 taken as one.
    "ddim": ("DDIMScheduler", {"clip_sample": False, "set_alpha_to_one": True}),
    "dpm++2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "dpm++2m-karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2,
                                                       "use_karras_sigmas": True}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler-a": ("EulerAncestralDiscreteScheduler", {}),
}

SCHEDULER_NAMES: tuple[str, ...] = tuple(_SCHEDULERS)
ANCESTRAL = frozenset({"euler-a"})
"""Schedulers whose step draws fresh noise: it comes from the run's seeded generator."""
RESUMABLE = frozenset({"ddim", "euler"})
"""Schedulers whose whole state follows from the step to take, so a checkpoint of the latents resumes them
exactly; the multistep solvers' history and the ancestral generator state are not saved in checkpoints yet."""


def scheduler_class_name(name: str) -> str:
    return _SCHEDULERS[_known(name)][0]


def make_scheduler(name: str = DEFAULT_SCHEDULER):
    """A fresh diffusers scheduler for `name`, configured with MagicAnimate's training schedule."""
    import diffusers

    class_name, extra = _SCHEDULERS[_known(name)]
    return getattr(diffusers, class_name)(**_TRAINING, **extra)


def scheduler_record(name: str) -> dict:
    """The scheduler's name, class and full diffusers config, JSON-ready, for sidecars and plans."""
    scheduler = make_scheduler(name)
    config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(scheduler.config).items()
              if not k.startswith("_")}
    return {"name": name, "class": type(scheduler).__name__, "config": config}


def _known(name: str) -> str:
    if name not in _SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r} (one of {', '.join(SCHEDULER_NAMES)})")
    return name
