"""Reading and checking a DATA folder (layout.py) before any training starts.

Every pair is checked up front: a render whose frame count differs from its video, a missing or unreadable file,
an image whose render has another size are errors naming the file, found before the first step rather than
mid-training (Moore-AnimateAnyone asserts inside `__getitem__`). Frames are then read on demand.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..runtime.errors import InputError
from ..media.reader import MotionClip, load_reference, probe_motion
from .layout import DataLayout


@dataclass(frozen=True)
class DataContents:
    """What a checked DATA folder holds: videos with their frame counts, images, and a fingerprint of both."""

    videos: tuple[tuple[str, int], ...]
    images: tuple[str, ...]
    fingerprint: str


class DataFolder:
    """A DATA folder: `check()` once, then `video_frames` / `image` read what a training step asks for."""

    def __init__(self, root: Path) -> None:
        self.layout = DataLayout(Path(root))
        self._info: dict[str, tuple] = {}

    def check(self) -> DataContents:
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
            video, render = self.layout.video(name), self.layout.video_render(name)
            if not render.is_file():
                raise InputError(f"{render}: missing: videos/{name}.mp4 has no DensePose render")
            v, r = probe_motion(video), probe_motion(render)
            if v.frame_count != r.frame_count:
                raise InputError(f"{render}: {r.frame_count} frames, but its video {video} has {v.frame_count}")
            self._info[name] = (v, r)
            videos.append((name, v.frame_count))
            digest.update(f"v {name} {v.frame_count} {video.stat().st_size} {render.stat().st_size}\n".encode())
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
        return DataContents(tuple(videos), tuple(images), digest.hexdigest()[:16])

    def video_frames(self, name: str, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Frames `indices` of a video and of its render: two uint8 (n, H, W, 3) arrays."""
        if name not in self._info:
            self._info[name] = (probe_motion(self.layout.video(name)), probe_motion(self.layout.video_render(name)))
        lo, hi = min(indices), max(indices)
        picks = [i - lo for i in indices]
        return tuple(MotionClip(info, start=lo, max_frames=hi - lo + 1).read_all()[picks]  # type: ignore[return-value]
                     for info in self._info[name])

    def image(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """An image and its render, uint8 (H, W, 3) each, the same size."""
        image, render = self.layout.image(name), self.layout.image_render(name)
        pixels, drawn = load_reference(image), load_reference(render)
        if pixels.shape != drawn.shape:
            raise InputError(f"{render}: {drawn.shape[1]}x{drawn.shape[0]}, but its image {image} is "
                             f"{pixels.shape[1]}x{pixels.shape[0]}")
        return pixels, drawn


def _size(path: Path) -> tuple[int, int]:
    """(width, height) from the file's header."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, UnidentifiedImageError) as exc:
        raise InputError(f"{path}: not a readable image ({' '.join(str(exc).split())})") from None
