"""`--motion-from-video`: render an ordinary video to DensePose first, then animate along the render.

The render goes, frame by frame, into a temporary folder of PNG frames beside the output (lossless, so the
part colours reach the ControlNet exactly; on disk, so memory does not grow with the video), with the rate in
its `frames.json`. `animate` and `fuse-long` then read that folder as their motion through their usual code.
The folder is removed when the run ends, however it ends. `--save-pose PATH` also writes the render to PATH in
the same pass, through the same atomic writers as every output.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from ..media.reader import FrameSelection
from ..media.writer import open_writer
from ..densepose.model import PoseModel
from ..densepose.settings import PoseSettings
from ..densepose.video import open_video, render_video, source_record
from ..runtime.errors import OutputError
from ..runtime.progress import Reporter
from .settings import AnimateSettings


INSTANCES = "instances"
"""Beside the render's frames: which person each pixel shows, frame by frame (grey levels 0, 1, 2, ...)."""


def instance_maps(frames: Path) -> Path | None:
    """The model's instances of a render this module made (`motion_from_video`), or None for any other motion:
    `--align` with several people then takes each frame's people from them rather than from the labels."""
    folder = frames.parent / INSTANCES
    return folder if frames.name == "frames" and frames.parent.suffix == ".pose" and folder.is_dir() else None


@dataclass(frozen=True)
class RenderedMotion:
    """The render to animate along, and what the animation's sidecar says about it."""

    frames: Path  # a PNG frame folder that `open_motion` reads at the video's rate
    record: dict


@contextmanager
def motion_from_video(model: PoseModel, settings: PoseSettings, video: Path, selection: FrameSelection,
                      folder: Path, save: Path | None, reporter: Reporter) -> Iterator[RenderedMotion]:
    """Render the selected frames of `video` into a temporary PNG folder inside `folder`; removed on exit.

    The frame selection is applied here, so the render holds exactly the frames to animate, at the rate of
    the selection (the source rate divided by the stride); the animation reads all of it.
    """
    started = time.perf_counter()
    clip = open_video(video, selection)
    try:
        scratch = Path(tempfile.mkdtemp(dir=folder, prefix=f".{video.name}.", suffix=".pose"))
    except OSError as exc:
        raise OutputError(f"{folder}: cannot write the pose render there ({exc.strerror or exc})") from None
    try:
        frames = scratch / "frames"
        with ExitStack() as stack:  # an error aborts both writers: no partial --save-pose file
            writers = [stack.enter_context(open_writer(frames, clip.fps, clip.width, clip.height))]
            if save is not None:
                writers.append(stack.enter_context(open_writer(save, clip.fps, clip.width, clip.height,
                                                               settings.crf)))
            instances = stack.enter_context(open_writer(scratch / INSTANCES, clip.fps, clip.width, clip.height))
            stats = render_video(model, settings, clip, writers, reporter, instances=instances)
        record = {**source_record(video, clip), "saved": None if save is None else str(save),
                  "settings": settings.record(), "model": model.describe(), "people": stats.record(),
                  "render_s": round(time.perf_counter() - started, 3)}
        yield RenderedMotion(frames, record)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@dataclass(frozen=True)
class PoseRequest:
    """`--motion-from-video` as asked on the command line: how to render, and where to keep the render."""

    settings: PoseSettings
    save: Path | None = None


@contextmanager
def animation_motion(model: PoseModel | None, request: PoseRequest | None, settings: AnimateSettings,
                     motion: Path, output: Path,
                     reporter: Reporter) -> Iterator[tuple[Path, AnimateSettings, dict | None]]:
    """(motion to read, settings to read it with, sidecar section) for one animation.

    Without a request the motion is used as given. With one, the video is rendered first; the render already
    holds just the selected frames, so the animation reads all of it at its own rate.
    """
    if request is None or model is None:
        yield motion, settings, None
        return
    with motion_from_video(model, request.settings, motion, settings.selection, output.parent, request.save,
                           reporter) as rendered:
        extra = {"inputs": {"motion": str(motion)}, "motion_from_video": rendered.record}
        yield rendered.frames, replace(settings, selection=FrameSelection()), extra
