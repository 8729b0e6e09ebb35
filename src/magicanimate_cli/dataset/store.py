"""The training-ready copy of a pair: frames as JPEG and renders as part-label PNG, at a training short side.

```
DATA/ready/NAME.frames   the clip's frames, one JPEG after another (short side --short-side, default 512)
DATA/ready/NAME.labels   its render's frames as part-label maps: PNG, one byte a pixel, values 0..24
DATA/ready/NAME.json     frames, size, fps, the byte offsets of each frame in both files, and the size and mtime
                         of videos/NAME.mp4 and densepose/NAME.mp4 it was made from (written last: its presence
                         means the pair is complete)
```

Why this store (measured for issue 29, one core): a training sample wants 2 to 17 frames anywhere in a clip. From
H.264 that is a seek plus up to a GOP of decoding per frame (~200 ms for a phone clip with a 1 s GOP, ~32 ms
even all-intra at 768x1366); a JPEG at 512x910 decodes in ~4.5 ms with no seek, and a label PNG in ~1 ms. The
render is kept as labels, not colours: one byte instead of three, lossless, and drawn through MagicAnimate's
palette at read time, so the ControlNet sees its exact colours (an H.264 render moves them by a few levels).
Frames of one clip live in one file each (not one file per frame) so that DATA holds three files per clip more,
not thousands, and a reader keeps one open file per clip.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from ..motion.fit import resize
from ..motion.palette import PARTS, nearest_labels
from ..runtime.errors import InputError

READY = "ready"
STORE_VERSION = 1
DEFAULT_SHORT_SIDE = 512
"""Frames are kept with their short side at 512: enough for 512x512 training with any --fit (crop needs the short
side whole), and for the 512-pixel side of a non-square size; larger sources are scaled down, smaller kept."""
REDUCING_GAP = 3.0
JPEG_QUALITY = 92
"""High enough that the coding loss is below what the VAE reproduces, low enough to decode fast."""


@dataclass(frozen=True)
class StorePaths:
    """The three files of NAME's ready copy."""

    root: Path
    name: str

    @property
    def frames(self) -> Path:
        return self.root / READY / f"{self.name}.frames"

    @property
    def labels(self) -> Path:
        return self.root / READY / f"{self.name}.labels"

    @property
    def index(self) -> Path:
        return self.root / READY / f"{self.name}.json"


def stored_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """The size with its short side at most `short_side`, aspect kept."""
    if min(width, height) <= short_side:
        return width, height
    scale = short_side / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def file_stamp(path: Path) -> list[int]:
    """[size, mtime_ns]: what tells a file from another written at its place, without reading it."""
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


class StoreWriter:
    """Appends frames and renders (in any interleaving, each in order) to temporaries; `publish` makes them the
    ready copy, `abort` removes them. Nothing is visible under DATA/ready/ before `publish`."""

    def __init__(self, paths: StorePaths, short_side: int = DEFAULT_SHORT_SIDE) -> None:
        self.paths, self.short_side = paths, short_side
        paths.index.parent.mkdir(parents=True, exist_ok=True)
        self._temps = [_temp(paths.frames), _temp(paths.labels)]
        self._files = [open(t, "wb") for t in self._temps]
        self.offsets: tuple[list[int], list[int]] = ([0], [0])
        self.size: tuple[int, int] | None = None

    def write_frame(self, frame: np.ndarray) -> None:
        """Scaled with Lanczos after a box reduction to within three times the size (`reducing_gap`): as sharp
        to the eye, about twice as fast on a 1080x1920 frame."""
        width, height = self._size(frame)
        image = Image.fromarray(np.ascontiguousarray(frame))
        if image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.LANCZOS, reducing_gap=REDUCING_GAP)
        self._append(0, lambda out: image.save(out, "JPEG", quality=JPEG_QUALITY))

    def write_render(self, render: np.ndarray) -> None:
        """An RGB render (exact or lossy) becomes its part labels, scaled with nearest neighbour (labels stay
        labels)."""
        width, height = self._size(render)
        labels = Image.fromarray(nearest_labels(resize(render, width, height, "nearest")), "L")
        self._append(1, lambda out: labels.save(out, "PNG", compress_level=1))

    @property
    def frames_written(self) -> tuple[int, int]:
        return len(self.offsets[0]) - 1, len(self.offsets[1]) - 1

    def publish(self, fps: Fraction, pair: dict[str, list[int]]) -> None:
        """Both data files renamed into place, then the index written: a reader trusts only a complete copy."""
        frames, renders = self.frames_written
        if frames != renders or not frames:
            self.abort()
            raise InputError(f"{self.paths.index}: {frames} frames but {renders} renders; nothing written")
        for handle in self._files:
            handle.close()
        for temp, final in zip(self._temps, (self.paths.frames, self.paths.labels)):
            os.replace(temp, final)
        index = {"version": STORE_VERSION, "frames": frames, "width": self.size[0], "height": self.size[1],
                 "fps": f"{fps.numerator}/{fps.denominator}", "short_side": self.short_side,
                 "frame_offsets": self.offsets[0], "label_offsets": self.offsets[1], "pair": pair}
        temp = _temp(self.paths.index)
        temp.write_text(json.dumps(index), encoding="utf-8")
        os.replace(temp, self.paths.index)

    def abort(self) -> None:
        for handle, temp in zip(self._files, self._temps):
            handle.close()
            temp.unlink(missing_ok=True)

    def _size(self, picture: np.ndarray) -> tuple[int, int]:
        if self.size is None:
            self.size = stored_size(picture.shape[1], picture.shape[0], self.short_side)
        return self.size

    def _append(self, which: int, save) -> None:
        buffer = io.BytesIO()
        save(buffer)
        self._files[which].write(buffer.getvalue())
        self.offsets[which].append(self.offsets[which][-1] + buffer.tell())


def _temp(path: Path) -> Path:
    """A hidden temporary beside `path` (hidden names are never data, see layout._names)."""
    return path.with_name(f".{path.name}.{os.getpid()}.partial")


@dataclass(frozen=True)
class StoreIndex:
    """A ready copy's index, as read from NAME.json."""

    paths: StorePaths
    frames: int
    width: int
    height: int
    frame_offsets: tuple[int, ...]
    label_offsets: tuple[int, ...]
    pair: dict
    short_side: int = DEFAULT_SHORT_SIDE

    def problem(self, video: Path, render: Path) -> str | None:
        """Why this copy cannot be trusted for the pair (it was made from other files, or its own files were
        cut or replaced), or None; stat calls only."""
        for what, path in (("video", video), ("render", render)):
            if not path.is_file():
                return f"its {what} {path} is missing"
            if self.pair.get(what) != file_stamp(path):
                return (f"made from another {path.relative_to(self.paths.root)} (its size or time changed since); "
                        "make DATA ready again (`magicanimate prepare-data DATA --hand-laid`)")
        for path, offsets in ((self.paths.frames, self.frame_offsets), (self.paths.labels, self.label_offsets)):
            if not path.is_file() or path.stat().st_size != offsets[-1]:
                return f"{path.name} is missing or not the size the index records"
        return None


def read_index(paths: StorePaths) -> StoreIndex | None:
    """NAME's ready index, or None when there is none; an unreadable one is an error naming it."""
    if not paths.index.is_file():
        return None
    try:
        record = json.loads(paths.index.read_text(encoding="utf-8"))
        if record.get("version") != STORE_VERSION:
            raise ValueError(f"version {record.get('version')!r}, expected {STORE_VERSION}")
        index = StoreIndex(paths, int(record["frames"]), int(record["width"]), int(record["height"]),
                           tuple(record["frame_offsets"]), tuple(record["label_offsets"]), dict(record["pair"]),
                           int(record["short_side"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"{paths.index}: not a readable ready index ({' '.join(str(exc).split())})") from None
    if not len(index.frame_offsets) == len(index.label_offsets) == index.frames + 1:
        raise InputError(f"{paths.index}: offsets do not match its {index.frames} frames")
    return index


class StoreReader:
    """Reads frames and label maps of one ready copy by index; keeps its two files open."""

    def __init__(self, index: StoreIndex) -> None:
        self.index = index
        self._files = [open(index.paths.frames, "rb"), open(index.paths.labels, "rb")]

    def close(self) -> None:
        for handle in self._files:
            handle.close()

    def frame(self, i: int) -> np.ndarray:
        """uint8 RGB (H, W, 3)."""
        return self._decode(0, self.index.frame_offsets, i, "RGB")

    def labels(self, i: int) -> np.ndarray:
        """uint8 (H, W) part labels 0..24."""
        labels = self._decode(1, self.index.label_offsets, i, "L")
        if labels.max(initial=0) > PARTS:
            raise InputError(f"{self.index.paths.labels}: frame {i} holds a label above {PARTS}")
        return labels

    def _decode(self, which: int, offsets: tuple[int, ...], i: int, mode: str) -> np.ndarray:
        if not 0 <= i < self.index.frames:
            raise InputError(f"{self.index.paths.index}: frame {i} asked for, the copy holds {self.index.frames}")
        handle = self._files[which]
        handle.seek(offsets[i])
        data = handle.read(offsets[i + 1] - offsets[i])
        try:
            with Image.open(io.BytesIO(data)) as image:
                pixels = np.asarray(image.convert(mode) if image.mode != mode else image)
        except (OSError, ValueError) as exc:
            raise InputError(f"{handle.name}: frame {i} is damaged ({' '.join(str(exc).split())})") from None
        if pixels.shape[:2] != (self.index.height, self.index.width):
            raise InputError(f"{handle.name}: frame {i} is {pixels.shape[1]}x{pixels.shape[0]}, the index says "
                             f"{self.index.width}x{self.index.height}")
        return pixels
