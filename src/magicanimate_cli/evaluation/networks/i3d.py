"""Inception-I3D (Carreira & Zisserman 2017), the Kinetics-400 network behind FVD.

Keys match the widely shared PyTorch port `i3d_pretrained_400.pt` (`Conv3d_1a_7x7.conv3d.weight`,
`Mixed_3b.b1b.bn.running_mean`, `logits.conv3d.bias`, ...). Every convolution and max pool pads
TensorFlow's "SAME" way, computed from the input size. The features are the 400 Kinetics logits
averaged over the remaining time steps, as DisCo's FVD-3DInception (and VideoGPT/TATS) use them.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import load_strict

FEATURE_DIM = 400
CLIP_LENGTH = 16
INPUT_SIZE = 224

Triple = tuple[int, int, int]


def _same_padding(size: tuple[int, ...], kernel: Triple, stride: Triple) -> list[int]:
    """F.pad arguments (last dim first) for TensorFlow "SAME" padding of a (T, H, W) input."""
    pads: list[int] = []
    for dim in (2, 1, 0):
        k, s, n = kernel[dim], stride[dim], size[dim]
        total = max(k - s, 0) if n % s == 0 else max(k - n % s, 0)
        pads += [total // 2, total - total // 2]
    return pads


class Unit3D(nn.Module):
    """SAME-padded 3D convolution, optional batch norm (eps 1e-3) and ReLU."""

    def __init__(self, cin: int, cout: int, kernel: Triple = (1, 1, 1), stride: Triple = (1, 1, 1),
                 batch_norm: bool = True, activation: bool = True, bias: bool = False) -> None:
        super().__init__()
        self.kernel, self.stride, self.activation = kernel, stride, activation
        self.conv3d = nn.Conv3d(cin, cout, kernel_size=kernel, stride=stride, bias=bias)
        self.bn = nn.BatchNorm3d(cout, eps=0.001, momentum=0.01) if batch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(F.pad(x, _same_padding(tuple(x.shape[2:]), self.kernel, self.stride)))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.activation else x


class MaxPool3dSame(nn.Module):
    """Max pool with SAME padding (zeros, which is safe after a ReLU)."""

    def __init__(self, kernel: Triple, stride: Triple) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, _same_padding(tuple(x.shape[2:]), self.kernel, self.stride))
        return F.max_pool3d(x, self.kernel, self.stride)


class InceptionModule(nn.Module):
    """Four parallel branches: 1x1; 1x1->3x3; 1x1->3x3; 3x3 max pool->1x1."""

    def __init__(self, cin: int, widths: tuple[int, int, int, int, int, int]) -> None:
        super().__init__()
        self.b0 = Unit3D(cin, widths[0])
        self.b1a = Unit3D(cin, widths[1])
        self.b1b = Unit3D(widths[1], widths[2], kernel=(3, 3, 3))
        self.b2a = Unit3D(cin, widths[3])
        self.b2b = Unit3D(widths[3], widths[4], kernel=(3, 3, 3))
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(cin, widths[5])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], 1
        )


_MIXED = (
    ("Mixed_3b", 192, (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", 256, (128, 128, 192, 32, 96, 64)),
    ("MaxPool3d_4a_3x3", (3, 3, 3), (2, 2, 2)),
    ("Mixed_4b", 480, (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", 512, (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", 512, (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", 512, (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", 528, (256, 160, 320, 32, 128, 128)),
    ("MaxPool3d_5a_2x2", (2, 2, 2), (2, 2, 2)),
    ("Mixed_5b", 832, (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", 832, (384, 192, 384, 48, 128, 128)),
)


class InceptionI3d(nn.Module):
    """Clips (N, 3, T, 224, 224) in [-1, 1] -> (N, 400) time-averaged Kinetics logits."""

    def __init__(self, num_classes: int = 400) -> None:
        super().__init__()
        self.order: list[str] = []
        self._add("Conv3d_1a_7x7", Unit3D(3, 64, kernel=(7, 7, 7), stride=(2, 2, 2)))
        self._add("MaxPool3d_2a_3x3", MaxPool3dSame((1, 3, 3), (1, 2, 2)))
        self._add("Conv3d_2b_1x1", Unit3D(64, 64))
        self._add("Conv3d_2c_3x3", Unit3D(64, 192, kernel=(3, 3, 3)))
        self._add("MaxPool3d_3a_3x3", MaxPool3dSame((1, 3, 3), (1, 2, 2)))
        for name, first, second in _MIXED:
            if name.startswith("MaxPool"):
                self._add(name, MaxPool3dSame(first, second))
            else:
                self._add(name, InceptionModule(first, second))
        self.logits = Unit3D(1024, num_classes, batch_norm=False, activation=False, bias=True)

    def _add(self, name: str, module: nn.Module) -> None:
        self.add_module(name, module)
        self.order.append(name)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        x = clips
        for name in self.order:
            x = getattr(self, name)(x)
        x = F.avg_pool3d(x, kernel_size=(1, 7, 7), stride=1)  # the 7x7 map of a 224x224 input
        return self.logits(x).squeeze(4).squeeze(3).mean(dim=2)


def load_i3d(path: Path) -> InceptionI3d:
    """The FVD network from the PyTorch Kinetics-400 I3D weight file."""
    model = InceptionI3d()
    load_strict(model, path)
    return model.eval()
