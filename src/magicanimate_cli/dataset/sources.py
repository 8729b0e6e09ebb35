"""What `prepare-data` finds in a SOURCE folder: clips (video files and frame folders, at any depth) and photos.

Each source gets the NAME it keeps in DATA: its path below SOURCE without the suffix, so nested folders stay
nested (`dance/a.mp4` → `dance/a`). A folder that holds frame images is one clip and is not searched further.
The TikTok dataset's layout, `<id>/images/*.png` beside `<id>/masks/` and `<id>/densepose/`, is one clip named
`<id>`: its `images/` folder is the clip and its other folders are not clips of their own. Two sources that would
get the same NAME (`a.mp4` beside `a.mov`) cannot both be kept: the first in natural order is, the others are
listed as collisions (the caller skips them with that reason).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..media.files import IMAGE_SUFFIXES, MOTION_SUFFIXES
from ..media.reader import list_frame_files, natural_sort_key
from ..runtime.errors import InputError

TIKTOK_FRAMES = "images"
"""The frame sub-folder of a TikTok-dataset clip (`<id>/images/0001.png`)."""


@dataclass(frozen=True)
class Source:
    """One clip or photo to prepare: where it is and the NAME it gets in DATA."""

    name: str
    path: Path


@dataclass
class Listing:
    """The sources of one kind, in natural order, and those left out because their NAME was taken."""

    sources: list[Source] = field(default_factory=list)
    collisions: list[tuple[Path, str]] = field(default_factory=list)  # (source, NAME it would have had)

    def add(self, source: Source, taken: dict[str, Path]) -> None:
        if source.name in taken:
            self.collisions.append((source.path, source.name))
        else:
            taken[source.name] = source.path
            self.sources.append(source)


def list_clips(root: Path, exclude: tuple[Path, ...] = ()) -> Listing:
    """Every clip under `root`: a video file is one, a frame folder is one (TikTok's `<id>/images` as `<id>`).

    `root` may itself be one clip (a video, a frame folder, a TikTok `<id>` folder); it is then named after
    itself. `exclude` (the DATA folder and the photos folder, when they lie inside SOURCE) is not searched, so a
    second run does not take its own output as input, nor a folder of photos as a clip."""
    if not root.exists():
        raise InputError(f"{root}: source folder not found")
    listing, taken = Listing(), {}
    if root.is_file() or _frame_folder(root):
        listing.add(Source(root.stem if root.is_file() else root.name, root), taken)
        return listing
    if _frame_folder(root / TIKTOK_FRAMES):
        listing.add(Source(root.resolve().name, root / TIKTOK_FRAMES), taken)
        return listing
    for path, name in _walk_clips(root, root, _resolved(exclude)):
        listing.add(Source(name, path), taken)
    return listing


def list_images(root: Path, exclude: tuple[Path, ...] = ()) -> Listing:
    """Every photo under `root`, at any depth, NAME = its path below `root` without the suffix."""
    if not root.is_dir():
        raise InputError(f"{root}: --images folder not found")
    listing, taken = Listing(), {}
    for path in _sorted_tree(root, _resolved(exclude)):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            listing.add(Source(_name(path, root), path), taken)
    return listing


def _walk_clips(folder: Path, root: Path, exclude: tuple[Path, ...]):
    """(path, NAME) of the clips below `folder`, depth first in natural order."""
    for entry in _entries(folder, exclude):
        if entry.is_file():
            if entry.suffix.lower() in MOTION_SUFFIXES:
                yield entry, _name(entry, root)
        elif _frame_folder(entry):
            yield entry, _name(entry, root)
        elif _frame_folder(entry / TIKTOK_FRAMES):
            yield entry / TIKTOK_FRAMES, entry.relative_to(root).as_posix()
        else:
            yield from _walk_clips(entry, root, exclude)


def _entries(folder: Path, exclude: tuple[Path, ...]) -> list[Path]:
    """The visible entries of a folder in natural order (hidden ones, like writers' temporaries, are not sources)."""
    try:
        entries = [e for e in folder.iterdir() if not e.name.startswith(".") and e.resolve() not in exclude]
    except OSError as exc:
        raise InputError(f"{folder}: cannot list the folder ({' '.join(str(exc).split())})") from None
    return sorted(entries, key=lambda e: natural_sort_key(e.name))


def _sorted_tree(root: Path, exclude: tuple[Path, ...]) -> list[Path]:
    found: list[Path] = []
    for entry in _entries(root, exclude):
        found.extend(_sorted_tree(entry, exclude) if entry.is_dir() else [entry])
    return found


def _resolved(paths: tuple[Path, ...]) -> tuple[Path, ...]:
    return tuple(path.resolve() for path in paths)


def _frame_folder(path: Path) -> bool:
    return path.is_dir() and bool(list_frame_files(path))


def _name(path: Path, root: Path) -> str:
    return path.relative_to(root).with_suffix("").as_posix() if path.is_file() else path.relative_to(root).as_posix()
