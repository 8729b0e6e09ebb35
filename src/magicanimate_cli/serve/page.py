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
from ..media.files import MOTION_SUFFIXES
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
DEMO_EXAMPLE = "the demo's photo and DensePose motion"
DEMO_INTRO = ("\n\nThis server runs the **demo**: a tiny model with random weights (its video is noise shaped by "
              f"the pose). Click *{DEMO_EXAMPLE}* under **Demo inputs** (left) to fill them in.")

READY = "No job yet: choose a photo and a motion, then **Preview** to see how they meet, or **Animate**."

PAGE_CSS = """
#downloads .label-clear-button { display: none; }
#downloads .filename .stem { white-space: normal; overflow-wrap: anywhere; }
#status-area .block { padding: var(--size-1) var(--size-3); }
#status-area .block:has(.md:empty) { display: none; }
"""
"""Gradio 6.31 offers to remove a file from a list of several even where the list is only shown (the results):
nothing a user should click. It also cuts a long file name to one line with an ellipsis, which makes a video
and its render (`...-densepose.mp4`) look alike: the names wrap instead. The status area's two lines sit close
together, and an empty one takes no room."""


def theme() -> gr.themes.Base:
    """Gradio's default look with local fonts: a browser showing the page never reaches the internet."""
    return gr.themes.Default(font=SYSTEM_FONTS, font_mono=SYSTEM_MONO)


def build_page(settings: ServeSettings, handlers: Handlers, examples: tuple[Path, Path] | None) -> gr.Blocks:
    """The page: three columns (the inputs, the settings, the buttons with what they produced) and its events."""
    with gr.Blocks(title="MagicAnimate", analytics_enabled=False) as page:
        gr.Markdown(INTRO + (DEMO_INTRO if examples is not None else ""))
        with gr.Row():
            with gr.Column():
                reference, photo, motion = _inputs(examples)
                render_first = gr.Checkbox(label="Render DensePose first (the motion is an ordinary video)",
                                           elem_id="render-first")
                smooth = gr.Checkbox(label="Smooth the render (steadier parts and boxes)", interactive=False,
                                     info=SMOOTH_ONLY, elem_id="smooth")
            with gr.Column():
                size = gr.Slider(64, settings.max_size, value=settings.default_size, step=8,
                                 label="Size (working side in pixels; the released model's is 512)")
                fit = gr.Radio(list(FIT_CHOICES), value="pad", label="Fit (how a non-square input meets the size)")
                align = gr.Checkbox(label="Align the motion's person to the reference person", elem_id="align")
                frames = gr.Textbox(value=str(settings.default_frames), max_lines=1, elem_id="frames",
                                    label=f"Frames to animate (a whole number, at most {settings.max_frames}; "
                                          f"empty: all, up to {settings.max_frames})")
                steps = gr.Slider(1, 100, value=settings.default_steps, step=1, label="Steps", elem_id="steps")
                guidance = gr.Slider(1, 20, value=7.5, step=0.5, label="Guidance")
                seed = gr.Textbox(value="-1", max_lines=1, elem_id="seed",
                                  label="Seed (a whole number; -1 or empty: random, reported with the result)")
                scheduler = gr.Dropdown(list(SCHEDULER_NAMES), value=DEFAULT_SCHEDULER, label="Scheduler")
            with gr.Column():
                with gr.Row():
                    preview_button = gr.Button("Preview", elem_id="preview-button")
                    animate_button = gr.Button("Animate", variant="primary", elem_id="animate-button")
                    cancel_button = gr.Button("Cancel", interactive=False, elem_id="cancel-button")
                with gr.Group(elem_id="status-area"):
                    status = gr.Markdown(READY, elem_id="status")  # the job's line: Animate and Cancel
                    note = gr.Markdown(elem_id="note")  # Preview, and what a change of the inputs did
                preview = gr.Image(label="Preview", type="filepath", interactive=False, elem_id="preview",
                                   buttons=["fullscreen", "download"])
                video = gr.Video(label="Result", interactive=False, elem_id="result")
                downloads = gr.File(label="Downloads: the video, its DensePose render, the sidecar JSON",
                                    file_count="multiple", interactive=False, elem_id="downloads")
                cancel_reply = gr.Textbox(visible=False)  # the API's answer; the page shows the job's own status
        values = [render_first, smooth, size, fit, align, frames, steps, guidance, seed, scheduler]
        render_first.change(handlers.smooth_control, render_first, smooth, queue=False, api_visibility="private")
        page.load(handlers.controls, None, [render_first, align], queue=False, api_visibility="private")
        page.unload(handlers.session_gone)
        previewing = preview_button.click(handlers.preview, [reference, motion, *values], [preview, note],
                                          api_name="preview", concurrency_limit=1, concurrency_id="preview",
                                          show_progress_on=[preview])
        for upload in (reference, motion):
            upload.change(handlers.uploads_changed, [reference, motion], [photo, preview, note], queue=False,
                          api_visibility="private", cancels=[previewing])
        for field in (render_first, smooth, size, fit, align, frames):
            field.change(handlers.settings_changed, None, [preview, note], queue=False, api_visibility="private",
                         cancels=[previewing], trigger_mode="always_last")
        buttons = [animate_button, cancel_button]
        animate_button.click(handlers.busy, None, buttons, queue=False, api_visibility="private").then(
            handlers.animate, [reference, motion, *values], [video, downloads, status], api_name="animate",
            concurrency_limit=len(settings.devices) + MAX_WAITING, concurrency_id="animate",
            show_progress_on=[video]).then(handlers.idle, None, buttons, queue=False, api_visibility="private")
        cancel_button.click(handlers.cancel, None, cancel_reply, api_name="cancel", queue=False).then(
            handlers.cancel_note, cancel_reply, status, queue=False, api_visibility="private")
    return page


def _inputs(examples: tuple[Path, Path] | None) -> tuple[UploadField, gr.Image, UploadField]:
    """The photo (with the picture it is, once chosen) and the motion; with --demo its inputs above them, where
    a first-time user looks first.

    The fields take any file: Gradio's own type filter would refuse another with a pop-up over the buttons that
    vanishes (or, for a dropped file, without a word); the job's checks say what is wrong, in the status area."""
    reference = UploadField(label="Reference image (PNG, JPEG or WebP)", type="filepath", elem_id="reference",
                            render=False)
    motion = UploadField(label=f"Motion video ({', '.join(s.lstrip('.') for s in MOTION_SUFFIXES)})",
                         type="filepath", elem_id="motion", render=False)
    if examples is not None:
        gr.Examples([[str(p) for p in examples]], inputs=[reference, motion], label="Demo inputs",
                    example_labels=[DEMO_EXAMPLE])
    reference.render()
    photo = gr.Image(label="The photo", type="filepath", interactive=False, visible=False, height=180,
                     elem_id="reference-photo", buttons=[])
    motion.render()
    return reference, photo, motion
