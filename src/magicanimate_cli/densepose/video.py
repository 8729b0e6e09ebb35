"""A video's DensePose, frame by frame: decoded, detected, rendered and handed to writers one frame at a time.

The `pose` command, `--motion-from-video`, `--align-to` and `prepare-data` all render through this, so memory
stays flat however long the video, and a model failure names the frame of the source it happened on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..media.reader import FrameSelection, MotionClip, open_motion
from ..media.writer import FrameWriter
from ..runtime.progress import Reporter
from ..motion.palette import colourise
from ..motion.people import count_runs
from .model import PoseModel
from .render import render_labels
from .settings import PoseSettings
from .track import SteadyRenderer, frame_ranges


@dataclass
class PoseStats:
    """How many people the render shows: worth a glance when a clip comes out empty."""

    frames: int = 0
    frames_without_people: int = 0
    most_people: int = 0
    steadied: bool = False  # with --smooth, the record also says which frames were filled or are still empty
    filled_frames: list[int] = field(default_factory=list)
    empty_frames: list[int] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)  # people drawn on each frame

    def add(self, people: int, filled: int = 0) -> None:
        if people == 0:
            self.empty_frames.append(self.frames)
        if filled:
            self.filled_frames.append(self.frames)
        self.counts.append(people)
        self.frames += 1
        self.frames_without_people += people == 0
        self.most_people = max(self.most_people, people)

    def record(self) -> dict:
        record = {"frames": self.frames, "frames_without_people": self.frames_without_people,
                  "most_people_in_a_frame": self.most_people, "people_per_frame": count_runs(self.counts)}
        if self.steadied:
            record["frames_filled"] = len(self.filled_frames)
            record["filled_at"] = frame_ranges(self.filled_frames)
            record["without_people_at"] = frame_ranges(self.empty_frames)
        return record


def open_video(video: Path, selection: FrameSelection = FrameSelection()) -> MotionClip:
    """The input, read exactly as `animate` reads a motion (video file or frame folder)."""
    return open_motion(video, start=selection.start, max_frames=selection.max_frames, stride=selection.stride)


def render_video(model: PoseModel, settings: PoseSettings, clip: MotionClip, writers: Sequence[FrameWriter],
                 reporter: Reporter, transform=None, instances: FrameWriter | None = None) -> PoseStats:
    """Render every frame of `clip` into each writer; the caller closes (publishes) or aborts them.

    `transform` (an `align.Similarity`, or with several people a `people.PeopleAlignment`, from `--align-to`)
    moves every rendered frame before it is written. `instances`, if given, receives for every frame which person
    each pixel shows (`render.render_labels`'s owners, as grey levels 0, 1, 2, ...): the model's instances, for
    `--align` with several people."""
    stats = PoseStats()
    reporter.phase("pose", len(clip))
    if settings.smooth is not None:
        return _render_steady(model, settings, clip, writers, reporter, stats, transform, instances)

    def rendered():
        for index, frame in enumerate(clip):
            owners = np.zeros((clip.height, clip.width), np.uint8) if instances is not None else None
            labels, people = render_labels(model.detect(frame, _where(clip, index)), clip.width, clip.height,
                                           settings.min_score, settings.people, owners)
            stats.add(people)
            _write_owners(instances, owners)
            yield colourise(labels)

    for image in _placed(rendered(), transform):
        for writer in writers:
            writer.write(image)
        reporter.advance()
    return stats


def _write_owners(instances: FrameWriter | None, owners: np.ndarray | None) -> None:
    if instances is not None:
        instances.write(np.repeat(owners[..., None], 3, axis=2))


def _where(clip: MotionClip, index: int) -> str:
    """The frame a model failure names: its index in the source video."""
    return f"frame {clip.source_indices[index]} of {clip.path}"


def _placed(images, transform):
    """The rendered frames moved by `--align-to`'s transform (`align.Similarity` or, with several people,
    `people.PeopleAlignment`), or as they are."""
    if transform is None:
        return images
    from ..motion.palette import BACKGROUND

    return transform.moving(images, BACKGROUND)


def _render_steady(model: PoseModel, settings: PoseSettings, clip: MotionClip, writers: Sequence[FrameWriter],
                   reporter: Reporter, stats: PoseStats, transform=None,
                   instances: FrameWriter | None = None) -> PoseStats:
    """`--smooth`: each frame is written `look_ahead` frames after it is decoded (track.py)."""
    stats.steadied = True
    renderer = SteadyRenderer(settings.smooth, clip.width, clip.height, settings.min_score, settings.people,
                              owners=instances is not None)
    detections = (model.detect(frame, _where(clip, index)) for index, frame in enumerate(clip))

    def rendered():
        for steady in renderer.frames(detections):
            stats.add(steady.people, steady.filled)
            _write_owners(instances, steady.owners)
            yield colourise(steady.labels)

    for image in _placed(rendered(), transform):
        for writer in writers:
            writer.write(image)
        reporter.advance()
    return stats


def source_record(video: Path, clip: MotionClip) -> dict:
    """What a sidecar says about the video a render came from."""
    return {"video": str(video), "frames": len(clip), "width": clip.width, "height": clip.height,
            "fps": str(clip.fps), "start": clip.start, "stride": clip.stride}
