"""One `fuse-long` run on one process: inputs streamed to disk, the process's share of every step, and (on the
writing process) the video decoded and encoded a batch at a time, checkpoints after every step.

Reading the inputs, writing the video and its sidecar are `animate`'s job code (`..job`); what differs is where
the motion frames live (a `FrameStore`, not an array) and how the latents are sampled.
"""

from __future__ import annotations

import time
from collections.abc import Container
from dataclasses import dataclass
from pathlib import Path

from ..animate.job import JobResult, PreparedInputs, compile_for_shape, prepare_inputs, write_sidecar, write_video
from ..animate.settings import AnimateSettings
from ..engine.sampler import SamplerConfig
from ..media.files import sidecar_path
from ..media.reader import open_motion
from ..runtime.progress import Reporter
from .checkpoint import CheckpointWriter, check_resumable, load_checkpoint
from .distributed import RankGroup
from .frames import FrameStore, source_index
from .layout import Layout
from .sampling import sample_long


@dataclass(frozen=True)
class LongRequest:
    """Everything a process of one run needs, decided once before any process starts (so it is picklable)."""

    settings: AnimateSettings  # with the seed already chosen
    reference: Path
    motion: Path
    output: Path
    fingerprint: dict[str, str]
    labels: dict[str, str]
    checkpoint: Path | None = None  # saved after every step
    resume: Path | None = None
    sidecar_extra: dict | None = None  # e.g. how the motion was rendered from a video
    transform: object | None = None  # --align's `align.Similarity`, fitted once before any process starts

    @property
    def config(self) -> SamplerConfig:
        return self.settings.sampler_config()


def open_long_inputs(settings: AnimateSettings, reference_path: Path, motion_path: Path, folder: Path,
                     keep: Container[int] | None, reporter: Reporter | None = None,
                     transform=None) -> PreparedInputs:
    """`job.prepare_inputs` with the fitted motion frames streamed into a `FrameStore` in `folder`."""
    return prepare_inputs(settings, reference_path, motion_path,
                          store=lambda frames, count: FrameStore.from_frames(frames, count, folder, keep),
                          reporter=reporter, transform=transform)


def frames_to_keep(layout: Layout, group: RankGroup | None, grid: bool) -> set[int] | None:
    """The motion frames this process reads: its windows' frames, and all of them where the grid is written."""
    if group is None or (group.writes and grid):
        return None
    return {source_index(f, layout.frames) for f in layout.frames_of(group.rank)}


def run_long_job(animator, request: LongRequest, reporter: Reporter, group: RankGroup | None = None,
                 load_seconds: float = 0.0, frames: int | None = None, sidecar: bool = True) -> JobResult | None:
    """Sample (this process's share) and, on the writing process, write the video and (unless told not to, as
    benchmarks on random weights do: there are no weight files to list) its sidecar.

    `frames` is the motion's selected frame count when the caller has probed it already.
    """
    settings, config = request.settings, request.config
    t0 = time.perf_counter()
    if frames is None:
        sel = settings.selection
        frames = len(open_motion(request.motion, start=sel.start, max_frames=sel.max_frames, stride=sel.stride))
    layout = Layout(frames, config, 1 if group is None else group.size)
    keep = frames_to_keep(layout, group, settings.grid)
    writes = group is None or group.writes
    inputs = open_long_inputs(settings, request.reference, request.motion, request.output.parent, keep,
                              reporter if writes else None,  # one warning per run, not one per process
                              request.transform)
    with inputs.motion:
        resume = None
        if request.resume is not None:
            resume = load_checkpoint(request.resume)
            height, width = inputs.reference.shape[:2]
            check_resumable(request.resume, resume, request.fingerprint, request.labels, settings.seed,
                            (1, 4, layout.padded, height // 8, width // 8))
        on_step = None
        if writes and request.checkpoint is not None:
            on_step = CheckpointWriter(request.checkpoint, settings.seed, request.fingerprint, request.labels)
        start = 0 if resume is None else resume.next_step
        share = len(layout.shares[0 if group is None else group.rank])
        compile_for_shape(animator, inputs.reference.shape, config, reporter)
        reporter.phase("denoise", (settings.steps - start) * share)
        t1 = time.perf_counter()
        latents = sample_long(animator, inputs.reference, inputs.motion.padded(layout.padded), config,
                              settings.seed, settings.noise, group=group, resume=resume, on_step=on_step,
                              on_window=reporter.advance)
        t2 = time.perf_counter()
        if not writes:
            return None
        reporter.phase("decode", frames)
        width, height = write_video(animator, latents[:, :, :frames], inputs, settings, request.output, reporter)
    t3 = time.perf_counter()
    timings = {"load_s": round(load_seconds, 3), "prepare_s": round(t1 - t0, 3), "sample_s": round(t2 - t1, 3),
               "decode_encode_s": round(t3 - t2, 3), "total_s": round(load_seconds + t3 - t0, 3)}
    result = JobResult(request.output, sidecar_path(request.output), frames, inputs.fps,
                       (width, height), settings.seed, timings)
    if sidecar:
        write_sidecar(result, animator, settings, inputs, request.sidecar_extra)
    return result
