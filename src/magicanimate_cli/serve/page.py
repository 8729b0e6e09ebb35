"""The page: inputs, the settings users change, Preview, Animate with progress, Cancel, results to download.

Its theme uses the system's fonts only (Gradio's default fetches Google Fonts), so the page loads nothing from
outside the server. Animate runs through the server's own queue (serve.jobqueue): its status area says the
job's place and expected wait as the queue moves, then its estimate, progress and end. Preview has a Gradio queue
of its own, so it never waits behind an animation. Messages, errors included, stay in the status area until
the next action. A page that goes away (Gradio's `unload`: tab closed or reloaded, connection lost) takes its
jobs with it.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from ..animate.settings import FIT_CHOICES
from ..media.files import IMAGE_SUFFIXES, MOTION_SUFFIXES
from ..engine.schedulers import DEFAULT_SCHEDULER, SCHEDULER_NAMES
from .handlers import SMOOTH_ONLY, Handlers
from .jobqueue import MAX_WAITING
from .settings import ServeSettings
from .upload_field import UploadField

SYSTEM_FONTS = ["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"]
SYSTEM_MONO = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"]

INTRO = ("# MagicAnimate\nAnimate the person in a photo along a motion: a DensePose render, or an ordinary "
         "video with *Render DensePose first*. **Preview** shows how the motion meets the photo in seconds; "
         "**Animate** then runs the model.")


PAGE_CSS = "#downloads .label-clear-button { display: none; }"
"""Gradio 6.31 offers to remove a file from a list of several even where the list is only shown (the results):
nothing a user should click."""


def theme() -> gr.themes.Base:
    """Gradio's default look with local fonts: a browser showing the page never reaches the internet."""
    return gr.themes.Default(font=SYSTEM_FONTS, font_mono=SYSTEM_MONO)


def build_page(settings: ServeSettings, handlers: Handlers, examples: tuple[Path, Path] | None) -> gr.Blocks:
    with gr.Blocks(title="MagicAnimate", analytics_enabled=False) as page:
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column():
                reference = UploadField(label="Reference image (PNG, JPEG or WebP)", file_types=list(IMAGE_SUFFIXES),
                                    type="filepath", elem_id="reference")
                motion = UploadField(label="Motion video", file_types=list(MOTION_SUFFIXES), type="filepath",
                                 elem_id="motion")
                render_first = gr.Checkbox(label="Render DensePose first (the motion is an ordinary video)",
                                           elem_id="render-first")
                smooth = gr.Checkbox(label="Smooth the render (steadier parts and boxes)", interactive=False,
                                     info=SMOOTH_ONLY, elem_id="smooth")
            with gr.Column():
                size = gr.Slider(64, settings.max_size, value=settings.default_size, step=8,
                                 label="Size (working side in pixels; the released model's is 512)")
                fit = gr.Radio(list(FIT_CHOICES), value="pad", label="Fit (how a non-square input meets the size)")
                align = gr.Checkbox(label="Align the motion's person to the reference person", elem_id="align")
                frames = gr.Number(value=settings.default_frames, label=f"Frames to animate (at most "
                                   f"{settings.max_frames}; empty: all, up to {settings.max_frames})",
                                   elem_id="frames")
                steps = gr.Slider(1, 100, value=settings.default_steps, step=1, label="Steps", elem_id="steps")
                guidance = gr.Slider(1, 20, value=7.5, step=0.5, label="Guidance")
                seed = gr.Number(value=-1, label="Seed (-1: random, reported with the result)", elem_id="seed")
                scheduler = gr.Dropdown(list(SCHEDULER_NAMES), value=DEFAULT_SCHEDULER, label="Scheduler")
            with gr.Column():
                with gr.Row():
                    preview_button = gr.Button("Preview", elem_id="preview-button")
                    animate_button = gr.Button("Animate", variant="primary", elem_id="animate-button")
                    cancel_button = gr.Button("Cancel", variant="stop", elem_id="cancel-button")
                status = gr.Markdown(elem_id="status")
                preview = gr.Image(label="Preview", type="filepath", interactive=False, elem_id="preview")
                video = gr.Video(label="Result", interactive=False, elem_id="result")
                downloads = gr.File(label="Downloads: the video, its DensePose render, the sidecar JSON",
                                    file_count="multiple", interactive=False, elem_id="downloads")
                cancel_reply = gr.Textbox(visible=False)  # the API's answer; the page shows the job's own status
        if examples is not None:  # the page's whole width, so that both columns of the table show
            gr.Examples([[str(p) for p in examples]], inputs=[reference, motion], label="Demo inputs")
        values = [render_first, smooth, size, fit, align, frames, steps, guidance, seed, scheduler]
        render_first.change(handlers.smooth_control, render_first, smooth, queue=False, api_visibility="private")
        page.load(handlers.controls, None, [render_first, align], queue=False, api_visibility="private")
        page.unload(handlers.session_gone)
        preview_button.click(handlers.preview, [reference, motion, *values], [preview, status], api_name="preview",
                             concurrency_limit=1, concurrency_id="preview", show_progress_on=[preview])
        animate_button.click(handlers.animate, [reference, motion, *values], [video, downloads, status],
                             api_name="animate", concurrency_limit=len(settings.devices) + MAX_WAITING,
                             concurrency_id="animate", show_progress_on=[video])
        cancel_button.click(handlers.cancel, None, cancel_reply, api_name="cancel", queue=False).then(
            handlers.cancel_note, cancel_reply, status, queue=False, api_visibility="private")
    return page
