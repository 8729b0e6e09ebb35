"""Which networks occupy the sampling device, and when.

A run needs its five networks at different times: the text encoder once (the empty prompt), the appearance
encoder before denoising (every step's reference features are computed up front), the UNet and ControlNet
throughout denoising, the VAE at both ends. Keeping each on the accelerator only while it is needed is what
lets 512×512 fit small cards; the others wait in host memory. On a CPU run host and device are the same, so
nothing moves, but the record of what the run holds is kept all the same.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn


class Placement:
    """Moves named networks between the sampling device and host memory and records which are held."""

    def __init__(self, modules: Mapping[str, nn.Module], device: torch.device | str,
                 host: torch.device | str = "cpu") -> None:
        self.modules = dict(modules)
        self.device, self.host = torch.device(device), torch.device(host)
        self._held = {name for name, m in self.modules.items() if _same_device(_device_of(m), self.device)}

    @property
    def held(self) -> frozenset[str]:
        """Names of the networks on the sampling device now."""
        return frozenset(self._held)

    def hold(self, *names: str) -> None:
        for name in names:
            if name not in self._held:
                self._move(name, self.device)
                self._held.add(name)

    def release(self, *names: str) -> None:
        for name in names:
            if name in self._held:
                self._move(name, self.host)
                self._held.discard(name)

    @contextmanager
    def using(self, *names: str, keep: bool = True) -> Iterator[None]:
        """Hold `names` for a block; release them afterwards unless `keep`."""
        self.hold(*names)
        try:
            yield
        finally:
            if not keep:
                self.release(*names)

    def _move(self, name: str, device: torch.device) -> None:
        if not _same_device(self.device, self.host):  # nn.Module.to: diffusers' override warns about fp16 on the CPU
            nn.Module.to(self.modules[name], device=device)


def _device_of(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def _same_device(a: torch.device, b: torch.device) -> bool:
    """`cuda` and `cuda:0` are the same device when one of them names no index."""
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)
