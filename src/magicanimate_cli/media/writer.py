"""Streaming, atomic output writers: mp4 (H.264), webm (VP9), gif, or a folder of PNG frames.

Frames go in one at a time, so a long animation never has to be held in memory. Everything
is written to a hidden temporary next to the destination and renamed onto the final path
only by `close()`; `abort()`, or leaving a `with` block by any exception (Ctrl-C included),
deletes the temporary. A path therefore holds either the previous file or a complete new
one, never a half-written video.

Frame rates are kept exactly: the stream's time base is 1/fps, so 30000/1001 is stored as
1001-tick frames on a 30000 Hz clock (mp4) or as Matroska's DefaultDuration (webm). GIF
can only delay frames by whole centiseconds: each frame starts at its exact time rounded
to the nearest centisecond, so delays alternate (3, 4, 3, ... cs at 29.97 fps), the total
duration is within 1 cs of exact, and rates dividing 100 (25, 20, 50, 10 fps) are exact.
Browsers show delays under 2 cs as 10 cs, so gifs above 50 fps play slowly there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import weakref
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import av
import numpy as np
from PIL import Image

from ..motion.fit import resize, to_uint8
from ..runtime.atomic import default_permissions, make_folder, one_line, remove_file, temp_file, write_atomic
from ..runtime.errors import OutputError, SettingsError
from .reader import FRAME_FOLDER_SIDECAR

DEFAULT_CRF = 18
"""x264's "visually lossless" quality; also used as VP9's crf (its scale runs to 63, so this is high quality there)."""

GRID_GAP = 2
"""Black border around and between grid panels, as torchvision's make_grid draws in the official demo."""

FRAME_NAME = "frame_{index:05d}.png"
_FRAME_FILE = re.compile(r"frame_\d+\.png")


@dataclass(frozen=True)
class VideoFormat:
    """How one file type is encoded through PyAV."""

    container: str
    codec: str
    pixel_format: str
    max_crf: int | None
    even_size: bool
    codec_options: dict[str, str] = field(default_factory=dict)
    container_options: dict[str, str] = field(default_factory=dict)


VIDEO_FORMATS: dict[str, VideoFormat] = {
    ".mp4": VideoFormat(
        "mp4", "libx264", "yuv420p", 51, even_size=True,
        codec_options={"preset": "medium"}, container_options={"movflags": "+faststart"},
    ),
    ".webm": VideoFormat(
        "webm", "libvpx-vp9", "yuv420p", 63, even_size=False,
        codec_options={"b:v": "0", "deadline": "good", "cpu-used": "4", "row-mt": "1"},
    ),
    ".gif": VideoFormat("gif", "gif", "pal8", None, even_size=False),
}
"""mp4 needs even sizes because 4:2:0 chroma halves both axes and x264 refuses odd ones;
VP9 handles odd sizes itself and GIF has no chroma subsampling."""


# --------------------------------------------------------------------------- base


class FrameWriter(ABC):
    """Common life cycle: write frames, then `close()` to publish or `abort()` to discard."""

    def __init__(self, path: Path, fps: Fraction, width: int, height: int) -> None:
        self.path = path
        self.fps = fps
        self.width = width
        self.height = height
        self.frames_written = 0
        self._state = "open"

    def write(self, frame: Any) -> None:
        """Append one (height, width, 3) frame, uint8 or float in [0, 1]."""
        if self._state != "open":
            raise ValueError(f"{self.path}: writer is already {self._state}")
        pixels = to_uint8(np.asarray(frame))
        if pixels.shape != (self.height, self.width, 3):
            raise ValueError(f"frame has shape {pixels.shape}, expected ({self.height}, {self.width}, 3)")
        try:
            self._write_frame(pixels)
        except (OSError, av.FFmpegError) as exc:
            self.abort()
            raise OutputError(f"{self.path}: cannot write frame {self.frames_written} ({one_line(exc)})") from None
        self.frames_written += 1

    def close(self) -> Path:
        """Finish the file and move it onto the final path; returns that path."""
        if self._state == "closed":
            return self.path
        if self._state == "aborted":
            raise ValueError(f"{self.path}: writer was aborted")
        if self.frames_written == 0:
            self.abort()
            raise OutputError(f"{self.path}: no frames were written, so no output was created")
        try:
            self._finish()
            self._publish()
        except (OSError, av.FFmpegError) as exc:
            self.abort()
            raise OutputError(f"{self.path}: cannot finish the output ({one_line(exc)})") from None
        except BaseException:  # Ctrl-C while finishing: still leave no temporary behind
            self.abort()
            raise
        self._state = "closed"
        self._cleanup.detach()
        return self.path

    def abort(self) -> None:
        """Drop everything written so far; the final path is left as it was."""
        if self._state != "open":
            return
        self._state = "aborted"
        self._discard()
        self._cleanup()

    def _remove_temporary_later(self, remove: Any, temporary: Path) -> None:
        """Register the temporary's removal for abort(), garbage collection and interpreter exit,
        so a writer dropped without close() (an error path without `with`) leaves nothing behind."""
        self._cleanup = weakref.finalize(self, remove, temporary)

    def __enter__(self) -> FrameWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    @abstractmethod
    def _write_frame(self, pixels: np.ndarray) -> None:
        """Encode one uint8 frame into the temporary."""

    @abstractmethod
    def _finish(self) -> None:
        """Flush the encoder and close the temporary."""

    @abstractmethod
    def _publish(self) -> None:
        """Move the finished temporary onto the final path."""

    @abstractmethod
    def _discard(self) -> None:
        """Close whatever is open; the temporary itself is removed by the finaliser."""


# --------------------------------------------------------------------------- video files


class VideoFileWriter(FrameWriter):
    """mp4/webm/gif through PyAV, into a temporary file beside the destination."""

    def __init__(
        self, path: Path, fps: Fraction, width: int, height: int, spec: VideoFormat, crf: int
    ) -> None:
        super().__init__(path, fps, width, height)
        self.spec = spec
        self.encoded_size = (width + width % 2, height + height % 2) if spec.even_size else (width, height)
        self._temp = temp_file(path)
        self._remove_temporary_later(remove_file, self._temp)
        try:
            self._container = av.open(str(self._temp), mode="w", format=spec.container, options=spec.container_options)
            self._stream = self._add_stream(crf)
        except (OSError, av.FFmpegError, ValueError) as exc:
            self._cleanup()
            raise OutputError(f"{path}: cannot start the {spec.container} encoder ({one_line(exc)})") from None

    def _add_stream(self, crf: int) -> av.video.stream.VideoStream:
        stream = self._container.add_stream(self.spec.codec, rate=self.fps)
        stream.width, stream.height = self.encoded_size
        stream.pix_fmt = self.spec.pixel_format
        stream.time_base = 1 / self.fps
        options = dict(self.spec.codec_options)
        if self.spec.max_crf is not None:
            options["crf"] = str(crf)
        stream.options = options
        if self.spec.pixel_format == "yuv420p":
            _tag_bt709(stream.codec_context)
        return stream

    def _write_frame(self, pixels: np.ndarray) -> None:
        frame = self._make_frame(_even_pad(pixels, *self.encoded_size))
        frame.pts = self.frames_written
        frame.time_base = 1 / self.fps  # not stream.time_base: muxers replace that with their own clock
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def _make_frame(self, pixels: np.ndarray) -> av.VideoFrame:
        """RGB to the codec's pixel format; yuv420p is converted with BT.709 limited range and tagged so."""
        if self.spec.pixel_format == "pal8":
            return _palette_frame(pixels)
        rgb = av.VideoFrame.from_ndarray(pixels, format="rgb24")
        return rgb.reformat(format=self.spec.pixel_format, dst_colorspace="ITU709", dst_color_range="MPEG")

    def _finish(self) -> None:
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()

    def _publish(self) -> None:
        os.replace(self._temp, self.path)

    def _discard(self) -> None:
        """Close the encoder; abort() then removes the temporary file."""
        try:
            self._container.close()
        except Exception:  # noqa: BLE001 - the file is being thrown away; only its removal matters
            pass


def _tag_bt709(context: av.codec.context.CodecContext) -> None:
    """Label the colours so players do not guess (they pick BT.601 for small frames and BT.709 for HD)."""
    context.colorspace = 1  # AVCOL_SPC_BT709
    context.color_primaries = 1  # AVCOL_PRI_BT709
    context.color_trc = 1  # AVCOL_TRC_BT709
    context.color_range = 1  # AVCOL_RANGE_MPEG (limited, 16-235)


def _even_pad(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """Grow an odd side by repeating the last row/column: no generated pixel is lost and the
    added line is a copy of its neighbour. The aspect changes by at most one pixel."""
    extra_h, extra_w = height - pixels.shape[0], width - pixels.shape[1]
    if not extra_h and not extra_w:
        return pixels
    return np.pad(pixels, ((0, extra_h), (0, extra_w), (0, 0)), mode="edge")


def _palette_frame(pixels: np.ndarray) -> av.VideoFrame:
    """Quantise to a per-frame adaptive 256-colour palette (median cut, no dithering, deterministic)."""
    quantised = Image.fromarray(pixels).quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    indices = np.asarray(quantised, dtype=np.uint8)
    rgb = np.asarray(quantised.getpalette()[: 256 * 3], dtype=np.uint8).reshape(-1, 3)
    palette = np.zeros((256, 4), dtype=np.uint8)  # PyAV wants ARGB rows
    palette[:, 0] = 255
    palette[: len(rgb), 1:] = rgb
    return av.VideoFrame.from_ndarray((indices, palette), format="pal8")


# --------------------------------------------------------------------------- PNG folders


class PngFolderWriter(FrameWriter):
    """Numbered PNGs frame_00000.png, ... plus frames.json holding the exact frame rate.

    An existing destination folder is replaced whole on close, but only if it is empty or
    holds nothing but an earlier run's frames and sidecar; other files are never deleted.
    """

    def __init__(self, path: Path, fps: Fraction, width: int, height: int) -> None:
        super().__init__(path, fps, width, height)
        _check_replaceable_folder(path)
        try:
            self._temp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial"))
            default_permissions(self._temp, 0o777)
        except OSError as exc:
            raise OutputError(f"{path.parent}: cannot write in the output folder ({one_line(exc)})") from None
        self._remove_temporary_later(_remove_tree, self._temp)

    def _write_frame(self, pixels: np.ndarray) -> None:
        Image.fromarray(pixels).save(self._temp / FRAME_NAME.format(index=self.frames_written), format="PNG")

    def _finish(self) -> None:
        sidecar = {"fps": str(self.fps), "frames": self.frames_written, "width": self.width, "height": self.height}
        (self._temp / FRAME_FOLDER_SIDECAR).write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")

    def _publish(self) -> None:
        if not self.path.exists():
            os.replace(self._temp, self.path)
            return
        _check_replaceable_folder(self.path)
        old = Path(tempfile.mkdtemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".old"))
        os.replace(self.path, old / "previous")
        try:
            os.replace(self._temp, self.path)
        except OSError:
            os.replace(old / "previous", self.path)
            raise
        finally:
            shutil.rmtree(old, ignore_errors=True)

    def _discard(self) -> None:
        """Nothing to close; abort() removes the temporary folder."""


def _check_replaceable_folder(path: Path) -> None:
    """Refuse to replace a file, or a folder holding anything but frames from an earlier run."""
    if not path.exists():
        return
    if not path.is_dir():
        raise OutputError(f"{path}: exists and is not a folder; PNG frames need a folder path")
    foreign = [entry.name for entry in path.iterdir() if not _is_own_output(entry.name)]
    if foreign:
        raise OutputError(
            f"{path}: folder holds other files (e.g. {sorted(foreign)[0]}); "
            "choose an empty or new folder for the frames"
        )


def _is_own_output(name: str) -> bool:
    return name == FRAME_FOLDER_SIDECAR or _FRAME_FILE.fullmatch(name) is not None


# --------------------------------------------------------------------------- choosing a writer


def open_writer(
    path: str | os.PathLike[str],
    fps: Fraction | int | str,
    width: int,
    height: int,
    crf: int = DEFAULT_CRF,
    *,
    overwrite: bool = True,
) -> FrameWriter:
    """Open the writer the path asks for: .mp4, .webm, .gif, or a folder (existing, no suffix, or a
    trailing slash) of PNG frames. The destination's parent folders are created if missing."""
    target = Path(path)
    rate = _check_fps(fps)
    if width < 1 or height < 1:
        raise SettingsError(f"{target}: frame size must be positive, got {width}x{height}")
    if not overwrite and target.exists() and not _is_empty_folder(target):
        raise OutputError(f"{target}: already exists (allow overwriting or choose another path)")
    as_folder = target.is_dir() or str(path).endswith(("/", os.sep)) or target.suffix == ""
    spec = None if as_folder else VIDEO_FORMATS.get(target.suffix.lower())
    if not as_folder and spec is None:
        known = ", ".join(VIDEO_FORMATS)
        raise OutputError(f"{target}: unknown output type {target.suffix!r}; use {known} or a folder for PNG frames")
    make_folder(target.parent)
    if spec is None:
        return PngFolderWriter(target, rate, width, height)
    if spec.max_crf is not None and not 0 <= crf <= spec.max_crf:
        raise SettingsError(f"{target}: crf must be between 0 and {spec.max_crf} for {spec.container}, got {crf}")
    if spec.codec not in av.codecs_available:
        raise OutputError(f"{target}: this PyAV build has no {spec.codec} encoder")
    return VideoFileWriter(target, rate, width, height, spec, crf)


def _is_empty_folder(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def _check_fps(fps: Fraction | int | str) -> Fraction:
    """The rate as an exact Fraction; both terms must fit FFmpeg's 32-bit rationals."""
    try:
        rate = Fraction(fps)
    except (ValueError, TypeError, ZeroDivisionError):
        raise SettingsError(f"frame rate {fps!r} is not a number like 25 or 30000/1001") from None
    if rate <= 0:
        raise SettingsError(f"frame rate must be positive, got {fps}")
    if rate.numerator >= 2**31 or rate.denominator >= 2**31:
        rate = rate.limit_denominator(100_000)
    return rate



def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- grids


def grid_widths(panel_sizes: Sequence[tuple[int, int]], height: int) -> list[int]:
    """Width of each panel once scaled to `height`, keeping its aspect."""
    return [max(1, round(w * height / h)) for w, h in panel_sizes]


def compose_grid(panels: Sequence[np.ndarray], height: int, gap: int = GRID_GAP) -> np.ndarray:
    """Panels side by side at one height, with a black `gap` around and between them."""
    images = [to_uint8(np.asarray(panel)) for panel in panels]
    widths = grid_widths([(image.shape[1], image.shape[0]) for image in images], height)
    canvas = np.zeros((height + 2 * gap, sum(widths) + gap * (len(images) + 1), 3), dtype=np.uint8)
    left = gap
    for image, width in zip(images, widths):
        canvas[gap : gap + height, left : left + width] = resize(image, width, height)
        left += width + gap
    return canvas


class GridWriter:
    """Writes reference | motion | result (or any panels) side by side, like the official demo's output.

    Panels are scaled to a common height (by default the last panel's, i.e. the result's own
    resolution); the underlying writer keeps all its atomic behaviour.
    """

    def __init__(self, writer: FrameWriter, panel_sizes: Sequence[tuple[int, int]], height: int, gap: int) -> None:
        self.writer = writer
        self.panel_sizes = list(panel_sizes)
        self.height = height
        self.gap = gap

    @property
    def path(self) -> Path:
        return self.writer.path

    def write(self, *panels: np.ndarray) -> None:
        if len(panels) != len(self.panel_sizes):
            raise ValueError(f"expected {len(self.panel_sizes)} panels, got {len(panels)}")
        self.writer.write(compose_grid(panels, self.height, self.gap))

    def close(self) -> Path:
        return self.writer.close()

    def abort(self) -> None:
        self.writer.abort()

    def __enter__(self) -> GridWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.writer.__exit__(exc_type, exc, tb)


def open_grid_writer(
    path: str | os.PathLike[str],
    fps: Fraction | int | str,
    panel_sizes: Sequence[tuple[int, int]],
    height: int | None = None,
    gap: int = GRID_GAP,
    crf: int = DEFAULT_CRF,
    *,
    overwrite: bool = True,
) -> GridWriter:
    """Open a GridWriter for panels of the given (width, height) sizes."""
    if not panel_sizes:
        raise ValueError("a grid needs at least one panel")
    rows = height if height is not None else panel_sizes[-1][1]
    width = sum(grid_widths(panel_sizes, rows)) + gap * (len(panel_sizes) + 1)
    writer = open_writer(path, fps, width, rows + 2 * gap, crf, overwrite=overwrite)
    return GridWriter(writer, panel_sizes, rows, gap)


# --------------------------------------------------------------------------- small files



def write_image_atomic(path: str | os.PathLike[str], image: np.ndarray) -> Path:
    """Save one RGB picture (format from the suffix, e.g. .png) via a temporary and a rename."""
    target = Path(path)
    pixels = to_uint8(np.asarray(image))
    file_format = Image.registered_extensions().get(target.suffix.lower())
    if file_format is None:
        raise OutputError(f"{target}: unknown image type {target.suffix!r}")
    return write_atomic(target, lambda temp: Image.fromarray(pixels).save(temp, format=file_format))



