"""LPIPS v0.1 with the VGG16 backbone (Zhang et al. 2018), as the `lpips` package computes it.

The backbone keeps torchvision's `features.N` layout so `vgg16-397923af.pth` loads directly; the
linear heads keep the `lin{i}.model.1.weight` keys of LPIPS' `vgg.pth`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .checkpoint import load_strict

_VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
_TAP_AFTER = (3, 8, 15, 22, 29)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 in `features`
TAP_CHANNELS = (64, 128, 256, 512, 512)

# LPIPS' ScalingLayer: maps inputs the package expects in [-1, 1] to ImageNet statistics.
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)


class VGG16Features(nn.Module):
    """VGG16's convolutional part (up to relu5_3), returning the five activations LPIPS compares."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for item in _VGG16_LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(channels, int(item), kernel_size=3, padding=1), nn.ReLU()]
                channels = int(item)
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Activations after each of the five tapped ReLUs, shallowest first."""
        taps = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in _TAP_AFTER:
                taps.append(x)
        return taps


class NetLinLayer(nn.Module):
    """One LPIPS head: a 1x1 convolution to a single channel (the dropout keeps the key index 1)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, kernel_size=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class LPIPSHeads(nn.Module):
    """The five learned channel weightings of LPIPS v0.1 for VGG."""

    def __init__(self) -> None:
        super().__init__()
        for index, channels in enumerate(TAP_CHANNELS):
            self.add_module(f"lin{index}", NetLinLayer(channels))

    def layer(self, index: int) -> NetLinLayer:
        return getattr(self, f"lin{index}")


def _unit_normalize(x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Scale each spatial feature vector to unit length, as LPIPS does before differencing."""
    return x / (torch.sqrt(torch.sum(x * x, dim=1, keepdim=True)) + eps)


class LPIPS(nn.Module):
    """Per-image LPIPS distance between two batches of images."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = VGG16Features()
        self.heads = LPIPSHeads()
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Distances, shape (N,), for inputs (N, 3, H, W) on the scale LPIPS' network is given.

        The `lpips` package expects [-1, 1]; the DisCo protocol feeds [0, 1] (see docs/eval.md), and
        the caller decides which by what it passes.
        """
        taps_a = self.backbone((a - self.shift) / self.scale)
        taps_b = self.backbone((b - self.shift) / self.scale)
        total = torch.zeros(a.shape[0], device=a.device, dtype=a.dtype)
        for index, (fa, fb) in enumerate(zip(taps_a, taps_b)):
            diff = (_unit_normalize(fa) - _unit_normalize(fb)) ** 2
            total = total + self.heads.layer(index)(diff).mean(dim=(1, 2, 3))
        return total


def load_lpips(backbone_path: Path, heads_path: Path) -> LPIPS:
    """LPIPS-VGG from torchvision's VGG16 file (classifier ignored) and LPIPS' linear-head file."""
    model = LPIPS()
    load_strict(model.backbone, backbone_path, ignore=lambda key: key.startswith("classifier."))
    load_strict(model.heads, heads_path)
    return model.eval()
