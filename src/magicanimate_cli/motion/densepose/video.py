"""A video's DensePose, frame by frame: decoded, detected, rendered and handed to writers one frame at a time.

The `pose` command, `--motion-from-video`, `--align-to` and `prepare-data` all render through this, so memory
stays flat however long the video, and a model failure names the frame of the source it happened on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ...media.reader import FrameSelection, MotionClip, open_motion
from ...media.writer import FrameWriter
from ...runtime.progress import Reporter
from ..palette import colourise
from .model import PoseModel
from .render import render_frame
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

    def add(self, people: int, filled: int = 0) -> None:
        if people == 0:
            self.empty_frames.append(self.frames)
        if filled:
            self.filled_frames.append(self.frames)
        self.frames += 1
        self.frames_without_people += people == 0
        self.most_people = max(self.most_people, people)

    def record(self) -> dict:
        record = {"frames": self.frames, "frames_without_people": self.frames_without_people,
                  "most_people_in_a_frame": self.most_people}
        if self.steadied:
            record["frames_filled"] = len(self.filled_frames)
            record["filled_at"] = frame_ranges(self.filled_frames)
            record["without_people_at"] = frame_ranges(self.empty_frames)
        return record


def open_video(video: Path, selection: FrameSelection = FrameSelection()) -> MotionClip:
    """The input, read exactly as `animate` reads a motion (video file or frame folder)."""
    return open_motion(video, start=selection.start, max_frames=selection.max_frames, stride=selection.stride)


def render_video(model: PoseModel, settings: PoseSettings, clip: MotionClip, writers: Sequence[FrameWriter],
                 reporter: Reporter, transform=None) -> PoseStats:
    """Render every frame of `clip` into each writer; the caller closes (publishes) or aborts them.

    `transform` (an `align.Similarity`, from `--align-to`) moves every rendered frame before it is written."""
    stats = PoseStats()
    reporter.phase("pose", len(clip))
    if settings.smooth is not None:
        return _render_steady(model, settings, clip, writers, reporter, stats, transform)
    for index, frame in enumerate(clip):
        image, people = render_frame(model.detect(frame, _where(clip, index)), clip.width, clip.height,
                                     settings.min_score, settings.people)
        image = _placed(image, transform)
        for writer in writers:
            writer.write(image)
        stats.add(people)
        reporter.advance()
    return stats


def _where(clip: MotionClip, index: int) -> str:
    """The frame a model failure names: its index in the source video."""
    return f"frame {clip.source_indices[index]} of {clip.path}"


def _placed(image, transform):
    """The rendered frame moved by `--align-to`'s transform (or as it is)."""
    if transform is None:
        return image
    from ..align import apply_similarity
    from ..palette import BACKGROUND

    return apply_similarity(image, transform, BACKGROUND)


def _render_steady(model: PoseModel, settings: PoseSettings, clip: MotionClip, writers: Sequence[FrameWriter],
                   reporter: Reporter, stats: PoseStats, transform=None) -> PoseStats:
    """`--smooth`: each frame is written `look_ahead` frames after it is decoded (track.py)."""
    stats.steadied = True
    renderer = SteadyRenderer(settings.smooth, clip.width, clip.height, settings.min_score, settings.people)
    detections = (model.detect(frame, _where(clip, index)) for index, frame in enumerate(clip))
    for steady in renderer.frames(detections):
        image = _placed(colourise(steady.labels), transform)
        for writer in writers:
            writer.write(image)
        stats.add(steady.people, steady.filled)
        reporter.advance()
    return stats


def source_record(video: Path, clip: MotionClip) -> dict:
    """What a sidecar says about the video a render came from."""
    return {"video": str(video), "frames": len(clip), "width": clip.width, "height": clip.height,
            "fps": str(clip.fps), "start": clip.start, "stride": clip.stride}
