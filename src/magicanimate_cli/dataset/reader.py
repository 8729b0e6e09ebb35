"""Reading and checking a DATA folder (layout.py) before any training starts.

The check grows with the number of files, not of frames: a pair with a ready copy (store.py, written by
`prepare-data` after it decoded and checked every frame) is trusted when the copy's index records the size and
mtime the pair's files have now (stat calls and one small JSON); a hand-laid pair without one is checked from its
containers' headers (both files there, frame counts and sizes declared and equal). A full decode of every frame is
`prepare-data`'s job, or `check(verify=True)` (`train --verify-data`). Problems are errors naming the file, found
before the first step rather than mid-training (Moore-AnimateAnyone asserts inside `__getitem__`).

Frames are then read on demand, only those a sample needs: from the ready copy (one JPEG and one label PNG per
frame, no seek), else by seeking in the videos (media/seek.py). Open files are kept per process, so a DataLoader
worker opens its own and never shares a decoder with its parent.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..media.reader import load_reference, probe_motion
from ..media.seek import SeekableVideo, read_header
from ..motion.palette import nearest_labels
from ..runtime.errors import InputError
from .layout import DataLayout
from .store import StoreIndex, StorePaths, StoreReader, read_index


@dataclass(frozen=True)
class DataContents:
    """What a checked DATA folder holds: videos with their frame counts, images, and a fingerprint of both."""

    videos: tuple[tuple[str, int], ...]
    images: tuple[str, ...]
    fingerprint: str
    ready: tuple[str, ...] = ()  # the videos read from their ready copy


MAX_OPEN = 16
"""Ready copies (two files each) and videos (a decoder each, tens of MB at 1080x1920) a process keeps open: the
most recently read, so that a clip's next sample reuses them while memory and file descriptors stay bounded
however many clips DATA holds."""


@dataclass
class _Open:
    """The files one process holds open, least recently used first (a process that forks leaves them to the
    parent: `pid` tells whose they are; train's workers are spawned and start with none)."""

    pid: int
    stores: OrderedDict[str, StoreReader] = field(default_factory=OrderedDict)
    videos: OrderedDict[Path, SeekableVideo] = field(default_factory=OrderedDict)


def _kept_open(handles: OrderedDict, key, paths: tuple[Path, ...], opener):
    """`handles[key]`, opened if needed, or again when a file at `paths` is no longer the one held open (replaced
    or removed during the run: an error naming it, as if it had never been open); the least recently used handle
    is closed beyond MAX_OPEN. One stat per file and read."""
    stamps = tuple(_stamp(path) for path in paths)
    held = handles.pop(key, None)
    if held is not None and held[0] != stamps:
        held[1].close()
        held = None
    handles[key] = held if held is not None else (stamps, opener())
    while len(handles) > MAX_OPEN:
        handles.popitem(last=False)[1][1].close()
    return handles[key][1]


def _stamp(path: Path) -> tuple[int, int, int]:
    try:
        stat = path.stat()
    except OSError:
        raise InputError(f"{path}: file not found (removed while training?)") from None
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


class DataFolder:
    """A DATA folder: `check()` once, then `video_sample` / `image` read what a training step asks for."""

    def __init__(self, root: Path) -> None:
        self.layout = DataLayout(Path(root))
        self._ready: dict[str, StoreIndex] = {}
        self._open = _Open(os.getpid())

    def __getstate__(self) -> dict:
        """Pickled (a spawned worker): paths and indices travel, open files do not."""
        return {**self.__dict__, "_open": _Open(-1)}

    def check(self, verify: bool = False) -> DataContents:
        """Check every pair; the folder's contents, or an InputError naming the first bad file."""
        root = self.layout.root
        if not root.is_dir():
            raise InputError(f"{root}: DATA folder not found")
        names = self.layout.video_names()
        if not names:
            raise InputError(f"{root}: no videos in {root / 'videos'} (expected videos/NAME.mp4 with "
                             "densepose/NAME.mp4 beside them; see `magicanimate prepare-data`)")
        digest = hashlib.sha256()
        videos = []
        for name in names:
            count = self._check_pair(name, verify)
            videos.append((name, count))
            video, render = self.layout.video(name), self.layout.video_render(name)
            digest.update(f"v {name} {count} {video.stat().st_size} {render.stat().st_size}\n".encode())
        images = []
        for name in self.layout.image_names():
            image, render = self.layout.image(name), self.layout.image_render(name)
            if not render.is_file():
                raise InputError(f"{render}: missing: images/{name}.png has no DensePose render")
            if _size(image) != _size(render):
                raise InputError(f"{render}: {_size(render)[0]}x{_size(render)[1]}, but its image {image} is "
                                 f"{_size(image)[0]}x{_size(image)[1]}")
            digest.update(f"i {name} {image.stat().st_size} {render.stat().st_size}\n".encode())
            images.append(name)
        return DataContents(tuple(videos), tuple(images), digest.hexdigest()[:16], tuple(sorted(self._ready)))

    def use(self, contents: DataContents) -> None:
        """Read as a check by another process found DATA (startup.check_once): the ready copies' indices."""
        self._ready = {name: index for name in contents.ready
                       if (index := read_index(StorePaths(self.layout.root, name))) is not None}

    def _check_pair(self, name: str, verify: bool) -> int:
        """The pair's frame count: from its ready copy when that is current, else from the headers (or, with
        `verify`, from decoding both files whole)."""
        video, render = self.layout.video(name), self.layout.video_render(name)
        if not render.is_file():
            raise InputError(f"{render}: missing: videos/{name}.mp4 has no DensePose render")
        index = read_index(StorePaths(self.layout.root, name))
        if index is not None:
            problem = index.problem(video, render)
            if problem is not None:
                raise InputError(f"{index.paths.index}: {problem}")
            self._ready[name] = index
        if verify:
            v, r = probe_motion(video), probe_motion(render)
            if index is not None:
                _verify_store(index)
            return _paired(video, render, (v.frame_count, v.width, v.height), (r.frame_count, r.width, r.height),
                           index)
        if index is not None:
            return index.frames
        v, r = read_header(video), read_header(render)
        if not (v.frames and r.frames):  # the container does not say: count by decoding (no RGB conversion)
            pv, pr = probe_motion(video), probe_motion(render)
            return _paired(video, render, (pv.frame_count, pv.width, pv.height),
                           (pr.frame_count, pr.width, pr.height), None)
        return _paired(video, render, (v.frames, v.width, v.height), (r.frames, r.width, r.height), None)

    def video_sample(self, name: str, frames: Sequence[int], reference: int
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The sample's target frames (n, H, W, 3), their part labels (n, H, W) and the reference frame (H, W, 3);
        only these frames are read, and the reference's render not at all."""
        index = self._ready.get(name)
        if index is not None:
            store = self._store(name, index)
            pixels = np.stack([store.frame(i) for i in frames])
            labels = np.stack([store.labels(i) for i in frames])
            return pixels, labels, store.frame(reference)
        video = self._video(self.layout.video(name))
        render = self._video(self.layout.video_render(name))
        pixels = video.frames([*frames, reference])
        labels = np.stack([nearest_labels(x) for x in render.frames(frames)])
        return np.stack(pixels[:-1]), labels, pixels[-1]

    def image(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """An image (H, W, 3) and its render's part labels (H, W), the same size."""
        image, render = self.layout.image(name), self.layout.image_render(name)
        pixels, drawn = load_reference(image), load_reference(render)
        if pixels.shape != drawn.shape:
            raise InputError(f"{render}: {drawn.shape[1]}x{drawn.shape[0]}, but its image {image} is "
                             f"{pixels.shape[1]}x{pixels.shape[0]}")
        return pixels, nearest_labels(drawn)

    def close(self) -> None:
        """Close the files this process holds open (reads after it open them again)."""
        handles = self._handles()
        for held in (*handles.stores.values(), *handles.videos.values()):
            held[1].close()
        self._open = _Open(os.getpid())

    def _handles(self) -> _Open:
        if self._open.pid != os.getpid():
            self._open = _Open(os.getpid())
        return self._open

    def _store(self, name: str, index: StoreIndex) -> StoreReader:
        return _kept_open(self._handles().stores, name, (index.paths.frames, index.paths.labels),
                          lambda: StoreReader(index))

    def _video(self, path: Path) -> SeekableVideo:
        return _kept_open(self._handles().videos, path, (path,), lambda: SeekableVideo(path))


def _paired(video: Path, render: Path, v: tuple[int, int, int], r: tuple[int, int, int],
            index: StoreIndex | None) -> int:
    """The pair's frame count once (count, width, height) of both agree (and with the ready copy's count)."""
    if v[0] != r[0]:
        raise InputError(f"{render}: {r[0]} frames, but its video {video} has {v[0]}")
    if v[1:] != r[1:]:
        raise InputError(f"{render}: {r[1]}x{r[2]}, but its video {video} is {v[1]}x{v[2]}")
    if index is not None and index.frames != v[0]:
        raise InputError(f"{index.paths.index}: {index.frames} frames, but {video} has {v[0]}")
    return v[0]


def _verify_store(index: StoreIndex) -> None:
    """Decode every frame and label map of a ready copy (a damaged one is an error naming it)."""
    reader = StoreReader(index)
    try:
        for i in range(index.frames):
            reader.frame(i)
            reader.labels(i)
    finally:
        reader.close()


def _size(path: Path) -> tuple[int, int]:
    """(width, height) from the file's header."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, UnidentifiedImageError) as exc:
        raise InputError(f"{path}: not a readable image ({' '.join(str(exc).split())})") from None
