"""Jobs on devices: the models loaded once per device, one job at a time on each, progress and cancel.

Gradio's queue decides when a job starts (its concurrency limit is the number of devices); the `DevicePool`
then gives the job a device of its own, so even a job whose page was closed or cancelled keeps its device until
it has really stopped. A job runs the command line's own code (`job.run_job`, the pose render, the preflight)
in a job folder of the `Workspace`; whatever ends it other than success removes that folder.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from ..animate.settings import AnimateSettings
from ..media.reader import FrameSelection
from ..runtime.errors import MagicAnimateError, WeightsError
from ..runtime.progress import Reporter
from .heap import release_freed_memory
from .limits import Upload, check_frames, check_motion_upload, check_reference, stage_upload, user_message
from .settings import ServeSettings
from .workspace import Workspace

log = logging.getLogger("magicanimate_cli.serve")

POSE_MODEL, MIN_SCORE = "r50", 0.8
"""`pose`'s defaults (--pose-model, --min-score): the model download-weights --pose fetches."""

ProgressFn = Callable[[int, int, str], None]
"""progress(done, total, phase): what the page's progress bar is told."""


class JobCancelled(Exception):
    """Raised inside a job at the next window after its owner pressed Cancel."""


class JobFailed(Exception):
    """A job stopped on a problem the user can fix; the message is one line in the user's terms."""


class Hooks(Protocol):
    """Named points a test can stop a job at (see tests/serve_helpers.py); the server's own hooks do nothing.

    Points: `job:start` (the job holds its device, before any model is used) and `window` (a denoising
    window has finished, just before the cancel check).
    """

    def reached(self, point: str) -> None: ...


class NoHooks:
    def reached(self, point: str) -> None:
        return None


@dataclass(frozen=True)
class JobSpec:
    """What the page asked for: the animation settings (device filled in later) and the motion handling."""

    settings: AnimateSettings
    frames: int | None = None
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
class Slot:
    """One entry of --devices: where a job runs, with models of its own (a device named twice gets two)."""

    index: int
    device: str


class DevicePool:
    """The devices jobs run on, each lent to one job at a time."""

    def __init__(self, devices: tuple[str, ...]) -> None:
        self.devices = devices
        self._free: queue.Queue[Slot] = queue.Queue()
        for index, device in enumerate(devices):
            self._free.put(Slot(index, device))

    @contextmanager
    def take(self) -> Iterator[Slot]:
        slot = self._free.get()
        try:
            yield slot
        finally:
            self._free.put(slot)


class CancelBoard:
    """The running jobs of each browser session (Gradio's session hash), so that Cancel reaches its own jobs."""

    def __init__(self) -> None:
        self._events: dict[str, list[threading.Event]] = {}
        self._lock = threading.Lock()

    @contextmanager
    def running(self, session: str) -> Iterator[threading.Event]:
        event = threading.Event()
        with self._lock:
            self._events.setdefault(session, []).append(event)
        try:
            yield event
        finally:
            with self._lock:
                events = self._events.get(session, [])
                if event in events:
                    events.remove(event)
                if not events:
                    self._events.pop(session, None)

    def cancel(self, session: str) -> int:
        """Ask every running job of `session` to stop at its next window; how many there were."""
        with self._lock:
            events = list(self._events.get(session, []))
        for event in events:
            event.set()
        return len(events)


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
        from ..engine.pipeline import Animator
        from ..runtime.devices import resolve_device, resolve_dtype

        torch_device = resolve_device(device)
        log.info("loading weights from %s on %s", self.weights, torch_device)
        return Animator.from_pretrained(self.weights, device=torch_device,
                                        dtype=resolve_dtype(self.dtype, torch_device),
                                        animation_weights=self.animation_weights)

    def pose_model(self, user: Slot | str, settings):
        from ..motion.densepose.loading import load_pose_model

        _require_pose_model(settings)
        return self._loaded(("pose", user), lambda: load_pose_model(settings, Reporter())[0])


def _require_pose_model(settings) -> None:
    """A missing DensePose model, said to the page's user: the command line's message offers --pose-model, which
    the page does not have; only whoever runs the server can fetch the model."""
    from ..motion.densepose.model import model_file

    path = model_file(settings.model, settings.weights)
    if not path.is_file():
        raise WeightsError(f"{path}: this server has no DensePose model, which 'Render DensePose first' and "
                           "'Align' need; whoever runs it can fetch it with `magicanimate download-weights --pose`")


class PageReporter(Reporter):
    """The job's progress, told to the page; the place where Cancel takes effect (after a window)."""

    def __init__(self, progress: ProgressFn, cancel: threading.Event, hooks: Hooks) -> None:
        self._progress, self._cancel, self._hooks = progress, cancel, hooks
        self._phase, self._done, self._total = "", 0, 0
        self.warnings: list[str] = []

    def phase(self, name: str, total: int) -> None:
        self._phase, self._done, self._total = name, 0, total
        self._stop_if_cancelled()
        self._progress(0, total, name)

    def advance(self, units: int = 1) -> None:
        self._done += units
        if self._phase == "denoise":
            self._hooks.reached("window")
        self._stop_if_cancelled()
        self._progress(self._done, self._total, self._phase)

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def _stop_if_cancelled(self) -> None:
        if self._cancel.is_set():
            raise JobCancelled()


class Runner:
    """Runs previews and animations for the page, in job folders of `workspace`, on the devices of `settings`."""

    def __init__(self, settings: ServeSettings, workspace: Workspace, hooks: Hooks | None = None) -> None:
        self.settings, self.workspace = settings, workspace
        self.hooks = hooks or NoHooks()
        self.pool = DevicePool(settings.devices)
        self.models = ModelCache(settings.weights, settings.dtype, settings.animation_weights)
        self.cancels = CancelBoard()

    def pose_settings(self, device: str, smooth: bool):
        """The DensePose settings of `pose`'s defaults (the page offers only smoothing)."""
        from ..motion.densepose.loading import pose_settings
        from ..motion.densepose.track import SmoothSettings

        return pose_settings(POSE_MODEL, self.settings.weights, device, MIN_SCORE, "all", 18,
                             SmoothSettings() if smooth else None)

    @contextmanager
    def _job(self) -> Iterator[tuple[Path, list[Upload]]]:
        """A job folder, removed if the job fails or is cancelled; its errors in the user's terms."""
        folder, uploads = self.workspace.new_job(), []
        try:
            yield folder, uploads
        except MagicAnimateError as exc:
            self.workspace.finish(folder, keep=False)
            raise JobFailed(user_message(exc, uploads, self.workspace.root)) from None
        except BaseException:
            self.workspace.finish(folder, keep=False)
            raise
        finally:
            release_freed_memory()  # what the job freed goes back to the system, whichever thread ran it
        self.workspace.finish(folder, keep=True)

    def _prepare(self, folder: Path, uploads: list[Upload], reference, motion,
                 spec: JobSpec) -> tuple[Upload, Upload, AnimateSettings]:
        """Stage and check both uploads and the settings, as the command line would, before any device is used."""
        from ..animate.job import pick_seed

        frames = check_frames(spec.frames, self.settings.max_frames)
        uploads.append(stage_upload(reference, folder, "reference", "reference image"))
        uploads.append(stage_upload(motion, folder, "motion", "motion video"))
        reference_upload, motion_upload = uploads
        settings = replace(spec.settings, weights=self.settings.weights,
                           animation_weights=self.settings.animation_weights, dtype=self.settings.dtype,
                           selection=FrameSelection(0, frames, 1))
        settings.validate()
        check_reference(reference_upload)
        check_motion_upload(motion_upload, frames)
        return reference_upload, motion_upload, pick_seed(settings)

    def preview(self, reference, motion, spec: JobSpec) -> Path:
        """The fit/alignment picture (preflight's `--preview`), without the diffusion model."""
        from ..animate.preflight import MotionCheck, check_motion
        from ..animate.rendered_motion import PoseRequest, animation_motion

        with self._job() as (folder, uploads):
            ref, mot, settings = self._prepare(folder, uploads, reference, motion, spec)
            pose = self.pose_settings(self.pool.devices[0], spec.smooth) if spec.needs_pose_model else None
            model = self.models.pose_model("preview", pose) if pose is not None else None
            request = PoseRequest(pose) if spec.render_first else None
            picture = folder / "preview.png"
            with animation_motion(model, request, settings, mot.path, picture, Reporter()) as (frames, run, _):
                check = MotionCheck(align=spec.align, preview=picture, pose=pose)
                check_motion(check, run, ref.path, frames, picture, model, Reporter(), mot.path)
        return picture

    def animate(self, reference, motion, spec: JobSpec, session: str, progress: ProgressFn) -> JobOutcome:
        """One animation: staged inputs, a device, the command line's job; Cancel stops it at the next window."""
        with self.cancels.running(session) as cancel, self._job() as (folder, uploads):
            ref, mot, settings = self._prepare(folder, uploads, reference, motion, spec)
            with self.pool.take() as slot:
                self.hooks.reached("job:start")
                reporter = PageReporter(progress, cancel, self.hooks)
                outcome = self._run(folder, ref, mot, slot, replace(settings, device=slot.device), spec, reporter)
        return outcome

    def _run(self, folder: Path, ref: Upload, mot: Upload, slot: Slot, settings: AnimateSettings, spec: JobSpec,
             reporter: PageReporter) -> JobOutcome:
        from ..animate.job import run_job
        from ..animate.preflight import MotionCheck, check_motion
        from ..animate.rendered_motion import PoseRequest, animation_motion

        pose = self.pose_settings(settings.device, spec.smooth) if spec.needs_pose_model else None
        model = self.models.pose_model(slot, pose) if pose is not None else None
        output = folder / "animation.mp4"
        render = folder / "densepose.mp4" if spec.render_first else mot.path
        request = PoseRequest(pose, render) if spec.render_first else None
        with animation_motion(model, request, settings, mot.path, output, reporter) as (frames, run, extra):
            check = MotionCheck(align=True, pose=pose) if spec.align else None
            checked = check_motion(check, run, ref.path, frames, None, model, reporter, mot.path)
            animator = self.models.animator(slot)
            names = {"inputs": {"reference": ref.name, "motion": mot.name}}
            result = run_job(animator, run, ref.path, frames, output, reporter, 0.0,
                             checked.sidecar_extra({**(extra or {}), **names}), checked.transform)
        warnings = tuple(user_message(w, [ref, mot], self.workspace.root) for w in reporter.warnings)
        return JobOutcome(result.output, render, result.sidecar, result.frames, result.seed, str(result.fps),
                          warnings)
