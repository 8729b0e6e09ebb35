"""One animation: files in, a video (and its sidecar) out.

CLI → settings → this job → `Animator` (engine) → writer. The output is written through a temporary and
renamed at the end, so an error or Ctrl-C never leaves a partial file.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from fractions import Fraction
from itertools import chain
from pathlib import Path

import numpy as np

from .. import __version__
from ..media.files import check_output_writable, grid_path, sidecar_path
from ..media.reader import load_reference, open_motion
from ..motion.fit import fit_motion_frame, fit_reference, plan_fit, restore, working_shape
from ..motion.palette import BACKGROUND, background_colour, looks_like_render
from ..runtime.progress import Reporter
from ..runtime.testhooks import pause_point
from ..runtime.versions import runtime_versions
from .settings import AnimateSettings


@dataclass
class JobResult:
    output: Path
    sidecar: Path
    frames: int
    fps: Fraction
    size: tuple[int, int]
    seed: int
    timings: dict[str, float]

    def summary(self) -> dict:
        return {"output": str(self.output), "sidecar": str(self.sidecar), "frames": self.frames,
                "fps": str(self.fps), "width": self.size[0], "height": self.size[1], "seed": self.seed,
                "timings": self.timings}



def pick_seed(settings: AnimateSettings) -> AnimateSettings:
    """A run without --seed gets a random one, recorded so it can be repeated."""
    if settings.seed is not None:
        return settings
    return replace(settings, seed=secrets.randbelow(2**31))


@dataclass
class PreparedInputs:
    reference: np.ndarray  # working-size uint8 (H, W, 3)
    motion: np.ndarray  # working-size uint8 (N, H, W, 3)
    fit: object
    fps: Fraction
    source: dict
    raw: dict[int, np.ndarray] = field(default_factory=dict)  # frames asked for as the file holds them

    def moved(self, transform) -> PreparedInputs:
        """These inputs with `transform` (--align's) applied to every motion frame, as `prepare_inputs` applies
        it: a run reuses the frames its preflight decoded."""
        if transform is None:
            return self
        motion = np.stack(list(transform.moving(self.motion, self.fit.background)))
        return replace(self, motion=motion, raw={})


def stack_frames(frames: Iterator[np.ndarray], count: int) -> np.ndarray:
    """The default home of fitted motion frames: one array in memory."""
    return np.stack(list(frames))


def prepare_inputs(settings: AnimateSettings, reference_path: Path, motion_path: Path,
                   store: Callable[[Iterator[np.ndarray], int], Sequence] = stack_frames,
                   reporter: Reporter | None = None, transform=None,
                   raw_frames: Collection[int] = ()) -> PreparedInputs:
    """Read both inputs and bring them to the working shape (see geometry for pad/crop/stretch).

    `store` receives the fitted motion frames as a stream and keeps them (fuse-long keeps them on disk).
    `reporter`, if given, hears a warning when the motion does not look like a DensePose render.
    `transform` (from --align: an `align.Similarity`, or a `people.PeopleAlignment` that moves each person by
    its own) moves every fitted frame; None leaves them as they are. The frames at `raw_frames` are also kept
    as the file holds them (`--align` measures the motion's people there, at the render's own resolution).
    """
    reference = load_reference(reference_path)
    sel = settings.selection
    clip = open_motion(motion_path, start=sel.start, max_frames=sel.max_frames, stride=sel.stride)
    work_w, work_h = working_shape(clip.width, clip.height, settings.size, settings.width, settings.height)
    frames = iter(clip)
    first = next(frames)
    background, format_record = motion_format(first, motion_path, reporter)
    fit = plan_fit(clip.width, clip.height, work_w, work_h, settings.fit, background)
    raw: dict[int, np.ndarray] = {}

    def fitted_frames() -> Iterator[np.ndarray]:
        for index, frame in enumerate(chain([first], frames)):
            if index in raw_frames:
                raw[index] = frame
            yield fit_motion_frame(frame, fit)

    fitted = fitted_frames()
    if transform is not None:
        fitted = transform.moving(fitted, fit.background)
    motion = store(fitted, len(clip))
    fps = settings.fps if settings.fps is not None else clip.fps
    source = {"reference": str(reference_path), "reference_size": [reference.shape[1], reference.shape[0]],
              "motion": str(motion_path), "motion_frames": len(clip), "motion_size": [clip.width, clip.height],
              "motion_fps": str(clip.fps), "working_size": [work_w, work_h], "fit": fit.to_dict(),
              "motion_format": format_record}
    return PreparedInputs(fit_reference(reference, work_w, work_h, settings.fit), motion, fit, fps, source, raw)


def motion_format(first: np.ndarray, motion_path: Path,
                  reporter: Reporter | None) -> tuple[tuple[int, int, int], dict]:
    """Judge the clip once, by its first frame: its background colour (what `--fit pad` letterboxes with) and
    whether it looks like a DensePose render at all (if not, the user likely passed an ordinary video)."""
    background, found = background_colour(first)
    render = looks_like_render(first)
    if not render and reporter is not None:
        reporter.warn(f"{motion_path}: does not look like a DensePose render in MagicAnimate's format (viridis "
                      f"body parts on a {BACKGROUND} background); for an ordinary video use --motion-from-video")
    record = {"background": list(background), "background_from": "border" if found else "default viridis(0)",
              "looks_like_render": render}
    return background, record


def run_job(animator, settings: AnimateSettings, reference_path: Path, motion_path: Path, output: Path,
            reporter: Reporter, load_seconds: float = 0.0, sidecar_extra: dict | None = None,
            transform=None, prepared: PreparedInputs | None = None) -> JobResult:
    """Animate one reference along one motion and write `output` (+ grid and sidecar); `transform` is --align's;
    `prepared` are the inputs the preflight (`preflight.check_motion`) read already, not yet moved."""
    from ..engine.windows import padded_length

    t0 = time.perf_counter()
    settings = pick_seed(settings)
    check_output_writable(output)
    if prepared is not None:
        inputs = prepared.moved(transform)
    else:
        inputs = prepare_inputs(settings, reference_path, motion_path, reporter=reporter, transform=transform)
    config = settings.sampler_config()
    plan = config.window_plan(padded_length(len(inputs.motion), settings.context_frames))
    compile_for_shape(animator, inputs.reference.shape, config, reporter)
    reporter.phase("denoise", settings.steps * len(plan.windows))
    t1 = time.perf_counter()
    latents = animator.sample(inputs.reference, inputs.motion, config, settings.seed,
                              on_window=reporter.advance, noise=settings.noise)
    t2 = time.perf_counter()
    reporter.phase("decode", len(inputs.motion))
    width, height = write_video(animator, latents, inputs, settings, output, reporter)
    t3 = time.perf_counter()
    timings = {"load_s": round(load_seconds, 3), "prepare_s": round(t1 - t0, 3), "sample_s": round(t2 - t1, 3),
               "decode_encode_s": round(t3 - t2, 3), "total_s": round(load_seconds + t3 - t0, 3)}
    result = JobResult(output, sidecar_path(output), len(inputs.motion), inputs.fps, (width, height),
                       settings.seed, timings)
    write_sidecar(result, animator, settings, inputs, sidecar_extra)
    return result


def compile_for_shape(animator, shape: tuple[int, ...], config, reporter: Reporter) -> None:
    """With --compile, compile the graphs of this frame size before denoising, as a phase of its own."""
    if animator.compiled and not animator.warmed_up(shape[0], shape[1], config):
        reporter.phase("compile", 1)
        animator.warm_up(shape[0], shape[1], config)
        reporter.advance()


def write_video(animator, latents, inputs: PreparedInputs, settings: AnimateSettings, output: Path,
                 reporter: Reporter) -> tuple[int, int]:
    """Decode in batches and encode as we go; the grid (if asked) is written alongside."""
    from ..media.writer import open_grid_writer, open_writer

    fit = inputs.fit
    full_frame = settings.fit == "crop"  # the output keeps the motion's aspect: unanimated margins stay black
    width, height = fit.source_size if full_frame else fit.output_size
    with ExitStack() as stack:  # any exception aborts every writer: no partial output
        writer = stack.enter_context(open_writer(output, inputs.fps, width, height, settings.crf))
        grid = None
        if settings.grid:
            panels = [(inputs.reference.shape[1], inputs.reference.shape[0]), (width, height), (width, height)]
            grid = stack.enter_context(open_grid_writer(grid_path(output), inputs.fps, panels, crf=settings.crf))
        for index, frame in enumerate(animator.decode(latents)):
            image = restore(frame, fit, full_frame=full_frame)
            writer.write(image)
            if grid is not None:
                grid.write(inputs.reference, restore(inputs.motion[index], fit, full_frame=full_frame), image)
            if index == 0:
                pause_point("encode")  # tests interrupt here: the worst moment, a partial output exists
            reporter.advance()
    return width, height


def _file_record(path: Path) -> dict:
    stat = path.stat()
    return {"path": str(path), "bytes": stat.st_size, "modified": int(stat.st_mtime)}


def write_sidecar(result: JobResult, animator, settings: AnimateSettings, inputs: PreparedInputs,
                  sidecar_extra: dict | None = None) -> None:
    """Everything needed to repeat the run; `sidecar_extra` adds sections (e.g. how the motion was made), and
    its `inputs` entries replace those of the inputs section (e.g. the video a temporary motion came from)."""
    import diffusers

    from ..engine.loader import weight_files
    from ..engine.schedulers import scheduler_record
    from ..runtime.atomic import write_json_atomic
    from ..runtime.devices import dtype_name

    record = {
        "magicanimate_cli": __version__,
        "settings": settings.record(),
        "seed": result.seed,
        "inputs": {**inputs.source, **(sidecar_extra or {}).get("inputs", {})},
        "output": {"path": str(result.output), "frames": result.frames, "fps": str(result.fps),
                   "width": result.size[0], "height": result.size[1],
                   "grid": str(grid_path(result.output)) if settings.grid else None},
        "weights": [_file_record(p) for p in weight_files(settings.weights, settings.animation_weights)],
        "animation_weights": None if settings.animation_weights is None else str(settings.animation_weights),
        "weights_sources": _sources(settings) or None,  # repository commits, when download-weights
        "device": str(animator.device),
        "dtype": dtype_name(animator.dtype),
        "scheduler": scheduler_record(settings.scheduler),
        "versions": {**runtime_versions(), "diffusers": diffusers.__version__},
        "timings": result.timings,
        **{k: v for k, v in (sidecar_extra or {}).items() if k != "inputs"},
    }
    write_json_atomic(result.sidecar, record)


def _sources(settings: AnimateSettings) -> dict:
    """The commits `download-weights` recorded for the parts this run read: with --animation-weights the
    MagicAnimate part came from elsewhere, so the recorded release commit would misname it."""
    from ..engine.sources import source_summary

    sources = source_summary(settings.weights)
    if settings.animation_weights is not None:
        sources.pop("magicanimate", None)
    return sources
