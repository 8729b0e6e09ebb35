"""Reading a few frames of a video by index: seek to the keyframe before each run of wanted frames, decode forward,
convert only the frames kept.

`MotionClip` decodes from the start, which is right for a whole clip and wrong for training, where a sample wants
one to seventeen frames anywhere in a long video: decoding everything up to the last wanted frame costs the whole
video's decode. Here the packets are listed once per open file (demuxing reads no pixels), so the frame at index i
is the i-th presentation time and the keyframe before it is known; a read then costs at most one GOP of decoding
per run of wanted frames, and holds one decoded frame at a time besides the frames it returns.

`VideoHeader` is what a container says about itself without decoding (frame count, size), for start-up checks
that must grow with the number of files, not of frames.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from ..runtime.errors import InputError
from .reader import _ffmpeg_reason, _open_container, _video_stream


@dataclass(frozen=True)
class VideoHeader:
    """A video's frame count and size as its container declares them (0 frames: the container does not say)."""

    path: Path
    frames: int
    width: int
    height: int


HEADER_ONLY = {"skip_frame": "all"}
"""Opening a file probes its streams by decoding their first frames (~70 ms for a 1080x1920 H.264 file); the
probe's decoder told to skip every frame leaves it to the container's header (~8 ms), which holds the frame count
and size a start-up check needs. The option reaches only the probe: the stream's own decoder decodes as usual."""


def read_header(path: Path) -> VideoHeader:
    """Open, read the header, close: no frame is decoded."""
    container = _open_container(path, HEADER_ONLY)
    try:
        stream = _video_stream(container, path)
        return VideoHeader(path, int(stream.frames or 0), int(stream.codec_context.width),
                           int(stream.codec_context.height))
    finally:
        container.close()


class SeekableVideo:
    """One open video whose frames are read by index; keep it open for many reads (opening costs 20-40 ms)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.container = _open_container(self.path, HEADER_ONLY)  # the probe's decoder only: this one decodes
        self.stream = _video_stream(self.container, self.path)
        # one thread: a reader is one core of a data worker (workers, not decoder threads, use the machine's cores)
        self.stream.thread_type = "NONE"
        self.stream.codec_context.thread_count = 1
        self.times, self.keyframes = _packet_index(self.container, self.stream, self.path)

    def __len__(self) -> int:
        return len(self.times)

    def close(self) -> None:
        self.container.close()

    def frames(self, indices: Sequence[int], size: tuple[int, int] | None = None) -> list[np.ndarray]:
        """uint8 RGB (H, W, 3) frames at `indices` (any order, repeats allowed), scaled to `size` (width, height)
        by FFmpeg's converter when given; frames between two wanted ones are decoded but never converted."""
        for index in indices:
            if not 0 <= index < len(self.times):
                raise InputError(f"{self.path}: frame {index} asked for, but the video has {len(self.times)} frames")
        wanted = sorted(set(indices))
        found = dict(zip(wanted, self._decode(wanted, size)))
        return [found[i] for i in indices]

    def _decode(self, wanted: list[int], size: tuple[int, int] | None) -> Iterator[np.ndarray]:
        """The wanted frames in index order; a seek only where the next wanted frame lies past the next keyframe."""
        frames: Iterator[av.VideoFrame] | None = None
        position = -1  # index of the last frame decoded
        for index in wanted:
            key = self._keyframe_before(index)
            if frames is None or position >= index or key > position + 1:
                frames, position = self._seek(key), key - 1
            for frame in frames:
                position += 1
                if position == index:
                    yield _rgb(frame, size)
                    break
            else:
                raise InputError(f"{self.path}: damaged or truncated file: frame {index} could not be decoded")

    def _keyframe_before(self, index: int) -> int:
        """The index of the last keyframe at or before frame `index` (frame 0 when none is marked)."""
        at = bisect.bisect_right(self.keyframes, index) - 1
        return self.keyframes[at] if at >= 0 else 0

    def _seek(self, key: int) -> Iterator[av.VideoFrame]:
        self.container.seek(self.times[key], backward=True, any_frame=False, stream=self.stream)
        return _after(self.container.decode(self.stream), self.times[key], self.path)


def _after(frames: Iterator[av.VideoFrame], first: int, path: Path) -> Iterator[av.VideoFrame]:
    """The decoded frames from presentation time `first` on (a seek may land on an earlier keyframe)."""
    try:
        for frame in frames:
            if frame.pts is None or frame.pts >= first:
                yield frame
    except (av.FFmpegError, OSError) as exc:
        raise InputError(f"{path}: damaged or truncated file ({_ffmpeg_reason(exc)})") from None


def _packet_index(container, stream, path: Path) -> tuple[list[int], list[int]]:
    """Presentation times of every frame in order, and the indices of the keyframes, from the packets alone."""
    entries = []
    try:
        for packet in container.demux(stream):
            if packet.pts is not None and packet.size:
                entries.append((packet.pts, packet.is_keyframe))
    except (av.FFmpegError, OSError) as exc:
        raise InputError(f"{path}: damaged or truncated file ({_ffmpeg_reason(exc)})") from None
    if not entries:
        raise InputError(f"{path}: contains no video frames")
    entries.sort()
    container.seek(entries[0][0], backward=True, any_frame=False, stream=stream)
    return [pts for pts, _ in entries], [i for i, (_, key) in enumerate(entries) if key]


def _rgb(frame: av.VideoFrame, size: tuple[int, int] | None) -> np.ndarray:
    if size is None or size == (frame.width, frame.height):
        return frame.to_ndarray(format="rgb24")
    return frame.reformat(width=size[0], height=size[1], format="rgb24",
                          interpolation="AREA").to_ndarray()
