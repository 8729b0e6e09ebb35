"""One pose render: a video (or frame folder) in, its DensePose render out, frame by frame.

Frames are decoded, detected, rendered and encoded one at a time, so memory stays flat however long the video.
The render has the input's frame count, size and rate; it is written through the project's atomic writers (a
failure or Ctrl-C leaves no partial file) and gets a JSON sidecar.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from .. import __version__
from ..media.files import check_output_writable, sidecar_path
from ..media.reader import FrameSelection
from ..media.writer import open_writer
from ..densepose.model import PoseModel
from ..densepose.settings import PoseSettings
from ..densepose.video import PoseStats, open_video, render_video, source_record
from ..runtime.atomic import write_json_atomic
from ..runtime.progress import Reporter
from ..runtime.versions import runtime_versions


@dataclass
class PoseResult:
    output: Path
    sidecar: Path
    fps: Fraction
    size: tuple[int, int]
    stats: PoseStats
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict:
        return {"output": str(self.output), "sidecar": str(self.sidecar), "frames": self.stats.frames,
                "fps": str(self.fps), "width": self.size[0], "height": self.size[1],
                "frames_without_people": self.stats.frames_without_people, "timings": self.timings}



def run_pose_job(model: PoseModel, settings: PoseSettings, video: Path, output: Path, reporter: Reporter,
                 load_seconds: float = 0.0, selection: FrameSelection = FrameSelection(), transform=None,
                 alignment: dict | None = None, extra: dict | None = None) -> PoseResult:
    """Render the `selection` of `video`'s frames into `output` (mp4/webm/gif or a PNG folder) at the selection's
    rate (the source rate divided by the stride), and write its sidecar; `transform` and its `alignment` record
    come from `--align-to`; `extra` adds sidecar sections (`--shard auto`'s resolved share)."""
    started = time.perf_counter()
    check_output_writable(output)
    clip = open_video(video, selection)
    with ExitStack() as stack:
        writer = stack.enter_context(open_writer(output, clip.fps, clip.width, clip.height, settings.crf))
        stats = render_video(model, settings, clip, [writer], reporter, transform)
    seconds = time.perf_counter() - started
    timings = {"load_s": round(load_seconds, 3), "render_s": round(seconds, 3),
               "frames_per_s": round(stats.frames / seconds, 3) if seconds > 0 else None,
               "total_s": round(load_seconds + seconds, 3)}
    result = PoseResult(output, sidecar_path(output), clip.fps, (clip.width, clip.height), stats, timings)
    write_json_atomic(result.sidecar, {
        "magicanimate_cli": __version__,
        "settings": settings.record(),
        "inputs": source_record(video, clip),
        "output": {"path": str(output), "frames": stats.frames, "fps": str(clip.fps), "width": clip.width,
                   "height": clip.height},
        "model": model.describe(),
        "people": stats.record(),
        "versions": runtime_versions(),
        "timings": timings,
        **({"alignment": alignment} if alignment is not None else {}),
        **(extra or {}),
    })
    return result


