"""Per-frame pixel metrics exactly as DisCo's evaluation code defines them: L1, PSNR, SSIM.

All take uint8 RGB frames (N, H, W, 3) of equal size and return one float64 value per frame. They
run on the CPU in float64: they are cheap, and exactness matters more than speed for numbers that
are compared across papers to the fourth decimal.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

SSIM_WINDOW = 7
_SSIM_K1, _SSIM_K2, _SSIM_RANGE = 0.01, 0.03, 255.0


def l1_disco(generated: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Mean absolute difference of 0-255 values over pixels and channels, divided by H·W.

    The division by the pixel count is DisCo's (it makes the value depend on resolution: ~3e-4 at
    256x256 in MagicAnimate's Table 1); it is kept so numbers stay comparable with the paper.
    """
    height, width = truth.shape[1:3]
    diff = np.abs(generated.astype(np.float64) - truth.astype(np.float64))
    return diff.mean(axis=(1, 2, 3)) / float(height * width)


def psnr(generated: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """20·log10(255 / √MSE) per frame, MSE over pixels and channels; identical frames give inf."""
    diff = generated.astype(np.float64) - truth.astype(np.float64)
    mse = (diff * diff).mean(axis=(1, 2, 3))
    with np.errstate(divide="ignore"):
        return np.where(mse == 0, np.inf, 20.0 * np.log10(255.0 / np.sqrt(mse)))


def psnr_legacy_uint8(generated: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """DisCo's early PSNR: difference and square taken in uint8, so both wrap modulo 256.

    This is the computation behind published TikTok PSNRs near 29; it is not a correct PSNR and is
    offered only to compare with those tables. A zero MSE gives 100, as in that code.
    """
    wrapped = generated.astype(np.uint8) - truth.astype(np.uint8)
    squared = wrapped * wrapped  # uint8 arithmetic on purpose
    mse = squared.mean(axis=(1, 2, 3), dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.where(mse == 0, 100.0, 20.0 * np.log10(255.0 / np.sqrt(mse)))


def to_grey(frames: np.ndarray) -> np.ndarray:
    """BT.601 luma in OpenCV's integer form, (9798 R + 19235 G + 3735 B + 2^14) >> 15.

    DisCo converted with `cv2.cvtColor(..., COLOR_BGR2GRAY)`; this reproduces its uint8 output
    bit for bit without depending on OpenCV.
    """
    rgb = frames.astype(np.int64)
    grey = (rgb[..., 0] * 9798 + rgb[..., 1] * 19235 + rgb[..., 2] * 3735 + (1 << 14)) >> 15
    return grey.astype(np.uint8)


def ssim_grey(generated: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """SSIM of the greyscale frames with scikit-image's defaults on uint8 input.

    That is: 7x7 uniform window, K1 = 0.01, K2 = 0.03, data range 255, sample covariance
    (N/(N−1) with N = 49), and the mean over pixels at least 3 from the border.
    """
    if min(truth.shape[1:3]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs frames of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels")
    x = torch.from_numpy(to_grey(generated)).to(torch.float64).unsqueeze(1)
    y = torch.from_numpy(to_grey(truth)).to(torch.float64).unsqueeze(1)

    def window_mean(t: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(t, SSIM_WINDOW, stride=1)

    n = SSIM_WINDOW * SSIM_WINDOW
    cov_norm = n / (n - 1)
    ux, uy = window_mean(x), window_mean(y)
    vx = cov_norm * (window_mean(x * x) - ux * ux)
    vy = cov_norm * (window_mean(y * y) - uy * uy)
    vxy = cov_norm * (window_mean(x * y) - ux * uy)
    c1, c2 = (_SSIM_K1 * _SSIM_RANGE) ** 2, (_SSIM_K2 * _SSIM_RANGE) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.mean(dim=(1, 2, 3)).numpy()
