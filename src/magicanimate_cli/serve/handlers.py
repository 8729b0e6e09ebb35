"""The functions behind the page's buttons: page values in, a job run, results or one line of error out.

Every failure reaches the page as `gr.Error` with one line (HTML-escaped: Gradio shows it as HTML); the
traceback of an unexpected one goes to the server's log only.
"""

from __future__ import annotations

import html
import logging

import gradio as gr

from ..animate.settings import AnimateSettings
from .runner import JobCancelled, JobFailed, JobSpec, Runner

log = logging.getLogger("magicanimate_cli.serve")

CANCELLED = "Cancelled: the job stopped at its next window and its files were removed."


def one_line_error(message: str) -> gr.Error:
    return gr.Error(html.escape(message, quote=False), print_exception=False)


class Handlers:
    """Bound to one Runner; Gradio calls these (it reads `gr.Request` and `gr.Progress` from the signatures)."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    @staticmethod
    def spec(render_first: bool, smooth: bool, size: float, fit: str, align: bool, frames: float | None,
             steps: float, guidance: float, seed: float | None, scheduler: str) -> JobSpec:
        """The page's values as a JobSpec (checked later, by the same code as the command line's options)."""
        settings = AnimateSettings(size=int(size), fit=fit, steps=int(steps), guidance=float(guidance),
                                   seed=None if seed is None or seed < 0 else int(seed), scheduler=scheduler)
        return JobSpec(settings, None if frames is None else int(frames), bool(render_first), bool(smooth),
                       bool(align))

    def preview(self, reference, motion, *values) -> str:
        try:
            return str(self.runner.preview(reference, motion, self.spec(*values)))
        except JobFailed as exc:
            raise one_line_error(str(exc)) from None
        except Exception as exc:
            raise _unexpected(exc) from None

    def animate(self, reference, motion, render_first, smooth, size, fit, align, frames, steps, guidance, seed,
                scheduler, request: gr.Request, progress=gr.Progress()):
        spec = self.spec(render_first, smooth, size, fit, align, frames, steps, guidance, seed, scheduler)

        def report(done: int, total: int, phase: str) -> None:
            progress((done, total), desc=phase, unit="windows" if phase == "denoise" else "frames")

        try:
            outcome = self.runner.animate(reference, motion, spec, request.session_hash, report)
        except JobCancelled:
            return None, None, CANCELLED
        except JobFailed as exc:
            raise one_line_error(str(exc)) from None
        except Exception as exc:
            raise _unexpected(exc) from None
        status = f"Done: {outcome.frames} frames at {outcome.fps} fps, seed {outcome.seed}."
        status += "".join(f"\n\nWarning: {html.escape(w, quote=False)}" for w in outcome.warnings)
        return str(outcome.video), [str(outcome.video), str(outcome.render), str(outcome.sidecar)], status

    def cancel(self, request: gr.Request) -> str:
        running = self.runner.cancels.cancel(request.session_hash)
        return "Cancelling: the job stops at its next window." if running else "No job of yours is running."


def _unexpected(exc: Exception) -> gr.Error:
    log.error("job failed", exc_info=exc)
    return one_line_error(f"{type(exc).__name__}: {' '.join(str(exc).split())} (the server's log has details)")
