"""Divergence: a step whose loss or gradients are not finite, and weights that must never be written.

A NaN or infinite loss (a learning rate too high, a bad sample, bf16 overflow) poisons every weight it touches in
one optimizer step; from then on the run only produces NaN. The loop looks at each step's loss and gradient norm
(the same on every process: both are reduced) before the optimizer steps, and either skips the update
(`--max-skipped-steps`, recorded in metrics.jsonl) or stops the run with one line. Checkpoints and the export check
their tensors before writing, so no file a run writes holds a non-finite value and the retention of
`--keep-checkpoints` never removes a good checkpoint for a bad one. fp16's loss scaler keeps its own skips.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from ..runtime.errors import MagicAnimateError


class DivergedError(MagicAnimateError):
    """The run met a non-finite loss, gradient or weight: it stopped without writing anything non-finite."""

    exit_code = 3


def first_nonfinite(tensors: Iterable[tuple[str, torch.Tensor]]) -> str | None:
    """The name of the first floating-point tensor holding a NaN or an infinity, or None."""
    for name, tensor in tensors:
        if torch.is_tensor(tensor) and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name
    return None


def state_tensors(state: object, prefix: str = "") -> Iterable[tuple[str, torch.Tensor]]:
    """Every tensor inside a nested state dict (an optimizer's), with a dotted name."""
    if torch.is_tensor(state):
        yield prefix, state
    elif isinstance(state, dict):
        for key, value in state.items():
            yield from state_tensors(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(state, (list, tuple)):
        for i, value in enumerate(state):
            yield from state_tensors(value, f"{prefix}.{i}" if prefix else str(i))


def last_good(folder: Path | None) -> str:
    """How the one-line messages name the checkpoint a user can go back to."""
    return f"the last intact checkpoint is {folder}" if folder is not None else "no checkpoint was written yet"
