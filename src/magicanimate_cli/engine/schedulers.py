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
STATELESS = frozenset({"ddim", "euler"})
"""Schedulers whose whole state follows from the step to take: a checkpoint written before checkpoints carried the
scheduler's state (format version 1, which only these could write) still resumes them exactly."""


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



def scheduler_state(scheduler) -> dict:
    """Everything a scheduler holds besides its config, copied to the CPU: its schedule, the multistep solvers'
    stored model outputs and order counters, its step index.

    Taken whole rather than picked per class, so that whatever a diffusers scheduler keeps between steps is kept;
    the values are tensors, numbers, booleans, None and lists of those, which `torch.load(weights_only=True)`
    reads back without running pickled code.
    """
    import torch

    def detached(value):
        if isinstance(value, list):
            return [detached(v) for v in value]
        if isinstance(value, torch.Tensor):
            return value.detach().to("cpu", copy=True)
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        raise TypeError(f"cannot save a scheduler attribute of type {type(value).__name__}")

    return {name: detached(value) for name, value in vars(scheduler).items() if name != "_internal_dict"}


def load_scheduler_state(scheduler, state: dict, device) -> None:
    """Put a saved `scheduler_state` back into a scheduler of the same name whose timesteps are set.

    Tensors go back where the fresh scheduler keeps them (some keep their sigmas on the CPU on purpose); stored
    model outputs and samples go to `device`, where the latents are.
    """
    import torch

    def placed(value, where):
        if isinstance(value, list):
            return [placed(v, where) for v in value]
        return value.to(where) if isinstance(value, torch.Tensor) else value

    for name, value in state.items():
        fresh = getattr(scheduler, name, None)
        setattr(scheduler, name, placed(value, fresh.device if isinstance(fresh, torch.Tensor) else device))
