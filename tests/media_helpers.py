"""Small media fixtures for the media, geometry and writer tests: tiny frames whose index survives lossy coding."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

LEVEL_STEP = 24
LEVEL_BASE = 16


def indexed_frame(index: int, width: int = 32, height: int = 24) -> np.ndarray:
    """A flat grey frame whose level encodes `index` (0..9), readable after H.264/VP9/GIF coding."""
    return np.full((height, width, 3), LEVEL_BASE + LEVEL_STEP * index, dtype=np.uint8)


def indexed_frames(count: int, width: int = 32, height: int = 24) -> list[np.ndarray]:
    return [indexed_frame(i, width, height) for i in range(count)]


def frame_index(frame: np.ndarray) -> int:
    """Inverse of `indexed_frame`, from the frame's mean level."""
    return round((float(frame.mean()) - LEVEL_BASE) / LEVEL_STEP)


def encode_video(
    path: Path,
    frames: list[np.ndarray],
    fps: Fraction | int = 25,
    codec: str = "libx264",
    container_format: str | None = None,
    container_options: dict[str, str] | None = None,
) -> Path:
    """Encode frames with PyAV directly (independent of the writer under test).

    One encoder thread: x264's output depends on its thread count, which follows the CPUs a test may use, and a
    test's input must be the same file on every machine (2 cores in CI, 1 under `taskset -c 0`, 16 elsewhere)."""
    rate = Fraction(fps)
    height, width = frames[0].shape[:2] if frames else (24, 32)
    with av.open(str(path), "w", format=container_format, options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = 1 / rate
        stream.codec_context.thread_count = 1
        if not frames:
            container.start_encoding()  # header and trailer only: a valid file with no frames
        for index, pixels in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts, frame.time_base = index, 1 / rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def ordinary_video(path: Path, frames: int = 5, size: int = 128) -> Path:
    """An ordinary-looking video (a picture panning): what users pass instead of a DensePose render."""
    from magicanimate_cli.demo.inputs import make_reference_image

    picture = make_reference_image(size)
    return encode_video(path, [np.roll(picture, 6 * i, axis=1) for i in range(frames)], 25)


def frame_folder(path: Path, frames: list[np.ndarray], fps: Fraction | int = 25) -> Path:
    """A folder of PNG frames, written through the project's own (lossless) writer."""
    from magicanimate_cli.media.writer import open_writer

    with open_writer(path, fps, frames[0].shape[1], frames[0].shape[0]) as writer:
        for frame in frames:
            writer.write(frame)
    return path


def truncate(path: Path, keep: float, out: Path) -> Path:
    """Copy the first `keep` fraction of a file's bytes, as an interrupted download leaves it."""
    data = path.read_bytes()
    out.write_bytes(data[: int(len(data) * keep)])
    return out


def save_image(path: Path, pixels: np.ndarray, mode: str | None = None, **save_options: object) -> Path:
    """Save an array with Pillow (mode optional, e.g. 'RGBA', 'LA', 'I;16')."""
    image = Image.fromarray(pixels, mode=mode) if mode else Image.fromarray(pixels)
    image.save(path, **save_options)
    return path


def gif_delays_cs(path: Path) -> list[int]:
    """Per-frame display time of a gif in centiseconds, as Pillow (an independent reader) sees it."""
    delays = []
    with Image.open(path) as image:
        for index in range(image.n_frames):
            image.seek(index)
            delays.append(round(image.info["duration"] / 10))
    return delays
