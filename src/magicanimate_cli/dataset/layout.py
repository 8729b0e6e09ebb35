"""The DATA folder that `prepare-data` writes and `train` reads (users may also bring renders of their own).

```
DATA/videos/NAME.mp4              a clip of a person (any size and rate)
DATA/densepose/NAME.mp4           its DensePose render, frame for frame (same count)
DATA/images/NAME.png              a photo of a person, for image-video joint training (optional)
DATA/images_densepose/NAME.png    its DensePose render (same size)
DATA/ready/NAME.{frames,labels,json}  the pair's training-ready copy (store.py; optional: `train` reads the
                                  videos without one, only slower)
DATA/manifest.json                what prepare-data wrote and skipped (optional for hand-made folders)
```
NAME may contain `/` (sources nested in folders keep their relative path, with `/` kept as sub-folders).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

VIDEOS = "videos"
DENSEPOSE = "densepose"
IMAGES = "images"
IMAGES_DENSEPOSE = "images_densepose"
MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
"""manifest.json: {"version": 1, "videos": [{"name", "frames", "fps" ("num/den"), "width", "height",
"person_frames"}], "images": [{"name", "width", "height"}], "skipped": [{"source", "reason"}]}."""

VIDEO_SUFFIX = ".mp4"
IMAGE_SUFFIX = ".png"


@dataclass(frozen=True)
class DataLayout:
    """Where each file of a DATA folder lives; pure paths, nothing is read."""

    root: Path

    def video(self, name: str) -> Path:
        return self.root / VIDEOS / f"{name}{VIDEO_SUFFIX}"

    def video_render(self, name: str) -> Path:
        return self.root / DENSEPOSE / f"{name}{VIDEO_SUFFIX}"

    def image(self, name: str) -> Path:
        return self.root / IMAGES / f"{name}{IMAGE_SUFFIX}"

    def image_render(self, name: str) -> Path:
        return self.root / IMAGES_DENSEPOSE / f"{name}{IMAGE_SUFFIX}"

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST

    def video_names(self) -> list[str]:
        """Every NAME under videos/, sorted, nested ones as `sub/name`."""
        return _names(self.root / VIDEOS, VIDEO_SUFFIX)

    def image_names(self) -> list[str]:
        return _names(self.root / IMAGES, IMAGE_SUFFIX)


def _names(folder: Path, suffix: str) -> list[str]:
    """Hidden files and folders are not data: the writers' temporaries (`.NAME.mp4.*.partial.mp4`, left behind
    by a run that was killed, or being written by one still running) end in the same suffix."""
    if not folder.is_dir():
        return []
    return sorted(p.relative_to(folder).with_suffix("").as_posix() for p in folder.rglob(f"*{suffix}")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))
