"""The two resizes of the DisCo protocol, reproduced without OpenCV.

* Generated frames of another size are brought to the ground truth's size the way DisCo's
  `cv2.resize(..., INTER_LINEAR)` does: bilinear with half-pixel centres and no antialiasing,
  rounded half up to uint8 (bit-exact for the 512 -> 256 halving; within one grey level otherwise).
* Clips for the video networks are resized per channel on float values with PIL's bicubic filter,
  as clean-fid's `make_resizer("PIL", quantize_after=False, "bicubic", size)` that DisCo calls.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def resize_to(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 frames (N, H, W, 3) -> uint8 frames (N, *size, 3), bilinear like OpenCV INTER_LINEAR."""
    if frames.shape[1:3] == tuple(size):
        return frames
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).to(torch.float64)
    x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=False)
    x = torch.floor(x + 0.5).clamp_(0, 255)
    return x.to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def resize_bicubic_float(frames: np.ndarray, side: int) -> np.ndarray:
    """uint8 frames (N, H, W, 3) -> float32 (N, side, side, 3) on the 0-255 scale, not clipped."""
    out = np.empty((frames.shape[0], side, side, 3), dtype=np.float32)
    for index, frame in enumerate(frames):
        for channel in range(3):
            image = Image.fromarray(frame[:, :, channel].astype(np.float32), mode="F")
            out[index, :, :, channel] = np.asarray(image.resize((side, side), resample=Image.BICUBIC))
    return out
