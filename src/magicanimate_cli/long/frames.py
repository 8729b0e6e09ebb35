"""Working-size motion frames kept in a temporary file instead of memory.

A 750-frame motion at 512×512 is about 590 MB of uint8 pixels, and the sampler needs any window's frames at any
step. Held in an array, that memory grows with the video; written once to a file and read back a frame at a time,
the pages sit in the operating system's cache, which it can reclaim, and not in the process. A `np.memmap` would
not do: the pages it touches count towards the process's resident memory until it unmaps them.

The file lives in the output's folder rather than the system temporary folder, which is often a RAM disk. It is
created already unlinked (`tempfile.TemporaryFile`), so no crash can leave it behind.
"""

from __future__ import annotations

import tempfile
from collections.abc import Container, Iterable, Iterator
from pathlib import Path
from types import TracebackType

import numpy as np

from ..runtime.errors import OutputError


class FrameStore:
    """uint8 (H, W, 3) frames indexed 0..count-1, read from disk on each access.

    `keep` limits which indices are stored (a process that runs some of the windows needs only their frames);
    reading a frame that was not kept is a programming error.
    """

    def __init__(self, count: int, shape: tuple[int, int, int], directory: Path) -> None:
        self.count = count
        self.shape = shape
        self.frame_bytes = int(np.prod(shape))
        self._slots: dict[int, int] = {}
        try:
            self._file = tempfile.TemporaryFile(dir=directory, prefix=".magicanimate-frames-")
        except OSError as exc:
            raise OutputError(f"{directory}: cannot create a temporary file for the motion frames "
                              f"({exc.strerror or exc})") from None

    @classmethod
    def from_frames(cls, frames: Iterable[np.ndarray], count: int, directory: Path,
                    keep: Container[int] | None = None) -> FrameStore:
        """Write `count` frames as they stream in (nothing but the current frame is held)."""
        store: FrameStore | None = None
        written = 0
        try:
            for index, frame in enumerate(frames):
                if store is None:
                    store = cls(count, tuple(frame.shape), directory)
                if keep is None or index in keep:
                    store._append(index, frame)
                written = index + 1
        except BaseException:
            if store is not None:
                store.close()
            raise
        if store is None or written != count:
            if store is not None:
                store.close()
            raise ValueError(f"expected {count} frames, got {written}")
        store._file.flush()
        return store

    def _append(self, index: int, frame: np.ndarray) -> None:
        pixels = np.ascontiguousarray(frame, dtype=np.uint8)
        if pixels.shape != self.shape:
            raise ValueError(f"frame {index} has shape {pixels.shape}, expected {self.shape}")
        self._slots[index] = len(self._slots)
        try:
            self._file.write(pixels.tobytes())
        except OSError as exc:
            raise OutputError(f"cannot write the motion frames to a temporary file ({exc.strerror or exc})") from None

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> np.ndarray:
        if not 0 <= index < self.count:
            raise IndexError(f"frame {index} is outside 0..{self.count - 1}")
        slot = self._slots.get(index)
        if slot is None:
            raise KeyError(f"frame {index} was not stored by this process")
        frame = np.empty(self.shape, dtype=np.uint8)
        self._file.seek(slot * self.frame_bytes)
        if self._file.readinto(frame.reshape(-1).data) != self.frame_bytes:
            raise OSError(f"the temporary file of motion frames ends before frame {index}")
        return frame

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self[i] for i in range(self.count))

    def padded(self, length: int) -> PaddedFrames:
        """A view `length` frames long whose frames past the end repeat the last one (as `pad_motion` pads)."""
        return PaddedFrames(self, length)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> FrameStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class PaddedFrames:
    """`store` extended to `length` frames by repeating its last frame, without storing the copies."""

    def __init__(self, store: FrameStore, length: int) -> None:
        if length < len(store):
            raise ValueError(f"cannot pad {len(store)} frames to {length}")
        self.store = store
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> np.ndarray:
        if not 0 <= index < self.length:
            raise IndexError(f"frame {index} is outside 0..{self.length - 1}")
        return self.store[source_index(index, len(self.store))]


def source_index(padded_index: int, count: int) -> int:
    """Which stored frame a padded index reads."""
    return min(padded_index, count - 1)
