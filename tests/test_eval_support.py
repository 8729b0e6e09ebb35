"""Shared helpers for the eval tests (no tests here): tiny frames, videos and random-weight files.

Random weights are saved in exactly the layout of the released files, so loading them exercises
the same strict key and shape checks the real downloads go through.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from magicanimate_cli.evaluation.networks.lpips import LPIPSHeads, VGG16Features
from magicanimate_cli.evaluation.weights import LPIPS_VGG_HEADS, VGG16


def structured_frames(count: int, height: int, width: int, seed: int) -> np.ndarray:
    """Moving gradients and blocks plus mild noise: image-like content with edges and flat areas."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    frames = []
    for t in range(count):
        r = (xx * 255 / max(width - 1, 1) + 9 * t) % 256
        g = (yy * 255 / max(height - 1, 1)) * np.ones_like(xx)
        b = np.where(((xx + 3 * t) // 6 + yy // 6) % 2 == 0, 200, 40)
        frame = np.stack([r, g, b], axis=-1) + rng.normal(0, 6, (height, width, 3))
        frames.append(np.clip(np.rint(frame), 0, 255).astype(np.uint8))
    return np.stack(frames)


def random_frames(count: int, height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, height, width, 3), dtype=np.uint8)


def constant_video(values: range, side: int = 8) -> np.ndarray:
    """Frame t is filled with value t, so a clip's mean tells which frames it holds."""
    return np.stack([np.full((side, side, 3), v, np.uint8) for v in values])


def write_frame_folder(folder: Path, frames: np.ndarray) -> Path:
    """PNG frames named so that natural and plain sorting agree only when zero-padded (they are not)."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"frame_{index}.png")
    return folder


def write_video(path: Path, frames: np.ndarray, fps: int = 8) -> Path:
    """An MP4 (H.264) of the frames; lossy, so tests compare a video only with itself."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def save_random_lpips_weights(weights_dir: Path, seed: int = 0) -> Path:
    """VGG16 in torchvision's file layout (with classifier keys) and LPIPS' head file, random values."""
    torch.manual_seed(seed)
    backbone = VGG16Features().state_dict()
    backbone["classifier.6.bias"] = torch.zeros(1000)  # the real file also holds the classifier
    heads = LPIPSHeads()
    for name, tensor in heads.state_dict().items():  # LPIPS' heads are non-negative weightings
        heads.state_dict()[name].copy_(tensor.abs())
    VGG16.path(weights_dir).parent.mkdir(parents=True, exist_ok=True)
    torch.save(backbone, VGG16.path(weights_dir))
    torch.save(heads.state_dict(), LPIPS_VGG_HEADS.path(weights_dir))
    return weights_dir


@pytest.fixture(scope="session")
def lpips_weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weights directory holding only the LPIPS files (so FID, FID-VID and FVD are unavailable)."""
    return save_random_lpips_weights(tmp_path_factory.mktemp("weights"))


def with_lively_features(model: torch.nn.Module) -> torch.nn.Module:
    """A randomly initialised network whose batch norms keep the signal's scale, in eval mode.

    PyTorch's default initialisation shrinks the variance about six-fold per conv + ReLU; with the
    default running variance of 1 a deep random network maps every input to nearly zero features.
    A running variance of 0.15 compensates, so distribution metrics can tell inputs apart.
    """
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_var.fill_(0.15)
    return model.eval()
