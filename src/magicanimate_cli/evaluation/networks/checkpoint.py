"""Reading a released weight file and loading it into a network with strict key and shape checks.

Released files come in a few wrappers (a bare state dict, `{"state_dict": ...}` from a training
script, `module.` prefixes from DataParallel); they are unwrapped here so each network states only
which keys it ignores. Any other difference is an error that names the file, because a silently
half-loaded network would produce plausible but wrong metric values.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

from ...runtime.errors import WeightsError
from ...runtime.torch_files import load_torch_file

_OPTIONAL_SUFFIX = "num_batches_tracked"  # absent from files saved before PyTorch 0.4.1; unused in eval


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a weight file, unwrapped from a training checkpoint and DataParallel prefixes."""
    if not Path(path).exists():
        raise FileNotFoundError(errno.ENOENT, "weights file not found", str(path))
    obj = load_torch_file(Path(path))  # a truncated download or a different format: a WeightsError saying which
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path}: expected a state dict, found {type(obj).__name__}")
    state: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if isinstance(value, torch.Tensor):
            state[key.removeprefix("module.")] = value
    return state


def load_strict(
    module: nn.Module,
    path: Path,
    ignore: Callable[[str], bool] = lambda key: False,
) -> None:
    """Load `path` into `module`, refusing missing, unexpected or reshaped tensors.

    `ignore` names file keys that belong to parts of the released network the metric does not use
    (e.g. VGG16's classifier); they are dropped before the comparison.
    """
    state = {k: v for k, v in read_state_dict(path).items() if not ignore(k)}
    expected = module.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith(_OPTIONAL_SUFFIX)]
    unexpected = [k for k in state if k not in expected]
    reshaped = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(expected[k].shape)})"
        for k in state
        if k in expected and state[k].shape != expected[k].shape
    ]
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", reshaped)):
        if keys:
            more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
            problems.append(f"{label} {', '.join(keys[:3])}{more}")
    if problems:
        name = type(module).__name__
        raise WeightsError(f"{path}: does not fit {name}: {'; '.join(problems)}")
    module.load_state_dict(state, strict=False)
