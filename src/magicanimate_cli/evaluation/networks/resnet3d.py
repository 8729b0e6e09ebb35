"""3D ResNet-50 for FID-VID: Hara et al.'s Kinetics-400 network (shortcut type B), as DisCo used it.

Keys match `resnet-50-kinetics.pth` of 3D-ResNets-PyTorch after its `module.` prefix is removed
(`conv1.weight`, `layer1.0.conv2.weight`, `layer1.0.downsample.0.weight`, `fc.weight`, ...).
Features are the 2048-d globally pooled activations before `fc`.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import load_strict

FEATURE_DIM = 2048
CLIP_LENGTH = 16
INPUT_SIZE = 112
PIXEL_MEAN = (114.7748, 107.7354, 99.4750)
"""Per-channel RGB mean on the 0-255 scale that the network was trained with."""


class Bottleneck3d(nn.Module):
    """1x1x1 -> 3x3x3 (strided) -> 1x1x1 residual block with a 4x channel expansion."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int) -> None:
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = nn.Conv3d(cin, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, cout, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm3d(cout)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv3d(cin, cout, kernel_size=1, stride=stride, bias=False), nn.BatchNorm3d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        residual = x if self.downsample is None else self.downsample(x)
        return F.relu(out + residual)


class ResNet3D50(nn.Module):
    """Clips (N, 3, T, H, W), mean-subtracted 0-255 RGB -> (N, 2048) features."""

    def __init__(self, num_classes: int = 400) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(3, 64, kernel_size=7, stride=(1, 2, 2), padding=3, bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        cin = 64
        for index, (planes, blocks, stride) in enumerate(((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))):
            layers = []
            for block in range(blocks):
                layers.append(Bottleneck3d(cin, planes, stride if block == 0 else 1))
                cin = planes * Bottleneck3d.expansion
            self.add_module(f"layer{index + 1}", nn.Sequential(*layers))
        self.fc = nn.Linear(FEATURE_DIM, num_classes)  # in the weight file; unused for FID-VID

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(clips)))
        x = F.max_pool3d(x, kernel_size=3, stride=2, padding=1)
        for name in ("layer1", "layer2", "layer3", "layer4"):
            x = getattr(self, name)(x)
        # Hara's fixed AvgPool3d((ceil(T/16), ceil(H/32), ceil(W/32))) covers the whole map at 16x112x112.
        return torch.flatten(F.adaptive_avg_pool3d(x, 1), 1)


def load_resnet3d50(path: Path) -> ResNet3D50:
    """The FID-VID network from Hara et al.'s released Kinetics-400 checkpoint."""
    model = ResNet3D50()
    load_strict(model, path)
    return model.eval()
