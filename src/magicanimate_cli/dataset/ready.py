"""Making pairs training-ready without DensePose: `prepare-data DATA --hand-laid`.

A DATA folder laid out by hand (videos/NAME.mp4 beside densepose/NAME.mp4, the documented layout) gets the same
ready copies (store.py) that `prepare-data` writes for the clips it renders: both videos are decoded once, side by
side, their frames checked to pair up, and the render snapped onto MagicAnimate's palette as part labels. A pair
whose ready copy is already up to date (made from these very files) is left alone, so the command can be run again
after adding pairs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..media.reader import open_motion
from ..runtime.errors import InputError
from ..runtime.progress import Reporter
from .layout import DataLayout
from .store import DEFAULT_SHORT_SIDE, StorePaths, StoreWriter, file_stamp, read_index


@dataclass
class ReadySummary:
    made: list[str] = field(default_factory=list)
    current: list[str] = field(default_factory=list)


def make_ready(layout: DataLayout, reporter: Reporter, short_side: int = DEFAULT_SHORT_SIDE) -> ReadySummary:
    """Write the ready copy of every video pair in DATA that lacks an up-to-date one; a bad pair is an error
    naming its file (the copies finished before it stay: each is complete on its own)."""
    names = layout.video_names()
    if not names:
        raise InputError(f"{layout.root}: no videos in {layout.root / 'videos'} (expected videos/NAME.mp4 with "
                         "densepose/NAME.mp4 beside them)")
    summary = ReadySummary()
    for number, name in enumerate(names, start=1):
        video, render = layout.video(name), layout.video_render(name)
        if not render.is_file():
            raise InputError(f"{render}: missing: videos/{name}.mp4 has no DensePose render")
        paths = StorePaths(layout.root, name)
        index = read_index(paths) if paths.index.is_file() else None
        if index is not None and index.problem(video, render) is None and index.short_side == short_side:
            summary.current.append(name)
            continue
        reporter.note(f"[{number}/{len(names)}] {name}: making it training-ready")
        write_pair(layout, name, short_side)
        summary.made.append(name)
    return summary


def write_pair(layout: DataLayout, name: str, short_side: int) -> None:
    """Decode the video and its render together and write their ready copy."""
    video, render = layout.video(name), layout.video_render(name)
    frames, drawn = open_motion(video), open_motion(render)
    if len(frames) != len(drawn):
        raise InputError(f"{render}: {len(drawn)} frames, but its video {video} has {len(frames)}")
    if (frames.width, frames.height) != (drawn.width, drawn.height):
        raise InputError(f"{render}: {drawn.width}x{drawn.height}, but its video {video} is "
                         f"{frames.width}x{frames.height}")
    writer = StoreWriter(StorePaths(layout.root, name), short_side)
    try:
        for frame, picture in zip(frames, drawn):
            writer.write_frame(frame)
            writer.write_render(picture)
        writer.publish(frames.fps, {"video": file_stamp(video), "render": file_stamp(render)})
    except BaseException:
        writer.abort()
        raise
