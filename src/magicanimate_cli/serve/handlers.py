"""The functions behind the page's buttons: page values in, a job run, results or one line of error out.

Every outcome, errors included, is written into the page's status area and stays there until the next action
(no toast, which would vanish and cover the buttons). Through the API the status is the last value returned:
`Error: ...` for a failure. Animate is a generator: it is the one writer of its page's status, in order (the
place in the queue as it moves, the estimate, "Cancelling", the end), so the last word is always the job's.
An unexpected failure's traceback goes to the server's log only.
"""

from __future__ import annotations

import html
import logging

import gradio as gr

from ..animate.settings import AnimateSettings
from ..runtime.errors import MagicAnimateError
from .estimate import say_duration
from .jobqueue import Place, Ticket
from .limits import whole_number
from .runner import Ended, JobFailed, JobSpec, Note, Progress, Runner, Started

log = logging.getLogger("magicanimate_cli.serve")

CANCELLED = "Cancelled: the job stopped at its next window and its files were removed."
LEFT_QUEUE = "Cancelled: the job left the queue before it started; nothing was run."
NO_JOB = "No job of yours is running or waiting."
FIRST_JOB = "no estimate yet: the first job measures this server's speed"


def text(line: str) -> str:
    """A line for the status area (Markdown): HTML-escaped, as Gradio renders it as HTML."""
    return html.escape(line, quote=False)


def error(message: str) -> str:
    return text(f"Error: {message}")


class Handlers:
    """Bound to one Runner; Gradio calls these (it reads `gr.Request` and `gr.Progress` from the signatures)."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    @staticmethod
    def spec(render_first: bool, smooth: bool, size: float, fit: str, align: bool, frames: float | None,
             steps: float, guidance: float, seed: float | None, scheduler: str) -> JobSpec:
        """The page's values as a JobSpec (checked by the same code as the command line's options; a number
        field's fraction is refused here, naming the field)."""
        try:
            chosen = whole_number(seed, "Seed")
        except MagicAnimateError as exc:
            raise JobFailed(str(exc)) from None
        settings = AnimateSettings(size=int(size), fit=fit, steps=int(steps), guidance=float(guidance),
                                   seed=None if chosen is None or chosen < 0 else chosen, scheduler=scheduler)
        return JobSpec(settings, frames, bool(render_first), bool(smooth), bool(align))

    def preview(self, reference, motion, render_first, smooth, size, fit, align, frames, steps, guidance, seed,
                scheduler, request: gr.Request) -> tuple[str | None, str]:
        try:
            spec = self.spec(render_first, smooth, size, fit, align, frames, steps, guidance, seed, scheduler)
            picture, warnings = self.runner.preview(reference, motion, spec, request.session_hash)
        except JobFailed as exc:
            return None, error(str(exc))
        except Exception as exc:  # noqa: BLE001
            return None, error(_unexpected(exc))
        return str(picture), _with_warnings("Preview ready: the motion's silhouette over the photo, as fitted.",
                                            warnings)

    def animate(self, reference, motion, render_first, smooth, size, fit, align, frames, steps, guidance, seed,
                scheduler, request: gr.Request, progress=gr.Progress()):
        try:
            spec = self.spec(render_first, smooth, size, fit, align, frames, steps, guidance, seed, scheduler)
            ticket = self.runner.animate(reference, motion, spec, request.session_hash)
        except JobFailed as exc:
            yield None, None, error(str(exc))
            return
        except Exception as exc:  # noqa: BLE001
            yield None, None, error(_unexpected(exc))
            return
        ended = None
        try:
            for message in ticket.messages():
                if isinstance(message, Progress):
                    progress((message.done, message.total), desc=message.phase,
                             unit="windows" if message.phase == "denoise" else "frames")
                elif isinstance(message, Ended):
                    ended = message
                    break
                else:
                    yield gr.skip(), gr.skip(), self._say(message, ticket)
        finally:
            if ended is None:  # Gradio dropped the event (its page went away): so does the job
                self.runner.abandon(ticket)
        yield _final(ended)

    @staticmethod
    def _say(message: Place | Started | Note, ticket: Ticket) -> str:
        estimate = FIRST_JOB if ticket.estimate_s is None else f"about {say_duration(ticket.estimate_s)}"
        if isinstance(message, Place):
            wait = "" if message.wait_s is None else f", about {say_duration(message.wait_s)} before it starts"
            return text(f"Waiting: number {message.position} of {message.waiting} in the queue{wait}. The job "
                        f"itself: {estimate}.")
        if isinstance(message, Started):
            return text(f"Running on {message.device}: {estimate}.")
        return text(message.text)

    def cancel(self, request: gr.Request) -> str:
        running, waiting = self.runner.cancel(request.session_hash)
        if running:
            return "Cancelling: the job stops at its next window."
        return LEFT_QUEUE if waiting else NO_JOB

    @staticmethod
    def cancel_note(reply: str):
        """Cancel's answer for the status area, only when there was nothing to cancel: otherwise the job itself
        says it is cancelling, then that it was cancelled, in order."""
        return text(reply) if reply == NO_JOB else gr.skip()

    def session_gone(self, request: gr.Request) -> None:
        self.runner.session_gone(request.session_hash)

    def controls(self) -> tuple[dict, dict]:
        """The DensePose controls as this server can honour them (checked as each page loads)."""
        if self.runner.missing_pose_model() is None:
            return gr.update(interactive=True, info=None), gr.update(interactive=True, info=None)
        reason = ("Unavailable: this server has no DensePose model (whoever runs it can fetch it with "
                  "`magicanimate download-weights --pose`).")
        return gr.update(interactive=False, value=False, info=reason), gr.update(interactive=False, value=False,
                                                                                info=reason)

    @staticmethod
    def smooth_control(render_first: bool) -> dict:
        """Smoothing applies to a render the server makes: offered only with 'Render DensePose first'."""
        if render_first:
            return gr.update(interactive=True, info=None)
        return gr.update(interactive=False, value=False, info=SMOOTH_ONLY)


SMOOTH_ONLY = "Applies with 'Render DensePose first' only."


def _final(ended: Ended):
    if ended.error is not None:
        return None, None, error(ended.error)
    if ended.cancelled:
        return None, None, text(LEFT_QUEUE if ended.left_queue else CANCELLED)
    outcome = ended.outcome
    status = _with_warnings(f"Done: {outcome.frames} frames at {outcome.fps} fps, seed {outcome.seed}.",
                            outcome.warnings)
    return str(outcome.video), [str(outcome.video), str(outcome.render), str(outcome.sidecar)], status


def _with_warnings(line: str, warnings) -> str:
    return text(line) + "".join(f"\n\n{text('Warning: ' + w)}" for w in warnings)


def _unexpected(exc: Exception) -> str:
    log.error("job failed", exc_info=exc)
    return f"{type(exc).__name__}: {' '.join(str(exc).split())} (the server's log has details)"
