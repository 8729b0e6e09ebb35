"""Reading the two inputs of an animation: the reference image and the DensePose motion.

The motion is either a video file (anything FFmpeg decodes through PyAV: mp4, mov, webm,
avi, gif, ...) or a folder of frame images. It is streamed: `MotionClip` decodes one frame
at a time, so a long video never sits in memory unless `read_all()` is asked for.

Probing decodes the whole video once without converting frames to RGB. That is cheap next
to diffusion and buys two things the container headers cannot give: an exact frame count
(webm and gif often carry none; edit lists and VFR make others approximate) and an early,
clear error for a damaged or truncated file before any model is loaded.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..motion.palette import BACKGROUND as DENSEPOSE_BACKGROUND
from ..runtime.errors import InputError, SettingsError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})
"""File suffixes taken as frames when the motion is a folder."""

DEFAULT_FOLDER_FPS = Fraction(25)
"""Frame rate of a frame folder when neither the caller nor a sidecar gives one (the official demo writes 25 fps)."""

FRAME_FOLDER_SIDECAR = "frames.json"
"""Optional file in a frame folder holding its rate, e.g. {"fps": "30000/1001"}; the PNG-folder writer makes it."""

WHITE = (255, 255, 255)

_MAX_RATE_DENOMINATOR = 100_000


# --------------------------------------------------------------------------- images


def load_reference(path: str | os.PathLike[str]) -> np.ndarray:
    """Read the reference picture as uint8 RGB (H, W, 3), upright and opaque.

    EXIF orientation is applied so the person stands as the camera app shows them.
    Transparent pixels are composited over white: cut-outs from background removers carry
    arbitrary colours under alpha 0, and white is what image viewers and web pages show
    behind them, so the model sees what the user saw. Black is avoided on purpose: in the
    DensePose motion black means "no body", and a dark halo around the person would read
    as a silhouette edge. Greyscale, palette, CMYK and 16-bit images become 8-bit RGB.
    """
    path = Path(path)
    return image_to_rgb(open_image(path), background=WHITE, path=path)


def open_image(path: Path) -> Image.Image:
    """Open and fully decode one image file, upright, turning every failure into a one-line InputError."""
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not an image file")
    try:
        image = Image.open(path)
        image.load()
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image (PNG, JPEG or WebP expected)") from None
    except Image.DecompressionBombError as exc:
        raise InputError(f"{path}: image is too large to load safely ({exc})") from None
    except PermissionError:
        raise InputError(f"{path}: cannot read the file (permission denied)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: image data is damaged or truncated ({_one_line(exc)})") from None
    return _upright(image)


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag; a malformed EXIF block is ignored rather than fatal."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - broken EXIF must not make a readable picture unusable
        return image


def image_to_rgb(image: Image.Image, background: tuple[int, int, int], path: Path | None = None) -> np.ndarray:
    """Convert any Pillow mode to uint8 RGB, compositing transparency over `background`.

    16-bit greyscale is scaled (not clipped) to 8 bits; an embedded ICC profile is honoured
    so CMYK and wide-gamut pictures keep their colours.
    """
    try:
        return _rgb_pixels(image, background)
    except (ValueError, OSError) as exc:
        name = f"{path}: " if path is not None else ""
        raise InputError(f"{name}cannot convert {image.mode} pixels to RGB ({_one_line(exc)})") from None


def _rgb_pixels(image: Image.Image, background: tuple[int, int, int]) -> np.ndarray:
    image = _to_eight_bit(image)
    image = _to_srgb(image)
    if _has_alpha(image):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32)
        alpha = rgba[..., 3:4] / 255.0
        backdrop = np.asarray(background, dtype=np.float32)
        rgb = rgba[..., :3] * alpha + backdrop * (1.0 - alpha)
        return np.ascontiguousarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8))
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))


def _to_eight_bit(image: Image.Image) -> Image.Image:
    """Scale 16/32-bit integer and float greyscale modes into 8-bit 'L' (Pillow would clip them)."""
    if image.mode.startswith("I;16"):
        values = np.asarray(image).astype(np.uint32)
        return Image.fromarray(((values + 128) // 257).astype(np.uint8), mode="L")
    if image.mode == "I":
        values = np.asarray(image).astype(np.int64)
        if values.max(initial=0) > 255:  # 16-bit data stored in a 32-bit mode (16-bit PNG greyscale)
            values = (values + 128) // 257
        return Image.fromarray(np.clip(values, 0, 255).astype(np.uint8), mode="L")
    if image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if values.max(initial=0.0) <= 1.0:
            values = values * 255.0
        return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), mode="L")
    return image


def _to_srgb(image: Image.Image) -> Image.Image:
    """Convert through an embedded ICC profile to sRGB when one is present; keep the pixels if that fails."""
    icc = image.info.get("icc_profile")
    if not icc or image.mode not in ("RGB", "RGBA", "CMYK"):
        return image
    try:
        from PIL import ImageCms

        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        target = ImageCms.createProfile("sRGB")
        out_mode = "RGBA" if image.mode == "RGBA" else "RGB"
        converted = ImageCms.profileToProfile(image, source, target, outputMode=out_mode)
    except Exception:  # noqa: BLE001 - a broken profile is the file's problem, not a reason to refuse it
        return image.convert("RGB") if image.mode == "CMYK" else image
    return converted if converted is not None else image


def _has_alpha(image: Image.Image) -> bool:
    """True for modes with an alpha band and for palette/grey/RGB images with a transparency key."""
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


# --------------------------------------------------------------------------- motion


@dataclass(frozen=True)
class MotionInfo:
    """What probing a motion source found: exact frame count, frame rate and frame size."""

    path: Path
    kind: Literal["video", "folder"]
    frame_count: int
    fps: Fraction
    width: int
    height: int
    files: tuple[Path, ...] = field(default=(), repr=False)
    """The frame images of a folder in natural name order (empty for a video)."""


def probe_motion(path: str | os.PathLike[str], fps: Fraction | int | str | None = None) -> MotionInfo:
    """Count the frames and read the rate and size of a motion video or frame folder, keeping no frames.

    `fps` overrides the rate found in the source (for a folder it replaces the 25 fps default).
    """
    path = Path(path)
    override = _parse_fps(fps, path) if fps is not None else None
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if path.is_dir():
        return _probe_folder(path, override)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        raise InputError(f"{path}: is a single image; the motion must be a video or a folder of frame images")
    info = _probe_video(path)
    return info if override is None else replace(info, fps=override)


def open_motion(
    path: str | os.PathLike[str],
    start: int = 0,
    max_frames: int | None = None,
    stride: int = 1,
    fps: Fraction | int | str | None = None,
) -> MotionClip:
    """Probe a motion source and select frames `start`, `start + stride`, ... (at most `max_frames`)."""
    _check_selection(start, max_frames, stride)
    return MotionClip(probe_motion(path, fps=fps), start=start, max_frames=max_frames, stride=stride)


class MotionClip:
    """A lazily decoded selection of motion frames; iterate it for uint8 (H, W, 3) arrays.

    `fps` is the playback rate of the *selected* frames: the source rate divided by the
    stride, so the result keeps the motion's real-time speed. `source_fps` is the source rate.
    Each iteration decodes afresh from the start of the source (frames before `start` are
    decoded but not converted: decoding from the beginning is exact where seeking is not).
    """

    def __init__(self, info: MotionInfo, start: int = 0, max_frames: int | None = None, stride: int = 1) -> None:
        _check_selection(start, max_frames, stride)
        if start >= info.frame_count:
            raise InputError(
                f"{info.path}: start frame {start} is beyond the end of the motion "
                f"({info.frame_count} frames, last index {info.frame_count - 1})"
            )
        self.info = info
        self.start = start
        self.stride = stride
        indices = range(start, info.frame_count, stride)
        self.source_indices: range = indices if max_frames is None else indices[:max_frames]

    @property
    def path(self) -> Path:
        return self.info.path

    @property
    def frame_count(self) -> int:
        """Number of frames after start/stride/max_frames selection."""
        return len(self.source_indices)

    @property
    def width(self) -> int:
        return self.info.width

    @property
    def height(self) -> int:
        return self.info.height

    @property
    def source_fps(self) -> Fraction:
        return self.info.fps

    @property
    def fps(self) -> Fraction:
        return self.info.fps / self.stride

    def __len__(self) -> int:
        return self.frame_count

    def __iter__(self) -> Iterator[np.ndarray]:
        if self.info.kind == "folder":
            return _iter_folder(self.info, self.source_indices)
        return _iter_video(self.info, self.source_indices)

    def read_all(self) -> np.ndarray:
        """Decode every selected frame into one (N, H, W, 3) uint8 array (memory: N*H*W*3 bytes)."""
        frames = np.empty((self.frame_count, self.height, self.width, 3), dtype=np.uint8)
        for slot, frame in enumerate(self):
            frames[slot] = frame
        return frames

    def __repr__(self) -> str:
        return (
            f"MotionClip({str(self.path)!r}, frames={self.frame_count}, fps={self.fps}, "
            f"size={self.width}x{self.height}, start={self.start}, stride={self.stride})"
        )


def _check_selection(start: int, max_frames: int | None, stride: int) -> None:
    """Reject frame selections that cannot select anything."""
    if start < 0:
        raise SettingsError(f"start frame must be 0 or more, got {start}")
    if stride < 1:
        raise SettingsError(f"frame stride must be 1 or more, got {stride}")
    if max_frames is not None and max_frames < 1:
        raise SettingsError(f"max frames must be 1 or more, got {max_frames}")


def _parse_fps(value: Fraction | int | float | str, path: Path) -> Fraction:
    """Accept 25, '30000/1001', '29.97' or a Fraction; reject zero, negative and unparsable rates."""
    try:
        rate = Fraction(value).limit_denominator(_MAX_RATE_DENOMINATOR) if isinstance(value, float) else Fraction(value)
    except (ValueError, ZeroDivisionError, TypeError):
        raise SettingsError(f"{path}: frame rate {value!r} is not a number like 25 or 30000/1001") from None
    if rate <= 0:
        raise SettingsError(f"{path}: frame rate must be positive, got {value!r}")
    return rate


# --------------------------------------------------------------------------- frame folders


def natural_sort_key(name: str) -> tuple[tuple[str | int, ...], str]:
    """Order names as people do: 'frame2' before 'frame10' (digit runs compare as numbers).

    re.split with a capture group alternates text and digit runs, so position parity fixes
    the type and two names always compare like with like; the name itself breaks ties
    (e.g. 'f01' and 'f1').
    """
    parts = re.split(r"(\d+)", name)
    return tuple(int(part) if i % 2 else part.lower() for i, part in enumerate(parts)), name


def list_frame_files(folder: Path) -> list[Path]:
    """The image files in `folder` (not hidden, not sub-folders) in natural name order."""
    try:
        entries = list(folder.iterdir())
    except OSError as exc:
        raise InputError(f"{folder}: cannot list the folder ({_one_line(exc)})") from None
    frames = [
        entry
        for entry in entries
        if entry.suffix.lower() in IMAGE_SUFFIXES and not entry.name.startswith(".") and entry.is_file()
    ]
    return sorted(frames, key=lambda entry: natural_sort_key(entry.name))


def _probe_folder(folder: Path, fps: Fraction | None) -> MotionInfo:
    """Check that a frame folder holds images of one size; read sizes from headers only."""
    files = list_frame_files(folder)
    if not files:
        suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
        raise InputError(f"{folder}: folder holds no frame images ({suffixes})")
    first_size = _header_size(files[0])
    for file in files[1:]:
        size = _header_size(file)
        if size != first_size:
            raise InputError(
                f"{file}: frame is {size[0]}x{size[1]} but {files[0].name} is {first_size[0]}x{first_size[1]}; "
                "all frames in a folder must have one size"
            )
    rate = fps if fps is not None else _sidecar_fps(folder)
    return MotionInfo(folder, "folder", len(files), rate, first_size[0], first_size[1], tuple(files))


def _header_size(file: Path) -> tuple[int, int]:
    """Upright (width, height) of an image from its header, without decoding the pixels."""
    try:
        with Image.open(file) as image:
            width, height = image.size
            orientation = image.getexif().get(0x0112, 1)
    except UnidentifiedImageError:
        raise InputError(f"{file}: not an image (PNG, JPEG or WebP expected)") from None
    except OSError as exc:
        raise InputError(f"{file}: cannot read the image ({_one_line(exc)})") from None
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _sidecar_fps(folder: Path) -> Fraction:
    """The rate stored by the PNG-folder writer, or the 25 fps default when there is none."""
    sidecar = folder / FRAME_FOLDER_SIDECAR
    if not sidecar.is_file():
        return DEFAULT_FOLDER_FPS
    try:
        rate = Fraction(str(json.loads(sidecar.read_text(encoding="utf-8"))["fps"]))
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError) as exc:
        raise InputError(f"{sidecar}: cannot read the frame rate ({_one_line(exc)})") from None
    if rate <= 0:
        raise InputError(f"{sidecar}: frame rate must be positive, got {rate}")
    return rate


def _iter_folder(info: MotionInfo, indices: range) -> Iterator[np.ndarray]:
    """Load the selected frame files one by one; transparent pixels are DensePose background, viridis(0)."""
    for index in indices:
        file = info.files[index]
        frame = image_to_rgb(open_image(file), background=DENSEPOSE_BACKGROUND, path=file)
        if frame.shape[:2] != (info.height, info.width):
            raise InputError(
                f"{file}: frame is {frame.shape[1]}x{frame.shape[0]}, expected {info.width}x{info.height}"
            )
        yield frame


# --------------------------------------------------------------------------- videos


def _open_container(path: Path, options: dict[str, str] | None = None) -> av.container.InputContainer:
    """Open a video container or say in one line why FFmpeg could not (`options`: FFmpeg's, for the probe)."""
    try:
        return av.open(str(path), mode="r", options=options or {})
    except PermissionError:
        raise InputError(f"{path}: cannot read the file (permission denied)") from None
    except av.error.EOFError:
        raise InputError(
            f"{path}: not a decodable video (the file ends before any video frame: empty or truncated)"
        ) from None
    except (av.FFmpegError, OSError) as exc:
        raise InputError(f"{path}: not a decodable video ({_ffmpeg_reason(exc)})") from None


def _video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    if not container.streams:
        raise InputError(f"{path}: contains no video frames (the file holds no streams at all)")
    if not container.streams.video:
        kinds = ", ".join(sorted({stream.type for stream in container.streams}))
        raise InputError(f"{path}: contains no video stream (only {kinds})")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return stream


def _decoded_frames(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, path: Path
) -> Iterator[tuple[int, av.VideoFrame]]:
    """Yield (index, frame) in presentation order; a decoder or demuxer failure names the frame index."""
    index = 0
    try:
        for frame in container.decode(stream):
            yield index, frame
            index += 1
    except (av.FFmpegError, OSError) as exc:
        raise InputError(
            f"{path}: damaged or truncated file: cannot decode frame {index} ({_ffmpeg_reason(exc)})"
        ) from None


@dataclass
class _Timeline:
    """Timestamps gathered while counting frames, to derive an honest average rate."""

    count: int = 0
    first: int | None = None
    end: int | None = None
    last_start: int | None = None
    all_timed: bool = True

    def add(self, pts: int | None, duration: int | None) -> None:
        self.count += 1
        if pts is None:
            self.all_timed = False
            return
        self.first = pts if self.first is None else min(self.first, pts)
        self.last_start = pts if self.last_start is None else max(self.last_start, pts)
        if duration:
            self.end = pts + duration if self.end is None else max(self.end, pts + duration)
        else:
            self.all_timed = False


def _probe_video(path: Path) -> MotionInfo:
    """Decode-count a video (no RGB conversion), check it is complete, and work out its rate."""
    container = _open_container(path)
    try:
        stream = _video_stream(container, path)
        timeline = _Timeline()
        size: tuple[int, int] | None = None
        for index, frame in _decoded_frames(container, stream, path):
            if size is None:
                size = (frame.width, frame.height)
            elif (frame.width, frame.height) != size:
                raise InputError(
                    f"{path}: frame {index} is {frame.width}x{frame.height} but frame 0 is {size[0]}x{size[1]}; "
                    "size changes inside a video are not supported"
                )
            timeline.add(frame.pts, frame.duration)
        if size is None:
            raise InputError(f"{path}: contains no video frames")
        time_base = stream.time_base or Fraction(1, 1_000_000)
        fps = _average_rate(stream, timeline, time_base)
        _check_complete(container, stream, timeline, time_base, fps, path)
    finally:
        container.close()
    return MotionInfo(path, "video", timeline.count, fps, size[0], size[1])


_EXACT_RATES = tuple(Fraction(n * 1000, 1001) for n in (24, 30, 48, 60, 120, 240))
"""The NTSC-style rates; Matroska's nanosecond DefaultDuration can only approximate them."""


def _snap_rate(rate: Fraction) -> Fraction:
    """Replace a rate within one part per million of a whole number or an NTSC rate by that exact value.

    Clocks in ms (webm) or ns (Matroska's DefaultDuration) turn 60000/1001 into 19001/317;
    no real video differs from the exact rate by so little on purpose.
    """
    for exact in (Fraction(round(rate)), *_EXACT_RATES):
        if exact > 0 and abs(rate - exact) <= exact / 1_000_000:
            return exact
    return rate


def _average_rate(stream: av.video.stream.VideoStream, timeline: _Timeline, time_base: Fraction) -> Fraction:
    return _snap_rate(_container_or_measured_rate(stream, timeline, time_base))


def _container_or_measured_rate(
    stream: av.video.stream.VideoStream, timeline: _Timeline, time_base: Fraction
) -> Fraction:
    """The stream's average rate, unless the decoded timestamps contradict it.

    FFmpeg's average_rate is exact where the container stores one (mp4's sample table,
    Matroska's DefaultDuration, which ms timestamps alone could not give), but for gif it is
    a guess from the first delays. So it is kept when `count / rate` lands within 1.5 ticks of
    the decoded span, and otherwise the rate measured from the timestamps is used.
    """
    declared = stream.average_rate or stream.guessed_rate or stream.base_rate
    declared = Fraction(declared) if declared and declared > 0 else None
    measured = _measured_rate(timeline, time_base)
    checkable = timeline.all_timed and timeline.first is not None and timeline.end is not None
    if declared is not None:
        if not checkable:
            return declared
        span = Fraction(timeline.end - timeline.first) * time_base
        if abs(Fraction(timeline.count) / declared - span) <= Fraction(3, 2) * time_base:
            return declared
    if measured is not None:
        return measured
    return declared if declared is not None else DEFAULT_FOLDER_FPS


def _measured_rate(timeline: _Timeline, time_base: Fraction) -> Fraction | None:
    """Frames per second from presentation timestamps, or None when they cannot tell.

    With every frame's duration known the span runs to the end of the last frame;
    without, the rate is taken between the first and last frame starts.
    """
    if timeline.first is None or timeline.last_start is None:
        return None
    if timeline.all_timed and timeline.end is not None and timeline.end > timeline.first:
        rate = timeline.count / (Fraction(timeline.end - timeline.first) * time_base)
    elif timeline.count > 1 and timeline.last_start > timeline.first:
        rate = (timeline.count - 1) / (Fraction(timeline.last_start - timeline.first) * time_base)
    else:
        return None
    return rate.limit_denominator(_MAX_RATE_DENOMINATOR)


def _check_complete(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    timeline: _Timeline,
    time_base: Fraction,
    fps: Fraction,
    path: Path,
) -> None:
    """Catch truncation that FFmpeg reports only as an early end (Matroska/WebM cut short).

    The header's duration was written when the file was complete; if the decodable frames
    stop more than 1.5 frame periods before it, the tail is missing.
    """
    announced = _announced_duration(container, stream, time_base)
    if announced is None or timeline.first is None or timeline.last_start is None:
        return
    end = timeline.end if timeline.end is not None else timeline.last_start
    covered = Fraction(end - timeline.first) * time_base
    if covered < announced - Fraction(3, 2) / fps:
        raise InputError(
            f"{path}: truncated file: decoding stops at frame {timeline.count} "
            f"after {float(covered):.3f} s of the {float(announced):.3f} s the file announces"
        )


def _announced_duration(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, time_base: Fraction
) -> Fraction | None:
    """The video duration the header claims: the stream's own, or the container's when it has one stream."""
    if stream.duration:
        return Fraction(stream.duration) * time_base
    if container.duration and len(container.streams) == 1:
        return Fraction(container.duration, 1_000_000)
    return None


def _iter_video(info: MotionInfo, indices: range) -> Iterator[np.ndarray]:
    """Decode from the start, converting only the selected frames to RGB."""
    container = _open_container(info.path)
    try:
        stream = _video_stream(container, info.path)
        wanted = 0
        for index, frame in _decoded_frames(container, stream, info.path):
            if index in indices:
                rgb = frame.to_ndarray(format="rgb24")
                if rgb.shape[:2] != (info.height, info.width):
                    raise InputError(
                        f"{info.path}: frame {index} is {rgb.shape[1]}x{rgb.shape[0]}, "
                        f"expected {info.width}x{info.height}"
                    )
                yield rgb
                wanted += 1
                if wanted == len(indices):
                    return
    finally:
        container.close()
    raise InputError(
        f"{info.path}: video ended after {wanted} of {len(indices)} selected frames (did the file change?)"
    )


# --------------------------------------------------------------------------- messages


def _ffmpeg_reason(exc: BaseException) -> str:
    """FFmpeg's own words without the errno prefix and the repeated file name."""
    reason = getattr(exc, "strerror", None) or str(exc)
    return _one_line(reason)


def _one_line(exc: BaseException | str) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


@dataclass(frozen=True)
class FrameSelection:
    start: int = 0
    max_frames: int | None = None
    stride: int = 1
