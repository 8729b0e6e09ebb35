"""The functions behind the page's buttons and fields: page values in, a job run, results or one line of error out.

Every outcome, errors included, is written into the page's status area and stays there until the next action
(no toast, which would vanish and cover the buttons). The area has two lines: the job's (Animate and Cancel)
and the note (Preview, and what a change of the inputs did), so that a preview made while a job runs never
hides that job's status. Through the API the status is the last value returned: `Error: ...` for a failure.
Animate is a generator: it is the one writer of its page's job line, in order (the place in the queue as it
moves, the estimate, "Cancelling", the end), so the last word is always the job's. An unexpected failure's
traceback goes to the server's log only.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path

import gradio as gr

from ..animate.settings import AnimateSettings
from ..runtime.errors import MagicAnimateError
from .estimate import say_duration
from .jobqueue import Place, Ticket
from .limits import Upload, check_motion_kind, check_reference, display_name, user_message, whole_number
from .runner import Ended, JobFailed, JobSpec, Note, PreviewMade, Progress, Runner, Started

log = logging.getLogger("magicanimate_cli.serve")

CANCELLED = "Cancelled: the job stopped at its next window and its files were removed."
LEFT_QUEUE = "Cancelled: the job left the queue before it started; nothing was run."
NO_JOB = "No job of yours is running or waiting."
FIRST_JOB = "no estimate yet: the first job measures this server's speed"
PREVIEW_GONE = "The preview was removed: the inputs changed since it was made. Preview again to see the new ones."


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
    def spec(render_first: bool, smooth: bool, size: float, fit: str, align: bool, frames: str | float | None,
             steps: float, guidance: float, seed: str | float | None, scheduler: str) -> JobSpec:
        """The page's values as a JobSpec (checked by the same code as the command line's options). Frames and
        Seed are text fields: a browser's number field reads "abc" as empty, which would mean "all frames" or "a
        random seed" without a word; here anything but a whole number is refused, naming the field."""
        try:
            count, chosen = whole_number(frames, "Frames"), whole_number(seed, "Seed")
        except MagicAnimateError as exc:
            raise JobFailed(str(exc)) from None
        settings = AnimateSettings(size=int(size), fit=fit, steps=int(steps), guidance=float(guidance),
                                   seed=None if chosen is None or chosen < 0 else chosen, scheduler=scheduler)
        return JobSpec(settings, count, bool(render_first), bool(smooth), bool(align))

    def preview(self, reference, motion, render_first, smooth, size, fit, align, frames, steps, guidance, seed,
                scheduler, request: gr.Request) -> tuple[str | None, str]:
        """(picture, note): the preview writes the note line, never the job's."""
        try:
            spec = self.spec(render_first, smooth, size, fit, align, frames, steps, guidance, seed, scheduler)
            made = self.runner.preview(reference, motion, spec, request.session_hash)
        except Exception as exc:  # noqa: BLE001 - the page shows no preview now; the server keeps none either
            self.runner.forget_preview(request.session_hash)
            return None, error(str(exc) if isinstance(exc, JobFailed) else _unexpected(exc))
        return str(made.picture), _with_warnings(preview_note(made), made.warnings)

    def uploads_changed(self, reference: str | None, motion: str | None, request: gr.Request):
        """A photo or motion chosen (or removed): the photo shown as a picture, the last preview removed (it
        showed other inputs), and a file of the wrong kind said at once, in the note."""
        dropped = self.runner.drop_preview(request.session_hash)
        photo_problem = _upload_problem(reference, check_reference)
        problems = [p for p in (photo_problem, _upload_problem(motion, check_motion_kind)) if p is not None]
        shown = reference if reference and photo_problem is None else None
        lines = [error(p) for p in problems] or ([text(PREVIEW_GONE)] if dropped else [""])
        return gr.update(value=shown, visible=shown is not None), None, "\n\n".join(lines)

    def settings_changed(self, request: gr.Request):
        """A setting the preview depends on changed: a preview on the page no longer shows what Animate would do,
        and goes (nothing changes when there is none)."""
        if not self.runner.drop_preview(request.session_hash):
            return gr.skip(), gr.skip()
        return None, text(PREVIEW_GONE)

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
            return text(f"Waiting: {queue_place(message.position)}{wait}. The job itself: {estimate}.")
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

    @staticmethod
    def busy() -> tuple[dict, dict]:
        """Animate pressed: Animate waits until this job has ended (one job per page), Cancel is offered."""
        return gr.update(interactive=False), gr.update(interactive=True)

    @staticmethod
    def idle() -> tuple[dict, dict]:
        """The job ended (or never started): Animate ready again, Cancel has nothing to cancel."""
        return gr.update(interactive=True), gr.update(interactive=False)

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
    status = _with_warnings(f"Done: {counted(outcome.frames, 'frame')} at {outcome.fps} fps, seed {outcome.seed}.",
                            outcome.warnings)
    return str(outcome.video), [str(outcome.video), str(outcome.render), str(outcome.sidecar)], status


def counted(number: int, thing: str) -> str:
    """`1 frame`, `4 frames`."""
    return f"{number} {thing}{'' if number == 1 else 's'}"


def queue_place(position: int) -> str:
    """A waiting job's place as people say it: next, or how many jobs are ahead of it."""
    if position == 1:
        return "your job is next in the queue"
    return f"{counted(position - 1, 'job')} ahead of yours in the queue"


def preview_note(made: PreviewMade) -> str:
    """What the preview shows, in words: its own captions are drawn for a full-size look and are small in the
    page."""
    shown = [str(i) for i in made.frames]
    if len(shown) == 1:
        columns = f"motion frame {shown[0]}, the only one to animate"
    else:
        columns = (f"motion frames {', '.join(shown[:-1])} and {shown[-1]} of the {counted(made.total, 'frame')} "
                   "to animate, a column each")
    aligned = ", then where Align moves it (green)" if made.aligned else ""
    return (f"Preview ready: {columns}: the motion's figure over your photo (red), as fitted{aligned}, and below "
            "it the frame the model receives. Its full-screen button (top right) shows it larger.")


def _upload_problem(upload: str | None, check) -> str | None:
    """What is wrong with a file just chosen, by `check` (the job's own), in the user's terms; None if nothing
    (or no file)."""
    if not upload:
        return None
    path = Path(upload)
    chosen = Upload(path, display_name(path.name))
    try:
        check(chosen)
    except MagicAnimateError as exc:
        return user_message(exc, [chosen], path.parent)
    return None


def _with_warnings(line: str, warnings) -> str:
    return text(line) + "".join(f"\n\n{text('Warning: ' + w)}" for w in warnings)


def _unexpected(exc: Exception) -> str:
    log.error("job failed", exc_info=exc)
    return f"{type(exc).__name__}: {' '.join(str(exc).split())} (the server's log has details)"
