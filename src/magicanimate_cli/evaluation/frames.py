"""Reading the two sides of an evaluation: video files, frame folders, folders of either, paired.

Frames are yielded in batches from generators, so a long video is never held in memory whole.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image

from ..runtime.errors import InputError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".avi", ".webm", ".gif", ".m4v"})


def natural_key(path: Path) -> list[object]:
    """Sort `frame_2.png` before `frame_10.png`; zero-padded names sort as plain text does."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def _images_in(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                  key=natural_key)


class FrameFolder:
    """A folder of image files, one frame each, in natural name order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.files = _images_in(path)
        if not self.files:
            raise InputError(f"{path}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")

    @property
    def count(self) -> int:
        return len(self.files)

    @property
    def size(self) -> tuple[int, int]:
        with Image.open(self.files[0]) as image:
            return image.height, image.width

    def frames(self) -> Iterator[np.ndarray]:
        """RGB uint8 frames (H, W, 3); every frame must have the first frame's size."""
        expected = self.size
        for file in self.files:
            try:
                with Image.open(file) as image:
                    frame = np.asarray(image.convert("RGB"))
            except OSError as exc:
                raise InputError(f"{file}: cannot read the image ({exc})") from exc
            if frame.shape[:2] != expected:
                raise InputError(f"{file}: size {frame.shape[1]}x{frame.shape[0]} differs from the "
                                 f"folder's first frame {expected[1]}x{expected[0]}")
            yield frame


class VideoFile:
    """A video file decoded with PyAV."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                self.size = (stream.codec_context.height, stream.codec_context.width)
                self._declared = stream.frames
        except (av.error.FFmpegError, IndexError, OSError) as exc:
            raise InputError(f"{path}: cannot read the video ({exc})") from exc
        self._count: int | None = None

    @property
    def count(self) -> int:
        """Frame count from the container, or by decoding when the container does not say."""
        if self._count is None:
            self._count = self._declared if self._declared > 0 else sum(1 for _ in self.frames())
        return self._count

    def frames(self) -> Iterator[np.ndarray]:
        try:
            with av.open(str(self.path)) as container:
                for frame in container.decode(video=0):
                    yield frame.to_ndarray(format="rgb24")
        except av.error.FFmpegError as exc:
            raise InputError(f"{self.path}: cannot decode the video ({exc})") from exc


FrameSource = FrameFolder | VideoFile


def open_source(path: Path) -> FrameSource:
    """A video file or a folder of frames."""
    if path.is_dir():
        return FrameFolder(path)
    if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        return VideoFile(path)
    if path.is_file():
        raise InputError(f"{path}: not a video file ({', '.join(sorted(VIDEO_SUFFIXES))}) or a folder of frames")
    raise InputError(f"{path}: no such file or folder")


@dataclass(frozen=True)
class VideoPair:
    """One generated video and the ground truth it is compared with."""

    name: str
    generated: FrameSource
    truth: FrameSource


def _collection(folder: Path) -> dict[str, Path]:
    """Videos in a folder of videos or of frame folders, keyed by file stem or folder name."""
    entries: dict[str, Path] = {}
    for child in sorted(folder.iterdir(), key=natural_key):
        is_video = child.is_file() and child.suffix.lower() in VIDEO_SUFFIXES
        is_frames = child.is_dir() and bool(_images_in(child))
        if not (is_video or is_frames):
            continue
        key = child.stem if is_video else child.name
        if key in entries:
            raise InputError(f"{folder}: two videos are named {key!r} ({entries[key].name}, {child.name})")
        entries[key] = child
    return entries


def _is_collection(path: Path) -> bool:
    """A folder that holds videos or frame folders rather than frames itself."""
    return path.is_dir() and not _images_in(path)


def pair_inputs(generated: Path, truth: Path) -> list[VideoPair]:
    """Pair GENERATED with GROUND_TRUTH: two videos, two frame folders, or two collections by name."""
    for path in (generated, truth):
        if not path.exists():
            raise InputError(f"{path}: no such file or folder")
        if _is_collection(path) and not _collection(path):
            raise InputError(f"{path}: empty folder: no frames ({', '.join(sorted(IMAGE_SUFFIXES))}), videos or "
                             "frame folders in it")
    if _is_collection(generated) != _is_collection(truth):
        raise InputError(f"{generated} and {truth}: one is a single video or frame folder, "
                         "the other a folder of videos")
    if not _is_collection(truth):
        name = truth.stem if truth.is_file() else truth.name
        return [VideoPair(name, open_source(generated), open_source(truth))]
    gen_items, truth_items = _collection(generated), _collection(truth)
    only_truth = sorted(set(truth_items) - set(gen_items))
    only_gen = sorted(set(gen_items) - set(truth_items))
    if only_truth or only_gen:
        parts = []
        if only_truth:
            parts.append(f"no generated video for {', '.join(only_truth[:5])}")
        if only_gen:
            parts.append(f"no ground truth for {', '.join(only_gen[:5])}")
        raise InputError(f"{generated} vs {truth}: videos are paired by name and {'; '.join(parts)}")
    return [VideoPair(key, open_source(gen_items[key]), open_source(truth_items[key])) for key in truth_items]

