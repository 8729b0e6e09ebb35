"""The page: inputs, the settings users change, Preview, Animate with progress, Cancel, results to download.

Its theme uses the system's fonts only (Gradio's default fetches Google Fonts), so the page loads nothing from
outside the server. The Animate event runs through Gradio's queue, one job per device at a time: a waiting
user sees their place in the queue. Preview has a queue of its own, so it never waits behind an animation.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from ..animate.settings import FIT_CHOICES
from ..engine.schedulers import DEFAULT_SCHEDULER, SCHEDULER_NAMES
from ..media.files import IMAGE_SUFFIXES, MOTION_SUFFIXES
from .handlers import Handlers
from .settings import ServeSettings

SYSTEM_FONTS = ["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"]
SYSTEM_MONO = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"]

INTRO = ("# MagicAnimate\nAnimate the person in a photo along a motion: a DensePose render, or an ordinary "
         "video with *Render DensePose first*. **Preview** shows how the motion meets the photo in seconds; "
         "**Animate** then runs the model.")


def theme() -> gr.themes.Base:
    """Gradio's default look with local fonts: a browser showing the page never reaches the internet."""
    return gr.themes.Default(font=SYSTEM_FONTS, font_mono=SYSTEM_MONO)


def build_page(settings: ServeSettings, handlers: Handlers, examples: tuple[Path, Path] | None) -> gr.Blocks:
    with gr.Blocks(title="MagicAnimate", analytics_enabled=False) as page:
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column():
                reference = gr.File(label="Reference image (PNG, JPEG or WebP)", file_types=list(IMAGE_SUFFIXES),
                                    type="filepath", elem_id="reference")
                motion = gr.File(label="Motion video", file_types=list(MOTION_SUFFIXES), type="filepath",
                                 elem_id="motion")
                render_first = gr.Checkbox(label="Render DensePose first (the motion is an ordinary video)")
                smooth = gr.Checkbox(label="Smooth the render (steadier parts and boxes)")
                if examples is not None:
                    gr.Examples([[str(p) for p in examples]], inputs=[reference, motion], label="Demo inputs")
            with gr.Column():
                size = gr.Slider(64, settings.max_size, value=settings.default_size, step=8,
                                 label="Size (working side in pixels; the released model's is 512)")
                fit = gr.Radio(list(FIT_CHOICES), value="pad", label="Fit (how a non-square input meets the size)")
                align = gr.Checkbox(label="Align the motion's person to the reference person")
                frames = gr.Number(value=settings.max_frames, precision=0, minimum=1,
                                   label=f"Frames to animate (at most {settings.max_frames})", elem_id="frames")
                steps = gr.Slider(1, 100, value=settings.default_steps, step=1, label="Steps")
                guidance = gr.Slider(1, 20, value=7.5, step=0.5, label="Guidance")
                seed = gr.Number(value=-1, precision=0, label="Seed (-1: random, reported with the result)")
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
        values = [render_first, smooth, size, fit, align, frames, steps, guidance, seed, scheduler]
        preview_button.click(handlers.preview, [reference, motion, *values], preview, api_name="preview",
                             concurrency_limit=1, concurrency_id="preview")
        job = animate_button.click(handlers.animate, [reference, motion, *values], [video, downloads, status],
                                   api_name="animate", concurrency_limit=len(settings.devices),
                                   concurrency_id="animate")
        cancel_button.click(handlers.cancel, None, status, api_name="cancel", cancels=[job], queue=False)
    return page
