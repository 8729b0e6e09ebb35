"""Choosing the torch device for the feature networks: auto | cuda | mps | cpu, as in animate."""

from __future__ import annotations

import torch

from ..runtime.errors import SettingsError

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA, then Apple's MPS, then the CPU; a named device must exist."""
    name = name.lower()
    if name not in DEVICE_CHOICES:
        raise SettingsError(f"--device {name}: choose one of {', '.join(DEVICE_CHOICES)}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SettingsError("--device cuda: no CUDA device is available to PyTorch")
    if name == "mps" and not _mps_available():
        raise SettingsError("--device mps: the MPS backend is not available")
    return torch.device(name)
