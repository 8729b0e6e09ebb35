"""Jobs on devices: the models loaded once per device, one job at a time on each, progress and cancel.

Every Animate press is checked and staged at once (a bad upload is refused before it waits), then waits in the
server's `JobQueue` on a thread of its own; its page follows it through the `Ticket` (place in the queue,
progress, the end). A job runs the command line's own code (`job.run_job`, the pose render, the preflight) in a
job folder of the `Workspace`; whatever ends it other than success removes that folder. Cancel, the page going
away and the server stopping all cancel the same way: a waiting job leaves the queue, a running one stops at its
next window.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from ..animate.settings import AnimateSettings
from ..media.reader import FrameSelection
from ..runtime.errors import MagicAnimateError, WeightsError
from ..runtime.progress import Reporter
from ..runtime.testhooks import hold_point
from .estimate import SpeedBook, say_duration, work_of
from .heap import release_freed_memory
from .jobqueue import JobCancelled, JobQueue, QueueFull, Slot, Ticket
from .limits import (Upload, check_frames, check_motion_upload, check_reference, motion_look, page_warning,
                     stage_upload, user_message)
from .results import public_sidecar, result_stem
from .settings import ServeSettings
from .workspace import Workspace

log = logging.getLogger("magicanimate_cli.serve")

POSE_MODEL, MIN_SCORE = "r50", 0.8
"""`pose`'s defaults (--pose-model, --min-score): the model download-weights --pose fetches."""


class JobFailed(Exception):
    """A job stopped on a problem the user can fix; the message is one line in the user's terms."""


class Hooks(Protocol):
    """Named points a test can stop a job at (see tests/serve_helpers.py).

    Points: `job:start` (the job holds its device, before any model is used), `window` (a denoising window has
    finished, just before the cancel check) and `session:gone:<session>` (that page went away; its jobs are
    cancelled).
    `released` is set when the job is cancelled (a hold there may end then).
    """

    def reached(self, point: str, released: threading.Event | None = None) -> None: ...


class PausePoints:
    """The server's own hooks: nothing, unless MAGICANIMATE_TEST_PAUSE_AT names `serve:<point>` (testhooks),
    where a job then waits until it is cancelled; how a test stops the real command mid-job."""

    def reached(self, point: str, released: threading.Event | None = None) -> None:
        if released is not None:
            hold_point(f"serve:{point}", released)


@dataclass(frozen=True)
class JobSpec:
    """What the page asked for: the animation settings (device filled in later) and the motion handling."""

    settings: AnimateSettings
    frames: float | None = None
    render_first: bool = False
    smooth: bool = False
    align: bool = False

    @property
    def needs_pose_model(self) -> bool:
        return self.render_first or self.align


@dataclass(frozen=True)
class JobOutcome:
    video: Path
    render: Path
    sidecar: Path
    frames: int
    seed: int
    fps: str
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Started:
    """The job has its device."""

    device: str


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    phase: str


@dataclass(frozen=True)
class Note:
    """A line for the page's status while the job goes on (e.g. that it is being cancelled)."""

    text: str


@dataclass(frozen=True)
class Ended:
    """The job's last message: its outcome, or that it was cancelled (`left_queue`: before it started), or an
    error in the user's terms."""

    outcome: JobOutcome | None = None
    cancelled: bool = False
    left_queue: bool = False
    error: str | None = None


@dataclass(frozen=True)
class PreviewMade:
    """A preview's picture, Animate's warnings about the motion, and what the picture shows: the motion frames
    of its columns (of `total` to animate) and whether it has the alignment's row."""

    picture: Path
    warnings: tuple[str, ...]
    frames: tuple[int, ...]
    total: int
    aligned: bool


@dataclass
class StagedJob:
    """A job checked and staged, waiting for its device."""

    ticket: Ticket
    folder: Path
    reference: Upload
    motion: Upload
    settings: AnimateSettings
    spec: JobSpec


class ModelCache:
    """The animation models (and the DensePose model) of each user, loaded on first use and kept.

    A user is a device slot, or "preview" (the previews' own DensePose model, so that a preview never shares
    a model with a running job).
    """

    def __init__(self, weights: Path, dtype: str, animation_weights: Path | None = None) -> None:
        self.weights, self.dtype, self.animation_weights = weights, dtype, animation_weights
        self._models: dict[tuple[str, object], object] = {}
        self._locks: dict[tuple[str, object], threading.Lock] = {}
        self._lock = threading.Lock()

    def _loaded(self, key: tuple[str, object], load: Callable[[], object]):
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._models:
                self._models[key] = load()
            return self._models[key]

    def animator(self, slot: Slot):
        return self._loaded(("animator", slot), lambda: self._load_animator(slot.device))

    def _load_animator(self, device: str):
        from ..runtime.devices import resolve_device, resolve_dtype
        from ..engine.pipeline import Animator

        torch_device = resolve_device(device)
        log.info("loading weights from %s on %s", self.weights, torch_device)
        return Animator.from_pretrained(self.weights, device=torch_device,
                                        dtype=resolve_dtype(self.dtype, torch_device),
                                        animation_weights=self.animation_weights)

    def pose_model(self, user: Slot | str, settings):
        from ..densepose.loading import load_pose_model

        _require_pose_model(settings)
        return self._loaded(("pose", user), lambda: load_pose_model(settings, Reporter())[0])


def _require_pose_model(settings) -> None:
    """A missing DensePose model, said to the page's user: the command line's message offers --pose-model, which
    the page does not have; only whoever runs the server can fetch the model."""
    missing = missing_pose_model(settings.weights)
    if missing is not None:
        raise WeightsError(missing)


def missing_pose_model(weights: Path) -> str | None:
    """Why 'Render DensePose first' and 'Align' cannot work on this server (None: they can)."""
    from ..densepose.model import model_file

    path = model_file(POSE_MODEL, weights)
    if path.is_file():
        return None
    return (f"{path}: this server has no DensePose model, which 'Render DensePose first' and 'Align' need; "
            "whoever runs it can fetch it with `magicanimate download-weights --pose`")


class PageReporter(Reporter):
    """The job's progress, told to its page; the place where cancelling takes effect (after a window). It times
    the denoising and decoding phases: the device's measured speed, for later estimates."""

    def __init__(self, ticket: Ticket, hooks: Hooks, clock: Callable[[], float]) -> None:
        self._ticket, self._hooks, self._clock = ticket, hooks, clock
        self._phase, self._done, self._total = "", 0, 0
        self.started: dict[str, float] = {}
        self.warnings: list[str] = []

    def phase(self, name: str, total: int) -> None:
        self._phase, self._done, self._total = name, 0, total
        self.started[name] = self._clock()
        self._stop_if_cancelled()
        self._ticket.tell(Progress(0, total, name))

    def advance(self, units: int = 1) -> None:
        self._done += units
        if self._phase == "denoise":
            self._hooks.reached("window", self._ticket.cancelled)
        self._stop_if_cancelled()
        self._ticket.tell(Progress(self._done, self._total, self._phase))

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def durations(self) -> tuple[float, float] | None:
        """(denoising, decoding) seconds of a finished job; None if it had no such phases."""
        if "denoise" not in self.started or "decode" not in self.started:
            return None
        return self.started["decode"] - self.started["denoise"], self._clock() - self.started["decode"]

    def _stop_if_cancelled(self) -> None:
        if self._ticket.cancelled.is_set():
            raise JobCancelled()


class Collected(Reporter):
    """A preview's reporter: it keeps the warnings, for the page."""

    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warn(self, message: str) -> None:
        self.warnings.append(message)


class Runner:
    """Runs previews and animations for the page, in job folders of `workspace`, on the devices of `settings`."""

    def __init__(self, settings: ServeSettings, workspace: Workspace, hooks: Hooks | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings, self.workspace = settings, workspace
        self.hooks = hooks or PausePoints()
        self.clock = clock
        self.queue = JobQueue(settings.devices, clock)
        self.speeds = SpeedBook()
        self.models = ModelCache(settings.weights, settings.dtype, settings.animation_weights)
        self._threads: set[threading.Thread] = set()
        self._previews: dict[str, Path | None] = {}  # session → its preview; None: removed as the inputs changed
        self._gone: dict[str, float] = {}  # session → when its page went away (the last hour's)
        self._lock = threading.Lock()

    def pose_settings(self, device: str, smooth: bool):
        """The DensePose settings of `pose`'s defaults (the page offers only smoothing)."""
        from ..densepose.loading import pose_settings
        from ..densepose.track import SmoothSettings

        return pose_settings(POSE_MODEL, self.settings.weights, device, MIN_SCORE, "all", 18,
                             SmoothSettings() if smooth else None)

    def missing_pose_model(self) -> str | None:
        """Why the DensePose controls cannot be used here, in the page's terms (None: they can)."""
        missing = missing_pose_model(self.settings.weights)
        return None if missing is None else user_message(missing, [], self.workspace.root)

    @contextmanager
    def _failing(self, folder: Path, uploads: list[Upload]) -> Iterator[None]:
        """Whatever ends the block early removes the job's folder; the command line's errors become JobFailed,
        one line in the user's terms."""
        try:
            yield
        except MagicAnimateError as exc:
            self.workspace.finish(folder, keep=False)
            raise JobFailed(user_message(exc, uploads, self.workspace.root)) from None
        except BaseException:
            self.workspace.finish(folder, keep=False)
            raise

    def _prepare(self, folder: Path, uploads: list[Upload], reference, motion,
                 spec: JobSpec) -> tuple[Upload, Upload, AnimateSettings, int]:
        """Stage and check both uploads and the settings, as the command line would, before any device is used;
        also how many frames the job animates."""
        from ..animate.job import pick_seed

        if spec.smooth and not spec.render_first:
            raise JobFailed("Smooth the render: applies only with 'Render DensePose first'")
        frames = check_frames(spec.frames, self.settings.max_frames)
        uploads.append(stage_upload(reference, folder, "reference", "reference image"))
        uploads.append(stage_upload(motion, folder, "motion", "motion video"))
        reference_upload, motion_upload = uploads
        settings = replace(spec.settings, weights=self.settings.weights,
                           animation_weights=self.settings.animation_weights, dtype=self.settings.dtype,
                           selection=FrameSelection(0, frames, 1))
        settings.validate()
        check_reference(reference_upload)
        count = check_motion_upload(motion_upload, frames)
        return reference_upload, motion_upload, pick_seed(settings), count

    def _replace_preview(self, session: str, folder: Path | None, marked: bool = False) -> bool:
        """A session keeps one preview: the one before goes when the next preview replaces it (or the inputs
        change, which leaves the mark that they did, or the page goes away). Whether the session had a preview
        or the mark."""
        with self._lock:
            had = session in self._previews
            old = self._previews.pop(session, None)
            if folder is not None or (marked and had):
                self._previews[session] = folder
        if old is not None:
            self.workspace.finish(old, keep=False)
        return had

    def preview(self, reference, motion, spec: JobSpec, session: str) -> PreviewMade:
        """The fit/alignment picture (preflight's `--preview`), without the diffusion model, and the warnings
        Animate would give about the motion."""
        from ..animate.preview import preview_frames
        from ..animate.rendered_motion import PoseRequest, animation_motion
        from ..animate.preflight import MotionCheck, check_motion

        folder, uploads = self.workspace.new_job(), []
        with self._failing(folder, uploads):
            ref, mot, settings, total = self._prepare(folder, uploads, reference, motion, spec)
            pose = self.pose_settings(self.queue.devices[0], spec.smooth) if spec.needs_pose_model else None
            model = self.models.pose_model("preview", pose) if pose is not None else None
            request = PoseRequest(pose) if spec.render_first else None
            picture, reporter = folder / "preview.png", Collected()
            if not spec.render_first:
                motion_look(mot, reporter)
            with animation_motion(model, request, settings, mot.path, picture, Reporter()) as (frames, run, _):
                check = MotionCheck(align=spec.align, preview=picture, pose=pose)
                check_motion(check, run, ref.path, frames, picture, model, Reporter(), mot.path)
        self.workspace.finish(folder, keep=True)
        release_freed_memory()
        self._replace_preview(session, folder)
        return PreviewMade(picture, self._page_warnings(reporter.warnings, uploads), tuple(preview_frames(total)),
                           total, spec.align)

    def drop_preview(self, session: str) -> bool:
        """The page's inputs changed: its preview no longer shows them, and goes. Whether the page's last
        preview was removed, now or at an earlier change (until the next preview, the page should say so)."""
        return self._replace_preview(session, None, marked=True)

    def forget_preview(self, session: str) -> None:
        """The page shows no preview (its last one failed, or the page went away): none is kept for it."""
        self._replace_preview(session, None)

    def _page_warnings(self, warnings: list[str], uploads: list[Upload]) -> tuple[str, ...]:
        """The command line's warnings in the page's words, offering only what this server can do."""
        renders = missing_pose_model(self.settings.weights) is None
        return tuple(page_warning(user_message(w, uploads, self.workspace.root), renders) for w in warnings)

    def animate(self, reference, motion, spec: JobSpec, session: str) -> Ticket:
        """Check and stage the job (a problem raises JobFailed now), estimate it, refuse it if longer than
        --max-job-seconds, and queue it on a thread of its own; its ticket tells the rest."""
        pressed = self.clock()
        folder, uploads = self.workspace.new_job(), []
        with self._failing(folder, uploads):
            ref, mot, settings, frames = self._prepare(folder, uploads, reference, motion, spec)
            work = work_of(settings, frames)
            ticket = Ticket(session, work, self.speeds.estimate(work))
            self._check_length(ticket.estimate_s)
            try:
                self.queue.enter(ticket)
            except QueueFull:
                raise JobFailed("Animate: the queue is full; try again in a few minutes") from None
            except JobCancelled:
                raise JobFailed("Animate: the server is stopping") from None
        with self._lock:
            gone = self._gone.get(session, -1.0) >= pressed
        if gone:  # its page went away while it was being checked: it never starts
            self.abandon(ticket)
        job = StagedJob(ticket, folder, ref, mot, settings, spec)
        thread = threading.Thread(target=self._work, args=(job,), name=f"magicanimate-job-{ticket.id}",
                                  daemon=True)
        with self._lock:
            self._threads.add(thread)
        thread.start()
        return ticket

    def _check_length(self, estimate: float | None) -> None:
        limit = self.settings.max_job_seconds
        if limit is not None and estimate is not None and estimate > limit:
            raise JobFailed(f"Animate: this job would take about {say_duration(estimate)} on this server, longer "
                            f"than its limit of {say_duration(limit)}; choose fewer frames or steps, or a smaller "
                            "size")

    def _work(self, job: StagedJob) -> None:
        """The job's thread: wait for a device, run, tell the page how it ended."""
        ticket = job.ticket
        try:
            with self._failing(job.folder, [job.reference, job.motion]):
                ended = self._queued_run(job)
            self.workspace.finish(job.folder, keep=True)
        except JobCancelled:
            ended = Ended(cancelled=True, left_queue=ticket.started_at is None)
        except JobFailed as exc:
            ended = Ended(error=str(exc))
        except BaseException as exc:  # noqa: BLE001 - one line to the page, the traceback to the log
            log.error("job failed", exc_info=exc)
            ended = Ended(error=f"{type(exc).__name__}: {' '.join(str(exc).split())} (the server's log has details)")
        finally:
            release_freed_memory()  # what the job freed goes back to the system, whichever thread ran it
            with self._lock:
                self._threads.discard(threading.current_thread())
        ticket.tell(ended)

    def _queued_run(self, job: StagedJob) -> Ended:
        ticket = job.ticket
        from ..runtime.devices import resolve_device

        with self.queue.device(ticket, ticket.tell) as slot:
            ticket.tell(Started(str(resolve_device(slot.device))))  # `auto` as what it is: cuda, mps or cpu
            self.hooks.reached("job:start", ticket.cancelled)
            reporter = PageReporter(ticket, self.hooks, self.clock)
            outcome = self._run(job, slot, replace(job.settings, device=slot.device), reporter)
            durations = reporter.durations()
            if durations is not None:
                self.speeds.record(slot.device, ticket.work, *durations)
        return Ended(outcome)

    def _run(self, job: StagedJob, slot: Slot, settings: AnimateSettings, reporter: PageReporter) -> JobOutcome:
        from ..animate.job import run_job
        from ..animate.rendered_motion import PoseRequest, animation_motion
        from ..animate.preflight import MotionCheck, check_motion

        spec, ref, mot, folder = job.spec, job.reference, job.motion, job.folder
        stem = result_stem(ref.name, mot.name, job.ticket.id)
        pose = self.pose_settings(settings.device, spec.smooth) if spec.needs_pose_model else None
        model = self.models.pose_model(slot, pose) if pose is not None else None
        output = folder / f"{stem}.mp4"
        render = folder / f"{stem}-densepose{'.mp4' if spec.render_first else mot.path.suffix}"
        request = PoseRequest(pose, render) if spec.render_first else None
        with animation_motion(model, request, settings, mot.path, output, reporter) as (frames, run, extra):
            check = MotionCheck(align=True, pose=pose) if spec.align else None
            checked = check_motion(check, run, ref.path, frames, None, model, reporter, mot.path)
            animator = self.models.animator(slot)
            names = {"inputs": {"reference": ref.name, "motion": mot.name}}
            result = run_job(animator, run, ref.path, frames, output, reporter, 0.0,
                             checked.sidecar_extra({**(extra or {}), **names}), checked.transform)
        if not spec.render_first:
            os.link(mot.path, render)  # the uploaded render, under the job's name (the same file, not a copy)
        public_sidecar(result.sidecar, folder, self.settings.weights_folders)
        return JobOutcome(result.output, render, result.sidecar, result.frames, result.seed, str(result.fps),
                          self._page_warnings(reporter.warnings, [ref, mot]))

    def cancel(self, session: str) -> tuple[int, int]:
        """Cancel `session`'s jobs as its Cancel button does: (running, which stop at their next window; waiting,
        which leave the queue now)."""
        return self._cancel(lambda ticket: ticket.session == session)

    def abandon(self, ticket: Ticket) -> None:
        """Nobody follows `ticket` any more (Gradio dropped its event): cancel it."""
        self._cancel(lambda other: other is ticket)

    def _cancel(self, which) -> tuple[int, int]:
        running, waiting = self.queue.cancel(which)
        for ticket in running:
            ticket.tell(Note(CANCELLING))
        return len(running), len(waiting)

    def session_gone(self, session: str) -> None:
        """A page went away (closed, reloaded, connection lost): its jobs are cancelled, its preview removed; a job
        it started that is still being checked is cancelled as it enters the queue."""
        now = self.clock()
        with self._lock:
            self._gone = {s: t for s, t in self._gone.items() if now - t < GONE_KEPT}
            self._gone[session] = now
        self.cancel(session)
        self.forget_preview(session)
        self.hooks.reached(f"session:gone:{session}")

    def stop(self) -> None:
        """The server is stopping: every job is cancelled, and this returns once the running ones have stopped
        (at their next window) and removed their folders, so nothing computes while the process exits."""
        for ticket in self.queue.stop():
            ticket.tell(Note("Cancelling: the server is stopping; the job stops at its next window."))
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join()


CANCELLING = "Cancelling: the job stops at its next window."
GONE_KEPT = 3600.0
"""Seconds a vanished session is remembered, for its jobs still being checked (a check takes seconds)."""
