"""`--optimizer adamw|adamw8bit`: the optimizer a run steps with.

AdamW keeps two fp32 states per trained weight (8 bytes); bitsandbytes' 8-bit AdamW keeps them in one byte each
(block-wise quantised), which is what lets full stage-1 fine-tuning fit a 24 GB card. bitsandbytes' 8-bit
optimizers run on CUDA only, so elsewhere the choice is refused before anything is loaded or written.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable

import torch

from ..runtime.errors import SettingsError

OPTIMIZERS = ("adamw", "adamw8bit")
INSTALL_HINT = "pip install 'magicanimate-cli[train]'"


def check_optimizer(name: str, device: str) -> None:
    """Refuse, in one line, an optimizer this machine cannot run (before the run folder is touched)."""
    if name not in OPTIMIZERS:
        raise SettingsError(f"--optimizer {name}: expected one of {', '.join(OPTIMIZERS)}")
    if name != "adamw8bit":
        return
    if torch.device(device).type != "cuda":
        raise SettingsError(f"--optimizer adamw8bit: bitsandbytes' 8-bit optimizers run on CUDA only, and this run "
                            f"is on {device} (use --optimizer adamw)")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise SettingsError(f"--optimizer adamw8bit needs bitsandbytes, which is not installed ({INSTALL_HINT})")


def make_optimizer(name: str, params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float,
                   device: str) -> torch.optim.Optimizer:
    """The run's optimizer over `params` (in their order, which checkpoints rely on)."""
    check_optimizer(name, device)
    if name == "adamw8bit":
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(list(params), lr=lr, weight_decay=weight_decay)
    return torch.optim.AdamW(list(params), lr=lr, weight_decay=weight_decay)


def warmup_schedule(optimizer: torch.optim.Optimizer, warmup: int) -> torch.optim.lr_scheduler.LambdaLR:
    """--lr-warmup N: the learning rate rises linearly over the first N optimizer steps, then stays (0: constant).
    Stepped once per optimizer step whatever the process count (the loop steps it, not accelerate)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0)
