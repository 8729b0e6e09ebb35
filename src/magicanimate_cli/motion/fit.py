"""Fitting between the motion's frame shape and the model's working shape, and back.

The released model works at 512x512; motion videos come in any shape. `plan_fit` decides
once, from the two sizes, which part of the source is used and where it lands in the
working frame; the same plan then shapes every motion frame (`fit_motion_frame`) and undoes
the shaping on the generated frames (`restore`).

Modes:
  pad      keep the aspect; letterbox the motion with its own background colour (the colour of a
           DensePose render's border, viridis(0) = (68, 1, 84) in MagicAnimate's format: see
           `densepose.background_colour`; never black, which the ControlNet never saw as background)
           and the reference with its own edge pixels; restore crops the letterbox away.
  crop     cut the centre of the source to the working aspect, then resize; restore gives
           that centre region back at source resolution (see `Fit.output_size`).
  stretch  resize ignoring the aspect, as the official demo does; restore resizes back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal, get_args

import numpy as np
from PIL import Image

from ..runtime.errors import SettingsError
from .palette import BACKGROUND

FitMode = Literal["pad", "crop", "stretch"]
FIT_MODES: tuple[str, ...] = get_args(FitMode)

DEFAULT_WORKING_SIZE = 512
"""Side of the square the released MagicAnimate checkpoints were trained and demoed at."""

SIZE_MULTIPLE = 8
"""The VAE downsamples by 8, so working sizes must be multiples of 8."""

Resample = Literal["nearest", "box", "bilinear", "bicubic", "lanczos"]
_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}

MOTION_RESAMPLE: Resample = "nearest"
"""Default filter for DensePose frames.

DensePose renders encode body part and surface coordinates as colours, i.e. labels.
Interpolating filters invent colours that belong to no part where two parts or a part and the
background meet (bicubic/Lanczos also ring, drawing faint halos on the background).
Nearest neighbour only ever copies colours that were in the render. Its cost is staircase
edges when shrinking a lot; pass "bicubic" to reproduce the official demo exactly (PIL's
default filter there).
"""

IMAGE_RESAMPLE: Resample = "lanczos"
"""Default filter for photographs: the reference image and the generated frames."""


@dataclass(frozen=True)
class Box:
    """An axis-aligned pixel rectangle: left/top corner and size."""

    left: int
    top: int
    width: int
    height: int

    @property
    def right(self) -> int:
        return self.left + self.width

    @property
    def bottom(self) -> int:
        return self.top + self.height

    def slices(self) -> tuple[slice, slice]:
        """Row and column slices selecting this box from an (H, W, ...) array."""
        return slice(self.top, self.bottom), slice(self.left, self.right)


@dataclass(frozen=True)
class Fit:
    """How one source shape maps onto the working shape.

    `source_box` is the part of the source that is used (all of it for pad and stretch,
    the centre crop for crop); `working_box` is where that part lands in the working frame
    (the letterbox content for pad, the whole frame otherwise). Sizes are (width, height).
    `background` is the RGB colour pad mode letterboxes the motion with.
    """

    mode: FitMode
    source_size: tuple[int, int]
    working_size: tuple[int, int]
    source_box: Box
    working_box: Box
    background: tuple[int, int, int] = BACKGROUND

    @property
    def output_size(self) -> tuple[int, int]:
        """(width, height) that `restore` returns.

        pad and stretch: the source size, so the result has the motion's exact size and aspect.
        crop: the size of the centre crop in source pixels. Only that region was animated, so its
        aspect is the working aspect (to within one pixel of rounding), not the motion's; use
        `restore(..., full_frame=True)` to place it on a black frame of the motion's full size.
        """
        if self.mode == "crop":
            return (self.source_box.width, self.source_box.height)
        return self.source_size

    def to_dict(self) -> dict[str, object]:
        """Plain data for JSON sidecars."""
        return asdict(self)


def working_shape(
    src_w: int,
    src_h: int,
    size: int = DEFAULT_WORKING_SIZE,
    width: int | None = None,
    height: int | None = None,
) -> tuple[int, int]:
    """The (width, height) the model runs at.

    By default a `size` x `size` square (the released model's shape). `width` and `height`
    together set a non-square shape directly; given alone, the other side follows the
    motion's aspect, rounded to a multiple of 8. Every given value must be a positive
    multiple of 8.
    """
    _check_multiple("size", size)
    if width is not None:
        _check_multiple("width", width)
    if height is not None:
        _check_multiple("height", height)
    if width is not None and height is not None:
        return (width, height)
    _check_source(src_w, src_h)
    if width is not None:
        return (width, _round_to_multiple(width * src_h / src_w))
    if height is not None:
        return (_round_to_multiple(height * src_w / src_h), height)
    return (size, size)


def plan_fit(src_w: int, src_h: int, work_w: int, work_h: int, mode: str,
             background: tuple[int, int, int] = BACKGROUND) -> Fit:
    """Plan how a src_w x src_h picture fills a work_w x work_h working frame in `mode`.

    `background` is the motion's own background colour, decided once per clip (`densepose.background_colour`
    of its first frame), so that every frame is letterboxed alike.
    """
    _check_source(src_w, src_h)
    _check_multiple("working width", work_w)
    _check_multiple("working height", work_h)
    whole_source = Box(0, 0, src_w, src_h)
    whole_work = Box(0, 0, work_w, work_h)
    if mode == "stretch":
        return Fit("stretch", (src_w, src_h), (work_w, work_h), whole_source, whole_work, background)
    if mode == "pad":
        width, height = _fit_inside(src_w, src_h, work_w, work_h)
        content = Box((work_w - width) // 2, (work_h - height) // 2, width, height)
        return Fit("pad", (src_w, src_h), (work_w, work_h), whole_source, content, background)
    if mode == "crop":
        width, height = _fit_inside(work_w, work_h, src_w, src_h)
        crop = Box((src_w - width) // 2, (src_h - height) // 2, width, height)
        return Fit("crop", (src_w, src_h), (work_w, work_h), crop, whole_work, background)
    raise SettingsError(f"fit mode must be one of {', '.join(FIT_MODES)}, got {mode!r}")


def fit_motion_frame(frame: np.ndarray, fit: Fit, resample: Resample = MOTION_RESAMPLE) -> np.ndarray:
    """Shape one DensePose frame (H, W, 3) to the working size; pad mode letterboxes with `fit.background`."""
    _check_frame(frame, fit.source_size, "motion frame")
    content = resize(to_uint8(frame)[fit.source_box.slices()], fit.working_box.width, fit.working_box.height, resample)
    work_w, work_h = fit.working_size
    if (content.shape[1], content.shape[0]) == (work_w, work_h):
        return content
    canvas = np.empty((work_h, work_w, 3), dtype=np.uint8)
    canvas[...] = fit.background
    canvas[fit.working_box.slices()] = content
    return canvas


def fit_reference(
    image: np.ndarray, work_w: int, work_h: int, mode: str, resample: Resample = IMAGE_RESAMPLE
) -> np.ndarray:
    """Shape the reference image to the working size with its own plan (its size differs from the motion's).

    Pad mode extends the picture with its edge pixels rather than black, so the appearance
    encoder sees a continuation of the backdrop instead of hard bars it might copy.
    """
    fit = plan_fit(image.shape[1], image.shape[0], work_w, work_h, mode)
    content = resize(
        to_uint8(image)[fit.source_box.slices()], fit.working_box.width, fit.working_box.height, resample
    )
    box = fit.working_box
    pad = ((box.top, work_h - box.bottom), (box.left, work_w - box.right), (0, 0))
    return np.pad(content, pad, mode="edge") if any(p for axis in pad for p in axis) else content


def restore(
    frames_work: np.ndarray,
    fit: Fit,
    resample: Resample = IMAGE_RESAMPLE,
    full_frame: bool = False,
) -> np.ndarray:
    """Undo `fit` on generated frames: (H, W, 3) or (N, H, W, 3), uint8 or float in [0, 1] -> uint8.

    pad: cut the letterbox away and resize to the motion's size. stretch: resize back to the
    motion's size. crop: resize to the crop region's source size (`Fit.output_size`); with
    `full_frame=True`, paste that onto black at the crop's place in a frame of the motion's
    size, so the output lines up pixel for pixel with the motion video.
    Odd sizes are returned as they are; the mp4 writer evens them.
    """
    frames = to_uint8(np.asarray(frames_work))
    if frames.ndim == 3:
        return _restore_frame(frames, fit, resample, full_frame)
    if frames.ndim != 4:
        raise ValueError(f"expected (H, W, 3) or (N, H, W, 3) frames, got shape {frames.shape}")
    return np.stack([_restore_frame(frame, fit, resample, full_frame) for frame in frames])


def _restore_frame(frame: np.ndarray, fit: Fit, resample: Resample, full_frame: bool) -> np.ndarray:
    _check_frame(frame, fit.working_size, "generated frame")
    used = frame[fit.working_box.slices()]
    out_w, out_h = fit.output_size
    restored = resize(used, out_w, out_h, resample)
    if fit.mode != "crop" or not full_frame:
        return restored
    src_w, src_h = fit.source_size
    canvas = np.zeros((src_h, src_w, 3), dtype=np.uint8)
    canvas[fit.source_box.slices()] = restored
    return canvas


def _fit_inside(w: int, h: int, box_w: int, box_h: int) -> tuple[int, int]:
    """Largest size with w:h aspect inside box_w x box_h, rounded, never below one pixel."""
    if w * box_h >= h * box_w:  # limited by width
        return box_w, min(box_h, max(1, round(h * box_w / w)))
    return min(box_w, max(1, round(w * box_h / h))), box_h


def resize(pixels: np.ndarray, width: int, height: int, resample: Resample = IMAGE_RESAMPLE) -> np.ndarray:
    """Resize uint8 RGB with Pillow; an unchanged size returns an exact copy."""
    if (pixels.shape[1], pixels.shape[0]) == (width, height):
        return np.ascontiguousarray(pixels)
    if resample not in _RESAMPLE:
        raise SettingsError(f"resampling filter must be one of {', '.join(_RESAMPLE)}, got {resample!r}")
    image = Image.fromarray(np.ascontiguousarray(pixels))
    return np.asarray(image.resize((width, height), _RESAMPLE[resample]))


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Float pictures are taken to be in [0, 1]; they are clipped and rounded to uint8."""
    pixels = np.asarray(pixels)
    if pixels.dtype == np.uint8:
        return pixels
    if np.issubdtype(pixels.dtype, np.floating):
        return np.clip(np.rint(pixels * 255.0), 0, 255).astype(np.uint8)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def _check_frame(frame: np.ndarray, size: tuple[int, int], what: str) -> None:
    if frame.ndim != 3 or frame.shape[2] != 3 or (frame.shape[1], frame.shape[0]) != size:
        raise ValueError(f"{what} has shape {frame.shape}, expected ({size[1]}, {size[0]}, 3)")


def _check_source(width: int, height: int) -> None:
    if width < 1 or height < 1:
        raise SettingsError(f"source size must be positive, got {width}x{height}")


def _check_multiple(name: str, value: int) -> None:
    if value < SIZE_MULTIPLE or value % SIZE_MULTIPLE:
        raise SettingsError(f"{name} must be a positive multiple of {SIZE_MULTIPLE}, got {value}")


def _round_to_multiple(value: float) -> int:
    return max(SIZE_MULTIPLE, round(value / SIZE_MULTIPLE) * SIZE_MULTIPLE)
